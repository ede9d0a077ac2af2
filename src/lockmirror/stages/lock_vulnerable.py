"""``lock --upgrade-vulnerable``: security fixes as the smallest move.

:func:`upgrade_vulnerable` finds the locked releases with deny-level advisory
findings (``vulnerabilities: deny``, not waived by an exception) as of
``now``, and re-locks their sets with every other pin kept and each
vulnerable package preferring the lowest release above it that has no
blocking finding and that its requirements, the target and the policy allow
(judged as ``outdated`` judges them). The resolver still has the last word:
if that release cannot be part of the set, it takes the next allowed one.

A release pinned with ``==`` in mirror.yaml is never moved behind the user's
back: the whole run stops before resolving anything, naming each such line
and the version to pin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from ..config import LoadedConfig
from ..errors import PolicyError
from ..formats.lockfile import LockedPackage
from ..resolve.policy import PolicyEngine
from ..resolve.requirement_check import pins_exactly
from .lock import LockResult, lock_sets
from .outdated import SetChecker, read_set_lockfile, requirement_lines

if TYPE_CHECKING:
    from ..net.index_client import IndexClient
    from ..resolve.advisories import AdvisoryDB


@dataclass(frozen=True)
class VulnerableRelease:
    """A locked release with deny-level advisories, and where it should go."""

    set_name: str
    package: NormalizedName
    locked: Version
    advisories: tuple[str, ...]  # advisory ids
    target: Version | None  # the lowest allowed release without them (None: none known)


@dataclass(frozen=True)
class VulnerableUpgrade:
    found: tuple[VulnerableRelease, ...]
    results: tuple[LockResult, ...]  # empty when nothing was vulnerable (nothing written)
    # releases no advisory source could tell about: not moved, and not clean either
    not_checked: tuple[str, ...] = ()

    @property
    def none_found(self) -> str:
        """What finding nothing means: never "clean" for releases nobody checked."""
        return (f"no {'checked' if self.not_checked else 'locked'} release has a deny-level "
                "advisory")

    def moves(self) -> list[tuple[str, NormalizedName, Version, tuple[Version, ...]]]:
        """(set, package, old version, new versions) for every release moved."""
        out = []
        for release in self.found:
            result = next(r for r in self.results if r.set_name == release.set_name)
            now = tuple(sorted({p.version for p in result.lockfile.packages
                                if p.name == release.package}))
            out.append((release.set_name, release.package, release.locked, now))
        return out


def upgrade_vulnerable(loaded: LoadedConfig, set_names: Sequence[str] | None = None, *,
                       now: datetime, client: IndexClient | None = None, jobs: int = 6,
                       advisories: AdvisoryDB | None = None,
                       all_or_nothing: bool = False) -> VulnerableUpgrade:
    """Move exactly the packages with deny-level advisories, each to its lowest fix.

    Reads the sets' lockfiles (LockmirrorError when one is missing), the
    project pages of their packages and the advisory sources; raises
    PolicyError, before resolving or writing anything, when a vulnerable
    release is pinned with ``==`` in mirror.yaml (one line per pin: its line
    and the version to pin). Writes only the sets that hold a vulnerable
    release; with none, writes nothing. Other errors, and ``all_or_nothing``,
    as :func:`lock_sets`.
    """
    from ..net.index_client import IndexClient
    from ..resolve.advisories import not_checked_notes, open_advisory_db

    config = loaded.config
    names = list(set_names or config.sets)
    if advisories is None and config.policy.advisory_sources:
        advisories = open_advisory_db(config.policy.advisory_sources, base_dir=loaded.root)
    if client is None:
        with IndexClient(config.sources_by_priority(),
                         cache_dir=loaded.cache_dir / "http") as own:
            return upgrade_vulnerable(loaded, names, now=now, client=own, jobs=jobs,
                                      advisories=advisories)
    lines = requirement_lines(loaded)
    targets = config.all_targets()
    found: list[VulnerableRelease] = []
    pinned: list[str] = []
    looked_up: set[tuple[str, Version]] = set()
    for name in loaded.chosen_sets(names):
        engine = PolicyEngine.for_set(config, name, now=now, advisories=advisories,
                                      where=loaded.path.name, allow_expired=True)
        checker = SetChecker(loaded, name, engine, client, lines, targets)
        for package in read_set_lockfile(loaded, name).packages:
            ids = tuple(f.advisory.id for f in engine.vulnerability_findings(
                package.name, package.version) if f.blocking and f.advisory is not None)
            if engine.policy.vulnerabilities != "ignore":
                looked_up.add(package.key)
            if not ids:
                continue
            pin = _pin_line(loaded, name, package.name, lines)
            target = _lowest_fix(checker, package, ignore="pinned" if pin else None)
            found.append(VulnerableRelease(name, package.name, package.version, ids, target))
            if pin is not None:
                to = f"pin {package.name}=={target}" if target else "no release is allowed yet"
                pinned.append(f"{loaded.path.name}:{pin[0]}: `{pin[1]}` pins {package.name} "
                              f"{package.version}, which has {', '.join(ids)}; {to}")
    if pinned:
        raise PolicyError("vulnerable releases are pinned in mirror.yaml; not moved:\n  "
                          + "\n  ".join(pinned),
                          hint="edit the pin (or add a policy exception with a reason), "
                               "then run `lockmirror lock`")
    notes = not_checked_notes(advisories, looked_up)
    if not found:
        return VulnerableUpgrade((), (), notes)
    prefer: dict[str, dict[NormalizedName, Version]] = {}
    for release in found:
        if release.target is not None:
            prefer.setdefault(release.set_name, {})[release.package] = release.target
    sets = sorted({r.set_name for r in found}, key=names.index)
    # the preference replaces the old pin for these packages only, in their own set
    # (``upgrade`` would free a name in every set); the vulnerable release itself is
    # excluded by the policy, so a package without a known fix moves to the newest allowed
    results = lock_sets(loaded, sets, client=client, now=now, jobs=jobs, prefer=prefer,
                        all_or_nothing=all_or_nothing)
    return VulnerableUpgrade(tuple(found), tuple(results), notes)


def _pin_line(loaded: LoadedConfig, set_name: str, package: NormalizedName,
              lines: dict[tuple[str, str], int]) -> tuple[int, str] | None:
    """(line, requirement) of the set's ``==`` requirement on ``package``, or None."""
    for text in loaded.config.sets[set_name].requirements:
        requirement = Requirement(text)
        if canonicalize_name(requirement.name) == package and pins_exactly(requirement):
            return lines.get((set_name, str(requirement)), 0), str(requirement)
    return None


def _lowest_fix(checker: SetChecker, package: LockedPackage, *,
                ignore: str | None) -> Version | None:
    """The lowest release above the locked one that every target of the package allows
    (reasons of kind ``ignore`` aside)."""
    releases = checker.releases(package.name)
    for version in sorted(v for v in releases if v > package.version and not v.is_prerelease):
        if all(not [r for r in checker.reasons(package, version, releases[version],
                                               checker.targets[t]) if r.kind != ignore]
               for t in package.targets if t in checker.targets):
            return version
    return None
