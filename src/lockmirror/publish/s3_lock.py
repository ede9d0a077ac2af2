"""The publish lock of an S3 prefix: one object created with ``If-None-Match: *``.

AWS S3 (since 2024), MinIO, SeaweedFS and moto refuse the conditional put
when the object exists, so two publishers cannot both hold it. The object
is read back after creation, so a server that ignores the condition is
caught instead of trusted.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from ..errors import LockmirrorError, PublishError
from .s3_client import NOT_FOUND_CODES, S3Client, error_code, s3_errors
from .tree import Progress, ProgressEvent, lock_holder_text

STATE_CACHE = "no-store"
_LOCK_TAKEN_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})

# (botocore error, what was being done) -> the lockmirror error to raise
Convert = Callable[[BaseException, str], LockmirrorError]


@dataclass(frozen=True)
class LockHolder:
    """Who holds a publish lock, read from the lock object."""

    holder: str
    created: datetime | None
    token: str

    def age(self, now: datetime | None = None) -> str:
        if self.created is None:
            return "an unknown time"
        seconds = max(0, int(((now or datetime.now(UTC)) - self.created).total_seconds()))
        if seconds < 120:
            return f"{seconds} s"
        if seconds < 7200:
            return f"{seconds // 60} min"
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"


@dataclass
class BucketLock:
    """The lock object ``key`` of ``bucket``; ``display`` names the destination in errors."""

    client: S3Client
    bucket: str
    key: str
    display: str
    convert: Convert

    def read(self) -> LockHolder | None:
        """The current lock holder, or None when the prefix is not locked."""
        try:
            raw = self.client.get_object(Bucket=self.bucket, Key=self.key)["Body"].read()
        except s3_errors() as error:
            if error_code(error) in NOT_FOUND_CODES:
                return None
            raise self.convert(error, "reading the lock") from None
        try:
            data = json.loads(raw)
            created = datetime.fromisoformat(str(data["created"]))
            return LockHolder(str(data["holder"]), created, str(data["token"]))
        except (ValueError, KeyError, TypeError):
            return LockHolder("an unreadable lock object", None, "")

    @contextmanager
    def held(self, *, wait: float, break_lock: bool, notes: list[str],
             progress: Progress) -> Iterator[None]:
        """Hold the lock for the block: wait up to ``wait`` seconds for another holder,
        break a held lock once when ``break_lock`` (saying so in ``notes``).

        Raises PublishError naming the holder and its age when the lock stays
        taken, or when the server let another publisher take it too."""
        token = uuid.uuid4().hex
        self._take(token, wait=wait, break_lock=break_lock, notes=notes, progress=progress)
        current = self.read()
        if current is None or current.token != token:
            raise PublishError(
                f"lost the publish lock to {current.holder if current else 'nobody'}",
                where=self.display,
                hint="this S3 server seems to ignore If-None-Match; publish from one place only")
        try:
            yield
        finally:
            current = self.read()
            if current is not None and current.token == token:
                self.remove()

    def _take(self, token: str, *, wait: float, break_lock: bool, notes: list[str],
              progress: Progress) -> None:
        body = json.dumps({"holder": lock_holder_text(), "token": token,
                           "created": datetime.now(UTC).isoformat(timespec="seconds")},
                          sort_keys=True).encode()
        deadline = time.monotonic() + wait
        breaks_left = 1 if break_lock else 0
        while True:
            try:
                self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body,
                                       IfNoneMatch="*", ContentType="application/json",
                                       CacheControl=STATE_CACHE)
                return
            except s3_errors() as error:
                if error_code(error) not in _LOCK_TAKEN_CODES:
                    raise self.convert(error, "taking the publish lock") from None
            holder = self.read()
            if holder is None:
                continue  # released between our attempt and the read: try again
            if breaks_left:
                breaks_left -= 1
                notes.append(f"broke the lock held by {holder.holder} for {holder.age()}")
                progress(ProgressEvent(notes[-1]))
                self.remove()
                continue
            if time.monotonic() < deadline:
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
                continue
            raise PublishError(
                f"locked by {holder.holder} for {holder.age()}", where=self.display,
                hint="another publish is running: wait for it (--lock-wait SECONDS); "
                     "if it died, run again with --break-lock")

    def remove(self) -> None:
        """Delete the lock object (whoever holds it)."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key)
        except s3_errors() as error:
            raise self.convert(error, "removing the publish lock") from None
