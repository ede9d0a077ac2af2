"""The releases an imported mirror serves for earlier lock revisions, for the far side's audit.

The build side audits the earlier lock revisions retention keeps serving from git
history (:func:`lockmirror.stages.audit.audit_mirror`); the far side has no
history, only the index. Its ``landing.json`` names every release the index
serves for such a revision (``kept_for``: ``kept for the previous lock
(core@1a2b3c4d), until the next lock``), so :func:`kept_revisions` rebuilds each
revision's served releases as a lockfile :func:`lockmirror.stages.audit.audit` takes
beside the imported ones: checked against the carried snapshot (which covers
them: :func:`lockmirror.pipeline.advisories`) under the set's policy, and named by
the revision's label. What landing.json cannot give (the revision's files, so
its sdists) is left to the build side's audit.
"""

from __future__ import annotations

import re
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

from ..formats.landing_page import LANDING_DATA, LandingData, reading_landing_data
from ..formats.lockfile import LockedPackage, Lockfile

__all__ = ["kept_revisions"]

_LABEL = re.compile(r"\(([^()\s]+@[0-9a-f]+)\)")  # "(core@1a2b3c4d)" in a kept_for note


def kept_revisions(mirror: Path) -> tuple[list[tuple[str, Lockfile]], str | None]:
    """(label, lockfile) of each earlier lock revision whose releases ``mirror``
    serves (quarantined ones left out: the index no longer serves them), from its
    ``landing.json``; and a note when it has none to read them from (an index
    older than landing.json), so that no served release passes unmentioned.
    LockmirrorError naming the file when it is not landing data."""
    path = mirror / LANDING_DATA
    if not path.is_file():
        return [], (f"releases kept for earlier lock revisions not audited: {path} is "
                    "missing (an index from before lockmirror wrote it); the build side's "
                    "audit checks them")
    with reading_landing_data(path):
        revisions = _served_for_revisions(LandingData.from_json(path.read_bytes()))
    return [(label, Lockfile(set_name=set_name, requirements=(), targets=(),
                             packages=tuple(packages), input_hash=""))
            for (set_name, label), packages in sorted(revisions.items())], None


def _served_for_revisions(landing: LandingData) -> dict[tuple[str, str], list[LockedPackage]]:
    """(set, revision label) -> the releases the index serves for that revision only."""
    revisions: dict[tuple[str, str], list[LockedPackage]] = {}
    for summary in landing.sets:
        for package in summary.packages:
            if package.kept_for and not package.quarantined:
                found = _LABEL.search(package.kept_for)
                label = found.group(1) if found else f"{summary.name}@earlier"
                revisions.setdefault((summary.name, label), []).append(LockedPackage(
                    name=canonicalize_name(package.name), version=Version(package.version),
                    targets=package.targets, index="", yanked=package.yanked))
    return revisions
