"""Ctrl-C during `lock`: what is queued never starts and what runs gives up; exit 130."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from fixtureindex import FixtureIndex
from helpers import subprocess_env
from test_lock import write_mirror

# none shares a project with another: a request for one's metadata means its set was resolved
SETS = {"first": "'beta[fast]', marked", "second": "gamma", "third": "yanky"}


def test_ctrl_c_stops_the_running_resolution_and_drops_the_queued(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    path = write_mirror(tmp_path, fixture_index, "".join(
        f"  {name}:\n    requirements: [{projects}]\n" for name, projects in SETS.items()))
    # every request waits: the first resolution (a dozen pages and metadata files, one
    # after another) is still running when the signal comes
    fixture_index.stall = 0.5
    process = subprocess.Popen(
        [sys.executable, "-m", "lockmirror", "lock", "--config", str(path), "--jobs", "1"],
        env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    started = process.stderr.readline()  # not a terminal: a line as the first one starts
    assert started.startswith("lock: resolving set 'first'"), started
    process.send_signal(signal.SIGINT)
    _, said = process.communicate(timeout=120)
    fixture_index.stall = 0
    assert process.returncode == 130, said
    assert "lockmirror: interrupted:" in said and "Traceback" not in said
    # the queued never started (the running one gives up at its next candidate, or, when
    # its last came before the signal, may finish: what finished is kept, as said)
    assert "resolved set 'second'" not in said and "resolved set 'third'" not in said, said
    looked_at = {r.path.split("/")[2] for r in fixture_index.requests
                 if r.path.endswith(".metadata")}
    assert not looked_at & {"gamma", "yanky"}, looked_at
    assert not list((tmp_path / "lockfiles").glob("pylock.*.toml"))
