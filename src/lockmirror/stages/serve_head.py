"""How ``lockmirror serve`` reads a request's head (request line and headers): within
a deadline counted from its first byte, so a client trickling header lines cannot
hold a connection thread (:mod:`lockmirror.stages.serve_handler` reads through it).
"""

from __future__ import annotations

import io
import socket
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


class RequestHeadReader(io.RawIOBase):
    """The connection as the request parser reads it, with a deadline per request: its
    first byte may take ``timeout`` to come (an idle keep-alive connection), the rest
    of the request line and headers must come within ``timeout`` of that byte. A
    socket timeout alone counts per read, so a client sending a header line every
    few seconds would hold its thread for ever. The handler clears ``deadline`` once
    the headers are read."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        super().__init__()
        self._sock = sock
        self._timeout = timeout
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        if self.deadline is None:
            self._sock.settimeout(self._timeout)
        else:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"request headers not complete within {self._timeout:g} s")
            self._sock.settimeout(remaining)
        count = self._sock.recv_into(buffer)
        if self.deadline is None and count:
            self.deadline = time.monotonic() + self._timeout
        return count
