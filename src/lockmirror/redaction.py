"""Credentials out of what lockmirror prints: a URL's user name and password
(:func:`redact_url`), and the userinfo of every URL in a text (:func:`redact_text`,
for a server's or an exception's message); :func:`carries_credentials` tells a URL
that must be refused where it would be printed or written into a file. No I/O;
nothing but the standard library.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """``url`` without user name and password (safe to print)."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""  # ValueError for a port out of range
    except ValueError:
        return redact_text(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + port
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redact_link(url: str) -> str:
    """``url`` as a page wrote it, for an error that refuses it: only its user info left
    out, reading the authority to its first ``/``, ``\\``, ``?`` or ``#`` (as browsers
    do), so ``http://a:1\\@b/x`` is shown as written, trick and all, while
    ``https://user:token@host/x`` loses its token."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/\\?#]*@", r"\1", url)


def carries_credentials(url: str) -> bool:
    """Whether ``url`` holds a user name or password (``user:password@``, ``user@``):
    what ``lockfile --base-url``, ``check-install --index-url`` and ``pip-config``
    refuse, since each would write the URL into a file or print it. A URL whose host
    part does not parse counts when it holds an ``@`` (never a ValueError)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "@" in url
    return parts.username is not None or parts.password is not None


def redact_text(text: str) -> str:
    """``text`` with the userinfo of every URL in it removed (for server messages)."""
    # to the last @ of the authority, which ends at / ? or # as urlsplit reads it
    return re.sub(r"(\w+://)[^/?#\s]*@", r"\1", text)
