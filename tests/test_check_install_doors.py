"""``lockmirror check-install`` and ``doit check-install`` are one stage (issue 20).

In a project, on its ``paths.index``, the CLI works in ``.cache/verify/`` with the
installer copies doit uses and records the pass doit's up-to-date check reads;
outside one, a run's temporary directory carries its pid, so what a killed run
left is removed by the next run and by gc. Real installs on the fixture mirror.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from fixtureindex import Catalogue, FixtureIndex
from helpers import dead_pid, left_by_killed_run, mirror_yaml
from index_mirror import FixtureMirror, make_built_mirror
from test_doit_tasks import count_calls, run_doit
from test_far_side import INSTALLER_CACHE

from lockmirror import pipeline
from lockmirror.cli import main
from lockmirror.errors import LockmirrorError
from lockmirror.fsutil import locked_unless_held

PASS_RECORD = "verified-manifest.json"  # in .cache/verify/, where doit's up-to-date check reads it


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process's temporary directory ($TMPDIR), empty, for the test alone."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_the_cli_in_a_project_works_where_doit_does_and_records_its_pass(
        tmp_path: Path, fixture_index: FixtureIndex, reproducible_build: None,
        temp_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by an outside tester: `lockmirror check-install` kept its installers in
    ~/.cache/lockmirror/installers, built its environments in $TMPDIR and recorded
    nothing, so `doit check-install` installed everything again (8 minutes)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "mirror.yaml").write_text(mirror_yaml(fixture_index.url, {"core": ["beta==1.0"]}))
    monkeypatch.chdir(project)
    monkeypatch.delenv("LOCKMIRROR_INSTALLER_CACHE")  # where each door keeps them by itself
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    verify = project / ".cache" / "verify"
    if INSTALLER_CACHE.is_dir():  # the suite's copies (fetched once), saving four pip fetches
        shutil.copytree(INSTALLER_CACHE, verify / "installers", symlinks=True)
    assert run_doit("index") == 0

    assert main(["check-install"]) == 0  # every set and installer, both transports
    assert (verify / PASS_RECORD).is_file()
    assert (verify / "installers" / "pip-26.3").is_dir()
    assert not (tmp_path / "user-cache" / "lockmirror").exists()
    assert not list(temp_root.glob("lockmirror-verify-*"))
    installs = count_calls(monkeypatch, pipeline, "check_install")
    assert run_doit("check-install") == 0
    assert installs == []  # up to date: the CLI's pass is doit's

    # a run limited by an option proves only a part: it records no pass
    (verify / PASS_RECORD).unlink()
    assert main(["check-install", "--installer", "uv", "--file"]) == 0
    assert not (verify / PASS_RECORD).exists()


def test_the_projects_index_built_from_other_lockfiles_is_refused_before_installing(
        tmp_path: Path, fixture_index: FixtureIndex, reproducible_build: None,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an outside tester: `check-install --set web` passed on a dist-index/
    whose copy of web's lockfile lacked a package the checkout's lockfile has (a
    lock since the index, or a dist-index artifact of another commit): its pass
    vouched for a lockfile no installer read."""
    project = tmp_path / "project"
    project.mkdir()
    config = project / "mirror.yaml"
    config.write_text(mirror_yaml(fixture_index.url, {"web": ["beta==1.0"], "cli": ["alpha"]}))
    monkeypatch.chdir(project)
    assert run_doit("index") == 0
    config.write_text(config.read_text().replace("[beta==1.0]", "[beta==1.0, gamma]"))
    assert main(["lock", "--set", "web"]) == 0  # the checkout's web locks gamma; the index not
    capsys.readouterr()

    for limited in (["--set", "web"], []):
        assert main(["check-install", *limited, "--installer", "uv", "--file"]) == 1
        assert capsys.readouterr().err.splitlines() == [
            f"lockmirror: error: {project / 'dist-index'} was built from other lockfiles "
            "(set web): run `doit index`"]
        assert not (project / ".cache" / "verify").exists()  # nothing installed, nor fetched
    assert main(["check-install", "--set", "cli", "--file", "--no-install"]) == 0  # current
    assert run_doit("index") == 0
    assert main(["check-install", "--set", "web", "--file", "--no-install"]) == 0


@pytest.fixture(scope="module")
def mirror(catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> FixtureMirror:
    return make_built_mirror(catalogue, tmp_path_factory.mktemp("doors-mirror"))


def test_outside_a_project_a_killed_runs_directory_goes_with_the_next_run(
        mirror: FixtureMirror, tmp_path: Path, temp_root: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an outside tester: after `kill -9` of a check-install, 70M stayed in
    /tmp/lockmirror-verify-XXXX and no later run removed it."""
    monkeypatch.chdir(tmp_path)  # a directory and no mirror.yaml: the far side
    killed = left_by_killed_run(temp_root, f"lockmirror-verify-{dead_pid()}-k1ll3d_x")
    unnamed = left_by_killed_run(temp_root, "lockmirror-verify-a1b2c3d4")  # before pids
    running = left_by_killed_run(temp_root, "lockmirror-verify-e5f6g7h8")
    other = left_by_killed_run(temp_root, f"lockmirror-verify-{os.getppid()}-al1ve")
    with locked_unless_held(running) as free:  # as a run holds its directory
        assert free
        assert main(["check-install", str(mirror.out), "--set", "extra", "--installer", "uv",
                     "--file"]) == 0
    assert not killed.exists() and not unnamed.exists()
    assert running.exists() and other.exists()  # their runs live
    assert "removed what killed check-install runs left" in capsys.readouterr().err
    assert sorted(temp_root.iterdir()) == sorted([running, other])  # its own went too



# Found in a final read: a run that failed once its $TMPDIR/lockmirror-verify-<pid>-*
# was made but before the installs started left the directory behind (its pid alive
# until the next run's check): these two fail there.

def test_outside_a_project_a_run_without_uv_leaves_no_directory(
        mirror: FixtureMirror, tmp_path: Path, temp_root: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # a directory and no mirror.yaml: the far side
    # neither the uv package (None is what `import uv` meets without it) nor a uv on PATH
    monkeypatch.setitem(sys.modules, "uv", None)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert main(["check-install", str(mirror.out), "--set", "extra", "--file",
                 "--no-install"]) == 1
    assert "uv is not installed" in capsys.readouterr().err
    assert list(temp_root.iterdir()) == []


def test_outside_a_project_a_run_whose_installer_copy_fails_leaves_no_directory(
        mirror: FixtureMirror, tmp_path: Path, temp_root: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    not_a_directory = tmp_path / "installers"  # where the installer copies would go
    not_a_directory.write_bytes(b"")
    monkeypatch.setenv("LOCKMIRROR_INSTALLER_CACHE", str(not_a_directory))
    assert main(["check-install", str(mirror.out), "--set", "extra", "--file",
                 "--installer", "pip 21.2.3"]) == 1
    # one line saying what is wrong with what (found by an outside tester: `File exists`)
    assert capsys.readouterr().err.splitlines() == [
        f"lockmirror: error: {not_a_directory}: the installer cache is a file, not a directory "
        "($LOCKMIRROR_INSTALLER_CACHE names it; point it at a directory)"]
    assert list(temp_root.iterdir()) == []
    # a cache the variable does not name (--work-dir's installers/) says how to move it
    from lockmirror.stages.installers import ensure_installer, find_installers

    monkeypatch.delenv("LOCKMIRROR_INSTALLER_CACHE")
    with pytest.raises(LockmirrorError) as raised:
        ensure_installer(find_installers(["pip 21.2.3"])[0], not_a_directory / "installers")
    assert str(raised.value) == (
        f"{not_a_directory / 'installers'}: the installer cache lies under {not_a_directory}, "
        "a file, not a directory (set $LOCKMIRROR_INSTALLER_CACHE to a directory for the "
        "installer copies)")
