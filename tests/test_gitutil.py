"""The one git helper (``gitutil.run_git``) and what its callers make of its failures."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lockmirror import cli
from lockmirror.errors import LockmirrorError
from lockmirror.gitutil import run_git

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    return root


def test_output_of_a_command_run_in_the_directory(repo: Path) -> None:
    top = run_git(repo, "rev-parse", "--show-toplevel")
    assert Path(top.strip()).resolve() == repo.resolve()


def test_never_prompts_and_takes_no_optional_locks(repo: Path) -> None:
    printed = run_git(repo, "-c", "alias.env=!printenv GIT_TERMINAL_PROMPT GIT_OPTIONAL_LOCKS",
                      "env")
    assert printed.split() == ["0", "0"]


def test_no_repository_is_a_clear_error_or_none(tmp_path: Path) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    with pytest.raises(LockmirrorError, match=r"^git rev-parse --show-toplevel failed in "
                                              r".*plain: fatal: not a git repository"):
        run_git(outside, "rev-parse", "--show-toplevel")
    with pytest.raises(LockmirrorError, match=r"^plain is no repository \(do this\)$"):
        run_git(outside, "rev-parse", failed="plain is no repository", hint="do this")
    assert run_git(outside, "rev-parse", "--show-toplevel", optional=True) is None
    assert run_git(tmp_path / "missing", "status", optional=True) is None


def test_git_missing_is_a_clear_error_or_none(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    with pytest.raises(LockmirrorError, match=r"^git is not installed \(install it\)$"):
        run_git(tmp_path, "status", failed="not shown when git is missing", hint="install it")
    assert run_git(tmp_path, "status", optional=True) is None


def test_diff_of_revisions_without_git_is_one_line(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert cli.main(["diff", "main"]) == 1
    assert capsys.readouterr().err == (
        "lockmirror: error: git is not installed "
        "(give two lockfiles or two directories to compare)\n")
