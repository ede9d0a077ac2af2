"""A lock of several sets when some fail: every failing set named, one line each, the
others locked and written. On the fixture index, hermetic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fixtureindex import FixtureIndex
from helpers import subprocess_env
from test_lock import write_mirror
from test_lock_sdist_failures import failing_sdist

from lockmirror.formats.lockfile import Lockfile

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
