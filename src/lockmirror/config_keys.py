"""The keys mirror.yaml may write in each of its mappings, and the nearest to a typo.

A mistyped key (``platform:`` for ``platforms:``) is an unknown key to the
schema, and often leaves a required one missing; :func:`nearest_key` finds
the key it most likely meant by walking :class:`~lockmirror.config_schema.MirrorConfig`'s
field types along pydantic's error location, with the same rule as values
(:func:`lockmirror.spelling.nearest`).
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from .config_schema import MirrorConfig
from .spelling import nearest


def nearest_key(loc: Sequence[str | int]) -> str | None:
    """The valid key nearest to the unknown key ``loc`` ends with (pydantic's
    location of an ``extra_forbidden`` error, a discriminated union's tag
    included); None when none is close or the mapping takes any key."""
    model = _model_at(loc[:-1])
    if model is None or not isinstance(loc[-1], str):
        return None
    return nearest(loc[-1], model.model_fields)


def _model_at(loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model of the mapping at ``loc``, or None."""
    kind: Any = MirrorConfig
    for part in loc:
        kind = _step(_unwrap(kind), part)
        if kind is None:
            return None
    kind = _unwrap(kind)
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def _step(kind: Any, part: str | int) -> Any:
    """The type one step into ``kind``: a model's field, a list's item, a
    mapping's value, or the member of a union whose tag ``part`` is."""
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        field = kind.model_fields.get(part) if isinstance(part, str) else None
        return field.annotation if field is not None else None
    origin = get_origin(kind)
    if origin in (list, dict):
        return get_args(kind)[-1]
    if origin in (Union, types.UnionType):
        return next((member for member in get_args(kind) if _tagged(member, part)), None)
    return None


def _tagged(member: Any, tag: str | int) -> bool:
    """Whether ``member`` is a model with a literal field (its discriminator) of ``tag``."""
    if not (isinstance(member, type) and issubclass(member, BaseModel)):
        return False
    return any(get_origin(field.annotation) is Literal and tag in get_args(field.annotation)
               for field in member.model_fields.values())


def _unwrap(kind: Any) -> Any:
    """``kind`` without ``Annotated[...]`` and without ``| None``."""
    while True:
        if get_origin(kind) is Annotated:
            kind = get_args(kind)[0]
            continue
        if get_origin(kind) in (Union, types.UnionType):
            members = [m for m in get_args(kind) if m is not type(None)]
            if len(members) == 1:
                kind = members[0]
                continue
        return kind
