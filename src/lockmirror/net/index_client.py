"""Reading upstream indexes: project pages (PEP 691 JSON or PEP 503 HTML) and core metadata.

:class:`IndexClient` is the one way lockmirror reads an index. It asks for
project pages only (never a root listing), with several sources in priority
order and per-source project pinning, memoizes each page, and reads wheel
metadata from PEP 658 ``.metadata`` files (hash-verified) or, when the index
has none, from the wheel's zip central directory through HTTP Range
requests. It is safe to share between threads; ``prefetch_*`` methods start
background fetches so that later calls find their answer ready.

Nothing the caller waits for queues behind a guess: pages and metadata
prefetches run in two separate thread pools, and a caller asking for
something a pool has queued but not started does it on its own thread.
Pages and immutable bytes are kept on disk by :mod:`lockmirror.net.disk_cache`
(pages revalidated on every use, each body written once). Pages are parsed
lazily by :mod:`lockmirror.net.simple_page` (JSON preferred through
``Accept``), Range reads live in :mod:`lockmirror.net.remote_wheel`, and
METADATA is read out of archives by :mod:`lockmirror.formats.core_metadata`
(errors: MetadataError).

Source rules (``mirror.yaml`` ``sources``):

- sources are tried by ``priority`` (lower first; ties keep file order);
  the first that has the project wins, a 404/410 moves on to the next;
- any other failure of a source is an error, never a reason to take the
  project from a lower-priority source (that would invite dependency
  confusion);
- a project listed in a source's ``projects`` is taken from that source and
  is never looked up anywhere else;
- a redirect is followed only to the same origin or to a file location a
  source declares (:mod:`lockmirror.net.redirects`); any other is an error;
- a page keeps only the file links its source may serve, by the lockfile's rule
  (:class:`~lockmirror.formats.url_policy.LinkRule`): any other is never asked.
"""

from __future__ import annotations

import functools
import hashlib
import os
import zipfile
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urljoin

import requests
import urllib3.exceptions
from packaging.utils import NormalizedName, canonicalize_name

from ..config_schema import SourceConfig
from ..errors import IntegrityError, LockmirrorError, NotFoundError, WrongSourceError
from ..formats.core_metadata import MAX_METADATA_BYTES, archive_metadata, wheel_metadata_member
from ..formats.url_policy import LinkRule
from ..redaction import redact_url
from .body import BODY_ATTEMPTS, MAX_PAGE_BYTES, get_body, page_deadline
from .disk_cache import DiskCache
from .file_names import TagText
from .http import PrefixAuth, get, make_session, network_error, source_auth
from .redirects import answered_url
from .remote_wheel import metadata_by_download, metadata_by_ranges, verify_digest
from .simple_page import (
    DistFile,
    ProjectPage,
    TagFilter,
    parse_html_page,
    parse_json_page,
    parse_page,
)
from .work_table import WorkTable

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
# an sdist read into memory for its metadata (the largest on PyPI are a few hundred MiB)
MAX_SDIST_BYTES = 1 << 30
# every index that carries PyPI's projects has it: a source that answers 404 for it and
# for every other project asked has a wrong URL (``/simpel/``), not misspelt requirements
WELL_KNOWN_PROJECT = NormalizedName("pip")


# --------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------


class IndexClient:
    """Project pages and core metadata from the configured sources; thread-safe.

    ``cache_dir``: pages (revalidated with ETag/Last-Modified) and immutable
    bytes (.metadata files, METADATA read out of wheels, sdists) kept there
    (:mod:`lockmirror.net.disk_cache`). ``session`` defaults to
    :func:`lockmirror.net.http.make_session`. Credentials come from each
    source's ``username_env``/``password_env`` in ``environ`` and are sent to
    URLs under that source only. ``max_workers`` threads prefetch pages and
    as many prefetch metadata, in separate pools. ``keep_tags``: when given
    (the tags of every target a lock resolves for), pages keep only the
    wheels with one of these tags, and sdists. Raises LockmirrorError at
    construction when a credential variable is named but unset; no network
    until a method is called.
    """

    def __init__(self, sources: Sequence[SourceConfig], *, cache_dir: Path | None = None,
                 session: requests.Session | None = None, max_workers: int = 8,
                 environ: Mapping[str, str] = os.environ,
                 keep_tags: Collection[TagText] | None = None) -> None:
        if not sources:
            raise LockmirrorError("no sources to read projects from",
                                  hint="add one under 'sources' in mirror.yaml")
        credentials = source_auth(sources, environ)  # includes userinfo written in URLs
        # Requests go to the URLs without userinfo (its credentials are in the
        # auth table), so no page, file URL or lockfile ever carries them.
        sources = [s.model_copy(update={"url": redact_url(s.url)}) for s in sources]
        self.sources = sorted(sources, key=lambda s: s.priority)  # stable: ties keep file order
        # a page keeps only the links a lockfile may name (never asked, cached, locked)
        self._links = {s.name: LinkRule(s).problem for s in self.sources}
        self._pinned: dict[NormalizedName, SourceConfig] = {}
        for source in self.sources:
            for project in source.normalized_projects:
                self._pinned.setdefault(project, source)
        # per request, so a session handed in needs no setup; credentials it
        # already carries (make_session(credentials=...)) are kept
        given = session.auth.credentials if session and isinstance(session.auth, PrefixAuth) \
            else {}
        self._auth = PrefixAuth({**given, **credentials})
        self._cache = DiskCache(cache_dir) if cache_dir is not None else None
        self._owns_session = session is None
        workers = max(1, max_workers)
        self.session = session if session is not None else make_session(
            pool_size=max(16, 2 * workers))
        self._keep: TagFilter | None = (frozenset(keep_tags).__contains__
                                        if keep_tags is not None else None)
        self._pages: WorkTable[NormalizedName, ProjectPage] = WorkTable(
            workers=workers, name="lockmirror-pages")
        self._metadata: WorkTable[str, bytes] = WorkTable(
            workers=workers, name="lockmirror-metadata")
        self._lacks_well_known_by_source: WorkTable[str, bool] = WorkTable(
            workers=1, name="lockmirror-well-known")  # never prefetched: a memo
        self._closed = False

    @property
    def auth(self) -> PrefixAuth:
        """requests auth that sends each source's credentials to its URLs only."""
        return self._auth

    # -- lifecycle -----------------------------------------------------------

    def close(self, *, wait: bool = True) -> None:
        """Drop queued prefetches, wait for running ones (unless not ``wait``), release
        connections. A closed client asks no source whether its URL looks wrong."""
        self._closed = True
        self._pages.close(wait=wait)
        self._metadata.close(wait=wait)
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        # Ctrl-C, SIGTERM: a prefetch blocked on a source that stopped answering would
        # hold the stop until its timeouts (the front door ends without it: interrupt.leave)
        self.close(wait=not isinstance(value, KeyboardInterrupt))

    # -- project pages -------------------------------------------------------------

    def project(self, name: str) -> ProjectPage:
        """The page of ``name`` from the first source that has it (memoized).

        Raises NotFoundError when no allowed source has the project (its
        subclass WrongSourceError when a source tried looks wrong:
        :meth:`_wrong_source`), NetworkError when a source fails (after
        retries), LockmirrorError when a page is malformed. Costs one request
        per source tried the first time (a revalidation when the cache has the
        page), none afterwards.
        """
        key = canonicalize_name(name)
        try:
            return self._pages.get(key, lambda: self._fetch_project(key, self._keep))
        except NotFoundError as missing:
            raise self._wrong_source(key) or missing from None

    def unfiltered_project(self, name: str) -> ProjectPage:
        """The page of ``name`` with every file, those ``keep_tags`` drops too (to
        explain why nothing installs); read again, not memoized. Raises as
        :meth:`project`."""
        if self._keep is None:
            return self.project(name)
        return self._fetch_project(canonicalize_name(name), None)

    def prefetch_projects(self, names: Iterable[str]) -> None:
        """Start fetching pages in the background (``max_workers`` at a time);
        errors surface from :meth:`project`. Returns at once."""
        for name in names:
            key = canonicalize_name(name)
            self._pages.prefetch(key, functools.partial(self._fetch_project, key, self._keep))

    def _wrong_source(self, project: NormalizedName) -> WrongSourceError | None:
        """The error for ``project``, which no source tried has, when a source looks wrong
        (:meth:`_asked_in_vain`, 404 for :data:`WELL_KNOWN_PROJECT`: a request each, once
        per client), else None; None once the client is closed (a stopped lock)."""
        if self._closed:
            return None
        in_vain = self._asked_in_vain()
        wrong = [f"{source.name} ({redact_url(source.url)})"
                 for source in self._candidate_sources(project)
                 if source.name in in_vain and self._lacks_well_known(source)]
        if not wrong:
            return None  # the name is the likely mistake
        whose, says = "the source's url", (
            f"source {wrong[0]} answers 404 for every project asked, {WELL_KNOWN_PROJECT} too, "
            "so the URL looks wrong")
        if len(wrong) > 1:  # nothing tells from outside which (in-house ones have no pip)
            whose, says = "their urls", (f"sources {', '.join(wrong)} have no page for any "
                f"project asked, nor for {WELL_KNOWN_PROJECT}: one of their urls may be wrong "
                f"(an index of in-house packages has no {WELL_KNOWN_PROJECT} either)")
        return WrongSourceError(f"no source has a project named '{project}': {says}", hint=(
            f"check {whose} in mirror.yaml: a PEP 503 index, e.g. https://pypi.org/simple/"))

    def _asked_in_vain(self) -> set[str]:
        """Names of the sources asked for every project asked they may serve (pinned
        elsewhere aside) that had none, read off the pages held (all read first, so
        which came back first does not matter): sources are asked in priority order
        until one has the page; after an error but 404, which were is unknown."""
        in_vain = {source.name for source in self.sources}
        for key in self._pages.keys():
            order = [source.name for source in self._candidate_sources(key)]
            try:  # done, or done now on this thread
                page = self._pages.get(key, functools.partial(self._fetch_project, key, self._keep))
            except NotFoundError:
                continue  # every source it may come from was asked, in vain
            except LockmirrorError:
                in_vain.difference_update(order)
            else:
                in_vain.difference_update(order[order.index(page.source):])
        return in_vain

    def _lacks_well_known(self, source: SourceConfig) -> bool:
        """Whether ``source`` answers 404 for :data:`WELL_KNOWN_PROJECT` (any other
        failure: not known to lack it); asked once per source."""
        def ask() -> bool:
            try:
                return self._fetch_page(source, WELL_KNOWN_PROJECT, self._keep) is None
            except LockmirrorError:
                return False
        return self._lacks_well_known_by_source.get(source.name, ask)

    def _candidate_sources(self, project: NormalizedName) -> list[SourceConfig]:
        pinned = self._pinned.get(project)
        return [pinned] if pinned is not None else list(self.sources)

    def _fetch_project(self, project: NormalizedName, keep: TagFilter | None) -> ProjectPage:
        tried = []
        for source in self._candidate_sources(project):
            page = self._fetch_page(source, project, keep)
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

    def _fetch_page(self, source: SourceConfig, project: NormalizedName,
                    keep: TagFilter | None) -> ProjectPage | None:
        url = urljoin(source.url, f"{project}/")
        cached = self._cache.page(url, PAGE_ACCEPT) if self._cache is not None else None
        headers = {**PAGE_HEADERS, **(cached.validators() if cached else {})}
        answer = get_body(self.session, url, auth=self._auth, sources=self.sources,
                          headers=headers, allow=(304, 404, 410), cap=MAX_PAGE_BYTES,
                          what="the project page", deadline=page_deadline())
        if answer is None:
            return None
        response, data = answer
        if response.status_code == 304 and cached is not None:
            page_url, data, content_type = cached.url, cached.body, cached.headers.get(
                "content-type", "")
        else:
            page_url = response.url or url
            content_type = response.headers.get("Content-Type", "")
            if self._cache is not None:
                self._cache.keep_page(url, PAGE_ACCEPT, page_url,
                                      {k.lower(): v for k, v in response.headers.items()}, data)
        return parse_page(data, content_type, page_url, project, source.name, keep=keep,
                          links=self._links[source.name])

    # -- bytes -------------------------------------------------------------------

    def _get_bytes(self, url: str, *, what: str, kind: str, cap: int) -> bytes:
        """A whole body (``what``, a ``kind``) of at most ``cap`` bytes, retried when
        the connection breaks mid-transfer."""
        answer = get_body(self.session, url, auth=self._auth, sources=self.sources, cap=cap,
                          what=kind)
        assert answer is not None
        return answer[1]

    def download_bytes(self, file: DistFile) -> bytes:
        """The whole file, verified against the page's sha256 and size; kept in the
        cache by its sha256 (immutable), so it is downloaded once.

        Raises IntegrityError on a mismatch, NotFoundError, NetworkError.
        Costs the file's size in memory (meant for sdists and small files).
        """
        key = file.sha256 if self._cache is not None and file.sha256 else None
        data = self._cache.blob(key) if self._cache is not None and key else None
        if data is None:
            data = self._get_bytes(file.url, what=file.filename, kind="the sdist",
                                   cap=MAX_SDIST_BYTES)
            _verify(data, file)
            if self._cache is not None and key:
                self._cache.keep_blob(key, data)
        else:
            _verify(data, file)
        return data

    # -- metadata ----------------------------------------------------------------

    def metadata(self, file: DistFile) -> bytes:
        """Core metadata of a file (memoized by URL: every target shares one read).

        Wheels: the PEP 658 ``.metadata`` file when the index has one
        (verified against its advertised sha256: IntegrityError on a
        mismatch); otherwise METADATA read out of the wheel, through Range
        requests on the zip central directory when the server honours Range
        (a few KiB), else by a streamed, sha256-verified download to a
        temporary file. Either is kept in the cache by the wheel's sha256.
        Sdists: their PKG-INFO (static only for Metadata-Version >= 2.2).
        Raises NetworkError, NotFoundError, IntegrityError, MetadataError /
        LockmirrorError (not a readable wheel or sdist).
        """
        return self._metadata.get(file.url, lambda: self._fetch_metadata(file))

    def prefetch_metadata(self, files: Iterable[DistFile]) -> None:
        """Start reading metadata in the background, in a pool of its own (never in
        the way of pages); errors surface from :meth:`metadata`."""
        for file in files:
            self._metadata.prefetch(file.url, lambda file=file: self._fetch_metadata(file))  # type: ignore[misc]

    def _fetch_metadata(self, file: DistFile) -> bytes:
        if not file.is_wheel:
            return archive_metadata(self.download_bytes(file), file.filename)
        key = f"{file.sha256}.METADATA" if self._cache is not None and file.sha256 else None
        if self._cache is not None and key is not None:
            kept = self._cache.blob(key, limit=MAX_METADATA_BYTES)
            if kept is not None:
                return kept
        data = self._wheel_metadata(file)
        if self._cache is not None and key is not None:
            self._cache.keep_blob(key, data)
        return data

    def _wheel_metadata(self, file: DistFile) -> bytes:
        """The PEP 658 file (verified), else METADATA read out of the wheel."""
        if file.has_metadata:
            try:
                data = self._get_bytes(file.metadata_url, what=f"{file.filename}.metadata",
                                       kind="the core metadata", cap=MAX_METADATA_BYTES)
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
        return self._read_wheel_metadata(file)

    def _read_wheel_metadata(self, file: DistFile) -> bytes:
        tail = TAIL_BYTES if file.size is None else min(TAIL_BYTES, file.size)
        for attempt in range(1, BODY_ATTEMPTS + 1):
            response = get(self.session, file.url, stream=True, auth=self._auth,
                           headers={"Range": f"bytes=-{tail}", "Accept-Encoding": "identity"},
                           sources=self.sources)
            try:
                with response:
                    if response.status_code == 206:
                        return metadata_by_ranges(file, response, self.session, self._auth,
                                                  self.sources, asked=tail)
                    return metadata_by_download(file, response)
            except (requests.RequestException, urllib3.exceptions.HTTPError) as error:
                if attempt == BODY_ATTEMPTS:
                    raise network_error(error, answered_url(file.url, response.url),
                                        retries=attempt - 1) from None
            except zipfile.BadZipFile as error:
                raise LockmirrorError(f"{file.filename} is not a valid wheel ({error})",
                                      where=redact_url(file.url)) from None
        raise AssertionError("unreachable")  # pragma: no cover


def _verify(data: bytes, file: DistFile) -> None:
    verify_digest(hashlib.sha256(data).hexdigest(), len(data), file)
