"""StoppableWork: a worker thread's subprocess killed, and its span waited for, when the
main thread stops the run; nothing new starts after. Real subprocesses and threads."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lockmirror.fsutil import pid_alive
from lockmirror.stoppable import StoppableWork, WorkStopped


def start_worker(worker: Callable[[], None], pid_file: Path) -> tuple[threading.Thread, int]:
    """``worker`` started in a thread, and the pid its subprocess writes to ``pid_file``."""
    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return thread, int(pid_file.read_text())


def test_stop_kills_a_workers_subprocess_and_returns_once_its_span_cleaned_up(
        tmp_path: Path) -> None:
    work = StoppableWork()
    pid_file, scratch = tmp_path / "child.pid", tmp_path / "scratch"
    sleeper = ("import os, sys, time; open(sys.argv[1] + '.part', 'w').write(str(os.getpid()));"
               " os.replace(sys.argv[1] + '.part', sys.argv[1]); time.sleep(600)")
    ended: list[int] = []

    def worker() -> None:
        with work.span():
            scratch.mkdir()
            try:
                ended.append(work.run([sys.executable, "-c", sleeper, str(pid_file)],
                                      env={}).returncode)
            finally:
                shutil.rmtree(scratch)

    thread, child = start_worker(worker, pid_file)
    assert work.stop()
    # the span ended before stop returned: its clean-up ran, its subprocess was reaped
    assert not scratch.exists()
    assert ended == [-9] and not pid_alive(child)
    with pytest.raises(WorkStopped):
        work.run([sys.executable, "-c", "pass"], env={})
    with pytest.raises(WorkStopped), work.span():
        pass
    thread.join(timeout=60)


def test_stop_waits_for_a_span_that_does_not_end_no_longer_than_it_is_told() -> None:
    # a process the killed one started may hold its output open, so a span may not end:
    # the stop gives up waiting (False) rather than hold the stopped run
    work = StoppableWork()
    inside, release = threading.Event(), threading.Event()

    def worker() -> None:
        with work.span():
            inside.set()
            release.wait(60)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    assert inside.wait(60)
    assert work.stop(wait=0.1) is False
    release.set()
    thread.join(timeout=60)
    assert not thread.is_alive()


def test_stop_kills_what_the_subprocess_started_too(tmp_path: Path) -> None:
    """A subprocess that starts one of its own (a backend's compiler, cmake, cargo),
    which inherits its output: the stop kills both, so the output closes and the span
    ends (stop returns True rather than giving up after its wait)."""
    work = StoppableWork()
    pid_file = tmp_path / "grandchild.pid"
    starter = ("import subprocess, sys, time, os;"
               " child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']);"
               " open(sys.argv[1] + '.part', 'w').write(str(child.pid));"
               " os.replace(sys.argv[1] + '.part', sys.argv[1]); time.sleep(600)")
    ended: list[int] = []

    def worker() -> None:
        with work.span():
            ended.append(work.run([sys.executable, "-c", starter, str(pid_file)],
                                  env=dict(os.environ)).returncode)

    thread, grandchild = start_worker(worker, pid_file)
    try:
        assert work.stop() is True  # the old stop gave up after STOP_WAIT: the pipe stayed open
        assert ended == [-9]
        deadline = time.monotonic() + 30
        while pid_alive(grandchild) and time.monotonic() < deadline:
            time.sleep(0.02)  # killed, and reaped by init: not at once
        assert not pid_alive(grandchild), f"the grandchild (pid {grandchild}) runs on"
    finally:
        if pid_alive(grandchild):
            os.kill(grandchild, signal.SIGKILL)  # what the old code left running
    thread.join(timeout=60)
