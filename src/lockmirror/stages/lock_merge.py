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
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING

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


def merge_lockfile(loaded: LoadedConfig, set_name: str, per_target: Mapping[str, TargetLock],
                   targets: Mapping[str, Target], client: IndexClient,
                   input_hash: str) -> Lockfile:
    """The lockfile of a set from its targets' resolutions: one entry per
    (name, version), for each target the groups it is in and, per group,
    the condition (marker text) under which it is needed."""
    config = loaded.config
    set_targets = config.set_targets(set_name)
    source_urls = {s.name: s.url for s in client.sources}  # without any userinfo

    @dataclass
    class Acc:
        candidate: Candidate
        targets: dict[str, dict[str, str | None]]  # target -> group -> condition
        files: dict[str, LockedFile]
        why: dict[str, set[str]]
        deps: set[str]

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

    acc: dict[tuple[NormalizedName, Version], Acc] = {}
    for target_name in set_targets:
        for group, resolution in per_target[target_name].groups():
            for name, candidate in resolution.candidates.items():
                key = (name, candidate.version)
                entry = acc.get(key)
                if entry is None:
                    entry = acc[key] = Acc(candidate, {}, {}, defaultdict(set), set())
                groups = entry.targets.setdefault(target_name, {})
                groups[group] = _either(groups, group, resolution.conditions.get(name))
                best = details[candidate.best.url]
                entry.files[best.filename] = _locked_file(best)
                entry.why[target_name].update(resolution.parents.get(name, ()))
                entry.deps.update(resolution.edges.get(name, ()))

    build_groups = sorted({g for tl in per_target.values() for g, _ in tl.builds})
    packages = []
    for (name, version), entry in sorted(acc.items()):
        candidate = entry.candidate
        all_targets = sorted(entry.targets, key=set_targets.index)
        clauses = {t: _group_clause(entry.targets[t], bool(build_groups)) for t in all_targets}
        marker = _package_marker(all_targets, clauses, set_targets, targets)
        files = sorted(entry.files.values())
        wheels = tuple(f for f in files if f.is_wheel)
        sdists = [f for f in files if not f.is_wheel]
        source = next((f.source for f in candidate.files if f.source), None)
        in_groups = {g for groups in entry.targets.values() for g in groups}
        packages.append(LockedPackage(
            name=name, version=version, targets=tuple(all_targets),
            index=source_urls.get(source or "", source or ""),
            wheels=wheels, sdist=sdists[0] if sdists else None, marker=marker,
            requires_python=candidate.requires_python,
            dependencies=tuple(sorted(entry.deps)),
            why={t: tuple(sorted(v)) for t, v in sorted(entry.why.items())},
            build_only=RUNTIME_GROUP not in in_groups,
            groups=tuple(sorted(in_groups, key=lambda g: (g != RUNTIME_GROUP, g)))
            if build_groups else (),
            yanked=(candidate.yanked_reason or "") if candidate.yanked else None,
        ))
    locked_targets = tuple(
        LockedTarget(name=t, python=targets[t].python, implementation=targets[t].implementation,
                     platforms=targets[t].platforms, marker=targets[t].environment_marker())
        for t in set_targets)
    not_asked = {t: tl.backend_not_asked for t, tl in per_target.items() if tl.backend_not_asked}
    skipped = sorted({(t, name, version, f"{error.filename}: {error.summary}")
                      for t, tl in per_target.items() for _, r in tl.groups()
                      for (name, version), error in r.skipped.items()})
    return Lockfile(set_name=set_name, requirements=tuple(config.sets[set_name].requirements),
                    targets=locked_targets, packages=tuple(packages),
                    input_hash=input_hash, build_groups=tuple(build_groups),
                    backend_not_asked=not_asked,
                    skipped_builds=tuple({"target": t, "package": n, "version": v, "reason": r}
                                         for t, n, v, r in skipped))


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
    from ..targets import versions_in

    by_name: dict[str, list[LockedPackage]] = defaultdict(list)
    for package in lockfile.packages:
        by_name[package.name].append(package)
    repeated = {n: ps for n, ps in by_name.items() if len(ps) > 1}
    if not repeated:
        return
    markers = {id(p): Marker(p.marker) for ps in repeated.values() for p in ps if p.marker}
    hints = versions_in(" ".join(p.marker or "" for ps in repeated.values() for p in ps))
    selections: list[frozenset[str]] = (
        [frozenset({RUNTIME_GROUP})] if lockfile.build_groups else [frozenset()])
    selections += [frozenset({g}) for g in lockfile.build_groups]
    for locked in lockfile.targets:
        target = targets.get(locked.name)
        if target is None:
            continue
        for full in target.patch_versions(hints):
            for groups in selections:
                env: dict[str, str | AbstractSet[str]] = {
                    **target.environment(full), "extras": frozenset(), "dependency_groups": groups}
                for name, entries in sorted(repeated.items()):
                    active = [p for p in entries
                              if id(p) not in markers or markers[id(p)].evaluate(env, "lock_file")]
                    if len(active) > 1:
                        raise _two_active(lockfile.set_name, name, active, locked.name, full,
                                          groups)


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
