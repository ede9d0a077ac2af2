"""Where check-install works, and the pass it records: its state on disk.

On a project's own index (``pipeline.check_install`` given the loaded
mirror.yaml and its ``paths.index``), ``doit check-install`` and ``lockmirror
check-install`` share ``<paths.cache>/verify/`` (:func:`where_to_check`):
``run/`` (one run's environments), ``installers/`` (the copies) and
``verified-manifest.json``, the record of the last whole pass
(:func:`record_pass`): the sha256 of what installers read from the index
(:meth:`~lockmirror.formats.manifest.Manifest.installable`) and the installer
matrix that read it. While neither changed, the index needs no new run
(:func:`passed`: doit's up-to-date check). A run there first makes sure the
index was built from the project's lockfiles (:func:`require_built_from`): a
pass on another lock's index would vouch for lockfiles it never installed.

Anywhere else (a directory and no mirror.yaml) a run works in
``$TMPDIR/lockmirror-verify-<pid>-XXXXXXXX`` (:func:`temporary_work_dir`) and
removes it at its end; one whose run was killed (its pid gone) is removed by
the next run and by gc (:func:`killed_runs`).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from .. import fsutil
from ..errors import LockmirrorError
from ..fsutil import atomic_write, sha256_bytes

if TYPE_CHECKING:
    from ..config import LoadedConfig

PASS_RECORD = "verified-manifest.json"
PASS_FORMAT = "lockmirror-check-install-pass/1"
TEMP_PREFIX = "lockmirror-verify-"
# the name before the pid was in it: mkdtemp's 8 characters
_BEFORE_PIDS = re.compile(re.escape(TEMP_PREFIX) + r"[a-z0-9_]{8}")


def where_to_check(loaded: LoadedConfig | None, index_dir: Path | None
                   ) -> tuple[Path, Path | None]:
    """The index to check (``index_dir``, default ``paths.index``, else ``dist-index``)
    and the project's work directory for it: ``<paths.cache>/verify`` when it is
    ``paths.index``, None for any other tree and without mirror.yaml."""
    if index_dir is None:
        index_dir = loaded.index_dir if loaded is not None else Path("dist-index")
    if loaded is None or Path(index_dir).resolve() != loaded.index_dir.resolve():
        return Path(index_dir), None
    return Path(index_dir), loaded.cache_dir / "verify"


def require_built_from(loaded: LoadedConfig, index_dir: Path,
                       sets: Sequence[str] | None) -> None:
    """Refuse the project's index when it was built from other lockfiles than the
    checkout's (a lock since the last index, an index artifact of another commit):
    for each of ``sets`` (default: every set of mirror.yaml and of the index), the
    lockfile copy it serves (``lockfiles/pylock.<set>.toml``, what installers read)
    must be the checkout's lockfile relocated as the index stage relocates it
    (:func:`~lockmirror.formats.mirror_lockfile.relocate_lockfile`), or neither be
    there. An index holding no copy is left to check-install's own refusal.
    LockmirrorError naming the sets, before anything is installed. Costs a read of
    each lockfile and its copy, and a relocation."""
    from ..formats.mirror_lockfile import relocate_lockfile, set_of_lockfile_copy

    served = {name for path in (index_dir / "lockfiles").glob("pylock.*.toml")
              if (name := set_of_lockfile_copy(f"lockfiles/{path.name}"))}
    if not served:
        return
    differ = []
    for name in sets or sorted(served | set(loaded.config.sets)):
        path = loaded.lockfile_path(name)
        locked = _read(path) if name in loaded.config.sets else None
        mine = None if locked is None else relocate_lockfile(locked, where=str(path))
        if mine != _read(index_dir / "lockfiles" / path.name):
            differ.append(name)
    if differ:
        raise LockmirrorError(f"{index_dir} was built from other lockfiles (set"
                              f"{'s' if len(differ) > 1 else ''} {', '.join(differ)}): "
                              "run `doit index`")


def _read(path: Path) -> bytes | None:
    """The bytes of ``path``; None when there is no such file."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LockmirrorError(f"cannot read: {exc.strerror}", where=str(path)) from None


def pass_record(index_dir: Path) -> bytes:
    """The bytes a whole pass on ``index_dir`` records. Raises LockmirrorError when
    its manifest is missing or unreadable. Costs a read of the manifest."""
    from ..formats.manifest import MANIFEST_NAME, Manifest  # when asked, not at doit's graph load
    from .installers import INSTALLERS

    installable = Manifest.read(Path(index_dir) / MANIFEST_NAME).installable().dumps()
    record = {"format": PASS_FORMAT, "installable": sha256_bytes(installable.encode()),
              "installers": [asdict(installer) for installer in INSTALLERS]}
    return (json.dumps(record, indent=1, sort_keys=True) + "\n").encode()


def passed(index_dir: Path, work_dir: Path) -> bool:
    """Whether ``work_dir`` records a whole pass on what installers read from
    ``index_dir`` now, with today's installer matrix (a landing page or SBOM
    that changed does not count); False when either cannot be read."""
    try:
        return (work_dir / PASS_RECORD).read_bytes() == pass_record(index_dir)
    except (OSError, LockmirrorError):
        return False


def record_before(work_dir: Path | None, index_dir: Path) -> bytes | None:
    """What a whole pass of the run about to start would record (:func:`pass_record`,
    read now: an index rebuilt during the run is not the one it checked); None off
    the project's index or when the manifest does not read (nothing is recorded)."""
    if work_dir is None:
        return None
    try:
        return pass_record(index_dir)
    except LockmirrorError:
        return None


def record_pass(work_dir: Path | None, record: bytes | None, ok: bool, *,
                limited_by: Iterable[object], unavailable: bool = False) -> None:
    """After a run on the project's index (``work_dir``: its work directory; None:
    another tree, nothing to do). A run that passed and was limited by none of its
    options (``limited_by``: sets, targets, installers, transports, no installs)
    records its pass (``record``: :func:`record_before`, taken as the run started); one
    that failed removes the record (what it proved may no longer hold); a part that
    passed, or a run missing an installer (``unavailable``: its copy could not be
    fetched, so its installs never ran), leaves it as it is: it proves only its part,
    as a doit shard does (steps skipped because a target or an installer cannot run
    on this machine are what every run here skips: they do not count). A deployed
    mirror's run installed from elsewhere: its caller passes None."""
    if work_dir is None:
        return
    if not ok:
        (work_dir / PASS_RECORD).unlink(missing_ok=True)
    elif record is not None and not unavailable and not any(limited_by):
        atomic_write(work_dir / PASS_RECORD, record)


def temporary_work_dir(say: Callable[[str], None]) -> Path:
    """A new ``$TMPDIR/lockmirror-verify-<pid>-XXXXXXXX`` for one run, once the
    directories of killed runs (:func:`killed_runs`) are removed, saying so."""
    fsutil.remove_killed_runs(TEMP_PREFIX, say, "check-install runs", unnamed=_BEFORE_PIDS)
    return Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))


def killed_runs(root: Path | None = None) -> list[Path]:
    """The directories of killed check-install runs in ``root`` (default ``$TMPDIR``):
    :func:`lockmirror.fsutil.killed_runs` of ``lockmirror-verify-``. Removes nothing."""
    return fsutil.killed_runs(TEMP_PREFIX, root, unnamed=_BEFORE_PIDS)
