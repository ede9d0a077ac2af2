"""A lock of several sets when some fail or it is stopped: every failing set named, one
line each, the others locked and written; each set written as soon as all its targets
are resolved, so a SIGTERM keeps the sets done. On the fixture index, hermetic."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtureindex import FixtureIndex
from fixtureindex.fixture_backend import core_metadata, write_sdist
from helpers import subprocess_env
from test_lock import write_mirror
from test_lock_sdist_failures import failing_sdist

from lockmirror.config import load_config
from lockmirror.formats.lockfile import Lockfile
from lockmirror.stages.lock import lock_sets
from lockmirror.stages.lock_watch import LocksFailed

# four sets: one that locks, a pin that does not exist, a conflict, an sdist that
# does not build (and nothing else to take)
SETS = """\
  good:
    requirements: [gamma]
  nopin:
    requirements: [alpha==9.9]
  conflict:
    requirements: [beta, left, right]
  nobuild:
    requirements: [nobuild]
"""


def test_every_failing_set_is_named_and_the_others_are_written(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    fixture_index.add_file(failing_sdist(tmp_path / "files", "nobuild", "5.4.1"))
    path = write_mirror(tmp_path, fixture_index, SETS)
    done = subprocess.run(
        [sys.executable, "-m", "lockmirror", "lock", "--config", str(path)],
        env=subprocess_env(), capture_output=True, text=True, check=False)
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if not line.startswith("lock: ")]
    assert errors[0] == ("lockmirror: error: 3 of 4 sets did not lock (each set's first "
                         "error; the others were locked):"), done.stderr
    named = [line for line in errors[1:] if line.startswith("  mirror.yaml:")]
    assert [line.split("set '")[1].split("'")[0] for line in named] == [
        "nopin", "conflict", "nobuild"], done.stderr
    assert "no version of alpha matches 'alpha==9.9'" in named[0], named
    assert "cannot resolve:" in named[1], named
    assert "    conflicting requirements on shared:" in errors, errors  # its chains under it
    assert "preparing the metadata of nobuild-5.4.1.tar.gz failed" in named[2], named
    assert "Traceback" not in done.stderr
    # the set that locked is written, and said so; the failed ones have no lockfile
    lockfiles = tmp_path / "lockfiles"
    assert sorted(p.name for p in lockfiles.glob("pylock.*.toml")) == ["pylock.good.toml"]
    assert Lockfile.read(lockfiles / "pylock.good.toml").packages
    assert "pylock.good.toml: " in done.stdout and "(written)" in done.stdout, done.stdout


def test_all_or_nothing_writes_no_set_when_one_fails(tmp_path: Path,
                                                     fixture_index: FixtureIndex) -> None:
    """What bump asks for: its commit holds every set's move or none."""
    loaded = load_config(write_mirror(tmp_path, fixture_index, "  good:\n    requirements: "
                                      "[gamma]\n  nopin:\n    requirements: [alpha==9.9]\n"))
    with pytest.raises(LocksFailed) as info:
        lock_sets(loaded, all_or_nothing=True)
    assert list(info.value.failures) == ["nopin"] and not info.value.results
    assert not list((tmp_path / "lockfiles").glob("pylock.*.toml"))
    with pytest.raises(LocksFailed) as info:  # without it: the good set is written
        lock_sets(loaded)
    assert [r.set_name for r in info.value.results] == ["good"]
    assert (tmp_path / "lockfiles" / "pylock.good.toml").exists()


# an in-tree backend that waits until the test lets it go (then fails): a resolution
# that is surely still running when the signal comes
WAITING_BACKEND = """\
import os, time
def get_requires_for_build_wheel(config_settings=None):
    deadline = time.monotonic() + 120
    while not os.path.exists({release!r}) and time.monotonic() < deadline:
        time.sleep(0.05)
    raise RuntimeError("let go")
"""


def waiting_sdist(out_dir: Path, release: Path) -> Path:
    pyproject = ('[build-system]\nrequires = []\nbuild-backend = "waiting_backend"\n'
                 'backend-path = ["."]\n')
    files = {"PKG-INFO": core_metadata("waitbuild", "1.0", metadata_version="2.1").encode(),
             "pyproject.toml": pyproject.encode(),
             "waiting_backend.py": WAITING_BACKEND.format(release=str(release)).encode()}
    return out_dir / write_sdist(out_dir, "waitbuild", "1.0", files)


def test_sigterm_keeps_the_lockfiles_of_the_sets_already_resolved_and_names_them(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    release = tmp_path / "release"
    fixture_index.add_file(waiting_sdist(tmp_path / "files", release))
    path = write_mirror(tmp_path, fixture_index, "  first:\n    requirements: [gamma]\n"
                        "  second:\n    requirements: [yanky]\n"
                        "  third:\n    requirements: [waitbuild]\n")
    lockfiles = tmp_path / "lockfiles"
    process = subprocess.Popen(
        [sys.executable, "-m", "lockmirror", "lock", "--config", str(path), "--jobs", "1"],
        env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # first and second resolve (one at a time), third waits in its sdist's backend:
        # the two done are written while it waits
        deadline = time.monotonic() + 120
        while (not (lockfiles / "pylock.second.toml").exists() and process.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.05)
        assert (lockfiles / "pylock.first.toml").exists(), "not written while third runs"
        assert (lockfiles / "pylock.second.toml").exists(), "not written while third runs"
        process.send_signal(signal.SIGTERM)
        release.touch()  # the waiting backend returns; the lock then stops
        _, said = process.communicate(timeout=120)
    finally:
        release.touch()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 143, said
    assert ("lockmirror: terminated: what finished is kept and nothing half-written is in "
            "place") in said and "Traceback" not in said, said
    # and says which: the lockfiles written, the set that was not locked
    assert (f"lockmirror: kept: {lockfiles / 'pylock.first.toml'}, "
            f"{lockfiles / 'pylock.second.toml'}; not locked: third") in said.splitlines(), said
    assert sorted(p.name for p in lockfiles.glob("pylock.*.toml")) == [
        "pylock.first.toml", "pylock.second.toml"]
    for name in ("first", "second"):
        assert Lockfile.read(lockfiles / f"pylock.{name}.toml").packages
