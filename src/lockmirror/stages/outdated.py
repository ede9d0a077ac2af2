"""The outdated stage: how far each locked release is behind, and why.

:func:`outdated_sets` compares every locked package of every set and target
with the project page its source serves today, through the same index client
and HTTP cache as ``lock`` (project pages only: no distribution file is
downloaded, no metadata read, so it costs one page request per project). For
each package it reports:

- ``locked``: the version in the lockfile;
- ``allowed``: the newest version that every requirement on it (mirror.yaml's
  and its requirers', as recorded in the lockfile's ``why``), the target
  (files, Requires-Python) and the policy (min age, yanked, advisories,
  exceptions) allow today, judged one package at a time: ``lock --upgrade
  NAME`` does the joint resolution and may stop lower when the new release's
  own dependencies conflict;
- ``newest``: the newest release upstream (pre-releases only where the set
  allows them, or the locked one is one);
- ``reasons``: for the newest release and for the newest one only the policy
  holds back (when above ``allowed``), the reasons in words ("pinned in
  mirror.yaml line 12", "2.32.4 is 3 days old, allowed from 2026-12-09", "3.0.0
  excluded by `urllib3<3` from requests 2.32.3", "1.1 is yanked: ...", "1.1 has
  PYSEC-...");
- ``advisories`` on the locked release, each with the lowest version that
  fixes it, and ``fix``: the lowest release above it with no advisory.

The time is a parameter; nothing here reads the clock or prints. Renderers:
:func:`render_text`, :func:`render_markdown`, :func:`render_json`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName
from packaging.version import Version

from ..config import LoadedConfig
from ..errors import LockmirrorError
from ..formats.lockfile import LockedPackage, Lockfile
from ..fsutil import plural
from ..resolve.policy import Finding, PolicyEngine
from ..targets import Target, Truth
from ..timeutil import as_utc

if TYPE_CHECKING:
    from ..net.index_client import DistFile, IndexClient
    from ..resolve.advisories import AdvisoryDB

ReasonKind = Literal["pinned", "constraint", "min-age", "yanked", "advisory", "no-file",
                     "policy"]


@dataclass(frozen=True)
class Reason:
    """Why ``version`` (newer than the locked one) is not allowed."""

    kind: ReasonKind
    version: str
    text: str


@dataclass(frozen=True)
class AdvisoryNote:
    """An advisory on a locked release, and the lowest version that fixes it."""

    id: str
    aliases: tuple[str, ...]
    summary: str
    level: str  # "deny", "warn" or "waived"
    fixed_in: str | None  # the lowest fixed version above the locked one


@dataclass(frozen=True)
class OutdatedRow:
    """One locked package of one set, for the targets where all of this holds."""

    set_name: str
    package: NormalizedName
    locked: Version
    allowed: Version
    newest: Version | None  # None: the project has no release upstream any more
    targets: tuple[str, ...]
    reasons: tuple[Reason, ...] = ()
    advisories: tuple[AdvisoryNote, ...] = ()
    fix: Version | None = None  # the lowest release above ``locked`` with no advisory

    @property
    def status(self) -> str:
        """``vulnerable``, ``outdated`` (can move), ``held`` (newer exists, not allowed)
        or ``current``."""
        if any(a.level != "waived" for a in self.advisories):
            return "vulnerable"
        if self.allowed > self.locked:
            return "outdated"
        if self.newest is not None and self.newest > self.locked:
            return "held"
        return "current"

    def to_json(self) -> dict[str, Any]:
        return {
            "set": self.set_name, "package": self.package, "locked": str(self.locked),
            "allowed": str(self.allowed),
            "newest": str(self.newest) if self.newest is not None else None,
            "status": self.status, "targets": list(self.targets),
            "reasons": [{"kind": r.kind, "version": r.version, "text": r.text}
                        for r in self.reasons],
            "advisories": [{"id": a.id, "aliases": list(a.aliases), "summary": a.summary,
                            "level": a.level, "fixed_in": a.fixed_in} for a in self.advisories],
            "fix": str(self.fix) if self.fix is not None else None,
        }


@dataclass(frozen=True)
class OutdatedReport:
    checked_at: datetime
    sets: tuple[str, ...]
    rows: tuple[OutdatedRow, ...]
    sources: tuple[str, ...] = ()  # advisory sources consulted
    # releases no advisory source could tell about: "0 with advisories" does not cover them
    not_checked: tuple[str, ...] = ()

    def count(self, status: str) -> int:
        return sum(1 for r in self.rows if r.status == status)

    @property
    def exit_code(self) -> int:
        """1 when a locked release can move or has an advisory (not waived), else 0.

        Releases held back by a pin, a constraint or the policy do not fail it:
        nothing can move them without an edit, and the report says why."""
        return 1 if any(r.status in ("vulnerable", "outdated") for r in self.rows) else 0

    def summary(self) -> str:
        packages = len({(r.set_name, r.package, r.locked) for r in self.rows})
        unchecked = " (some not checked: see the notes)" if self.not_checked else ""
        return (f"{plural(packages, 'locked package')} in {plural(len(self.sets), 'set')}: "
                f"{self.count('outdated')} can move, {self.count('held')} held back, "
                f"{self.count('vulnerable')} with advisories{unchecked}")


# --------------------------------------------------------------------------
# Entry
# --------------------------------------------------------------------------


def outdated_sets(loaded: LoadedConfig, set_names: Sequence[str] | None = None, *,
                  now: datetime, client: IndexClient | None = None,
                  advisories: AdvisoryDB | None = None) -> OutdatedReport:
    """Compare the lockfiles of ``set_names`` (default: every set) with upstream at ``now``.

    ``client`` defaults to an index client over the configured sources with
    ``lock``'s HTTP cache; ``advisories`` to ``policy.advisory_sources``.
    Raises LockmirrorError for an unknown set or a missing lockfile,
    NotFoundError/NetworkError when a source cannot answer.
    """
    from ..net.index_client import IndexClient
    from ..resolve.advisories import not_checked_notes, open_advisory_db

    config = loaded.config
    names = loaded.chosen_sets(set_names)
    if advisories is None and config.policy.advisory_sources:
        advisories = open_advisory_db(config.policy.advisory_sources, base_dir=loaded.root)
    if client is None:
        with IndexClient(config.sources_by_priority(),
                         cache_dir=loaded.cache_dir / "http") as own:
            return outdated_sets(loaded, names, now=now, client=own, advisories=advisories)
    lockfiles = {name: read_set_lockfile(loaded, name) for name in names}
    client.prefetch_projects(sorted({p.name for lf in lockfiles.values() for p in lf.packages}))
    lines = requirement_lines(loaded)
    targets = config.all_targets()
    rows: list[OutdatedRow] = []
    looked_up: set[tuple[str, Version]] = set()
    for name in names:
        engine = PolicyEngine.for_set(config, name, now=now, advisories=advisories,
                                      where=loaded.path.name, allow_expired=True)
        checker = SetChecker(loaded, name, engine, client, lines, targets)
        rows += _merge_targets(checker.row(package, target)
                               for package in lockfiles[name].packages
                               for target in package.targets if target in targets)
        if engine.policy.vulnerabilities != "ignore":
            looked_up |= {package.key for package in lockfiles[name].packages}
    return OutdatedReport(as_utc(now), tuple(names),
                          tuple(sorted(rows, key=lambda r: (r.set_name, r.package, r.locked))),
                          tuple(advisories.labels) if advisories is not None else (),
                          not_checked_notes(advisories, looked_up))


def requirement_lines(loaded: LoadedConfig) -> dict[tuple[str, str], int]:
    """(set, requirement as written, normalized by packaging) -> its line in mirror.yaml."""
    from ..config_yaml import PositionedYaml

    doc = PositionedYaml(loaded.text, loaded.path.name, os.environ)
    out: dict[tuple[str, str], int] = {}
    for set_name, spec in loaded.config.sets.items():
        for i, text in enumerate(spec.requirements):
            mark = doc.marks.get(("sets", set_name, "requirements", i))
            if mark is not None:
                out[(set_name, str(Requirement(text)))] = mark[0]
    return out


def read_set_lockfile(loaded: LoadedConfig, name: str) -> Lockfile:
    """The set's lockfile; LockmirrorError naming it when it is missing."""
    path = loaded.lockfile_path(name)
    if not path.exists():
        raise LockmirrorError(f"set '{name}' has no lockfile", where=str(path),
                              hint="run `lockmirror lock` first")
    return Lockfile.read(path)


# --------------------------------------------------------------------------
# One package on one target
# --------------------------------------------------------------------------


@dataclass
class SetChecker:
    """One set's questions about its locked packages, against today's project pages
    (each page read once); also used by ``lock --upgrade-vulnerable``."""

    loaded: LoadedConfig
    set_name: str
    engine: PolicyEngine
    client: IndexClient
    lines: dict[tuple[str, str], int]
    targets: dict[str, Target]
    _pages: dict[NormalizedName, dict[Version, list[DistFile]]] = field(default_factory=dict)

    def releases(self, name: NormalizedName) -> dict[Version, list[DistFile]]:
        if name not in self._pages:
            page = self.client.project(name)  # its releases: file names checked
            self._pages[name] = {v: list(page.files_of(v)) for v in page.releases}
        return self._pages[name]

    def row(self, package: LockedPackage, target_name: str) -> OutdatedRow:
        name, locked = package.name, package.version
        releases = self.releases(name)
        prereleases = self.loaded.config.sets[self.set_name].prereleases or locked.is_prerelease
        newer = sorted((v for v in releases if v > locked
                        and (prereleases or not v.is_prerelease)), reverse=True)
        target = self.targets[target_name]
        judged = [(v, self.reasons(package, v, releases[v], target)) for v in newer]
        allowed = next((v for v, why in judged if not why), locked)
        shown: list[Reason] = []
        for version, why in _worth_saying(judged, allowed):
            said = {r.text for r in shown}
            shown += [r for r in why if r.text not in said]  # a pin's line once
        notes = self.advisory_notes(name, locked)
        fix = None
        if notes:
            fix = next((v for v in sorted(newer)
                        if not self.engine.vulnerability_findings(name, v)), None)
        newest = max(newer, default=locked if locked in releases else None)
        return OutdatedRow(self.set_name, name, locked, allowed, newest, (target_name,),
                           tuple(shown), notes, fix)

    def reasons(self, package: LockedPackage, version: Version, files: list[DistFile],
                target: Target) -> list[Reason]:
        """Every reason ``version`` may not replace the locked release (none: allowed)."""
        out = self.requirement_reasons(package, version, target.name)
        usable = [f for f in files if target.allows_python(f.requires_python) is Truth.ALWAYS
                  and (not f.is_wheel or target.wheel_rank(f.filename) is not None)]
        if not usable:
            needs = sorted({f.requires_python for f in files if f.requires_python
                            and target.allows_python(f.requires_python) is not Truth.ALWAYS})
            text = (f"{version} requires Python {', '.join(needs)}; target {target.name} has "
                    f"Python {target.python}") if needs else \
                f"{version} has no file that installs on target {target.name}"
            if any(target.allows_python(n) is Truth.SOMETIMES for n in needs):
                text += (f" (it leaves out some {target.python}.x releases, and a target stands "
                         "for all of them: name the lowest one your machines run, e.g. "
                         f"python: \"{target.python}.2\", to take it)")
            out.append(Reason("no-file", str(version), text))
        yanked = (next((f.yanked_reason or "" for f in files if f.yanked_reason), "")
                  if files and all(f.yanked for f in files) else None)
        decision = self.engine.candidate_allowed(package.name, version,
                                                 [f.upload_time for f in files], yanked)
        out += [self.policy_reason(finding, files, yanked) for finding in decision.findings
                if finding.blocking]
        return out

    def requirement_reasons(self, package: LockedPackage, version: Version,
                            target: str) -> list[Reason]:
        """The requirements on the package (from the lockfile's ``why``) that exclude
        ``version``: mirror.yaml's with their line, the requirers' with their name."""
        out: list[Reason] = []
        where = self.loaded.path.name
        for entry in package.why.get(target, ()):
            label, _, text = entry.partition(": ")
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            if requirement.specifier.contains(version, prereleases=True):
                continue
            line = self.lines.get((self.set_name, str(requirement)))
            if label == self.set_name and line is not None:
                pinned = any(s.operator in {"==", "==="} for s in requirement.specifier)
                if pinned:
                    out.append(Reason("pinned", str(version),
                                      f"pinned in {where} line {line} (`{requirement}`)"))
                else:
                    out.append(Reason("constraint", str(version),
                                      f"{version} excluded by `{requirement}` in {where} "
                                      f"line {line}"))
            else:
                out.append(Reason("constraint", str(version),
                                  f"{version} excluded by `{requirement}` from {label}"))
        return out

    def policy_reason(self, finding: Finding, files: list[DistFile],
                      yanked: str | None) -> Reason:
        version = str(finding.version)
        if finding.rule == "min_age_days":
            times = [as_utc(f.upload_time) for f in files if f.upload_time is not None]
            if times:
                first = min(times)
                min_age = self.engine.policy.min_age_days or 0
                allowed_from = first + timedelta(days=min_age)
                return Reason("min-age", version,
                              f"{version} is {(self.engine.now - first).days} days old, "
                              f"allowed from {allowed_from:%Y-%m-%d} (min_age_days: {min_age})")
            return Reason("min-age", version, finding.message)
        if finding.rule == "yanked":
            return Reason("yanked", version,
                          f"{version} is yanked: {yanked or 'no reason given'}")
        if finding.rule == "vulnerabilities" and finding.advisory is not None:
            return Reason("advisory", version,
                          f"{version} has {finding.advisory.id}: {finding.advisory.summary}")
        return Reason("policy", version, finding.message)

    def advisory_notes(self, name: NormalizedName, locked: Version) -> tuple[AdvisoryNote, ...]:
        notes = []
        for finding in self.engine.vulnerability_findings(name, locked):
            advisory = finding.advisory
            assert advisory is not None
            fixes = advisory.fixed_after(locked)
            level = "waived" if finding.waived_by is not None else finding.level
            notes.append(AdvisoryNote(advisory.id, advisory.aliases, advisory.summary, level,
                                      fixes[0] if fixes else None))
        return tuple(notes)


# what the set or target rules out: no wait and no policy exception takes such a release
SET_RULES = frozenset({"pinned", "constraint", "no-file"})


def _worth_saying(judged: list[tuple[Version, list[Reason]]], allowed: Version
                  ) -> list[tuple[Version, list[Reason]]]:
    """Of the releases above ``allowed`` (``judged``: newest first, each with its
    reasons), the ones whose reasons are shown: the newest, and the newest that only
    the policy holds back (age, yank, advisory: what a wait or an exception would
    take), when that is another; an older release the set rules out tells nothing."""
    above = [(v, why) for v, why in judged if v > allowed]
    if not above:
        return []
    policy_only = next(((v, why) for v, why in above
                        if not {r.kind for r in why} & SET_RULES), None)
    return [above[0]] + ([policy_only] if policy_only and policy_only != above[0] else [])


def _merge_targets(rows: Iterable[OutdatedRow]) -> list[OutdatedRow]:
    """One row per (package, locked version, outcome): the targets where it holds."""
    merged: dict[tuple[Any, ...], OutdatedRow] = {}
    for row in rows:
        key = (row.package, row.locked, row.allowed, row.newest, row.reasons, row.advisories,
               row.fix)
        if key in merged:
            known = merged[key]
            merged[key] = OutdatedRow(known.set_name, known.package, known.locked,
                                      known.allowed, known.newest,
                                      (*known.targets, *row.targets), known.reasons,
                                      known.advisories, known.fix)
        else:
            merged[key] = row
    return list(merged.values())


# --------------------------------------------------------------------------
# Renderings
# --------------------------------------------------------------------------


def _row_lines(row: OutdatedRow) -> list[str]:
    lines = [f"{a.id}{' (' + ', '.join(a.aliases) + ')' if a.aliases else ''}"
             f"{' [' + a.level + ']' if a.level != 'deny' else ''}: {a.summary}; "
             + (f"fixed in {a.fixed_in}" if a.fixed_in else "no fixed version")
             for a in row.advisories]
    if row.advisories:
        lines.append(f"lowest release without advisories: {row.fix}" if row.fix else
                     "no newer release without advisories")
    lines += [r.text for r in row.reasons]
    return lines


def _newest(row: OutdatedRow) -> str:
    return str(row.newest) if row.newest is not None else "gone upstream"


def render_text(report: OutdatedReport) -> str:
    """A terminal listing of every package that is not current, then the summary."""
    out = []
    for row in report.rows:
        if row.status == "current":
            continue
        out.append(f"{row.set_name}: {row.package} {row.locked} -> allowed {row.allowed}, "
                   f"newest {_newest(row)} [{row.status}; {', '.join(row.targets)}]")
        out += [f"    {line}" for line in _row_lines(row)]
    out += [f"note: {note}" for note in report.not_checked]
    out.append(report.summary())
    return "\n".join(out) + "\n"


def render_markdown(report: OutdatedReport) -> str:
    """A table for a job summary or a pull-request body."""
    rows = [r for r in report.rows if r.status != "current"]
    out = [f"### lockmirror outdated: {report.summary()}", ""]
    out += ["> " + note.replace("|", "\\|") for note in report.not_checked]
    out += [""] if report.not_checked else []
    if rows:
        out += ["| set | package | locked | allowed | newest | status | why |",
                "|---|---|---|---|---|---|---|"]
        for row in rows:
            why = "<br>".join(line.replace("|", "\\|") for line in _row_lines(row))
            out.append(f"| {row.set_name} | {row.package} | {row.locked} | {row.allowed} | "
                       f"{_newest(row)} | {row.status} | {why} |")
    return "\n".join(out) + "\n"


def render_json(report: OutdatedReport) -> str:
    data = {"checked_at": report.checked_at.isoformat().replace("+00:00", "Z"),
            "sets": list(report.sets), "sources": list(report.sources),
            "exit_code": report.exit_code, "summary": report.summary(),
            "not_checked": list(report.not_checked),
            "packages": [row.to_json() for row in report.rows]}
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


RENDERERS = {"text": render_text, "markdown": render_markdown, "json": render_json}
