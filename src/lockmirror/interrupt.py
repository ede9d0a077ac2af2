"""SIGTERM taken as Ctrl-C, so a stopped run cleans up as an interrupted one does.

``timeout``, ``docker stop``, systemd and Kubernetes stop a process with SIGTERM,
whose default action ends it at once: no ``finally`` block runs, so a publish
left its S3 lock held until it expired and a bundle its temporary file. With
:func:`terminate_as_interrupt` installed, SIGTERM raises :class:`Terminated`, a
KeyboardInterrupt: every path that releases a lock or removes a temporary file
on Ctrl-C runs for it too. The front doors install it while they run a stage:
the ``lockmirror`` command (exit 143) and each doit action
(:func:`lockmirror.doit_tasks._action`).

Workers blocked on a server that stopped answering are not waited for by an S3
publish: it cancels what they had queued and cleans up without them, and the
front door then ends without joining them (:func:`leave`): the ``lockmirror``
command, and a doit action (``doit publish``; doit does not save that run's state
in ``.doit.db`` then, which costs the next run some hashing, nothing more).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

TERMINATED_EXIT = 128 + signal.SIGTERM  # 143: what a shell reports for a SIGTERM'd process


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; handled wherever Ctrl-C is."""


def stopped(interrupt: KeyboardInterrupt) -> tuple[str, int]:
    """The line a front door prints for a run stopped by Ctrl-C or SIGTERM (with
    the notes a stage added to ``interrupt`` on the lines under it: what a lock
    kept), and its exit status (130 or 143, as a shell reports the signal)."""
    terminated = isinstance(interrupt, Terminated)
    # every stage writes each file whole or not at all (a download resumes)
    line = (f"lockmirror: {'terminated' if terminated else 'interrupted'}: what finished is "
            "kept and nothing half-written is in place; run the command again to go on")
    notes = getattr(interrupt, "__notes__", [])
    return "\n".join([line, *notes]), TERMINATED_EXIT if terminated else 130


def _raise_terminated(_signum: int, _frame: FrameType | None) -> None:
    # a second SIGTERM must not cut short the clean-up the first one started
    # (releasing a lock is a request or two); SIGKILL still ends the process
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated("SIGTERM")


def terminate_as_interrupt() -> Handler:
    """Make SIGTERM raise :class:`Terminated` in the main thread; return the
    handler it replaces (for :func:`restore`). Does nothing off the main thread,
    where Python cannot install a handler (returns None)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def restore(previous: Handler) -> None:
    """Put back the SIGTERM handler :func:`terminate_as_interrupt` replaced."""
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)


def leave(status: int) -> NoReturn:
    """End the process with ``status``. After Ctrl-C or SIGTERM (130, 143), threads
    still running are workers blocked in a request to a server that stopped
    answering: the interpreter would join them at exit, until their client
    timeouts, so the process ends without them (every lock and temporary file
    was seen to on the way out, and the output is flushed first)."""
    stopped_by_signal = status in (130, TERMINATED_EXIT)
    # daemon threads are never joined at exit: only the others would keep it waiting
    if stopped_by_signal and any(thread.is_alive() and not thread.daemon
                                 for thread in threading.enumerate()
                                 if thread is not threading.main_thread()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
