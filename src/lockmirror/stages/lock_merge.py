"""Building a set's lockfile from its targets' resolutions.

:func:`merge_lockfile` merges the per-target resolutions (runtime and one
dependency group per sdist build) into one entry per (name, version), with
the marker under which each is active; :func:`check_one_entry_per_name`
refuses a lockfile in which an installer would find two active entries of
one name. The stage that resolves and writes is :mod:`lockmirror.stages.lock`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from packaging.markers import Marker
from packaging.utils import NormalizedName
from packaging.version import Version

from ..errors import LockmirrorError
from ..formats.lockfile import RUNTIME_GROUP, LockedFile, LockedPackage, LockedTarget, Lockfile

if TYPE_CHECKING:
    from ..config import LoadedConfig
    from ..net.index_client import DistFile, IndexClient
    from ..resolve.candidates import Candidate
    from ..resolve.resolver import Resolution
    from ..targets import Target


@dataclass
class TargetLock:
    """What one target of a set locks: its runtime resolution, one resolution
    per dependency group (``build-<sdist>``: the isolated environment that
    sdist builds in), and why build backends could not be asked, if so."""

    runtime: Resolution
    builds: list[tuple[str, Resolution]]
    backend_not_asked: str | None = None

    def groups(self) -> list[tuple[str, Resolution]]:
        return [(RUNTIME_GROUP, self.runtime), *self.builds]


def _locked_file(file: DistFile) -> LockedFile:
    if not file.sha256 or file.size is None:
        raise LockmirrorError(
            f"the index states no sha256 or size for {file.filename}, and its JSON API and a "
            "HEAD request did not either",
            where=file.url, hint="lockmirror locks only files whose hash and size are known")
    return LockedFile(filename=file.filename, url=file.url, size=file.size,
                      sha256=file.sha256, upload_time=file.upload_time,
                      metadata_sha256=file.metadata_sha256)


@dataclass(frozen=True)
class TargetEntry:
    """One release as one target of a set locks it: plain data (what a shard
    file keeps), all a lockfile needs of the resolution."""

    name: NormalizedName
    version: Version
    conditions: Mapping[str, str | None]  # group -> marker text it is needed under (None: always)
    files: tuple[LockedFile, ...]  # the file chosen in each group, sorted
    why: tuple[str, ...]  # its requirers, sorted
    dependencies: tuple[str, ...]  # sorted
    requires_python: str | None
    index: str
    yanked: str | None


@dataclass(frozen=True)
class TargetPart:
    """What one target of a set locks, as plain data: its entries (sorted by
    name and version), its build groups, why build backends could not be
    asked, the candidates passed over for a failed build ((name, version,
    reason)), and the policy exceptions its lock relied on (records as
    ``exceptions-used`` keeps them, filled in by the lock stage)."""

    target: str
    entries: tuple[TargetEntry, ...]
    build_groups: tuple[str, ...] = ()
    backend_not_asked: str | None = None
    skipped: tuple[tuple[str, str, str], ...] = ()
    exceptions_used: tuple[Mapping[str, str], ...] = ()
    policy_findings: tuple[Mapping[str, str], ...] = ()  # the warn-level findings it allowed


def target_parts(per_target: Mapping[str, TargetLock],
                 client: IndexClient) -> dict[str, TargetPart]:
    """Each target's resolutions as a :class:`TargetPart`: every chosen file
    with its size, upload time and PEP 658 metadata hash (what the project page
    left out asked of the index in one batch: the JSON API, HEAD)."""
    from ..net.file_details import complete

    chosen = [c.best for tl in per_target.values() for _, r in tl.groups()
              for c in r.candidates.values()]
    details = complete(client, chosen)
    for url, file in details.items():
        if file.is_wheel and not file.metadata_sha256:
            # The resolver read this wheel's METADATA (PEP 658 file or out of the
            # wheel; memoized, no new request): its hash lets fetch and index
            # provide the .metadata file even where the upstream does not.
            digest = hashlib.sha256(client.metadata(file)).hexdigest()
            details[url] = dataclasses.replace(file, metadata_sha256=digest)
    source_urls = {s.name: s.url for s in client.sources}  # without any userinfo
    return {target: _target_part(target, locked, details, source_urls)
            for target, locked in per_target.items()}


@dataclass
class _InTarget:
    """One release as the groups of one target lock it (while a part is built)."""

    candidate: Candidate  # the first seen (the runtime group's, if any)
    conditions: dict[str, str | None]
    files: dict[str, LockedFile]
    why: set[str]
    deps: set[str]


@dataclass
class _InSet:
    """One release as the targets of a set lock it (while the parts are merged)."""

    first: TargetEntry  # of the first target that locks it
    targets: dict[str, Mapping[str, str | None]]  # target -> group -> condition
    files: dict[str, LockedFile]
    why: dict[str, tuple[str, ...]]
    deps: set[str]


def _target_part(target: str, locked: TargetLock, details: Mapping[str, DistFile],
                 source_urls: Mapping[str, str]) -> TargetPart:
    acc: dict[tuple[NormalizedName, Version], _InTarget] = {}
    for group, resolution in locked.groups():
        for name, candidate in resolution.candidates.items():
            key = (name, candidate.version)
            entry = acc.get(key)
            if entry is None:
                entry = acc[key] = _InTarget(candidate, {}, {}, set(), set())
            entry.conditions[group] = _either(entry.conditions, group,
                                              resolution.conditions.get(name))
            best = details[candidate.best.url]
            entry.files[best.filename] = _locked_file(best)
            entry.why.update(resolution.parents.get(name, ()))
            entry.deps.update(resolution.edges.get(name, ()))
    entries = []
    for (name, version), entry in sorted(acc.items()):
        candidate = entry.candidate
        source = next((f.source for f in candidate.files if f.source), None)
        entries.append(TargetEntry(
            name=name, version=version, conditions=entry.conditions,
            files=tuple(sorted(entry.files.values())), why=tuple(sorted(entry.why)),
            dependencies=tuple(sorted(entry.deps)), requires_python=candidate.requires_python,
            index=source_urls.get(source or "", source or ""),
            yanked=(candidate.yanked_reason or "") if candidate.yanked else None))
    skipped = sorted({(name, version, f"{error.filename}: {error.summary}")
                      for _, r in locked.groups()
                      for (name, version), error in r.skipped.items()})
    return TargetPart(target, tuple(entries), tuple(sorted(g for g, _ in locked.builds)),
                      locked.backend_not_asked, tuple(skipped))


def merge_parts(loaded: LoadedConfig, set_name: str, parts: Mapping[str, TargetPart],
                targets: Mapping[str, Target], input_hash: str) -> Lockfile:
    """The lockfile of the set's targets that ``parts`` holds (every target of
    the set: its lockfile; one: that target's shard), in mirror.yaml's order:
    one entry per (name, version), for each target the groups it is in and,
    per group, the condition (marker text) under which it is needed; the
    exceptions used are those of every part. No network."""
    config = loaded.config
    set_targets = [t for t in config.set_targets(set_name) if t in parts]
    acc: dict[tuple[NormalizedName, Version], _InSet] = {}
    for target_name in set_targets:
        for entry in parts[target_name].entries:
            merged = acc.setdefault((entry.name, entry.version),
                                    _InSet(entry, {}, {}, {}, set()))
            merged.targets[target_name] = entry.conditions
            merged.files.update((f.filename, f) for f in entry.files)
            merged.why[target_name] = entry.why
            merged.deps.update(entry.dependencies)

    build_groups = sorted({g for part in parts.values() for g in part.build_groups})
    packages = []
    for (name, version), merged in sorted(acc.items()):
        first = merged.first
        all_targets = sorted(merged.targets, key=set_targets.index)
        clauses = {t: _group_clause(merged.targets[t], bool(build_groups)) for t in all_targets}
        marker = _package_marker(all_targets, clauses, set_targets, targets)
        files = sorted(merged.files.values())
        wheels = tuple(f for f in files if f.is_wheel)
        sdists = [f for f in files if not f.is_wheel]
        in_groups = {g for groups in merged.targets.values() for g in groups}
        packages.append(LockedPackage(
            name=name, version=version, targets=tuple(all_targets), index=first.index,
            wheels=wheels, sdist=sdists[0] if sdists else None, marker=marker,
            requires_python=first.requires_python,
            dependencies=tuple(sorted(merged.deps)),
            why=dict(sorted(merged.why.items())),
            build_only=RUNTIME_GROUP not in in_groups,
            groups=tuple(sorted(in_groups, key=lambda g: (g != RUNTIME_GROUP, g)))
            if build_groups else (),
            yanked=first.yanked,
        ))
    locked_targets = tuple(
        LockedTarget(name=t, python=targets[t].python, implementation=targets[t].implementation,
                     platforms=targets[t].platforms, marker=targets[t].environment_marker())
        for t in set_targets)
    not_asked = {t: part.backend_not_asked for t, part in parts.items()
                 if part.backend_not_asked}
    skipped = sorted((t, *row) for t, part in parts.items() for row in part.skipped)
    return Lockfile(set_name=set_name, requirements=tuple(config.sets[set_name].requirements),
                    targets=locked_targets, packages=tuple(packages),
                    input_hash=input_hash, build_groups=tuple(build_groups),
                    backend_not_asked=not_asked,
                    exceptions_used=_union(p.exceptions_used for p in parts.values()),
                    policy_findings=_union(p.policy_findings for p in parts.values()),
                    skipped_builds=tuple({"target": t, "package": n, "version": v, "reason": r}
                                         for t, n, v, r in skipped))


def _union(records: Iterable[Sequence[Mapping[str, str]]]) -> tuple[Mapping[str, str], ...]:
    """The ``exceptions-used`` (or ``policy-findings``) records of several parts,
    de-duplicated and sorted as :func:`~lockmirror.resolve.policy.policy_records` does."""
    unique = {tuple(sorted(r.items())): r for part in records for r in part}
    return tuple(unique[key] for key in sorted(unique))


def skipped_notes(per_target: Mapping[str, TargetLock]) -> tuple[str, ...]:
    """One line per candidate passed over for a failed build, with its error (for output)."""
    return tuple(sorted({f"skipped {name} {version} on {t}: {error.message}"
                         for t, tl in per_target.items() for _, r in tl.groups()
                         for (name, version), error in r.skipped.items()}))


def _either(known: Mapping[str, str | None], group: str, condition: str | None) -> str | None:
    """A package needed in one group under two conditions: needed under either."""
    if group not in known:
        return condition
    previous = known[group]
    if previous is None or condition is None:
        return None
    return previous if previous == condition else f"({previous}) or ({condition})"


def _group_clause(groups: Mapping[str, str | None], use_groups: bool) -> str | None:
    """The marker text (without the target's) under which a package is active
    on one target: in any of its groups, each under its condition."""
    if not use_groups:
        return groups[RUNTIME_GROUP]  # no sdists: everything is runtime
    parts = []
    for group in sorted(groups, key=lambda g: (g != RUNTIME_GROUP, g)):
        selected = f"'{group}' in dependency_groups"
        condition = groups[group]
        parts.append(selected if condition is None else f"{selected} and ({condition})")
    return parts[0] if len(parts) == 1 else " or ".join(f"({p})" for p in parts)


def _package_marker(package_targets: Sequence[str], conditions: Mapping[str, str | None],
                    set_targets: Sequence[str], targets: Mapping[str, Target]) -> str | None:
    if list(package_targets) == list(set_targets) and all(c is None for c in conditions.values()):
        return None
    if list(package_targets) == list(set_targets) and len(set(conditions.values())) == 1:
        return str(Marker(next(iter(conditions.values()))))  # type: ignore[arg-type]
    parts = []
    for name in package_targets:
        env = targets[name].environment_marker()
        condition = conditions[name]
        parts.append(f"({env})" if condition is None else f"({env} and ({condition}))")
    return str(Marker(" or ".join(parts)))


def check_one_entry_per_name(lockfile: Lockfile, targets: Mapping[str, Target]) -> None:
    """PEP 751: an installer must fail when two entries of one name are active
    in its environment. Raise LockmirrorError if, on any patch release of
    any target, with the default groups or any one build group selected, a
    name has two active entries (lockmirror would write a file installers
    refuse)."""
    by_name: dict[str, list[LockedPackage]] = defaultdict(list)
    for package in lockfile.packages:
        by_name[package.name].append(package)
    repeated = {n: ps for n, ps in by_name.items() if len(ps) > 1}
    if not repeated:
        return
    markers = {id(p): Marker(p.marker) for ps in repeated.values() for p in ps if p.marker}
    text = " ".join(p.marker or "" for ps in repeated.values() for p in ps)
    for locked in lockfile.targets:
        target = targets.get(locked.name)
        if target is None:
            continue
        for full, groups, env in lock_environments(target, text, lockfile.build_groups):
            for name, entries in sorted(repeated.items()):
                active = [p for p in entries
                          if id(p) not in markers or markers[id(p)].evaluate(env, "lock_file")]
                if len(active) > 1:
                    raise _two_active(lockfile.set_name, name, active, locked.name, full, groups)


def lock_environments(target: Target, marker_text: str, build_groups: Sequence[str]
                      ) -> Iterator[tuple[str, frozenset[str], dict[str, Any]]]:
    """(patch release, groups, environment) of each installer environment of
    ``target`` that markers like ``marker_text`` can tell apart: every patch
    release only when the text names one (else the first stands for all), each
    group selection (the default groups, or one build group) only when it names
    ``dependency_groups``."""
    from ..targets import versions_in

    selections = [frozenset({RUNTIME_GROUP})] if build_groups else [frozenset()]
    if "dependency_groups" in marker_text:
        selections += [frozenset({g}) for g in build_groups]
    if "python_full_version" in marker_text or "implementation_version" in marker_text:
        patches = target.patch_versions(versions_in(marker_text))
    else:
        patches = target.patch_versions()[:1]
    for full in patches:
        base = target.environment(full)
        for groups in selections:
            yield full, groups, {**base, "extras": frozenset(), "dependency_groups": groups}


def _two_active(set_name: str, name: str, active: Sequence[LockedPackage], target: str,
                full_version: str, groups: AbstractSet[str]) -> LockmirrorError:
    selected = f" with group {', '.join(sorted(groups))}" if groups else ""
    return LockmirrorError(
        f"the lockfile would have {len(active)} active entries of {name} "
        f"({', '.join(str(p.version) for p in active)}) on target {target} "
        f"(Python {full_version}){selected}; installers refuse such a file, so it was not "
        "written", where=f"set '{set_name}'",
        hint=f"pin one version of {name} in the set; if the targets overlap, give them "
        "separate sets")


def entry_problems(lockfile: Lockfile) -> list[tuple[LockedPackage, str]]:
    """Entries whose marker disagrees with the targets the lockfile records for
    them (``[packages.tool.lockmirror] targets``, what ``diff`` and the index
    read): true on a target the entry is not locked for, so an installer there
    would take it, or false on every Python of one it is locked for, so an
    installer there would leave it out; a build-only entry installers take by
    default (its marker names no build group); an entry locked for no target at
    all; a second entry of one release. ``lock`` never writes one (:func:`merge_parts`):
    it is a hand edit. No network; the lockfile alone (its own target records).
    (entry, what is wrong)."""
    from packaging.markers import InvalidMarker, UndefinedComparison, UndefinedEnvironmentName

    from ..targets import Target

    targets = {t.name: Target.of_locked(t) for t in lockfile.targets}
    problems: list[tuple[LockedPackage, str]] = []
    seen: set[tuple[str, Version]] = set()
    for package in lockfile.packages:
        if package.key in seen:
            problems.append((package, "a second entry of this release"))
        seen.add(package.key)
        if not package.targets:
            problems.append((package, "locked for no target, yet an entry installers read"))
            continue
        try:
            marker = Marker(package.marker) if package.marker else None
            active = {name: marker is None or any(
                marker.evaluate(env, "lock_file") for _, _, env in
                lock_environments(target, package.marker or "", lockfile.build_groups))
                for name, target in targets.items()}
        except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName) as error:
            problems.append((package, f"its marker cannot be evaluated ({error})"))
            continue
        if package.build_only and lockfile.build_groups and (marker is None or any(
                marker.evaluate(env, "lock_file")
                for name in package.targets if name in targets
                for _, groups, env in lock_environments(targets[name], package.marker or "",
                                                        lockfile.build_groups)
                if RUNTIME_GROUP in groups)):
            problems.append((package, "locked only to build sdists, yet its marker lets "
                                      "installers take it by default"))
        for name, holds in active.items():
            if holds and name not in package.targets:
                problems.append((package, f"its marker is true on target {name}, which it is "
                                          "not locked for (installers there would take it)"))
            elif not holds and name in package.targets:
                problems.append((package, f"its marker is false on every Python of target "
                                          f"{name}, which it is locked for (installers there "
                                          "would leave it out)"))
    return problems
