"""A hostile upstream index ends `lock` and `fetch` in one line: never a crash, a hang
or gigabytes in memory and on disk.

The upstream is real: the fixture index on 127.0.0.1, or a small handler that lies
about Content-Length or trickles its body a byte at a time (which no read timeout
catches: every byte comes in time). ``lock`` runs as the CLI in a subprocess with a
timeout and an address-space limit, so a regression fails instead of hanging or
swapping; the slow-body figures come through the environment
(``LOCKMIRROR_PAGE_DEADLINE``, ``LOCKMIRROR_RATE_WINDOW``) so a test takes seconds.
"""

from __future__ import annotations

import io
import re
import resource
import struct
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import replace
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from fixtureindex import Catalogue, FixtureIndex, build_wheel
from helpers import QuietHandler, mirror_yaml, serving, subprocess_env
from test_fetch import make_lockfile

from lockmirror.errors import NetworkError
from lockmirror.formats.core_metadata import (
    MAX_METADATA_BYTES,
    MetadataError,
    archive_metadata,
    read_metadata,
)
from lockmirror.formats.store import Store
from lockmirror.net.http import make_session
from lockmirror.stages.fetch import fetch

MakeIndex = Callable[..., FixtureIndex]
TIMEOUT = 120         # seconds; each refusal takes a few, a regression hangs
MEMORY = 3 << 30      # address space: the old code's gigabytes hit it instead of swapping
BOMB = "bomb-1.0-py3-none-any.whl"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def lock(project: Path, **environ: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lockmirror", "lock", "--set", "s"],
                          cwd=project, env=subprocess_env(drop=["LOCKMIRROR_"], **environ),
                          capture_output=True, text=True, timeout=TIMEOUT,
                          preexec_fn=_limit_memory, check=False)


def project_for(tmp_path: Path, url: str, requirement: str) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "mirror.yaml").write_text(mirror_yaml(url, {"s": [requirement]}))
    return project


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a failed run (exit 1, no traceback)."""
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("lockmirror: error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


# --------------------------------------------------------------------------
# a zip bomb: METADATA inflating far past any real package's
# --------------------------------------------------------------------------


def zip_bomb(directory: Path) -> Path:
    """A wheel whose METADATA inflates to past MAX_METADATA_BYTES (a few KiB deflated)."""
    directory.mkdir()
    built = build_wheel(directory / "built", "bomb", "1.0")
    bomb = directory / BOMB
    with zipfile.ZipFile(built) as source, \
            zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith(".dist-info/METADATA"):
                data += b"\n" + b"a" * (MAX_METADATA_BYTES + 1)
            out.writestr(info.filename, data)
    built.unlink()
    return bomb


@pytest.mark.parametrize("pep658", [True, False], ids=["metadata-file", "from-the-wheel"])
def test_lock_refuses_a_zip_bomb_wheels_metadata_and_keeps_nothing(
        tmp_path: Path, make_index: MakeIndex, pep658: bool) -> None:
    zip_bomb(tmp_path / "files")
    index = make_index(tmp_path / "files")
    index.no_metadata = not pep658  # without the PEP 658 file, METADATA is read by Range
    project = project_for(tmp_path, index.url, "bomb")
    line = error_line(lock(project))
    assert BOMB in line and "16.0 MiB" in line, line
    assert not (project / "lockfiles" / "pylock.s.toml").exists()
    kept = [p for p in (project / ".cache").rglob("*") if p.is_file()
            and p.stat().st_size > MAX_METADATA_BYTES]
    assert kept == []


def test_fetch_says_a_locked_wheels_metadata_is_past_the_cap(
        tmp_path: Path, make_index: MakeIndex) -> None:
    """A lockfile (hand-made: lock refuses such a wheel) locks a zip bomb's metadata file:
    the METADATA read out of the stored wheel is refused for its size, and fetch says so
    (it said the upstream no longer had the .metadata file, HTTP 404)."""
    zip_bomb(tmp_path / "files")
    index = make_index(tmp_path / "files")
    index.no_metadata = True  # the upstream serves no .metadata: the wheel's is the one read
    locked = make_lockfile(index, "core", [BOMB])
    assert locked.packages[0].wheels[0].metadata_sha256 is not None
    store = Store(tmp_path / "store")
    with make_session(retries=0) as session, pytest.raises(MetadataError) as caught:
        fetch([locked], store, session=session, retries=0)
    message = str(caught.value)
    assert "\n" not in message and "404" not in message, message
    assert message.startswith(f"{BOMB}.metadata: the METADATA of the locked wheel {BOMB} "
                              "(bomb-1.0.dist-info/METADATA): core metadata of "), message
    assert "is more than the 16.0 MiB lockmirror reads; refused" in message, message
    assert store.has(locked.packages[0].wheels[0].sha256)  # the wheel itself is kept


def test_the_one_reader_refuses_core_metadata_past_the_cap_wherever_it_lies(
        tmp_path: Path) -> None:
    bomb = zip_bomb(tmp_path / "files")
    with pytest.raises(MetadataError, match=r"16\.0 MiB") as caught:
        archive_metadata(bomb.read_bytes(), bomb.name)
    assert str(caught.value).startswith(f"{BOMB}: bomb-1.0.dist-info/METADATA: ")
    sdist = io.BytesIO()
    with tarfile.open(fileobj=sdist, mode="w:gz") as out:
        info = tarfile.TarInfo("bomb-1.0/PKG-INFO")
        info.size = MAX_METADATA_BYTES + 1
        out.addfile(info, io.BytesIO(b"a" * info.size))
    with pytest.raises(MetadataError, match=r"^bomb-1\.0\.tar\.gz: bomb-1\.0/PKG-INFO: .*16\.0 MiB"):
        archive_metadata(sdist.getvalue(), "bomb-1.0.tar.gz")
    wheel = build_wheel(tmp_path / "beside", "fine", "1.0")  # a PEP 658 file beside it
    beside = wheel.with_name(wheel.name + ".metadata")
    beside.write_bytes(b"Name: fine\n" + b"a" * MAX_METADATA_BYTES)
    with pytest.raises(MetadataError, match=r"16\.0 MiB"):
        read_metadata(wheel)


# --------------------------------------------------------------------------
# project pages: a lying Content-Length, a trickle
# --------------------------------------------------------------------------


class _HostilePage(QuietHandler):
    """Every project page states ``stated`` bytes, then sends ``body`` one byte every
    ``pause`` seconds (all at once when ``pause`` is 0), until the client goes."""

    stated = 0
    body = b""
    pause = 0.0

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
        self.send_header("Content-Length", str(self.stated))
        self.end_headers()
        try:
            if not self.pause:
                self.wfile.write(self.body)
                return
            for byte in self.body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(self.pause)
        except OSError:
            pass  # the client gave up
        self.close_connection = True


def hostile_page(stated: int, body: bytes, pause: float) -> ThreadingHTTPServer:
    handler = type("Handler", (_HostilePage,), {"stated": stated, "body": body, "pause": pause})
    return ThreadingHTTPServer(("127.0.0.1", 0), handler)


def test_a_page_stating_a_huge_content_length_is_refused_naming_url_and_cap(
        tmp_path: Path) -> None:
    with serving(hostile_page(99999999999, b'{"meta": {"api-version": "1.1"}', 0)) as base:
        project = project_for(tmp_path, f"{base}/simple/", "alpha")
        line = error_line(lock(project))
    assert f"{base}/simple/alpha/" in line and "64.0 MiB" in line, line
    assert "99999999999 bytes" in line, line


def test_a_trickling_page_is_given_up_at_its_deadline(tmp_path: Path) -> None:
    with serving(hostile_page(100000, b" " * 100000, 0.05)) as base:
        project = project_for(tmp_path, f"{base}/simple/", "alpha")
        line = error_line(lock(project, LOCKMIRROR_PAGE_DEADLINE="2"))
    assert f"{base}/simple/alpha/" in line, line
    assert "the body took more than 2 s" in line and "bytes received" in line, line


# --------------------------------------------------------------------------
# fetch: a wheel trickled a byte at a time
# --------------------------------------------------------------------------


class _TrickleFile(QuietHandler):
    """The file's bytes, stated in full, sent one byte every 50 ms until the client goes."""

    def do_GET(self) -> None:
        body: bytes = self.server.body  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for byte in body:
                if self.server.done.is_set():  # type: ignore[attr-defined]
                    break
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass
        self.close_connection = True


def test_a_trickled_download_is_given_up_and_its_bytes_kept(
        fixture_index: FixtureIndex, catalogue: Catalogue, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKMIRROR_RATE_WINDOW", "1")
    entry = catalogue.find("alpha", "1.0")
    lock_ = make_lockfile(fixture_index, "core", [entry.filename])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TrickleFile)
    server.body = entry.path.read_bytes()  # type: ignore[attr-defined]
    server.done = threading.Event()  # type: ignore[attr-defined]
    store = Store(tmp_path / "store")
    with serving(server) as base:
        url = f"{base}/files/alpha/{entry.filename}"
        trickled = replace(lock_, packages=tuple(
            replace(p, wheels=tuple(replace(w, url=url) for w in p.wheels))
            for p in lock_.packages))
        try:
            with make_session(retries=0) as session, pytest.raises(NetworkError) as caught:
                fetch([trickled], store, session=session, retries=1)
        finally:
            server.done.set()  # type: ignore[attr-defined]
    message = str(caught.value)
    assert url in message  # the seconds are the clock's: 1 s, or more on a busy machine
    assert re.search(r"fewer than 1\.0 KiB a second arrived over \d+ s", message), message
    assert "bytes received, after 1 retry" in message
    partial = store.partial_path(entry.sha256)
    assert partial.is_file() and partial.stat().st_size > 0  # a re-run resumes from them


# --------------------------------------------------------------------------
# lock: a wheel's METADATA read from a server that decides how much is read
# --------------------------------------------------------------------------

HOSTILE_WHEEL = "hostile-1.0-py3-none-any.whl"


class _HostileWheel(QuietHandler):
    """A PEP 503 HTML page (which states no size) linking one wheel, served as ``mode``:

    - "other-range": every Range request is answered 206 with ``bytes 0-N-1/N`` and
      N bytes (the whole "file", not the tail asked for);
    - "huge-directory": Range honoured over ``length`` zero bytes ending in a zip end
      record that states a central directory of ``directory`` bytes;
    - "huge-body": Range ignored, 200 stating ``length`` bytes; one MiB sent.
    """

    mode = ""
    length = 0
    directory = 0

    def do_GET(self) -> None:
        if self.path.startswith("/simple/"):
            link = f'<a href="/files/{HOSTILE_WHEEL}#sha256={"0" * 64}">{HOSTILE_WHEEL}</a>'
            self._send(200, f"<!DOCTYPE html><html><body>{link}</body></html>".encode(),
                       {"Content-Type": "text/html"})
        elif self.mode == "other-range":
            self._send(206, bytes(self.length),
                       {"Content-Range": f"bytes 0-{self.length - 1}/{self.length}"})
        elif self.mode == "huge-directory":
            start, end = self._range()
            self._send(206, self._virtual(start, end + 1),
                       {"Content-Range": f"bytes {start}-{end}/{self.length}"})
        else:
            self._send(200, bytes(1 << 20), {"Content-Length": str(self.length)})

    def _range(self) -> tuple[int, int]:
        first, last = self.headers["Range"].removeprefix("bytes=").split("-")
        if not first:
            return max(0, self.length - int(last)), self.length - 1
        return int(first), min(int(last), self.length - 1)

    def _virtual(self, start: int, stop: int) -> bytes:
        """Bytes start..stop of zeros ending in an end record: the central directory
        (``directory`` bytes) ends where the end record starts."""
        record = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, self.directory,
                             self.length - 22 - self.directory, 0)
        whole_from = self.length - len(record)
        zeros = bytes(max(0, min(stop, whole_from) - start))
        return zeros + record[max(0, start - whole_from): max(0, stop - whole_from)]

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        headers.setdefault("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up
        self.close_connection = True


def hostile_wheel(mode: str, length: int, directory: int = 0) -> ThreadingHTTPServer:
    handler = type("Handler", (_HostileWheel,),
                   {"mode": mode, "length": length, "directory": directory})
    return ThreadingHTTPServer(("127.0.0.1", 0), handler)


def test_a_range_answer_other_than_the_tail_asked_is_refused_unread(tmp_path: Path) -> None:
    """The tail read was capped at what the server's own Content-Range stated: N bytes
    for any N (633 MiB of lock's memory at 300 MiB)."""
    with serving(hostile_wheel("other-range", 8 << 20)) as base:
        project = project_for(tmp_path, f"{base}/simple/", "hostile")
        line = error_line(lock(project))
    assert f"{base}/files/{HOSTILE_WHEEL}" in line, line
    assert (f"asked for the last 65536 bytes of {HOSTILE_WHEEL}, the server answered "
            f"bytes 0-{(8 << 20) - 1}/{8 << 20}; refused") in line, line


def test_a_central_directory_past_the_range_cap_is_refused_unread(tmp_path: Path) -> None:
    """A zip end record states its central directory's size: it was one fetch of any size."""
    directory = 48 << 20
    with serving(hostile_wheel("huge-directory", directory + (1 << 20), directory)) as base:
        project = project_for(tmp_path, f"{base}/simple/", "hostile")
        line = error_line(lock(project))
    assert f"{base}/files/{HOSTILE_WHEEL}" in line, line
    assert re.search(r"a read of \d+ bytes \(its zip central directory or a member\) is more "
                     r"than the 32\.0 MiB lockmirror reads by Range requests; refused", line), line


def test_a_whole_wheel_of_no_stated_size_is_capped(tmp_path: Path) -> None:
    """A PEP 503 HTML page states no size: the whole-wheel download had no cap at all
    (an endless body filled $TMPDIR)."""
    stated = 5 << 30
    with serving(hostile_wheel("huge-body", stated)) as base:
        project = project_for(tmp_path, f"{base}/simple/", "hostile")
        line = error_line(lock(project))
    assert f"{base}/files/{HOSTILE_WHEEL}" in line, line
    assert (f"the wheel {HOSTILE_WHEEL} of {stated} bytes is more than the 4.0 GiB "
            "lockmirror reads; refused") in line, line
