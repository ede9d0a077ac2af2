"""check-install --index-url at a deployed mirror that fails a request, run as a user
runs it: the access token in the URL's query is never printed.

A plain http.server on 127.0.0.1 serves a copy of a built mirror and misbehaves in
one way per test: it breaks a lockfile's body off, hangs up on the HEAD request for
a file another target installs, or redirects a lockfile to another host (the token
in the Location too). Each ends in one line naming the file without the query.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fixtureindex import Catalogue
from helpers import serving, subprocess_env
from index_mirror import FixtureMirror, make_built_mirror
from servers import free_port

TOKEN = "SECRET-TOKEN"


@pytest.fixture(scope="module")
def mirror(catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> FixtureMirror:
    return make_built_mirror(catalogue, tmp_path_factory.mktemp("deployed-errors"))


class _Misbehaving(SimpleHTTPRequestHandler):
    """Serves the directory, but for the one misbehaviour the server names
    (``broken body``, ``HEAD hangup``, ``redirect elsewhere``)."""

    server: _MisbehavingServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        if self.server.misbehaviour == "HEAD hangup" and self.path.startswith("/files/"):
            self.connection.shutdown(socket.SHUT_RDWR)  # no answer at all
            return
        super().do_HEAD()

    def do_GET(self) -> None:
        if not self.path.startswith("/lockfiles/"):
            super().do_GET()
        elif self.server.misbehaviour == "broken body":
            self.send_response(200)
            self.send_header("Content-Length", "5000")
            self.end_headers()
            self.wfile.write(b"# a lockfile cut short\n")
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        elif self.server.misbehaviour == "redirect elsewhere":
            self.send_response(302)  # the path keeps the query, the token with it
            self.send_header("Location", f"http://127.0.0.1:{self.server.elsewhere}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            super().do_GET()


class _MisbehavingServer(ThreadingHTTPServer):
    def __init__(self, directory: Path, misbehaviour: str) -> None:
        super().__init__(("127.0.0.1", 0), partial(_Misbehaving, directory=str(directory)))
        self.misbehaviour = misbehaviour
        self.elsewhere = free_port()  # nothing listens there; it is never asked


@pytest.mark.parametrize(("misbehaviour", "file", "cause"), [
    ("broken body", "lockfiles/pylock.core.toml", "the connection broke during the transfer"),
    ("redirect elsewhere", "lockfiles/pylock.core.toml", "redirected to http://127.0.0.1:{}/ "
                                                         "which no source declares"),
    ("HEAD hangup", "files/", "the connection broke during the transfer"),
])
def test_a_failed_request_to_the_deployed_mirror_never_prints_the_token(
        mirror: FixtureMirror, tmp_path: Path, misbehaviour: str, file: str, cause: str) -> None:
    """Found in review: each request site turned its errors in its own way; a lockfile's
    named the URL with the token put out of sight (``.../pylock.core.toml?...``), and
    none took the query out of an error's place and hint. Now one helper does it all."""
    deployed = tmp_path / "deployed"
    shutil.copytree(mirror.out, deployed)
    server = _MisbehavingServer(deployed, misbehaviour)
    with serving(server) as base:
        done = subprocess.run(
            [sys.executable, "-m", "lockmirror", "check-install", str(mirror.out),
             "--index-url", f"{base}/simple/?token={TOKEN}", "--set", "core", "--no-install",
             "--work-dir", str(tmp_path / "work")],
            capture_output=True, text=True, cwd=tmp_path, env=subprocess_env(installers=True),
            timeout=600)
    assert TOKEN not in done.stdout + done.stderr
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    *progress, error = done.stderr.splitlines()
    assert all(line.startswith("... ") for line in progress)  # the steps that ran before
    prefix = f"lockmirror: error: cannot fetch {base}/{file}"
    assert error.startswith(prefix), error
    named = error.removeprefix(prefix).split(": ", 1)
    assert "?" not in named[0] and named[1].startswith(cause.format(server.elsewhere)), error


@pytest.mark.parametrize("url", [
    "http://alice:hunter2\uff03pw@127.0.0.1:9/simple/",  # a full-width '#' in the password
    "http://alice:hunter2pw@127.0.0.1:9\uff03/simple/",  # ... or after the port
    "http://alice:hunter2pw@[::1/simple/",
])
def test_credentials_in_an_index_url_that_does_not_parse_are_not_printed(
        tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Found in review: urlsplit's reason for such a URL quotes its host part whole
    (``netloc 'alice:hunter2＃pw@127.0.0.1:9' contains invalid characters ...``)."""
    from lockmirror.cli import main

    assert main(["check-install", str(tmp_path), "--index-url", url]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("lockmirror: error: --index-url: not a URL: ")
    assert captured.err.count("\n") == 1
    assert "hunter2" not in captured.err and "alice" not in captured.err
