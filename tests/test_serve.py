"""``lockmirror serve``: negotiation, redirects, files, ranges, safety, and real clients.

One server (in-process, 127.0.0.1, free port) over the fixture mirror's index
serves the module; the CLI test starts ``lockmirror serve`` as a subprocess and
stops it by pid.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fixtureindex import Catalogue
from index_mirror import FixtureMirror, make_built_mirror, pins, pip_install, uv_compile

from lockmirror.errors import LockmirrorError
from lockmirror.formats.client_config import pip_config, render_pip_config
from lockmirror.formats.landing_page import EXAMPLE_URL
from lockmirror.stages.index import build_index
from lockmirror.stages.serve import MirrorServer
from lockmirror.stages.serve_headers import choose_format

JSON = "application/vnd.pypi.simple.v1+json"
PIP_ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; "
              "q=0.1, text/html; q=0.01")


@pytest.fixture(scope="module")
def mirror(catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> FixtureMirror:
    return make_built_mirror(catalogue, tmp_path_factory.mktemp("serve-mirror"))


@pytest.fixture(scope="module")
def log_lines() -> list[str]:
    return []


@pytest.fixture(scope="module")
def server(mirror: FixtureMirror, log_lines: list[str]) -> Iterator[MirrorServer]:
    with MirrorServer(mirror.out, "127.0.0.1", 0, log=log_lines.append) as running:
        yield running


def request(server: MirrorServer, path: str, method: str = "GET",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


# --------------------------------------------------------------------------
# PEP 691 negotiation and PEP 503 redirects
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("accept", "expected_type", "file"), [
    (None, "text/html; charset=utf-8", "index.html"),
    ("*/*", "text/html; charset=utf-8", "index.html"),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
     "text/html; charset=utf-8", "index.html"),
    (PIP_ACCEPT, JSON, "index.json"),
    (JSON, JSON, "index.json"),
    ("application/vnd.pypi.simple.latest+json", JSON, "index.json"),
    ("application/vnd.pypi.simple.v1+html", "application/vnd.pypi.simple.v1+html", "index.html"),
    ("application/vnd.pypi.simple.v1+json;q=0.2, text/html;q=0.5",
     "text/html; charset=utf-8", "index.html"),
    ("application/vnd.pypi.simple.v1+json, */*", JSON, "index.json"),
])
def test_content_negotiation(server: MirrorServer, mirror: FixtureMirror, accept: str | None,
                             expected_type: str, file: str) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    for path, directory in (("/simple/alpha/", "simple/alpha"), ("/simple/", "simple")):
        status, got, body = request(server, path, headers=headers)
        assert status == 200
        assert got["content-type"] == expected_type
        assert got["vary"] == "Accept"
        assert body == (mirror.out / directory / file).read_bytes()


def test_nothing_acceptable_is_406(server: MirrorServer) -> None:
    status, _, _ = request(server, "/simple/alpha/", headers={"Accept": "image/png"})
    assert status == 406
    assert choose_format("application/vnd.pypi.simple.v1+json;q=0") is None


def test_format_query_parameter(server: MirrorServer) -> None:
    status, headers, body = request(server, f"/simple/alpha/?format={JSON}")
    assert status == 200 and headers["content-type"] == JSON
    assert json.loads(body)["name"] == "alpha"


def test_direct_index_json_has_the_pep691_type(server: MirrorServer) -> None:
    status, headers, _ = request(server, "/simple/alpha/index.json")
    assert status == 200 and headers["content-type"] == JSON
    # the root page's files too: a file is no project name to normalize
    status, headers, body = request(server, "/simple/index.json")
    assert status == 200 and headers["content-type"] == JSON and b"alpha" in body
    status, headers, _ = request(server, "/simple/index.html")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"


@pytest.mark.parametrize(("path", "location"), [
    ("/simple/Foo.Bar_baz/", "/simple/foo-bar-baz/"),
    ("/simple/FOO-bar-BAZ", "/simple/foo-bar-baz/"),
    ("/simple/alpha", "/simple/alpha/"),
    ("/simple", "/simple/"),
    ("/files", "/files/"),
    # found by an outside tester: some client asked for these; nginx and http.server
    # answer them as with one slash, lockmirror serve answered 404
    ("/simple//alpha/", "/simple/alpha/"),
    ("/simple///Alpha", "/simple/Alpha"),
    ("/files//beta/x.whl?a=1", "/files/beta/x.whl?a=1"),
])
def test_redirects(server: MirrorServer, path: str, location: str) -> None:
    status, headers, _ = request(server, path)
    assert status == 301
    assert headers["location"] == location


def test_unknown_project_is_404(server: MirrorServer) -> None:
    assert request(server, "/simple/nothing-here/")[0] == 404


# --------------------------------------------------------------------------
# Files: types, HEAD, Range, caching
# --------------------------------------------------------------------------


def wheel_path(mirror: FixtureMirror) -> tuple[str, bytes]:
    item = mirror.catalogue.find("beta", "1.0")
    return f"/files/beta/{item.filename}", item.path.read_bytes()


def test_file_get_and_head(server: MirrorServer, mirror: FixtureMirror) -> None:
    path, data = wheel_path(mirror)
    status, headers, body = request(server, path)
    assert status == 200 and body == data
    assert headers["content-type"] == "application/octet-stream"
    assert headers["accept-ranges"] == "bytes"
    assert int(headers["content-length"]) == len(data)
    status, head_headers, head_body = request(server, path, method="HEAD")
    assert status == 200 and head_body == b""
    assert head_headers["content-length"] == str(len(data))
    assert head_headers["etag"] == headers["etag"]
    status, _, body = request(server, path + ".metadata")
    assert status == 200 and body == mirror.catalogue.find("beta", "1.0").metadata


def test_other_content_types(server: MirrorServer) -> None:
    assert request(server, "/")[1]["content-type"] == "text/html; charset=utf-8"
    assert request(server, "/manifest.json")[1]["content-type"] == "application/json"
    assert request(server, "/constraints/core-host.txt")[1]["content-type"].startswith(
        "text/plain")
    assert request(server, "/requirements/core-host.txt")[1]["content-type"] == \
        request(server, "/constraints/core-host.txt")[1]["content-type"]
    # as the publishers send it (formats.pages.content_type; tests/test_serve_content_types.py)
    assert request(server, "/lockfiles/pylock.core.toml")[1]["content-type"] == \
        "text/plain; charset=utf-8"


@pytest.mark.parametrize(("header", "span"), [
    ("bytes=0-9", (0, 9)),
    ("bytes=5-", (5, None)),
    ("bytes=-7", (-7, None)),
    ("bytes=10-100000000", (10, None)),
])
def test_range_requests(server: MirrorServer, mirror: FixtureMirror, header: str,
                        span: tuple[int, int | None]) -> None:
    path, data = wheel_path(mirror)
    status, headers, body = request(server, path, headers={"Range": header})
    start, end = span
    expected = data[start:] if end is None else data[start:end + 1]
    assert status == 206
    assert body == expected
    first = len(data) + start if start < 0 else start
    assert headers["content-range"] == f"bytes {first}-{first + len(expected) - 1}/{len(data)}"


def test_unsatisfiable_and_ignored_ranges(server: MirrorServer, mirror: FixtureMirror) -> None:
    path, data = wheel_path(mirror)
    status, headers, _ = request(server, path, headers={"Range": f"bytes={len(data)}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{len(data)}"
    status, _, body = request(server, path, headers={"Range": "bytes=0-1,4-5"})
    assert status == 200 and body == data
    status, _, body = request(server, path, headers={"Range": "lines=1-2"})
    assert status == 200 and body == data


def test_range_edges_head_vary_and_redirect_query(server: MirrorServer,
                                                  mirror: FixtureMirror) -> None:
    path, data = wheel_path(mirror)
    assert request(server, path, headers={"Range": "bytes=-0"})[0] == 416
    assert request(server, path, headers={"Range": "bytes=-1"})[2] == data[-1:]
    assert request(server, path, headers={"Range": "bytes=5-3"})[:3:2] == (200, data)
    whole = request(server, path, headers={"Range": f"bytes=-{len(data) + 50}"})
    assert whole[0] == 206 and whole[2] == data
    etag = request(server, path)[1]["etag"]
    assert request(server, path, headers={"If-None-Match": f'"other", {etag}'})[0] == 304
    status, headers, _ = request(server, "/simple/beta/", headers={"Accept": JSON})
    assert status == 200 and headers["vary"] == "Accept"
    status, headers, _ = request(server, "/simple/Beta/?format=" + JSON)
    assert status == 301 and headers["location"] == "/simple/beta/?format=" + JSON
    # HEAD sends headers only: the next response on the same connection is intact
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("HEAD", "/simple/beta/")
        head = connection.getresponse()
        assert head.status == 200 and head.read() == b""
        connection.request("GET", "/health")
        assert connection.getresponse().read() == b'{"status":"ok"}\n'
        connection.request("HEAD", "/no/such/file")
        missing = connection.getresponse()
        assert missing.status == 404 and missing.read() == b""
        connection.request("GET", "/health")
        assert connection.getresponse().read() == b'{"status":"ok"}\n'
    finally:
        connection.close()


def test_etag_revalidation(server: MirrorServer, mirror: FixtureMirror) -> None:
    path, _ = wheel_path(mirror)
    first = request(server, path)[1]
    etag = first["etag"]
    status, headers, body = request(server, path, headers={"If-None-Match": etag})
    assert status == 304 and body == b"" and headers["etag"] == etag
    # a 304 carries the Cache-Control a 200 would (RFC 9110 15.4.5), so a cache keeps it
    assert headers["cache-control"] == first["cache-control"]
    # weak comparison (a proxy may weaken the tag) and "*" revalidate too
    assert request(server, path, headers={"If-None-Match": f"W/{etag}"})[0] == 304
    assert request(server, path, headers={"If-None-Match": "*"})[0] == 304
    assert request(server, path, headers={"If-None-Match": '"stale"'})[0] == 200


def test_if_modified_since(server: MirrorServer, mirror: FixtureMirror) -> None:
    path, data = wheel_path(mirror)
    first = request(server, path)[1]
    modified = email.utils.parsedate_to_datetime(first["last-modified"]).timestamp()
    later = email.utils.formatdate(modified + 60, usegmt=True)
    earlier = email.utils.formatdate(modified - 60, usegmt=True)
    for since in (first["last-modified"], later):
        status, headers, body = request(server, path, headers={"If-Modified-Since": since})
        assert (status, body, headers["etag"]) == (304, b"", first["etag"])
    assert request(server, path, headers={"If-Modified-Since": earlier})[:3:2] == (200, data)
    assert request(server, path, headers={"If-Modified-Since": "yesterday"})[0] == 200
    # If-None-Match takes precedence (RFC 9110 13.2.2): a stale tag is a 200 whatever the date
    assert request(server, path, headers={"If-None-Match": '"stale"',
                                          "If-Modified-Since": later})[0] == 200
    assert request(server, path, headers={"If-None-Match": first["etag"],
                                          "If-Modified-Since": earlier})[0] == 304


def test_if_range(server: MirrorServer, mirror: FixtureMirror) -> None:
    path, data = wheel_path(mirror)
    first = request(server, path)[1]
    for current in (first["etag"], first["last-modified"]):
        status, _, body = request(server, path, headers={"Range": "bytes=0-9", "If-Range": current})
        assert (status, body) == (206, data[:10])
    # another version of the file (or a weak tag, never a match for If-Range): all of it
    stale_date = email.utils.formatdate(
        email.utils.parsedate_to_datetime(first["last-modified"]).timestamp() - 60, usegmt=True)
    for stale in ('"stale"', f"W/{first['etag']}", stale_date):
        status, headers, body = request(server, path, headers={"Range": "bytes=0-9",
                                                               "If-Range": stale})
        assert (status, body) == (200, data) and "content-range" not in headers
    # nor is a 416 sent for a range of another version
    status, _, body = request(server, path, headers={"Range": f"bytes={len(data)}-",
                                                     "If-Range": '"stale"'})
    assert (status, body) == (200, data)


@pytest.mark.parametrize(("method", "status"), [
    ("POST", 405), ("PUT", 405), ("DELETE", 405), ("OPTIONS", 405), ("PATCH", 405),
    ("BREW", 501)])
def test_other_methods(server: MirrorServer, log_lines: list[str], method: str,
                       status: int) -> None:
    answer = request(server, "/simple/beta/", method=method)
    assert answer[0] == status and answer[1]["content-type"] == "text/plain; charset=utf-8"
    if status == 405:
        assert answer[1]["allow"] == "GET, HEAD"
    # logged once, in the server's own format, with the path
    deadline = time.monotonic() + 10
    line = f'127.0.0.1 "{method} /simple/beta/ HTTP/1.1" {status} '
    while not any(entry.startswith(line) for entry in log_lines):
        assert time.monotonic() < deadline, log_lines[-5:]
        time.sleep(0.01)
    assert not any(method in entry and "code" in entry for entry in log_lines)


def test_a_body_after_a_refused_method_is_not_read_as_a_request(server: MirrorServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\n"
                     b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 405 ") and reply.count(b"HTTP/1.1") == 1


def test_health(server: MirrorServer) -> None:
    status, headers, body = request(server, "/health")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"status": "ok"}


# --------------------------------------------------------------------------
# Safety
# --------------------------------------------------------------------------


def raw_get(server: MirrorServer, path: str) -> int:
    """Send the request line exactly as given (no client-side normalization)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1])


@pytest.mark.parametrize("path", [
    "/../../../../etc/passwd",
    "/files/../../../../etc/passwd",
    "/files/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/simple/..%2f..%2f..%2fetc/passwd",
    "/files/beta/..%5c..%5cmanifest.json",
    "/.hidden",
    "/files/beta/%00",
    "/simple/" + "a" * 256 + "/",  # a name too long for the file system: 404, no traceback
])
def test_no_path_traversal(server: MirrorServer, mirror: FixtureMirror, path: str) -> None:
    # a hidden file really exists (the shape atomic writes leave), so refusing it is tested
    (mirror.out / ".hidden").write_text("not for clients")
    try:
        assert raw_get(server, path) == 404
    finally:
        (mirror.out / ".hidden").unlink()


@pytest.mark.parametrize("target", ["\\evil.com", "\\\\evil.com", "evil.com", "http:\\\\evil.com",
                                    "ftp://evil.com/", "*"])
def test_a_target_that_is_not_a_path_is_400(server: MirrorServer, target: str) -> None:
    # not a 301 to "\evil.com/", which a browser reads as another host
    assert raw_get(server, target) == 400


def test_absolute_form_is_served(server: MirrorServer) -> None:
    assert raw_get(server, f"http://127.0.0.1:{server.port}/health") == 200


def test_symlink_out_of_the_tree_is_not_followed(mirror: FixtureMirror, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    tree = tmp_path / "tree"
    build_index(mirror.lockfiles, mirror.store, tree)
    (tree / "files" / "leak.txt").symlink_to(secret)
    with MirrorServer(tree, "127.0.0.1", 0) as running:
        assert raw_get(running, "/files/leak.txt") == 404
        assert raw_get(running, "/simple/alpha/") == 200


def test_a_request_during_an_import_swap_waits_for_the_new_tree(mirror: FixtureMirror,
                                                                tmp_path: Path) -> None:
    """``lockmirror import`` swaps trees with two renames (import_swap.swap_into_place):
    the mirror to the old name, then the staging tree to the mirror's. Requests that
    come between them wait for the new tree instead of answering 404."""
    served, staging = tmp_path / "mirror", tmp_path / "staging"
    shutil.copytree(mirror.out, served)
    shutil.copytree(mirror.out, staging)
    wheel = wheel_path(mirror)[0]
    paths = ["/simple/", "/simple/beta/", "/manifest.json", wheel, wheel + ".metadata", "/files"]
    with MirrorServer(served, "127.0.0.1", 0) as running:
        os.rename(served, tmp_path / "old")  # the first rename
        answers: dict[str, int] = {}
        clients = [threading.Thread(target=lambda path=path: answers.update(
            {path: request(running, path, headers={"Accept": JSON})[0]})) for path in paths]
        for client in clients:
            client.start()
        time.sleep(0.3)
        os.rename(staging, served)  # the second
        for client in clients:
            client.join(timeout=30)
        assert answers == dict.fromkeys(paths, 200) | {"/files": 301}
        # a file the new tree does not hold is 404 (at once: the tree is there)
        assert request(running, "/files/beta/gone-1.0.tar.gz")[0] == 404
        # a tree gone for good: 404 after the short wait, not a hang
        os.rename(served, tmp_path / "gone")
        assert request(running, "/simple/")[0] == 404


def test_refuses_a_tree_that_is_not_an_index(tmp_path: Path) -> None:
    with pytest.raises(LockmirrorError, match="is not a mirror") as caught:
        MirrorServer(tmp_path, "127.0.0.1", 0)
    assert caught.value.where == str(tmp_path)
    assert caught.value.hint == f"import a bundle into it first: lockmirror import BUNDLE.tar --into {tmp_path}"


def test_a_path_no_import_could_go_to_is_not_told_to_take_one(
        mirror: FixtureMirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``serve /tmp`` (a directory holding other things) and ``serve afile`` suggested
    ``lockmirror import BUNDLE.tar --into`` that path: an import replaces the whole
    tree. Only a missing or empty directory (or a mirror lacking a part) gets that
    hint; the others say what is missing and point at the mirror, as verify does."""
    from lockmirror.cli import main

    afile = tmp_path / "afile"
    afile.write_text("not a mirror")
    project = tmp_path / "project"  # holds a built index beside other files
    shutil.copytree(mirror.out, project / "dist-index")
    (project / "mirror.yaml").write_text("version: 1\n")
    said = {}
    for command in ("serve", "verify"):
        for path in (afile, project, project / "dist-index" / "simple"):
            assert main([command, str(path), *(["--port", "0"] if command == "serve" else [])]
                        ) == 1
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "lockmirror import" not in err, err
            said[command, path.name] = err
    for command in ("serve", "verify"):
        assert said[command, "afile"] == (
            f"lockmirror: error: {afile}: is a file, not a mirror directory (give the "
            "directory of a built index (dist-index/) or of an imported mirror, the one "
            "holding manifest.json)\n")
        assert said[command, "project"] == (
            f"lockmirror: error: {project}: is not a lockmirror index or mirror (no "
            "manifest.json, and it holds other files) (the mirror is "
            f"{project / 'dist-index'}: give that)\n")
        assert said[command, "simple"].startswith(
            f"lockmirror: error: {project / 'dist-index' / 'simple'}: is not a lockmirror "
            "index or mirror (no manifest.json, and it holds other files) (give the "
            "directory of a built index (dist-index/) or of an imported mirror")
    assert afile.read_text() == "not a mirror"


def test_a_directory_that_does_not_exist_is_said_to_be_none(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``serve /tmp/x/nonexist`` said "is not a mirror (no simple/index.html)": serve and
    verify say the directory does not exist, and where an import could put a mirror."""
    from lockmirror.cli import main

    gone = tmp_path / "x" / "nonexist"
    for command in ("serve", "verify"):
        assert main([command, str(gone), *(["--port", "0"] if command == "serve" else [])]
                    ) == 1
        assert capsys.readouterr().err == (
            f"lockmirror: error: {gone}: no such directory (give the directory of a built "
            "index (dist-index/) or of an imported mirror, or import a bundle there: "
            f"lockmirror import BUNDLE.tar --into {gone})\n")
    assert not gone.exists()


@pytest.mark.parametrize(("idle_timeout", "max_connections", "refused"), [
    (0, 10, True), (-1, 10, True), (1, 0, True), (float("inf"), 10, True), (0.01, 1, False)])
def test_connection_limits_must_be_positive(mirror: FixtureMirror, idle_timeout: float,
                                            max_connections: int, refused: bool) -> None:
    if refused:
        with pytest.raises(LockmirrorError, match="must be positive"):
            MirrorServer(mirror.out, "127.0.0.1", 0, idle_timeout=idle_timeout,
                         max_connections=max_connections)
        return
    with MirrorServer(mirror.out, "127.0.0.1", 0, idle_timeout=idle_timeout,
                      max_connections=max_connections) as running:
        assert running.httpd.max_connections == 1 and request(running, "/health")[0] == 200


def test_port_in_use_is_a_clear_error(server: MirrorServer, mirror: FixtureMirror) -> None:
    with pytest.raises(LockmirrorError, match="cannot listen on 127.0.0.1"):
        MirrorServer(mirror.out, "127.0.0.1", server.port)


# --------------------------------------------------------------------------
# Threads, log
# --------------------------------------------------------------------------


def test_threaded_and_logged(server: MirrorServer, mirror: FixtureMirror,
                             log_lines: list[str]) -> None:
    # an idle connection must not block anyone
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        results: list[int] = []

        def fetch() -> None:
            results.append(request(server, "/simple/beta/", headers={"Accept": PIP_ACCEPT})[0])

        threads = [threading.Thread(target=fetch) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert results == [200] * 16
    finally:
        idle.close()
    assert any(re.search(r'^127\.0\.0\.1 "GET /simple/beta/ HTTP/1\.1" 200 \d+ [\d.]+ms$', line)
               for line in log_lines), log_lines[-5:]


def test_idle_connections_are_closed_and_threads_capped(mirror: FixtureMirror) -> None:
    """50 silent clients against a server capped at 8 connections with a 0.5 s
    idle timeout: never more than 8 connection threads, every silent socket is
    closed by the server (those beyond the cap after a 503 naming Retry-After), and
    a real request is answered afterwards."""
    peak = 0
    done = threading.Event()

    def connection_threads() -> int:
        return sum(1 for t in threading.enumerate() if "process_request_thread" in t.name)

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, connection_threads())
            done.wait(0.005)

    with MirrorServer(mirror.out, "127.0.0.1", 0, idle_timeout=0.5, max_connections=8) as running:
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        idle = [socket.create_connection(("127.0.0.1", running.port), timeout=60)
                for _ in range(50)]
        try:
            replies = [read_to_close(sock) for sock in idle]
        finally:
            for sock in idle:
                sock.close()
            done.set()
            sampler.join()
        cut = [reply for reply in replies if reply == b""]
        busy = [reply for reply in replies if reply.startswith(b"HTTP/1.1 503 ")]
        assert len(cut) + len(busy) == 50 and cut
        assert all(b"\r\nRetry-After: 1\r\n" in reply for reply in busy)
        assert 1 <= peak <= 8
        assert request_when_free(running.port, "/health") == 200


def read_to_close(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection (a reset counts as a close)."""
    reply = b""
    try:
        while chunk := sock.recv(65536):
            reply += chunk
    except ConnectionResetError:
        pass
    return reply


def request_when_free(port: int, path: str) -> int:
    """The status of GET ``path``, asked again after a 503 (all connections busy) as
    pip and uv do: a slot is released a moment after its connection closes."""
    for _ in range(20):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", path)
            status = connection.getresponse().status
        finally:
            connection.close()
        if status != 503:
            return status
        time.sleep(0.1)
    return status


@pytest.fixture
def serve_child(mirror: FixtureMirror) -> Iterator[Callable[..., int]]:
    """Start ``lockmirror serve`` (a child process on a free port) with the given
    options; return its port. Stopped by pid at the end."""
    children: list[subprocess.Popen[str]] = []

    def start(*options: str) -> int:
        process = subprocess.Popen(
            [sys.executable, "-m", "lockmirror", "serve", str(mirror.out), "--port", "0",
             "--quiet", *options], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        children.append(process)
        assert process.stdout is not None
        match = re.search(r"at http://127\.0\.0\.1:(\d+)/ ", process.stdout.readline())
        assert match
        return int(match.group(1))

    yield start
    for process in children:
        os.kill(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def trickle(port: int, count: int, limit: float
            ) -> tuple[list[socket.socket], threading.Thread, list[socket.socket]]:
    """``count`` clients that send a request line, then a header line every 0.5 s
    (never the blank line ending the headers), until the server closes them or
    ``limit`` seconds pass; the thread returns when all are closed or at the limit,
    and the third list then holds those the server had not closed.
    (http.server refuses a 101st header line: at 0.5 s a line, after 50 s.)"""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]
    for sock in socks:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    open_ = list(socks)

    def run() -> None:
        end = time.monotonic() + limit
        while open_ and time.monotonic() < end:
            time.sleep(0.5)
            for sock in list(open_):
                try:
                    sock.sendall(b"X-Slow: 1\r\n")
                    if select.select([sock], [], [], 0)[0] and not sock.recv(1):
                        open_.remove(sock)  # closed by the server
                except OSError:  # reset or broken pipe: closed by the server
                    open_.remove(sock)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return socks, thread, open_


def test_slow_headers_are_cut_at_a_deadline(serve_child: Callable[..., int]) -> None:
    """Clients sending a header line every 0.5 s kept their threads for ever while the
    idle timeout counted per read; now the headers must be in within --idle-timeout
    of the request's first byte. Meanwhile a normal request is answered."""
    port = serve_child("--max-connections", "4", "--idle-timeout", "2")
    socks, thread, still_open = trickle(port, 3, limit=30)
    try:
        assert request_when_free(port, "/health") == 200
        thread.join(timeout=90)
        assert not thread.is_alive()
        assert still_open == []  # the server closed every one before the trickle's limit
    finally:
        for sock in socks:
            sock.close()
    assert request_when_free(port, "/health") == 200


def test_connections_beyond_the_cap_are_answered_at_once(serve_child: Callable[..., int]) -> None:
    """With every slot held, new connections get 503 with Retry-After at once, not
    one after another after an idle timeout each (serially: 4, 8, 12, 16, 20 s)."""
    port = serve_child("--max-connections", "2", "--idle-timeout", "4")
    socks, thread, still_open = trickle(port, 2, limit=30)
    try:
        time.sleep(0.5)  # both held
        answers: dict[int, tuple[float, bytes]] = {}
        started = time.monotonic()

        def client(index: int) -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answers[index] = (time.monotonic() - started, read_to_close(sock))

        clients = [threading.Thread(target=client, args=(i,)) for i in range(5)]
        for each in clients:
            each.start()
        for each in clients:
            each.join(timeout=60)
        assert sorted(answers) == list(range(5))
        for _elapsed, reply in answers.values():  # the old code closed them unanswered
            assert reply.startswith(b"HTTP/1.1 503 ") and b"\r\nRetry-After: 1\r\n" in reply
        thread.join(timeout=90)
        assert still_open == []  # the holders are cut at their deadline
    finally:
        for sock in socks:
            sock.close()
    assert request_when_free(port, "/health") == 200


def _listening_address(pid: int, port: int) -> str:
    """The local IPv4 address of the socket listening on ``port`` in the process
    ``pid``'s network namespace, read from /proc (what the kernel bound)."""
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, hex_port = fields[1].split(":")
        if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
            return socket.inet_ntoa(bytes.fromhex(address)[::-1])
    raise AssertionError(f"nothing listens on port {port}")


def test_default_bind_is_loopback_on_the_socket(mirror: FixtureMirror) -> None:
    with MirrorServer(mirror.out, port=0) as running:
        assert running.httpd.socket.getsockname()[0] == "127.0.0.1"
        assert _listening_address(os.getpid(), running.port) == "127.0.0.1"


# --------------------------------------------------------------------------
# Real clients over HTTP
# --------------------------------------------------------------------------


def test_uv_over_http(server: MirrorServer, tmp_path: Path) -> None:
    assert pins(uv_compile(server.simple_url, "alpha\n", "3.11", tmp_path)) == {"alpha==1.1"}
    assert pins(uv_compile(server.simple_url, "beta\nyanky\n", "3.12", tmp_path)) == {
        "alpha==2.0", "beta==1.0", "foo-bar-baz==1.0", "yanky==1.0"}


def test_pip_over_http(server: MirrorServer, tmp_path: Path) -> None:
    installed = pip_install(server.simple_url, ["beta", "Foo.Bar_baz"], tmp_path / "venv")
    assert installed == "alpha==1.1 beta==1.0 foo-bar-baz==1.0"


# --------------------------------------------------------------------------
# The commands
# --------------------------------------------------------------------------


def test_serve_command(mirror: FixtureMirror) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "lockmirror", "serve", str(mirror.out), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logged: list[str] = []
    assert process.stdout is not None and process.stderr is not None
    reader = threading.Thread(target=lambda: logged.extend(iter(process.stderr.readline, "")),
                              daemon=True)
    reader.start()
    try:
        first = process.stdout.readline()
        match = re.search(r"at http://127\.0\.0\.1:(\d+)/ ", first)
        assert match, first
        # what the socket is bound to, not only what was printed
        assert _listening_address(process.pid, int(match.group(1))) == "127.0.0.1"
        connection = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=10)
        connection.request("GET", "/health")
        assert connection.getresponse().status == 200
        connection.close()
        deadline = time.monotonic() + 10
        while not any('"GET /health HTTP/1.1" 200' in line for line in logged):
            assert time.monotonic() < deadline, logged
            time.sleep(0.05)
    finally:
        os.kill(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)  # a loaded CI machine can be slow to run the handler
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0
    # the client configuration it printed limits uv lock to the index's targets, as the
    # landing page does (from landing.json)
    printed = process.stdout.read()
    assert "environments = [" in printed
    assert 'sys_platform == "linux" and platform_machine == "aarch64"' in printed


def test_pip_config_command(capsys: pytest.CaptureFixture[str]) -> None:
    from lockmirror.cli import main

    assert main(["pip-config", "http://mirror.internal:8080/simple"]) == 0
    out = capsys.readouterr().out
    assert out == render_pip_config("http://mirror.internal:8080/simple/")
    assert "index-url = http://mirror.internal:8080/simple/\n" in out
    assert "trusted-host = mirror.internal\n" in out
    # the one-command line too (found by an outside tester: pip ignored the mirror)
    assert ("pip install --index-url http://mirror.internal:8080/simple/ --trusted-host "
            "mirror.internal PACKAGE\n") in out
    assert "export PIP_INDEX_URL=http://mirror.internal:8080/simple/" in out
    assert "export UV_DEFAULT_INDEX=http://mirror.internal:8080/simple/" in out
    assert "export UV_INDEX_URL=http://mirror.internal:8080/simple/" in out
    assert '[[tool.uv.index]]\nname = "mirror"\nurl = "http://mirror.internal:8080/simple/"' in out
    assert "[[index]]" in out
    https = render_pip_config("https://mirror.example/simple/")
    assert "trusted-host" not in https
    assert main(["pip-config", "mirror.example"]) == 2  # bad input
    assert "not an http(s) or file URL" in capsys.readouterr().err


@pytest.mark.parametrize(("url", "code"), [("https://alice:s3cretPW@mirror.lan/simple/", 2),
                                           ("https://s3cretPW@mirror.lan/simple/", 2),
                                           ("https://alice:s3cretPW@[mirror.lan/simple/", 2),
                                           # no scheme: refused as any such URL is
                                           ("alice:s3cretPW@mirror.lan/simple/", 2)])
def test_pip_config_refuses_a_url_with_credentials(
        url: str, code: int, capsys: pytest.CaptureFixture[str]) -> None:
    """``pip-config https://u:p@mirror.lan/simple/`` printed the password into every
    snippet (pip.conf, PIP_INDEX_URL, the pyproject.toml users commit): refused in one
    line, as ``lockfile --base-url`` and ``check-install --index-url`` refuse it, with
    where pip and uv take credentials from instead, and never the secret."""
    from lockmirror.cli import main

    assert main(["pip-config", url]) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert "s3cretPW" not in captured.err and "alice" not in captured.err
    if url.startswith("https://"):
        assert "carries credentials" in captured.err
        assert "keyring" in captured.err and "netrc" in captured.err


@pytest.mark.parametrize("url", ["https://host.example/simple/?token=s3cretPW",
                                 "https://host.example/simple?token=s3cretPW",
                                 "https://alice:pw@host.example/simple/?token=s3cretPW",
                                 "https://host.example/simple/#s3cretPW",
                                 "host.example/simple/?token=s3cretPW"])
def test_pip_config_refuses_a_url_with_a_query(
        url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``pip-config https://host/simple/?token=T`` printed ``index-url =
    https://host/simple/?token=T/`` (a ``/`` appended to the query) with the token in
    it: pip joins project names onto the path and drops the query, so no such URL
    works. Refused in one line (exit 2), the query not echoed, with the hint the
    credential refusal gives."""
    from lockmirror.cli import main

    assert main(["pip-config", url]) == 2  # bad input, a URL or not
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert "s3cretPW" not in captured.err and "token" not in captured.err
    if url.startswith("https://"):
        assert "host.example/simple" in captured.err
        assert "keyring" in captured.err and "netrc" in captured.err


def test_serve_on_every_address_gives_clients_this_machines_name() -> None:
    """``serve --host 0.0.0.0`` printed a client configuration for http://0.0.0.0:PORT/
    (pip told ``trusted-host = 0.0.0.0``), which no other machine can use."""
    from lockmirror.commands.serve import client_url

    name = socket.gethostname()
    assert client_url("http://0.0.0.0:8080/simple/") == f"http://{name}:8080/simple/"
    assert client_url("http://[::]:8080/simple/") == f"http://{name}:8080/simple/"
    for kept in ("http://127.0.0.1:8080/simple/", "http://10.0.0.5:8080/simple/",
                 "http://mirror.internal:8080/simple/"):
        assert client_url(kept) == kept
    assert "0.0.0.0" not in render_pip_config(client_url("http://0.0.0.0:8080/simple/"))


def test_landing_page_shows_the_same_configuration(mirror: FixtureMirror) -> None:
    import html

    page = html.unescape((mirror.out / "index.html").read_text())
    for snippet in pip_config(EXAMPLE_URL):
        assert snippet.text in page


def test_a_client_gone_before_its_error_page_is_one_log_line(
        mirror: FixtureMirror, capfd: pytest.CaptureFixture[str]) -> None:
    """101 header lines (http.server answers 431 itself), then a reset: socketserver
    printed a traceback on the server's stderr for each such client (found by a
    reviewer); now the log says the connection was lost, and stderr stays quiet."""
    log_lines: list[str] = []
    with MirrorServer(mirror.out, "127.0.0.1", 0, log=log_lines.append) as running:
        port = running.port
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.sendall(b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * 101)
            sock.close()  # a reset, before the 431 is written
        time.sleep(0.5)
        assert request_when_free(port, "/health") == 200
    assert "Traceback" not in capfd.readouterr().err
