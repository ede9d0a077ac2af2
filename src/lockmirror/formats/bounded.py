"""Bounded parsing of JSON and TOML that may come from a hostile hand.

``bundle.json`` and the ``manifest.json`` of an imported bundle come from
whoever carried the bundle; a lockfile in a pull request comes from its
author. The parsers accept what lockmirror's formats never hold and fail on
the rest with foreign exceptions: json takes ``NaN`` and ``Infinity`` (and
``1e400``, which is infinity), integers of thousands of digits (a ValueError
from ``int``), nesting deep enough to reach the recursion limit (a
RecursionError), and a key given twice in one object, keeping the last (a
manifest listing one path twice, the second entry winning); TOML has ``inf``
and ``nan``, and rtoml reads 128-bit integers and date-times that fall outside
Python's range once put in UTC.
:func:`load_json` and :func:`load_toml` refuse all of them, and inputs past a
size cap, with one :class:`~lockmirror.errors.InputError` line naming the file
and, for syntax errors, the line and column.

Depth is bounded by the parsers themselves: json's scanner counts its
recursion and raises RecursionError at the interpreter's limit (about a
thousand levels) without using more C stack, and rtoml (the Rust ``toml``
crate) stops with a parse error past its recursion limit; both are caught
here. Neither format lockmirror writes nests deeper than six.

TOML is read with rtoml rather than tomllib/tomli: on a 1.8 MB lockfile it
parses in 0.02 s against tomli's 0.075 s (the compiled one; the standard
library's takes 0.2 s), which is most of the index stage's time when
lockfiles change. rtoml gives the types tomllib gives, but an offset datetime
carries rtoml's own tzinfo class, which ``copy`` and ``pickle`` cannot
rebuild: :func:`load_toml` swaps in the standard library's ``timezone``.
rtoml also takes what tomllib (TOML 1.0, what pip reads lockfiles with)
refuses: TOML 1.1 syntax (trailing commas in inline tables, the ``\\e`` escape, times
without seconds) and a byte-order mark; and it keeps the carriage return of a
CRLF in a multi-line string. ``lock --check`` therefore reads each committed
lockfile with tomllib too (:func:`lockmirror.stages.lock_check.installer_parse_mismatches`);
the mirror's copies are written back as TOML 1.0 either way.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

import rtoml

from ..errors import InputError, LockmirrorError

MAX_JSON_BYTES = 256 << 20   # a manifest of a million files is ~200 MiB
MAX_TOML_BYTES = 64 << 20    # a lockfile of thousands of packages is a few MiB
MAX_INT_DIGITS = 20          # sizes and counts: 2**64 has 20 digits


class _Refused(ValueError):
    """A value the formats never hold; raised from json's hooks."""


def load_json(data: bytes | str, *, where: str,
              error: type[LockmirrorError] = InputError) -> Any:
    """Parse JSON text or UTF-8 bytes with limits.

    Raises ``error`` (InputError, exit code 2, unless the caller names
    another LockmirrorError, e.g. for an upstream's page) naming ``where``
    for: more than MAX_JSON_BYTES, invalid UTF-8, a syntax error (with its
    line and column), NaN/Infinity or a non-finite float, an integer of more
    than MAX_INT_DIGITS digits, nesting past the recursion limit, a key that
    appears twice in one object (named). Costs one pass of the C scanner plus
    a Python call per number and per object.
    """
    check_json_size(len(data), where=where, error=error)
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, parse_constant=_refuse_constant, parse_int=_bounded_int,
                          parse_float=_finite_float, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise error(f"not valid JSON: {exc.msg}",
                    where=f"{where}:{exc.lineno}:{exc.colno}") from None
    except UnicodeDecodeError as exc:
        raise error(f"not UTF-8 (byte {exc.start})", where=where) from None
    except _Refused as exc:
        raise error(str(exc), where=where) from None
    except RecursionError:
        raise error("JSON nested too deeply", where=where) from None


def check_json_size(size: int, *, where: str,
                    error: type[LockmirrorError] = InputError) -> None:
    """Raise ``error`` naming ``where`` when ``size`` bytes is more than MAX_JSON_BYTES:
    what :func:`load_json` refuses, said before the bytes are read when a file (a
    bundle member) states its size first."""
    if size > MAX_JSON_BYTES:
        raise error(f"{size} bytes is more than the {MAX_JSON_BYTES >> 20} MiB "
                    "lockmirror reads as JSON", where=where)


def load_toml(text: str, *, where: str,
              error: type[LockmirrorError] = InputError) -> dict[str, Any]:
    """Parse TOML text with limits; like :func:`load_json` (inf/nan, integers
    out of TOML's 64-bit range, date-times out of range in UTC, more than
    MAX_TOML_BYTES, nesting past rtoml's recursion limit). Syntax errors carry
    rtoml's own "at line L column C" (all but table headers nested too deeply)."""
    if len(text) > MAX_TOML_BYTES:
        raise error(f"{len(text)} characters is more than the {MAX_TOML_BYTES >> 20} MiB "
                    "lockmirror reads as TOML", where=where)
    try:
        data: dict[str, Any] = rtoml.loads(text)
    except rtoml.TomlParsingError as exc:
        raise error(f"not valid TOML: {' '.join(str(exc).split())}", where=where) from None
    except ValueError as exc:  # a value Python cannot hold (UnicodeEncodeError included)
        raise error(f"not valid TOML: {exc}", where=where) from None
    _check_values(data, where, error)
    return data


def _refuse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a number lockmirror accepts")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """The object of ``pairs``, refused when a key appears twice: json keeps the
    last, so a second entry for a path could stand in for the first unseen."""
    found = dict(pairs)  # one C call: the common case costs no Python loop
    if len(found) == len(pairs):
        return found
    seen: set[str] = set()
    for key, _ in pairs:  # dict() kept fewer: a key comes again, and the loop stops there
        if key in seen:
            break
        seen.add(key)
    shown = repr(key) if len(key) <= 200 else repr(key[:200]) + "..."
    raise _Refused(f"the key {shown} appears twice in one JSON object")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"an integer of {len(text)} digits is out of range "
                       f"(at most {MAX_INT_DIGITS})")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"{text!r} is not a finite number")
    return value


def _check_values(data: dict[str, Any], where: str, error: type[LockmirrorError]) -> None:
    """Refuse integers out of TOML's 64-bit range (rtoml reads 128-bit ones) and
    inf/nan, which lockmirror's formats never hold; give offset datetimes the
    standard library's ``timezone``."""
    low, high = -(1 << 63), 1 << 63
    stack: list[Any] = [data]
    while stack:  # a lockfile is mostly strings: one type() per value, tables pushed
        item = stack.pop()
        for key, value in item.items() if type(item) is dict else enumerate(item):
            kind = type(value)
            if kind is dict or kind is list:
                stack.append(value)
            elif kind is int and not low <= value < high:
                _refuse_int(value, where, error)
            elif kind is float and not math.isfinite(value):
                raise error(f"'{value}' is not a finite number", where=where)
            elif kind is datetime and value.tzinfo is not None:
                offset = value.utcoffset()
                value = item[key] = value.replace(
                    tzinfo=timezone.utc if not offset else timezone(offset))
                if value.year in (1, 9999):  # only there can UTC fall outside datetime's range
                    _check_utc(value, where, error)


def _check_utc(moment: datetime, where: str, error: type[LockmirrorError]) -> None:
    try:
        moment.astimezone(timezone.utc)
    except OverflowError:
        raise error(f"the date-time {moment.isoformat()} is out of range in UTC",
                    where=where) from None


def _refuse_int(item: int, where: str, error: type[LockmirrorError]) -> None:
    digits = str(item)
    shown = digits if len(digits) <= 24 else digits[:24] + "..."
    raise error(f"the integer {shown} is out of TOML's 64-bit range", where=where)
