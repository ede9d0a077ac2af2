"""The fetch stage: every locked file, verified, into the content-addressed store.

Entry points:

* :func:`plan` lists the work: one :class:`FetchItem` per distinct sha256
  (every wheel and sdist of every lockfile, plus the PEP 658 metadata file of
  each wheel whose hash the lockfile records), with the sets that need it.
* :func:`missing` is the cheap "already current?" check (one ``stat`` per item);
  :func:`is_current` applies it to a loaded ``mirror.yaml``.
* :func:`fetch` downloads what is missing, in parallel, and returns a
  :class:`FetchSummary`. :func:`fetch_config` does the same for a loaded
  ``mirror.yaml`` (lockfiles of every set, source credentials, store path).

Guarantees:

* Verified before visible: bytes stream into ``<store>/tmp/<sha256>.partial``
  while their sha256 and size are computed, and only a match is renamed into
  ``<store>/sha256/..``. Bytes that differ from the lockfile are refused even
  when the server answers 200.
* Resumable: a partial download left by an interrupted run is re-hashed and
  continued with an HTTP ``Range`` request where the server honours one.
  Partials are locked (``flock``) while in use, so several processes sharing
  one store never write the same file.
* Crash-safe: a file the lockfile gives a size is present only with that
  size, any other only when not empty, so what a crash leaves of a file
  renamed before the disk had its bytes is fetched again; ``durable=True``
  (``--fsync``) writes each file to disk before naming it instead.
* Flat memory: bodies are streamed in 256 KiB chunks, never read whole.
* This module never prints; progress goes to a :class:`FetchProgress` handed
  in by the edge, results come back as a :class:`FetchSummary`.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import threading
import time
import urllib.parse
import zipfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

import requests
import urllib3.exceptions

from .errors import IntegrityError, LockmirrorError, NetworkError, NotFoundError
from .fsutil import atomic_writer, format_size
from .http import (
    Credentials,
    PrefixAuth,
    check_response,
    iter_raw_body,
    make_session,
    network_error,
    redact_url,
    source_auth,
)
from .index_client import wheel_metadata_member
from .lockfile import Lockfile
from .store import Store

if TYPE_CHECKING:
    from .config import LoadedConfig

# (connect, between bytes) seconds, for a caller's session without its own
# default. A slow server is fine; a silent one is retried.
TIMEOUT = (10.0, 60.0)
RETRIES = 4
BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
# Bytes read, hashed and written at a time. Measured on 1 GB: 256 KiB takes
# a quarter less CPU than 1 MiB (the chunk is still in the L2 cache when it is
# hashed and written) and less than 128 or 64 KiB (fewer calls).
CHUNK = 256 << 10
# Kept free beyond the bytes to download: filesystem overhead and whatever
# else writes to the same disk meanwhile.
FREE_SPACE_MARGIN = 64 << 20


# --------------------------------------------------------------------------
# What to fetch
# --------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class FetchItem:
    """One distinct file to have in the store (distinct by sha256)."""

    url: str
    sha256: str
    size: int | None  # None for PEP 658 metadata files: lockfiles record only their hash
    filename: str
    needed_by: tuple[str, ...]  # the package sets whose lockfiles name it, sorted
    is_metadata: bool = False
    wheel_sha256: str | None = None  # for a metadata file: the wheel it describes


def metadata_url(file_url: str) -> str:
    """The PEP 658 metadata URL of a wheel: its URL (without fragment) + ``.metadata``."""
    return urllib.parse.urldefrag(file_url).url + ".metadata"


def plan(lockfiles: Sequence[Lockfile]) -> list[FetchItem]:
    """Every file the lockfiles need, once per sha256, sorted by URL.

    A file named by several sets or targets (or by several lockfiles) becomes
    one item whose ``needed_by`` lists every set. Raises LockmirrorError for
    a locked file without a usable sha256. Costs nothing but memory.
    """
    found: dict[str, tuple[FetchItem, set[str]]] = {}

    def add(url: str, sha256: str, size: int | None, filename: str, set_name: str,
            is_metadata: bool, wheel_sha256: str | None = None) -> None:
        digest = sha256.lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise LockmirrorError(f"{filename} has no valid sha256 ({sha256!r})",
                                  where=f"lockfile of set '{set_name}'",
                                  hint="re-create it with `doit lock`")
        if digest in found:
            found[digest][1].add(set_name)
        else:
            item = FetchItem(url=urllib.parse.urldefrag(url).url, sha256=digest, size=size,
                             filename=filename, needed_by=(), is_metadata=is_metadata,
                             wheel_sha256=wheel_sha256)
            found[digest] = (item, {set_name})

    for lockfile in lockfiles:
        for _package, file in lockfile.iter_files():
            # size 0 means "not recorded" (PEP 751 makes it optional), except
            # for the one file whose bytes really are empty.
            size = file.size if file.size > 0 or file.sha256.lower() == _EMPTY_SHA256 else None
            add(file.url, file.sha256, size, file.filename, lockfile.set_name, False)
            if file.is_wheel and file.metadata_sha256:
                add(metadata_url(file.url), file.metadata_sha256, None,
                    file.filename + ".metadata", lockfile.set_name, True, file.sha256.lower())
    items = [
        FetchItem(url=item.url, sha256=item.sha256, size=item.size, filename=item.filename,
                  needed_by=tuple(sorted(sets)), is_metadata=item.is_metadata,
                  wheel_sha256=item.wheel_sha256)
        for item, sets in found.values()
    ]
    return sorted(items)


def missing(items: Sequence[FetchItem], store: Store) -> list[FetchItem]:
    """The items not yet in the store (one ``stat`` each; the name proves the hash).

    This is the stage's up-to-date check: empty means nothing to do. A file
    whose size the lockfile does not record must at least not be empty: that
    is what a crash can leave of a file renamed before the disk had its bytes
    (see ``durable`` in :func:`fetch`).
    """
    return [item for item in items if not _present(item, store)]


def _present(item: FetchItem, store: Store) -> bool:
    if item.size is not None or item.sha256 == _EMPTY_SHA256:
        return store.has(item.sha256, item.size)
    try:
        return store.path(item.sha256).stat().st_size > 0
    except FileNotFoundError:
        return False


_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


# --------------------------------------------------------------------------
# Progress and results
# --------------------------------------------------------------------------


class FetchProgress(Protocol):
    """What the edge hands in to show progress. Calls are serialized by the
    stage (never concurrent), so implementations need no locking."""

    def begin(self, files: int, total_bytes: int) -> None:
        """Before the first download: how many files and bytes are missing."""

    def advance(self, nbytes: int) -> None:
        """Bytes of a known-size file arrived (negative when a failed attempt's
        bytes were discarded and will be fetched again)."""

    def file_done(self, item: FetchItem, downloaded: bool) -> None:
        """One item is in the store (``downloaded`` False: another process did it)."""

    def end(self, summary: FetchSummary) -> None:
        """After the last download (not called when the stage raises)."""


@dataclass(frozen=True)
class FetchSummary:
    files: int  # distinct files the lockfiles need
    downloaded: int  # fetched by this run
    present: int  # already in the store
    downloaded_bytes: int  # received over the network by this run
    resumed_bytes: int  # taken from partial downloads of an earlier run
    present_bytes: int  # of files already in the store (known sizes only)
    seconds: float
    derived: int = 0  # PEP 658 metadata files read out of their verified wheels


    def describe(self) -> str:
        """One line for the edge to print."""
        text = (f"{plural(self.files, 'file')}: {self.downloaded} downloaded "
                f"({format_size(self.downloaded_bytes)}), {self.present} already present "
                f"({format_size(self.present_bytes)})")
        if self.derived:
            text += f", {plural(self.derived, 'metadata file')} read from their wheels"
        if self.resumed_bytes:
            text += f", {format_size(self.resumed_bytes)} resumed"
        text += f" in {self.seconds:.1f} s"
        if self.downloaded_bytes and self.seconds > 0:
            text += f" ({format_size(int(self.downloaded_bytes / self.seconds))}/s)"
        return text


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


# --------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------


def fetch(lockfiles: Sequence[Lockfile], store: Store, *,
          session: requests.Session | None = None, max_workers: int = 8,
          progress: FetchProgress | None = None,
          auth: Mapping[str, Credentials] | None = None,
          retries: int = RETRIES, backoff: float = BACKOFF_SECONDS,
          durable: bool = False) -> FetchSummary:
    """Bring every file of ``lockfiles`` (and each wheel's PEP 658 metadata)
    into ``store``; download only what is missing.

    ``session`` is shared by the worker threads (connection reuse); by default
    :func:`lockmirror.http.make_session` with ``retries``, ``backoff`` and a
    pool of ``max_workers`` connections. ``auth`` maps URL prefixes to
    (username, password), longest prefix wins (see
    :func:`lockmirror.http.source_auth`); without it the session's own auth
    applies. Connection errors, 5xx and 429 are retried by the session
    (urllib3, honouring ``Retry-After``; by this stage when the session does
    not retry itself); a body that breaks off is continued with a Range
    request, up to ``retries`` times, with exponential backoff from
    ``backoff`` seconds.

    ``durable`` fsyncs each file before naming it, so the store survives a
    power loss as it was; it costs the time the disk takes to write what was
    downloaded (about 1.3 s per GB on the benchmark machine, where the whole
    download takes 2 s). Without it a crash can leave a named file short or
    empty, which :func:`missing` (by size) sends to be downloaded again.

    Raises NotFoundError (404/410: the upstream deleted a locked file; names
    the sets that need it), IntegrityError (bytes differ from the lockfile),
    NetworkError (unreachable, refused credentials, or still failing after
    the retries), LockmirrorError (not enough free space, disk full). Per-file
    failures (404, mismatch) let the other downloads finish and are reported
    together; the others stop the run. In every case nothing unverified is
    in the store, and partial downloads are kept in ``<store>/tmp`` for the
    next run. Costs: the bytes of the missing files once over the network,
    one sha256 pass over them, memory of ``max_workers`` chunks of 256 KiB.
    """
    started = time.monotonic()
    items = plan(lockfiles)
    todo = missing(items, store)
    todo_keys = {item.sha256 for item in todo}
    present = [item for item in items if item.sha256 not in todo_keys]
    if todo:
        _check_free_space(todo, store)
    owned_session = session is None
    if session is None:
        session = make_session(retries=max(retries, 0), backoff=backoff,
                               pool_size=max(max_workers, 1))
    runner = _Runner(store, session, PrefixAuth(auth) if auth is not None else None,
                     _SerializedProgress(progress), retries=max(retries, 0), backoff=backoff,
                     durable=durable)
    derived = 0
    try:
        runner.progress.begin(len(todo), sum(item.size or 0 for item in todo))
        # Artifacts first; then each wheel's metadata is read out of the wheel
        # just verified (its locked hash must match), and downloaded only when
        # that fails: no request, and no dependence on the upstream serving it.
        runner.run([i for i in todo if not i.is_metadata], max_workers=max(max_workers, 1))
        rest = []
        for item in (i for i in todo if i.is_metadata):
            if _metadata_from_wheel(item, store):
                derived += 1
                runner.progress.file_done(item, False)
            else:
                rest.append(item)
        runner.run(rest, max_workers=max(max_workers, 1))
    finally:
        if owned_session:
            session.close()
    summary = FetchSummary(
        files=len(items), downloaded=runner.downloaded, derived=derived,
        present=len(present) + runner.raced,
        downloaded_bytes=runner.network_bytes, resumed_bytes=runner.resumed_bytes,
        present_bytes=sum(item.size or 0 for item in present),
        seconds=time.monotonic() - started)
    runner.progress.end(summary)
    return summary


def fetch_config(loaded: LoadedConfig, *, session: requests.Session | None = None,
                 max_workers: int = 8, progress: FetchProgress | None = None,
                 environ: Mapping[str, str] | None = None,
                 durable: bool = False) -> FetchSummary:
    """:func:`fetch` for a loaded ``mirror.yaml``: the lockfile of every set,
    the store at ``paths.store`` (or ``$LOCKMIRROR_STORE``), credentials of
    the sources from their environment variables.

    Raises StaleLockError when a set has no lockfile yet, UrlPolicyError when
    a lockfile names a URL no declared source may serve (before anything is
    opened or downloaded; see :mod:`lockmirror.url_policy`), plus what
    :func:`fetch` raises.
    """
    from .url_policy import check_lockfile_paths

    paths = [loaded.lockfile_path(name) for name in sorted(loaded.config.sets)]
    check_lockfile_paths(paths, loaded.config.sources)
    lockfiles = [Lockfile.read(path) for path in paths]
    return fetch(lockfiles, Store(loaded.store_dir), session=session, max_workers=max_workers,
                 progress=progress, auth=source_auth(loaded.config.sources, environ),
                 durable=durable)


def is_current(loaded: LoadedConfig) -> bool:
    """Whether every file the lockfiles of ``loaded`` need is in its store.

    The cheap up-to-date check for a task runner: reads the lockfiles and
    ``stat``s one path per file; no network, no hashing. False when a
    lockfile is missing or unreadable (the fetch itself then says why).
    """
    try:
        lockfiles = [Lockfile.read(loaded.lockfile_path(name))
                     for name in sorted(loaded.config.sets)]
    except LockmirrorError:
        return False
    return not missing(plan(lockfiles), Store(loaded.store_dir))


def _metadata_from_wheel(item: FetchItem, store: Store) -> bool:
    """Put a wheel's METADATA in the store from the verified wheel itself,
    when its bytes have the locked hash; False when they do not (or the wheel
    is absent), and the caller downloads the ``.metadata`` file instead."""
    if item.wheel_sha256 is None or not store.has(item.wheel_sha256):
        return False
    try:
        with zipfile.ZipFile(store.path(item.wheel_sha256)) as archive:
            member = wheel_metadata_member(archive, item.filename.removesuffix(".metadata"))
            data = archive.read(member) if member is not None else None
    except (OSError, zipfile.BadZipFile):
        return False
    if data is None or hashlib.sha256(data).hexdigest() != item.sha256:
        return False
    final = store.path(item.sha256)
    try:  # temp file beside it, 0644, renamed in only when complete (small: always synced)
        with atomic_writer(final) as handle:
            handle.write(data)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise LockmirrorError("the disk holding the store is full", where=str(store.root),
                                  hint="free some space or point paths.store / LOCKMIRROR_STORE "
                                       "at a bigger disk, then re-run") from None
        raise LockmirrorError(f"cannot write to the store: {exc.strerror}",
                              where=str(final)) from None
    return True


def _check_free_space(todo: Sequence[FetchItem], store: Store) -> None:
    tmp = store.temp_dir()
    needed = 0
    for item in todo:
        if item.size is None:
            continue
        try:
            already = store.partial_path(item.sha256).stat().st_size
        except FileNotFoundError:
            already = 0
        needed += max(item.size - already, 0)
    free = shutil.disk_usage(tmp).free
    if needed + FREE_SPACE_MARGIN > free:
        raise LockmirrorError(
            f"not enough free space for the store: {len(todo)} files need "
            f"{format_size(needed)}, the disk has {format_size(free)} free",
            where=str(store.root),
            hint="free some space, or point paths.store / LOCKMIRROR_STORE at a bigger disk")


class _SerializedProgress:
    """Forwards progress calls from the worker threads one at a time."""

    def __init__(self, target: FetchProgress | None) -> None:
        self._target = target
        self._lock = threading.Lock()

    def begin(self, files: int, total_bytes: int) -> None:
        if self._target is not None:
            with self._lock:
                self._target.begin(files, total_bytes)

    def advance(self, nbytes: int) -> None:
        if self._target is not None and nbytes:
            with self._lock:
                self._target.advance(nbytes)

    def file_done(self, item: FetchItem, downloaded: bool) -> None:
        if self._target is not None:
            with self._lock:
                self._target.file_done(item, downloaded)

    def end(self, summary: FetchSummary) -> None:
        if self._target is not None:
            with self._lock:
                self._target.end(summary)


class _Retry(Exception):
    """A transient failure: try again after ``delay`` seconds (None: backoff);
    ``error`` is what to raise when no attempt is left."""

    def __init__(self, error: LockmirrorError, delay: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.delay = delay


@dataclass
class _Shown:
    """Bytes of one item already counted on the progress bar."""

    bytes: int = 0


class _Stopped(Exception):
    """Another download failed fatally (or the run was interrupted)."""


class _Fatal(LockmirrorError):
    """Marks errors that stop the whole run (wrapped error in ``error``)."""

    def __init__(self, error: LockmirrorError) -> None:
        self.error = error
        super().__init__(str(error))


@dataclass
class _Runner:
    store: Store
    session: requests.Session
    auth: PrefixAuth | None  # None: the session's own
    progress: _SerializedProgress
    retries: int
    backoff: float
    durable: bool  # fsync before naming
    stop: threading.Event = field(default_factory=threading.Event)
    counters_lock: threading.Lock = field(default_factory=threading.Lock)
    syncers: ThreadPoolExecutor | None = None  # (fsync +) rename of verified files
    adoptions: list[Future[None]] = field(default_factory=list)
    downloaded: int = 0
    raced: int = 0  # finished by another process while this one waited
    network_bytes: int = 0
    resumed_bytes: int = 0

    @property
    def timeout(self) -> tuple[float, float]:
        """(connect, read) seconds: the session's default, else :data:`TIMEOUT`."""
        value = getattr(self.session, "default_timeout", None)
        return (float(value[0]), float(value[1])) if value else TIMEOUT

    @property
    def session_retries(self) -> int:
        """Retries the session makes by itself (urllib3) on connection errors,
        5xx and 429; when it makes none, this stage retries those too."""
        return int(getattr(self.session, "retries", 0))

    def run(self, todo: Sequence[FetchItem], *, max_workers: int) -> None:
        # Largest first: the long downloads overlap with many small ones
        # instead of finishing alone at the end.
        ordered = sorted(todo, key=lambda item: (-(item.size or 0), item.url))
        errors: list[LockmirrorError] = []
        fatal: LockmirrorError | None = None
        self.adoptions = []  # this call's only (artifacts and metadata are two calls)
        downloads = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="fetch")
        self.syncers = ThreadPoolExecutor(max_workers=max(2, max_workers // 2),
                                          thread_name_prefix="fetch-sync")
        try:
            pending: set[Future[None]] = {downloads.submit(self.fetch_one, item)
                                          for item in ordered}
            watching = 0
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                if not pending:
                    # Every download is over, so every adoption is submitted.
                    with self.counters_lock:
                        pending = set(self.adoptions[watching:])
                        watching = len(self.adoptions)
                for future in done:
                    error = future.exception()
                    if isinstance(error, _Fatal):
                        fatal = fatal or error.error
                        self.stop.set()
                    elif isinstance(error, LockmirrorError):
                        errors.append(error)
                    elif isinstance(error, _Stopped):
                        pass
                    elif error is not None:
                        self.stop.set()
                        raise error
        except BaseException:
            self.stop.set()  # e.g. KeyboardInterrupt: workers leave at their next chunk
            raise
        finally:
            downloads.shutdown(wait=True, cancel_futures=True)
            # Not cancelled: each holds an open, locked partial to adopt or close.
            self.syncers.shutdown(wait=True)
        if fatal is not None:
            raise fatal
        if errors:
            raise _combine(errors)

    # -- one file ------------------------------------------------------------

    def fetch_one(self, item: FetchItem) -> None:
        if self.stop.is_set():
            raise _Stopped()
        partial = self.store.partial_path(item.sha256)
        handle = _open_locked(partial)
        handed_over = False
        try:
            # Another process sharing the store may have finished it while we waited.
            if self.store.has(item.sha256, item.size):
                with self.counters_lock:
                    self.raced += 1
                self.progress.advance(item.size or 0)
                self.progress.file_done(item, False)
                return
            self._download(item, handle, partial)
            # fsync (durable) waits for the disk: a pool of its own does it,
            # so this download slot takes the next file meanwhile.
            assert self.syncers is not None
            future = self.syncers.submit(self._adopt_and_release, item, handle, partial)
            handed_over = True
            with self.counters_lock:
                self.adoptions.append(future)
        finally:
            if not handed_over:
                _release(handle, partial)

    def _adopt_and_release(self, item: FetchItem, handle: BinaryIO, partial: Path) -> None:
        try:
            self._adopt(item, handle, partial)
        except BaseException:
            self.stop.set()
            raise
        finally:
            _release(handle, partial)
        with self.counters_lock:
            self.downloaded += 1
        self.progress.file_done(item, True)

    def _download(self, item: FetchItem, handle: BinaryIO, partial: Path) -> None:
        """Bring ``handle`` to the verified bytes of ``item``, or raise."""
        shown = _Shown()
        restart_from_scratch = False
        last_error: LockmirrorError | None = None
        for attempt in range(self.retries + 1):
            if self.stop.is_set():
                raise _Stopped()
            if restart_from_scratch:
                _truncate(handle, partial, self.store)
                restart_from_scratch = False
            try:
                digest, length, resumed = self._transfer(item, handle, partial, shown)
            except _Retry as retry:
                last_error = retry.error
                self._show_held(item, handle, shown)
                if attempt < self.retries:
                    self._sleep(retry.delay if retry.delay is not None
                                else min(self.backoff * 2 ** attempt, MAX_BACKOFF_SECONDS))
                continue
            self._show_held(item, handle, shown)
            actual = digest.hexdigest()
            if actual == item.sha256 and (item.size is None or length == item.size):
                return  # verified: the caller adopts it
            if resumed:
                # The kept prefix may be what is wrong (from a server that
                # changed the file since): one fresh download decides.
                restart_from_scratch = True
                last_error = IntegrityError(
                    f"a resumed download of {_where(item)} did not verify "
                    f"(expected sha256 {item.sha256}, got {actual})")
                continue
            _discard(handle, partial)
            self.progress.advance(-shown.bytes)
            got = (f"got sha256 {actual} ({length} bytes)" if item.size is None
                   or length <= item.size else
                   f"got more bytes (stopped after {length}, whose sha256 is {actual})")
            raise IntegrityError(
                f"upstream bytes differ from the lockfile: expected sha256 {item.sha256}"
                f"{_size_text(item.size)}, {got}; refused (needed by {_sets_text(item)})",
                where=_where(item),
                hint="if the upstream really replaced the file, re-lock with `doit lock`")
        assert last_error is not None
        raise _Fatal(last_error)

    def _transfer(self, item: FetchItem, handle: BinaryIO, partial: Path,
                  shown: _Shown) -> tuple[hashlib._Hash, int, bool]:
        """One request: (re)hash the kept prefix, continue or restart, stream to
        the end. Returns (digest, total length, whether a prefix was reused)."""
        digest = hashlib.sha256()
        handle.flush()
        offset = os.fstat(handle.fileno()).st_size
        if item.size is not None and offset > item.size:
            offset = _truncate(handle, partial, self.store)
        if offset:
            handle.seek(0)
            remaining = offset
            while remaining:
                chunk = handle.read(min(CHUNK, remaining))
                if not chunk:
                    break
                digest.update(chunk)
                remaining -= len(chunk)
            if item.size is not None and offset == item.size:
                # Complete but never adopted (killed before the rename).
                with self.counters_lock:
                    self.resumed_bytes += offset
                return digest, offset, True
        if item.url.startswith("file://"):
            if offset:
                digest, offset = hashlib.sha256(), _truncate(handle, partial, self.store)
            return self._copy_local(item, handle, partial, digest, shown)

        # identity: the bytes exactly as stored upstream, which are what is hashed.
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            response = self.session.get(item.url, headers=headers, stream=True,
                                        timeout=self.timeout, auth=self.auth)
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            error = network_error(exc, item.url, retries=self.session_retries,
                                  read_timeout=self.timeout[1])
            if self.session_retries or isinstance(exc, requests.exceptions.SSLError):
                raise _Fatal(error) from None  # the session has retried already
            raise _Retry(error) from None
        except requests.exceptions.RequestException as exc:
            raise _Fatal(network_error(exc, item.url)) from None
        with response:
            status = response.status_code
            if status == 206 and offset:
                if not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                    _truncate(handle, partial, self.store)
                    raise _Retry(NetworkError(
                        f"cannot fetch {_where(item)}: the server answers Range requests with "
                        "other ranges"), delay=0)
                with self.counters_lock:
                    self.resumed_bytes += offset
            elif status == 200:
                if offset:  # the server ignores Range: start over
                    digest, offset = hashlib.sha256(), _truncate(handle, partial, self.store)
            elif status == 416:
                _truncate(handle, partial, self.store)
                raise _Retry(NetworkError(f"cannot fetch {_where(item)}: the server refuses "
                                          "to resume (HTTP 416)"), delay=0)
            else:
                self._fail_status(item, response)
            return self._stream(item, response, handle, partial, digest, offset, shown)

    def _stream(self, item: FetchItem, response: requests.Response, handle: BinaryIO,
                partial: Path, digest: hashlib._Hash, offset: int,
                shown: _Shown) -> tuple[hashlib._Hash, int, bool]:
        length = offset
        handle.seek(offset)
        # The bytes exactly as sent: a server that gzips a .tar.gz must not
        # change what is hashed (pip does the same). Pieces as they arrive, so
        # a stall reports (and keeps) every byte received before it.
        chunks = iter_raw_body(response, CHUNK)
        try:
            for chunk in chunks:
                if self.stop.is_set():
                    raise _Stopped()
                self._write(handle, partial, chunk)
                digest.update(chunk)
                length += len(chunk)
                with self.counters_lock:
                    self.network_bytes += len(chunk)
                if item.size is not None:
                    if length > item.size:
                        break  # longer than locked: cannot be the locked file
                    shown.bytes += len(chunk)
                    self.progress.advance(len(chunk))
        except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException,
                ConnectionError, TimeoutError) as exc:
            # Truncated or stalled body (urllib3 does not retry those): keep
            # what arrived and continue from there on the next attempt.
            handle.flush()
            error = network_error(exc, item.url, read_timeout=self.timeout[1])
            raise _Retry(NetworkError(
                f"{error.message} ({length} bytes received, after {self.retries} "
                f"{'retry' if self.retries == 1 else 'retries'})",
                hint="a re-run resumes from the bytes received")) from None
        handle.flush()
        return digest, length, offset > 0

    def _copy_local(self, item: FetchItem, handle: BinaryIO, partial: Path,
                    digest: hashlib._Hash, shown: _Shown) -> tuple[hashlib._Hash, int, bool]:
        import urllib.request  # file:// sources only; not worth its import time otherwise

        path = Path(urllib.request.url2pathname(urllib.parse.urlparse(item.url).path))
        length = 0
        try:
            source = open(path, "rb")  # noqa: SIM115 - closed by the `with` below
        except FileNotFoundError:
            raise NotFoundError(f"the locked file is missing; needed by {_sets_text(item)}",
                                where=_where(item),
                                hint="re-lock those sets with `doit lock`") from None
        except OSError as exc:
            raise _Fatal(LockmirrorError(f"cannot read: {exc.strerror}",
                                         where=_where(item))) from None
        with source:
            while chunk := source.read(CHUNK):
                if self.stop.is_set():
                    raise _Stopped()
                self._write(handle, partial, chunk)
                digest.update(chunk)
                length += len(chunk)
                if item.size is not None:
                    shown.bytes += len(chunk)
                    self.progress.advance(len(chunk))
        handle.flush()
        return digest, length, False

    def _write(self, handle: BinaryIO, partial: Path, chunk: bytes) -> None:
        try:
            view = memoryview(chunk)
            while view:  # a raw write may take only part of the chunk
                view = view[handle.write(view):]
        except OSError as exc:
            raise _Fatal(_disk_error(exc, self.store, partial, handle)) from None

    def _adopt(self, item: FetchItem, handle: BinaryIO, partial: Path) -> None:
        try:
            handle.flush()
            if self.durable:
                os.fsync(handle.fileno())
            os.chmod(partial, 0o644)
            self.store.adopt(partial, item.sha256)
        except OSError as exc:
            raise _Fatal(_disk_error(exc, self.store, partial, handle)) from None

    def _fail_status(self, item: FetchItem, response: requests.Response) -> None:
        status = response.status_code
        if status in (404, 410):
            kind = "metadata file" if item.is_metadata else "file"
            raise NotFoundError(
                f"the upstream no longer has this locked {kind} (HTTP {status}); "
                f"needed by {_sets_text(item)}",
                where=_where(item),
                hint="re-lock those sets with `doit lock` to pick what exists now")
        if status in (401, 403, 407):
            if "Authorization" in response.request.headers:
                detail, hint = ("the credentials sent were refused",
                                "check the values of the source's username_env/password_env")
            else:
                detail, hint = ("no credentials are configured for this URL",
                                "set username_env/password_env on its source in mirror.yaml")
            raise _Fatal(NetworkError(f"access denied (HTTP {status}): {detail}",
                                      where=_where(item), hint=hint))
        try:
            check_response(response, url=item.url)
        except LockmirrorError as error:
            if (status == 429 or status >= 500) and not self.session_retries:
                raise _Retry(error, delay=_retry_after(response)) from None
            raise _Fatal(error) from None
        raise _Fatal(NetworkError(f"cannot fetch {_where(item)}: unexpected HTTP {status}"))

    def _show_held(self, item: FetchItem, handle: BinaryIO, shown: _Shown) -> None:
        """Bring the progress bar to the bytes now held for ``item`` (after a
        retry some may have been discarded)."""
        if item.size is None:
            return
        handle.flush()
        held = min(os.fstat(handle.fileno()).st_size, item.size)
        self.progress.advance(held - shown.bytes)
        shown.bytes = held

    def _sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise _Stopped()


def _open_locked(path: Path) -> BinaryIO:
    """Open (creating) the partial file of one sha256 and hold an exclusive lock
    until :func:`_release`.

    Waits while another process holds it. If the file was renamed into the
    store or deleted while we waited, the lock is on a stale inode: reopen.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            if current is not None and current.st_ino == os.fstat(fd).st_ino:
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    # Unbuffered: every write reaches the kernel in _write, so a full disk
    # surfaces there (not later, in a flush or close).
    return os.fdopen(fd, "r+b", buffering=0)


def _release(handle: BinaryIO, path: Path) -> None:
    """Close a partial opened by :func:`_open_locked` (which releases the lock)."""
    # A partial that never received a byte is noise for the next run.
    # Removed while still locked, so a waiter sees a stale inode and reopens.
    try:
        fd = handle.fileno()
        if os.fstat(fd).st_size == 0 and os.stat(path).st_ino == os.fstat(fd).st_ino:
            path.unlink()
    except OSError:
        pass
    handle.close()


def _truncate(handle: BinaryIO, partial: Path, store: Store) -> int:
    try:
        handle.seek(0)
        handle.truncate(0)
    except OSError as exc:
        raise _Fatal(_disk_error(exc, store, partial, handle)) from None
    return 0


def _discard(handle: BinaryIO, partial: Path) -> None:
    handle.truncate(0)
    try:
        partial.unlink()
    except FileNotFoundError:
        pass


def _disk_error(exc: OSError, store: Store, partial: Path, handle: BinaryIO) -> LockmirrorError:
    # What could not be written is useless; free its space at once.
    try:
        _discard(handle, partial)
    except OSError:
        pass
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LockmirrorError("the disk holding the store is full", where=str(store.root),
                               hint="free some space or point paths.store / LOCKMIRROR_STORE "
                                    "at a bigger disk, then re-run")
    return LockmirrorError(f"cannot write to the store: {exc.strerror}", where=str(partial))


def _combine(errors: list[LockmirrorError]) -> LockmirrorError:
    errors = sorted(errors, key=str)
    if len(errors) == 1:
        return errors[0]
    kinds = {type(error) for error in errors}
    kind: Callable[..., LockmirrorError] = kinds.pop() if len(kinds) == 1 else LockmirrorError
    lines = "\n".join(f"  {error}" for error in errors)
    return kind(f"{len(errors)} locked files could not be fetched:\n{lines}")


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_BACKOFF_SECONDS * 2)


def _sets_text(item: FetchItem) -> str:
    names = ", ".join(item.needed_by)
    return f"set{'s' if len(item.needed_by) != 1 else ''} {names}"


def _size_text(size: int | None) -> str:
    return f" ({size} bytes)" if size is not None else ""


def _where(item: FetchItem) -> str:
    return redact_url(item.url)
