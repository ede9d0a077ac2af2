"""Audit against the warnings the lock recorded (``policy-findings``).

A real lock (the fixture index, ``vulnerabilities: warn``) records its warnings;
audit then says nothing more while the world agrees, and notes a warning the
lock did not record (an advisory published since) and a recorded one that holds
no more (an advisory withdrawn), which the lockfile and its SBOM keep until the
next lock. A record audit cannot judge (offline, no advisory source) is not
called gone.
"""

from __future__ import annotations

from pathlib import Path

from fixtureindex import FixtureIndex
from packaging.utils import canonicalize_name
from packaging.version import Version
from test_sbom_findings import NOW, write_mirror

from lockmirror.config import load_config
from lockmirror.formats.lockfile import LockedPackage, Lockfile
from lockmirror.stages.audit import AuditReport, AuditRow, audit_mirror
from lockmirror.stages.audit_recorded import recorded_notes
from lockmirror.stages.audit_render import render_json, render_text
from lockmirror.stages.lock import lock_sets

NEW = "warnings the lockfiles do not record (new since the lock): "
GONE = ("recorded by the lock, no longer found (locking again drops them from the lockfile "
        "and its SBOM): ")


def lock_notes(report: AuditReport) -> list[str]:
    return [n for n in report.notes if n.startswith((NEW, GONE))]


def test_audit_notes_warnings_new_since_the_lock_and_recorded_ones_gone(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    path = write_mirror(tmp_path, fixture_index)
    fixture_index.add_vulnerability("copyleft", "1.0", "PYSEC-2024-0077", summary="withdrawn")
    (locked,) = lock_sets(load_config(path), now=NOW)
    assert ("copyleft==1.0", "PYSEC-2024-0077") in {
        (r["release"], r.get("advisory")) for r in locked.lockfile.policy_findings}

    loaded = load_config(path)
    agreed = audit_mirror(loaded, now=NOW)
    assert [r.level for r in agreed.rows if r.version] == ["warn"] * 5  # the 5 recorded
    assert lock_notes(agreed) == []

    fixture_index.reset()  # the advisory on copyleft is withdrawn
    fixture_index.add_vulnerability("vulny", "1.0", "PYSEC-2024-0099", summary="new issue")
    later = audit_mirror(loaded, now=NOW)
    assert lock_notes(later) == [
        NEW + "vulny==1.0 vulnerabilities PYSEC-2024-0099 (core)",
        GONE + "copyleft==1.0 vulnerabilities PYSEC-2024-0077 (core)"]
    assert f"note: {NEW}vulny==1.0" in render_text(later)
    assert GONE in render_json(later)

    # offline, no advisory source tells about any release: nothing is called gone
    offline = audit_mirror(loaded, now=NOW, offline=True)
    assert lock_notes(offline) == []


def test_a_record_matches_a_finding_by_any_of_its_advisory_ids() -> None:
    package = LockedPackage(name=canonicalize_name("vulny"), version=Version("1.0"),
                            targets=("linux",), index="")
    lockfile = Lockfile("core", ("vulny==1.0",), (), (package,), "0" * 64, policy_findings=(
        {"release": "vulny==1.0", "rule": "vulnerabilities", "message": "m",
         "advisory": "GHSA-fix7-ture-0001"},))
    row = AuditRow("vulny", "1.0", "vulnerabilities", "warn", "m", ("core",),
                   advisory="PYSEC-2023-0001", aliases=("GHSA-fix7-ture-0001",))
    assert recorded_notes([lockfile], [row], unchecked=(), no_license=()) == []
    assert recorded_notes([lockfile], [], unchecked=("vulny==1.0",), no_license=()) == []
    assert recorded_notes([lockfile], [], unchecked=(), no_license=()) == [
        GONE + "vulny==1.0 vulnerabilities GHSA-fix7-ture-0001 (core)"]


def test_a_retained_revisions_label_is_not_compared_with_the_current_records() -> None:
    """A release the current lock and a retained revision both lock is one row named
    by both (``core``, ``core@1234abcd``): the revision's label is no set of these
    lockfiles, so its warning was called new although the lock records it."""
    package = LockedPackage(name=canonicalize_name("yanky"), version=Version("1.0"),
                            targets=("linux",), index="")
    lockfile = Lockfile("core", ("yanky==1.0",), (), (package,), "0" * 64, policy_findings=(
        {"release": "yanky==1.0", "rule": "yanked", "message": "m"},))
    row = AuditRow("yanky", "1.0", "yanked", "warn", "m", ("core", "core@1234abcd"))
    assert recorded_notes([lockfile], [row], unchecked=(), no_license=()) == []
    only_kept = AuditRow("yanky", "1.0", "yanked", "warn", "m", ("core@1234abcd",))
    assert recorded_notes([lockfile], [only_kept], unchecked=(), no_license=()) == [
        GONE + "yanky==1.0 yanked (core)"]
