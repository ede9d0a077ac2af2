"""The doit glue: the only module that imports doit.

Each ``*_tasks`` function returns the task dict (or yields subtasks) for one
stage; ``dodo.py`` only wires them. Actions call the stage's entry function,
print its summary, and turn a LockmirrorError into a one-line message and a
failed task (no traceback). Heavy modules are imported inside actions so a
no-op run stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed

from .config import DEFAULT_CONFIG, LoadedConfig, load_config
from .errors import ConfigError, LockmirrorError

TaskDict = dict[str, Any]


def load(path: str = DEFAULT_CONFIG) -> LoadedConfig:
    """Load mirror.yaml for dodo.py; a broken file exits 2 with the same lines
    `lockmirror validate` prints."""
    try:
        return load_config(path)
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        raise SystemExit(2) from None


def _action(function: Callable[..., object], *args: Any) -> Callable[[], TaskFailed | None]:
    """Wrap a stage call: LockmirrorError -> one line, task failed."""

    def run() -> TaskFailed | None:
        try:
            function(*args)
        except LockmirrorError as error:
            print(f"lockmirror: error: {error}", file=sys.stderr)
            return TaskFailed(str(error).splitlines()[0])
        return None

    run.__name__ = getattr(function, "__name__", "action")
    return run


# -- lock --------------------------------------------------------------------


def _lock_one(loaded: LoadedConfig, set_name: str) -> None:
    from .lock import lock_sets

    for result in lock_sets(loaded, [set_name]):
        state = "written" if result.written else "unchanged"
        print(f"{result.path}: {len(result.lockfile.packages)} packages ({state})")


def lock_tasks(loaded: LoadedConfig) -> Iterator[TaskDict]:
    from .lock import input_hash
    from .lockfile import read_input_hash

    for set_name in loaded.config.sets:
        path = loaded.lockfile_path(set_name)
        wanted = input_hash(loaded, set_name)
        yield {
            "name": set_name,
            "doc": f"resolve set '{set_name}' for its targets into {path.name}",
            "actions": [_action(_lock_one, loaded, set_name)],
            "targets": [str(path)],
            # Up to date when the hash recorded in the lockfile matches: a fresh
            # clone with current lockfiles does no network at all.
            "uptodate": [lambda path=path, wanted=wanted: read_input_hash(path) == wanted],
            "verbosity": 2,
        }


def lockfile_paths(loaded: LoadedConfig) -> list[Path]:
    return [loaded.lockfile_path(name) for name in loaded.config.sets]
