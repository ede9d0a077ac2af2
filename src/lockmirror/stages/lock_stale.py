"""The sets locked from other inputs, in lines a person reads: ``lock
--upgrade-vulnerable`` warns with them, ``bump`` puts them in its warnings and in
its pull request's body. Why a set is stale is :func:`lockmirror.stages.lock.stale_reason`.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..config import LoadedConfig
from ..errors import InputError
from .lock import stale_reason

__all__ = ["stale_lines"]


def stale_lines(loaded: LoadedConfig, notes: Mapping[str, str] | None = None) -> list[str]:
    """A line per set locked from other inputs (``notes``: set -> what to add), its
    lockfile named as from mirror.yaml's folder (the lines go in a public PR body):
    ``lock --check`` fails for it until it is locked again. Each set is asked on its
    own: a lockfile that does not read (merge-conflict markers) is a line saying so
    and how to go on, never an error (the sets just locked are written by then)."""
    lines = []
    for name in loaded.chosen_sets(None):
        path = loaded.lockfile_path(name)
        shown = (path.relative_to(loaded.root).as_posix() if path.is_relative_to(loaded.root)
                 else path.name)
        note = (notes or {}).get(name, "")
        try:
            why = stale_reason(loaded, name, shown)
        except InputError as error:
            how = f" ({error.hint})" if error.hint else ""
            lines.append(f"{shown} does not read: {error.message}{how}{note}; then run "
                         f"`lockmirror lock --set {name}`")
            continue
        if why is not None:
            lines.append(f"{why}{note}: `lockmirror lock --check` fails for set '{name}'; "
                         f"run `lockmirror lock --set {name}`")
    return lines
