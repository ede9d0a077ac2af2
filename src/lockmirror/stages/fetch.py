"""The fetch stage: every locked file, verified, into the content-addressed store.

Entry points:

* :func:`fetch_config` runs the stage for a loaded ``mirror.yaml`` (lockfiles
  of every set, URL rules, source credentials, store path) and returns a
  :class:`FetchSummary`; :func:`fetch` does the same for given lockfiles.
* What to do is :mod:`lockmirror.stages.fetch_plan`'s: ``plan`` (one item
  per distinct sha256, with the sets that need it) and ``missing`` (the cheap
  "already current?" check, one ``stat`` per item); doit's up-to-date check
  and gc use them without loading the HTTP stack this module needs.

Steps of :func:`fetch`: plan, keep what is missing, check free space,
download the artifacts (a ``ThreadPoolExecutor`` of network downloads, each
one file's transfer in :mod:`lockmirror.net.download`), then read each wheel's
PEP 658 metadata out of the verified wheel (downloading only what does not
match), then summarize.

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

import hashlib
import shutil
import threading
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import requests

from ..errors import LockmirrorError
from ..formats.core_metadata import MetadataTooLarge, zip_metadata
from ..formats.store import FetchItem, store_write_error
from ..fsutil import format_size, plural, sha256_stream
from ..net.download import Downloader, Fatal, Stopped, sets_text, wrong_locked_size
from ..net.http import Credentials, PrefixAuth, make_session, source_auth
from ..net.s3_store import AnyStore, S3Store, store_of
from .fetch_plan import missing, plan

if TYPE_CHECKING:
    from pathlib import Path

    from ..config import LoadedConfig
    from ..config_schema import SourceConfig
    from ..formats.lockfile import Lockfile

RETRIES = 4  # the session's (urllib3) retries, and resumes of a broken-off body
BACKOFF_SECONDS = 0.5
# While downloads run, the progress hears this often that time passes (a stalled
# server sends no byte that would make it print).
TICK_SECONDS = 1.0
# Kept free beyond the bytes to download: filesystem overhead and whatever
# else writes to the same disk meanwhile.
FREE_SPACE_MARGIN = 64 << 20


def fetch_config(loaded: LoadedConfig, *, session: requests.Session | None = None,
                 max_workers: int = 8, progress: FetchProgress | None = None,
                 environ: Mapping[str, str] | None = None,
                 durable: bool = False, also: Sequence[Path] = (),
                 kept: Sequence[Path] = (), sets: Sequence[str] | None = None,
                 targets: Sequence[str] | None = None) -> FetchSummary:
    """:func:`fetch` for a loaded ``mirror.yaml``: the lockfile of every set
    (or of ``sets``; the files of ``targets`` only: :mod:`lockmirror.stages.shard`),
    the store at ``paths.store`` (or ``$LOCKMIRROR_STORE``), credentials of
    the sources from their environment variables; ``also``: more lockfiles
    (the tool set's, :mod:`lockmirror.stages.tool_set`); ``kept``: earlier
    lock revisions ``retention:`` keeps, already checked under today's sources
    when retention chose them (:func:`lockmirror.stages.retention.under_sources`,
    any declared source: a project moved to another must not stop the mirror
    serving the previous lock); here only by the rules that need no source.

    Raises StaleLockError when a set has no lockfile yet, UrlPolicyError when
    a lockfile names a URL no declared source may serve (before anything is
    opened or downloaded; see :mod:`lockmirror.formats.url_policy`), plus what
    :func:`fetch` raises.
    """
    from ..formats.url_policy import read_checked_lockfiles
    from .shard import for_targets

    names = sorted(loaded.config.sets if sets is None else sets)
    paths = [loaded.lockfile_path(name) for name in names] + list(also)
    # each parsed once
    lockfiles = for_targets(read_checked_lockfiles(paths, loaded.config.sources)
                            + read_checked_lockfiles(kept, None), targets)
    return fetch(lockfiles, store_of(loaded), session=session, max_workers=max_workers,
                 progress=progress, auth=source_auth(loaded.config.sources, environ),
                 durable=durable, sources=loaded.config.sources)


# --------------------------------------------------------------------------
# Progress and results
# --------------------------------------------------------------------------


class FetchProgress(Protocol):
    """What the edge hands in to show progress. Calls are serialized by the
    stage (never concurrent), so implementations need no locking."""

    def begin(self, files: int, total_bytes: int, metadata: int = 0) -> None:
        """Before the first download: how many artifacts (and their bytes) are
        missing, and how many wheel metadata files (read out of their wheels
        where they match, downloaded otherwise). ``file_done`` is called once
        for each of the ``files + metadata``."""

    def advance(self, nbytes: int) -> None:
        """Bytes of a known-size file arrived (negative when a failed attempt's
        bytes were discarded and will be fetched again)."""

    def file_done(self, item: FetchItem, downloaded: bool) -> None:
        """One item is in the store (``downloaded`` False: another process did it)."""

    def tick(self) -> None:
        """About every :data:`TICK_SECONDS` while downloads run, bytes arriving or
        not: a renderer that prints now and then prints when due."""

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
    notes: tuple[str, ...] = ()  # retention's (a shallow clone...), for the edge to print

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


# --------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------


def fetch(lockfiles: Sequence[Lockfile], store: AnyStore, *,
          session: requests.Session | None = None, max_workers: int = 8,
          progress: FetchProgress | None = None,
          auth: Mapping[str, Credentials] | None = None,
          retries: int = RETRIES, backoff: float = BACKOFF_SECONDS,
          durable: bool = False, sources: Sequence[SourceConfig] = ()) -> FetchSummary:
    """Bring every file of ``lockfiles`` (and each wheel's PEP 658 metadata)
    into ``store``; download only what is missing.

    ``session`` is shared by the worker threads (connection reuse); by default
    :func:`lockmirror.net.http.make_session` with ``retries``, ``backoff`` and a
    pool of ``max_workers`` connections. ``auth`` maps URL prefixes to
    (username, password), longest prefix wins (see
    :func:`lockmirror.net.http.source_auth`); without it the session's own auth
    applies. Connection errors, 5xx and 429 are retried by the session
    (urllib3's ``Retry``, honouring ``Retry-After``: the one retry policy);
    a body that breaks off or stalls is continued with a Range request from
    the bytes received, up to ``retries`` times (see
    :meth:`lockmirror.net.download.Downloader._download`). A redirect is
    followed only to the file URL's origin or to a file location one of
    ``sources`` declares (:mod:`lockmirror.net.redirects`); any other stops the
    run (NetworkError naming the URL and where it led).

    ``durable`` fsyncs each file before naming it (in its download thread),
    so the store survives a power loss as it was; it costs the time the disk
    takes to write what was downloaded. Without it a crash can leave a named file short or
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
    _refuse_wrong_locked_sizes(todo, store)
    if todo and not isinstance(store, S3Store):  # an S3 store stages files in flight only
        _check_free_space(todo, store)
    workers = max(max_workers, 1)
    owned_session = session is None
    if session is None:
        session = make_session(retries=max(retries, 0), backoff=backoff, pool_size=workers)
    serialized = _SerializedProgress(progress)
    downloader = Downloader(store, session, PrefixAuth(auth) if auth is not None else None,
                            serialized, resumes=max(retries, 0), durable=durable,
                            sources=tuple(sources))
    derived = 0
    try:
        artifacts = [i for i in todo if not i.is_metadata]
        metadata = [i for i in todo if i.is_metadata]
        serialized.begin(len(artifacts), sum(i.size or 0 for i in artifacts), len(metadata))
        # Artifacts first; then each wheel's metadata is read out of the wheel
        # just verified (its locked hash must match), and downloaded only when
        # that fails: no request, and no dependence on the upstream serving it.
        _download_all(downloader, artifacts, workers, serialized)
        rest = []
        for item in metadata:
            if _metadata_from_wheel(item, store):
                derived += 1
                serialized.file_done(item, False)
            else:
                rest.append(item)
        _download_all(downloader, rest, workers, serialized)
    finally:
        if owned_session:
            session.close()
    tally = downloader.tally
    summary = FetchSummary(
        files=len(items), downloaded=tally.downloaded, derived=derived,
        present=len(present) + tally.raced,
        downloaded_bytes=tally.network_bytes, resumed_bytes=tally.resumed_bytes,
        present_bytes=sum(item.size or 0 for item in present) + tally.raced_bytes,
        seconds=time.monotonic() - started)
    serialized.end(summary)
    return summary


def _download_all(downloader: Downloader, todo: Sequence[FetchItem], workers: int,
                  progress: _SerializedProgress) -> None:
    """Download ``todo`` on ``workers`` threads (network concurrency only),
    ticking ``progress`` every :data:`TICK_SECONDS` while they run.

    A :class:`~lockmirror.net.download.Fatal` error stops the others at their next
    chunk and is raised; per-file errors (404, mismatch) let the others finish
    and are raised together.
    """
    # Largest first: the long downloads overlap with many small ones instead
    # of finishing alone at the end.
    ordered = sorted(todo, key=lambda item: (-(item.size or 0), item.url))
    errors: list[LockmirrorError] = []
    fatal: LockmirrorError | None = None
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch")
    try:
        pending: set[Future[None]] = {pool.submit(downloader.fetch_one, i) for i in ordered}
        while pending:
            done, pending = wait(pending, timeout=TICK_SECONDS, return_when=FIRST_EXCEPTION)
            progress.tick()  # due lines are printed while a server stalls too
            for future in done:
                error = future.exception()
                if isinstance(error, Fatal):
                    fatal = fatal or error.error
                    downloader.stop.set()
                elif isinstance(error, LockmirrorError):
                    errors.append(error)
                elif error is not None and not isinstance(error, Stopped):
                    downloader.stop.set()
                    raise error
    except BaseException:
        downloader.stop.set()  # e.g. KeyboardInterrupt: workers leave at their next chunk
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if fatal is not None:
        raise fatal
    if errors:
        raise _combine(errors)


def _combine(errors: list[LockmirrorError]) -> LockmirrorError:
    errors = sorted(errors, key=str)
    if len(errors) == 1:
        return errors[0]
    kinds = {type(error) for error in errors}
    kind: Callable[..., LockmirrorError] = kinds.pop() if len(kinds) == 1 else LockmirrorError
    lines = "\n".join(f"  {error}" for error in errors)
    return kind(f"{plural(len(errors), 'locked file')} could not be fetched:\n{lines}")


def _refuse_wrong_locked_sizes(todo: Sequence[FetchItem], store: AnyStore) -> None:
    """Before any download, refuse a file the store holds under its locked sha256
    with another size than locked, when those bytes do have that sha256: the
    lockfile's size is wrong (a hand edit), and a download could only find the
    same. A store file that does not hash to its name (what a crash can leave) is
    fetched again as any missing file. Costs one read of each such file only."""
    errors: list[LockmirrorError] = []
    for item in todo:
        held = store.size_of(item.sha256) if item.size is not None else None
        if held is None or held == item.size:
            continue
        try:
            with store.open(item.sha256) as handle:
                digest = sha256_stream(handle)
        except (OSError, LockmirrorError):  # gone meanwhile (gc; S3Store.open raises
            continue                           # LockmirrorError): downloaded as any missing
        if digest == item.sha256:
            errors.append(wrong_locked_size(item, held, "as the store holds it"))
    if errors:
        raise _combine(errors)


def _metadata_from_wheel(item: FetchItem, store: AnyStore) -> bool:
    """Put a wheel's METADATA in the store from the verified wheel itself,
    when its bytes have the locked hash; False when they do not (or the wheel
    is absent), and the caller downloads the ``.metadata`` file instead.
    Raises MetadataTooLarge when the verified wheel's METADATA is past the cap:
    the locked file is that METADATA, which lockmirror never reads nor serves."""
    if item.wheel_sha256 is None or not store.has(item.wheel_sha256):
        return False
    wheel = item.filename.removesuffix(".metadata")
    try:
        with store.open(item.wheel_sha256) as raw, zipfile.ZipFile(raw) as archive:
            data = zip_metadata(archive, wheel)
    except MetadataTooLarge as exc:
        member = (exc.where or "").removeprefix(f"{wheel}: ")
        raise MetadataTooLarge(
            f"the METADATA of the locked wheel {wheel} ({member}): {exc.message}; needed "
            f"by {sets_text(item)}", where=item.filename,
            hint="lock refuses such a wheel: re-lock those sets with `doit lock`, or pin "
                 "another version") from None
    except (OSError, LockmirrorError, zipfile.BadZipFile):  # gone from S3, no METADATA
        return False
    if hashlib.sha256(data).hexdigest() != item.sha256:
        return False
    try:  # visible only when complete (local: a temp file renamed in; S3: one PUT)
        store.write(item.sha256, data)
    except OSError as exc:
        raise store_write_error(exc, store, store.root) from None
    return True


def _check_free_space(todo: Sequence[FetchItem], store: AnyStore) -> None:
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
            f"not enough free space for the store: {plural(len(todo), 'file')} need "
            f"{format_size(needed)} plus the {format_size(FREE_SPACE_MARGIN)} fetch keeps free, "
            f"the disk has {format_size(free)} free",
            where=str(store.root),
            hint="free some space, or point paths.store / LOCKMIRROR_STORE at a bigger disk")


class _SerializedProgress:
    """Forwards progress calls from the worker threads one at a time."""

    def __init__(self, target: FetchProgress | None) -> None:
        self._target = target
        self._lock = threading.Lock()

    def begin(self, files: int, total_bytes: int, metadata: int = 0) -> None:
        if self._target is not None:
            with self._lock:
                self._target.begin(files, total_bytes, metadata)

    def advance(self, nbytes: int) -> None:
        if self._target is not None and nbytes:
            with self._lock:
                self._target.advance(nbytes)

    def file_done(self, item: FetchItem, downloaded: bool) -> None:
        if self._target is not None:
            with self._lock:
                self._target.file_done(item, downloaded)

    def tick(self) -> None:
        if self._target is not None:
            with self._lock:
                self._target.tick()

    def end(self, summary: FetchSummary) -> None:
        if self._target is not None:
            with self._lock:
                self._target.end(summary)


