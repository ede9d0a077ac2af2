"""The audit's findings against the quarantine list: what is already out of the index.

``audit --quarantine`` takes a denied release out of the index
(:mod:`lockmirror.stages.quarantine`); it cannot move a lock. So
:func:`quarantine_rows` tells three cases apart, by what the audited lockfiles
lock now (``locked_now``):

- a release on the list that only earlier lock revisions name (retention keeps
  them; no lock and no ``bump`` can move them) is handled: the mirror serves it
  no more, so its rows get the level ``quarantined``, which fails no audit;
- a release on the list that a current lock pins stays denied (installs of that
  lock fail until a new lock moves it), and a note says so and what moves it;
- a denied release not on the list that only earlier lock revisions name stays
  denied (the mirror serves it), and a note says that quarantine is the remedy.

Rows about the policy itself (an expired exception) and waived rows are left as
they are.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from ..fsutil import first_of
from .audit_row import AuditRow

if TYPE_CHECKING:
    from packaging.version import Version

    from ..formats.lockfile import Lockfile

_SHOWN = 5  # releases a note names before "and N more"

__all__ = ["BUILD_SIDE_REMEDY", "FAR_SIDE_REMEDY", "quarantine_rows"]


BUILD_SIDE_REMEDY = "run `lockmirror audit --quarantine` to take them out of the index"
FAR_SIDE_REMEDY = ("on the build side, `lockmirror audit --quarantine` and a refresh bundle "
                   "(`lockmirror bundle --advisories-only`) take them out of this mirror")


def quarantine_rows(rows: Collection[AuditRow], lockfiles: Iterable[Lockfile],
                    quarantined: Collection[tuple[str, Version]],
                    remedy: str = BUILD_SIDE_REMEDY,
                    ) -> tuple[tuple[AuditRow, ...], tuple[str, ...]]:
    """An audit's ``rows``, those on the releases ``quarantined`` (the list's keys:
    normalized name, version) that none of the current ``lockfiles`` locks now
    at the level ``quarantined``, sorted; and a note for each case the module
    docstring names (a denied kept release: what takes it out, ``remedy``)."""
    listed = {(str(name), str(version)) for name, version in quarantined}
    # what the current lockfiles lock (names are normalized), not only a kept revision
    locked_now = {(p.name, str(p.version)) for lf in lockfiles for p in lf.packages}
    handled: dict[str, set[str]] = {}  # "name==version" -> the labels naming it
    pinned: dict[str, set[str]] = {}
    to_quarantine: dict[str, set[str]] = {}
    kept = []
    for row in rows:
        release = (row.package, row.version)
        if not row.version or row.rule == "exceptions" or row.level == "waived":
            pass
        elif release in listed and release not in locked_now:
            handled.setdefault(row.release, set()).update(row.sets)
            row = replace(row, level="quarantined")
        elif row.level == "deny" and release in listed:
            pinned.setdefault(row.release, set()).update(row.sets)
        elif row.level == "deny" and release not in locked_now:
            to_quarantine.setdefault(row.release, set()).update(row.sets)
        kept.append(row)
    notes = []
    if handled:
        notes.append(f"quarantined, so out of the index and failing no audit (only earlier "
                     f"lock revisions retention keeps name them): {_named(handled)}")
    if pinned:
        notes.append(f"quarantined (out of the index) but still pinned by the current lock, "
                     f"so still denied: {_named(pinned)}; installs of that lock fail until a "
                     f"new lock moves them: run `lockmirror bump --security`")
    if to_quarantine:
        notes.append(f"denied and served for earlier lock revisions retention keeps, which "
                     f"no lock or `bump` can move: {_named(to_quarantine)}; {remedy}")
    return tuple(sorted(kept, key=AuditRow.sort_key)), tuple(notes)


def _named(releases: dict[str, set[str]]) -> str:
    return first_of([f"{release} ({', '.join(sorted(labels))})"
                     for release, labels in sorted(releases.items())], _SHOWN)
