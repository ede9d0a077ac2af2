"""The HTTP side of ``lockmirror serve``: the threaded server over one tree (a
thread per connection, at most ``max_connections``; the request log; paths kept
inside the tree) and what one HTTP request to a built index gets:

* PEP 691 content negotiation under ``simple/``: the ``Accept`` header (or a
  ``?format=`` query) chooses ``index.json`` (``application/vnd.pypi.simple.v1+json``)
  or ``index.html`` (``text/html`` or ``application/vnd.pypi.simple.v1+html``);
  ``Vary: Accept``; 406 when nothing offered is acceptable;
* unnormalized project names (``/simple/Foo.Bar_baz/``) answered with a 301 to
  the PEP 503 normalized page, directory URLs without their slash with a 301
  to the slash form (relative links need it), and doubled slashes
  (``/simple//click/``) with a 301 to the path with single ones;
* HEAD, single byte ``Range`` requests (206/416), ``ETag``/``If-None-Match`` (304),
  ``Last-Modified``; each file's ``Content-Type`` the one the publishers give a static
  host (:func:`lockmirror.formats.pages.content_type`);
* ``/health`` for load balancers and scripts.

It never serves anything outside the tree: ``..``, encoded or not, hidden
names (temporary files) and symlinks leading out are answered with 404 (the
server's ``resolve`` keeps every path inside the tree). Binding, starting and
stopping: :mod:`lockmirror.stages.serve`.
"""

from __future__ import annotations

import email.utils
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from .. import __version__
from ..formats.pages import HTML_CONTENT_TYPE, JSON_CONTENT_TYPE, cache_control, content_type

_CHUNK = 1 << 16
# Media types a simple page can be served as, in the server's order of
# preference when the client likes several equally (browsers and curl: HTML).
_OFFERS = (
    ("text/html", "index.html", "text/html; charset=utf-8"),
    (HTML_CONTENT_TYPE, "index.html", HTML_CONTENT_TYPE),
    (JSON_CONTENT_TYPE, "index.json", JSON_CONTENT_TYPE),
)
_ALIASES = {
    "application/vnd.pypi.simple.latest+json": JSON_CONTENT_TYPE,
    "application/vnd.pypi.simple.latest+html": HTML_CONTENT_TYPE,
}


def choose_format(accept: str | None) -> tuple[str, str] | None:
    """The (file name, Content-Type) that ``accept`` prefers, or None for 406.

    Highest q wins; at equal q an exact media type beats ``type/*`` which
    beats ``*/*``; then the server's preference (HTML first, so browsers and
    a bare ``*/*`` get HTML). No header means ``text/html``.
    """
    if not accept or not accept.strip():
        return _OFFERS[0][1], _OFFERS[0][2]
    ranges: list[tuple[str, float]] = []
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        if not media:
            continue
        quality = 1.0
        for param in fields[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = max(0.0, min(1.0, float(value)))
                except ValueError:
                    quality = 0.0
        ranges.append((_ALIASES.get(media, media), quality))
    best: tuple[float, int, int] | None = None
    chosen = None
    for preference, (media, filename, media_type) in enumerate(_OFFERS):
        kind = media.split("/")[0]
        match: tuple[float, int] | None = None
        for wanted, quality in ranges:
            specificity = (2 if wanted == media else 1 if wanted == f"{kind}/*"
                           else 0 if wanted == "*/*" else -1)
            if specificity < 0:
                continue
            if match is None or specificity > match[1]:
                match = (quality, specificity)
        if match is None or match[0] <= 0:
            continue
        score = (match[0], match[1], -preference)
        if best is None or score > best:
            best, chosen = score, (filename, media_type)
    return chosen


class MirrorRequestHandler(BaseHTTPRequestHandler):
    """One connection to a :class:`~lockmirror.stages.serve.MirrorHTTPServer`: GET and HEAD
    of the tree's files, negotiated simple pages, redirects; logs via the server."""

    server: MirrorHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = f"lockmirror/{__version__}"
    sys_version = ""

    def setup(self) -> None:
        # the socket's timeout, which super().setup() applies (a class attribute in
        # StreamRequestHandler; each connection takes the server's setting)
        self.timeout = self.server.idle_timeout  # type: ignore[misc]
        super().setup()

    # -- entry points --------------------------------------------------------

    def do_GET(self) -> None:
        self._handle(body=True)

    def do_HEAD(self) -> None:
        self._handle(body=False)

    def log_message(self, format: str, *args: Any) -> None:
        # http.server's own messages (bad request lines, timeouts)
        self.server.log_line(f"{self.client_address[0]} {format % args}")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # _handle logs once per request, with the bytes sent and the time taken

    # -- routing ---------------------------------------------------------------

    def _handle(self, *, body: bool) -> None:
        started = time.perf_counter()
        self._status = 0
        self._sent = 0
        try:
            self._route(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            self.server.log_line(
                f'{self.client_address[0]} "{self.command} {self.path} {self.request_version}" '
                f"{self._status} {self._sent} {elapsed:.1f}ms")

    def _route(self, body: bool) -> None:
        split = urllib.parse.urlsplit(self.path)
        raw_path = split.path or "/"
        if raw_path == "/health":
            self._send_bytes(HTTPStatus.OK, b'{"status":"ok"}\n', "application/json", body)
            return
        if "//" in raw_path:  # nginx and http.server take it as one; relative links need one
            self._redirect(re.sub("/{2,}", "/", raw_path), split.query)
            return
        decoded = urllib.parse.unquote(raw_path)
        parts = decoded.split("/")[1:]  # leading "/" gives an empty first part
        trailing = decoded.endswith("/")
        if trailing:
            parts = parts[:-1]
        if any(p in ("", ".", "..") or p.startswith(".") or "\\" in p or "\x00" in p
               for p in parts):
            self._send_error(HTTPStatus.NOT_FOUND)
            return
        path = self.server.resolve(parts)
        if parts[:1] == ["simple"] and len(parts) <= 2 and not (path and path.is_file()):
            self._simple(parts, path, trailing, split.query, body)
            return
        if path is None:
            self._send_error(HTTPStatus.NOT_FOUND)
            return
        if path.is_dir():
            if not trailing:
                self._redirect(raw_path + "/", split.query)
                return
            path, parts = path / "index.html", [*parts, "index.html"]
            if not path.is_file():
                self._send_error(HTTPStatus.NOT_FOUND)
                return
        elif trailing:
            self._send_error(HTTPStatus.NOT_FOUND)
            return
        self._send_file(path, "/".join(parts), body)

    def _simple(self, parts: list[str], directory: Path | None, trailing: bool, query: str,
                body: bool) -> None:
        if len(parts) == 2:
            wanted = canonicalize_name(parts[1])
            if parts[1] != wanted:
                self._redirect(f"/simple/{urllib.parse.quote(wanted)}/", query,
                               status=HTTPStatus.MOVED_PERMANENTLY)
                return
        if not trailing:
            self._redirect("/" + "/".join(urllib.parse.quote(p) for p in parts) + "/", query)
            return
        if directory is None or not directory.is_dir():
            self._send_error(HTTPStatus.NOT_FOUND)
            return
        # "+" stays literal: media types hold no spaces, and clients rarely encode it
        requested = urllib.parse.parse_qs(query.replace("+", "%2B")).get("format", [None])[0]
        chosen = choose_format(requested or self.headers.get("Accept"))
        if chosen is None:
            self._send_error(HTTPStatus.NOT_ACCEPTABLE,
                             f"offered: {', '.join(o[0] for o in _OFFERS)}\n")
            return
        filename, media_type = chosen
        path = directory / filename
        if not path.is_file():
            self._send_error(HTTPStatus.NOT_FOUND)
            return
        self._send_file(path, "/".join([*parts, filename]), body, negotiated=media_type)

    # -- responses ---------------------------------------------------------------

    def _redirect(self, location: str, query: str,
                  status: HTTPStatus = HTTPStatus.MOVED_PERMANENTLY) -> None:
        if query:
            location += "?" + query
        self._status = status
        self.send_response(status)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send_error(self, status: HTTPStatus, text: str | None = None) -> None:
        data = (text or f"{status.value} {status.phrase}\n").encode()
        self._send_bytes(status, data, "text/plain; charset=utf-8", self.command != "HEAD")

    def _send_bytes(self, status: HTTPStatus, data: bytes, content_type: str,
                    body: bool) -> None:
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(data)
            self._sent = len(data)

    def _send_file(self, path: Path, tree_path: str, body: bool, *,
                   negotiated: str | None = None) -> None:
        """``path``, the file at ``tree_path``, with the Content-Type and
        Cache-Control the publishers give a static host for that path
        (:mod:`lockmirror.formats.pages`), or the ``negotiated`` type of a simple
        page (then ``Vary: Accept``)."""
        vary = negotiated is not None
        try:
            handle = open(path, "rb")  # noqa: SIM115 - opened first to answer 404 on failure
        except OSError:
            self._send_error(HTTPStatus.NOT_FOUND)
            return
        with handle:
            stat = os.fstat(handle.fileno())
            size = stat.st_size
            etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
            if _etag_matches(self.headers.get("If-None-Match"), etag):
                self._status = HTTPStatus.NOT_MODIFIED
                self.send_response(HTTPStatus.NOT_MODIFIED)
                self.send_header("ETag", etag)  # RFC 9110 15.4.5: what a 200 would carry
                self.send_header("Cache-Control", cache_control(tree_path))
                if vary:
                    self.send_header("Vary", "Accept")
                self.end_headers()
                return
            start, end = 0, size - 1
            status = HTTPStatus.OK
            wanted = self.headers.get("Range")
            if wanted:
                try:
                    parsed = _parse_range(wanted, size)
                except _Unsatisfiable:
                    self._status = HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE
                    self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if parsed is not None:
                    start, end = parsed
                    status = HTTPStatus.PARTIAL_CONTENT
            length = max(0, end - start + 1)
            self._status = status
            self.send_response(status)
            self.send_header("Content-Type", negotiated or content_type(tree_path))
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", etag)
            self.send_header("Last-Modified",
                             email.utils.formatdate(stat.st_mtime, usegmt=True))
            self.send_header("Cache-Control", cache_control(tree_path))
            if vary:
                self.send_header("Vary", "Accept")
            if status == HTTPStatus.PARTIAL_CONTENT:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if not body or length == 0:
                return
            handle.seek(start)
            remaining = length
            while remaining > 0:
                chunk = handle.read(min(_CHUNK, remaining))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)
                self._sent += len(chunk)


class _Unsatisfiable(Exception):
    """The range starts past the end of the file (answered with 416)."""


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag``: ``*``, or one of its
    tags compared weakly (RFC 9110 13.1.2: ``W/"x"`` matches ``"x"``)."""
    if not if_none_match:
        return False
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return "*" in tags or etag in [tag.removeprefix("W/") for tag in tags]


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range as (start, end) inclusive; None to ignore the header
    (malformed or several ranges: the whole file is sent). Raises _Unsatisfiable."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                raise _Unsatisfiable
            return max(0, size - suffix), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size:
        raise _Unsatisfiable
    if start < 0 or end < start:
        return None
    return start, min(end, size - 1)


RequestLog = Callable[[str], None]


class MirrorHTTPServer(ThreadingHTTPServer):
    """The threaded server over one tree; see :class:`MirrorServer`."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # connections waiting for a thread wait in the kernel

    def __init__(self, root: Path, address: tuple[str, int], log: RequestLog | None, *,
                 idle_timeout: float, max_connections: int) -> None:
        self.root = Path(os.path.realpath(root))
        self._log = log
        self._log_lock = threading.Lock()
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, MirrorRequestHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start a thread for the connection once one of the ``max_connections``
        slots is free (waiting up to ``idle_timeout``, then closing it)."""
        if not self._slots.acquire(timeout=self.idle_timeout):
            self.log_line(f"{client_address[0]} closed unanswered: all "
                          f"{self.max_connections} connections busy")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def resolve(self, parts: list[str]) -> Path | None:
        """The real path for URL path parts, or None if it is missing or outside the tree."""
        candidate = os.path.realpath(os.path.join(self.root, *parts))
        if candidate != str(self.root) and not candidate.startswith(str(self.root) + os.sep):
            return None
        path = Path(candidate)
        try:
            return path if path.exists() else None
        except OSError:  # a name too long for the file system (ENAMETOOLONG), EACCES: no file
            return None

    def log_line(self, line: str) -> None:
        # the request line is the client's text: no terminal escapes into the log
        # (what BaseHTTPRequestHandler.log_message does for its own lines)
        line = line.translate(BaseHTTPRequestHandler._control_char_table)  # type: ignore[attr-defined]
        if self._log is not None:
            with self._log_lock:
                self._log(line)
