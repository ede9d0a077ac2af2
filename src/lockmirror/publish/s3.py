"""Publish a static index to an S3 bucket (AWS or any S3-compatible server).

How the remote state is learned cheaply: one paginated ``list_objects_v2``
under the prefix gives every key's size and ETag; the receipt object
(``<prefix>.lockmirror/receipt.json``, written at the end of every publish)
maps each key to the sha256 and ETag it had when lockmirror uploaded it. A
key whose size and ETag match the receipt is current without a request;
only keys the receipt does not vouch for are asked with ``head_object``
(lockmirror keeps each object's sha256 in its ``x-amz-meta-sha256``). The
receipt's own metadata holds a digest of its entries: when the tree as
listed gives the same digest, a HEAD of the receipt proves it current and
it is not read. A no-op publish therefore costs one listing page per 1000
keys and one HEAD, through one boto3 client (whose creation is most of a
no-op's time).

Order: files (in parallel; multipart above 8 MiB), documents, project pages,
root pages, ``manifest.json``; deletions (``--prune``) after that, of keys the
receipt says lockmirror uploaded only (others under the prefix are left). A phase
starts only when the one before it fully succeeded, so a failure leaves the
pages that clients read exactly as they were.

Pages are uploaded twice: ``simple/<p>/index.html`` and the "directory key"
``simple/<p>/``, so that the REST endpoint (which has no index documents)
answers pip's ``GET .../simple/<p>/`` (see docs/publish.md). Servers that
store keys ending in ``/`` as folders (SeaweedFS) need
``directory_keys: false`` and an S3 website endpoint or a CDN rule instead.

Two publishers are kept apart by a lock object (:mod:`.s3_lock`). The
client and the conversion of botocore's errors are in :mod:`.s3_client`.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from ..config_schema import S3Destination
from ..errors import LockmirrorError, PublishError
from ..formats.pages import cache_control, content_type
from ..fsutil import format_size, plural, sha256_bytes, sha256_file
from ..net.s3_client import (
    DEFAULT_JOBS,
    MULTIPART_THRESHOLD,
    NOT_FOUND_CODES,
    Listed,
    S3Client,
    convert_error,
    error_code,
    list_objects,
    make_client,
    s3_errors,
    transfer_config,
)
from .s3_lock import BucketLock, Lease, LockHolder
from .s3_receipt import parse_receipt, receipt_for, split_stale, write_receipt
from .tree import (
    Item,
    Plan,
    Progress,
    ProgressEvent,
    PublishResult,
    SourceTree,
    Step,
    conflict,
    first_lines,
    is_artifact,
    no_progress,
    upload_steps,
)

STATE_DIR = ".lockmirror/"
RECEIPT_KEY = STATE_DIR + "receipt.json"
LOCK_KEY = STATE_DIR + "lock.json"


def normalize_prefix(prefix: str) -> str:
    """``a/b`` -> ``a/b/``; empty stays empty."""
    cleaned = prefix.strip("/")
    return f"{cleaned}/" if cleaned else ""


class S3Publisher:
    """The S3 implementation of :class:`lockmirror.publish.Publisher`."""

    def __init__(self, destination: S3Destination, *, jobs: int = DEFAULT_JOBS,
                 break_lock: bool = False, lock_wait: float = 0.0,
                 progress: Progress = no_progress, client: S3Client | None = None) -> None:
        self.destination = destination
        self.bucket = destination.bucket
        self.prefix = normalize_prefix(destination.prefix)
        self.display = f"s3://{self.bucket}/{self.prefix}"
        self.jobs = max(1, jobs)
        self.break_lock = break_lock
        self.lock_wait = lock_wait
        self.progress = progress
        self._client = client
        self._cleanup_client: S3Client | None = None
        # key (relative to the prefix) -> (sha256, etag) known to be current
        self._known: dict[str, tuple[str, str]] = {}
        self._receipt: dict[str, tuple[str, str]] = {}
        self._receipt_vouched = False  # the receipt's digest vouched for the listing
        self._listing: dict[str, Listed] = {}
        # key -> (sha256 in its metadata, ETag) as a HEAD of this run answered
        self._heads: dict[str, tuple[str | None, str]] = {}
        self._lease: Lease | None = None  # the publish lock while apply() holds it

    # ------------------------------------------------------------------
    # client and errors
    # ------------------------------------------------------------------

    @property
    def client(self) -> S3Client:
        if self._client is None:
            self._client = make_client(self.destination, pool=self.jobs + 4)
        return self._client

    def cleanup_client(self) -> S3Client:
        """A client for the clean-up after a failure (receipt, lock): one try, short
        timeouts, so that a server that stopped answering holds it up briefly."""
        if self._cleanup_client is None:
            self._cleanup_client = make_client(self.destination, pool=2, attempts=1,
                                               read_timeout=3)
        return self._cleanup_client

    @property
    def endpoint(self) -> str:
        return str(self.client.meta.endpoint_url)

    def _convert(self, error: BaseException, action: str, key: str | None = None
                 ) -> LockmirrorError:
        return convert_error(error, action=action, bucket=self.bucket,
                             where=self.display + (key or ""),
                             endpoint=self.destination.endpoint_url)

    # ------------------------------------------------------------------
    # planning
    # ------------------------------------------------------------------

    def wanted(self, tree: SourceTree) -> list[Item]:
        """The tree's items plus a directory key beside every ``simple/**/index.html``."""
        items = tree.items()
        if self.destination.directory_keys:
            for item in list(items):
                if item.path.startswith("simple/") and item.path.endswith("/index.html"):
                    items.append(Item(item.path[: -len("index.html")], item.source,
                                      item.sha256, item.size))
        return items

    def plan(self, tree: SourceTree, *, prune: bool = False) -> Plan:
        """Compare the tree with the bucket. Costs one listing (paginated), a
        HEAD of the receipt (a GET too unless its digest vouches for the listing),
        and a HEAD for each key the receipt does not vouch for that is the same
        size or an artifact (none after a publish by lockmirror), and a GET of the
        lock when one is there (to name its holder). Raises PublishError
        for unreachable endpoints, refused credentials and missing buckets."""
        self._listing = self._list()
        self._receipt_vouched = False
        wanted = self.wanted(tree)
        self._receipt = self._receipt_for(wanted) if RECEIPT_KEY in self._listing else {}
        upload, present, conflicts = self._compare(wanted)
        names = {item.path for item in wanted}
        stale, foreign = split_stale(self._receipt, {
            key: remote.etag for key, remote in self._listing.items()
            if key not in names and not key.startswith(STATE_DIR)})
        self._known.update((key, self._receipt[key]) for key in stale)  # the receipt keeps them
        holder = self._lock().read() if LOCK_KEY in self._listing and not self._lease else None
        return tree.guard(Plan(destination=self.display, upload=tuple(upload),
                               present=tuple(present), stale=stale,
                               delete=stale if prune else (), foreign=foreign,
                               conflicts=tuple(conflicts),
                               locked=holder.describe(datetime.now(UTC), holder.gone())
                               if holder else ""))

    def _list(self) -> dict[str, Listed]:
        try:
            return list_objects(self.client, self.bucket, self.prefix)
        except s3_errors() as error:
            raise self._convert(error, "listing the bucket") from None

    def _receipt_for(self, wanted: list[Item]) -> dict[str, tuple[str, str]]:
        """The receipt, for comparing ``wanted`` with the listing. A HEAD first:
        when the receipt's digest (its metadata) is that of ``wanted`` as listed
        (each sha256 with the ETag the listing gives), it vouches for exactly
        them and is not read (a no-op costs list and HEAD requests only);
        otherwise one GET."""
        listed = {item.path: (item.sha256, self._listing[item.path].etag) for item in wanted
                  if item.path in self._listing
                  and self._listing[item.path].size == item.size}
        receipt, self._receipt_vouched = receipt_for(
            self.client, self.bucket, self.prefix + RECEIPT_KEY, listed,
            complete=len(listed) == len(wanted),
            convert=lambda error: self._convert(error, "reading the receipt", RECEIPT_KEY))
        return receipt

    def _compare(self, wanted: list[Item]) -> tuple[list[Item], list[Item], list[str]]:
        """(upload, present, conflicts) of ``wanted``, in its order. A wheel or sdist
        under its name that lockmirror did not put there (the receipt does not name the
        key) with other bytes is a conflict, never overwritten (as the upload API's)."""
        upload: list[Item] = []
        present: list[Item] = []
        conflicts: list[str] = []
        unsure: list[Item] = []

        def ours(item: Item) -> bool:  # lockmirror put it there, or it is no artifact
            return item.path in self._receipt or not is_artifact(item.path)

        for item in wanted:
            remote = self._listing.get(item.path)
            if remote is None or (remote.size != item.size and ours(item)):
                upload.append(item)
            elif self._receipt.get(item.path) == (item.sha256, remote.etag):
                present.append(item)
                self._known[item.path] = (item.sha256, remote.etag)
            else:
                unsure.append(item)
        self._ask_sha256(unsure)
        for item in unsure:
            (sha, etag), size = self._heads[item.path], self._listing[item.path].size
            if sha == item.sha256 and size == item.size:
                present.append(item)
                self._known[item.path] = (item.sha256, etag)
            elif ours(item):
                upload.append(item)
            else:
                conflicts.append(conflict(item, size, sha))
        order = {item.path: index for index, item in enumerate(wanted)}
        return (sorted(upload, key=lambda item: order[item.path]),
                sorted(present, key=lambda item: order[item.path]), conflicts)

    def _ask_sha256(self, unsure: list[Item]) -> None:
        """HEAD each of ``unsure`` for its sha256 into ``_heads``, unless this run
        already did for the ETag listed (the plan made again under the lock)."""
        asked = [item for item in unsure
                 if self._heads.get(item.path, (None, ""))[1] != self._listing[item.path].etag]
        if not asked:
            return
        self.progress(ProgressEvent(f"checking {plural(len(asked), 'object')} the receipt "
                                    "does not vouch for"))
        with ThreadPoolExecutor(self.jobs) as pool:
            for item, answer in zip(asked, pool.map(self._remote_sha256, asked), strict=True):
                self._heads[item.path] = answer

    def _remote_sha256(self, item: Item) -> tuple[str | None, str]:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.prefix + item.path)
        except s3_errors() as error:
            if error_code(error) in NOT_FOUND_CODES:
                return None, ""
            raise self._convert(error, "reading object metadata", item.path) from None
        return head.get("Metadata", {}).get("sha256"), str(head.get("ETag", ""))

    # ------------------------------------------------------------------
    # applying
    # ------------------------------------------------------------------

    def run(self, tree: SourceTree, *, prune: bool = False) -> PublishResult:
        """:meth:`plan`, then :meth:`apply` (which re-plans under the lock)."""
        return self.apply(tree, self.plan(tree, prune=prune), prune=prune)

    def apply(self, tree: SourceTree, plan: Plan, *, prune: bool = False) -> PublishResult:
        """Carry out ``plan`` under the bucket lock (re-planned once the lock is held).

        Raises PublishError (the bucket's pages untouched when files failed),
        IntegrityError when a tree file does not match the manifest. Costs the
        upload of what differs; nothing but the planning requests for a no-op.
        """
        if plan.empty and not plan.conflicts:
            # other contents, or no digest (an older lockmirror's): saves the next no-op a GET
            if self._receipt != self._known or not self._receipt_vouched:
                self._write_receipt()
            return PublishResult(destination=self.display, plan=plan, dry_run=False)
        uploaded: list[str] = []
        deleted: list[str] = []
        notes: list[str] = []
        with self._lock().held(wait=self.lock_wait, break_lock=self.break_lock, notes=notes,
                               progress=self.progress,
                               ttl=self.destination.lock_ttl) as lease:
            self._lease = lease
            plan = self.plan(tree, prune=prune)  # the bucket may have changed while we waited
            try:
                pool = ThreadPoolExecutor(self.jobs)
                try:
                    # a conflict is refused once the files went, before a page links it
                    for step in upload_steps(plan, uploaded):
                        self.progress(ProgressEvent(
                            f"uploading {step.describe()} "
                            f"({format_size(sum(i.size for i in step.items))})",
                            0, len(step.items)))
                        self._run_step(pool, tree, step, uploaded)
                except BaseException:
                    # Ctrl-C, SIGTERM: the queued uploads never start, and those under way
                    # are not waited for (a frozen server would hold them until its
                    # client timeouts); the receipt and the lock are seen to at once
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
                pool.shutdown()
                if plan.delete:
                    deleting = plural(len(plan.delete), "stale object")
                    self.progress(ProgressEvent(f"deleting {deleting}"))
                    self._delete(plan.delete, deleted)
            except BaseException:
                # what did get uploaded is remembered, so the next run skips it
                self._write_receipt(self.cleanup_client())
                raise
            self._write_receipt()
        return PublishResult(destination=self.display, plan=plan, dry_run=False,
                             uploaded=tuple(uploaded), deleted=tuple(deleted), notes=tuple(notes))

    def _run_step(self, pool: ThreadPoolExecutor, tree: SourceTree, step: Step,
                  uploaded: list[str]) -> None:
        items = step.items
        stop = threading.Event()
        done = 0
        lock = threading.Lock()

        def one(item: Item) -> None:
            nonlocal done
            if stop.is_set():
                return
            try:
                etag = self._put(tree, item)
            except BaseException:
                stop.set()
                raise
            with lock:
                self._known[item.path] = (item.sha256, etag)
                uploaded.append(item.path)
                done += 1
                count = done
            if self._lease is not None:
                self._lease.renew()  # a long publish keeps its lock alive
            self.progress(ProgressEvent(f"uploaded {item.path}", count, len(items), detail=True))

        # largest first: a big file started last would leave the other workers idle at
        # the phase barrier
        futures: list[tuple[Item, Future[None]]] = [
            (item, pool.submit(one, item)) for item in sorted(items, key=lambda i: -i.size)]
        problems: list[LockmirrorError] = []
        for item, future in futures:
            error = future.exception()
            if error is not None:
                problems.append(error if isinstance(error, LockmirrorError)
                                else self._convert(error, "uploading", item.path))
        if problems:
            raise step.failure(problems, self.display)

    def _put(self, tree: SourceTree, item: Item) -> str:
        path = tree.root / item.source
        key = self.prefix + item.path
        extra: dict[str, Any] = {"ContentType": content_type(item.path),
                                 "CacheControl": cache_control(item.path),
                                 "Metadata": {"sha256": item.sha256}}
        if tree.in_store(item):
            return self._copy_from_store(tree.store, item, key, extra)
        if item.size < MULTIPART_THRESHOLD:
            data = path.read_bytes()
            item.check_bytes(path, len(data), sha256_bytes(data))
            try:
                answer = self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=data,
                    ChecksumSHA256=base64.b64encode(bytes.fromhex(item.sha256)).decode(), **extra)
            except s3_errors() as error:
                raise self._convert(error, "uploading", item.path) from None
            return str(answer["ETag"])
        item.check_bytes(path, os.stat(path).st_size, sha256_file(path))
        try:
            self.client.upload_file(str(path), self.bucket, key, ExtraArgs=extra,
                                    Config=transfer_config())
            return str(self.client.head_object(Bucket=self.bucket, Key=key)["ETag"])
        except s3_errors() as error:
            raise self._convert(error, "uploading", item.path) from None

    def _copy_from_store(self, store: Any, item: Item, key: str, extra: dict[str, Any]) -> str:
        """Bring a file of the S3 store to ``key``, streamed through the runner
        and hashed as it passes (multipart above 8 MiB, completed only after
        the last byte matched). IntegrityError naming the store's key when its
        bytes differ from ``item``'s sha256: then nothing is written to ``key``.

        Not a server-side CopyObject: it checks nothing, and with
        ``ChecksumAlgorithm`` the copy's checksum is known only once the copy
        already stands at ``key`` carrying the sha256 metadata that vouches for
        it (a publish killed before deleting it leaves bad bytes a later publish
        calls present); S3-compatible servers differ in support, and copies
        above 5 GiB get per-part checksums.
        """
        try:
            with store.reader(item.sha256, item.size, item.path) as body:
                self.client.upload_fileobj(body, self.bucket, key, ExtraArgs=extra,
                                           Config=transfer_config())
            return str(self.client.head_object(Bucket=self.bucket, Key=key)["ETag"])
        except s3_errors() as error:
            raise self._convert(error, "copying from the store", item.path) from None

    def _delete(self, keys: Sequence[str], deleted: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            try:
                answer = self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": self.prefix + key} for key in batch], "Quiet": True})
            except s3_errors() as error:
                raise self._convert(error, "deleting stale objects") from None
            failed = {str(e.get("Key", ""))[len(self.prefix):]: str(e.get("Code"))
                      for e in answer.get("Errors", [])}
            deleted += [key for key in batch if key not in failed]
            for key in batch:
                self._known.pop(key, None)
            if failed:
                raise PublishError(f"{plural(len(failed), 'stale object')} could not be deleted: "
                                   f"{first_lines([f'{k} ({c})' for k, c in failed.items()])}",
                                   where=self.display)

    def _write_receipt(self, after_failure: S3Client | None = None) -> None:
        """Write the receipt of what is known current; ``after_failure``: the clean-up
        client, whose errors are dropped (the failure is what the user needs to see)."""
        try:
            write_receipt(after_failure or self.client, self.bucket,
                          self.prefix + RECEIPT_KEY, self._known)
            self._receipt = dict(self._known)
            self._receipt_vouched = True
        except s3_errors() as error:
            if after_failure is None:
                raise self._convert(error, "writing the receipt", RECEIPT_KEY) from None

    # ------------------------------------------------------------------
    # the lock
    # ------------------------------------------------------------------

    def _lock(self) -> BucketLock:
        return BucketLock(self.client, self.bucket, self.prefix + LOCK_KEY, self.display,
                          lambda error, action: self._convert(error, action, LOCK_KEY),
                          self.cleanup_client)

    def read_lock(self) -> LockHolder | None:
        """The current lock holder, or None when the prefix is not locked."""
        return self._lock().read()


__all__ = ["DEFAULT_JOBS", "LOCK_KEY", "RECEIPT_KEY", "LockHolder", "S3Publisher", "cache_control",
           "content_type", "convert_error", "make_client", "parse_receipt"]
