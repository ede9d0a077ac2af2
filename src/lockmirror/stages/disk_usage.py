"""How big the mirror is, per set, target and retained lock revision, and the size budget.

Sizes come from the lockfiles (every locked file records its size), so this
needs neither the store nor the network. A file is counted once however many
sets, targets or revisions name it (the store and the index hold it once).
A target's share is the files that install there: sdists, and wheels whose
tags fit it. A retained revision's share is what it adds beyond the current
locks: what keeping it costs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..config_schema import RetentionConfig
from ..formats.lockfile import LockedFile, LockedPackage, Lockfile
from ..fsutil import format_size, parse_size
from ..targets import Target
from .retention import Retention


@dataclass(frozen=True)
class UsageRow:
    """One line of ``lockmirror du``: ``scope`` is ``set``, ``target`` or ``retained``."""

    set_name: str
    scope: str
    name: str  # the target, or the revision's label and why it is kept
    files: int
    size: int


@dataclass(frozen=True)
class Usage:
    rows: tuple[UsageRow, ...]
    total_files: int
    total_size: int  # every distinct file, current and retained
    largest: tuple[tuple[str, int], ...]  # ("name version", bytes), the biggest releases


def disk_usage(current: Mapping[str, Lockfile], retention: Retention, *,
               largest: int = 5) -> Usage:
    """The mirror's size from its current lockfiles (set name -> lockfile) and
    the revisions ``retention`` keeps."""
    rows: list[UsageRow] = []
    everything: dict[str, int] = {}
    releases: dict[str, dict[str, int]] = {}
    for set_name, lockfile in current.items():
        files = _files(lockfile.packages)
        everything.update(files)
        rows.append(UsageRow(set_name, "set", "current lock", len(files), sum(files.values())))
        for locked in lockfile.targets:
            mine = _files(lockfile.packages_for(locked.name), Target.of_locked(locked))
            rows.append(UsageRow(set_name, "target", locked.name, len(mine),
                                 sum(mine.values())))
        for package in lockfile.packages:
            releases.setdefault(f"{package.name} {package.version}", {}).update(
                _files([package]))
    current_files = dict(everything)
    for kept in retention.kept:
        extra = {sha: size for sha, size in _files(kept.lockfile.packages).items()
                 if sha not in current_files}
        everything.update(extra)
        rows.append(UsageRow(kept.set_name, "retained", f"{kept.label} ({kept.reason})",
                             len(extra), sum(extra.values())))
        for package in kept.lockfile.packages:
            releases.setdefault(f"{package.name} {package.version}", {}).update(
                _files([package]))
    biggest = sorted(((name, sum(files.values())) for name, files in releases.items()),
                     key=lambda item: (-item[1], item[0]))[:largest]
    return Usage(tuple(rows), len(everything), sum(everything.values()), tuple(biggest))


def over_budget(usage: Usage, rule: RetentionConfig) -> str | None:
    """The one-line message when the mirror exceeds ``retention.max_size``, naming
    the largest sets and releases; None within the budget or without one."""
    if rule.max_size is None:
        return None
    max_size = parse_size(rule.max_size)
    if usage.total_size <= max_size:
        return None
    sets = sorted((r for r in usage.rows if r.scope == "set"), key=lambda r: -r.size)[:3]
    named_sets = ", ".join(f"{r.set_name} {format_size(r.size)}" for r in sets)
    named = ", ".join(f"{name} {format_size(size)}" for name, size in usage.largest[:3])
    return (f"the mirror would hold {format_size(usage.total_size)}, over retention.max_size "
            f"{format_size(max_size)} (largest sets: {named_sets}; largest releases: {named})")


def _file_count(count: int) -> str:
    """``     1 file `` / ``    60 files``: a count for the table's column."""
    return f"{count:>6} {'file ' if count == 1 else 'files'}"


def render_usage(usage: Usage) -> str:
    """The ``lockmirror du`` table: sizes right-aligned, one row per line."""
    lines = []
    for row in usage.rows:
        label = {"set": f"{row.set_name}", "target": f"  {row.set_name} / {row.name}",
                 "retained": f"  {row.set_name} + {row.name}"}[row.scope]
        lines.append(f"{format_size(row.size):>10}  {_file_count(row.files)}  {label}")
    lines.append(f"{format_size(usage.total_size):>10}  {_file_count(usage.total_files)}  "
                 "total (each file once)")
    if usage.largest:
        lines.append("largest releases: " + ", ".join(
            f"{name} {format_size(size)}" for name, size in usage.largest))
    return "\n".join(lines) + "\n"


def _files(packages: Iterable[LockedPackage], target: Target | None = None) -> dict[str, int]:
    """sha256 -> size of the packages' files (those that install on ``target``)."""
    found: dict[str, int] = {}
    for package in packages:
        for file in package.files:
            if target is None or _installs(file, target):
                found[file.sha256] = file.size or 0
    return found


def _installs(file: LockedFile, target: Target) -> bool:
    return not file.is_wheel or target.wheel_rank(file.filename) is not None

