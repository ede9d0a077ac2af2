"""Reading upstream indexes: project pages (PEP 691 JSON or PEP 503 HTML) and core metadata.

:class:`IndexClient` is the one way lockmirror reads an index. It asks for
project pages only (never a root listing), with several sources in priority
order and per-source project pinning, memoizes each page, and reads wheel
metadata from PEP 658 ``.metadata`` files (hash-verified) or, when the index
has none, from the wheel's zip central directory through HTTP Range
requests. It is safe to share between threads; ``prefetch_*`` methods start
background fetches so that later calls find their answer ready.

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
import html
import io
import os
import re
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, TypeVar
from urllib.parse import unquote, urljoin, urlsplit
from urllib.request import url2pathname

import requests
from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from .bounded import load_json
from .config import SourceConfig
from .errors import IntegrityError, LockmirrorError, NetworkError, NotFoundError
from .fsutil import atomic_write
from .http import PrefixAuth, get, make_session, network_error, redact_url, source_auth

PAGE_ACCEPT = ("application/vnd.pypi.simple.v1+json, "
               "application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01")
# Pages are revalidated on every use (a 304 costs no body); artifacts are immutable.
PAGE_HEADERS = {"Accept": PAGE_ACCEPT, "Cache-Control": "max-age=0"}
# The first Range request asks for this much of a wheel's tail: the central
# directory of almost every wheel fits, and small wheels come whole.
TAIL_BYTES = 64 * 1024
BODY_ATTEMPTS = 3
CHUNK = 1 << 20

_Key = TypeVar("_Key")
_Value = TypeVar("_Value")


# --------------------------------------------------------------------------
# What a page says
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class DistFile:
    """One file of a project page, as the index describes it."""

    project: NormalizedName
    filename: str
    url: str                       # absolute
    sha256: str | None
    size: int | None
    upload_time: datetime | None
    requires_python: str | None
    yanked: bool
    yanked_reason: str | None
    metadata_sha256: str | None    # PEP 658/714 hash of the .metadata file, if given
    has_metadata: bool             # the index serves ``<url>.metadata``
    source: str                    # name of the source the page came from

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")

    @property
    def version(self) -> Version | None:
        """From the file name; None when the name cannot be parsed."""
        return _parse_filename(self.filename)[0]

    @property
    def tags(self) -> frozenset[Tag]:
        """The wheel's tags (empty for sdists)."""
        return _parse_filename(self.filename)[1]

    @property
    def metadata_url(self) -> str:
        return self.url.split("#", 1)[0] + ".metadata"


_FILENAME_CACHE: dict[str, tuple[Version | None, frozenset[Tag]]] = {}


def _parse_filename(filename: str) -> tuple[Version | None, frozenset[Tag]]:
    found = _FILENAME_CACHE.get(filename)
    if found is None:
        try:
            if filename.endswith(".whl"):
                _, version, _, tags = parse_wheel_filename(filename)
                found = (version, tags)
            else:
                found = (parse_sdist_filename(filename)[1], frozenset())
        except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
            found = (None, frozenset())
        _FILENAME_CACHE[filename] = found
    return found


@dataclass(frozen=True)
class ProjectPage:
    """A project's page on the source that has it."""

    name: NormalizedName
    source: str
    url: str
    files: tuple[DistFile, ...]
    versions: tuple[Version, ...]  # PEP 700 ``versions`` when given, else from the files


# --------------------------------------------------------------------------
# Parsing pages
# --------------------------------------------------------------------------


# PEP 503 pages are machine-written lists of anchors; a quote-aware scan of
# the few tags that matter is ~10x faster than html.parser on the pages of big
# projects (numpy's lists thousands of files).
_TAG_RE = re.compile(r"""<(a|base|meta)\b((?:[^>"']|"[^"]*"|'[^']*')*)>""", re.IGNORECASE)
_ATTR_RE = re.compile(r"""([^\s=/>"']+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+)))?""")


class _LinkParser:
    """Anchors, <base> and the repository-version <meta> of a PEP 503 page."""

    def __init__(self) -> None:
        self.links: list[dict[str, str | None]] = []
        self.base: str | None = None
        self.api_version: str | None = None

    def feed(self, text: str) -> None:
        for match in _TAG_RE.finditer(text):
            tag = match.group(1).lower()
            attributes: dict[str, str | None] = {}
            for attr in _ATTR_RE.finditer(match.group(2)):
                value = next((v for v in attr.group(2, 3, 4) if v is not None), None)
                attributes[attr.group(1).lower()] = html.unescape(value) if value else value
            if tag == "a" and attributes.get("href"):
                self.links.append(attributes)
            elif tag == "base" and attributes.get("href") and self.base is None:
                self.base = attributes["href"]
            elif tag == "meta" and attributes.get("name") == "pypi:repository-version":
                self.api_version = attributes.get("content")

    def close(self) -> None:
        pass


def _check_api_version(version: Any, url: str) -> None:
    if version is None:
        return
    major = str(version).split(".")[0]
    if major != "1":
        raise LockmirrorError(f"the index speaks repository API version {version}; "
                              "lockmirror understands version 1", where=redact_url(url))


def _metadata_field(value: Any) -> tuple[bool, str | None]:
    """(has metadata, its sha256) from a PEP 691 ``core-metadata`` value."""
    if isinstance(value, dict):
        digest = value.get("sha256")
        return True, str(digest).lower() if digest else None
    return bool(value), None


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value))  # 3.11 reads a trailing Z
    except ValueError:
        return None


def parse_json_page(data: bytes, url: str, project: NormalizedName, source: str) -> ProjectPage:
    """A PEP 691 page (with PEP 700 fields when present). Raises LockmirrorError if malformed."""
    page = load_json(data, where=redact_url(url), error=LockmirrorError)
    try:
        _check_api_version(page.get("meta", {}).get("api-version"), url)
        entries = page["files"]
        files = []
        for entry in entries:
            core = entry.get("core-metadata", entry.get("dist-info-metadata", False))
            has_metadata, metadata_sha256 = _metadata_field(core)
            yanked = entry.get("yanked", False)
            sha256 = (entry.get("hashes") or {}).get("sha256")
            size = entry.get("size")
            files.append(DistFile(
                project=project, filename=str(entry["filename"]),
                url=urljoin(url, str(entry["url"])).split("#", 1)[0],
                sha256=str(sha256).lower() if sha256 else None,
                size=int(size) if isinstance(size, int) else None,
                upload_time=_parse_time(entry.get("upload-time")),
                requires_python=entry.get("requires-python") or None,
                yanked=bool(yanked), yanked_reason=yanked if isinstance(yanked, str) and yanked
                else None,
                metadata_sha256=metadata_sha256, has_metadata=has_metadata, source=source))
        versions = _versions(page.get("versions"), files)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LockmirrorError(f"the project page is not valid PEP 691 JSON ({exc})",
                              where=redact_url(url)) from None
    return ProjectPage(name=project, source=source, url=url, files=tuple(files),
                       versions=versions)


def parse_html_page(text: str, url: str, project: NormalizedName, source: str) -> ProjectPage:
    """A PEP 503 page with PEP 592/658/714 attributes."""
    parser = _LinkParser()
    parser.feed(text)
    parser.close()
    _check_api_version(parser.api_version, url)
    base = urljoin(url, parser.base) if parser.base else url
    files = []
    for link in parser.links:
        href = urljoin(base, link["href"] or "")
        location, _, fragment = href.partition("#")
        filename = unquote(urlsplit(location).path.rsplit("/", 1)[-1])
        if not filename:
            continue
        sha256 = None
        match = re.fullmatch(r"sha256=([0-9a-fA-F]{64})", fragment)
        if match:
            sha256 = match.group(1).lower()
        core = link.get("data-core-metadata", link.get("data-dist-info-metadata"))
        metadata_sha256 = None
        if core is not None:
            found = re.fullmatch(r"sha256=([0-9a-fA-F]{64})", core.strip())
            metadata_sha256 = found.group(1).lower() if found else None
        yanked = "data-yanked" in link
        files.append(DistFile(
            project=project, filename=filename, url=location, sha256=sha256, size=None,
            # not in PEP 503, but some indexes and proxies add it; PEP 700 JSON is the standard
            upload_time=_parse_time(link.get("data-upload-time")), requires_python=link.get("data-requires-python") or None,
            yanked=yanked, yanked_reason=(link.get("data-yanked") or None) if yanked else None,
            metadata_sha256=metadata_sha256, has_metadata=core is not None, source=source))
    return ProjectPage(name=project, source=source, url=url, files=tuple(files),
                       versions=_versions(None, files))


def _versions(given: Any, files: Iterable[DistFile]) -> tuple[Version, ...]:
    found: set[Version] = set()
    for text in given if isinstance(given, list) else []:
        try:
            found.add(Version(str(text)))
        except InvalidVersion:
            continue
    if not isinstance(given, list):
        found = {f.version for f in files if f.version is not None}
    return tuple(sorted(found))


# --------------------------------------------------------------------------
# Reading a wheel's METADATA over HTTP Range requests
# --------------------------------------------------------------------------


class _RangeReader:
    """A read-only, seekable file over a remote file, fetching only the byte
    ranges read (what :mod:`zipfile` needs to read one member)."""

    def __init__(self, length: int, fetch: Callable[[int, int], bytes],
                 known: Mapping[int, bytes]) -> None:
        self._length = length
        self._fetch = fetch  # (start, end exclusive) -> exactly those bytes
        self._segments: dict[int, bytes] = dict(known)
        self._position = 0

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        self._position = max(0, base + offset)
        return self._position

    def read(self, size: int = -1) -> bytes:
        start = self._position
        end = self._length if size is None or size < 0 else min(self._length, start + size)
        if end <= start:
            return b""
        self._fill(start, end)
        out = bytearray()
        for segment_start, data in sorted(self._segments.items()):
            segment_end = segment_start + len(data)
            if segment_end <= start + len(out) or segment_start > start + len(out):
                continue
            offset = start + len(out) - segment_start
            out += data[offset: offset + (end - start - len(out))]
            if len(out) >= end - start:
                break
        self._position = start + len(out)
        return bytes(out)

    def _fill(self, start: int, end: int) -> None:
        position = start
        for segment_start, data in sorted(self._segments.items()):
            segment_end = segment_start + len(data)
            if segment_end <= position:
                continue
            if segment_start >= end:
                break
            if segment_start > position:
                self._segments[position] = self._fetch(position, segment_start)
            position = max(position, segment_end)
            if position >= end:
                return
        if position < end:
            # read a little ahead: zipfile reads a member's header, then its data
            stop = min(self._length, max(end, position + 16 * 1024))
            self._segments[position] = self._fetch(position, stop)


def wheel_metadata_member(archive: zipfile.ZipFile, filename: str) -> str | None:
    """The name of the wheel's ``<name>-<version>.dist-info/METADATA`` member."""
    candidates = [n for n in archive.namelist()
                  if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
    prefix = filename.split("-")[0].lower()
    preferred = [n for n in candidates if n.split("-")[0].lower() == prefix]
    chosen = (preferred or candidates)[:1]
    return chosen[0] if chosen else None


def _metadata_member(archive: zipfile.ZipFile, file: DistFile) -> bytes:
    member = wheel_metadata_member(archive, file.filename)
    if member is None:
        raise LockmirrorError(f"{file.filename} has no .dist-info/METADATA",
                              where=redact_url(file.url))
    return archive.read(member)


# --------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------


class IndexClient:
    """Project pages and core metadata from the configured sources; thread-safe.

    ``session`` defaults to :func:`lockmirror.http.make_session` with the HTTP
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
        _verify(data, file.sha256, file.size, file.filename, file.url)
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
        IntegrityError, LockmirrorError (not a wheel/zip).
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
            return _sdist_pkg_info(self.download_bytes(file), file)
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
            with zipfile.ZipFile(path) as archive:
                return _metadata_member(archive, file)
        tail = TAIL_BYTES if file.size is None else min(TAIL_BYTES, file.size)
        for attempt in range(1, BODY_ATTEMPTS + 1):
            response = get(self.session, file.url, stream=True, auth=self._auth,
                           headers={"Range": f"bytes=-{tail}", "Accept-Encoding": "identity"})
            try:
                with response:
                    if response.status_code == 206:
                        return self._metadata_by_ranges(file, response)
                    return self._metadata_by_download(file, response)
            except requests.RequestException as error:
                if attempt == BODY_ATTEMPTS:
                    raise network_error(error, file.url, retries=attempt - 1) from None
            except zipfile.BadZipFile as error:
                raise LockmirrorError(f"{file.filename} is not a valid wheel ({error})",
                                      where=redact_url(file.url)) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _metadata_by_ranges(self, file: DistFile, response: requests.Response) -> bytes:
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)",
                             response.headers.get("Content-Range", "").strip())
        if not match:
            raise LockmirrorError("the server sent a partial response without a usable "
                                  "Content-Range", where=redact_url(file.url))
        start, length = int(match.group(1)), int(match.group(3))
        if file.size is not None and length != file.size:
            raise IntegrityError(f"{file.filename} is {length} bytes, the index says {file.size}",
                                 where=redact_url(file.url))
        tail = response.content

        def fetch(begin: int, end: int) -> bytes:
            part = get(self.session, file.url, auth=self._auth,
                       headers={"Range": f"bytes={begin}-{end - 1}",
                                "Accept-Encoding": "identity"})
            with part:
                body = part.content
                if part.status_code == 200:  # the server stopped honouring Range
                    body = body[begin:end]
            if len(body) != end - begin:
                raise NetworkError(f"cannot fetch {redact_url(file.url)}: asked for "
                                   f"{end - begin} bytes, got {len(body)}")
            return body

        reader = _RangeReader(length, fetch, {start: tail})
        with zipfile.ZipFile(reader) as archive:
            return _metadata_member(archive, file)

    def _metadata_by_download(self, file: DistFile, response: requests.Response) -> bytes:
        digest = hashlib.sha256()
        size = 0
        with tempfile.TemporaryFile(prefix="lockmirror-wheel-") as spool:
            for chunk in response.iter_content(CHUNK):
                spool.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            _verify_digest(digest.hexdigest(), size, file.sha256, file.size, file.filename,
                           file.url)
            spool.seek(0)
            with zipfile.ZipFile(spool) as archive:
                return _metadata_member(archive, file)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _verify(data: bytes, sha256: str | None, size: int | None, filename: str, url: str) -> None:
    _verify_digest(hashlib.sha256(data).hexdigest(), len(data), sha256, size, filename, url)


def _verify_digest(actual_sha256: str, actual_size: int, sha256: str | None, size: int | None,
                   filename: str, url: str) -> None:
    if size is not None and actual_size != size:
        raise IntegrityError(f"{filename} is {actual_size} bytes, the index says {size}",
                             where=redact_url(url))
    if sha256 is not None and actual_sha256 != sha256:
        raise IntegrityError(f"{filename} has sha256 {actual_sha256}, the index says {sha256}",
                             where=redact_url(url),
                             hint="the index or something between serves altered bytes; "
                                  "refusing them")


def _sdist_pkg_info(data: bytes, file: DistFile) -> bytes:
    import tarfile

    handle: IO[bytes] = io.BytesIO(data)
    try:
        if file.filename.endswith(".zip"):
            with zipfile.ZipFile(handle) as archive:
                names = [n for n in archive.namelist()
                         if n.count("/") == 1 and n.endswith("/PKG-INFO")]
                if names:
                    return archive.read(names[0])
        else:
            with tarfile.open(fileobj=handle) as archive:
                for member in archive.getmembers():
                    if member.name.count("/") == 1 and member.name.endswith("/PKG-INFO"):
                        extracted = archive.extractfile(member)
                        if extracted is not None:
                            return extracted.read()
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as error:
        raise LockmirrorError(f"{file.filename} is not a readable sdist ({error})",
                              where=redact_url(file.url)) from None
    raise LockmirrorError(f"{file.filename} has no PKG-INFO", where=redact_url(file.url))
