"""Quarantine: releases taken out of the mirror until someone re-locks.

``audit --quarantine`` adds every release with a deny-level finding to the
quarantine list (:mod:`lockmirror.formats.quarantine_list`), a committed file next
to ``mirror.yaml`` (``paths.quarantine``, default ``quarantine.json``), then
runs the index stage (:func:`lockmirror.pipeline.quarantine` hands it
:func:`lockmirror.pipeline.index`), which leaves every
listed release out. The index stage is the only writer of ``dist-index/``:
pages, landing page and ``manifest.json`` always agree. Keeping the list as
a committed *input* is what makes the removal stick: the next ``doit
index`` does not bring the release back, a reviewer sees the change in the
pull request, and the next ``publish --prune`` deletes the files remotely
because they are gone from ``manifest.json``.

A release leaves quarantine when its entry is deleted from the file (by
hand, in a reviewed change) -- typically after ``doit lock`` moved the set
to a fixed version, at which point the entry matches nothing locked and
audit notes it as stale.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..config import LoadedConfig
from ..formats.manifest import MANIFEST_NAME, Manifest
from ..formats.quarantine_list import (
    FORMAT,
    Key,
    QuarantinedRelease,
    QuarantineList,
    quarantined,
    release_of,
)
from ..fsutil import plural

if TYPE_CHECKING:
    from packaging.version import Version

    from .audit import AuditReport

__all__ = ["FORMAT", "IndexChange", "Key", "QuarantineList", "QuarantineResult",
           "QuarantinedRelease", "apply_quarantine", "quarantined", "release_of",
           "render_plan"]


@dataclass(frozen=True)
class IndexChange:
    """What rebuilding the index with the list changes (or would change)."""

    removed: tuple[str, ...] = ()  # artifacts, .metadata files, pages of emptied projects
    rewritten: tuple[str, ...] = ()  # pages, landing page... written anew or added
    releases: tuple[str, ...] = ()  # "name==version" of listed releases taken out

    @classmethod
    def between(cls, before: Manifest, after: Manifest,
                listed: Iterable[Key]) -> IndexChange:
        """The difference of two manifests of one index tree."""
        old, new = dict(before.files), dict(after.files)
        removed = tuple(sorted(set(old) - set(new)))
        rewritten = tuple(sorted(rel for rel, entry in new.items() if old.get(rel) != entry))
        wanted = set(listed)
        taken = {release_of(rel.rsplit("/", 1)[-1]) for rel in removed if rel.startswith("files/")}
        releases = tuple(sorted(f"{key[0]}=={key[1]}" for key in taken & wanted
                                if key is not None))
        return cls(removed, rewritten, releases)


@dataclass(frozen=True)
class QuarantineResult:
    list_path: Path
    index_dir: Path
    added: tuple[QuarantinedRelease, ...]  # newly on the list
    quarantined: tuple[QuarantinedRelease, ...]  # the whole list after this run
    change: IndexChange
    dry_run: bool
    index_found: bool = True


class BuildIndex(Protocol):
    """The index stage's entry, :func:`lockmirror.pipeline.index`, as quarantine calls it."""

    def __call__(self, loaded: LoadedConfig, *, out: Path | None = None,
                 state_dir: Path | None = None,
                 exclude: Iterable[tuple[str, Version | str]] | None = None) -> object: ...


def apply_quarantine(loaded: LoadedConfig, report: AuditReport, *, now: datetime,
                     build_index: BuildIndex, dry_run: bool = False) -> QuarantineResult:
    """Quarantine every release the report denies.

    Adds them to the quarantine list (``loaded.quarantine_path``), then runs
    the index stage, which leaves every listed release out of ``paths.index``
    (its pages, landing page and manifest alike). With ``dry_run`` nothing is
    written: the index stage builds into a scratch directory under
    ``paths.cache`` with the would-be list and the result says what would
    change. An index that was not built yet is left alone (the list alone is
    updated; the next index build leaves listed releases out). Raises what
    ``build_index`` (:func:`lockmirror.pipeline.index`) raises (e.g. a store
    without the files).
    """
    index_dir = loaded.index_dir
    current = QuarantineList.read(loaded.quarantine_path)
    updated, added = current.with_added(report.quarantine_candidates(), now=now)
    index_found = (index_dir / MANIFEST_NAME).is_file()
    if not dry_run and (added or loaded.quarantine_path.exists()):
        updated.write(loaded.quarantine_path)
    change = IndexChange()
    if index_found:
        before = Manifest.read(index_dir / MANIFEST_NAME)
        after = (_dry_run_index(loaded, updated, build_index) if dry_run
                 else _index_manifest(loaded, build_index))
        change = IndexChange.between(before, after, updated.keys)
    ordered = tuple(updated.releases[k] for k in sorted(updated.releases))
    return QuarantineResult(loaded.quarantine_path, index_dir, tuple(added), ordered, change,
                            dry_run, index_found)


def _index_manifest(loaded: LoadedConfig, build_index: BuildIndex) -> Manifest:
    build_index(loaded)
    return Manifest.read(loaded.index_dir / MANIFEST_NAME)


def _dry_run_index(loaded: LoadedConfig, updated: QuarantineList,
                   build_index: BuildIndex) -> Manifest:
    """The manifest the index stage would write with ``updated`` as the list:
    built from scratch (the store's files linked) in a directory that is
    removed afterwards; the real list, index and state stay untouched."""
    loaded.cache_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="quarantine-dry-run-", dir=loaded.cache_dir))
    try:
        build_index(loaded, out=scratch / "index", state_dir=scratch / "state",
                    exclude=updated.keys)
        return Manifest.read(scratch / "index" / MANIFEST_NAME)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def render_plan(result: QuarantineResult) -> str:
    """What --quarantine did (or, with --dry-run, would do), for a terminal."""
    verb = "would" if result.dry_run else "did"
    lines = []
    if not result.quarantined:
        return "quarantine: nothing to quarantine\n"
    for release in result.added:
        lines.append(f"quarantine: {verb} add {release.release} to {result.list_path}")
    if not result.index_found:
        lines.append(f"quarantine: no index at {result.index_dir} (nothing to remove there)")
    for rel in result.change.rewritten:
        lines.append(f"quarantine: {verb} rewrite {result.index_dir / rel}")
    for rel in result.change.removed:
        lines.append(f"quarantine: {verb} remove {result.index_dir / rel}")
    taken = ", ".join(result.change.releases) or "none (already out of the index)"
    lines.append(f"quarantine: {plural(len(result.quarantined), 'release')} on the list; "
                 f"taken out of the index now: {taken}")
    if result.change.removed and not result.dry_run:
        lines.append("quarantine: run `lockmirror publish --prune` (or `doit publish`) to delete "
                     "them remotely; commit the quarantine list so the next index build keeps "
                     "them out")
    return "\n".join(lines) + "\n"
