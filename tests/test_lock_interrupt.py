"""Ctrl-C during `lock`: what is queued never starts and what runs gives up; exit 130.
SIGTERM while a source holds a request: the run ends at once; exit 143. SIGTERM during
an sdist build: its backend is stopped and its directories removed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from fixtureindex import FixtureIndex
from fixtureindex.fixture_backend import core_metadata, write_sdist
from helpers import QuietHandler, serving, subprocess_env
from test_lock import write_mirror
from test_lock_sdist_failures import failing_sdist

from lockmirror.config_schema import SourceConfig
from lockmirror.errors import LockmirrorError, NotFoundError
from lockmirror.fsutil import pid_alive
from lockmirror.net.http import make_session
from lockmirror.net.index_client import IndexClient
from lockmirror.resolve.sdist_metadata import SdistMetadataSource
from lockmirror.stoppable import WorkStopped

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


class StuckServer(ThreadingHTTPServer):
    """An index that never answers while the test runs: each GET is recorded in
    ``asked`` and held until ``let_go`` is set (then 404). Serve with :func:`serving`."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _StuckHandler)
        self.asked: list[str] = []
        self.let_go = threading.Event()


class _StuckHandler(QuietHandler):
    server: StuckServer

    def do_GET(self) -> None:
        self.server.asked.append(self.path)
        self.server.let_go.wait(300)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


DODO = Path(__file__).resolve().parent.parent / "dodo.py"


def sigterm_when(process: subprocess.Popen[str], server: StuckServer,
                 ready: Callable[[], bool], *, check: Callable[[], None],
                 wait: float = 30) -> str:
    """SIGTERM ``process`` once ``ready()`` (or it ended, or 120 s passed) and ``check()``
    passed; its stderr. The stuck server lets go, and the process is killed, whatever
    happens."""
    try:
        deadline = time.monotonic() + 120
        while not ready() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        check()
        process.send_signal(signal.SIGTERM)
        return process.communicate(timeout=wait)[1]
    finally:
        server.let_go.set()
        if process.poll() is None:
            process.kill()
            process.wait()


def with_stuck_source(project: Path, fixture_index: FixtureIndex, stuck_url: str,
                      **sets: str) -> None:
    """Write ``project``'s mirror.yaml: the fixture index, and a source at ``stuck_url``
    (a :class:`StuckServer`) that ``slowpkg`` is taken from; ``sets``: name -> requirements."""
    lines = "".join(f"  {name}: {{requirements: {requirements}}}\n"
                    for name, requirements in sets.items())
    (project / "mirror.yaml").write_text(f"""\
version: 1
name: test
sources:
  - name: fixture
    url: {fixture_index.url}
  - name: stuck
    url: {stuck_url}/simple/
    allow_http: true
    projects: [slowpkg]
targets:
  linux-x86_64-py311: {{python: "3.11", platforms: [manylinux_2_28_x86_64]}}
sets:
{lines}paths:
  cache: {project / "cache"}
""")


@pytest.mark.parametrize("door", ["lockmirror lock", "doit lock"])
def test_sigterm_ends_a_lock_waiting_on_a_stuck_source_and_names_what_it_kept(
        tmp_path: Path, fixture_index: FixtureIndex, door: str) -> None:
    """A set taken from a source that holds every request: SIGTERM ends the run at once
    (it waited for the stuck request, then asked that source for pip to judge its URL),
    naming the lockfiles the run wrote (doit: those of its earlier lock tasks too)."""
    with StuckServer() as server, serving(server) as stuck_url:
        with_stuck_source(tmp_path, fixture_index, stuck_url,
                          first="[gamma]", second="[yanky]", third="[slowpkg]")
        argv = ([sys.executable, "-m", "lockmirror", "lock"] if door == "lockmirror lock" else
                [sys.executable, "-m", "doit", "-f", str(DODO), "-d", str(tmp_path), "lock"])
        lockfiles = tmp_path / "lockfiles"
        process = subprocess.Popen(argv, cwd=tmp_path, env=subprocess_env(),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def asked_for_slowpkg() -> None:
            assert server.asked == ["/simple/slowpkg/"], server.asked

        said = sigterm_when(process, server,
                            lambda: (lockfiles / "pylock.second.toml").exists()
                            and bool(server.asked), check=asked_for_slowpkg)
    assert process.returncode == 143, said
    assert "lockmirror: terminated: what finished is kept" in said, said
    assert "Traceback" not in said, said
    # doit: the lockfiles its earlier lock tasks wrote too, the set its stopped task locked
    assert (f"lockmirror: kept: {lockfiles / 'pylock.first.toml'}, "
            f"{lockfiles / 'pylock.second.toml'}; not locked: third") in said.splitlines(), said
    assert server.asked == ["/simple/slowpkg/"], server.asked  # nothing asked after the signal


def test_a_closed_client_does_not_ask_whether_the_source_is_wrong(tmp_path: Path) -> None:
    """What a stopped lock's resolution meets when the page it waited for comes back 404
    after the stop: the plain 'no source has it', no request for pip to judge the URL."""
    found: list[BaseException] = []

    def ask(client: IndexClient) -> None:
        try:
            client.project("slowpkg")
        except LockmirrorError as error:
            found.append(error)

    with StuckServer() as server, serving(server) as url:
        client = IndexClient([SourceConfig(name="stuck", url=f"{url}/simple/", allow_http=True)],
                             session=make_session(retries=0))
        asking = threading.Thread(target=ask, args=(client,))
        asking.start()
        while not server.asked and asking.is_alive():
            time.sleep(0.01)
        client.close(wait=False)  # as a lock stopped by Ctrl-C or SIGTERM closes it
        server.let_go.set()
        asking.join()
    assert [type(error) for error in found] == [NotFoundError], found
    assert server.asked == ["/simple/slowpkg/"], server.asked


@pytest.mark.parametrize(("daemon", "exits_cleanly"), [(True, True), (False, False)])
def test_leave_cuts_short_only_a_wait_for_threads_the_exit_would_join(
        daemon: bool, exits_cleanly: bool) -> None:
    """After a signal, :func:`lockmirror.interrupt.leave` ends the process without the
    interpreter's exit (no atexit handlers) only when a thread the exit would join is
    alive (a worker stuck in a request); a daemon thread, never joined, is no reason."""
    program = f"""
import atexit, threading, time
from lockmirror.interrupt import leave
atexit.register(lambda: print("exited cleanly", flush=True))
threading.Thread(target=time.sleep, args=(30,), daemon={daemon}).start()
leave(130)
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60, env=subprocess_env())
    assert done.returncode == 130, done.stderr
    assert ("exited cleanly" in done.stdout) is exits_cleanly, done


# a backend that starts a process of its own (as real ones start compilers, cmake, cargo),
# says where both run (their pids, written whole) and then takes its time
SLEEPING_BACKEND = '''\
import os, subprocess, sys, time
def get_requires_for_build_wheel(config_settings=None):
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(PID_FILE + ".part", "w") as handle:
        handle.write("%d %d" % (os.getpid(), helper.pid))
    os.replace(PID_FILE + ".part", PID_FILE)
    time.sleep(600)
'''


@pytest.mark.parametrize("door", ["lockmirror lock", "doit lock"])
def test_sigterm_during_an_sdist_build_stops_its_backend_and_removes_its_directories(
        tmp_path: Path, fixture_index: FixtureIndex, door: str) -> None:
    """SIGTERM reaches the lock's pid alone (``timeout``, ``docker stop``, a CI runner):
    the backend it started ran on after the lock exited, and the unpacked sources
    (``.cache/build/tmp*``) and the isolated environment (``$TMPDIR/build-env-*``) stayed.
    Then only the backend was killed: the process it started ran on, holding the
    backend's output open, so the stop gave up waiting and the directories stayed."""
    pid_file = tmp_path / "backend.pid"
    backend = f"PID_FILE = {str(pid_file)!r}\n{SLEEPING_BACKEND}"
    fixture_index.add_file(failing_sdist(tmp_path / "files", "sleepy", "1.0", backend))
    path = write_mirror(tmp_path, fixture_index, "  s:\n    requirements: [sleepy]\n")
    temp_dir = tmp_path / "tmp"  # the run's own $TMPDIR: what it left is its own
    temp_dir.mkdir()
    build_dir = tmp_path / "cache" / "build"
    argv = ([sys.executable, "-m", "lockmirror", "lock", "--config", str(path)]
            if door == "lockmirror lock" else
            [sys.executable, "-m", "doit", "-f", str(DODO), "-d", str(tmp_path), "lock"])
    process = subprocess.Popen(argv, cwd=tmp_path, env=subprocess_env(TMPDIR=str(temp_dir)),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not pid_file.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = [int(pid) for pid in pid_file.read_text().split()]
        # the build's directories, while it runs
        assert list(build_dir.glob("tmp*")) and list(temp_dir.glob("build-env-*"))
        process.send_signal(signal.SIGTERM)
        _, said = process.communicate(timeout=60)
        deadline = time.monotonic() + 30
        while any(map(pid_alive, pids)) and time.monotonic() < deadline:
            time.sleep(0.05)
        running = [pid for pid in pids if pid_alive(pid)]
        assert not running, f"the backend and its helper ({pids}): {running} run on"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in pids:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)  # what the old code left running
    assert process.returncode == 143, said
    assert "lockmirror: terminated: what finished is kept" in said, said
    assert "Traceback" not in said, said
    assert not list(build_dir.glob("tmp*")), list(build_dir.iterdir())
    assert not list(temp_dir.iterdir()), list(temp_dir.iterdir())  # no build-env-*, nothing
    assert not list(build_dir.rglob("*.failed.json"))  # a stop is not the sdist's failure



def slow_requirements_sdist(out_dir: Path) -> Path:
    """docopty 0.6.2, an sdist whose metadata only its backend knows and whose build
    requires slowpkg: pip asks every source for it (a stuck one holds it)."""
    pyproject = '[build-system]\nrequires = ["slowpkg"]\nbuild-backend = "setuptools.build_meta"\n'
    files = {"PKG-INFO": core_metadata("docopty", "0.6.2", metadata_version="2.1").encode(),
             "pyproject.toml": pyproject.encode()}
    return out_dir / write_sdist(out_dir, "docopty", "0.6.2", files)


def test_a_build_the_stop_ended_raises_no_build_error(
        tmp_path: Path, fixture_index: FixtureIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    """pip killed by the stop while it installs the build requirements: the build raises
    WorkStopped, not the SdistBuildError "cannot install the build requirements ...: pip
    exited -9" the resolver printed as the package's failure ("skipped docopty ...")."""
    fixture_index.add_file(slow_requirements_sdist(tmp_path / "files"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # pip's own, which a killed pip leaves
    raised: list[BaseException] = []
    with StuckServer() as server, serving(server) as stuck_url:
        client = IndexClient([SourceConfig(name="fixture", url=fixture_index.url)],
                             session=make_session(retries=0))
        sdist = client.project("docopty").files[0]
        source = SdistMetadataSource(client, tmp_path / "build",
                                     [fixture_index.url, f"{stuck_url}/simple/"])

        def build() -> None:
            try:
                source.metadata(sdist)
            except Exception as error:  # noqa: BLE001 - what it raised is the point
                raised.append(error)

        building = threading.Thread(target=build)
        building.start()
        try:
            while not server.asked and building.is_alive():
                time.sleep(0.05)
            assert server.asked, raised  # pip is waiting on the stuck source
            source.stop_builds()
            building.join(60)
        finally:
            server.let_go.set()
            client.close(wait=False)
    assert [type(error) for error in raised] == [WorkStopped], raised
    assert not list((tmp_path / "build").rglob("*.failed.json"))


def test_a_build_the_stop_ended_is_no_failure_of_its_sdist(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    """SIGTERM while pip installs an sdist's build requirements (from a source that holds
    the request): pip is killed, and that is the stop's doing, not the sdist's. The lock
    said "skipped docopt 0.6.2 ...: cannot install the build requirements ...: pip exited
    -9" before its own line, once glued onto it; now the stop's lines alone, each whole."""
    fixture_index.add_file(slow_requirements_sdist(tmp_path / "files"))
    with StuckServer() as server, serving(server) as stuck_url:
        with_stuck_source(tmp_path, fixture_index, stuck_url, s="[docopty]")
        temp_dir = tmp_path / "tmp"  # the run's own $TMPDIR: a killed pip leaves its own there
        temp_dir.mkdir()
        process = subprocess.Popen([sys.executable, "-m", "lockmirror", "lock"], cwd=tmp_path,
                                   env=subprocess_env(TMPDIR=str(temp_dir)),
                                   stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def pip_waits() -> None:
            assert server.asked, process.communicate(timeout=60)  # pip is waiting on it

        said = sigterm_when(process, server, lambda: bool(server.asked), check=pip_waits,
                            wait=60)
    assert process.returncode == 143, said
    assert "skipped" not in said and "cannot install" not in said, said
    assert said.endswith("\n"), said
    lines = said.splitlines()
    assert lines[-2].startswith("lockmirror: terminated: what finished is kept"), said
    assert lines[-1] == "lockmirror: kept: nothing; not locked: s", said
    assert not list((tmp_path / "cache" / "build").rglob("*.failed.json"))
