"""mirror.yaml as doit's task graph sees it: set names, input hashes and paths, cached.

Kept apart from :mod:`lockmirror.doit_tasks` (the tasks themselves): what the
graph needs is read from a small summary file, so a no-op ``doit`` does not
validate mirror.yaml. No doit import here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import LockmirrorError
from .fsutil import atomic_write

if TYPE_CHECKING:
    from .config import LoadedConfig
    from .pipeline import RetainedLockfiles
    from .stages.lock import LockResult

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
        self.summary: dict[str, Any] = {}
        #: why mirror.yaml does not load (a broken file, a bad LOCKMIRROR_TOOL_WHEELS):
        #: doit runs every task creator for every command, ``doit list`` too, so the
        #: creators build stand-ins that report it when run (:func:`doit_tasks.needs_config`)
        self.error: LockmirrorError | None = None
        # the platform-tag warnings the lock tasks printed this run: each is said once,
        # however many sets re-lock for its target
        self.warned: set[str] = set()
        # the lockfiles the lock tasks wrote this run: a task stopped by Ctrl-C or SIGTERM
        # names them all (pipeline.lock's ``kept``), not only its own set's
        self.locked: list[LockResult] = []
        try:
            self._summary_path = self._summary_file()
            self.summary = self._read_summary() or self._make_summary()
        except LockmirrorError as error:
            self.error = error

    def _summary_file(self) -> Path:
        """Where the summary of this mirror.yaml, its variables and this lockmirror is
        kept. Raises LockmirrorError for a bad ``LOCKMIRROR_TOOL_WHEELS``."""
        try:
            raw = self.path.read_bytes()
        except OSError:
            raw = b""
        names = sorted(set(re.findall(rb"\$\{([A-Za-z_][A-Za-z0-9_]*)", raw)))
        names += [b"LOCKMIRROR_STORE", b"LOCKMIRROR_CACHE", b"LOCKMIRROR_TOOL_WHEELS"]
        digest = hashlib.sha256(raw)
        for name in names:
            digest.update(b"\0" + name + b"=" + os.environ.get(name.decode(), "\0").encode())
        digest.update(str(self.path.resolve()).encode())
        # the summary holds input hashes: a lockmirror that locks differently
        # must not reuse one (lockfile is imported by the lock tasks anyway)
        from . import __version__
        from .formats.lockfile import LOCK_FORMAT
        from .stages.toolwheels import tool_fingerprint

        digest.update(f"\0{__version__}\0{LOCK_FORMAT}\0{tool_fingerprint()}".encode())
        return (self.path.resolve().parent / ".cache" / "doit-config"
                / f"{digest.hexdigest()[:32]}.json")

    def _read_summary(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self._summary_path.read_text())
        except (OSError, ValueError, RecursionError):
            return None  # a damaged cache is rebuilt from mirror.yaml
        return data if isinstance(data, dict) and data.get("format") == _SUMMARY_FORMAT else None

    def _make_summary(self) -> dict[str, Any]:
        from .stages.lock_inputs import input_hash
        from .stages.tool_set import TOOL_SET, tool_loaded, tool_set_locked

        loaded = self.loaded
        config = loaded.config
        tool = tool_loaded(loaded) if tool_set_locked() else None
        summary = {
            "format": _SUMMARY_FORMAT,
            "sets": {name: {"input_hash": input_hash(loaded, name),
                            "lockfile": str(loaded.lockfile_path(name)),
                            "targets": config.set_targets(name)} for name in config.sets},
            "tool": tool and {"name": TOOL_SET, "input_hash": input_hash(tool, TOOL_SET),
                              "lockfile": str(tool.lockfile_path(TOOL_SET))},
            "publish": sorted(config.publish),
            "paths": {"store": loaded.store_location, "index": str(loaded.index_dir),
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
        """The validated config. Raises ConfigError (the lines ``lockmirror
        validate`` prints) for a broken file; the caller reports it."""
        from .config import load_config

        return load_config(self.path)

    @cached_property
    def retained(self) -> RetainedLockfiles:
        """The earlier lock revisions ``retention:`` keeps, asked once per doit
        run (:func:`lockmirror.pipeline.retained_lockfiles`: git processes per
        set) and handed to fetch's up-to-date check, fetch and index. Asked
        first by fetch's up-to-date check, which doit runs after the lock
        tasks: the answer sees the lockfiles this run wrote."""
        from .pipeline import retained_lockfiles

        return retained_lockfiles(self.loaded)

    @property
    def set_names(self) -> list[str]:
        return list(self.summary["sets"])

    def lockfile_path(self, set_name: str) -> Path:
        return Path(self.summary["sets"][set_name]["lockfile"])

    def locks(self) -> list[tuple[str, Path, str, str]]:
        """What each lock task locks: its name, lockfile, input hash and what it
        resolves; every set, then lockmirror's own set (stages/tool_set.py, the
        bundle's tool wheels) when it is locked."""
        locks = [(name, self.lockfile_path(name), self.summary["sets"][name]["input_hash"],
                  f"resolve set '{name}' for its targets") for name in self.set_names]
        tool = self.summary.get("tool")
        if tool:
            locks.append((tool["name"], Path(tool["lockfile"]), tool["input_hash"],
                          "resolve lockmirror's own dependencies"))
        return locks

    def lockfile_paths(self) -> list[Path]:
        """Every set's lockfile, and lockmirror's own set's when it is locked."""
        return [path for _name, path, _input_hash, _doc in self.locks()]

    def tool_lockfile(self) -> list[Path]:
        """lockmirror's own set's lockfile (stages/tool_set.py), if it is locked."""
        tool = self.summary.get("tool")
        return [Path(tool["lockfile"])] if tool else []

    def path_of(self, kind: str) -> Path:
        return Path(self.summary["paths"][kind])
