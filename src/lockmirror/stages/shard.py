"""What one shard of the pipeline covers: some sets, on some targets.

A mirror too big for one machine runs ``lock``, ``fetch`` and
``check-install`` as one CI job per set (``--set``), or per set and target
(``--target``); the content-addressed store is what the jobs share. Each
shard's output is independent of the others': a set's lockfile is written
only by the shard of that set, and a store file is named by the sha256 of its
bytes, so two shards that both need a file write the same bytes under the
same name. The index and publish stay one job (the gather job): they read
every lockfile and write the pages every set shares.

* :func:`shard_sets` - the set names a ``--set`` list chooses, checked.
* :func:`check_targets` - a ``--target`` list, checked against mirror.yaml.
* :func:`for_targets` - lockfiles narrowed to the files that install on some
  targets (what a ``fetch --target`` downloads).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import UnknownNameError
from ..formats.lockfile import LockedPackage, Lockfile
from ..targets import Target

if TYPE_CHECKING:
    from ..config import LoadedConfig


def shard_sets(loaded: LoadedConfig, sets: Sequence[str] | None,
               tool_set: str) -> tuple[list[str] | None, bool]:
    """(mirror.yaml's sets to cover, whether lockmirror's own set ``tool_set`` is
    covered too) for a ``--set`` list: None covers every set and the tool set;
    a list covers the sets it names (each checked: UnknownNameError naming the
    first unknown one) and the tool set only when it names it."""
    if not sets:
        return None, True
    mine = [name for name in sets if name != tool_set]
    return (loaded.chosen_sets(mine) if mine else []), tool_set in sets


def check_targets(loaded: LoadedConfig, targets: Sequence[str] | None) -> None:
    """Raise UnknownNameError (exit 2) naming the first of ``targets`` mirror.yaml
    does not define."""
    defined = loaded.config.targets
    for name in targets or ():
        if name not in defined:
            raise UnknownNameError(f"no target named '{name}'", where=loaded.path.name,
                                   hint=f"targets in mirror.yaml: {', '.join(defined)}")


def for_targets(lockfiles: Sequence[Lockfile], targets: Sequence[str] | None) -> list[Lockfile]:
    """``lockfiles`` narrowed to ``targets`` (None: unchanged): each keeps the
    packages installed on one of them, and of those the sdist and the wheels
    one of them can install. A lockfile with none of the targets keeps no
    package. Costs nothing but memory; no file is read."""
    if not targets:
        return list(lockfiles)
    wanted = set(targets)
    narrowed = []
    for lockfile in lockfiles:
        chosen = [Target.of_locked(t) for t in lockfile.targets if t.name in wanted]
        packages = tuple(_narrow(p, chosen) for p in lockfile.packages
                         if any(t.name in p.targets for t in chosen))
        narrowed.append(dataclasses.replace(lockfile, packages=packages))
    return narrowed


def _narrow(package: LockedPackage, targets: Sequence[Target]) -> LockedPackage:
    wheels = tuple(wheel for wheel in package.wheels
                   if any(t.name in package.targets and t.wheel_rank(wheel.filename) is not None
                          for t in targets))
    return dataclasses.replace(package, wheels=wheels)
