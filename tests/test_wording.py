"""Wording an outside tester found wrong: counts of one in the singular."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lockmirror.stages.audit import AuditReport
from lockmirror.stages.audit_render import render_text
from lockmirror.stages.audit_row import AuditRow

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_one_warning_one_set_one_release_in_the_audit_summary() -> None:
    row = AuditRow(package="alpha", version="1.0", rule="age", level="warn",
                   message="too new", sets=("core",))
    report = AuditReport(checked_at=NOW, sets=("core",), releases=1, rows=(row,), sources=())
    assert render_text(report).splitlines()[-1] == (
        "1 release in 1 set checked at 2026-12-06 12:00 UTC: 0 denied, 1 warning, 0 waived")


def test_validate_says_one_source_one_set_one_target(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from lockmirror.cli import main

    (tmp_path / "mirror.yaml").write_text(
        "version: 1\nsources:\n  - {name: pypi, url: 'https://pypi.org/simple/'}\n"
        "targets:\n  host: {python: '3.11', platforms: [manylinux_2_28_x86_64]}\n"
        "sets:\n  core: {requirements: [six]}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "mirror.yaml"]) == 0
    assert capsys.readouterr().out == "mirror.yaml: ok: 1 set, 1 target, 1 source\n"


def test_a_target_check_install_skips_names_python_and_platform_both() -> None:
    """Found by an outside tester: a musllinux aarch64 target for Python 3.12, skipped on
    a 3.11 build machine, said only `needs Python 3.12; this is 3.11`."""
    from packaging.tags import sys_tags

    from lockmirror.stages.install_runs import host_mismatch

    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    host = next(iter(sys_tags())).platform
    other = "musllinux_1_2_aarch64" if "aarch64" not in host else "musllinux_1_2_x86_64"
    newer = f"{sys.version_info[0]}.{sys.version_info[1] + 1}"
    assert host_mismatch(newer, "cp", (other,)) == (f"needs Python {newer} on {other}; "
                                                    f"this is Python {here} on {host}")
    # the same Python on another platform says the Python too: what the machine is
    assert host_mismatch(here, "cp", (other,)) == (f"needs Python {here} on {other}; "
                                                   f"this is Python {here} on {host}")
    assert host_mismatch(here, "cp", (host,)) is None


def test_lock_and_quarantine_say_one_target_one_release(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an outside tester: `lock` printed `... for 1 targets`, `audit --quarantine`
    `quarantine: 1 releases on the list`."""
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    from lockmirror.commands.lock import print_results
    from lockmirror.formats.lockfile import LockedTarget, Lockfile
    from lockmirror.formats.quarantine_list import QuarantinedRelease
    from lockmirror.stages.lock import LockResult
    from lockmirror.stages.quarantine import IndexChange, QuarantineResult, render_plan

    target = LockedTarget("host", "3.11", "cp", ("manylinux_2_28_x86_64",),
                          "python_version == '3.11'")
    lockfile = Lockfile("core", ("six",), (target,), (), "0" * 64)
    print_results([LockResult("core", tmp_path / "pylock.core.toml", lockfile, True)])
    assert capsys.readouterr().out == f"{tmp_path}/pylock.core.toml: 0 packages for 1 target " \
                                      "(written)\n"
    release = QuarantinedRelease(canonicalize_name("six"), Version("1.16.0"), NOW, ("X",))
    plan = render_plan(QuarantineResult(tmp_path / "quarantine.json", tmp_path / "index", (),
                                        (release,), IndexChange(), dry_run=True))
    assert "quarantine: 1 release on the list; taken out of the index now: none" in plan
