"""Lockfiles of sets mirror.yaml no longer declares.

Removing a set from mirror.yaml left ``lockfiles/pylock.<set>.toml`` behind:
``lock --check`` passed, ``diff`` (which reads every ``pylock.*.toml`` there)
showed no change, and the index left the set's packages out without a word.
A full lock removes such a file (:func:`remove_orphans`) and ``lock --check``
refuses it (:func:`orphan_lockfiles`), so the pull request shows the lockfile
gone.

Only ``pylock.<name>.toml`` files directly in the lockfile directory whose
``<name>`` could be a set's count: shards live in directories of their own,
retention's copies (``pylock.<set>@<commit>.toml``) under ``paths.cache``, and
lockmirror's own set's lockfile (:data:`~lockmirror.config.TOOL_SET`)
is never an orphan.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from ..config import SET_NAME, TOOL_SET, LoadedConfig, lockfile_name

__all__ = ["orphan_lockfiles", "orphan_problems", "remove_orphans"]

# a set's lockfile name (config.lockfile_name), the set's name (config.SET_NAME) in group 1
_LOCKFILE_NAME = re.compile(rf"pylock\.({SET_NAME})\.toml")


def orphan_lockfiles(lockfile_dir: Path, set_names: Iterable[str]) -> dict[Path, str]:
    """The lockfiles in ``lockfile_dir`` of sets not in ``set_names`` (path ->
    the set's name), sorted. A stat per file there; no file is read."""
    kept = {lockfile_dir / lockfile_name(name) for name in (*set_names, TOOL_SET)}
    existing = [path for path in kept if path.is_file()]
    found = {}
    for path in sorted(lockfile_dir.glob("pylock.*.toml")):
        match = _LOCKFILE_NAME.fullmatch(path.name)
        if match is None or path in kept or not path.is_file():
            continue
        # on a case-insensitive file system pylock.Web.toml may be set 'web''s own
        if any(path.samefile(other) for other in existing):
            continue
        found[path] = match.group(1)
    return found


def remove_orphans(loaded: LoadedConfig) -> list[str]:
    """After a full lock (``lockmirror lock``, ``doit lock``): remove the lockfiles
    of sets mirror.yaml no longer declares; one line each saying so."""
    lines = []
    for path, name in orphan_lockfiles(loaded.lockfile_dir, loaded.config.sets).items():
        path.unlink(missing_ok=True)
        lines.append(f"removed {path}: set '{name}' is no longer in {loaded.path.name}")
    return lines


def orphan_problems(loaded: LoadedConfig) -> list[str]:
    """``lock --check``'s line for each lockfile :func:`remove_orphans` would remove."""
    return [f"{path}: set '{name}' is no longer in {loaded.path.name}; `lockmirror lock` "
            f"removes it (or `git rm {path}`)"
            for path, name in orphan_lockfiles(loaded.lockfile_dir, loaded.config.sets).items()]
