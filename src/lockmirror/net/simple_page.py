"""Project pages of a simple repository, read into records: no network.

:func:`parse_json_page` reads a PEP 691 JSON page (with PEP 700 fields),
:func:`parse_html_page` a PEP 503 HTML page (with PEP 592 yanked, PEP 658/714
core metadata and ``data-requires-python``) through the stdlib
:mod:`html.parser`. Both give a :class:`ProjectPage` of :class:`DistFile`
records with absolute URLs, and raise LockmirrorError naming the page's URL
when it is malformed or speaks another major repository API version.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from ..errors import LockmirrorError
from ..formats.bounded import load_json
from .http import redact_url

_SHA256 = re.compile(r"sha256=([0-9a-fA-F]{64})")


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
# PEP 691 JSON
# --------------------------------------------------------------------------


def parse_json_page(data: bytes, url: str, project: NormalizedName, source: str) -> ProjectPage:
    """A PEP 691 page (with PEP 700 fields when present). Raises LockmirrorError if malformed."""
    page = load_json(data, where=redact_url(url), error=LockmirrorError)
    try:
        _check_api_version(page.get("meta", {}).get("api-version"), url)
        files = [_json_file(entry, url, project, source) for entry in page["files"]]
        versions = _versions(page.get("versions"), files)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LockmirrorError(f"the project page is not valid PEP 691 JSON ({exc})",
                              where=redact_url(url)) from None
    return ProjectPage(name=project, source=source, url=url, files=tuple(files),
                       versions=versions)


def _json_file(entry: dict[str, Any], url: str, project: NormalizedName,
               source: str) -> DistFile:
    core = entry.get("core-metadata", entry.get("dist-info-metadata", False))
    has_metadata, metadata_sha256 = _metadata_field(core)
    yanked = entry.get("yanked", False)
    sha256 = (entry.get("hashes") or {}).get("sha256")
    size = entry.get("size")
    return DistFile(
        project=project, filename=str(entry["filename"]),
        url=urljoin(url, str(entry["url"])).split("#", 1)[0],
        sha256=str(sha256).lower() if sha256 else None,
        size=int(size) if isinstance(size, int) else None,
        upload_time=_parse_time(entry.get("upload-time")),
        requires_python=entry.get("requires-python") or None,
        yanked=bool(yanked),
        yanked_reason=yanked if isinstance(yanked, str) and yanked else None,
        metadata_sha256=metadata_sha256, has_metadata=has_metadata, source=source)


def _metadata_field(value: Any) -> tuple[bool, str | None]:
    """(has metadata, its sha256) from a PEP 691 ``core-metadata`` value."""
    if isinstance(value, dict):
        digest = value.get("sha256")
        return True, str(digest).lower() if digest else None
    return bool(value), None


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


def parse_html_page(text: str, url: str, project: NormalizedName, source: str) -> ProjectPage:
    """A PEP 503 page with PEP 592/658/714 attributes."""
    parser = _LinkParser()
    parser.feed(text)
    parser.close()
    _check_api_version(parser.api_version, url)
    base = urljoin(url, parser.base) if parser.base else url
    files = [found for link in parser.links
             if (found := _html_file(link, base, project, source)) is not None]
    return ProjectPage(name=project, source=source, url=url, files=tuple(files),
                       versions=_versions(None, files))


def _html_file(link: dict[str, str | None], base: str, project: NormalizedName,
               source: str) -> DistFile | None:
    """The file an anchor names; None when its URL names no file."""
    location, _, fragment = urljoin(base, link["href"] or "").partition("#")
    filename = unquote(urlsplit(location).path.rsplit("/", 1)[-1])
    if not filename:
        return None
    core = link.get("data-core-metadata", link.get("data-dist-info-metadata"))
    yanked = "data-yanked" in link
    return DistFile(
        project=project, filename=filename, url=location, sha256=_sha256(fragment), size=None,
        # not in PEP 503, but some indexes and proxies add it; PEP 700 JSON is the standard
        upload_time=_parse_time(link.get("data-upload-time")),
        requires_python=link.get("data-requires-python") or None,
        yanked=yanked, yanked_reason=(link.get("data-yanked") or None) if yanked else None,
        metadata_sha256=_sha256(core.strip()) if core is not None else None,
        has_metadata=core is not None, source=source)


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
