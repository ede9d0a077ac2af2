"""One file's transfer into the content-addressed store: request, stream + hash,
resume, verify, rename.

:class:`Downloader` brings one :class:`FetchItem` into the
store; the fetch stage (:mod:`lockmirror.stages.fetch`) runs one per download thread.

Contract for one file:

* The partial ``<store>/tmp/<sha256>.partial`` is held under an exclusive
  ``flock`` while in use, so processes sharing one store never write the same
  file; a file another process finished meanwhile is counted as present.
* Bytes stream (in :data:`CHUNK` pieces, unbuffered writes) into the partial
  while their sha256 and length are computed; only when both match the
  lockfile is the partial fsync'ed (``durable``) and renamed into the store.
* Retries: the session's urllib3 ``Retry`` (see :func:`lockmirror.net.http.make_session`)
  is the one retry policy for connection errors, 5xx and 429. The only thing
  added here is :meth:`Downloader._download`'s loop, which continues a body
  that broke off, stalled or came slower than :mod:`lockmirror.net.body`'s floor
  (urllib3 does not retry those) with an HTTP ``Range`` request from the bytes
  already held, at most ``resumes`` times; a resumed file that does not verify
  is downloaded once more from scratch.
* A body longer than the locked size is refused as soon as it is longer; a
  404/410 names the sets that need the file; refused credentials are never
  shown.
* Redirects are followed only to the file URL's own origin or to a file location
  a source declares (:func:`lockmirror.net.redirects.follow`); any other stops
  the run with one line, and nothing is asked of the other host. A failure
  names the URL that failed (after a redirect, its target).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

import requests
import urllib3.exceptions

from ..errors import IntegrityError, LockmirrorError, NetworkError, NotFoundError
from ..formats.store import FetchItem, open_partial, release_partial, store_write_error
from ..redaction import redact_url
from .body import SlowBody, iter_raw_body
from .http import PrefixAuth, access_denied, check_response, network_error
from .redirects import answered_url, follow

if TYPE_CHECKING:
    from ..config_schema import SourceConfig
    from .s3_store import AnyStore


# (connect, between bytes) seconds, for a caller's session without its own default.
TIMEOUT = (10.0, 60.0)
# The most bytes read, hashed and written at a time (a read takes what the socket
# holds, up to this). benchmarks/bench_fetch.py, 8 downloads on 2 cores: 1 MiB
# costs 2.2 s of CPU per GiB where 256 KiB cost 2.4 s (fewer calls per byte).
CHUNK = 1 << 20


class Progress(Protocol):
    """What a download reports (calls may come from several threads at once)."""

    def advance(self, nbytes: int) -> None: ...

    def file_done(self, item: FetchItem, downloaded: bool) -> None: ...


class Stopped(Exception):
    """Another download failed fatally (or the run was interrupted)."""


class Fatal(LockmirrorError):
    """An error that stops the whole run (the error to raise is in ``error``)."""

    def __init__(self, error: LockmirrorError) -> None:
        self.error = error
        super().__init__(str(error))


class _Resume(Exception):
    """A transfer ended early (body broke off, stalled, or a Range answer was
    unusable): continue from what the partial holds; ``error`` is raised when
    no resume is left. ``held`` is the digest and count of the bytes the
    partial holds, when known (so the next attempt need not re-read them)."""

    def __init__(self, error: LockmirrorError,
                 held: tuple[hashlib._Hash, int] | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.held = held


@dataclass
class Tally:
    """What the downloads of one run did (updated from several threads)."""

    downloaded: int = 0
    raced: int = 0  # finished by another process while this one waited for the lock
    raced_bytes: int = 0  # their sizes: "already present" counts them
    network_bytes: int = 0
    resumed_bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, downloaded: int = 0, raced: int = 0, raced_bytes: int = 0,
            network_bytes: int = 0, resumed_bytes: int = 0) -> None:
        with self.lock:
            self.downloaded += downloaded
            self.raced += raced
            self.raced_bytes += raced_bytes
            self.network_bytes += network_bytes
            self.resumed_bytes += resumed_bytes


@dataclass
class _Shown:
    """Bytes of one item already counted on the progress bar."""

    bytes: int = 0


@dataclass
class Downloader:
    """Downloads files into ``store`` with ``session`` (shared by the threads)."""

    store: AnyStore
    session: requests.Session
    auth: PrefixAuth | None  # None: the session's own
    progress: Progress
    resumes: int  # continuations of a broken-off body, per file
    durable: bool  # fsync before naming
    stop: threading.Event = field(default_factory=threading.Event)
    tally: Tally = field(default_factory=Tally)
    sources: Sequence[SourceConfig] = ()  # whose file locations a redirect may lead to

    @property
    def timeout(self) -> tuple[float, float]:
        """(connect, read) seconds: the session's default, else :data:`TIMEOUT`."""
        value = getattr(self.session, "default_timeout", None)
        return (float(value[0]), float(value[1])) if value else TIMEOUT

    def fetch_one(self, item: FetchItem) -> None:
        """Bring ``item`` into the store, verified, or raise: NotFoundError,
        IntegrityError (this file only), :class:`Fatal` (stops the run),
        :class:`Stopped` (``stop`` was set)."""
        if self.stop.is_set():
            raise Stopped()
        partial = self.store.partial_path(item.sha256)
        handle = open_partial(partial)
        try:
            # Another process sharing the store may have finished it while we waited.
            if self.store.recheck(item.sha256, item.size):
                self.tally.add(raced=1, raced_bytes=item.size or 0)
                self.progress.advance(item.size or 0)
                self.progress.file_done(item, False)
                return
            self._download(item, handle, partial)
            self._adopt(item, handle, partial)
        finally:
            release_partial(handle, partial)
        self.tally.add(downloaded=1)
        self.progress.file_done(item, True)

    def _download(self, item: FetchItem, handle: BinaryIO, partial: Path) -> None:
        """Bring ``handle`` to the verified bytes of ``item``, or raise.

        The one place a transfer is repeated: a body that broke off is
        continued from the bytes held (:class:`_Resume`), and a resumed file
        that does not verify is fetched once more from scratch."""
        shown = _Shown()
        last_error: LockmirrorError | None = None
        held: tuple[hashlib._Hash, int] | None = None
        for _attempt in range(self.resumes + 1):
            if self.stop.is_set():
                raise Stopped()
            try:
                digest, length, resumed = self._transfer(item, handle, partial, shown, held)
            except _Resume as resume:
                last_error, held = resume.error, resume.held
                self._show_held(item, handle, shown)
                continue
            self._show_held(item, handle, shown)
            actual = digest.hexdigest()
            if actual == item.sha256 and (item.size is None or length == item.size):
                return
            if actual == item.sha256:  # the locked bytes, of another size than locked
                self.progress.advance(-shown.bytes)
                _discard(handle, partial)
                raise wrong_locked_size(item, length, "as the upstream served it")
            if not resumed:
                self.progress.advance(-shown.bytes)
                _discard(handle, partial)
                raise _mismatch(item, actual, length)
            # The kept prefix may be what is wrong (from a server that changed
            # the file since): one fresh download decides.
            _truncate(handle, partial, self.store)
            held = None
            last_error = IntegrityError(
                f"a resumed download of {where(item)} did not verify "
                f"(expected sha256 {item.sha256}, got {actual})")
        assert last_error is not None
        raise Fatal(last_error)

    def _transfer(self, item: FetchItem, handle: BinaryIO, partial: Path,
                  shown: _Shown, held: tuple[hashlib._Hash, int] | None = None,
                  ) -> tuple[hashlib._Hash, int, bool]:
        """One request: hash the kept prefix (unless ``held`` gives its digest
        and count, from the attempt that wrote it), continue or restart, stream
        to the end. Returns (digest, total length, whether a kept prefix was used)."""
        digest, offset = held if held is not None else self._rehash_prefix(item, handle, partial)
        if offset and offset == item.size:
            # Complete but never named (killed before the rename).
            self.tally.add(resumed_bytes=offset)
            return digest, offset, True
        with self._request(item, offset) as response:
            if offset and response.status_code == 206:
                if not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                    _truncate(handle, partial, self.store)
                    raise _Resume(NetworkError(f"cannot fetch {where(item)}: the server "
                                               "answers Range requests with other ranges"))
                self.tally.add(resumed_bytes=offset)
            elif response.status_code == 200:
                if offset:  # the server ignores Range: start over
                    digest, offset = hashlib.sha256(), _truncate(handle, partial, self.store)
            elif offset and response.status_code == 416:
                _truncate(handle, partial, self.store)
                raise _Resume(NetworkError(f"cannot fetch {where(item)}: the server refuses "
                                           "to resume (HTTP 416)"))
            else:
                _fail_status(item, response)
            return self._stream(item, response, handle, partial, digest, offset, shown)

    def _rehash_prefix(self, item: FetchItem, handle: BinaryIO,
                       partial: Path) -> tuple[hashlib._Hash, int]:
        """The sha256 of the bytes the partial holds, and their count (a partial
        longer than the locked size is emptied first)."""
        digest = hashlib.sha256()
        offset = os.fstat(handle.fileno()).st_size
        if item.size is not None and offset > item.size:
            return digest, _truncate(handle, partial, self.store)
        handle.seek(0)
        remaining = offset
        while remaining and (chunk := handle.read(min(CHUNK, remaining))):
            digest.update(chunk)
            remaining -= len(chunk)
        return digest, offset

    def _request(self, item: FetchItem, offset: int) -> requests.Response:
        """GET ``item`` (from ``offset`` when non-zero), streamed, following
        redirects to its origin or a declared file location only; connection
        errors and refused redirects are final here (the session's urllib3
        ``Retry`` retried the former)."""
        # identity: the bytes exactly as stored upstream, which are what is hashed.
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            return follow(self.session, item.url, headers=headers, stream=True,
                          timeout=self.timeout, auth=self.auth, sources=self.sources)
        except LockmirrorError as error:  # a redirect refused, or too many
            raise Fatal(error) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise Fatal(network_error(exc, item.url, retries=getattr(self.session, "retries", 0),
                                      read_timeout=self.timeout[1])) from None
        except requests.exceptions.RequestException as exc:
            raise Fatal(network_error(exc, item.url)) from None

    def _stream(self, item: FetchItem, response: requests.Response, handle: BinaryIO,
                partial: Path, digest: hashlib._Hash, offset: int,
                shown: _Shown) -> tuple[hashlib._Hash, int, bool]:
        """Write, hash and count the body after ``offset``; stop as soon as it
        is longer than the locked size. A body that breaks off or stalls keeps
        every byte received and raises :class:`_Resume` saying how many."""
        length = offset
        handle.seek(offset)
        answered = answered_url(item.url, response.url)
        try:
            # The bytes exactly as sent (a gzip'ed .tar.gz is hashed as is), in
            # pieces as they arrive, so a stall keeps every byte before it.
            for chunk in iter_raw_body(response, CHUNK, answered):
                length += self._take(item, handle, partial, digest, chunk, shown)
                self.tally.add(network_bytes=len(chunk))
                if item.size is not None and length > item.size:
                    break  # longer than locked: cannot be the locked file
        except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException,
                ConnectionError, TimeoutError, SlowBody) as exc:
            error = exc if isinstance(exc, SlowBody) else network_error(
                exc, answered, read_timeout=self.timeout[1])
            raise _Resume(NetworkError(
                f"{error.message} ({length} bytes received, after {self.resumes} "
                f"{'retry' if self.resumes == 1 else 'retries'})",
                hint="a re-run resumes from the bytes received")) from None
        return digest, length, offset > 0

    def _take(self, item: FetchItem, handle: BinaryIO, partial: Path, digest: hashlib._Hash,
              chunk: bytes, shown: _Shown) -> int:
        """Write and hash one piece of the body; show it; its length."""
        if self.stop.is_set():
            raise Stopped()
        try:
            view = memoryview(chunk)
            while view:  # a raw write may take only part of the chunk
                view = view[handle.write(view):]
        except OSError as exc:
            raise Fatal(_disk_error(exc, self.store, partial, handle)) from None
        digest.update(chunk)
        if item.size is not None:
            shown.bytes += len(chunk)
            self.progress.advance(len(chunk))
        return len(chunk)

    def _adopt(self, item: FetchItem, handle: BinaryIO, partial: Path) -> None:
        """Name the verified partial in the store (fsync'ed first when durable)."""
        try:
            if self.durable:
                os.fsync(handle.fileno())
            os.chmod(partial, 0o644)
            self.store.adopt(partial, item.sha256)
        except OSError as exc:
            raise Fatal(_disk_error(exc, self.store, partial, handle)) from None
        except LockmirrorError as exc:  # an object store refused the upload: stop the run
            raise Fatal(exc) from None

    def _show_held(self, item: FetchItem, handle: BinaryIO, shown: _Shown) -> None:
        """Bring the progress bar to the bytes now held for ``item``."""
        if item.size is None:
            return
        held = min(os.fstat(handle.fileno()).st_size, item.size)
        self.progress.advance(held - shown.bytes)
        shown.bytes = held


def _fail_status(item: FetchItem, response: requests.Response) -> None:
    """Raise for a status that is not a usable answer (after the session's retries),
    naming the URL that answered (after a redirect, its target)."""
    status = response.status_code
    answered = redact_url(answered_url(item.url, response.url))
    if status in (404, 410):
        kind = "metadata file" if item.is_metadata else "file"
        raise NotFoundError(
            f"the upstream no longer has this locked {kind} (HTTP {status}); "
            f"needed by {sets_text(item)}",
            where=answered,
            hint="re-lock those sets with `doit lock` to pick what exists now")
    if status in (401, 403, 407):
        detail, hint = access_denied(response)
        raise Fatal(NetworkError(f"access denied (HTTP {status}): {detail}",
                                 where=answered, hint=hint))
    try:
        check_response(response, url=answered)
    except LockmirrorError as error:
        raise Fatal(error) from None
    raise Fatal(NetworkError(f"cannot fetch {answered}: unexpected HTTP {status}"))


def _mismatch(item: FetchItem, actual: str, length: int) -> IntegrityError:
    got = (f"got sha256 {actual} ({length} bytes)" if item.size is None or length <= item.size
           else f"got more bytes (stopped after {length}, whose sha256 is {actual})")
    size = f" ({item.size} bytes)" if item.size is not None else ""
    return IntegrityError(
        f"upstream bytes differ from the lockfile: expected sha256 {item.sha256}{size}, "
        f"{got}; refused (needed by {sets_text(item)})",
        where=where(item),
        hint="if the upstream really replaced the file, re-lock with `doit lock`")


def wrong_locked_size(item: FetchItem, found: int, seen: str) -> IntegrityError:
    """The error for a file whose bytes have the locked sha256 but not the locked
    size: the lockfile's size is what is wrong (a hand edit; the sha256 is what
    names the file). Refused all the same: the store holds a file only as its
    lockfile describes it. ``seen`` says where the ``found`` bytes were."""
    plural = len(item.needed_by) != 1
    lockfiles = (f"the lockfile{'s' if plural else ''} of {sets_text(item)} "
                 f"say{'' if plural else 's'}")
    return IntegrityError(
        f"the lockfile's size is wrong: {lockfiles} {item.size} bytes for {item.filename}, "
        f"but the file with its sha256 has {found} ({seen}); refused, nothing was stored",
        where=where(item),
        hint="a hand edit? re-create the lockfile with `lockmirror lock` or `doit lock`")


def _truncate(handle: BinaryIO, partial: Path, store: AnyStore) -> int:
    try:
        handle.seek(0)
        handle.truncate(0)
    except OSError as exc:
        raise Fatal(_disk_error(exc, store, partial, handle)) from None
    return 0


def _discard(handle: BinaryIO, partial: Path) -> None:
    handle.truncate(0)
    partial.unlink(missing_ok=True)


def _disk_error(exc: OSError, store: AnyStore, partial: Path, handle: BinaryIO) -> LockmirrorError:
    # What could not be written is useless; free its space at once.
    try:
        _discard(handle, partial)
    except OSError:
        pass
    # the path the failure names (a store directory the rename was refused in), else
    # the partial file (a write, a truncation: no path of their own)
    return store_write_error(exc, store, Path(exc.filename) if exc.filename else partial)


def sets_text(item: FetchItem) -> str:
    """``set core`` / ``sets core, misp``: the sets that need ``item``."""
    return f"set{'s' if len(item.needed_by) != 1 else ''} {', '.join(item.needed_by)}"


def where(item: FetchItem) -> str:
    """The item's URL, safe to print."""
    return redact_url(item.url)
