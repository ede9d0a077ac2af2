"""The nearest valid spelling of a typo, one rule for mirror.yaml's values and keys.

``difflib``'s similarity ratio: the closest of the valid words at or above
``cutoff`` (0.6: ``platform`` -> ``platforms``, ``requirments`` ->
``requirements``), and the hint a message ends with.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def nearest(word: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The one of ``choices`` most like ``word``, or None when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return close[0] if close else None


def did_you_mean(suggestion: str | None) -> str:
    """``; did you mean 'x'?`` for a message's end; empty without a suggestion."""
    return f"; did you mean '{suggestion}'?" if suggestion else ""
