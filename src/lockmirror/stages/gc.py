"""The gc stage: remove from the store and the caches what no current lockfile needs.

Entry: :func:`collect_garbage` (``lockmirror gc``, ``doit gc``); with no
mirror.yaml (the far side), :func:`collect_outside_project`. What is
needed is decided in one place, :func:`referenced`: every file, and each
wheel's PEP 658 metadata, named by the lockfile of a set of ``mirror.yaml``
or by an earlier revision of it that ``retention:`` keeps (git history,
:mod:`lockmirror.stages.retention`). What is keyed by a sha256 outside it goes:

* store files ``<store>/sha256/ab/cdef...``, and partial downloads in
  ``<store>/tmp/`` that no fetch holds (a fetch keeps its partial under
  ``flock``; gc takes the lock without waiting, so one in use is kept);
* the caches keyed by an artifact's sha256: what ``lock`` read and keeps
  (``<cache>/http/blobs/<2>/``: each wheel's METADATA, sdists read for theirs)
  and the build backends' answers for sdists (``<cache>/build/metadata/``);
* what check-install runs left (:func:`lockmirror.stages.installers.stale_work`),
  and the temporary directories of killed runs outside a project
  (``$TMPDIR/lockmirror-verify-<pid>-*``:
  :func:`lockmirror.stages.check_install_work.killed_runs`);
* tool-wheel caches of dependency sets this lockmirror no longer bundles
  (:func:`lockmirror.stages.toolwheels.current_cache_keys`).

A store given by ``$LOCKMIRROR_STORE`` may be shared with other mirrors, whose
lockfiles gc cannot see: it is left alone unless ``shared_store=True``. A set
without a lockfile stops gc before anything is removed (what it needs is
unknown). The HTTP cache of project pages is kept: it saves revalidations,
and what a future lock will ask for is not known. ``dist/`` bundles are the
bundle stage's retention, not gc's.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import fsutil
from ..config import LoadedConfig
from ..errors import LockmirrorError, StaleLockError
from ..formats.lockfile import Lockfile
from ..formats.manifest import temporary_target
from ..formats.store import Store
from ..fsutil import PUBLISH_RUN_PREFIX, disk_bytes, format_size, locked_unless_held, plural
from ..net.disk_cache import DiskCache
from .check_install_work import killed_runs
from .fetch_plan import plan
from .installers import stale_work

if TYPE_CHECKING:
    from .retention import Retention

__all__ = ["GcResult", "Needed", "Removal", "collect_garbage", "collect_outside_project",
           "referenced"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
_ABANDONED = 3600  # seconds: a store's temporary file this old has no live writer


@dataclass(frozen=True)
class Removal:
    """One path gc removed (in a dry run: would remove)."""

    path: Path
    kind: str  # "store file", "partial download", "cached metadata", "check-install leftover"
    freed: int  # bytes the disk gets back (0 for a file still hard-linked elsewhere)


@dataclass(frozen=True)
class Needed:
    """What gc keeps: the sha256 of every needed file, and notes on how it was decided."""

    sha256: frozenset[str]
    notes: tuple[str, ...] = ()
    metadata: frozenset[str] = frozenset()  # those of them that are wheels' PEP 658 files


@dataclass(frozen=True)
class GcResult:
    removed: tuple[Removal, ...]
    kept: int | None  # store files a lockfile in use needs (None: no project, no store)
    dry_run: bool
    skipped: tuple[str, ...] = ()  # what was left alone, and why (retention's notes too)
    missing: int = 0  # files a lockfile in use needs that the store lacks (not in ``kept``)
    missing_metadata: int = 0  # of ``missing``, wheels' metadata files (lockfiles list
    # the others; du's totals count those only)

    @property
    def freed(self) -> int:
        return sum(r.freed for r in self.removed)

    def describe(self) -> str:
        """``removed 3 items (1.2 MiB freed); 40 store files a lockfile needs kept``, and
        ``; 2 more missing from the store (1 locked file and 1 wheel metadata file;
        lockmirror du names them)`` when some are: both count store files, so kept and
        missing add up to what the lockfiles need."""
        verb, done = ("would remove", "would be freed") if self.dry_run else ("removed", "freed")
        kept = ("" if self.kept is None
                else f"; {plural(self.kept, 'store file')} a lockfile needs kept")
        if self.missing:
            files = self.missing - self.missing_metadata
            counted = [*([plural(files, "locked file")] if files else []),
                       *([plural(self.missing_metadata, "wheel metadata file")]
                         if self.missing_metadata else [])]
            kept += (f"; {self.missing} more missing from the store ({' and '.join(counted)}; "
                     f"`lockmirror du` names {'it' if self.missing == 1 else 'them'})")
        return (f"{verb} {plural(len(self.removed), 'item')} ({format_size(self.freed)} "
                f"{done}){kept}")


def referenced(loaded: LoadedConfig, kept: Retention) -> Needed:
    """The sha256 of every file a lockfile in use needs: each wheel and sdist of
    the lockfile of every set of ``mirror.yaml`` (and of lockmirror's own set,
    the bundle's tool wheels) and of the earlier revisions ``retention:``
    keeps (``kept``: :func:`lockmirror.pipeline.retention`), and each wheel's
    PEP 658 metadata. The one rule of what gc keeps.

    Raises StaleLockError naming a set that has no lockfile, InputError for a
    lockfile that does not read: then what is needed is unknown. Costs a
    parse of each lockfile.
    """
    from .tool_set import tool_lockfile_paths

    lockfiles = []
    for name in sorted(loaded.config.sets):
        path = loaded.lockfile_path(name)
        if not path.exists():
            raise StaleLockError(f"set '{name}' has no lockfile, so what it needs is unknown",
                                 where=str(path), hint="run `lockmirror lock` first; nothing "
                                 "was removed")
        lockfiles.append(Lockfile.read(path))
    # lockmirror's own set: the bundle's tool/ wheels come out of the store
    lockfiles += [Lockfile.read(path) for path in tool_lockfile_paths(loaded) if path.exists()]
    lockfiles += [revision.lockfile for revision in kept.kept]
    notes = [f"kept what {revision.label} needs ({revision.reason})" for revision in kept.kept]
    items = plan(lockfiles)
    return Needed(frozenset(item.sha256 for item in items), (*kept.notes, *notes),
                  frozenset(item.sha256 for item in items if item.is_metadata))


def collect_garbage(loaded: LoadedConfig, kept: Retention, *, dry_run: bool = False,
                    shared_store: bool = False) -> GcResult:
    """Remove what :func:`referenced` does not name (``kept``: the earlier
    revisions retention keeps) from the store and the caches.

    Returns what was removed (``dry_run``: what would be, removing nothing)
    and the bytes freed. Raises what :func:`referenced` raises before anything
    is removed, LockmirrorError when a path cannot be removed. Costs a read of
    every lockfile and a directory walk of the store and the caches.
    """
    decided = referenced(loaded, kept)
    needed = decided.sha256
    store = Store(loaded.store_dir)
    skipped: list[str] = list(decided.notes)
    found: list[Removal] = []
    given = ("$LOCKMIRROR_STORE" if os.environ.get("LOCKMIRROR_STORE")
             else None if store.root.resolve().is_relative_to(loaded.root.resolve())
             else "paths.store, outside this repository")
    if given and not shared_store:
        skipped.append(f"the store {store.root} ({given}) may be shared with other "
                       "mirrors; left alone (--shared-store: collect it by this mirror's "
                       "lockfiles alone)")
    else:
        found += _store_files(store, needed)
        found += _partials(store, needed, dry_run)
    cache = loaded.cache_dir
    # lock's immutable cache (net/disk_cache: blobs named <sha256>[.METADATA]) and its
    # sdist builds' answers (resolve/sdist_metadata: metadata/<sha256>.<suffix>)
    for folder in DiskCache(cache / "http").blob_folders():
        found += _keyed_by_sha256(folder, needed)
    found += _keyed_by_sha256(cache / "build" / "metadata", needed)
    found += _check_install_leftovers(cache / "verify", dry_run, skipped)
    found += _killed_runs()
    found += _old_tool_wheels(cache, skipped)
    if not dry_run:
        for removal in found:
            if removal.kind not in ("partial download", "check-install leftover"):
                _remove(removal.path)  # the others went under their locks already
    absent = [sha256 for sha256 in needed if not store.path(sha256).exists()]
    return GcResult(tuple(found), len(needed) - len(absent), dry_run, tuple(skipped),
                    len(absent), sum(1 for sha256 in absent if sha256 in decided.metadata))


def collect_outside_project(*, dry_run: bool = False) -> GcResult:
    """gc with no mirror.yaml (the far side, where an imported mirror has no store,
    caches or lockfiles): what killed check-install runs outside a project and
    killed publishes of a bundle left (:func:`_killed_runs`), removed unless
    ``dry_run``. Raises LockmirrorError when a path cannot be removed."""
    found = _killed_runs()
    for removal in found if not dry_run else ():
        _remove(removal.path)
    note = (f"no mirror.yaml in {Path.cwd()}: only what killed check-install runs outside "
            "a project and killed publishes left is collected (an interrupted import's "
            "leftovers go with the next import into that mirror)")
    return GcResult(tuple(found), None, dry_run, (note,))


def _check_install_leftovers(verify: Path, dry_run: bool, skipped: list[str]) -> list[Removal]:
    """What check-install runs left in ``verify``, removed (unless ``dry_run``) under
    the lock a running check-install holds; none while one runs (its work is live)."""
    if not verify.is_dir():
        return []
    with locked_unless_held(verify) as free:
        if not free:
            skipped.append(f"a check-install is running in {verify}: its work left alone")
            return []
        found = [Removal(path, "check-install leftover", disk_bytes(path))
                 for path in stale_work(verify)]
        for removal in found if not dry_run else ():
            _remove(removal.path)
    return found


def _store_files(store: Store, needed: frozenset[str]) -> Iterator[Removal]:
    """Store files whose name (their sha256) no lockfile names, and temporary
    files (``.<name>.XXXX.tmp``) a killed writer left: older than
    :data:`_ABANDONED` (a live writer renames its own within milliseconds).
    Other names are not the store's: kept."""
    top = store.root / "sha256"
    if not top.is_dir():
        return
    abandoned = time.time() - _ABANDONED
    for prefix in sorted(p for p in top.iterdir() if p.is_dir()):
        for entry in sorted(prefix.iterdir()):
            digest = prefix.name + entry.name
            if _SHA256.fullmatch(digest) and entry.is_file() and digest not in needed:
                yield Removal(entry, "store file", disk_bytes(entry))
            elif (temporary_target(entry.name) and entry.is_file()
                  and entry.stat().st_mtime < abandoned):
                yield Removal(entry, "temporary file of a killed write", disk_bytes(entry))


def _partials(store: Store, needed: frozenset[str], dry_run: bool) -> Iterator[Removal]:
    """Partial downloads of files no lockfile names that no fetch is writing,
    removed (unless ``dry_run``) while gc holds their lock."""
    tmp = store.root / "tmp"
    if not tmp.is_dir():
        return
    for entry in sorted(tmp.glob("*.partial")):
        if entry.name.removesuffix(".partial") in needed:
            continue
        try:
            fd = os.open(entry, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a fetch is writing it
        try:
            freed = disk_bytes(entry)
            if not dry_run:
                entry.unlink(missing_ok=True)
            yield Removal(entry, "partial download", freed)
        finally:
            os.close(fd)


def _keyed_by_sha256(directory: Path, needed: frozenset[str]) -> Iterator[Removal]:
    """Cache files named ``<sha256>`` or ``<sha256>.<suffix>`` whose sha256 no
    lockfile names."""
    if not directory.is_dir() or directory.is_symlink():
        return
    for entry in sorted(directory.iterdir()):
        digest = entry.name.split(".", 1)[0]
        if _SHA256.fullmatch(digest) and entry.is_file() and digest not in needed:
            yield Removal(entry, "cached metadata", disk_bytes(entry))


def _old_tool_wheels(cache: Path, notes: list[str]) -> list[Removal]:
    """Tool-wheel cache directories of dependency sets this lockmirror no longer
    bundles (each another lockmirror version's or Python's); kept when unsure."""
    from .toolwheels import current_cache_keys, tool_wheel_cache

    top = tool_wheel_cache(cache)
    if not top.is_dir():
        return []
    try:
        wanted = current_cache_keys()
    except LockmirrorError as error:
        notes.append(f"{top} left alone: {error.message}")
        return []
    return [Removal(entry, "old tool wheels", disk_bytes(entry))
            for entry in sorted(top.iterdir())
            if entry.is_dir() and not entry.name.startswith(".") and entry.name not in wanted]


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError as exc:
        raise LockmirrorError(f"cannot remove: {exc.strerror or exc}", where=str(path)) from None


def _killed_runs() -> list[Removal]:
    """What killed check-install runs outside a project (:func:`killed_runs`) and
    killed publishes of a bundle (``$TMPDIR/lockmirror-publish-<pid>-*``) left."""
    return ([Removal(path, "killed check-install run", disk_bytes(path))
             for path in killed_runs()]
            + [Removal(path, "killed publish", disk_bytes(path))
               for path in fsutil.killed_runs(PUBLISH_RUN_PREFIX)])
