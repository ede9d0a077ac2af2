"""Reading upstream indexes: project pages (PEP 691 JSON or PEP 503 HTML) and core metadata.

:class:`IndexClient` is the one way lockmirror reads an index. It asks for
project pages only (never a root listing), with several sources in priority
order and per-source project pinning, memoizes each page, and reads wheel
metadata from PEP 658 ``.metadata`` files (hash-verified) or, when the index
has none, from the wheel's zip central directory through HTTP Range
requests. It is safe to share between threads; ``prefetch_*`` methods start
background fetches so that later calls find their answer ready. Pages are
parsed by :mod:`lockmirror.net.simple_page` (JSON preferred through ``Accept``),
Range reads live in :mod:`lockmirror.net.remote_wheel`, and METADATA is read out
of archives by :mod:`lockmirror.formats.core_metadata` (errors: MetadataError).

Source rules (``mirror.yaml`` ``sources``):

- sources are tried by ``priority`` (lower first; ties keep file order);
  the first that has the project wins, a 404/410 moves on to the next;
- any other failure of a source is an error, never a reason to take the
  project from a lower-priority source (that would invite dependency
  confusion);
- a project listed in a source's ``projects`` is taken from that source and
  is never looked up anywhere else.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

import requests
from packaging.utils import NormalizedName, canonicalize_name

from ..config_schema import SourceConfig
from ..errors import IntegrityError, LockmirrorError, NotFoundError
from ..formats.core_metadata import archive_metadata, wheel_metadata_member
from ..fsutil import atomic_write
from .http import PrefixAuth, get, make_session, network_error, redact_url, source_auth
from .remote_wheel import metadata_by_download, metadata_by_ranges, verify_digest
from .simple_page import DistFile, ProjectPage, parse_html_page, parse_json_page

# Importers of these names from here (fetch, lock, publish) keep working.
__all__ = ["DistFile", "IndexClient", "ProjectPage", "parse_html_page", "parse_json_page",
           "wheel_metadata_member"]

PAGE_ACCEPT = ("application/vnd.pypi.simple.v1+json, "
               "application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01")
# Pages are revalidated on every use (a 304 costs no body); artifacts are immutable.
PAGE_HEADERS = {"Accept": PAGE_ACCEPT, "Cache-Control": "max-age=0"}
# The first Range request asks for this much of a wheel's tail: the central
# directory of almost every wheel fits, and small wheels come whole.
TAIL_BYTES = 64 * 1024
BODY_ATTEMPTS = 3

_Key = TypeVar("_Key")
_Value = TypeVar("_Value")


# --------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------


class IndexClient:
    """Project pages and core metadata from the configured sources; thread-safe.

    ``session`` defaults to :func:`lockmirror.net.http.make_session` with the HTTP
    cache under ``cache_dir`` (pages revalidated with ETag/Last-Modified,
    artifacts and .metadata files kept). Credentials come from each source's
    ``username_env``/``password_env`` in ``environ`` and are sent to URLs
    under that source only. ``max_workers`` bounds the prefetch threads.
    Raises LockmirrorError at construction when a credential variable is
    named but unset; no network until a method is called.
    """

    def __init__(self, sources: Sequence[SourceConfig], *, cache_dir: Path | None = None,
                 session: requests.Session | None = None, max_workers: int = 8,
                 environ: Mapping[str, str] = os.environ) -> None:
        if not sources:
            raise LockmirrorError("no sources to read projects from",
                                  hint="add one under 'sources' in mirror.yaml")
        credentials = source_auth(sources, environ)  # includes userinfo written in URLs
        # Requests go to the URLs without userinfo (its credentials are in the
        # auth table), so no page, file URL or lockfile ever carries them.
        sources = [s.model_copy(update={"url": redact_url(s.url)}) for s in sources]
        self.sources = sorted(sources, key=lambda s: s.priority)  # stable: ties keep file order
        self._pinned: dict[NormalizedName, SourceConfig] = {}
        for source in self.sources:
            for project in source.normalized_projects:
                self._pinned.setdefault(project, source)
        # per request, so a session handed in needs no setup; credentials it
        # already carries (make_session(credentials=...)) are kept
        given = session.auth.credentials if session and isinstance(session.auth, PrefixAuth) \
            else {}
        self._auth = PrefixAuth({**given, **credentials})
        # Metadata read out of wheels (no PEP 658 file) is kept by the wheel's
        # sha256: those bytes never change, and the Range reads are not cacheable.
        self._wheel_metadata_dir = cache_dir / "wheel-metadata" if cache_dir else None
        self._owns_session = session is None
        self.session = session if session is not None else make_session(
            cache_dir=cache_dir, pool_size=max(16, max_workers))
        self._max_workers = max(1, max_workers)
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pages: dict[NormalizedName, Future[ProjectPage]] = {}
        self._metadata: dict[str, Future[bytes]] = {}

    @property
    def auth(self) -> PrefixAuth:
        """requests auth that sends each source's credentials to its URLs only."""
        return self._auth

    # -- lifecycle -----------------------------------------------------------

    def close(self) -> None:
        """Wait for prefetches to finish and release connections."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _submit(self, work: Callable[[], None]) -> None:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._max_workers,
                                                    thread_name_prefix="lockmirror-index")
            executor = self._executor
        executor.submit(work)

    # -- memoization -----------------------------------------------------------

    def _claim(self, table: dict[_Key, Future[_Value]], key: _Key
               ) -> tuple[Future[_Value], bool]:
        """The future for ``key`` and whether the caller must compute it."""
        with self._lock:
            future = table.get(key)
            if future is not None:
                return future, False
            future = Future()
            table[key] = future
            return future, True

    @staticmethod
    def _settle(future: Future[_Value], work: Callable[[], _Value]) -> None:
        try:
            future.set_result(work())
        except BaseException as error:  # noqa: BLE001 - handed to whoever asks for the result
            future.set_exception(error)

    def _settle_page(self, future: Future[ProjectPage], project: NormalizedName) -> None:
        self._settle(future, lambda: self._fetch_project(project))

    def _settle_metadata(self, future: Future[bytes], file: DistFile) -> None:
        self._settle(future, lambda: self._fetch_metadata(file))

    # -- project pages -------------------------------------------------------------

    def project(self, name: str) -> ProjectPage:
        """The page of ``name`` from the first source that has it (memoized).

        Raises NotFoundError when no allowed source has the project,
        NetworkError when a source fails (after retries), LockmirrorError
        when a page is malformed. Costs one request per source tried the
        first time (a revalidation when the HTTP cache has the page), none
        afterwards.
        """
        key = canonicalize_name(name)
        future, owner = self._claim(self._pages, key)
        if owner:
            self._settle_page(future, key)
        return future.result()

    def prefetch_projects(self, names: Iterable[str]) -> None:
        """Start fetching pages in the background (``max_workers`` at a time);
        errors surface from :meth:`project`. Returns at once."""
        for name in names:
            key = canonicalize_name(name)
            future, owner = self._claim(self._pages, key)
            if owner:
                self._submit(functools.partial(self._settle_page, future, key))

    def _candidate_sources(self, project: NormalizedName) -> list[SourceConfig]:
        pinned = self._pinned.get(project)
        return [pinned] if pinned is not None else list(self.sources)

    def _fetch_project(self, project: NormalizedName) -> ProjectPage:
        tried = []
        for source in self._candidate_sources(project):
            page = self._fetch_page(source, project)
            if page is not None:
                return page
            tried.append(f"{source.name} ({redact_url(source.url)})")
        if project in self._pinned:
            raise NotFoundError(
                f"project '{project}' is pinned to source {tried[0]}, which does not have it",
                hint="check the name, or the source's 'projects' list in mirror.yaml")
        raise NotFoundError(f"no source has a project named '{project}' "
                            f"(tried {', '.join(tried)})",
                            hint="check the spelling of the requirement")

    def _fetch_page(self, source: SourceConfig, project: NormalizedName) -> ProjectPage | None:
        url = urljoin(source.url, f"{project}/")
        if url.startswith("file:"):
            return self._local_page(source, project, url)
        answer = self._read(url, headers=PAGE_HEADERS, allow=(404, 410))
        if answer is None:
            return None
        response, data = answer
        page_url = response.url or url
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type == "application/vnd.pypi.simple.v1+json":
            return parse_json_page(data, page_url, project, source.name)
        if content_type.endswith("json"):
            raise LockmirrorError(f"the index answered with unsupported type {content_type}",
                                  where=redact_url(page_url))
        encoding = response.encoding or "utf-8"
        return parse_html_page(data.decode(encoding, errors="replace"), page_url, project,
                               source.name)

    def _read(self, url: str, *, headers: Mapping[str, str] | None = None,
              allow: Sequence[int] = ()) -> tuple[requests.Response, bytes] | None:
        """(response, body); None for a status in ``allow``. A body cut short is
        fetched again (``BODY_ATTEMPTS`` in all); urllib3 already retried the rest."""
        for attempt in range(1, BODY_ATTEMPTS + 1):
            response = get(self.session, url, headers=headers, stream=True, allow=allow,
                           auth=self._auth)
            try:
                with response:
                    if response.status_code in allow:
                        return None
                    return response, response.content
            except requests.RequestException as error:
                if attempt == BODY_ATTEMPTS:
                    raise network_error(error, url, retries=attempt - 1) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _local_page(self, source: SourceConfig, project: NormalizedName,
                    url: str) -> ProjectPage | None:
        directory = Path(url2pathname(urlsplit(url).path))
        json_page, html_page = directory / "index.json", directory / "index.html"
        if json_page.is_file():
            return parse_json_page(json_page.read_bytes(), json_page.as_uri(), project,
                                   source.name)
        if html_page.is_file():
            return parse_html_page(html_page.read_text(encoding="utf-8"), html_page.as_uri(),
                                   project, source.name)
        return None

    # -- bytes -------------------------------------------------------------------

    def _get_bytes(self, url: str, *, what: str) -> bytes:
        """A whole body, retried when the connection breaks mid-transfer."""
        if url.startswith("file:"):
            path = Path(url2pathname(urlsplit(url).path))
            try:
                return path.read_bytes()
            except FileNotFoundError:
                raise NotFoundError(f"{what} is missing", where=str(path)) from None
        answer = self._read(url)
        assert answer is not None
        return answer[1]

    def download_bytes(self, file: DistFile) -> bytes:
        """The whole file, verified against the page's sha256 and size.

        Raises IntegrityError on a mismatch, NotFoundError, NetworkError.
        Costs the file's size in memory (meant for sdists and small files).
        """
        data = self._get_bytes(file.url, what=file.filename)
        _verify(data, file)
        return data

    # -- metadata ----------------------------------------------------------------

    def metadata(self, file: DistFile) -> bytes:
        """Core metadata of a file (memoized).

        Wheels: the PEP 658 ``.metadata`` file when the index has one
        (verified against its advertised sha256: IntegrityError on a
        mismatch); otherwise METADATA read out of the wheel, through Range
        requests on the zip central directory when the server honours Range
        (a few KiB), else by a streamed, sha256-verified download to a
        temporary file. Sdists: their PKG-INFO (static only for
        Metadata-Version >= 2.2). Raises NetworkError, NotFoundError,
        IntegrityError, MetadataError / LockmirrorError (not a
        readable wheel or sdist).
        """
        future, owner = self._claim(self._metadata, file.url)
        if owner:
            self._settle_metadata(future, file)
        return future.result()

    def prefetch_metadata(self, files: Iterable[DistFile]) -> None:
        """Start reading metadata in the background; errors surface from :meth:`metadata`."""
        for file in files:
            future, owner = self._claim(self._metadata, file.url)
            if owner:
                self._submit(functools.partial(self._settle_metadata, future, file))

    def _fetch_metadata(self, file: DistFile) -> bytes:
        if not file.is_wheel:
            return archive_metadata(self.download_bytes(file), file.filename)
        if file.has_metadata:
            try:
                data = self._get_bytes(file.metadata_url, what=f"{file.filename}.metadata")
            except NotFoundError:
                data = None  # advertised but absent: read it from the wheel instead
            if data is not None:
                if file.metadata_sha256 is not None:
                    actual = hashlib.sha256(data).hexdigest()
                    if actual != file.metadata_sha256:
                        raise IntegrityError(
                            f"core metadata of {file.filename} has sha256 {actual}, "
                            f"the index promised {file.metadata_sha256}",
                            where=redact_url(file.metadata_url),
                            hint="the index or something between serves altered bytes; "
                                 "refusing them")
                return data
        return self._metadata_from_wheel(file)

    def _metadata_from_wheel(self, file: DistFile) -> bytes:
        cached = (self._wheel_metadata_dir / f"{file.sha256}.METADATA"
                  if self._wheel_metadata_dir is not None and file.sha256 else None)
        if cached is not None and cached.exists():
            return cached.read_bytes()
        data = self._read_wheel_metadata(file)
        if cached is not None:
            atomic_write(cached, data)
        return data

    def _read_wheel_metadata(self, file: DistFile) -> bytes:
        if file.url.startswith("file:"):
            path = Path(url2pathname(urlsplit(file.url).path))
            return archive_metadata(path, file.filename)
        tail = TAIL_BYTES if file.size is None else min(TAIL_BYTES, file.size)
        for attempt in range(1, BODY_ATTEMPTS + 1):
            response = get(self.session, file.url, stream=True, auth=self._auth,
                           headers={"Range": f"bytes=-{tail}", "Accept-Encoding": "identity"})
            try:
                with response:
                    if response.status_code == 206:
                        return metadata_by_ranges(file, response, self.session, self._auth)
                    return metadata_by_download(file, response)
            except requests.RequestException as error:
                if attempt == BODY_ATTEMPTS:
                    raise network_error(error, file.url, retries=attempt - 1) from None
            except zipfile.BadZipFile as error:
                raise LockmirrorError(f"{file.filename} is not a valid wheel ({error})",
                                      where=redact_url(file.url)) from None
        raise AssertionError("unreachable")  # pragma: no cover


def _verify(data: bytes, file: DistFile) -> None:
    verify_digest(hashlib.sha256(data).hexdigest(), len(data), file)
