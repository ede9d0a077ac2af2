"""What a check-install run found (:class:`VerifyReport`), and the error its failures raise.

The error's hint names the likeliest cause for what was checked. First a release
the mirror quarantined: the index leaves it out (``audit --quarantine`` on the
build side, a refresh bundle on the far side) while the sets' lockfiles and
constraints keep pinning it, so its installs fail rather than drift to another
version. Which releases those are comes from the ``landing.json`` the index keeps
beside its landing page, which marks them (:func:`quarantined_locks`); where it
cannot be read, the hint says that a quarantine fails this way. Otherwise what a
local tree, a deployed mirror or an upload repository lacks, and how to mend it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import LockmirrorError, ResolutionError
from ..formats.landing_page import LandingData
from .install_runs import Check

__all__ = ["VerifyReport", "quarantined_locks"]

_RELOCK = ("re-lock the set to a fixed version on the build side (`lockmirror lock "
           "--upgrade-vulnerable`, then remove the release from quarantine.json), and import "
           "the bundle built after that on the far side")


@dataclass(frozen=True)
class VerifyReport:
    index_dir: Path
    index_urls: tuple[str, ...]
    checks: tuple[Check, ...]
    installers: tuple[str, ...] = ()  # "pip 23.0.1 (Debian 12 ...)" for each one asked for
    deployed: str | None = None  # the deployed mirror checked (--index-url), as printed
    upload_repository: bool = False  # it serves no lockfiles/ (pypiserver, Nexus)
    unavailable: tuple[str, ...] = ()  # installers whose copy could not be fetched
    # "name==version (set 'core')": what the failing sets lock that the mirror
    # quarantined (:func:`quarantined_locks`); None: not known (no landing.json to read)
    quarantined: tuple[str, ...] | None = ()

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok and not c.skipped)

    @property
    def skipped(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.skipped)

    @property
    def passed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.passed)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """``N passed, N failed, N skipped``."""
        return (f"{len(self.passed)} passed, {len(self.failures)} failed, "
                f"{len(self.skipped)} skipped")

    def raise_for_failures(self) -> None:
        """Raise ResolutionError naming every failed set/target/requirement, with
        the hint :meth:`hint` gives."""
        if not self.failures:
            return
        lines = [f.describe() for f in self.failures]
        raise ResolutionError(f"{len(lines)} closure check(s) failed for "
                              f"{self.deployed or self.index_dir}:\n  " + "\n  ".join(lines),
                              hint=self.hint())

    def hint(self) -> str:
        """What to do about the failures: a quarantine first, when it explains them."""
        if self.quarantined:
            return (f"the mirror quarantined {', '.join(self.quarantined)}: its index leaves "
                    "it out while the lockfiles and constraints keep pinning it, so installs "
                    f"fail rather than take another version; {_RELOCK}")
        hint = ("the index lacks what these requirements need, an installer cannot read it, "
                "or a lockfile installs more or less than the set needs; re-run `doit fetch` "
                "and `doit index`, or fix the lockfile")
        if self.deployed:
            hint = ("the deployed mirror lacks what these requirements need or its lockfiles "
                    "or constraints, or an installer cannot read it; import the mirror's "
                    "latest bundle into it again")
        if self.upload_repository:
            hint = ("the upload repository lacks what these requirements need (the releases "
                    "the directory's constraints pin), or an installer cannot read it; "
                    "publish the index to it again (`lockmirror publish`)")
        if self.quarantined is None:  # no landing.json to tell
            hint += ("; or the mirror quarantined a release these sets lock (its landing "
                     f"page marks it): then {_RELOCK}")
        return hint


def quarantined_locks(landing: bytes | None, sets: Iterable[str]) -> tuple[str, ...] | None:
    """``name==version (set 'core')`` for each release the current lockfile of one
    of ``sets`` locks and the index quarantined, as its ``landing.json`` (the bytes
    ``landing``) marks it, sorted; None when there is none or it does not read as
    one (then it is not known). No I/O."""
    if landing is None:
        return None
    try:
        data = LandingData.from_json(landing)
    except (LockmirrorError, ValueError, KeyError, TypeError, AttributeError):
        return None
    wanted = set(sets)
    return tuple(sorted(f"{package.name}=={package.version} (set '{summary.name}')"
                        for summary in data.sets if summary.name in wanted
                        for package in summary.packages
                        if package.quarantined and not package.kept_for))
