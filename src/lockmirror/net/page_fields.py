"""The JSON types of a PEP 691 file entry, checked before anything reads it.

A field of the wrong type is no value to guess at: ``"sha256": 12345`` read as
text would send lockmirror to download a file it then calls altered,
``"requires-python": 7`` would read as a version range, ``"size": -5`` as a
size. :func:`check_file_entry` refuses the entry instead, naming the field, and
the page reader turns that into one line naming the page. A field PEP 691 and
PEP 700 leave optional may be absent or ``null``.
"""

from __future__ import annotations

import re
from typing import Any

_HEX = re.compile(r"[0-9a-fA-F]+")


class FieldError(ValueError):
    """A file entry's field has the wrong JSON type or shape."""


def check_page(page: Any) -> list[Any]:
    """The ``files`` list of the PEP 691 page ``page`` (parsed JSON); raise FieldError
    saying what is wrong when the page is no object, its ``meta`` no object, or
    ``files`` absent or no list."""
    if type(page) is not dict:
        raise FieldError(f"the page is {_json_type(page)}, not an object")
    if type(page.get("meta", {})) is not dict:
        raise FieldError(f"'meta' is {_json_type(page['meta'])}, not an object")
    if "files" not in page:
        raise FieldError("the page has no 'files'")
    files = page["files"]
    if type(files) is not list:
        raise FieldError(f"'files' is {_json_type(files)}, not a list")
    return files


def _json_type(value: Any) -> str:
    """What a JSON value is, in JSON's words: ``a list``, ``an object``, ``null``."""
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), "null")


def check_file_entry(entry: Any, position: int) -> None:
    """Raise FieldError naming ``files[position]`` and the field when ``entry`` is not an
    object whose ``filename`` and ``url`` are strings, ``hashes`` (and a
    ``core-metadata`` / ``dist-info-metadata`` object) maps hash names to hex
    digests (sha256: 64 of them), ``requires-python`` and ``upload-time`` are
    strings, ``size`` a non-negative integer and ``yanked`` a boolean or a string.
    Costs a few type checks (pages list thousands of files)."""
    if type(entry) is not dict:
        raise FieldError(f"files[{position}] is not an object")
    get = entry.get
    for key in ("filename", "url"):
        if type(get(key)) is not str:
            raise _wrong(entry, position, key, "a string")
    _check_hashes(entry, position, "hashes")
    for key in ("core-metadata", "dist-info-metadata"):
        kind = type(get(key))
        if kind is dict:
            _check_hashes(entry, position, key)
        elif kind not in _BOOL_OR_NULL:
            raise _wrong(entry, position, key, "a boolean or an object of hashes")
    for key in ("requires-python", "upload-time"):
        if type(get(key)) not in _TEXT_OR_NULL:
            raise _wrong(entry, position, key, "a string")
    size = get("size")
    if size is not None and (type(size) is not int or size < 0):
        raise _wrong(entry, position, "size", "a non-negative integer")
    if type(get("yanked")) not in _YANKED:
        raise _wrong(entry, position, "yanked", "a boolean or a string")


_BOOL_OR_NULL = frozenset({bool, type(None)})
_TEXT_OR_NULL = frozenset({str, type(None)})
_YANKED = _BOOL_OR_NULL | {str}


def _check_hashes(entry: dict[str, Any], position: int, key: str) -> None:
    hashes = entry.get(key)
    if hashes is None:
        return
    if type(hashes) is not dict or not all(
            type(name) is str and type(digest) is str and _HEX.fullmatch(digest)
            for name, digest in hashes.items()):
        raise _wrong(entry, position, key, "an object of hash names to hex digests")
    if "sha256" in hashes and len(hashes["sha256"]) != 64:
        raise _wrong(entry, position, key, "an object whose sha256 is 64 hex digits")


def _wrong(entry: dict[str, Any], position: int, key: str, should: str) -> FieldError:
    name = entry.get("filename")
    which = f"files[{position}] ({name[:80]!r})" if isinstance(name, str) else f"files[{position}]"
    if key not in entry:
        return FieldError(f"{which} has no '{key}'")
    return FieldError(f"{which}: '{key}' is not {should} (it is {_shown(entry[key])})")


def _shown(value: Any) -> str:
    """A hostile value in a message: its JSON type and, when short, its repr."""
    text = repr(value)
    return text if len(text) <= 40 else f"a {type(value).__name__} of {len(text)} characters"
