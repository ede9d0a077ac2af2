"""Subprocesses worker threads run, stopped with the run that started them.

SIGTERM (``timeout``, ``docker stop``, a CI runner) reaches the run's own pid
alone. In the main thread ``subprocess.run`` kills its subprocess on the
KeyboardInterrupt Ctrl-C or SIGTERM raises (:mod:`lockmirror.interrupt`): that is
how check-install's installer runs end. A worker thread never sees that interrupt,
and the front doors end without waiting for workers
(:func:`lockmirror.interrupt.leave`): its subprocess ran on, and the temporary
directories its ``with`` blocks would have removed stayed.

:class:`StoppableWork` runs a worker's subprocesses (:meth:`~StoppableWork.run`,
``subprocess.run`` with the same kill on an interrupt) inside spans of work
(:meth:`~StoppableWork.span`) that remove what they made on their way out. Each
subprocess leads a process group of its own, so what it starts in turn (a PEP 517
backend's compiler, cmake, cargo) is in that group: :meth:`~StoppableWork.stop`,
called by the main thread when the run is interrupted (Ctrl-C too, which no longer
reaches the group from the terminal), kills every group, refuses new spans and
subprocesses (:class:`WorkStopped`), and returns once every span has ended: its
temporary directories are gone before the process exits. A span does only local
work besides its subprocesses (a download from a source that stopped answering is
made before it), so the wait is short; it is bounded (:data:`STOP_WAIT`) all the
same, for a process that left its group (``setsid``) holding the output open.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

# seconds a stop waits for the spans under way to remove what they made
STOP_WAIT = 10.0


class WorkStopped(Exception):
    """The run was stopped (:meth:`StoppableWork.stop`): no new work starts."""


class StoppableWork:
    """The spans of work and the subprocesses of worker threads, stopped together."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._spans = 0
        self._running: set[subprocess.Popen[str]] = set()
        self._stopped = False

    @contextmanager
    def span(self) -> Iterator[None]:
        """One piece of work that :meth:`stop` waits for: put the ``with`` blocks that
        remove its temporary directories inside it. Raises WorkStopped after a stop."""
        with self._changed:
            if self._stopped:
                raise WorkStopped("the run was stopped")
            self._spans += 1
        try:
            yield
        finally:
            with self._changed:
                self._spans -= 1
                self._changed.notify_all()

    def run(self, command: Sequence[str], *, env: Mapping[str, str], cwd: str | None = None,
            merge_stderr: bool = False, check: bool = False) -> subprocess.CompletedProcess[str]:
        """``subprocess.run(command)`` with its output captured as text (stderr into
        stdout when ``merge_stderr``) and the stdin of this process, in a process group
        of its own that :meth:`stop` kills. Raises WorkStopped after a stop, CalledProcessError as
        ``subprocess.run`` does when ``check``."""
        with self._changed:
            if self._stopped:
                raise WorkStopped("the run was stopped")
            process = subprocess.Popen(
                command, cwd=cwd, env=dict(env), stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                text=True, encoding="utf-8", errors="replace", start_new_session=True)
            self._running.add(process)
        try:
            with process:
                try:
                    stdout, stderr = process.communicate()
                except BaseException:
                    _kill_group(process)  # as subprocess.run kills its process
                    raise
        finally:
            with self._changed:
                self._running.discard(process)
        done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        if check:
            done.check_returncode()
        return done

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called: a subprocess that ended since was killed by it."""
        with self._changed:
            return self._stopped

    def stop(self, wait: float = STOP_WAIT) -> bool:
        """Kill the process group of every subprocess :meth:`run` has under way
        (SIGKILL, as ``subprocess.run`` on an interrupt: the subprocess and what it
        started), refuse new spans and subprocesses, and return once every span has
        ended, or after ``wait`` seconds (a process that left its group may hold the
        output open: the stop must not wait on it). Whether every span ended.
        Called by the main thread, in no span."""
        with self._changed:
            self._stopped = True
            for process in self._running:
                _kill_group(process)
            return self._changed.wait_for(lambda: not self._spans, timeout=wait)


def _kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL to ``process``'s group (its pid: it leads one, started with
    ``start_new_session``), whatever of it is still there."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:  # the group is gone: every process of it ended
        pass
