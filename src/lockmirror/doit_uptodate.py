"""The up-to-date checks of doit tasks that a file's digest cannot say.

doit reruns a task when a ``file_dep`` changed or a ``targets`` file is missing;
these say the rest (no doit import here: doit calls them with the ``task``
and the ``values`` its last successful run returned, by parameter name):

* :func:`lock_current`: the lockfile records the hash of the inputs it is
  locked from now (a fresh clone with current lockfiles does no network at all);
* :func:`store_complete`: the store still holds every file the lockfiles name
  (a stat per file; the names prove the hashes);
* :func:`bundle_there`: the bundle's files, named only when written (their name
  holds the content id), are still on disk;
* :func:`installs_unchanged`: what an installer reads from the index is what
  check-install last proved (``doit check-install`` or ``lockmirror
  check-install``: the pass they record), with the same installers, so an edit
  that changes only the landing page or the SBOMs (a comment in mirror.yaml,
  its commit) does not run every installer again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .doit_project import Project


def lock_current(path: Path, wanted: str) -> bool:
    """Whether the lockfile ``path`` records the input hash ``wanted``."""
    from .formats.lockfile import read_input_hash

    return read_input_hash(path) == wanted


def store_complete(project: Project, task: object = None) -> bool:
    """Whether the store holds every file the lockfiles (and the retained revisions
    and lockmirror's own set) name; never for a shard run (``--set``/``--target``:
    it checks its names, so a typo must not pass as done)."""
    from .stages.fetch_plan import is_current

    options = getattr(task, "options", None) or {}
    if options.get("sets") or options.get("target_names"):
        return False
    written, _ = project.retained
    return is_current(project.loaded, also=[*project.tool_lockfile(), *written])


def bundle_there(task: object, values: dict[str, Any]) -> bool:
    """Whether the files the last bundle run wrote (``values["parts"]``) are all
    still there: a deleted tar is written again (found by an outside tester); and,
    when ``--now`` is given, whether that run was given the same (else its snapshot
    says another time)."""
    parts = values.get("parts") or []
    now = (getattr(task, "options", None) or {}).get("now") or ""
    return (bool(parts) and all(os.path.isfile(part) for part in parts)
            and (not now or values.get("now") == now))


def installs_unchanged(index_dir: Path, work_dir: Path) -> bool:
    """Whether ``work_dir`` (``<paths.cache>/verify``) records a pass of
    check-install, by either door, on what installers read from ``index_dir``
    now (:meth:`Manifest.installable`) with today's installer matrix."""
    from .stages.check_install_work import passed  # when the task is looked at

    return passed(index_dir, work_dir)
