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
* HEAD, single byte ``Range`` requests (206/416, ``If-Range``), ``ETag`` and
  ``Last-Modified`` with ``If-None-Match``/``If-Modified-Since`` (304):
  :mod:`lockmirror.stages.serve_headers`; each file's ``Content-Type`` the one the
  publishers give a static host (:func:`lockmirror.formats.pages.content_type`);
* other methods answered 405 (``Allow: GET, HEAD``), a request target that is not
  a path 400;
* ``/health`` for load balancers and scripts;
* no 404 while ``lockmirror import`` swaps trees (the root is missing between its
  two renames): such a request waits up to a second and looks again.

It never serves anything outside the tree: ``..``, encoded or not, hidden
names (temporary files) and symlinks leading out are answered with 404
(:func:`lockmirror.stages.serve_tree.resolve` keeps every path inside the tree). A
file or directory the server may not read is a 500 and a log line naming it. Binding, starting and
stopping: :mod:`lockmirror.stages.serve`.
"""

from __future__ import annotations

import email.utils
import io
import os
import re
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO

from packaging.utils import canonicalize_name

from .. import __version__
from ..formats.pages import cache_control, content_type
from .serve_head import RequestHeadReader
from .serve_headers import (
    OFFERS,
    Unsatisfiable,
    choose_format,
    not_modified,
    parse_range,
    range_applies,
)
from .serve_tree import blocking_part, resolve, tree_identity

_CHUNK = 1 << 16
_RETRY_AFTER = 1  # seconds a client turned away (all connections busy) is asked to wait
_SWAP_WAIT, _SWAP_PAUSE = 1.0, 0.05  # seconds a 404 waits for a swapped tree, and a pause
# the methods HTTP defines besides GET and HEAD (RFC 9110, 5789): 405, any other 501
_OTHER_METHODS = ("POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")


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
        self.rfile.close()  # the socket's own file: requests are read with a deadline
        self._head = RequestHeadReader(self.connection, self.server.idle_timeout)
        self.rfile = io.BufferedReader(self._head)

    # -- entry points --------------------------------------------------------

    def do_GET(self) -> None:
        self._handle(body=True)

    def do_HEAD(self) -> None:
        self._handle(body=False)

    def parse_request(self) -> bool:
        """http.server's parsing of the request line and headers (read within
        ``idle_timeout`` of their first byte: :class:`RequestHeadReader`); then any
        method but GET and HEAD is answered here, in the log's own format: 405 naming
        the two (501 for a method HTTP does not define), and the connection closed, as
        a body the server does not read may follow."""
        try:
            if not super().parse_request():
                return False
        finally:
            # the request's head is read: the response, and the wait for the next
            # request's first byte, get the idle timeout again
            self._head.deadline = None
            self.connection.settimeout(self.server.idle_timeout)
        if self.command in ("GET", "HEAD"):
            return True
        self.close_connection = True
        self._handle(body=True, route=self._refuse_method)
        return False

    def log_message(self, format: str, *args: Any) -> None:
        # http.server's own messages (bad request lines, timeouts)
        self.server.log_line(f"{self.client_address[0]} {format % args}")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # _handle logs once per request, with the bytes sent and the time taken

    # -- routing ---------------------------------------------------------------

    def _handle(self, *, body: bool, route: Callable[[bool], None] | None = None) -> None:
        started = time.perf_counter()
        self._status = 0
        self._sent = 0
        try:
            (route or self._route_across_swaps)(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            self.server.log_line(
                f'{self.client_address[0]} "{self.command} {self.path} {self.request_version}" '
                f"{self._status} {self._sent} {elapsed:.1f}ms")

    def _refuse_method(self, body: bool) -> None:
        if self.command in _OTHER_METHODS:
            self._send_error(HTTPStatus.METHOD_NOT_ALLOWED, headers={"Allow": "GET, HEAD"})
        else:
            self._send_error(HTTPStatus.NOT_IMPLEMENTED)

    def _route_across_swaps(self, body: bool) -> None:
        """:meth:`_route`; run again, after a pause, while it would answer 404 with the
        tree missing or replaced since the request began (:meth:`_not_found`), up to
        about a second. ``lockmirror import`` swaps trees with two renames, and
        between them the root does not exist: a moment to wait out, not a 404."""
        give_up = time.monotonic() + _SWAP_WAIT
        while True:
            self._waiting = time.monotonic() < give_up
            self._tree = tree_identity(self.server.root)
            try:
                self._route(body)
                return
            except _TreeSwapped:
                time.sleep(_SWAP_PAUSE)
            except PermissionError as exc:  # a directory on the way it may not search
                self._cannot_read(exc)
                return

    def _not_found(self) -> None:
        """404, unless the tree is missing or was replaced while the request looked
        for its file (then :meth:`_route_across_swaps` looks again)."""
        if self._waiting:
            now = tree_identity(self.server.root)
            if now is None or now != self._tree:
                raise _TreeSwapped
        self._send_error(HTTPStatus.NOT_FOUND)

    def _route(self, body: bool) -> None:
        split = urllib.parse.urlsplit(self.path)
        raw_path = split.path or "/"
        if not raw_path.startswith("/") or split.scheme.lower() not in ("", "http", "https"):
            # neither a path nor an http URL (``GET \\evil.com``): answering it with a
            # redirect to the slash form would send a browser to another host
            self._send_error(HTTPStatus.BAD_REQUEST)
            return
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
            self._send_error(HTTPStatus.NOT_FOUND)  # in no tree: nothing to wait for
            return
        path = resolve(self.server.root, parts)
        if parts[:1] == ["simple"] and len(parts) <= 2 and not (path and path.is_file()):
            self._simple(parts, path, trailing, split.query, body)
            return
        if path is None:
            self._not_found()
            return
        if path.is_dir():
            if not trailing:
                self._redirect(raw_path + "/", split.query)
                return
            path, parts = path / "index.html", [*parts, "index.html"]
            if not path.is_file():
                self._not_found()
                return
        elif trailing:
            self._not_found()
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
            self._not_found()
            return
        # "+" stays literal: media types hold no spaces, and clients rarely encode it
        requested = urllib.parse.parse_qs(query.replace("+", "%2B")).get("format", [None])[0]
        chosen = choose_format(requested or self.headers.get("Accept"))
        if chosen is None:
            self._send_error(HTTPStatus.NOT_ACCEPTABLE,
                             f"offered: {', '.join(o[0] for o in OFFERS)}\n")
            return
        filename, media_type = chosen
        path = directory / filename
        if not path.is_file():
            self._not_found()
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

    def _send_error(self, status: HTTPStatus, text: str | None = None,
                    headers: dict[str, str] | None = None) -> None:
        data = (text or f"{status.value} {status.phrase}\n").encode()
        self._send_bytes(status, data, "text/plain; charset=utf-8", self.command != "HEAD",
                         headers)

    def _send_bytes(self, status: HTTPStatus, data: bytes, content_type: str,
                    body: bool, headers: dict[str, str] | None = None) -> None:
        self._send_head(status, {"Content-Type": content_type, "Content-Length": str(len(data)),
                                 "Cache-Control": "no-store", **(headers or {})})
        if body:
            self.wfile.write(data)
            self._sent = len(data)

    def _send_file(self, path: Path, tree_path: str, body: bool, *,
                   negotiated: str | None = None) -> None:
        """``path``, the file at ``tree_path``, with the Content-Type and
        Cache-Control the publishers give a static host for that path
        (:mod:`lockmirror.formats.pages`), or the ``negotiated`` type of a simple
        page (then ``Vary: Accept``); 304, 206 and 416 as the request's conditional
        and range headers ask (:mod:`lockmirror.stages.serve_headers`)."""
        try:
            handle = open(path, "rb")  # noqa: SIM115 - opened first to answer on failure
        except FileNotFoundError:  # gone since it was found: a tree swapped meanwhile
            self._not_found()
            return
        except OSError as exc:
            self._cannot_read(exc)
            return
        with handle:
            stat = os.fstat(handle.fileno())
            etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
            vary = {"Vary": "Accept"} if negotiated is not None else {}
            if not_modified(self.headers.get("If-None-Match"),
                            self.headers.get("If-Modified-Since"), etag, stat.st_mtime):
                # RFC 9110 15.4.5: a 304 carries the ETag, Cache-Control and Vary a 200 would
                self._send_head(HTTPStatus.NOT_MODIFIED, {
                    "ETag": etag, "Cache-Control": cache_control(tree_path), **vary})
                return
            span = self._span(stat.st_size, etag, stat.st_mtime)
            if span is None:
                return  # answered 416
            status, start, end = span
            length = max(0, end - start + 1)
            self._send_head(status, {
                "Content-Type": negotiated or content_type(tree_path),
                "Content-Length": str(length),
                "Accept-Ranges": "bytes",
                "ETag": etag,
                "Last-Modified": email.utils.formatdate(stat.st_mtime, usegmt=True),
                "Cache-Control": cache_control(tree_path),
                **vary,
                **({"Content-Range": f"bytes {start}-{end}/{stat.st_size}"}
                   if status == HTTPStatus.PARTIAL_CONTENT else {}),
            })
            if body and length:
                self._copy(handle, start, length)

    def _cannot_read(self, exc: OSError) -> None:
        """500 and a log line naming what the server may not read (the file, or the
        directory on its way it may not search) and why: its fault, not a 404."""
        blocked = blocking_part(self.server.root, str(exc.filename))
        self.server.log_line(f"{self.client_address[0]} error: cannot read {blocked}: "
                             f"{exc.strerror}")
        self._send_error(HTTPStatus.INTERNAL_SERVER_ERROR)

    def _span(self, size: int, etag: str, mtime: float) -> tuple[HTTPStatus, int, int] | None:
        """(status, first byte, last byte) of the file to send: the ``Range`` asked for
        (206) unless it is to be ignored or ``If-Range`` names another version of the
        file, then all of it (200); None once a 416 was sent."""
        wanted = self.headers.get("Range")
        if wanted and range_applies(self.headers.get("If-Range"), etag, mtime):
            try:
                parsed = parse_range(wanted, size)
            except Unsatisfiable:
                self._send_head(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                                {"Content-Range": f"bytes */{size}", "Content-Length": "0"})
                return None
            if parsed is not None:
                return HTTPStatus.PARTIAL_CONTENT, *parsed
        return HTTPStatus.OK, 0, size - 1

    def _send_head(self, status: HTTPStatus, headers: dict[str, str]) -> None:
        self._status = status
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _copy(self, handle: BinaryIO, start: int, length: int) -> None:
        handle.seek(start)
        remaining = length
        while remaining > 0:
            chunk = handle.read(min(_CHUNK, remaining))
            if not chunk:
                break
            self.wfile.write(chunk)
            remaining -= len(chunk)
            self._sent += len(chunk)


class _TreeSwapped(Exception):
    """The served tree was missing or replaced when a request found no file."""


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
        """Start a thread for the connection if one of the ``max_connections`` slots
        is free; otherwise answer 503 at once (:meth:`_turn_away`)."""
        if not self._slots.acquire(blocking=False):
            self._turn_away(request, client_address)
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

    def _turn_away(self, request: socket.socket, client_address: Any) -> None:
        """Answer 503 with ``Retry-After`` (pip and uv retry after it) and close, from
        the accepting thread, without reading the request: a few bytes into an empty
        send buffer of a non-blocking socket, so the next connection is not kept
        waiting. What the client already sent is drained after the answer, so the
        close is a FIN that does not discard the answer."""
        self.log_line(f'{client_address[0]} "-" 503: all {self.max_connections} '
                      "connections busy")
        text = f"503 Service Unavailable: all {self.max_connections} connections busy\n"
        answer = (f"HTTP/1.1 503 Service Unavailable\r\n"
                  f"Server: {MirrorRequestHandler.server_version}\r\n"
                  f"Date: {email.utils.formatdate(usegmt=True)}\r\n"
                  f"Retry-After: {_RETRY_AFTER}\r\n"
                  "Content-Type: text/plain; charset=utf-8\r\n"
                  f"Content-Length: {len(text)}\r\n"
                  "Cache-Control: no-store\r\n"
                  "Connection: close\r\n\r\n" + text).encode()
        try:
            request.setblocking(False)
            request.send(answer)
            request.shutdown(socket.SHUT_WR)
            while request.recv(_CHUNK):
                pass
        except OSError:  # BlockingIOError once drained; or the client is gone
            pass
        request.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client gone mid-answer is one log line, not socketserver's traceback on
        stderr (any client could fill the operator's terminal); anything else as before."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            self.log_line(f"{client_address[0]} connection lost: {sys.exc_info()[1]}")
        else:
            super().handle_error(request, client_address)

    def log_line(self, line: str) -> None:
        # the request line is the client's text: no terminal escapes into the log
        # (what BaseHTTPRequestHandler.log_message does for its own lines)
        line = line.translate(BaseHTTPRequestHandler._control_char_table)  # type: ignore[attr-defined]
        if self._log is not None:
            with self._log_lock:
                self._log(line)
