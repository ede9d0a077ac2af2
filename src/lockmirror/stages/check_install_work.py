"""Where check-install works outside a project: a temporary directory per run.

With no project's work directory (a directory and no mirror.yaml) a run works in
``$TMPDIR/lockmirror-verify-<pid>-XXXXXXXX`` (:func:`temporary_work_dir`) and
removes it at its end; one whose run was killed (its pid gone) is removed by
the next run and by gc (:func:`killed_runs`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..fsutil import disk_bytes, format_size, locked_unless_held, pid_alive

TEMP_PREFIX = "lockmirror-verify-"
_PID_NAMED = re.compile(re.escape(TEMP_PREFIX) + r"([0-9]+)-[^/]+")
# the name before the pid was in it: mkdtemp's 8 characters
_BEFORE_PIDS = re.compile(re.escape(TEMP_PREFIX) + r"[a-z0-9_]{8}")


def temporary_work_dir(say: Callable[[str], None]) -> Path:
    """A new ``$TMPDIR/lockmirror-verify-<pid>-XXXXXXXX`` for one run, once the
    directories of killed runs (:func:`killed_runs`) are removed, saying so."""
    removed = [(path, disk_bytes(path)) for path in killed_runs()]
    for path, _ in removed:
        shutil.rmtree(path, ignore_errors=True)
    if removed:
        freed = format_size(sum(size for _, size in removed))
        say(f"removed what killed check-install runs left: "
            f"{', '.join(str(path) for path, _ in removed)} ({freed} freed)")
    return Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))


def killed_runs(root: Path | None = None) -> list[Path]:
    """This user's run directories in ``root`` (default: the temporary directory,
    ``$TMPDIR``) whose run was killed: named with a pid no process has (or named
    before runs put their pid in the name), and held by no run (a run holds its
    directory's lock while it lives, seen from any pid namespace). Removes nothing."""
    root = Path(tempfile.gettempdir()) if root is None else root
    found = []
    for entry in sorted(root.glob(f"{TEMP_PREFIX}*")):
        try:
            mine = entry.is_dir() and not entry.is_symlink() and entry.stat().st_uid == os.getuid()
        except OSError:  # gone meanwhile
            continue
        named = _PID_NAMED.fullmatch(entry.name)
        gone = not pid_alive(int(named[1])) if named else _BEFORE_PIDS.fullmatch(entry.name)
        if mine and gone and _not_held(entry):
            found.append(entry)
    return found


def _not_held(directory: Path) -> bool:
    try:
        with locked_unless_held(directory) as free:
            return free
    except OSError:
        return False
