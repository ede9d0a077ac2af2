"""What a repository said when it refused an upload or a read, in one line.

Servers answer errors in three shapes: an HTML page (pypiserver's bottle
page: a ``<style>`` block, a title, and the reason in a ``<pre>``), JSON
(devpi, Nexus, Artifactory: ``message``/``detail``/``error``) or plain text.
:func:`server_message` reduces each to the server's message, never its
markup or styles, redacted and at most 200 characters.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import requests

from ..redaction import redact_text

MAX_CHARS = 200
_PREFERRED = ("pre", "h1", "title")  # most specific first: bottle puts the reason in <pre>
_EMPTY = {"", "none", "null"}  # bottle writes <pre>None</pre> when it has no reason
_STATUS_PREFIX = re.compile(r"^(error:?\s*)?\d{3}\s*", re.IGNORECASE)


def server_message(response: requests.Response) -> str:
    """The server's one-line message for ``response`` ('' when it gave none)."""
    try:
        body = response.text.strip()
    except (requests.RequestException, UnicodeDecodeError):
        body = ""
    kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if kind.endswith("json") or body.startswith("{"):
        text = _from_json(body)
    elif "html" in kind or body.startswith("<"):
        text = _from_html(body)
    else:
        text = next((line.strip() for line in body.splitlines() if line.strip()), "")
    text = " ".join(text.split()) or response.reason or ""
    return redact_text(text)[:MAX_CHARS]


def _from_json(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if isinstance(data, dict):
        for key in ("message", "detail", "error", "errors"):
            value = data.get(key)
            if isinstance(value, str):
                return value
            if isinstance(value, list) and value and isinstance(value[0], (str, dict)):
                first = value[0]
                return first if isinstance(first, str) else str(first.get("message", ""))
    return ""


def _from_html(body: str) -> str:
    parser = _Text()
    parser.feed(body)
    parser.close()
    for tag in _PREFERRED:
        for text in parser.by_tag.get(tag, []):
            text = _STATUS_PREFIX.sub("", " ".join(text.split()))
            if text.lower() not in _EMPTY:
                return text
    return " ".join(parser.body)


class _Text(HTMLParser):
    """The text of each element of interest, without style, script or markup."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.by_tag: dict[str, list[str]] = {}
        self.body: list[str] = []
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open.append(tag)
        if tag in _PREFERRED:
            self.by_tag.setdefault(tag, []).append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._open:
            while self._open.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if any(tag in ("style", "script") for tag in self._open):
            return
        for tag in reversed(self._open):
            if tag in _PREFERRED:
                self.by_tag[tag][-1] += data
                break
        if "head" not in self._open and data.strip():
            self.body.append(data.strip())
