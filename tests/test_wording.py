"""Wording an outside tester found wrong: counts of one in the singular."""

from __future__ import annotations

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
