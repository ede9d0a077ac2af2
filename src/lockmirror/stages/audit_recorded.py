"""The audit's findings against the warnings the lock recorded.

A lock writes each warn-level finding it allowed into the lockfile
(``[[tool.lockmirror.policy-findings]]``: ``release``, ``rule``, ``message``
and, for an advisory, its id); the SBOM carries them. :func:`recorded_notes`
says where today's audit and those records part: a warning the lock did not
record (new since the lock: an advisory published, a release yanked), and a
recorded finding that holds no more (an advisory withdrawn or no longer
affecting the release, a policy relaxed), which stays in the lockfile and its
SBOM until the set is locked again. A record is matched by set, release, rule
and advisory (its id or one of its aliases), not by message (an advisory's
"fixed in" grows). A record audit could not judge (no source told about the
release's advisories, no metadata gave its license) is not called gone.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING

from ..fsutil import first_of

if TYPE_CHECKING:
    from ..formats.lockfile import Lockfile
    from .audit_row import AuditRow

_SHOWN = 5  # entries a note names before "and N more"

__all__ = ["recorded_notes"]


def recorded_notes(lockfiles: Sequence[Lockfile], rows: Iterable[AuditRow], *,
                   unchecked: Collection[str], no_license: Collection[str]) -> list[str]:
    """The report's notes on the lockfiles' recorded warnings (none when audit
    agrees with them). ``rows``: the audit's findings, with their sets (a label
    no lockfile here names, such as a retained revision's ``core@1a2b3c4d``,
    is not compared: that revision's records are not these);
    ``unchecked``/``no_license``: the releases (``name==version``) whose
    advisories/license audit could not judge."""
    found: set[tuple[str, str, str, str]] = set()  # (set, release, rule, advisory or alias)
    new: list[str] = []
    recorded = {(lockfile.set_name, str(r.get("release")), str(r.get("rule")),
                 str(r.get("advisory", ""))) for lockfile in lockfiles
                for r in lockfile.policy_findings}
    current = {lockfile.set_name for lockfile in lockfiles}
    for row in rows:
        if not row.version:  # about no one release (an unchecked source)
            continue
        names = {row.advisory, *row.aliases} if row.advisory else {""}
        found.update((s, row.release, row.rule, name) for s in row.sets for name in names)
        missing = [s for s in row.sets if s in current
                   and not any((s, row.release, row.rule, n) in recorded for n in names)]
        if row.level == "warn" and missing:
            new.append(f"{_entry(row.release, row.rule, row.advisory)} ({', '.join(missing)})")
    unjudged = {"vulnerabilities": unchecked, "licenses": no_license}
    gone = sorted(f"{_entry(release, rule, advisory)} ({set_name})"
                  for set_name, release, rule, advisory in recorded - found
                  if release not in unjudged.get(rule, ()))
    notes = []
    if new:
        notes.append("warnings the lockfiles do not record (new since the lock): "
                     + first_of(sorted(new), _SHOWN, separator="; "))
    if gone:
        notes.append("recorded by the lock, no longer found (locking again drops them from "
                     "the lockfile and its SBOM): " + first_of(gone, _SHOWN, separator="; "))
    return notes


def _entry(release: str, rule: str, advisory: str) -> str:
    return f"{release} {rule}{' ' + advisory if advisory else ''}"
