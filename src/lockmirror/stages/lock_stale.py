"""The sets locked from other inputs, in lines a person reads: ``lock
--upgrade-vulnerable`` warns with them, ``bump`` puts them in its warnings and in
its pull request's body. Why a set is stale is :func:`lockmirror.stages.lock.stale_reason`.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..config import LoadedConfig
from .lock import stale_reason

__all__ = ["stale_lines"]


def stale_lines(loaded: LoadedConfig, notes: Mapping[str, str] | None = None) -> list[str]:
    """A line per set locked from other inputs (``notes``: set -> what to add), its
    lockfile named as from mirror.yaml's folder (the lines go in a public PR body):
    ``lock --check`` fails for it until it is locked again."""
    lines = []
    for name in loaded.chosen_sets(None):
        path = loaded.lockfile_path(name)
        shown = (path.relative_to(loaded.root).as_posix() if path.is_relative_to(loaded.root)
                 else path.name)
        why = stale_reason(loaded, name, shown)
        if why is not None:
            lines.append(f"{why}{(notes or {}).get(name, '')}: `lockmirror lock --check` fails "
                         f"for set '{name}'; run `lockmirror lock --set {name}`")
    return lines
