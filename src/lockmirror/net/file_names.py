"""The file names of a simple repository's links: split, parsed, and checked for a path.

A page names each file; the name decides the release (its version) and, for a
wheel, the tags. Splitting (:func:`split_filename`) reads the shape only, so a
page of thousands of files costs no parsing; :func:`parse_filename` parses
(memoized). :func:`path_in_file_name` says when a name is no file name at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import unquote

from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

_SDIST_SUFFIXES = (".tar.gz", ".zip")
_ENCODED_AGAIN = re.compile(r"%(2f|5c)", re.IGNORECASE)  # a separator encoded twice
# A wheel name's tags, as strings: (interpreter, abi, platform).
TagText = tuple[str, str, str]
_FILENAME_CACHE: dict[str, tuple[Version | None, frozenset[Tag]]] = {}


def parse_filename(filename: str) -> tuple[Version | None, frozenset[Tag]]:
    """(version, tags) a file name states; (None, no tags) when it does not parse."""
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


def path_in_file_name(filename: str) -> str | None:
    """The last segment of ``filename`` when it holds a path (a slash or backslash,
    as ``../../x-1.0-py3-none-any.whl`` does, or once percent-decoded, as a PEP 691
    ``x%2F..%2Fx-1.0-py3-none-any.whl`` does: a file saved under it, or asked for
    from a server that decodes it, would land elsewhere), else None."""
    plain = unquote(filename) if "%" in filename else filename
    if "/" not in plain and "\\" not in plain:
        if "%" not in plain:
            return None
        plain = _ENCODED_AGAIN.sub("/", plain)  # what a server decoding twice would see
        if "/" not in plain:
            return None
    return plain.replace("\\", "/").rsplit("/", 1)[-1]
