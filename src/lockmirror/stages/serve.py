"""``lockmirror serve``: a static server for a built ``dist-index/``, for trials and small sites.

What it adds to a plain static server, so pip and uv get what PyPI gives them:
PEP 691 content negotiation, redirects to normalized names, HEAD, ranges,
``ETag``, ``/health`` (the request handler: :mod:`lockmirror.stages.serve_handler`), and here:

* a thread per connection, at most ``max_connections`` of them: a connection
  idle for ``idle_timeout`` seconds (no request, or a client that stops
  reading) is closed, as is one whose request line and headers are not in within
  ``idle_timeout`` of their first byte; a connection finding every thread busy
  is answered 503 with ``Retry-After`` at once and closed (pip and uv retry);
* a request log handed to a callback (the CLI prints it; nothing here prints).

It never serves anything outside the tree: ``..``, encoded or not, hidden
names (temporary files) and symlinks leading out are answered with 404.
Production setups serve the same tree with nginx or object storage (see the
README for an nginx snippet doing the same negotiation).
"""

from __future__ import annotations

import errno
import socket
import threading
from pathlib import Path
from typing import Self

from ..errors import LockmirrorError
from .serve_handler import MirrorHTTPServer, RequestLog
from .verify import not_a_mirror, require_local_files

IDLE_TIMEOUT = 30.0    # seconds a connection may stay silent (nginx: 60 s headers, 75 s keep-alive)
MAX_CONNECTIONS = 100  # connections (threads) served at once
MAX_IDLE_TIMEOUT = 86400.0  # a day: beyond it (inf) socket timeouts overflow

class MirrorServer:
    """A running ``lockmirror serve``: ``with MirrorServer(root) as server: server.url``.

    ``port=0`` picks a free port. :meth:`start` serves on a background thread
    (tests, verify); :meth:`serve_forever` blocks (the CLI). At most
    ``max_connections`` connections are served at once (more get 503); one idle
    for ``idle_timeout`` seconds, or not done sending its request's headers
    ``idle_timeout`` after their first byte, is closed. Raises LockmirrorError when ``root``
    is not a built index or holds none of the files its manifest lists (one
    built from an S3 store), the limits are not positive or the address is taken.
    """

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 8080, *,
                 log: RequestLog | None = None, idle_timeout: float = IDLE_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        root = Path(root)
        if not (root / "simple" / "index.html").is_file():
            raise not_a_mirror(root, "simple/index.html")
        require_local_files(root)  # an index built from an S3 store: 404 for every file
        if not 0 < idle_timeout <= MAX_IDLE_TIMEOUT or max_connections < 1:
            raise LockmirrorError(f"idle timeout ({idle_timeout}) and connection limit "
                                  f"({max_connections}) must be positive, the timeout at most "
                                  f"{MAX_IDLE_TIMEOUT:g} s")
        if not 0 <= port <= 65535:
            raise LockmirrorError(f"--port {port} is not a port number",
                                  hint="0 to 65535; 0 picks a free one")
        try:
            self.httpd = MirrorHTTPServer(root, (host, port), log, idle_timeout=idle_timeout,
                                          max_connections=max_connections)
        except OSError as exc:
            raise LockmirrorError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                                  hint=_listen_hint(exc, host, port)) from None
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def simple_url(self) -> str:
        return self.url + "simple/"

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever()
        finally:
            self.httpd.server_close()

    def start(self) -> Self:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                        name=f"lockmirror-serve-{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
            self._thread = None
        self.httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()



def _listen_hint(exc: OSError, host: str, port: int) -> str:
    """What to change when binding ``host:port`` failed: the port when it is
    taken or privileged, the host when it is not an address of this machine."""
    if isinstance(exc, socket.gaierror):
        return f"--host {host} is not a name or address this machine can resolve"
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is in use; choose another --port (0 picks a free one)"
    if exc.errno == errno.EACCES:
        return f"port {port} needs privileges here; choose a --port of 1024 or above"
    if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        return (f"--host {host} is not an address of this machine; use 127.0.0.1, 0.0.0.0 "
                "(every interface) or one of its own addresses")
    return "check --host and --port"
