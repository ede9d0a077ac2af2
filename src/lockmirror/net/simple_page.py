"""Project pages of a simple repository, read into compact records: no network.

:func:`parse_json_page` reads a PEP 691 JSON page (with PEP 700 fields),
:func:`parse_html_page` a PEP 503 HTML page (with PEP 592 yanked, PEP 658/714
core metadata and ``data-requires-python``) through the stdlib
:mod:`html.parser`. Both give a :class:`ProjectPage` and raise
LockmirrorError naming the page's URL when it is malformed or speaks another
major repository API version.

A page is read lazily: each file is kept as one small tuple (a
:data:`Record`: the strings the index sent, nothing parsed), grouped by the
version its name states. A file name is split, not parsed, and is checked
against the project: a file whose name is another project's (PyPI still
lists ``selenium-2.0-dev-9429.tar.gz``, which reads as project
``selenium-2-0-dev``) is left out of the releases, as pip leaves it out.
:class:`DistFile` objects (absolute URL, parsed time) are made only for the
releases asked for with :meth:`ProjectPage.files_of`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

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

from ..errors import LockmirrorError
from ..formats.bounded import load_json
from .http import redact_url

_SHA256 = re.compile(r"sha256=([0-9a-fA-F]{64})")
_SDIST_SUFFIXES = (".tar.gz", ".zip")
LOG = logging.getLogger(__name__)

# One file as the page lists it: (filename, url as written (relative to the
# page's base), sha256, size, upload time text, requires-python, yanked (False,
# True or the reason), core metadata (False, True or its sha256)).
Record = tuple[str, str, str | None, int | None, str | None, str | None, bool | str, bool | str]
# A wheel name's tags, as strings: (interpreter, abi, platform).
TagText = tuple[str, str, str]


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


def split_filename(filename: str) -> tuple[str, str, str] | None:
    """(name, version, tags text) as a file name writes them, without parsing
    either: ``tags text`` is ``py3-none-any`` for a wheel, "" for an sdist;
    None for a name that is neither (PEP 427 / PEP 625 shapes)."""
    if filename.endswith(".whl"):
        parts = filename[:-4].split("-")
        if len(parts) not in (5, 6):
            return None
        return parts[0], parts[1], "-".join(parts[-3:])
    for suffix in _SDIST_SUFFIXES:
        if filename.endswith(suffix):
            name, _, version = filename[: -len(suffix)].rpartition("-")
            return (name, version, "") if name and version else None
    return None


def wheel_tag_texts(tags: str) -> Iterator[TagText]:
    """The (interpreter, abi, platform) triples of a wheel's compressed tag text."""
    interpreters, abis, platforms = tags.split("-")
    for interpreter in interpreters.split("."):
        for abi in abis.split("."):
            for platform in platforms.split("."):
                yield interpreter, abi, platform


# A page keeps a wheel only if this says yes to one of its tags (see IndexClient).
TagFilter = Callable[[TagText], bool]


class ProjectPage:
    """A project's page on the source that has it: its files in page order
    and, by version, the releases its file names state (names checked)."""

    def __init__(self, name: NormalizedName, source: str, url: str,
                 records: Iterable[Record], *, base: str | None = None,
                 given_versions: Any = None, keep: TagFilter | None = None) -> None:
        self.name = name
        self.source = source
        self.url = url
        self.base = base or url
        self._given_versions = given_versions
        self._records: list[Record] = []
        self._releases: dict[Version, list[Record]] = {}
        self._group(records, keep)

    def _group(self, records: Iterable[Record], keep: TagFilter | None) -> None:
        by_text: dict[str, list[Record]] = {}
        names: dict[str, bool] = {}  # the name as a file writes it -> is it this project's
        for record in records:
            split = split_filename(record[0])
            if split is not None and split[2] and keep is not None \
                    and not any(keep(t) for t in wheel_tag_texts(split[2])):
                continue  # a wheel no target of this client installs
            self._records.append(record)
            if split is None:
                continue
            written, version_text, _ = split
            ours = names.get(written)
            if ours is None:
                ours = names[written] = canonicalize_name(written) == self.name
                if not ours:
                    LOG.debug("%s: ignoring files named %r: not this project's name",
                              redact_url(self.url), written)
            if ours:
                by_text.setdefault(version_text, []).append(record)
        for text, group in by_text.items():
            version = _version(text)
            if version is not None:
                self._releases.setdefault(version, []).extend(group)

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


# --------------------------------------------------------------------------
# PEP 691 JSON
# --------------------------------------------------------------------------


def parse_json_page(data: bytes, url: str, project: NormalizedName, source: str, *,
                    keep: TagFilter | None = None) -> ProjectPage:
    """A PEP 691 page (with PEP 700 fields when present). Raises LockmirrorError if
    malformed. ``keep``: wheels none of whose tags it accepts are dropped."""
    page = load_json(data, where=redact_url(url), error=LockmirrorError)
    try:
        _check_api_version(page.get("meta", {}).get("api-version"), url)
        records = [_json_record(entry) for entry in page["files"]]
        return ProjectPage(project, source, url, records, given_versions=page.get("versions"),
                           keep=keep)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LockmirrorError(f"the project page is not valid PEP 691 JSON ({exc})",
                              where=redact_url(url)) from None


_REQUIRES_PYTHON: dict[str, str] = {}


def _json_record(entry: dict[str, Any]) -> Record:
    core = entry.get("core-metadata", entry.get("dist-info-metadata", False))
    yanked = entry.get("yanked", False)
    sha256 = (entry.get("hashes") or {}).get("sha256")
    size = entry.get("size")
    requires_python = entry.get("requires-python") or None
    if requires_python is not None:  # a few texts recur on thousands of files: one copy each
        requires_python = _REQUIRES_PYTHON.setdefault(str(requires_python),
                                                      str(requires_python))
    upload_time = entry.get("upload-time")
    return (str(entry["filename"]), str(entry["url"]),
            str(sha256).lower() if sha256 else None,
            size if isinstance(size, int) and not isinstance(size, bool) else None,
            upload_time if isinstance(upload_time, str) else None,
            requires_python,
            yanked if isinstance(yanked, str) and yanked else bool(yanked),
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
                    keep: TagFilter | None = None) -> ProjectPage:
    """A PEP 503 page with PEP 592/658/714 attributes (``keep`` as for JSON)."""
    parser = _LinkParser()
    parser.feed(text)
    parser.close()
    _check_api_version(parser.api_version, url)
    base = urljoin(url, parser.base) if parser.base else url
    records = [found for link in parser.links if (found := _html_record(link)) is not None]
    return ProjectPage(project, source, url, records, base=base, keep=keep)


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
