"""The lock diff: what a change to the lockfiles means, for the reviewer of a pull request.

Entries:

- :func:`load_lockfiles` — one side of a diff from a lockfile, a directory of
  lockfiles, a git revision, or the working tree.
- :func:`default_base` — the merge base of ``HEAD`` with the main branch.
- :func:`diff_lockfiles` — compare two sides: per set and target, packages
  added, removed, upgraded, downgraded or changed (same version, other files),
  why each is there, files added and removed with the size change, new
  sdists, policy findings (exceptions used, yanked releases), and alarms: a
  file whose name stays while its sha256 or its URL's host changes (never a
  routine update: files on PyPI are immutable), shown first in every format.
- :func:`render_text`, :func:`render_markdown`, :func:`render_json` — the
  three output formats (terminal, PR comment / step summary, machines).
- :func:`render_textconv` — one lockfile as sorted, self-describing lines, so
  that git's textconv diff of two renderings reads as a summary.
- :func:`with_audit` — add the audit stage's findings (advisories, yanks as
  of now) to a diff, marking those on releases this change brings in.

Nothing here prints; ``commands/diff.py`` does. Reading a git revision runs
``git`` (``ls-tree`` once, ``show`` per lockfile); everything else is in
memory and linear in the number of packages and files.

JSON shape (``render_json``; ``"schema": "lockmirror-diff/1"``; keys are
only ever added, never renamed or removed, within schema version 1)::

    {
      "schema": "lockmirror-diff/1",
      "old": "<label of the old side>", "new": "<label of the new side>",
      "changed": true,
      "summary": {"sets_changed": 1, "packages_added": 2, "packages_removed": 0,
                  "packages_upgraded": 1, "packages_downgraded": 0, "packages_changed": 0,
                  "files_added": 3, "files_removed": 1, "size_change": 1234,
                  "alarms": 0},
      "sets": [{
        "set": "core",
        "status": "changed",            # added | removed | changed | unchanged
        "old_path": "...", "new_path": "...",   # null when the side has no lockfile
        "requirements": {"added": ["..."], "removed": ["..."]},
        "targets": [{
          "target": "linux-x86_64-py311",
          "status": "changed",          # added | removed | changed | unchanged
          "old_definition": "cp3.11 manylinux_2_28_x86_64", "new_definition": "...",
          "packages": [{
            "name": "urllib3",
            "change": "added",          # added | removed | upgraded | downgraded | changed
            "old_version": null, "new_version": "2.0.4",
            "why": ["core: requests==2.31.0 -> urllib3"],   # chains on the side it is on
            "requirers": ["requests 2.31.0: urllib3<3,>=1.21.1"],  # raw lockfile entries
            "build_only": false,
            "files_added": [FILE...], "files_removed": [FILE...]
          }],
          "size_change": 1234             # bytes of this target's files (+ added, - removed)
        }],
        "files": {"added": [FILE...], "removed": [FILE...],
                  "old_size": 0, "new_size": 0, "size_change": 0},
        "new_sdists": [{FILE..., "source_builds_on": ["target", ...]}],
        "findings": [{"kind": "exception-used" | "yanked" | "audit",
                      "severity": "deny" | "warn" | "info",
                      "package": "foo", "version": "1.0", "message": "...",
                      "new": true}],    # new: not on the old side (audit: release changed here)
        "alarms": [{"kind": "sha256" | "host", "filename": "...", "package": "...",
                    "version": "...", "old": "...", "new": "...", "message": "..."}]
      }]
    }

    FILE = {"filename": "...", "package": "...", "version": "...", "kind": "wheel" | "sdist",
            "size": 123, "sha256": "..."}
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import subprocess
import urllib.parse
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import LockmirrorError
from .fsutil import format_size
from .lockfile import LockedFile, LockedPackage, LockedTarget, Lockfile
from .targets import Target

SCHEMA = "lockmirror-diff/1"
LOCKFILE_GLOB = "pylock.*.toml"
WHY_CHAIN_LIMIT = 3  # chains shown per package; the shortest ones, which say the most

SetStatus = Literal["added", "removed", "changed", "unchanged"]
ChangeKind = Literal["added", "removed", "upgraded", "downgraded", "changed"]


# --------------------------------------------------------------------------
# The two sides
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class LockfileSide:
    """One side of a diff: set name -> lockfile, and where each came from."""

    label: str
    lockfiles: Mapping[str, Lockfile]
    paths: Mapping[str, str] = field(default_factory=dict)
    single_file: bool = False  # given as one lockfile path: pairs with any one set


def read_directory(directory: Path, *, label: str | None = None) -> LockfileSide:
    """Every ``pylock.*.toml`` in ``directory`` (a missing directory is an empty side).

    Raises LockmirrorError naming the file when one is not a valid lockfile.
    """
    lockfiles: dict[str, Lockfile] = {}
    paths: dict[str, str] = {}
    for path in sorted(directory.glob(LOCKFILE_GLOB)):
        _add(lockfiles, paths, Lockfile.read(path), str(path), path.name)
    return LockfileSide(label or str(directory), lockfiles, paths)


def read_file(path: Path) -> LockfileSide:
    """One lockfile as a side; raises LockmirrorError naming it when invalid."""
    lockfile = Lockfile.read(path)
    return LockfileSide(str(path), {_set_name(lockfile, path.name): lockfile},
                        {_set_name(lockfile, path.name): str(path)}, single_file=True)


def read_revision(repo: Path, revision: str, lockfile_dir: str) -> LockfileSide:
    """The lockfiles in ``lockfile_dir`` (relative to the repository root) at ``revision``.

    A revision without that directory is an empty side (every set "added").
    Raises LockmirrorError when ``revision`` is not a commit in ``repo``, or
    when git is missing. Costs one ``git ls-tree`` and one ``git show`` per lockfile.
    """
    commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}",
                  what=f"'{revision}' is not a lockfile, a directory or a git revision").strip()
    prefix = lockfile_dir.strip("/")
    listing = _git(repo, "ls-tree", "--name-only", "-z", commit, "--", f"{prefix}/")
    lockfiles: dict[str, Lockfile] = {}
    paths: dict[str, str] = {}
    for member in sorted(n for n in listing.split("\0") if n):
        name = member.rsplit("/", 1)[-1]
        if not Path(name).match(LOCKFILE_GLOB):
            continue
        where = f"{revision}:{member}"
        text = _git(repo, "show", f"{commit}:{member}", what=f"cannot read {where}")
        _add(lockfiles, paths, Lockfile.loads(text, where=where), where, name)
    return LockfileSide(f"{revision} ({commit[:12]})", lockfiles, paths)


def load_lockfiles(spec: str, *, repo: Path, lockfile_dir: str) -> LockfileSide:
    """A side from a lockfile path, a directory of lockfiles, or a git revision.

    An existing path wins over a revision of the same name. ``repo`` is a
    directory inside the git work tree; ``lockfile_dir`` is relative to its root.
    """
    path = Path(spec)
    if path.is_dir():
        return read_directory(path)
    if path.is_file():
        return read_file(path)
    return read_revision(repo, spec, lockfile_dir)


def repository_root(directory: Path) -> Path:
    """The root of the git work tree holding ``directory``; LockmirrorError outside one."""
    top = _git(directory, "rev-parse", "--show-toplevel",
               what=f"{directory} is not inside a git repository; "
                    "give two lockfiles or two directories to compare")
    return Path(top.strip())


def default_base(repo: Path, branches: Sequence[str]) -> tuple[str, str]:
    """(branch, commit): the merge base of ``HEAD`` with the first of ``branches`` that exists.

    ``branches`` is the caller's preference order, e.g. ``origin/main``,
    ``main``. Raises LockmirrorError naming the candidates when none exists.
    """
    for branch in branches:
        try:
            _git(repo, "rev-parse", "--verify", "--quiet", f"{branch}^{{commit}}", what="")
        except LockmirrorError:
            continue
        commit = _git(repo, "merge-base", "HEAD", branch,
                      what=f"HEAD and {branch} have no common ancestor").strip()
        return branch, commit
    raise LockmirrorError(f"none of the branches {', '.join(branches)} exists",
                          where=str(repo), hint="name the old side: `lockmirror diff REVISION`")


def _git(repo: Path, *args: str, what: str = "") -> str:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True,
                              text=True, check=False)
    except FileNotFoundError:
        raise LockmirrorError("git is not installed",
                              hint="install git, or compare two lockfile paths") from None
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()
        raise LockmirrorError(what or f"git {' '.join(args)} failed: "
                              f"{detail[-1] if detail else done.returncode}")
    return done.stdout


def _set_name(lockfile: Lockfile, filename: str) -> str:
    if lockfile.set_name:
        return lockfile.set_name
    match = re.fullmatch(r"pylock\.(.+)\.toml", filename)
    return match.group(1) if match else filename


def _add(lockfiles: dict[str, Lockfile], paths: dict[str, str], lockfile: Lockfile,
         where: str, filename: str) -> None:
    name = _set_name(lockfile, filename)
    if name in lockfiles:
        raise LockmirrorError(f"two lockfiles for the set '{name}' (also {paths[name]})",
                              where=where)
    lockfiles[name] = lockfile
    paths[name] = where


# --------------------------------------------------------------------------
# Why: requirer entries walked up to the set
# --------------------------------------------------------------------------


def why_chains(lockfile: Lockfile, package: LockedPackage, target: str,
               limit: int = WHY_CHAIN_LIMIT, *,
               on_target: Mapping[tuple[str, Version], LockedPackage] | None = None,
               ) -> tuple[str, ...]:
    """The shortest requirement chains from the set down to ``package`` on ``target``.

    Requirers come from the lockfile (``LockedPackage.why``): a root entry
    (``"core: requests==2.31.0"``, or just ``"core"``) ends a chain; a parent
    entry (``"requests 2.31.0: urllib3<3"`` or ``"requests 2.31.0"``) continues
    it. Chains read ``core: requests==2.31.0 -> urllib3``. Breadth-first over
    the requirers reachable from ``package``; cycles are harmless. Pass
    ``on_target`` (:func:`packages_on_target`) when calling it for many
    packages, or each call costs O(packages) to build it.
    """
    if on_target is None:
        on_target = packages_on_target(lockfile, target)
    chains: list[tuple[int, str]] = []
    visited = {package.key}
    # Each queue item: a package and the names below it down to ``package``.
    queue: deque[tuple[LockedPackage, tuple[str, ...]]] = deque([(package, ())])
    while queue:
        node, below = queue.popleft()
        for entry in node.why.get(target, ()):
            parent = _parent_key(entry, on_target)
            if parent is None:
                who, _, requirement = entry.partition(": ")
                head = f"{who}: {requirement or f'{node.name}=={node.version}'}"
                chains.append((len(below), " -> ".join((head, *below))))
            elif parent not in visited:
                visited.add(parent)
                queue.append((on_target[parent], (node.name, *below)))
    unique = sorted(set(chains))
    return tuple(text for _, text in unique[:limit])


def packages_on_target(lockfile: Lockfile, target: str) -> dict[tuple[str, Version],
                                                                LockedPackage]:
    """(name, version) -> package, for the packages installed on ``target``."""
    return {p.key: p for p in lockfile.packages if target in p.targets}


def _parent_key(entry: str, packages: Mapping[tuple[str, Version], LockedPackage],
                ) -> tuple[str, Version] | None:
    """The (name, version) of a parent entry, or None for a root entry."""
    who = entry.partition(": ")[0]
    parts = who.split(" ")
    if len(parts) != 2:
        return None
    try:
        key = (canonicalize_name(parts[0]), Version(parts[1]))
    except InvalidVersion:
        return None
    return key if key in packages else None


# --------------------------------------------------------------------------
# The diff model
# --------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class FileRef:
    """A locked file as the diff reports it."""

    filename: str
    package: str
    version: str
    kind: Literal["wheel", "sdist"]
    size: int
    sha256: str

    @classmethod
    def of(cls, package: LockedPackage, file: LockedFile) -> FileRef:
        return cls(file.filename, package.name, str(package.version),
                   "wheel" if file.is_wheel else "sdist", file.size, file.sha256)

    def as_json(self) -> dict[str, Any]:
        return {"filename": self.filename, "package": self.package, "version": self.version,
                "kind": self.kind, "size": self.size, "sha256": self.sha256}


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

    kind: Literal["exception-used", "yanked", "audit"]
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
    """A file that kept its name while its sha256 or its URL's host changed."""

    kind: Literal["sha256", "host"]
    filename: str
    package: str
    version: str
    old: str
    new: str

    @property
    def message(self) -> str:
        if self.kind == "sha256":
            return (f"{self.filename}: sha256 changed for the same file name; files on PyPI are "
                    f"immutable (was {self.old[:16]}..., now {self.new[:16]}...)")
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
        }


@dataclass(frozen=True)
class LockDiff:
    old_label: str
    new_label: str
    sets: tuple[SetDiff, ...]

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


# --------------------------------------------------------------------------
# Comparing
# --------------------------------------------------------------------------


def diff_lockfiles(old: LockfileSide, new: LockfileSide) -> LockDiff:
    """Compare two sides set by set (two single files are compared whatever their sets).

    Pure and deterministic: sets sorted by name, targets in the new
    lockfile's order (then targets only the old one has), packages by name.
    """
    old_map, new_map = dict(old.lockfiles), dict(new.lockfiles)
    old_paths, new_paths = dict(old.paths), dict(new.paths)
    if old.single_file and new.single_file and set(old_map) != set(new_map):
        (old_name, lock), = old_map.items()
        new_name = next(iter(new_map))
        old_map, old_paths = {new_name: lock}, {new_name: old_paths[old_name]}
    sets = tuple(
        _diff_set(name, old_map.get(name), new_map.get(name),
                  old_paths.get(name), new_paths.get(name))
        for name in sorted(set(old_map) | set(new_map)))
    return LockDiff(old.label, new.label, sets)


def _diff_set(name: str, old: Lockfile | None, new: Lockfile | None,
              old_path: str | None, new_path: str | None) -> SetDiff:
    old_targets = {t.name: t for t in old.targets} if old else {}
    new_targets = {t.name: t for t in new.targets} if new else {}
    order = list(new_targets) + [t for t in old_targets if t not in new_targets]
    targets = tuple(_diff_target(t, old, new, old_targets.get(t), new_targets.get(t))
                    for t in order)

    old_files = _files(old)
    new_files = _files(new)
    added = tuple(sorted(new_files[k] for k in new_files.keys() - old_files.keys()))
    removed = tuple(sorted(old_files[k] for k in old_files.keys() - new_files.keys()))
    old_reqs = old.requirements if old else ()
    new_reqs = new.requirements if new else ()

    sdists = []
    if new is not None:
        added_keys = {(f.filename, f.sha256) for f in added}
        for package in new.packages:
            if package.sdist and (package.sdist.filename, package.sdist.sha256) in added_keys:
                builds_on = tuple(t for t in package.targets if t in new_targets
                                  and not _wheels_for(package, new_targets[t]))
                sdists.append(NewSdist(FileRef.of(package, package.sdist), builds_on))

    findings = _findings(old, new)
    alarms = _alarms(old, new)
    if old is None:
        status: SetStatus = "added"
    elif new is None:
        status = "removed"
    elif (added or removed or any(t.status != "unchanged" for t in targets)
          or old_reqs != new_reqs or any(f.new for f in findings) or alarms):
        status = "changed"
    else:
        status = "unchanged"
    return SetDiff(
        set_name=name, status=status, old_path=old_path, new_path=new_path,
        requirements_added=tuple(r for r in new_reqs if r not in old_reqs),
        requirements_removed=tuple(r for r in old_reqs if r not in new_reqs),
        targets=targets, files_added=added, files_removed=removed,
        old_size=sum(f.size for f in old_files.values()),
        new_size=sum(f.size for f in new_files.values()),
        new_sdists=tuple(sorted(sdists, key=lambda s: s.file)), findings=findings,
        alarms=alarms)


def _alarms(old: Lockfile | None, new: Lockfile | None) -> tuple[Alarm, ...]:
    """Files in both lockfiles under one name whose sha256 or URL host differ."""
    if old is None or new is None:
        return ()
    before = {f.filename: f for _, f in old.iter_files()}
    out = []
    for package, file in sorted(new.iter_files(), key=lambda pf: pf[1].filename):
        was = before.get(file.filename)
        if was is None:
            continue
        if was.sha256.lower() != file.sha256.lower():
            out.append(Alarm("sha256", file.filename, package.name, str(package.version),
                             was.sha256.lower(), file.sha256.lower()))
        if _host(was.url) != _host(file.url):
            out.append(Alarm("host", file.filename, package.name, str(package.version),
                             _host(was.url), _host(file.url)))
    return tuple(out)


def _host(url: str) -> str:
    """The scheme, host and port of ``url`` (no user info), as it decides where bytes come from."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return url
    return f"{parts.scheme}://{parts.hostname or ''}{port}" if parts.scheme else url


def _files(lockfile: Lockfile | None) -> dict[tuple[str, str], FileRef]:
    if lockfile is None:
        return {}
    return {(f.filename, f.sha256): FileRef.of(p, f) for p, f in lockfile.iter_files()}


def _describe_target(target: LockedTarget) -> str:
    return f"{target.implementation}{target.python} {', '.join(target.platforms)}"


@functools.lru_cache(maxsize=64)
def _as_target(target: LockedTarget) -> Target:
    # Cached: a Target computes its (long) tag list once, on first use.
    return Target(name=target.name, python=target.python, implementation=target.implementation,
                  platforms=target.platforms)


def _wheels_for(package: LockedPackage, target: LockedTarget) -> tuple[LockedFile, ...]:
    model = _as_target(target)
    return tuple(w for w in package.wheels if model.wheel_rank(w.filename) is not None)


def _target_files(package: LockedPackage, target: LockedTarget) -> dict[tuple[str, str], FileRef]:
    """The files of ``package`` an installer on ``target`` could use."""
    files = list(_wheels_for(package, target))
    if package.sdist:
        files.append(package.sdist)
    return {(f.filename, f.sha256): FileRef.of(package, f) for f in files}


def _on_target(lockfile: Lockfile | None, target: str) -> dict[str, LockedPackage]:
    if lockfile is None:
        return {}
    found: dict[str, LockedPackage] = {}
    # One release per project and target is the contract; should a lockfile
    # break it, the highest version stands for the project.
    for package in sorted(lockfile.packages_for(target), key=lambda p: p.version):
        found[package.name] = package
    return found


def _diff_target(name: str, old: Lockfile | None, new: Lockfile | None,
                 old_target: LockedTarget | None, new_target: LockedTarget | None) -> TargetDiff:
    before = _on_target(old, name) if old_target else {}
    after = _on_target(new, name) if new_target else {}
    index = {"old": packages_on_target(old, name) if old else {},
             "new": packages_on_target(new, name) if new else {}}
    changes: list[PackageChange] = []
    for project in sorted(set(before) | set(after)):
        was, now = before.get(project), after.get(project)
        old_files = _target_files(was, old_target) if was and old_target else {}
        new_files = _target_files(now, new_target) if now and new_target else {}
        if was is not None and now is not None:
            if was.version == now.version and old_files.keys() == new_files.keys():
                continue
            kind: ChangeKind = ("upgraded" if now.version > was.version else
                                "downgraded" if now.version < was.version else "changed")
        else:
            kind = "added" if now is not None else "removed"
        shown, lockfile, side = (now, new, "new") if now is not None else (was, old, "old")
        assert shown is not None and lockfile is not None
        changes.append(PackageChange(
            name=project, change=kind,
            old_version=str(was.version) if was else None,
            new_version=str(now.version) if now else None,
            why=why_chains(lockfile, shown, name, on_target=index[side]),
            requirers=tuple(shown.why.get(name, ())),
            build_only=shown.build_only,
            files_added=tuple(sorted(new_files[k] for k in new_files.keys() - old_files.keys())),
            files_removed=tuple(sorted(old_files[k] for k in old_files.keys() - new_files.keys())),
        ))
    old_def = _describe_target(old_target) if old_target else None
    new_def = _describe_target(new_target) if new_target else None
    if old_target is None:
        status: SetStatus = "added"
    elif new_target is None:
        status = "removed"
    elif changes or old_def != new_def:
        status = "changed"
    else:
        status = "unchanged"
    return TargetDiff(name, status, tuple(changes), old_def, new_def)


def _exception_text(record: Mapping[str, str]) -> str:
    label = record.get("exception", "an exception")
    release = record.get("release") or f"{record.get('package', '?')}=={record.get('version', '*')}"
    text = f"{label} waives {record.get('rule', 'a rule')} for {release}"
    if record.get("advisory"):
        text += f" ({record['advisory']})"
    text += f": {record.get('reason', '')}".rstrip(": ")
    if record.get("expires"):
        text += f" (expires {record['expires']})"
    return text


def _findings(old: Lockfile | None, new: Lockfile | None) -> tuple[Finding, ...]:
    if new is None:
        return ()
    out: list[Finding] = []
    old_records = {tuple(sorted(r.items())) for r in (old.exceptions_used if old else ())}
    for record in new.exceptions_used:
        release = record.get("release", "")
        name, _, version = release.partition("==")
        out.append(Finding("exception-used", "warn", name or record.get("package"),
                           version or None, _exception_text(record),
                           new=tuple(sorted(record.items())) not in old_records))
    old_yanked = {p.key for p in (old.packages if old else ()) if p.yanked is not None}
    for package in sorted(new.packages, key=lambda p: p.key):
        if package.yanked is None:
            continue
        reason = f": {package.yanked}" if package.yanked else ""
        out.append(Finding("yanked", "warn", package.name, str(package.version),
                           f"{package.name} {package.version} is yanked upstream{reason}",
                           new=package.key not in old_yanked))
    return tuple(out)


class AuditFinding(Protocol):
    """What :func:`with_audit` needs of an audit row (``lockmirror.audit.AuditRow``)."""

    @property
    def package(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def rule(self) -> str: ...
    @property
    def level(self) -> Literal["deny", "warn", "waived"]: ...
    @property
    def message(self) -> str: ...
    @property
    def sets(self) -> tuple[str, ...]: ...


def with_audit(diff: LockDiff, rows: Iterable[AuditFinding]) -> LockDiff:
    """``diff`` with audit findings added to the sets they hold in.

    A finding is ``new`` when its release is added or changed by this diff.
    Waived rows are left out (the lockfile's exceptions-used already says
    so), and an audit row about a yanked release replaces the lockfile's
    own yanked finding, which is older news. O(rows + changes).
    """
    rows = [r for r in rows if r.level != "waived"]
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
        added = [Finding("audit", "deny" if r.level == "deny" else "warn", r.package or None,
                         r.version or None, f"{r.rule}: {r.message}",
                         new=(r.package, r.version) in changed) for r in mine]
        findings = tuple(kept + added)
        status = set_diff.status
        if status == "unchanged" and any(f.new for f in findings):
            status = "changed"
        sets.append(dataclasses.replace(set_diff, findings=findings, status=status))
    return LockDiff(diff.old_label, diff.new_label, tuple(sets))


# --------------------------------------------------------------------------
# Rendering helpers
# --------------------------------------------------------------------------


def _version_text(change: PackageChange, arrow: str = "->") -> str:
    if change.change == "added":
        return f"{change.new_version}"
    if change.change == "removed":
        return f"{change.old_version}"
    if change.change == "changed":
        return f"{change.new_version} (files changed)"
    return f"{change.old_version} {arrow} {change.new_version}"


def _grouped(targets: Iterable[TargetDiff]) -> list[tuple[list[str], tuple[PackageChange, ...]]]:
    """Targets with the same visible changes, together (first target's order)."""
    groups: dict[tuple[object, ...], tuple[list[str], tuple[PackageChange, ...]]] = {}
    for target in targets:
        if not target.packages:
            continue
        key = tuple(p.signature for p in target.packages)
        groups.setdefault(key, ([], target.packages))[0].append(target.target)
    return list(groups.values())


def _summary_line(diff: SetDiff) -> str:
    parts = [f"{diff.count(k)} {k}" for k in ("added", "removed", "upgraded", "downgraded",
                                               "changed") if diff.count(k)]
    files = (f"files +{len(diff.files_added)} -{len(diff.files_removed)}, "
             f"{format_size(diff.size_change, signed=True)} "
             f"({format_size(diff.old_size)} -> {format_size(diff.new_size)})")
    return ", ".join(parts + [files]) if parts else files


_TEXT_MARK = {"added": "+", "removed": "-", "upgraded": "^", "downgraded": "v", "changed": "~"}


# --------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------


def render_text(diff: LockDiff) -> str:
    """A terminal rendering: one block per changed set, one line per package change."""
    lines = [f"lockmirror diff {diff.old_label} -> {diff.new_label}"]
    if not diff.changed:
        lines.append("no changes to the lockfiles")
        return "\n".join(lines) + "\n"
    alarms = [(s.set_name, a) for s in diff.sets for a in s.alarms]
    if alarms:
        lines.append("")
        lines.append(f"ALARM: {len(alarms)} file(s) changed under the same name or moved to "
                     "another host; do not merge before finding out why:")
        lines += [f"  ! set {name}: {alarm.message}" for name, alarm in alarms]
    for set_diff in diff.sets:
        if set_diff.status == "unchanged":
            continue
        state = {"added": " (new set)", "removed": " (set removed)"}.get(set_diff.status, "")
        lines.append("")
        lines.append(f"set {set_diff.set_name}{state}: {_summary_line(set_diff)}")
        if set_diff.requirements_added or set_diff.requirements_removed:
            reqs = ([f"+{r}" for r in set_diff.requirements_added]
                    + [f"-{r}" for r in set_diff.requirements_removed])
            lines.append(f"  requirements: {' '.join(reqs)}")
        for target in set_diff.targets:
            if set_diff.status != "changed":
                break  # a whole set added or removed: its targets go with it
            if target.status in ("added", "removed"):
                lines.append(f"  target {target.target} {target.status}")
            elif target.old_definition != target.new_definition:
                lines.append(f"  target {target.target} redefined: "
                             f"{target.old_definition} -> {target.new_definition}")
        for names, changes in _grouped(set_diff.targets):
            label = "targets" if len(names) > 1 else "target"
            lines.append(f"  {label} {', '.join(names)}:")
            width = max(len(f"{c.name} {_version_text(c)}") for c in changes)
            for change in changes:
                head = f"{change.name} {_version_text(change)}"
                why = "; ".join(change.why) or "(no recorded requirer)"
                prefix = "was: " if change.change == "removed" else ""
                build = " [build-only]" if change.build_only else ""
                lines.append(f"    {_TEXT_MARK[change.change]} {head:<{width}}  "
                             f"{prefix}{why}{build}")
        if set_diff.files_added or set_diff.files_removed:
            lines.append("  files:")
            width = max(len(f.filename) for f in set_diff.files_added + set_diff.files_removed)
            for sign, files in (("+", set_diff.files_added), ("-", set_diff.files_removed)):
                for file in files:
                    lines.append(f"    {sign} {file.filename:<{width}}  "
                                 f"{format_size(file.size):>9}")
        for sdist in set_diff.new_sdists:
            where = (f"; no wheel for {', '.join(sdist.source_builds_on)}: built from source there"
                     if sdist.source_builds_on else "")
            lines.append(f"  new sdist: {sdist.file.filename} "
                         f"({format_size(sdist.file.size)}){where}")
        for finding in set_diff.findings:
            fresh = "new " if finding.new else ""
            level = "DENY " if finding.severity == "deny" else ""
            lines.append(f"  policy: {level}{fresh}{finding.kind}: {finding.message}")
    unchanged = [s.set_name for s in diff.sets if s.status == "unchanged"]
    if unchanged:
        lines.append("")
        lines.append(f"unchanged: {', '.join(unchanged)}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------

_MD_CHANGE = {"added": "added", "removed": "removed", "upgraded": "upgraded",
              "downgraded": "**downgraded**", "changed": "files changed"}
MARKDOWN_LIMIT = 60_000  # a GitHub comment holds 65,536 characters; leave room for a header


def _md(text: str) -> str:
    """Escape what would break a table cell or start markup."""
    return re.sub(r"([\\`*_|<>\[\]])", r"\\\1", text)


def _code(text: str) -> str:
    """A code span (backslashes stay literal there; only a pipe needs care in tables)."""
    return "`" + text.replace("`", "'").replace("|", "\\|") + "`"


def _md_chain(chain: str) -> str:
    return " → ".join(_md(part) for part in chain.split(" -> "))


def render_markdown(diff: LockDiff, *, max_chars: int | None = MARKDOWN_LIMIT) -> str:
    """GitHub-flavoured Markdown for a PR comment or ``$GITHUB_STEP_SUMMARY``.

    When the full rendering is longer than ``max_chars``, the per-file lists
    are left out, then package tables are cut, each with a note saying so.
    """
    full = _markdown(diff, files=True, rows=None)
    if max_chars is None or len(full) <= max_chars:
        return full
    brief = _markdown(diff, files=False, rows=None)
    if len(brief) <= max_chars:
        return brief
    rows = 50
    while rows > 1:
        cut = _markdown(diff, files=False, rows=rows)
        if len(cut) <= max_chars:
            return cut
        rows //= 2
    return _markdown(diff, files=False, rows=0)


def _markdown(diff: LockDiff, *, files: bool, rows: int | None) -> str:
    out = [f"### lockmirror diff: {_code(diff.old_label)} → {_code(diff.new_label)}", ""]
    if not diff.changed:
        out.append("No changes to the lockfiles.")
        return "\n".join(out) + "\n"
    alarms = [(s.set_name, a) for s in diff.sets for a in s.alarms]
    if alarms:
        out += ["> [!CAUTION]",
                (f"> **{len(alarms)} file(s) changed under the same name or moved to another "
                 "host.** Do not merge before finding out why:")]
        out += [f"> - set {_code(name)}: {_md(alarm.message)}" for name, alarm in alarms]
        out.append("")
    totals = diff.summary()
    counts = [f"{totals[f'packages_{k}']} {k}" for k in
              ("added", "removed", "upgraded", "downgraded", "changed") if totals[f"packages_{k}"]]
    out.append(f"**{totals['sets_changed']} set(s) changed**"
               + (f": packages {', '.join(counts)}" if counts else "")
               + f"; files +{totals['files_added']} −{totals['files_removed']} "
               f"({format_size(totals['size_change'], signed=True)})")
    for set_diff in diff.sets:
        if set_diff.status == "unchanged":
            continue
        state = {"added": " (new set)", "removed": " (set removed)"}.get(set_diff.status, "")
        out += ["", f"#### Set {_code(set_diff.set_name)}{state}", "",
                (f"Files +{len(set_diff.files_added)} −{len(set_diff.files_removed)}, "
                f"{format_size(set_diff.size_change, signed=True)} "
                f"({format_size(set_diff.old_size)} → {format_size(set_diff.new_size)}).")]
        if set_diff.requirements_added or set_diff.requirements_removed:
            reqs = ([f"added {_code(r)}" for r in set_diff.requirements_added]
                    + [f"removed {_code(r)}" for r in set_diff.requirements_removed])
            out += ["", f"Requirements: {'; '.join(reqs)}."]
        for target in set_diff.targets:
            if set_diff.status != "changed":
                break
            if target.status in ("added", "removed"):
                out += ["", f"Target {_code(target.target)} {target.status}."]
            elif target.old_definition != target.new_definition:
                out += ["", (f"Target {_code(target.target)} redefined: "
                            f"{_code(target.old_definition or '')} → "
                            f"{_code(target.new_definition or '')}.")]
        for names, changes in _grouped(set_diff.targets):
            shown = changes if rows is None else changes[:rows]
            out += ["", f"**{'Targets' if len(names) > 1 else 'Target'}** "
                        + ", ".join(_code(n) for n in names), "",
                    "| change | package | version | why |", "|---|---|---|---|"]
            for change in shown:
                why = "<br>".join(_md_chain(w) for w in change.why) or "(no recorded requirer)"
                if change.build_only:
                    why += " (build-only)"
                out.append(f"| {_MD_CHANGE[change.change]} | {_code(change.name)} | "
                           f"{_md(_version_text(change, '→'))} | {why} |")
            if len(shown) < len(changes):
                out += ["", (f"_{len(changes) - len(shown)} more changes not shown; "
                            "run `lockmirror diff` for all of them._")]
        if files and (set_diff.files_added or set_diff.files_removed):
            out += ["", (f"<details><summary>Files: {len(set_diff.files_added)} added, "
                        f"{len(set_diff.files_removed)} removed</summary>"), "",
                    "| | file | size |", "|---|---|---|"]
            for sign, listed in (("+", set_diff.files_added), ("−", set_diff.files_removed)):
                for file in listed:
                    out.append(f"| {sign} | {_code(file.filename)} | {format_size(file.size)} |")
            out += ["", "</details>"]
        if set_diff.new_sdists:
            out += ["", "New sdists:", ""]
            for sdist in set_diff.new_sdists:
                where = (": no wheel for " + ", ".join(_code(t) for t in sdist.source_builds_on)
                         + ", built from source there" if sdist.source_builds_on else "")
                out.append(f"- {_code(sdist.file.filename)} "
                           f"({format_size(sdist.file.size)}){where}")
        if set_diff.findings:
            out += ["", "Policy:", ""]
            for finding in set_diff.findings:
                fresh = "**new** " if finding.new else ""
                mark = "⛔ **deny**" if finding.severity == "deny" else "⚠️"
                out.append(f"- {mark} {fresh}{finding.kind}: {_md(finding.message)}")
    unchanged = [s.set_name for s in diff.sets if s.status == "unchanged"]
    if unchanged:
        out += ["", "Unchanged: " + ", ".join(_code(n) for n in unchanged) + "."]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------


def diff_as_json(diff: LockDiff) -> dict[str, Any]:
    """The documented shape (see the module docstring)."""
    return {"schema": SCHEMA, "old": diff.old_label, "new": diff.new_label,
            "changed": diff.changed, "summary": diff.summary(),
            "sets": [s.as_json() for s in diff.sets]}


def render_json(diff: LockDiff) -> str:
    return json.dumps(diff_as_json(diff), indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------
# textconv
# --------------------------------------------------------------------------


def render_textconv(lockfile: Lockfile) -> str:
    """One lockfile as sorted lines that each name their package and version.

    Made for ``git diff`` with ``diff.lockmirror.textconv``: a changed line
    reads on its own (``-requests 2.30.0: wheel ...`` / ``+requests 2.31.0: ...``).
    """
    lines = [f"lockmirror lockfile for set {lockfile.set_name}",
             f"input-hash {lockfile.input_hash}"]
    lines += [f"requirement {r}" for r in lockfile.requirements]
    for target in lockfile.targets:
        lines.append(f"target {target.name}: {_describe_target(target)}; {target.marker}")
    for record in lockfile.exceptions_used:
        lines.append(f"exception-used {_exception_text(record)}")
    target_order = [t.name for t in lockfile.targets]
    names = {name for package in lockfile.packages for name in package.targets}
    indexes = {name: packages_on_target(lockfile, name) for name in names}
    for package in sorted(lockfile.packages, key=lambda p: p.key):
        head = f"{package.name} {package.version}:"
        lines.append(f"{head} targets {', '.join(package.targets)}")
        if package.marker:
            lines.append(f"{head} marker {package.marker}")
        if package.requires_python:
            lines.append(f"{head} requires-python {package.requires_python}")
        if package.build_only:
            lines.append(f"{head} build-only")
        if package.yanked is not None:
            lines.append(f"{head} yanked {package.yanked}".rstrip())
        by_chain: dict[tuple[str, ...], list[str]] = {}
        for name in sorted(package.targets, key=lambda t: (
                target_order.index(t) if t in target_order else len(target_order), t)):
            chains = why_chains(lockfile, package, name, on_target=indexes[name])
            by_chain.setdefault(chains, []).append(name)
        for chains, on in by_chain.items():
            where = "" if len(by_chain) == 1 else f" on {', '.join(on)}"
            for chain in chains:
                lines.append(f"{head} why{where}: {chain}")
        for file in package.files:
            kind = "wheel" if file.is_wheel else "sdist"
            lines.append(f"{head} {kind} {file.filename} {format_size(file.size)} "
                         f"sha256:{file.sha256[:16]} from {_host(file.url)}")
    return "\n".join(lines) + "\n"
