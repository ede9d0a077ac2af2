"""The lock diff's model: what changed, as frozen values the renderers read.

A :class:`LockDiff` holds one :class:`SetDiff` per package set; a set holds
one :class:`TargetDiff` per target, each with its :class:`PackageChange`
rows, plus the set's files, new sdists, policy :class:`Finding` rows and
:class:`Alarm` rows. Every value has ``as_json`` in the documented shape
(see :mod:`lockmirror.stages.diff_render`).

:func:`with_audit` merges the audit stage's findings into a diff. Building
a diff from lockfiles is :mod:`lockmirror.stages.diff_compare`'s work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ..formats.lockfile import LockedFile, LockedPackage
from ..formats.url_policy import url_host
from ..redaction import redact_url

SetStatus = Literal["added", "removed", "changed", "unchanged"]
ChangeKind = Literal["added", "removed", "upgraded", "downgraded", "changed"]


@dataclass(frozen=True, order=True)
class FileRef:
    """A locked file as the diff reports it."""

    filename: str
    package: str
    version: str
    kind: Literal["wheel", "sdist"]
    size: int
    sha256: str
    url: str = ""  # without user name and password

    @classmethod
    def of(cls, package: LockedPackage, file: LockedFile) -> FileRef:
        return cls(file.filename, package.name, str(package.version),
                   "wheel" if file.is_wheel else "sdist", file.size, file.sha256,
                   redact_url(file.url))

    def as_json(self) -> dict[str, Any]:
        return {"filename": self.filename, "package": self.package, "version": self.version,
                "kind": self.kind, "size": self.size, "sha256": self.sha256, "url": self.url}


@dataclass(frozen=True)
class PackageChange:
    """One project on one target whose locked release or files differ."""

    name: str
    change: ChangeKind
    old_version: str | None
    new_version: str | None
    why: tuple[str, ...]
    requirers: tuple[str, ...]
    build_only: bool = False
    files_added: tuple[FileRef, ...] = ()
    files_removed: tuple[FileRef, ...] = ()

    @property
    def size_change(self) -> int:
        return sum(f.size for f in self.files_added) - sum(f.size for f in self.files_removed)

    @property
    def signature(self) -> tuple[object, ...]:
        """What the reader sees in a summary line (targets with equal ones are grouped)."""
        return (self.name, self.change, self.old_version, self.new_version, self.why,
                self.build_only)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "change": self.change,
            "old_version": self.old_version, "new_version": self.new_version,
            "why": list(self.why), "requirers": list(self.requirers),
            "build_only": self.build_only,
            "files_added": [f.as_json() for f in self.files_added],
            "files_removed": [f.as_json() for f in self.files_removed],
        }


@dataclass(frozen=True)
class TargetDiff:
    target: str
    status: SetStatus
    packages: tuple[PackageChange, ...]
    old_definition: str | None
    new_definition: str | None

    @property
    def size_change(self) -> int:
        return sum(p.size_change for p in self.packages)

    def as_json(self) -> dict[str, Any]:
        return {"target": self.target, "status": self.status,
                "old_definition": self.old_definition, "new_definition": self.new_definition,
                "packages": [p.as_json() for p in self.packages],
                "size_change": self.size_change}


@dataclass(frozen=True)
class NewSdist:
    file: FileRef
    source_builds_on: tuple[str, ...]  # targets with no wheel of the release: built there

    def as_json(self) -> dict[str, Any]:
        return {**self.file.as_json(), "source_builds_on": list(self.source_builds_on)}


@dataclass(frozen=True)
class Finding:
    """A policy matter the reviewer should see."""

    kind: Literal["exception-used", "policy-finding", "yanked", "audit", "license"]
    severity: Literal["deny", "warn", "info"]
    package: str | None
    version: str | None
    message: str
    new: bool  # not on the old side

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "severity": self.severity, "package": self.package,
                "version": self.version, "message": self.message, "new": self.new}


@dataclass(frozen=True)
class Alarm:
    """A file that kept its name while its sha256 or its URL's host changed, a
    file added from a host no file of the old side comes from (``new``: its URL),
    a release whose index changed, an entry whose marker disagrees with the
    targets it is locked for or lets installers take a build-only entry by
    default (``new``: how), or lockfile text changed where no comparison reads
    (``text``: a hand edit of default-groups, ...)."""

    kind: Literal["sha256", "host", "new-host", "index", "marker", "text"]
    filename: str
    package: str
    version: str
    old: str
    new: str

    @property
    def message(self) -> str:
        if self.kind == "sha256":
            # in full: a forged hash may share any prefix with the real one
            return (f"{self.filename}: sha256 changed for the same file name; files on PyPI are "
                    f"immutable (was {self.old}, now {self.new})")
        if self.kind == "marker":
            return f"{self.package} {self.version}: {self.new}"
        if self.kind == "index":
            return f"{self.package} {self.version}: index changed from {self.old} to {self.new}"
        if self.kind == "text":
            return self.new
        if self.kind == "new-host":
            return (f"{self.filename}: a new file from {url_host(self.new)}, a host no file "
                    f"of the old side comes from: {self.new}")
        return f"{self.filename}: URL host changed from {self.old} to {self.new}"

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "filename": self.filename, "package": self.package,
                "version": self.version, "old": self.old, "new": self.new,
                "message": self.message}


@dataclass(frozen=True)
class SetDiff:
    set_name: str
    status: SetStatus
    old_path: str | None
    new_path: str | None
    requirements_added: tuple[str, ...]
    requirements_removed: tuple[str, ...]
    targets: tuple[TargetDiff, ...]
    files_added: tuple[FileRef, ...]
    files_removed: tuple[FileRef, ...]
    old_size: int
    new_size: int
    new_sdists: tuple[NewSdist, ...]
    findings: tuple[Finding, ...]
    alarms: tuple[Alarm, ...] = ()
    # "name version" of releases that leave this set's lock but stay in the index
    # (mirror.yaml's retention:), and for how long: "for the previous lock, until ..."
    retained: tuple[str, ...] = ()
    retained_why: str = ""
    # what changed besides versions, files and alarms: a release's fields (a
    # file's URL, size or metadata hash, the marker, ...) and the lock's inputs
    edits: tuple[str, ...] = ()

    @property
    def size_change(self) -> int:
        return self.new_size - self.old_size

    def count(self, change: ChangeKind) -> int:
        """Distinct (name, versions) with this change over all targets."""
        return len({(p.name, p.old_version, p.new_version)
                    for t in self.targets for p in t.packages if p.change == change})

    def as_json(self) -> dict[str, Any]:
        return {
            "set": self.set_name, "status": self.status,
            "old_path": self.old_path, "new_path": self.new_path,
            "requirements": {"added": list(self.requirements_added),
                             "removed": list(self.requirements_removed)},
            "targets": [t.as_json() for t in self.targets],
            "files": {"added": [f.as_json() for f in self.files_added],
                      "removed": [f.as_json() for f in self.files_removed],
                      "old_size": self.old_size, "new_size": self.new_size,
                      "size_change": self.size_change},
            "new_sdists": [s.as_json() for s in self.new_sdists],
            "findings": [f.as_json() for f in self.findings],
            "alarms": [a.as_json() for a in self.alarms],
            "retained": {"releases": list(self.retained), "why": self.retained_why},
            "edits": list(self.edits),
        }


@dataclass(frozen=True)
class LockDiff:
    old_label: str
    new_label: str
    sets: tuple[SetDiff, ...]
    # what the diff could not do (licenses not compared, an audit that could not run)
    notes: tuple[str, ...] = ()
    # mirror.yaml's policy and sources, key by key, where they differ (stages/diff_config.py)
    config_changes: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return any(s.status != "unchanged" for s in self.sets)

    def summary(self) -> dict[str, int]:
        changed = [s for s in self.sets if s.status != "unchanged"]
        return {
            "sets_changed": len(changed),
            "packages_added": sum(s.count("added") for s in self.sets),
            "packages_removed": sum(s.count("removed") for s in self.sets),
            "packages_upgraded": sum(s.count("upgraded") for s in self.sets),
            "packages_downgraded": sum(s.count("downgraded") for s in self.sets),
            "packages_changed": sum(s.count("changed") for s in self.sets),
            "files_added": sum(len(s.files_added) for s in self.sets),
            "files_removed": sum(len(s.files_removed) for s in self.sets),
            "size_change": sum(s.size_change for s in self.sets),
            "alarms": sum(len(s.alarms) for s in self.sets),
        }




class AuditFinding(Protocol):
    """What :func:`with_audit` needs of an audit row (``lockmirror.stages.audit.AuditRow``)."""

    @property
    def package(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def rule(self) -> str: ...
    @property
    def level(self) -> Literal["deny", "warn", "quarantined", "waived"]: ...
    @property
    def message(self) -> str: ...
    @property
    def sets(self) -> tuple[str, ...]: ...
    @property
    def releases(self) -> tuple[str, ...]: ...


def with_audit(diff: LockDiff, rows: Iterable[AuditFinding]) -> LockDiff:
    """``diff`` with audit findings added to the sets they hold in.

    A finding is ``new`` when its release is added or changed by this diff; a
    row about many releases (vulnerabilities not checked) gives only a ``new``
    finding naming those this diff brings in, if any. Waived rows are left out (the
    lockfile's exceptions-used already says so), as are quarantined ones (no lock
    pins them), and an audit row about a
    yanked release replaces the lockfile's own yanked finding, which is older
    news. O(rows + changes).
    """
    rows = [r for r in rows if r.level not in ("waived", "quarantined")]
    sets = []
    for set_diff in diff.sets:
        mine = [r for r in rows if set_diff.set_name in r.sets]
        if not mine:
            sets.append(set_diff)
            continue
        changed = {(p.name, p.new_version) for t in set_diff.targets for p in t.packages
                   if p.new_version is not None}
        audited_yanks = {(r.package, r.version) for r in mine if r.rule == "yanked"}
        kept = [f for f in set_diff.findings
                if not (f.kind == "yanked" and (f.package, f.version) in audited_yanks)]
        # a row about many releases (vulnerabilities not checked, across every set) is
        # the mirror's, not this change's: only those this change brings in are named
        added = [Finding("audit", "deny" if r.level == "deny" else "warn", r.package or None,
                         r.version or None, f"{r.rule}: {r.message}",
                         new=(r.package, r.version) in changed) for r in mine if not r.releases]
        brought = {f"{name}=={version}" for name, version in changed}
        added += [Finding("audit", "deny" if r.level == "deny" else "warn", None, None,
                          f"{r.rule}: not checked for what this change brings in: "
                          f"{', '.join(sorted(brought & set(r.releases)))}", new=True)
                  for r in mine if brought & set(r.releases)]
        findings = tuple(kept + added)
        status = set_diff.status
        if status == "unchanged" and any(f.new for f in findings):
            status = "changed"
        sets.append(dataclasses.replace(set_diff, findings=findings, status=status))
    return dataclasses.replace(diff, sets=tuple(sets))  # its notes kept

