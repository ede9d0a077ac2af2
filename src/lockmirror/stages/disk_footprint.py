"""What a build keeps on this disk now, measured: ``lockmirror du``'s second table.

The lockfiles say what the store needs (:mod:`lockmirror.stages.disk_usage`);
this walks the directories mirror.yaml's ``paths`` name (the store, the
index, the bundles, the caches, among them the repacked tool wheels) and
adds up the files there, each file once however many hard links it has and
in the first place that holds it: ``dist-index/`` hard-links its files to
the store's, so it adds its pages only, while each bundle in ``dist/`` is a
copy of its own. A store on S3 is not on this disk: said, not measured.
Symlinks are not followed. The locked files a local store lacks (deleted by
hand, or a fetch not run since the lock) are counted and named, by ``stat``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import LoadedConfig
from ..formats.lockfile import Lockfile
from ..formats.store import FetchItem, Store
from ..fsutil import plural
from .fetch_plan import fetch_command, missing, plan
from .toolwheels import tool_wheel_cache

SHOWN_MISSING = 3  # the missing files du names; the rest are counted


@dataclass(frozen=True)
class Place:
    """One directory a build keeps: what it is, where, and what it adds to the disk."""

    label: str  # "store .store: ...", what ``lockmirror du`` prints
    files: int
    size: int


@dataclass(frozen=True)
class Footprint:
    places: tuple[Place, ...]
    notes: tuple[str, ...]  # what was not measured, and why
    missing: tuple[FetchItem, ...] = ()  # locked files the (local) store lacks

    @property
    def total_files(self) -> int:
        return sum(place.files for place in self.places)

    @property
    def total_size(self) -> int:
        return sum(place.size for place in self.places)


def footprint(loaded: LoadedConfig, locked: Sequence[Lockfile] = ()) -> Footprint:
    """The disk the mirror's directories take now, each file counted once, and
    the files of ``locked`` a local store lacks.

    Directories not there yet are left out. Costs a walk (one ``lstat`` per
    file) of the store, the index, ``dist/`` and the cache, and one ``stat``
    per locked file (no hashing: a file's name in the store is its hash)."""
    cache = loaded.cache_dir
    keep = loaded.config.bundle.keep
    places: list[tuple[str, Path, str]] = []
    notes: list[str] = []
    gone: tuple[FetchItem, ...] = ()
    store = loaded.store_location
    if store.startswith("s3://"):
        notes.append(f"the store is on S3 ({store}): not on this disk, not measured")
    else:
        needed = plan(locked)
        gone = tuple(missing(needed, Store(Path(store))))
        places.append(("store", Path(store), _store_holds(needed, gone)))
    places += [
        ("index", loaded.index_dir, "its pages; its files are hard links into the store"),
        ("bundles", loaded.dist_dir,
         f"bundles, each a full copy of what it carries (bundle.keep: {keep or 'all'})"),
        ("tool wheels", tool_wheel_cache(cache),
         "lockmirror's own wheels repacked (LOCKMIRROR_TOOL_WHEELS=installed)"),
        ("cache", cache, "HTTP cache, sdist metadata, retained lockfiles, check-install work"),
    ]
    seen: set[tuple[int, int]] = set()
    measured = []
    for name, path, what in places:
        if path.is_dir() and not path.is_symlink():
            files, size = _measure(path, seen)
            measured.append(Place(f"{name} {_shown(path, loaded.root)}: {what}",
                                  files, size))
    return Footprint(tuple(measured), tuple(notes), gone)


def _store_holds(needed: Sequence[FetchItem], gone: Sequence[FetchItem]) -> str:
    """What the store's line counts: every locked file, or how many of them (the
    lockfiles' count, as the totals above give it) when some are missing."""
    if not gone:
        return "every locked file and each wheel's metadata"
    locked = sum(1 for item in needed if not item.is_metadata)
    there = locked - sum(1 for item in gone if not item.is_metadata)
    return (f"{there} of the {locked} locked files (the rest missing: below), their wheels' "
            "metadata and any file gc would remove")


def _measure(top: Path, seen: set[tuple[int, int]]) -> tuple[int, int]:
    """Files and bytes below ``top`` not in ``seen`` (device, inode), which
    gains them: a file hard-linked from several places is counted once."""
    files = size = 0
    for root, _dirs, names in os.walk(top):
        for name in names:
            try:
                found = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue  # removed while we walked
            key = (found.st_dev, found.st_ino)
            if key not in seen:
                seen.add(key)
                files += 1
                size += found.st_size
    return files, size


def _shown(path: Path, base: Path) -> str:
    """``path`` relative to mirror.yaml's directory when below it, else whole."""
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def render_footprint(found: Footprint) -> str:
    """The ``lockmirror du`` table of the disk: one line per directory, the total, then
    the locked files the store lacks, if any."""
    from .disk_usage import usage_line

    if not found.places:
        lines = ["on this disk now: nothing yet (no store, index, bundles or cache)"]
    else:
        lines = ["on this disk now (measured; a hard-linked file counted once, where first met):"]
        lines += [usage_line(place.size, place.files, place.label) for place in found.places]
        lines.append(usage_line(found.total_size, found.total_files, "total on this disk"))
    if found.missing:
        lines.append(_missing_line(found.missing))
    return "\n".join(lines) + "\n"


def _missing_line(gone: Sequence[FetchItem]) -> str:
    """The locked files the store lacks, counted and sized as the lockfiles state them
    (as the totals above count them), the wheels' metadata files it lacks besides (their
    size is not stated), the first few by name, and the fetch that brings them."""
    from .disk_usage import usage_line

    files = [item for item in gone if not item.is_metadata]
    metadata = len(gone) - len(files)
    ordered = [*files, *(item for item in gone if item.is_metadata)]
    named = ", ".join(item.filename for item in ordered[:SHOWN_MISSING])
    more = ", ..." if len(ordered) > SHOWN_MISSING else ""
    besides = f", with {plural(metadata, 'wheel metadata file')}" if metadata else ""
    sets = {name for item in gone for name in item.needed_by}
    return usage_line(sum(item.size or 0 for item in files), len(files),
                      f"missing from the store (as locked){besides}: {named}{more}; "
                      f"{fetch_command(sets)}")
