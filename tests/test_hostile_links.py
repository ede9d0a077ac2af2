"""A hostile upstream index: hand-written PEP 503 and PEP 691 pages served from a real
HTTP server on 127.0.0.1 as a mirror's only source, read by ``lockmirror lock``.

* a file link on a host no source declares, or a ``file://`` link, is refused as the
  page is read: that host gets no request, nothing is cached, a local file is never
  opened, and the error says why no file is left (not a bare "no version");
* a file named with a path (``../../x.whl``, ``x%2F..%2Fx.whl``) is refused the same way;
* a PEP 691 field of the wrong JSON type refuses the page in one line naming the field.
"""

from __future__ import annotations

import json
import os
import re
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import QuietHandler, mirror_yaml, serving
from test_hostile_input import run_cli

DIGEST = "0" * 64
JSON_TYPE = "application/vnd.pypi.simple.v1+json"


class _PageHandler(QuietHandler):
    server: PageServer

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests.append(self.path)
        found = self.server.pages.get(self.path.split("?", 1)[0])
        if found is None:
            self.send_error(404)
            return
        content_type, body = found
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET


class PageServer(ThreadingHTTPServer):
    """Serves ``pages`` (path -> (content type, body)), 404 elsewhere; records every
    request path it was asked for."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _PageHandler)
        self.pages: dict[str, tuple[str, bytes]] = {}
        self.requests: list[str] = []
        self.lock = threading.Lock()


def html_page(*hrefs: str) -> tuple[str, bytes]:
    links = "".join(f'<a href="{href}">{href.rsplit("/", 1)[-1]}</a>\n' for href in hrefs)
    return "text/html", f"<!DOCTYPE html><html><body>\n{links}</body></html>\n".encode()


def json_page(project: str, *files: dict[str, object]) -> tuple[str, bytes]:
    return JSON_TYPE, json.dumps({"meta": {"api-version": "1.1"}, "name": project,
                                  "files": list(files)}).encode()


def json_file(filename: str, url: str, **fields: object) -> dict[str, object]:
    return {"filename": filename, "url": url, "hashes": {"sha256": DIGEST}, **fields}


def lock(tmp: Path, base: str, requirement: str) -> tuple[int, list[str]]:
    """``lockmirror lock`` of one set holding ``requirement`` from the source
    ``<base>/simple/``: (exit code, its error lines; progress lines left out)."""
    (tmp / "mirror.yaml").write_text(mirror_yaml(f"{base}/simple/", {"s": [requirement]}))
    done = run_cli("lock", cwd=tmp)
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    return done.returncode, [line for line in done.stderr.splitlines()
                             if not line.startswith("lock: ")]


def cached_blobs(tmp: Path) -> list[str]:
    blobs = tmp / ".cache" / "http" / "blobs"
    return sorted(p.name for p in blobs.rglob("*") if p.is_file()) if blobs.exists() else []


@pytest.mark.parametrize("form", ["html", "json"])
def test_a_link_to_a_host_no_source_declares_is_never_asked(tmp_path: Path, form: str) -> None:
    elsewhere = PageServer()
    with serving(elsewhere) as other_base:
        wheel = "p_host-1.0-py3-none-any.whl"
        url = f"{other_base}/files/{wheel}"
        elsewhere.pages[f"/files/{wheel}"] = ("application/octet-stream", b"PK")
        index = PageServer()
        index.pages["/simple/p-host/"] = (
            html_page(f"{url}#sha256={DIGEST}") if form == "html"
            else json_page("p-host", json_file(wheel, url, size=2)))
        with serving(index) as base:
            code, lines = lock(tmp_path, base, "p-host==1.0")
        assert elsewhere.requests == []  # not asked: no HEAD, no range, no .metadata
    assert code == 1 and len(lines) == 1, lines
    assert (f"no version of p-host matches 'p-host==1.0': 1 file of p-host 1.0 is outside "
            f"the file locations its source declares: {other_base} (that host was not asked)") in lines[0]
    assert cached_blobs(tmp_path) == []
    assert not (tmp_path / "lockfiles" / "pylock.s.toml").exists()


@pytest.mark.parametrize("scheme", ["file", "FILE"])
def test_a_file_link_is_never_opened(tmp_path: Path, scheme: str) -> None:
    """The link names a FIFO without a writer: opening it would block the lock. A scheme
    in capitals is the same scheme, said the same (it read as another host before)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    fifo = outside / "p_file-1.0-py3-none-any.whl"
    os.mkfifo(fifo)
    link = scheme + fifo.as_uri().removeprefix("file")
    index = PageServer()
    index.pages["/simple/p-file/"] = html_page(f"{link}#sha256={DIGEST}")
    project = tmp_path / "project"
    project.mkdir()
    with serving(index) as base:
        code, lines = lock(project, base, "p-file==1.0")
    assert code == 1 and len(lines) == 1, lines
    assert f"1 file of p-file 1.0 is a file:// link: {link} (not opened)" in lines[0]
    assert cached_blobs(project) == []


@pytest.mark.parametrize(("project", "page", "named"), [
    ("p-enc", html_page("/files/x%2F..%2Fp_enc-1.0-py3-none-any.whl#sha256=" + DIGEST),
     "x/../p_enc-1.0-py3-none-any.whl"),
    ("p-json3", json_page("p-json3", json_file("../../p_json3-1.0-py3-none-any.whl",
                                               "/files/p_json3-1.0-py3-none-any.whl")),
     "../../p_json3-1.0-py3-none-any.whl"),
])
def test_a_file_named_with_a_path_is_refused_and_said(
        tmp_path: Path, project: str, page: tuple[str, bytes], named: str) -> None:
    index = PageServer()
    index.pages[f"/simple/{project}/"] = page
    with serving(index) as base:
        code, lines = lock(tmp_path, base, f"{project}==1.0")
    assert code == 1 and len(lines) == 1, lines
    assert (f"no version of {project} matches '{project}==1.0': 1 file of {project} 1.0 is "
            f"named with a path: {named} (refused)") in lines[0]
    assert [p for p in index.requests if not p.startswith("/simple/")] == []


WHEEL = "p_bad-1.0-py3-none-any.whl"


@pytest.mark.parametrize(("fields", "says"), [
    ({"hashes": {"sha256": 12345}}, "'hashes' is not an object of hash names to hex digests"),
    ({"hashes": {"sha256": "abc"}}, "'hashes' is not an object whose sha256 is 64 hex"),
    ({"hashes": ["sha256"]}, "'hashes' is not an object of hash names"),
    ({"requires-python": 7}, "'requires-python' is not a string \\(it is 7\\)"),
    ({"requires-python": ["3"]}, "'requires-python' is not a string"),
    ({"size": -5}, "'size' is not a non-negative integer \\(it is -5\\)"),
    ({"size": "5"}, "'size' is not a non-negative integer"),
    ({"yanked": 3}, "'yanked' is not a boolean or a string"),
    ({"upload-time": 1700000000}, "'upload-time' is not a string"),
    ({"filename": 5}, "files\\[0\\]: 'filename' is not a string"),
    ({"url": {"href": "x"}}, "'url' is not a string"),
])
def test_a_json_field_of_the_wrong_type_refuses_the_page(
        tmp_path: Path, fields: dict[str, object], says: str) -> None:
    index = PageServer()
    entry = {**json_file(WHEEL, f"/files/{WHEEL}", size=2), **fields}
    index.pages["/simple/p-bad/"] = json_page("p-bad", entry)
    with serving(index) as base:
        code, lines = lock(tmp_path, base, "p-bad==1.0")
    assert code == 1 and len(lines) == 1, lines
    assert f"{base}/simple/p-bad/" in lines[0]
    assert "not valid PEP 691 JSON" in lines[0] and re.search(says, lines[0]), lines[0]
    assert [p for p in index.requests if not p.startswith("/simple/")] == []


@pytest.mark.parametrize(("project", "page", "says"), [
    # refused links that name no file of the project: named, never "no releases"
    ("p-x", html_page("/files/x%2F..%2Fx.whl#sha256=" + DIGEST),
     "1 link on its page was refused: x/../x.whl (a path in its file name)"),
    ("p-x", json_page("p-x", json_file("../../x.whl", "/files/x.whl")),
     "1 link on its page was refused: ../../x.whl (a path in its file name)"),
    ("p-x", html_page("data:text/plain,x"),
     "1 link on its page was refused: data:text/plain,x ('data:' URLs are not allowed; "
     "https only)"),
    ("p-x", html_page(*(f"file:///tmp/x{n}.whl" for n in range(5))),
     "5 links on its page were refused: file:///tmp/x0.whl (file:// URLs are never allowed "
     "in a lockfile), file:///tmp/x1.whl (file:// URLs are never allowed in a lockfile), "
     "file:///tmp/x2.whl (file:// URLs are never allowed in a lockfile); 2 more links refused"),
    # a refused file of the release and other refused links: all said (the links were
    # dropped whenever a file of the release was refused: found by an outside re-tester)
    ("p-x", html_page("https://evil.example/files/p_x-1.0-py3-none-any.whl",
                      "data:text/plain,x", "/files/x%2F..%2Fx.whl#sha256=" + DIGEST),
     "1 file of p-x 1.0 is outside the file locations its source declares: "
     "https://evil.example (that host was not asked); and 2 links on its page were refused: "
     "data:text/plain,x ('data:' URLs are not allowed; https only), x/../x.whl (a path in "
     "its file name)"),
    # a PEP 691 file name is not percent-decoded by the index, but a server may decode it
    ("p-jpath", json_page("p-jpath", json_file("x%2F..%2Fp_jpath-1.0-py3-none-any.whl",
                                               "/files/p_jpath-1.0-py3-none-any.whl")),
     "1 file of p-jpath 1.0 is named with a path: x%2F..%2Fp_jpath-1.0-py3-none-any.whl "
     "(refused)"),
])
def test_every_refused_link_is_said(tmp_path: Path, project: str, page: tuple[str, bytes],
                                    says: str) -> None:
    """A page whose every link was refused is never said to have no releases: each
    refused link is named (the first three) or counted."""
    index = PageServer()
    index.pages[f"/simple/{project}/"] = page
    with serving(index) as base:
        code, lines = lock(tmp_path, base, f"{project}==1.0")
    assert code == 1 and len(lines) == 1, lines
    assert f"no version of {project} matches '{project}==1.0': {says}" in lines[0], lines[0]
    assert "has no releases" not in lines[0]
    assert [p for p in index.requests if not p.startswith("/simple/")] == []


def test_a_refused_link_is_shown_as_written_but_its_credentials(tmp_path: Path) -> None:
    """A backslash before an '@' is where parsers disagree on the host: the link is shown
    as the page wrote it (it was shown as http://127.0.0.1:PORT/..., the trick gone); a
    user name and password are still left out."""
    index = PageServer()
    with serving(index) as base:
        port = base.rsplit(":", 1)[1]
        tricked = f"http://127.0.0.1:1\\@127.0.0.1:{port}/files/p_bs-1.0-py3-none-any.whl"
        secret = f"http://user:s3cret@127.0.0.1:{port}/files/p_bs-1.0-py3-none-any.whl"
        index.pages["/simple/p-bs/"] = html_page(tricked, secret)
        code, lines = lock(tmp_path, base, "p-bs==1.0")
    assert code == 1 and len(lines) == 1, lines
    assert ("is refused (the URL holds whitespace, a control character or a backslash): "
            f"{tricked} (not requested)") in lines[0], lines[0]
    assert ("is refused (the URL carries a user name or password; credentials belong in the "
            f"environment): http://127.0.0.1:{port}/files/p_bs-1.0-py3-none-any.whl") in lines[0]
    assert "s3cret" not in lines[0]


@pytest.mark.parametrize(("body", "says"), [
    ({"meta": {"api-version": "1.1"}, "name": "p-bad", "files": {"a": 1}},
     "'files' is an object, not a list"),
    ([{"filename": WHEEL}], "the page is a list, not an object"),
    ({"meta": {"api-version": "1.1"}, "name": "p-bad"}, "the page has no 'files'"),
    ({"meta": ["1.1"], "files": []}, "'meta' is a list, not an object"),
])
def test_a_json_page_of_the_wrong_shape_is_refused_saying_what_is_wrong(
        tmp_path: Path, body: object, says: str) -> None:
    """It said 'files[0] is not an object' of an object, and Python's "'list' object has
    no attribute 'get'" of a list."""
    index = PageServer()
    index.pages["/simple/p-bad/"] = (JSON_TYPE, json.dumps(body).encode())
    with serving(index) as base:
        code, lines = lock(tmp_path, base, "p-bad==1.0")
    assert code == 1 and len(lines) == 1, lines
    assert (f"{base}/simple/p-bad/: the project page is not valid PEP 691 JSON ({says})"
            ) in lines[0], lines[0]
