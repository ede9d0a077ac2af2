"""An S3 publish that fails or is stopped while its server is gone or frozen: the lock
is released when the server answers, else the error says it is left and how to clear
it; a lock whose holder on this host is gone says so (found by an outside tester).

These tests start their own moto server: they stop or freeze it.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import dead_pid
from servers import S3Server, start_moto
from test_publish_s3 import (
    destination,
    doit_publish_project,
    start_holding_lock,
    stop_and_finish,
    tree_with_a_fifo,
    unblock,
)

from lockmirror.cli import main
from lockmirror.errors import PublishError
from lockmirror.interrupt import Terminated, stopped
from lockmirror.publish import publish
from lockmirror.publish.s3 import LOCK_KEY, S3Publisher

pytest_plugins = ["servers"]


@pytest.fixture
def own_moto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    (tmp_path / "moto").mkdir()
    server = start_moto(tmp_path / "moto")
    server.export(monkeypatch)
    try:
        yield server
    finally:
        if server.process.process.poll() is None:
            os.kill(server.process.process.pid, signal.SIGCONT)  # a frozen one, to be stopped
        server.process.stop()


def start_publish(server: S3Server, bucket: str, source: Path, cwd: Path,
                  *extra: str) -> subprocess.Popen[str]:
    """``lockmirror publish`` of ``source`` (a tree with a FIFO) to ``bucket``/pypi, once
    it holds the lock and uploaded a file (with --jobs 1 the FIFO's, last, blocks it)."""
    return start_holding_lock(
        [sys.executable, "-m", "lockmirror", "publish", "--to", f"s3://{bucket}/pypi",
         "--from", str(source), "--endpoint-url", server.endpoint_url, "--jobs", "1", *extra],
        server, bucket, cwd)


def test_a_publish_whose_server_stops_says_its_lock_is_left_and_how_to_clear_it(
        own_moto: S3Server, index_tree: Path, tmp_path: Path) -> None:
    source = tree_with_a_fifo(index_tree, tmp_path / "tree")
    fifo = source / "files" / "zzz" / "zzz-0.1.tar.gz"
    child = start_publish(own_moto, own_moto.new_bucket(), source, tmp_path, "-q")
    # the server goes away mid-run; the last upload then finds nobody there
    code, err = stop_and_finish(child, fifo, own_moto.process.stop, wait=120, timeout=120)
    assert code == 1, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("lockmirror: error: ") and "cannot reach" in err
    assert "the publish lock is left held (releasing it failed: cannot reach " in err
    assert err.rstrip().endswith("the next publish needs --break-lock)")


def test_a_lock_held_by_a_gone_process_of_this_host_says_so_and_dry_run_says_held(
        aws_env: S3Server, index_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bucket = aws_env.new_bucket()
    dest = destination(aws_env, bucket)
    pid = dead_pid()
    now = datetime.now(UTC)
    aws_env.client().put_object(Bucket=bucket, Key=f"pypi/{LOCK_KEY}", Body=json.dumps({
        "holder": f"{getpass.getuser()}@{socket.gethostname()} pid {pid}", "token": "t",
        "created": (now - timedelta(seconds=50)).isoformat(timespec="seconds"),
        "expires": (now + timedelta(minutes=59)).isoformat(timespec="seconds")}).encode())
    with pytest.raises(PublishError) as caught:
        publish(index_tree, dest)
    assert caught.value.message.endswith(f"; the publish that held it ended (pid {pid} gone)")
    assert caught.value.hint == "run again with --break-lock"
    assert S3Publisher(dest).read_lock() is not None  # not broken unasked

    code = main(["publish", "--to", f"s3://{bucket}/pypi", "--from", str(index_tree),
                 "--endpoint-url", aws_env.endpoint_url, "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"  locked by {getpass.getuser()}@{socket.gethostname()} pid {pid} for " in out
    assert f"the publish that held it ended (pid {pid} gone) (a publish now would wait" in out


def terminate_when_frozen(server: S3Server, child: subprocess.Popen[str], fifo: Path, *,
                          timeout: float) -> str:
    """Freeze ``server`` (SIGSTOP) under the running publish ``child``, SIGTERM it, and
    return its stderr; the child is killed if it outlives ``timeout``, and the worker
    stuck on ``fifo`` let go either way."""
    try:
        os.kill(server.process.process.pid, signal.SIGSTOP)
        child.send_signal(signal.SIGTERM)
        _out, err = child.communicate(timeout=timeout)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        unblock(fifo)
    return err


def test_sigterm_ends_a_publish_to_a_frozen_server_without_waiting_for_its_workers(
        own_moto: S3Server, index_tree: Path, tmp_path: Path) -> None:
    """The server freezes (SIGSTOP) under a running publish whose worker is stuck:
    SIGTERM ends it with the one terminated line and exit 143, the clean-up bounded
    by the clean-up client's timeouts, the lock said to be left; the stuck worker is
    not waited for (the FIFO never gets a writer while the publish runs)."""
    source = tree_with_a_fifo(index_tree, tmp_path / "tree")
    fifo = source / "files" / "zzz" / "zzz-0.1.tar.gz"
    bucket = own_moto.new_bucket()
    child = start_publish(own_moto, bucket, source, tmp_path)
    err = terminate_when_frozen(own_moto, child, fifo, timeout=120)
    assert child.returncode == 143, err
    lines = err.splitlines()
    assert lines[-1].startswith("lockmirror: terminated: ") and "Traceback" not in err
    assert any("the publish lock is left held (releasing it failed: " in line
               and "stopped answering" in line for line in lines[:-1]), err


def test_sigterm_ends_a_doit_publish_to_a_frozen_server_as_the_cli_does(
        own_moto: S3Server, index_tree: Path, tmp_path: Path) -> None:
    """`doit publish` ended its action as `lockmirror publish` does, but then the
    interpreter waited at exit for the worker stuck in its upload (until the client's
    timeouts; here for ever: the FIFO gets no writer while the publish runs). It
    leaves as the CLI does (:func:`lockmirror.interrupt.leave`): the same one line, 143."""
    source = tree_with_a_fifo(index_tree, tmp_path / "tree")
    fifo = source / "files" / "zzz" / "zzz-0.1.tar.gz"
    bucket = own_moto.new_bucket()
    child = start_holding_lock([*doit_publish_project(tmp_path, source, bucket, own_moto), "publish"],
                  own_moto, bucket, tmp_path)
    err = terminate_when_frozen(own_moto, child, fifo, timeout=30)  # under the workers' timeouts
    assert child.returncode == 143, err
    assert err.splitlines()[-1] == stopped(Terminated("SIGTERM"))[0] and "Traceback" not in err
