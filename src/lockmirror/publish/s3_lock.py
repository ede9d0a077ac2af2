"""The publish lock of an S3 prefix: one object created with ``If-None-Match: *``.

AWS S3 (since 2024), MinIO, SeaweedFS and moto refuse the conditional put
when the object exists, so two publishers cannot both hold it. The object
is read back after creation, so a server that ignores the condition is
caught instead of trusted.

The lock says who holds it and when it expires (``lock_ttl`` seconds after
it was taken or last renewed; the holder renews it while it works). A lock
past its expiry -- its publisher was killed -- is taken over with a write
conditional on the dead holder's ETag (``If-Match``), so of two publishers
finding it expired only one wins, and the takeover is reported. Releasing
deletes the lock only while it is still this publisher's (``If-Match`` on
the delete, after reading it back); a publish that fails or is stopped releases
it too, through a client with short timeouts (a silent server cannot hold the
clean-up up), and when that fails too its error says the lock is left. A lock
whose holder ran on this host under a pid that is gone names it so: that
publish ended (``--break-lock`` clears it; it is never broken unasked).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from ..errors import LockmirrorError, PublishError
from ..net.s3_client import NOT_FOUND_CODES, STATE_CACHE, S3Client, error_code, s3_errors
from ..timeutil import as_utc
from .tree import Progress, ProgressEvent, lock_holder_text, process_gone

DEFAULT_TTL = 3600  # seconds a lock lives without renewal: a killed publisher's lock at most
_LOCK_TAKEN_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})

# (botocore error, what was being done) -> the lockmirror error to raise
Convert = Callable[[BaseException, str], LockmirrorError]


@dataclass(frozen=True)
class LockHolder:
    """Who holds a publish lock, read from the lock object."""

    holder: str
    created: datetime | None
    token: str
    expires: datetime | None = None
    etag: str = ""

    def expired(self, now: datetime, ttl: float) -> bool:
        """Past its expiry (a lock written without one: ``ttl`` after it was taken)."""
        end = self.expires or (self.created + timedelta(seconds=ttl) if self.created else None)
        return end is not None and now >= end

    def gone(self) -> int | None:
        """The holder's pid when it ran on this host and that process is gone."""
        return process_gone(self.holder)

    def describe(self, now: datetime, gone: int | None) -> str:
        """``locked by HOLDER for AGE, expires in N min`` (and that it ended, when it did:
        ``gone``, what :meth:`gone` said)."""
        until = f", expires in {_minutes(self.expires - now)}" if self.expires else ""
        ended = f"; the publish that held it ended (pid {gone} gone)" if gone else ""
        return f"locked by {self.holder} for {self.age(now)}{until}{ended}"

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
    # a client with short timeouts and one try, for releasing after a failure (made on use)
    cleanup_client: Callable[[], S3Client] | None = None

    def read(self) -> LockHolder | None:
        """The current lock holder, or None when the prefix is not locked."""
        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=self.key)
            raw, etag = reply["Body"].read(), str(reply.get("ETag", ""))
        except s3_errors() as error:
            if error_code(error) in NOT_FOUND_CODES:
                return None
            raise self.convert(error, "reading the lock") from None
        try:
            data = json.loads(raw)
            # naive times (another writer's) are UTC, as everywhere in lockmirror
            created = as_utc(datetime.fromisoformat(str(data["created"])))
            expires = (as_utc(datetime.fromisoformat(str(data["expires"])))
                       if "expires" in data else None)
            return LockHolder(str(data["holder"]), created, str(data["token"]), expires, etag)
        except (ValueError, KeyError, TypeError):
            return LockHolder("an unreadable lock object", None, "", None, etag)

    @contextmanager
    def held(self, *, wait: float, break_lock: bool, notes: list[str],
             progress: Progress, ttl: float = DEFAULT_TTL) -> Iterator[Lease]:
        """Hold the lock for the block: wait up to ``wait`` seconds for another holder,
        take over an expired lock, break a live one once when ``break_lock`` (each
        said in ``notes``). The block calls :meth:`Lease.renew` as it works.

        Raises PublishError naming the holder and its age when the lock stays
        taken, or when the server let another publisher take it too. The lock is
        released however the block ends; when releasing fails, the block's
        LockmirrorError says so in its hint (on success: a PublishError saying so)."""
        lease = Lease(self, uuid.uuid4().hex, ttl)
        self._take(lease, wait=wait, break_lock=break_lock, notes=notes, progress=progress)
        current = self.read()
        if current is None or current.token != lease.token:
            raise PublishError(
                f"lost the publish lock to {current.holder if current else 'nobody'}",
                where=self.display,
                hint="this S3 server seems to ignore If-None-Match; publish from one place only")
        lease.etag = current.etag
        try:
            yield lease
        except BaseException as error:
            left = self._release(lease, self.cleanup_client() if self.cleanup_client
                                 else self.client)
            if left and isinstance(error, LockmirrorError):
                error.hint = f"{error.hint}; {left}" if error.hint else left
            elif left:  # Ctrl-C, SIGTERM: their line is fixed; said before it
                progress(ProgressEvent(left, note=True))
            raise
        left = self._release(lease, self.client)
        if left:
            raise PublishError(f"published, but {left}", where=self.display)

    def _release(self, lease: Lease, client: S3Client) -> str | None:
        """Remove the lock while it is ``lease``'s; None when done (or not ours any
        more), else what the error line says: that it is left and how to clear it."""
        lock = replace(self, client=client)
        try:
            current = lock.read()
            if current is not None and current.token == lease.token:
                lock.remove(if_match=current.etag)
        except LockmirrorError as error:
            return (f"the publish lock is left held (releasing it failed: {error.message}); "
                    "the next publish needs --break-lock")
        return None

    def _take(self, lease: Lease, *, wait: float, break_lock: bool, notes: list[str],
              progress: Progress) -> None:
        deadline = time.monotonic() + wait
        breaks_left = 1 if break_lock else 0
        while True:
            if self._put(lease.body(), if_none_match=True, action="taking the publish lock"):
                return
            holder = self.read()
            if holder is None:
                continue  # released between our attempt and the read: try again
            now = datetime.now(UTC)
            expired = holder.expired(now, lease.ttl)
            if expired or breaks_left:
                if not expired:
                    breaks_left -= 1
                # conditional on the holder's ETag: of two takers one wins
                if not self._put(lease.body(), if_match=holder.etag,
                                 action="taking over the publish lock"):
                    continue
                notes.append(f"took over the expired lock of {holder.holder} "
                             f"(taken {holder.age(now)} ago)" if expired else
                             f"broke the lock held by {holder.holder} for {holder.age(now)}")
                progress(ProgressEvent(notes[-1], note=True))
                return
            if time.monotonic() < deadline:
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
                continue
            gone = holder.gone()
            raise PublishError(
                holder.describe(now, gone), where=self.display,
                hint="run again with --break-lock" if gone else
                     "another publish is running: wait for it (--lock-wait SECONDS); "
                     "if it died, run again with --break-lock")

    def _put(self, body: bytes, *, action: str, if_none_match: bool = False,
             if_match: str | None = None) -> str | None:
        """Write the lock object under a condition: its new ETag, or None when the
        condition failed (someone else holds or took it)."""
        condition: dict[str, str] = {"IfNoneMatch": "*"} if if_none_match else {}
        if if_match is not None:
            condition["IfMatch"] = if_match
        try:
            reply = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body,
                                           ContentType="application/json",
                                           CacheControl=STATE_CACHE, **condition)
        except s3_errors() as error:
            # taken; or (If-Match) the lock we matched is gone: NoSuchKey, not NoSuchBucket
            if error_code(error) in _LOCK_TAKEN_CODES or (
                    if_match is not None and error_code(error) in NOT_FOUND_CODES):
                return None
            raise self.convert(error, action) from None
        return str(reply.get("ETag", "")) or "written"

    def remove(self, *, if_match: str | None = None) -> None:
        """Delete the lock object: only the version ``if_match`` names, when given
        (a lock another publisher took over in the meantime stays)."""
        condition = {"IfMatch": if_match} if if_match else {}
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, **condition)
        except s3_errors() as error:
            if error_code(error) in _LOCK_TAKEN_CODES | NOT_FOUND_CODES:
                return
            raise self.convert(error, "removing the publish lock") from None


class Lease:
    """The lock this publisher holds: its token, lifetime and current ETag."""

    def __init__(self, lock: BucketLock, token: str, ttl: float) -> None:
        self.lock, self.token, self.ttl = lock, token, ttl
        self.created = datetime.now(UTC)
        self.etag = ""
        self._renewed = time.monotonic()
        self._guard = threading.Lock()

    def body(self) -> bytes:
        expires = datetime.now(UTC) + timedelta(seconds=self.ttl)
        return json.dumps({
            "holder": lock_holder_text(), "token": self.token,
            "created": self.created.isoformat(timespec="seconds"),
            "expires": expires.isoformat(timespec="seconds"),
        }, sort_keys=True).encode()

    def renew(self) -> None:
        """Push the expiry out again once a third of the lifetime has passed (cheap
        otherwise; any thread). Raises PublishError when the lock was taken over."""
        with self._guard:
            if time.monotonic() - self._renewed < self.ttl / 3:
                return
            etag = self.lock._put(self.body(), if_match=self.etag, action="renewing the lock")
            if etag is None:
                raise PublishError("lost the publish lock: it expired and another publisher "
                                   "took it over", where=self.lock.display,
                                   hint="raise lock_ttl for this destination")
            self.etag, self._renewed = etag, time.monotonic()


def _minutes(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"
