"""The request headers that decide what ``lockmirror serve`` sends: ``Accept``
(PEP 691: which simple page), and how much of a file (RFC 9110 13 and 14):
``If-None-Match`` and ``If-Modified-Since`` (304), ``Range`` (206/416) and
``If-Range`` (the whole file when the client's copy is another version). Plain
functions of header values; the handler (:mod:`lockmirror.stages.serve_handler`)
sends what they decide.
"""

from __future__ import annotations

import email.utils
from datetime import timezone

from ..formats.pages import HTML_CONTENT_TYPE, JSON_CONTENT_TYPE

# Media types a simple page can be served as, in the server's order of
# preference when the client likes several equally (browsers and curl: HTML).
OFFERS = (
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
        return OFFERS[0][1], OFFERS[0][2]
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
    for preference, (media, filename, media_type) in enumerate(OFFERS):
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


class Unsatisfiable(Exception):
    """The range starts past the end of the file (answered with 416)."""


def not_modified(if_none_match: str | None, if_modified_since: str | None, etag: str,
                 mtime: float) -> bool:
    """Whether a GET or HEAD gets 304: ``If-None-Match`` decides when sent (RFC 9110
    13.2.2: it takes precedence, ``If-Modified-Since`` is then ignored); otherwise
    a valid ``If-Modified-Since`` date no earlier than the file's ``Last-Modified``
    (whole seconds, as that header gives it)."""
    if if_none_match is not None:
        return etag_matches(if_none_match, etag)
    since = http_date(if_modified_since)
    return since is not None and int(mtime) <= since


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag``: ``*``, or one of its
    tags compared weakly (RFC 9110 13.1.2: ``W/"x"`` matches ``"x"``)."""
    if not if_none_match:
        return False
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return "*" in tags or etag in [tag.removeprefix("W/") for tag in tags]


def range_applies(if_range: str | None, etag: str, mtime: float) -> bool:
    """Whether a ``Range`` header is honoured: always without ``If-Range``; with it,
    only when it names this version of the file, by its ``ETag`` (strong comparison:
    a weak tag never matches) or by exactly its ``Last-Modified`` date (RFC 9110
    13.1.5). Otherwise the client's partial copy is of another version: it gets
    the whole file."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        return value == etag
    return http_date(value) == int(mtime)


def http_date(value: str | None) -> int | None:
    """An HTTP-date as seconds since the epoch; None when absent or not a date."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # "-0000": UTC, as HTTP-dates are
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp())


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range as (start, end) inclusive; None to ignore the header
    (malformed or several ranges: the whole file is sent). Raises Unsatisfiable."""
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
                raise Unsatisfiable
            return max(0, size - suffix), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size:
        raise Unsatisfiable
    if start < 0 or end < start:
        return None
    return start, min(end, size - 1)
