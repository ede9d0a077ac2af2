"""Retention: earlier lock revisions read from git history stay in the window.

A real git repository in a temporary directory, with lockfile revisions
committed at chosen times (GIT_COMMITTER_DATE).
"""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from packaging.version import Version

from lockmirror.formats.lockfile import LockedFile, LockedPackage, LockedTarget, Lockfile
from lockmirror.stages.retention import retained_locks

TARGET = LockedTarget("host", "3.11", "cp", ("manylinux_2_28_x86_64",),
                      'python_version == "3.11"')
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def lockfile(version: str) -> Lockfile:
    wheel = LockedFile(filename=f"requests-{version}-py3-none-any.whl",
                       url=f"https://files.example/requests-{version}-py3-none-any.whl",
                       size=10, sha256=f"{int(version.replace('.', '')):064x}")
    package = LockedPackage(name="requests", version=Version(version),  # type: ignore[arg-type]
                            targets=("host",), index="https://pypi.org/simple/", wheels=(wheel,))
    return Lockfile(set_name="core", requirements=("requests",), targets=(TARGET,),
                    packages=(package,), input_hash=version)


def git(repo: Path, *args: str, when: datetime | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    if when is not None:
        env["GIT_COMMITTER_DATE"] = env["GIT_AUTHOR_DATE"] = when.isoformat()
    return subprocess.run(["git", "-C", str(repo), *args], check=True, env=env,
                          capture_output=True, text=True).stdout


def commit_lock(repo: Path, version: str, when: datetime) -> str:
    path = repo / "lockfiles" / "pylock.core.toml"
    lockfile(version).write(path)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"lock {version}", when=when)
    return git(repo, "rev-parse", "HEAD").strip()


def repository(tmp_path: Path) -> tuple[Path, list[str]]:
    repo = tmp_path / "repo"
    (repo / "lockfiles").mkdir(parents=True)
    git(repo, "init", "-q")
    commits = [commit_lock(repo, v, NOW - timedelta(days=d))
               for v, d in (("2.30.0", 30), ("2.31.0", 10), ("2.32.3", 2))]
    return repo, commits


def versions(retention: object) -> list[str]:
    return [str(p.version) for k in retention.kept for p in k.lockfile.packages]  # type: ignore[attr-defined]


def test_the_previous_lock_is_kept_and_the_third_dropped(tmp_path: Path) -> None:
    repo, commits = repository(tmp_path)
    path = repo / "lockfiles" / "pylock.core.toml"
    retention = retained_locks([("core", path)], lock_revisions=2, days=0, now=NOW)
    assert versions(retention) == ["2.31.0"]
    kept = retention.kept[0]
    assert kept.commit == commits[1] and kept.reason == "the previous lock"
    assert kept.superseded == (NOW - timedelta(days=2)).replace(microsecond=0)
    assert kept.label == f"core@{commits[1][:8]}"
    assert versions(retained_locks([("core", path)], lock_revisions=3, days=0, now=NOW)) == [
        "2.31.0", "2.30.0"]
    assert versions(retained_locks([("core", path)], lock_revisions=1, days=0, now=NOW)) == []


def test_days_keep_a_revision_superseded_within_the_window(tmp_path: Path) -> None:
    repo, _ = repository(tmp_path)
    path = repo / "lockfiles" / "pylock.core.toml"
    # 2.30.0 was superseded 10 days ago (when 2.31.0 was committed)
    assert versions(retained_locks([("core", path)], lock_revisions=2, days=9, now=NOW)) == [
        "2.31.0"]
    retention = retained_locks([("core", path)], lock_revisions=2, days=11, now=NOW)
    assert versions(retention) == ["2.31.0", "2.30.0"]
    assert retention.kept[1].reason.startswith("superseded 10 days ago, kept until 2026-12-07")


def test_an_uncommitted_lock_makes_the_newest_commit_the_previous_lock(tmp_path: Path) -> None:
    repo, commits = repository(tmp_path)
    path = repo / "lockfiles" / "pylock.core.toml"
    lockfile("2.33.0").write(path)  # locked, not yet committed
    retention = retained_locks([("core", path)], lock_revisions=2, days=0, now=NOW)
    assert versions(retention) == ["2.32.3"] and retention.kept[0].commit == commits[2]


def test_without_git_history_only_the_current_lock_is_kept_and_said(tmp_path: Path) -> None:
    path = tmp_path / "pylock.core.toml"
    lockfile("2.32.3").write(path)
    retention = retained_locks([("core", path)], lock_revisions=2, days=30, now=NOW)
    assert retention.kept == ()
    assert retention.notes == (f"{path}: no git history, so only the current lock of set "
                               "'core' is kept (retention needs the lockfiles committed)",)


MIRROR = """\
version: 1
sources:
  - {name: pypi, url: "https://pypi.org/simple/", files_url: ["https://files.example/"]}
targets:
  host: {python: "3.11", platforms: [manylinux_2_28_x86_64]}
sets:
  core: {requirements: [requests]}
retention: {lock_revisions: 2, max_size: "%s", over_size: %s}
"""


def test_du_shows_sets_targets_and_the_retained_revision_and_the_budget(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lockmirror.cli import main

    repo, commits = repository(tmp_path)
    (repo / "mirror.yaml").write_text(MIRROR % ("1GiB", "warn"))
    assert main(["du", "--config", str(repo / "mirror.yaml")]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "      10 B       1 files  core",
        "      10 B       1 files    core / host",
        f"      10 B       1 files    core + core@{commits[1][:8]} (the previous lock)",
        "      20 B       2 files  total (each file once)",
        "largest releases: requests 2.31.0 10 B, requests 2.32.3 10 B",
    ]
    assert err == ""
    (repo / "mirror.yaml").write_text(MIRROR % ("15", "warn"))
    assert main(["du", "--config", str(repo / "mirror.yaml")]) == 0
    assert capsys.readouterr().err == (
        "du: warning: the mirror would hold 20 B, over retention.max_size 15 B (largest "
        "sets: core 10 B; largest releases: requests 2.31.0 10 B, requests 2.32.3 10 B)\n")
    (repo / "mirror.yaml").write_text(MIRROR % ("15", "fail"))
    assert main(["du", "--config", str(repo / "mirror.yaml")]) == 1
    assert capsys.readouterr().err.startswith("du: error: the mirror would hold 20 B")
