"""SPDX license ids and expressions: the one parser (``license-expression``).

Used where mirror.yaml names licenses (the policy's ``allow``/``deny``) and
where a release's metadata declares one (:mod:`lockmirror.formats.licenses`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

MAX_EXPRESSION = 200  # longer text is prose (a whole license), not an expression


@functools.cache
def _licensing() -> Any:
    from license_expression import get_spdx_licensing

    return get_spdx_licensing()


def spdx_expression(text: str) -> str | None:
    """``text`` as a normalized SPDX expression (``mit`` -> ``MIT``), or None
    when it is not one (unknown ids, prose)."""
    text = text.strip()
    if not text or len(text) > MAX_EXPRESSION or "\n" in text:
        return None
    try:
        info = _licensing().validate(text)
    except Exception:  # noqa: BLE001 - license-expression 30.x raises on some text ("a, b")
        return None  # instead of reporting it: not an expression either way
    return None if info.errors else str(info.normalized_expression)


def parse(expression: str) -> Any:
    """The parsed expression tree (``license_expression`` AND/OR/symbol nodes)
    of an expression :func:`spdx_expression` accepted."""
    return _licensing().parse(expression)


def equivalent(first: str, second: str) -> bool:
    """Whether two expressions :func:`spdx_expression` accepted offer the same
    choices, however ordered (``MIT OR Apache-2.0``, ``Apache-2.0 OR MIT``)."""
    return bool(_licensing().is_equivalent(first, second))


def license_keys(expression: str) -> set[str]:
    """The license ids an expression names (``A WITH exc`` names ``A``)."""
    return {str(getattr(s, "license_symbol", s).key) for s in parse(expression).symbols
            if not getattr(s, "is_exception", False)}


def satisfiable(expression: str, acceptable: Callable[[str], bool]) -> bool:
    """Whether some choice the expression offers (one side of each OR) uses
    only licenses ``acceptable`` accepts (every side of each AND)."""
    return _satisfiable(parse(expression), acceptable)


def _satisfiable(node: Any, acceptable: Callable[[str], bool]) -> bool:
    from license_expression import AND, OR

    if isinstance(node, OR):
        return any(_satisfiable(arg, acceptable) for arg in node.args)
    if isinstance(node, AND):
        return all(_satisfiable(arg, acceptable) for arg in node.args)
    symbol = getattr(node, "license_symbol", node)  # LicenseWithExceptionSymbol
    return acceptable(str(symbol.key))
