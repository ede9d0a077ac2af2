"""How big the mirror is, per set, target and retained lock revision, and the size budget.

Sizes come from the lockfiles (every locked file records its size), so this
needs neither the store nor the network. A file is counted once however many
sets, targets or revisions name it (the store and the index hold it once).
A target's share is the files that install there: sdists, and wheels whose
tags fit it. A retained revision's share is what it adds beyond the current
locks: what keeping it costs. lockmirror's own set (:data:`TOOL_SET`, the
wheels full bundles carry in ``tool/``) is fetched into the store but not
served: its share is what it adds to the store beyond the served files, and
the size budget (``retention.max_size``) leaves it out. What is on the disk
now (store, index pages, bundles, caches) is measured by
:mod:`lockmirror.stages.disk_footprint`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from ..config import TOOL_SET, LoadedConfig
from ..config_schema import RetentionConfig
from ..errors import LockmirrorError
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
    total_size: int  # every distinct file the index serves, current and retained
    largest: tuple[tuple[str, int], ...]  # ("name version", bytes), the biggest releases
    tool: UsageRow | None = None  # lockmirror's own set: what it adds to the store
    notes: tuple[str, ...] = ()  # the sets not counted: no lockfile yet

    @property
    def locked_files(self) -> int:
        """Files the store needs: the served ones and lockmirror's own set's."""
        return self.total_files + (self.tool.files if self.tool else 0)

    @property
    def locked_size(self) -> int:
        return self.total_size + (self.tool.size if self.tool else 0)


def disk_usage(current: Mapping[str, Lockfile], retention: Retention, *,
               largest: int = 5) -> Usage:
    """The mirror's size from its current lockfiles (set name -> lockfile; that
    of lockmirror's own set, :data:`TOOL_SET`, too when it is locked) and the
    revisions ``retention`` keeps."""
    tool = current.get(TOOL_SET)
    current = {name: lockfile for name, lockfile in current.items() if name != TOOL_SET}
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
    return Usage(tuple(rows), len(everything), sum(everything.values()), tuple(biggest),
                 _tool_row(tool, everything) if tool is not None else None)


def _tool_row(tool: Lockfile, served: Mapping[str, int]) -> UsageRow:
    """lockmirror's own set: its files the sets do not already put in the store."""
    extra = {sha: size for sha, size in _files(tool.packages).items() if sha not in served}
    return UsageRow(TOOL_SET, "tool", TOOL_SET, len(extra), sum(extra.values()))


def mirror_usage(loaded: LoadedConfig, kept: Retention) -> tuple[Usage, list[Lockfile]]:
    """:func:`disk_usage` of :func:`current_lockfiles` and of ``kept`` (its notes name
    the sets left out for want of a lockfile), and every lockfile it counted."""
    current, notes = current_lockfiles(loaded)
    counted = [*current.values(), *(revision.lockfile for revision in kept.kept)]
    return replace(disk_usage(current, kept), notes=notes), counted


def current_lockfiles(loaded: LoadedConfig) -> tuple[dict[str, Lockfile], tuple[str, ...]]:
    """Set name -> lockfile of mirror.yaml's sets and lockmirror's own set that have
    one, each checked against mirror.yaml's sources (raising as
    :func:`~lockmirror.formats.url_policy.read_checked_lockfiles`), and the notes
    naming the sets without one."""
    from ..formats.url_policy import read_checked_lockfiles
    from .tool_set import tool_lockfile_paths

    paths = {name: loaded.lockfile_path(name) for name in loaded.config.sets}
    paths |= {TOOL_SET: path for path in tool_lockfile_paths(loaded)}
    missing = [name for name, path in paths.items() if not path.exists()]
    current = read_checked_lockfiles([path for name, path in paths.items() if name not in missing],
                                     loaded.config.sources)
    return ({lockfile.set_name: lockfile for lockfile in current},
            tuple(_not_locked_note(name) for name in missing))


def _not_locked_note(set_name: str) -> str:
    what = "lockmirror's own set" if set_name == TOOL_SET else f"set '{set_name}'"
    return f"{what} has no lockfile yet, so it is not counted (run `doit lock`)"


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


def budget_notes(loaded: LoadedConfig, kept: Retention) -> list[str]:
    """``retention.max_size`` checked against the current and kept locks before an
    index is built: the warning line (``over_size: warn``), none within it;
    LockmirrorError under ``over_size: fail``."""
    rule = loaded.config.retention
    problem = (over_budget(mirror_usage(loaded, kept)[0], rule)
               if rule.max_size is not None else None)
    if problem is not None and rule.over_size == "fail":
        raise LockmirrorError(problem, where=str(loaded.path),
                              hint="raise retention.max_size, lower lock_revisions or days, "
                                   "or drop packages; nothing was written")
    return [f"warning: {problem}"] if problem is not None else []


def _file_count(count: int) -> str:
    """``     1 file `` / ``    60 files``: a count for the table's column."""
    return f"{count:>6} {'file ' if count == 1 else 'files'}"


def usage_line(size: int, files: int, label: str) -> str:
    """One line of the ``lockmirror du`` table: size, file count, what the line is."""
    return f"{format_size(size):>10}  {_file_count(files)}  {label}"


def render_usage(usage: Usage) -> str:
    """The ``lockmirror du`` table of the lockfiles: sizes right-aligned, one row
    per line, the served total, lockmirror's own set and what the store needs."""
    lines = []
    for row in usage.rows:
        label = {"set": f"{row.set_name}", "target": f"  {row.set_name} / {row.name}",
                 "retained": f"  {row.set_name} + {row.name}"}[row.scope]
        lines.append(usage_line(row.size, row.files, label))
    lines.append(usage_line(usage.total_size, usage.total_files,
                            "total served by the index (each file once)"))
    if usage.tool is not None:
        lines.append(usage_line(usage.tool.size, usage.tool.files,
                                f"{TOOL_SET}: lockmirror's own wheels for bundles' tool/ "
                                "(stored, not served)"))
        lines.append(usage_line(usage.locked_size, usage.locked_files,
                                "total locked: what the store needs (and each wheel's metadata)"))
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

