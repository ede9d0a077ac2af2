"""The doit glue: the only module that imports doit.

Each ``*_tasks`` function returns the task dict (or yields subtasks) for one
stage; ``dodo.py`` only wires them. Actions call the stage's entry function,
print its summary, and turn a LockmirrorError into a one-line message and a
failed task (no traceback). Heavy modules are imported inside actions so a
no-op run stays fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from doit.exceptions import TaskFailed

from .errors import ConfigError, LockmirrorError
from .fsutil import atomic_write

if TYPE_CHECKING:
    from .config import LoadedConfig

TaskDict = dict[str, Any]
_SUMMARY_FORMAT = 1


class Project:
    """mirror.yaml as the task graph sees it.

    Building the graph needs only set names, input hashes and paths. Those
    are kept in ``.cache/doit-config/<key>.json``, keyed by the sha256 of
    mirror.yaml's bytes and of every environment variable it references, so
    a no-op ``doit`` skips pydantic validation (most of its start-up time).
    The full, validated config is loaded when a task actually runs.
    """

    def __init__(self, path: str | os.PathLike[str] = "mirror.yaml") -> None:
        self.path = Path(path)
        try:
            raw = self.path.read_bytes()
        except OSError:
            raw = b""
        names = sorted(set(re.findall(rb"\$\{([A-Za-z_][A-Za-z0-9_]*)", raw)))
        names += [b"LOCKMIRROR_STORE", b"LOCKMIRROR_CACHE"]
        digest = hashlib.sha256(raw)
        for name in names:
            digest.update(b"\0" + name + b"=" + os.environ.get(name.decode(), "\0").encode())
        digest.update(str(self.path.resolve()).encode())
        self._summary_path = (self.path.resolve().parent / ".cache" / "doit-config"
                              / f"{digest.hexdigest()[:32]}.json")
        self.summary = self._read_summary() or self._make_summary()

    def _read_summary(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self._summary_path.read_text())
        except (OSError, ValueError):
            return None
        return data if data.get("format") == _SUMMARY_FORMAT else None

    def _make_summary(self) -> dict[str, Any]:
        from .lock import input_hash

        loaded = self.loaded
        config = loaded.config
        summary = {
            "format": _SUMMARY_FORMAT,
            "sets": {name: {"input_hash": input_hash(loaded, name),
                            "lockfile": str(loaded.lockfile_path(name)),
                            "targets": config.set_targets(name)} for name in config.sets},
            "publish": sorted(config.publish),
            "paths": {"store": str(loaded.store_dir), "index": str(loaded.index_dir),
                      "dist": str(loaded.dist_dir), "cache": str(loaded.cache_dir),
                      "lockfiles": str(loaded.lockfile_dir), "config": str(loaded.path)},
        }
        try:
            atomic_write(self._summary_path, json.dumps(summary, sort_keys=True))
        except OSError:
            pass  # a read-only checkout still works, just slower
        return summary

    @cached_property
    def loaded(self) -> LoadedConfig:
        """The validated config; a broken file exits 2 with the lines
        ``lockmirror validate`` prints."""
        from .config import load_config

        try:
            return load_config(self.path)
        except ConfigError as error:
            print(str(error), file=sys.stderr)
            raise SystemExit(2) from None

    @property
    def set_names(self) -> list[str]:
        return list(self.summary["sets"])

    def lockfile_path(self, set_name: str) -> Path:
        return Path(self.summary["sets"][set_name]["lockfile"])

    def path_of(self, kind: str) -> Path:
        return Path(self.summary["paths"][kind])


def load(path: str = "mirror.yaml") -> Project:
    """The project for dodo.py (cheap when mirror.yaml is unchanged)."""
    return Project(path)


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


def _lock_one(project: Project, set_name: str) -> None:
    from .lock import lock_sets

    for result in lock_sets(project.loaded, [set_name]):
        state = "written" if result.written else "unchanged"
        print(f"{result.path}: {len(result.lockfile.packages)} packages ({state})")


def lock_tasks(project: Project) -> Iterator[TaskDict]:
    from .lockfile import read_input_hash

    for set_name in project.set_names:
        path = project.lockfile_path(set_name)
        wanted = project.summary["sets"][set_name]["input_hash"]
        yield {
            "name": set_name,
            "doc": f"resolve set '{set_name}' for its targets into {path.name}",
            "actions": [_action(_lock_one, project, set_name)],
            "targets": [str(path)],
            # Up to date when the hash recorded in the lockfile matches: a fresh
            # clone with current lockfiles does no network at all.
            "uptodate": [lambda path=path, wanted=wanted: read_input_hash(path) == wanted],
            "verbosity": 2,
        }


def lockfile_paths(project: Project) -> list[Path]:
    return [project.lockfile_path(name) for name in project.set_names]
