"""A set removed from mirror.yaml: `lock` removes its lockfile, `lock --check` refuses it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from fixtureindex import FixtureIndex
from helpers import subprocess_env
from test_lock import write_mirror

ROOT = Path(__file__).resolve().parents[1]
BOTH = "  a:\n    requirements: [alpha]\n  tiny:\n    requirements: [gamma]\n"
ONE = "  a:\n    requirements: [alpha]\n"


def lockmirror(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lockmirror", *args], cwd=cwd,
                          env=subprocess_env(), capture_output=True, text=True, check=False)


def not_lockfiles(lockfiles: Path) -> list[Path]:
    """Files beside the lockfiles that are no set's: never touched."""
    others = [lockfiles / "pylock.lockmirror-tool.toml",  # lockmirror's own set
              lockfiles / "pylock.tiny@0123abcd.toml",  # a retained revision's name
              lockfiles / "shards" / "pylock.tiny.toml",  # one level down
              lockfiles / "pylock.toml"]
    for path in others:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# not a set's lockfile\n")
    return others


def test_a_full_lock_removes_the_lockfile_of_a_removed_set(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    write_mirror(tmp_path, fixture_index, BOTH)
    assert lockmirror(tmp_path, "lock").returncode == 0
    orphan = tmp_path / "lockfiles" / "pylock.tiny.toml"
    assert orphan.is_file()
    others = not_lockfiles(tmp_path / "lockfiles")
    write_mirror(tmp_path, fixture_index, ONE)

    check = lockmirror(tmp_path, "lock", "--check")
    assert check.returncode == 1, check.stdout + check.stderr
    assert (f"{orphan}: set 'tiny' is no longer in mirror.yaml; `lockmirror lock` removes "
            f"it (or `git rm {orphan}`)" in check.stderr), check.stderr
    assert lockmirror(tmp_path, "lock", "--check", "--set", "a").returncode == 0

    assert lockmirror(tmp_path, "lock", "--set", "a").returncode == 0  # one set: not a full lock
    assert orphan.is_file()

    done = lockmirror(tmp_path, "lock")
    assert done.returncode == 0, done.stderr
    assert (f"removed {orphan}: set 'tiny' is no longer in mirror.yaml"
            in done.stdout.splitlines()), done.stdout
    assert not orphan.exists() and all(path.is_file() for path in others)
    assert (tmp_path / "lockfiles" / "pylock.a.toml").is_file()
    check = lockmirror(tmp_path, "lock", "--check")
    assert check.returncode == 0, check.stderr


def test_doit_lock_removes_it_too(tmp_path: Path, fixture_index: FixtureIndex) -> None:
    shutil.copyfile(ROOT / "dodo.py", tmp_path / "dodo.py")
    doit = [str(Path(sys.executable).parent / "doit"), "lock"]
    write_mirror(tmp_path, fixture_index, BOTH)
    run = subprocess.run(doit, cwd=tmp_path, env=subprocess_env(), capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "-- lock:.orphans" in run.stdout  # nothing to remove: up to date
    others = not_lockfiles(tmp_path / "lockfiles")
    write_mirror(tmp_path, fixture_index, ONE)

    run = subprocess.run(doit, cwd=tmp_path, env=subprocess_env(), capture_output=True,
                         text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    orphan = tmp_path / "lockfiles" / "pylock.tiny.toml"
    assert f"removed {orphan}: set 'tiny' is no longer in mirror.yaml" in run.stdout, run.stdout
    assert not orphan.exists()
    assert all(path.is_file() for path in others)


def test_the_orphan_check_loads_no_tool_set_stage() -> None:
    """doit's lock tasks ask for orphans on every task-graph load: the check needs
    config's names, not lockmirror's own set's stage (found by a reviewer: it pulled
    in tool_set, toolwheels, the store and packaging.requirements)."""
    code = ("import sys, lockmirror.stages.lock_orphans; print(sorted(m for m in sys.modules "
            "if m in {'lockmirror.stages.tool_set', 'lockmirror.stages.toolwheels', "
            "'lockmirror.formats.store', 'packaging.requirements'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env=subprocess_env())
    assert done.stdout.strip() == "[]", done.stdout
