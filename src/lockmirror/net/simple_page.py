"""Project pages of a simple repository, read into compact records: no network.

:func:`parse_json_page` reads a PEP 691 JSON page (with PEP 700 fields),
:func:`parse_html_page` a PEP 503 HTML page (with PEP 592 yanked, PEP 658/714
core metadata and ``data-requires-python``) through the stdlib
:mod:`html.parser`. Both give a :class:`ProjectPage` and raise
LockmirrorError naming the page's URL when it is malformed or speaks another
major repository API version; :func:`parse_page` picks one by the page's
content type.

A page is read lazily: each file is kept as one small tuple (a
:data:`Record`: the strings the index sent, nothing parsed), grouped by the
version its name states. A file name is split, not parsed, and is checked
against the project: a file whose name is another project's (PyPI still
lists ``selenium-2.0-dev-9429.tar.gz``, which reads as project
``selenium-2-0-dev``) is left out of the releases, as pip leaves it out.
:class:`DistFile` objects (absolute URL, parsed time) are made only for the
releases asked for with :meth:`ProjectPage.files_of`.

A file the source may not serve (its link fails the source's
:class:`~lockmirror.formats.url_policy.LinkRule`, handed in as ``links``) or
whose name holds a path is no file of the page: kept only in
:attr:`ProjectPage.refused`, so the error that finds nothing left says why.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from packaging.tags import Tag
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from ..errors import LockmirrorError
from ..formats.bounded import load_json
from ..redaction import redact_link, redact_url
from .file_names import TagText, parse_filename, path_in_file_name, split_filename, wheel_tag_texts
from .page_fields import check_file_entry, check_page

_SHA256 = re.compile(r"sha256=([0-9a-fA-F]{64})")
LOG = logging.getLogger(__name__)

# One file as the page lists it: (filename, url as written (relative to the
# page's base), sha256, size, upload time text, requires-python, yanked (False,
# True or the reason), core metadata (False, True or its sha256)).
Record = tuple[str, str, str | None, int | None, str | None, str | None, bool | str, bool | str]


@dataclass(frozen=True, slots=True)
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
        return parse_filename(self.filename)[0]

    @property
    def tags(self) -> frozenset[Tag]:
        """The wheel's tags (empty for sdists)."""
        return parse_filename(self.filename)[1]

    @property
    def metadata_url(self) -> str:
        return self.url.split("#", 1)[0] + ".metadata"


# A page keeps a wheel only if this says yes to one of its tags (see IndexClient).
TagFilter = Callable[[TagText], bool]
# Why a page's link (absolute URL) may not be followed, None if it may: the
# source's :class:`~lockmirror.formats.url_policy.LinkRule` (see IndexClient).
LinkCheck = Callable[[str], str | None]
# RefusedFile.reason of a file whose name holds a path
PATH_IN_NAME = "a path in its file name"


@dataclass(frozen=True, slots=True)
class RefusedFile:
    """A link of a page lockmirror refused as it read the page (never asked for, never a
    candidate), a file of the project or not: what an error says when nothing is left."""

    filename: str                  # as the page names it
    version_text: str              # the version its last name segment states ("": no
                                   # file of the project, as x.whl or another's name)
    url: str                       # absolute, as written but its user info
    reason: str                    # PATH_IN_NAME or the link rule's reason

    @property
    def version(self) -> Version | None:
        return _version(self.version_text)


class ProjectPage:
    """A project's page on the source that has it: its files in page order
    and, by version, the releases its file names state (names checked).
    Made by the parsers below, through a :class:`_Sorter`."""

    def __init__(self, name: NormalizedName, source: str, url: str, records: list[Record],
                 releases: dict[Version, list[Record]], *, base: str | None = None,
                 given_versions: Any = None, refused: tuple[RefusedFile, ...] = ()) -> None:
        self.name = name
        self.refused = refused  # this project's files left out as the page was read
        self.source = source
        self.url = url
        self.base = base or url
        self._given_versions = given_versions
        self._records = records
        self._releases = releases

    # -- reading -----------------------------------------------------------------

    @property
    def files(self) -> tuple[DistFile, ...]:
        """Every file on the page (kept by the tag filter), in page order."""
        return tuple(self._file(r) for r in self._records)

    @cached_property
    def versions(self) -> tuple[Version, ...]:
        """PEP 700 ``versions`` when given, else the releases' versions; ascending."""
        if isinstance(self._given_versions, list):
            return tuple(sorted({v for t in self._given_versions
                                 if (v := _version(str(t))) is not None}))
        return tuple(sorted(self._releases))

    @cached_property
    def releases(self) -> tuple[Version, ...]:
        """Versions with at least one file named for this project, newest first."""
        return tuple(sorted(self._releases, reverse=True))

    def files_of(self, version: Version) -> tuple[DistFile, ...]:
        """The files of one release (made now, not kept: callers keep what they use)."""
        return tuple(self._file(r) for r in self._releases.get(version, ()))

    def _file(self, record: Record) -> DistFile:
        filename, url, sha256, size, upload_time, requires_python, yanked, core = record
        return DistFile(
            project=self.name, filename=filename,
            url=urljoin(self.base, url).split("#", 1)[0], sha256=sha256, size=size,
            upload_time=_parse_time(upload_time), requires_python=requires_python,
            yanked=yanked is not False,
            yanked_reason=yanked if isinstance(yanked, str) and yanked else None,
            metadata_sha256=core if isinstance(core, str) else None,
            has_metadata=core is not False, source=self.source)


def _absolute(base: str, url: str) -> str:
    """``url`` joined to ``base``, without its fragment (as :class:`DistFile` has it;
    urljoin only round-trips a URL that names its host)."""
    url = url.partition("#")[0]
    return url if url.startswith(("https://", "http://")) else urljoin(base, url)


_VERSIONS: dict[str, Version | None] = {}


def _version(text: str) -> Version | None:
    """``Version(text)``, None when invalid; memoized (version texts recur across pages)."""
    try:
        return _VERSIONS[text]
    except KeyError:
        pass
    try:
        found: Version | None = Version(text)
    except InvalidVersion:
        found = None
    if len(_VERSIONS) < 200_000:
        _VERSIONS[text] = found
    return found


class _Sorter:
    """Files into a page as a parser reads them: :meth:`admit` looks at the name
    alone (split, never parsed; a wheel's tags checked against ``keep``, once
    per distinct tag text), :meth:`add` files the record under its version."""

    _NO_RELEASE = ("", "", "")

    def __init__(self, project: NormalizedName, url: str, keep: TagFilter | None,
                 links: LinkCheck | None, base: str | None = None) -> None:
        self.project = project
        self.url = url
        self.keep = keep
        self.links = links
        self.base = base or url
        self.refused: list[RefusedFile] = []
        self.records: list[Record] = []
        self.by_text: dict[str, list[Record]] = {}
        self._ours: dict[str, bool] = {}  # the name as a file writes it -> is it the project's
        self._kept_tags: dict[str, bool] = {}

    def admit(self, filename: str) -> tuple[str, str, str] | None:
        """The file name split, ``_NO_RELEASE`` for a file kept without a release
        (another project's name, no distribution's shape), None to drop it (a
        wheel none of whose tags ``keep`` accepts)."""
        split = split_filename(filename)
        if split is None:
            return self._NO_RELEASE
        written, _, tags = split
        if tags and self.keep is not None:
            kept = self._kept_tags.get(tags)
            if kept is None:
                kept = self._kept_tags[tags] = any(map(self.keep, wheel_tag_texts(tags)))
            if not kept:
                return None
        ours = self._ours.get(written)
        if ours is None:
            ours = self._ours[written] = canonicalize_name(written) == self.project
            if not ours:
                LOG.debug("%s: ignoring files named %r: not this project's name",
                          redact_url(self.url), written)
        return split if ours else self._NO_RELEASE

    def take(self, record: Record) -> None:
        """File ``record`` as :meth:`admit` says, unless its name holds a path or
        ``links`` refuses its URL: such a file (of the project or not) is kept in
        :attr:`refused` only (to say why when nothing else is left)."""
        filename = record[0]
        last = path_in_file_name(filename)
        split = self.admit(filename if last is None else last)
        if split is None:
            return
        reason, url = None, ""
        if last is not None:
            reason = PATH_IN_NAME
        elif self.links is not None:
            url = _absolute(self.base, record[1])
            reason = self.links(url)
        if reason is None:
            self.add(record, split)
        else:  # kept whatever its name: the error that finds no release says it was refused
            url = url or _absolute(self.base, record[1])
            self.refused.append(RefusedFile(filename, split[1], redact_link(url), reason))

    def add(self, record: Record, split: tuple[str, str, str]) -> None:
        self.records.append(record)
        if split is not self._NO_RELEASE:
            self.by_text.setdefault(split[1], []).append(record)

    def page(self, source: str, *, base: str | None = None,
             given_versions: Any = None) -> ProjectPage:
        releases: dict[Version, list[Record]] = {}
        for text, group in self.by_text.items():
            version = _version(text)
            if version is not None:
                releases.setdefault(version, []).extend(group)
        return ProjectPage(self.project, source, self.url, self.records, releases, base=base,
                           given_versions=given_versions, refused=tuple(self.refused))


# --------------------------------------------------------------------------
# PEP 691 JSON
# --------------------------------------------------------------------------


def parse_page(data: bytes, content_type: str, url: str, project: NormalizedName,
               source: str, *, keep: TagFilter | None = None,
               links: LinkCheck | None = None) -> ProjectPage:
    """A page as the index sent it: :func:`parse_json_page` or :func:`parse_html_page`
    by its ``content_type`` (the HTML decoded by its charset). Raises as they do, and
    LockmirrorError for another JSON type."""
    kind, _, parameters = content_type.partition(";")
    kind = kind.strip().lower()
    if kind == "application/vnd.pypi.simple.v1+json":
        return parse_json_page(data, url, project, source, keep=keep, links=links)
    if kind.endswith("json"):
        raise LockmirrorError(f"the index answered with unsupported type {kind}",
                              where=redact_url(url))
    charset = parameters.partition("charset=")[2].strip().strip('"') or "utf-8"
    try:
        text = data.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        text = data.decode("utf-8", errors="replace")
    return parse_html_page(text, url, project, source, keep=keep, links=links)


def parse_json_page(data: bytes, url: str, project: NormalizedName, source: str, *,
                    keep: TagFilter | None = None, links: LinkCheck | None = None
                    ) -> ProjectPage:
    """A PEP 691 page (with PEP 700 fields when present). Raises LockmirrorError if
    malformed, a file's field of the wrong JSON type too (naming it). ``keep``:
    wheels none of whose tags it accepts are dropped; ``links``: files whose URL it
    refuses, and files named with a path, are left out (:attr:`ProjectPage.refused`)."""
    page = load_json(data, where=redact_url(url), error=LockmirrorError)
    try:
        files = check_page(page)
        _check_api_version(page.get("meta", {}).get("api-version"), url)
        sorter = _Sorter(project, url, keep, links)
        for position, entry in enumerate(files):
            check_file_entry(entry, position)
            sorter.take(_json_record(entry, entry["filename"]))
        return sorter.page(source, given_versions=page.get("versions"))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LockmirrorError(f"the project page is not valid PEP 691 JSON ({exc})",
                              where=redact_url(url)) from None


_REQUIRES_PYTHON: dict[str, str] = {}


def _json_record(entry: dict[str, Any], filename: str) -> Record:
    get = entry.get
    core = get("core-metadata")
    if core is None:
        core = get("dist-info-metadata", False)
    yanked = get("yanked", False)
    sha256 = (get("hashes") or {}).get("sha256")  # types checked: check_file_entry
    if sha256 is not None:
        sha256 = sha256 if sha256.islower() else sha256.lower()  # no copy of a lower-case one
    size = get("size")
    requires_python = get("requires-python") or None
    if requires_python is not None:  # a few texts recur on thousands of files: one copy each
        requires_python = _REQUIRES_PYTHON.setdefault(requires_python, requires_python)
    upload_time = get("upload-time")
    return (filename, entry["url"], sha256 or None, size,
            upload_time if type(upload_time) is str else None,
            requires_python,
            yanked if type(yanked) is str and yanked else bool(yanked),
            _metadata_field(core))


def _metadata_field(value: Any) -> bool | str:
    """True, False or the sha256 from a PEP 691 ``core-metadata`` value."""
    if isinstance(value, dict):
        digest = value.get("sha256")
        return str(digest).lower() if digest else True
    return bool(value)


# --------------------------------------------------------------------------
# PEP 503 HTML
# --------------------------------------------------------------------------


class _LinkParser(HTMLParser):
    """Anchors, the first <base> and the repository-version <meta> of a PEP 503 page.

    Tag and attribute names come lower-cased and values unescaped; an attribute
    written without a value (``data-yanked``) has the value None."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[dict[str, str | None]] = []
        self.base: str | None = None
        self.api_version: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "a" and attributes.get("href"):
            self.links.append(attributes)
        elif tag == "base" and attributes.get("href") and self.base is None:
            self.base = attributes["href"]
        elif tag == "meta" and attributes.get("name") == "pypi:repository-version":
            self.api_version = attributes.get("content")


def parse_html_page(text: str, url: str, project: NormalizedName, source: str, *,
                    keep: TagFilter | None = None, links: LinkCheck | None = None
                    ) -> ProjectPage:
    """A PEP 503 page with PEP 592/658/714 attributes (``keep``, ``links`` as for JSON)."""
    parser = _LinkParser()
    parser.feed(text)
    parser.close()
    _check_api_version(parser.api_version, url)
    base = urljoin(url, parser.base) if parser.base else url
    sorter = _Sorter(project, url, keep, links, base)
    for link in parser.links:
        record = _html_record(link)
        if record is not None:
            sorter.take(record)
    return sorter.page(source, base=base)


def _html_record(link: dict[str, str | None]) -> Record | None:
    """The file an anchor names; None when its URL names no file."""
    href = link["href"] or ""
    location, _, fragment = href.partition("#")
    filename = unquote(urlsplit(location).path.rsplit("/", 1)[-1])
    if not filename:
        return None
    core = link.get("data-core-metadata", link.get("data-dist-info-metadata"))
    yanked: bool | str = False
    if "data-yanked" in link:
        yanked = link.get("data-yanked") or True
    metadata: bool | str = False
    if core is not None:
        metadata = _sha256(core.strip()) or True
    # upload time: not in PEP 503, but some indexes and proxies add it (PEP 700 JSON has it)
    return (filename, location, _sha256(fragment), None, link.get("data-upload-time"),
            link.get("data-requires-python") or None, yanked, metadata)


def _sha256(text: str) -> str | None:
    """The digest of a ``sha256=<hex>`` hash value; None for any other."""
    match = _SHA256.fullmatch(text)
    return match.group(1).lower() if match else None


# --------------------------------------------------------------------------
# Shared
# --------------------------------------------------------------------------


def _check_api_version(version: Any, url: str) -> None:
    if version is None:
        return
    major = str(version).split(".")[0]
    if major != "1":
        raise LockmirrorError(f"the index speaks repository API version {version}; "
                              "lockmirror understands version 1", where=redact_url(url))


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value))  # 3.11 reads a trailing Z
    except ValueError:
        return None
