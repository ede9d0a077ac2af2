"""The audit stage: re-check every locked release now, and report.

:func:`audit` takes the lockfiles and the mirror's policy and asks, for each
locked release, what the policy says *today*: advisories published since the
lock, releases yanked since, exceptions that have expired, sdists locked
under ``sdists: deny``, licenses the ``licenses`` rule refuses (read by
:mod:`lockmirror.stages.release_licenses`); and notes where that parts from
the warnings the lock recorded (:mod:`lockmirror.stages.audit_recorded`). It
returns an :class:`AuditReport`; the renderers :func:`render_text`,
:func:`render_markdown` and :func:`render_json` turn it into a terminal table,
a job summary / pull-request comment, or data.

Audit always runs (it is never cached): the world changes, the lockfiles do
not. The time is a parameter; nothing here reads the clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import requests
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from ..config import LoadedConfig
from ..config_schema import MirrorConfig
from ..errors import NotFoundError
from ..formats.licenses import DeclaredLicense
from ..formats.lockfile import LockedPackage, Lockfile
from ..formats.quarantine_list import QuarantineList
from ..fsutil import first_of, plural
from ..resolve.advisories import NO_SOURCE, AdvisoryDB, not_checked_text, open_advisory_db
from ..resolve.advisory_snapshot import offline_source
from ..resolve.policy import Finding, PolicyEngine
from ..resolve.policy_exceptions import unmatched_exceptions
from ..timeutil import as_utc
from .audit_quarantine import quarantine_rows
from .audit_recorded import recorded_notes
from .audit_row import AuditRow, RowLevel
from .retention import RetainedLock
from .tool_set import TOOL_SET, tool_lockfile_paths


class ProjectFile(Protocol):
    @property
    def filename(self) -> str: ...

    @property
    def yanked(self) -> bool: ...

    @property
    def yanked_reason(self) -> str | None: ...


class ProjectPage(Protocol):
    @property
    def files(self) -> Sequence[ProjectFile]: ...


class ProjectPages(Protocol):
    """What audit needs of :class:`lockmirror.net.index_client.IndexClient`."""

    def project(self, name: NormalizedName) -> ProjectPage: ...


@dataclass(frozen=True)
class AuditReport:
    """Everything one audit found. ``rows`` are sorted: deny, warn, quarantined, waived."""

    checked_at: datetime
    sets: tuple[str, ...]
    releases: int  # distinct (name, version) pairs checked
    rows: tuple[AuditRow, ...]
    sources: tuple[str, ...]  # advisory sources consulted
    notes: tuple[str, ...] = ()
    yanked_checked: bool = False

    @property
    def denied(self) -> tuple[AuditRow, ...]:
        return tuple(r for r in self.rows if r.level == "deny")

    @property
    def warnings(self) -> tuple[AuditRow, ...]:
        return tuple(r for r in self.rows if r.level == "warn")

    @property
    def exit_code(self) -> int:
        """1 when anything is denied (what CI fails on), else 0."""
        return 1 if self.denied else 0

    def quarantine_candidates(self) -> dict[tuple[str, str], list[str]]:
        """(name, version) -> reasons, for every release with a deny finding.

        Findings about the policy itself (an expired exception) name no
        release and are not quarantined: the release it covered has its own
        finding once the exception stops waiving it. Nor is a release only
        lockmirror's own set locks (the bundle's ``tool/``): the index does not
        serve it, so quarantine could not take it out; a new lock must move it.
        """
        out: dict[tuple[str, str], list[str]] = {}
        for row in self.denied:
            if row.version and row.rule != "exceptions" and set(row.sets) - {TOOL_SET}:
                out.setdefault((row.package, row.version), []).append(row.message)
        return dict(sorted(out.items()))


def audit(lockfiles: Sequence[Lockfile], config: MirrorConfig, *,
          sources: AdvisoryDB | None, now: datetime,
          client: ProjectPages | None = None, where: str = "mirror.yaml",
          licenses: Mapping[tuple[str, Version], DeclaredLicense] | None = None,
          kept: Sequence[tuple[str, Lockfile]] = ()) -> AuditReport:
    """Re-check every release in ``lockfiles`` against the policy at ``now``.

    ``kept``: earlier lock revisions the mirror still serves (retention), as
    (label, lockfile), e.g. ``("core@1a2b3c4d", ...)``: their releases are
    checked under their set's policy and their rows name the label.

    ``sources``: the advisory sources (None: vulnerabilities not checked, which
    is itself a finding at the policy's ``vulnerabilities`` level, as is every
    release no source could tell about).
    ``client``: an index client whose project pages say what is yanked now
    (None: only the yanked state recorded in the lockfile is checked).
    ``licenses``: each release's declared license, for sets with a
    ``licenses`` rule (a release missing from it is noted as not checked).
    A set no longer in mirror.yaml is audited under the global policy.

    Cost: one advisory prefetch over every distinct release (a batch for the
    OSV API, one request per release for the PyPI JSON API, nothing for an
    offline database) and one project page per distinct project when
    ``client`` is given. Raises NetworkError when a source cannot be reached.
    """
    moment = as_utc(now)
    audited = [(lf.set_name, lf) for lf in sorted(lockfiles, key=lambda lf: lf.set_name)]
    audited += kept
    releases = sorted({(p.name, p.version) for _, lf in audited for p in lf.packages})
    if sources is not None:
        sources.prefetch(releases)
    notes: list[str] = []
    yanked_now = (_yanked_now(client, sorted({name for name, _ in releases}), notes)
                  if client else {})
    collected: dict[tuple[Any, ...], tuple[AuditRow, list[str]]] = {}

    def add(finding: Finding, set_name: str) -> None:
        row = _row(finding)
        key = (row.package, row.version, row.rule, row.level, row.advisory, row.message,
               row.exception)
        if key not in collected:
            collected[key] = (row, [])
        if set_name not in collected[key][1]:
            collected[key][1].append(set_name)

    unchecked: dict[tuple[RowLevel, str], dict[str, list[str]]] = {}
    no_license: set[str] = set()
    engines: dict[str, PolicyEngine] = {}  # one per set, its revisions' too
    for label, lockfile in audited:
        engine = engines.get(lockfile.set_name)
        if engine is None:
            engine = engines[lockfile.set_name] = _engine(
                config, lockfile.set_name, now=moment, sources=sources, where=where, notes=notes)
        for package in lockfile.packages:
            for finding in [*_check(engine, package, yanked_now),
                            *_license_check(engine, package, licenses or {}, no_license)]:
                add(finding, label)
        _note_unchecked(engine, lockfile, label, sources, unchecked)
    for finding, set_name in _expired_exceptions(audited, engines):
        add(finding, set_name)

    locked: dict[str, list[tuple[str, Version]]] = {}
    for _, lockfile in audited:
        locked.setdefault(lockfile.set_name, []).extend(p.key for p in lockfile.packages)
    notes += unmatched_exceptions(config, locked)
    if kept:
        notes.append(f"also audited: {plural(len(kept), 'earlier lock revision')} the mirror still "
                     f"serves (retention): {', '.join(label for label, _ in kept)}")
    if client is None:
        notes.append("yanked state taken from the lockfiles only (no index was asked)")
    if no_license:
        notes.append(f"licenses not checked for {plural(len(no_license), 'release')} (no core "
                     f"metadata in the store or on the index): {first_of(sorted(no_license), 5)}")
    rows = [_with_sets(row, sets) for row, sets in collected.values()]
    rows += _unchecked_rows(unchecked, len(releases))
    notes += recorded_notes(lockfiles, rows, no_license=no_license,
                            unchecked={r for on in unchecked.values() for r in on})
    return AuditReport(
        checked_at=moment,
        sets=tuple(sorted(lf.set_name for lf in lockfiles)),
        releases=len(releases),
        rows=tuple(sorted(rows, key=AuditRow.sort_key)),
        sources=tuple(sources.labels) if sources is not None else (),
        notes=tuple(notes),
        yanked_checked=client is not None,
    )


def _expired_exceptions(audited: Sequence[tuple[str, Lockfile]],
                        engines: Mapping[str, PolicyEngine]) -> Iterator[tuple[Finding, str]]:
    """(finding, set) of each expired exception, with the sets that lock a release it
    matches (in a kept revision too); one that matches nothing locked, with every set
    whose policy holds it (lock refuses to run for each)."""
    locked: set[str] = set()
    for _, lockfile in audited:
        engine = engines[lockfile.set_name]
        for finding in engine.expired_findings((p.name, p.version) for p in lockfile.packages):
            locked.add(finding.message)  # names the exception's place in mirror.yaml
            yield finding, lockfile.set_name
    for set_name, engine in engines.items():
        yield from ((f, set_name) for f in engine.expired_findings() if f.message not in locked)


def _note_unchecked(engine: PolicyEngine, lockfile: Lockfile, label: str,
                    sources: AdvisoryDB | None,
                    unchecked: dict[tuple[RowLevel, str], dict[str, list[str]]]) -> None:
    """Add the releases of ``lockfile`` no advisory source could tell about to
    ``unchecked``: (level, why) -> release -> the labels that lock it."""
    if engine.policy.vulnerabilities == "ignore":
        return
    level: RowLevel = "deny" if engine.policy.vulnerabilities == "deny" else "warn"
    for package in lockfile.packages:
        reason = sources.unchecked(package.name, package.version) if sources else NO_SOURCE
        if reason is not None:
            unchecked.setdefault((level, reason), {}).setdefault(
                f"{package.name}=={package.version}", []).append(label)


def _engine(config: MirrorConfig, set_name: str, *, now: datetime,
            sources: AdvisoryDB | None, where: str, notes: list[str]) -> PolicyEngine:
    """The policy ``set_name`` is audited under: its own, or (a set no longer in
    mirror.yaml, noted) the global one."""
    if set_name in config.sets:
        return PolicyEngine.for_set(config, set_name, now=now, advisories=sources,
                                    where=where, allow_expired=True)
    if set_name != TOOL_SET:  # which the lock, too, holds to the global policy
        notes.append(f"set '{set_name}' is not in {where}: audited under the global policy")
    return PolicyEngine(config.policy, now=now, advisories=sources, where=where,
                        allow_expired=True)


def _check(engine: PolicyEngine, package: LockedPackage,
           yanked_now: dict[tuple[str, str], str]) -> list[Finding]:
    name, version = package.name, package.version
    findings: list[Finding] = []
    yanked = _current_yank(package, yanked_now)
    # a locked release is an exact pin: `yanked: warn` lets it stay, with a warning
    yank = engine.yanked_finding(name, version, yanked, pinned=True)
    if yank is not None:
        findings.append(yank)
    findings += engine.vulnerability_findings(name, version)
    if package.sdist is not None:
        sdist = engine.sdist_finding(name, version)
        if sdist is not None:
            findings.append(sdist)
    return findings


def _license_check(engine: PolicyEngine, package: LockedPackage,
                   licenses: Mapping[tuple[str, Version], DeclaredLicense],
                   no_license: set[str]) -> list[Finding]:
    """The license rule's finding on ``package`` ([] when none or no rule); a
    release whose license is not in ``licenses`` goes into ``no_license``."""
    if engine.policy.licenses is None:
        return []
    declared = licenses.get(package.key)
    if declared is None:
        no_license.add(f"{package.name}=={package.version}")
        return []
    finding = engine.license_finding(package.name, package.version, declared)
    return [finding] if finding is not None else []


def _unchecked_rows(unchecked: dict[tuple[RowLevel, str], dict[str, list[str]]],
                    total: int) -> list[AuditRow]:
    """One row per (level, reason): the releases whose vulnerabilities no
    source could tell. At the set's ``vulnerabilities`` level, so that under
    ``deny`` an audit that could not look fails instead of passing as clean."""
    rows = []
    for (level, reason), releases in sorted(unchecked.items()):
        sets = tuple(sorted({s for on in releases.values() for s in on}))
        rows.append(AuditRow(package="", version="", rule="vulnerabilities", level=level,
                             message=not_checked_text(list(releases), total, reason),
                             sets=sets, releases=tuple(sorted(releases))))
    return rows


def _current_yank(package: LockedPackage, yanked_now: dict[tuple[str, str], str]) -> str | None:
    """The yank reason of any locked file (yanked now, or when locked), else None."""
    for file in package.files:
        if (package.name, file.filename) in yanked_now:
            return yanked_now[(package.name, file.filename)]
    return package.yanked


def _yanked_now(client: ProjectPages, names: Iterable[NormalizedName], notes: list[str]
                ) -> dict[tuple[str, str], str]:
    """(project, filename) -> yank reason, for every yanked file on the pages.

    A project no source has any more is noted (its locked files live on in
    the mirror, but nothing upstream vouches for them now)."""
    found: dict[tuple[str, str], str] = {}
    prefetch = getattr(client, "prefetch_projects", None)
    wanted = list(names)
    if callable(prefetch):
        prefetch(wanted)  # one parallel round instead of N sequential pages
    for name in wanted:
        try:
            page = client.project(name)
        except NotFoundError:
            notes.append(f"{name}: no configured source has this project any more")
            continue
        for file in page.files:
            if file.yanked:
                found[(name, file.filename)] = file.yanked_reason or ""
    return found


def _row(finding: Finding) -> AuditRow:
    advisory = finding.advisory
    return AuditRow(
        package=canonicalize_name(finding.package),
        version=str(finding.version) if finding.version is not None else "",
        rule=finding.rule,
        level="waived" if finding.waived_by is not None else finding.level,
        message=finding.message,
        sets=(),
        advisory=advisory.id if advisory else "",
        aliases=advisory.aliases if advisory else (),
        fixed_in=tuple(advisory.fixed_after(finding.version))
        if advisory and finding.version is not None else (),
        url=advisory.url if advisory else "",
        exception=finding.waived_by.label if finding.waived_by else "",
        source=advisory.source if advisory else "",
    )


def _with_sets(row: AuditRow, sets: list[str]) -> AuditRow:
    return replace(row, sets=tuple(sorted(sets)))


def audit_mirror(loaded: LoadedConfig, *, now: datetime, sets: Sequence[str] | None = None,
                 lockfile_paths: Sequence[Path] | None = None, offline: bool = False,
                 databases: Sequence[Path] = (), client: ProjectPages | None = None,
                 session: requests.Session | None = None,
                 kept: Sequence[RetainedLock] = ()) -> AuditReport:
    """The audit stage for a mirror repository (what ``lockmirror audit`` and
    ``doit audit`` run).

    Audits ``lockfile_paths``, or the lockfile of each set in ``sets``
    (default: every set of mirror.yaml, and lockmirror's own set when locked:
    the wheels of a bundle's ``tool/``). Advisory sources are the ones
    configured plus ``databases`` (offline OSV directories or zips);
    ``offline`` drops the network sources and the index lookup, so only
    offline databases and the lockfiles' own yanked state count (the far
    side of an air gap). ``kept``: the earlier lock revisions retention keeps
    serving, audited too (those of the sets audited). Raises StaleLockError for
    a missing lockfile, NetworkError when a source cannot be reached.
    """
    config = loaded.config
    every_set = lockfile_paths is None and not sets
    lockfiles = (audited_lockfiles(loaded, sets) if lockfile_paths is None
                 else [Lockfile.read(path) for path in lockfile_paths])
    revisions = [(r.label, r.lockfile) for r in kept_of(lockfiles, kept)]
    configured = [c for c in config.policy.advisory_sources
                  if not offline or c.kind == "osv-offline"]
    db = open_advisory_db(configured, base_dir=loaded.root, session=session)
    db.sources += [offline_source(path) for path in databases]  # OSV database or snapshot
    with ExitStack() as open_clients:
        if client is None and not offline:
            from ..net.index_client import IndexClient

            client = open_clients.enter_context(IndexClient(
                config.sources_by_priority(), cache_dir=loaded.cache_dir / "http"))
        every = lockfiles + [lockfile for _, lockfile in revisions]
        report = audit(lockfiles, config, sources=db, now=now, client=client,
                       where=loaded.path.name, licenses=_licenses(loaded, every, client),
                       kept=revisions)
    quarantined = QuarantineList.read(loaded.quarantine_path)
    rows, notes = quarantine_rows(report.rows, lockfiles,  # out of the index already
                                  quarantined.keys)
    report = replace(report, rows=rows, notes=(*report.notes, *notes))
    locked = {(p.name, p.version) for lf in every for p in lf.packages}
    stale = [r.release for r in quarantined.releases.values() if r.key not in locked]
    if stale and every_set:  # with fewer lockfiles, "not locked" proves nothing
        note = (f"quarantine entries no longer locked (remove them from "
                f"{loaded.config.paths.quarantine}): {', '.join(sorted(stale))}")
        report = replace(report, notes=(*report.notes, note))
    return report


def audited_lockfiles(loaded: LoadedConfig, sets: Sequence[str] | None) -> list[Lockfile]:
    """The lockfile of each of ``sets``; default: every set of mirror.yaml, and
    lockmirror's own set when locked (the bundle's ``tool/`` runs on the far
    side). What :func:`audit_mirror` checks, and so what the advisory snapshot
    (``lockmirror advisories``) covers. StaleLockError for a missing one."""
    paths = [loaded.lockfile_path(name) for name in loaded.chosen_sets(sets)]
    if not sets:
        paths += [path for path in tool_lockfile_paths(loaded) if path.exists()]
    return [Lockfile.read(path) for path in paths]


def kept_of(lockfiles: Sequence[Lockfile], kept: Sequence[RetainedLock]
            ) -> list[RetainedLock]:
    """The retained revisions of the sets ``lockfiles`` lock: what audit checks beside
    them, and so what the advisory snapshot covers too."""
    audited = {lockfile.set_name for lockfile in lockfiles}
    return [revision for revision in kept if revision.set_name in audited]


def _licenses(loaded: LoadedConfig, lockfiles: Sequence[Lockfile], client: object
              ) -> dict[tuple[str, Version], DeclaredLicense] | None:
    """Each release's declared license from the store or the index's PEP 658
    files (no distribution downloaded); None when no set has a license rule."""
    from ..net.s3_store import store_of
    from .release_licenses import release_licenses

    if not has_license_rule(loaded.config, lockfiles):
        return None
    return release_licenses(lockfiles, store_of(loaded), client)


def has_license_rule(config: MirrorConfig, lockfiles: Sequence[Lockfile]) -> bool:
    """Whether the policy of any of the lockfiles' sets has a ``licenses`` rule
    (else licenses need not be read at all)."""
    return config.policy.licenses is not None or any(
        lf.set_name in config.sets and config.policy_for(lf.set_name).licenses is not None
        for lf in lockfiles)


__all__ = ["AuditReport", "AuditRow", "audit", "audit_mirror"]
