"""Markers with their ``extra`` comparisons decided: what a lockfile may carry.

A lockfile's marker must never name ``extra`` (pip refuses it, uv silently
drops it): :func:`without_extra` rewrites a requirement's marker for the
extras actually requested. No network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from packaging._parser import Variable  # the parsed marker tree's names (no public API)
from packaging.markers import Marker


def without_extra(marker: Marker, extras: Sequence[str]) -> str | None:
    """``marker`` with its ``extra`` comparisons decided for the requested ``extras``.

    The requirement applies when the marker holds for any one requested
    extra ("" for none), so the result is the OR, over those extras, of the
    marker with each ``extra`` clause replaced by its value and the and/or
    simplified away. None when it always holds; the text never names
    ``extra`` (a lockfile marker with ``extra`` is refused by pip and
    silently dropped by uv).
    """
    parts: list[str] = []
    for extra in extras or ("",):
        reduced = _reduce(marker._markers, extra)  # packaging's parsed tree
        if reduced is True:
            return None
        if reduced is not False and reduced not in parts:
            parts.append(reduced)
    if not parts:
        return "python_version < '0'"  # never: the caller only asks for a marker that can hold
    return str(Marker(" or ".join(f"({p})" for p in parts))) if len(parts) > 1 else parts[0]


def _reduce(node: Any, extra: str) -> bool | str:
    """A parsed marker node with ``extra`` fixed: True, False, or marker text."""
    if isinstance(node, tuple):
        lhs, op, rhs = node
        text = f"{lhs.serialize()} {op.serialize()} {rhs.serialize()}"
        if any(isinstance(side, Variable) and side.value == "extra" for side in (lhs, rhs)):
            return Marker(text).evaluate({"extra": extra})
        return text
    # a list: atoms and sub-lists joined by "and"/"or"; "and" binds tighter
    alternatives: list[list[Any]] = [[]]
    for item in node:
        if item == "or":
            alternatives.append([])
        elif item != "and":
            alternatives[-1].append(item)
    kept: list[str] = []
    for terms in alternatives:
        values = [_reduce(term, extra) for term in terms]
        if any(v is False for v in values):
            continue
        texts = [v for v in values if isinstance(v, str)]
        if not texts:
            return True
        kept.append(" and ".join(f"({t})" if " or " in t else t for t in texts))
    if not kept:
        return False
    return " or ".join(f"({k})" if " and " in k and len(kept) > 1 else k for k in kept)
