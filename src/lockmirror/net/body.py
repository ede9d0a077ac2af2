"""Reading a response body within bounds: how much, how long, how slowly.

A server can state any ``Content-Length``, send without end, or trickle a
byte a second, which no read timeout catches (every byte comes in time).
Every body lockmirror reads from an index is read here, in the pieces the
socket gives as they arrive (never into a buffer sized by what the server
states), with the clock checked between pieces; no thread watches it:

- :func:`read_body`, a body kept in memory (a project page, a ``.metadata``
  file, an sdist read for its metadata): refused past its cap, and when it
  takes longer than its deadline in all (pages: :func:`page_deadline`);
- :func:`iter_raw_body`, a download streamed to disk: the caller keeps what
  arrived and resumes from it.

Both give up, raising :class:`SlowBody`, when fewer than :data:`MIN_RATE`
bytes a second arrived over a window of :func:`rate_window` seconds (a
slow but honest link sends far more; a download on one that stops short
resumes). ``LOCKMIRROR_PAGE_DEADLINE`` and ``LOCKMIRROR_RATE_WINDOW``
(seconds) override the figures, so that a test needs seconds, not minutes.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import requests
import urllib3.exceptions

from ..errors import InputError, LockmirrorError, NetworkError
from ..fsutil import format_size
from ..redaction import redact_url
from .http import get, network_error
from .redirects import answered_url

if TYPE_CHECKING:
    from requests.auth import AuthBase

    from ..config_schema import SourceConfig

# PyPI's largest project pages are a few MiB of JSON; a page past this is refused.
MAX_PAGE_BYTES = 64 << 20
# A wheel downloaded whole (to a temporary file) for its METADATA when the page states
# no size (a PEP 503 HTML page): the largest real wheels (CUDA builds) are 2-3 GiB.
MAX_WHEEL_BYTES = 4 << 30
# Seconds for a whole page: a 5 MiB page at 20 KiB/s, a link no index user is on.
PAGE_DEADLINE = 300.0
# A body is given up when fewer than MIN_RATE bytes a second arrived over RATE_WINDOW
# seconds (60 KiB in a minute); the socket's read timeout catches a server gone silent.
RATE_WINDOW = 60.0
MIN_RATE = 1024
PIECE = 1 << 20
# a body cut short mid-transfer is fetched again, this many times in all
BODY_ATTEMPTS = 3


class SlowBody(NetworkError):
    """A body that came slower than the floor, or not whole within its deadline."""


def page_deadline() -> float:
    """Seconds a project page may take in all (``LOCKMIRROR_PAGE_DEADLINE``)."""
    return _seconds("LOCKMIRROR_PAGE_DEADLINE", PAGE_DEADLINE)


def rate_window() -> float:
    """Seconds over which a body must average MIN_RATE (``LOCKMIRROR_RATE_WINDOW``)."""
    return _seconds("LOCKMIRROR_RATE_WINDOW", RATE_WINDOW)


def read_body(response: requests.Response, url: str, *, cap: int, what: str,
              deadline: float | None = None) -> bytes:
    """The whole body of ``response`` (content-decoded), read as it arrives.

    Raises LockmirrorError naming ``url`` and the cap when the stated
    Content-Length or the bytes (decoded) run past ``cap`` (``what`` names
    the kind: "the project page"), before reading more than ``cap`` + one piece;
    SlowBody when it takes longer than ``deadline`` seconds or comes slower
    than the floor; urllib3's errors for a body cut short."""
    stated = response.headers.get("Content-Length", "").strip()
    if stated.isdigit() and int(stated) > cap:
        raise too_large(url, what, cap, int(stated))
    pace = _Pace(url, deadline)
    data = bytearray()
    while piece := response.raw.read1(PIECE, decode_content=True):
        data += piece
        if len(data) > cap:
            raise too_large(url, what, cap)
        pace.took(len(piece), received=len(data))
    return bytes(data)


def get_body(session: requests.Session, url: str, *, cap: int, what: str,
             auth: AuthBase | None = None, sources: Sequence[SourceConfig] = (),
             deadline: float | None = None, headers: Mapping[str, str] | None = None,
             allow: Sequence[int] = ()) -> tuple[requests.Response, bytes] | None:
    """GET ``url`` and :func:`read_body` it: (response, body); None for a status in
    ``allow`` other than 304 (whose body is b""). A body cut short is fetched again
    (:data:`BODY_ATTEMPTS` in all); urllib3 already retried the rest. ``auth`` and
    ``sources`` as :func:`lockmirror.net.http.get` takes them."""
    for attempt in range(1, BODY_ATTEMPTS + 1):
        response = get(session, url, headers=headers, stream=True, allow=allow,
                       auth=auth, sources=sources)
        try:
            with response:
                if response.status_code == 304:
                    return response, b""
                if response.status_code in allow:
                    return None
                return response, read_body(response, url, cap=cap, what=what,
                                           deadline=deadline)
        except (requests.RequestException, urllib3.exceptions.HTTPError) as error:
            if attempt == BODY_ATTEMPTS:
                raise network_error(error, answered_url(url, response.url),
                                    retries=attempt - 1) from None
    raise AssertionError("unreachable")  # pragma: no cover


def iter_raw_body(response: requests.Response, size: int, url: str) -> Iterator[bytes]:
    """The body exactly as sent (no content decoding), in pieces of at most
    ``size`` bytes handed on as soon as they arrive: each piece is one read
    of the socket, so bytes that came before a stall or a broken connection
    have been yielded (and can be counted and kept) when the error is raised.
    Raises SlowBody naming ``url`` when it comes slower than the floor, and what
    urllib3 raises for a timeout or a short body."""
    pace = _Pace(url, None)
    while piece := response.raw.read1(size, decode_content=False):
        yield piece
        pace.took(len(piece))


class _Pace:
    """The clock of one body: its deadline, and the bytes of the current window."""

    def __init__(self, url: str, deadline: float | None) -> None:
        self.url = url
        self.window = rate_window()
        self.started = self.window_start = time.monotonic()
        self.deadline = deadline
        self.in_window = 0

    def took(self, count: int, *, received: int | None = None) -> None:
        """Count ``count`` more bytes (``received`` in all, said in the error when
        given); raise SlowBody when the deadline passed or the window that just
        closed came under the floor."""
        now = time.monotonic()
        self.in_window += count
        if self.deadline is not None and now - self.started > self.deadline:
            raise self._slow(f"the body took more than {self.deadline:g} s", received)
        elapsed = now - self.window_start
        if elapsed < self.window:
            return
        if self.in_window < MIN_RATE * elapsed:
            raise self._slow(f"fewer than {format_size(MIN_RATE)} a second arrived over "
                             f"{elapsed:.0f} s", received)
        self.window_start, self.in_window = now, 0

    def _slow(self, what: str, received: int | None) -> SlowBody:
        count = f" ({received} bytes received)" if received is not None else ""
        return SlowBody(f"cannot fetch {redact_url(self.url)}: {what}{count}")


def too_large(url: str, what: str, cap: int, size: int | None = None) -> LockmirrorError:
    """The one-line refusal of ``what`` at ``url`` (``size`` bytes stated) past ``cap``."""
    stated = f" of {size} bytes" if size is not None else ""
    return LockmirrorError(f"{what}{stated} is more than the {format_size(cap)} lockmirror "
                           "reads; refused", where=redact_url(url))


def _seconds(variable: str, default: float) -> float:
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{variable} is {text!r}, not a number of seconds above 0")
    return value
