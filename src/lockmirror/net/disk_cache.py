"""The index client's on-disk cache: project pages kept for revalidation, immutable
bytes kept by their sha256. Each body is written once, by one atomic rename.

Pages (:meth:`DiskCache.page`, :meth:`DiskCache.keep_page`) are kept with the
validators the index sent (``ETag``, ``Last-Modified``) in one file, a line
of JSON then the body, under a hash of the URL and the ``Accept`` header
asked with; the client revalidates each on every use (a 304 costs no body).
A page sent with neither validator is not kept: it could never be
revalidated, so it is fetched again anyway.

Immutable bytes (:meth:`DiskCache.blob`, :meth:`DiskCache.keep_blob`): the
PEP 658 ``.metadata`` files, METADATA read out of wheels and sdists, under
a key derived from the sha256 the index states for them; never revalidated.

Why not CacheControl: its adapter spools every response body through a
temporary file while the body is read (``CallbackFileWrapper``) and then
writes it again into its cache, for pages it will never serve unrevalidated
and for bodies without validators it cannot use at all; nothing in its
configuration turns that off.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..fsutil import atomic_write

# the response headers a kept page needs to be read again like the response
_KEPT_HEADERS = ("content-type", "etag", "last-modified")


@dataclass(frozen=True)
class CachedPage:
    """A kept page: the URL it came from (after redirects), its headers and body."""

    url: str
    headers: Mapping[str, str]  # lower-case names, those in _KEPT_HEADERS
    body: bytes

    def validators(self) -> dict[str, str]:
        """The conditional request headers that revalidate it."""
        asked = {}
        if "etag" in self.headers:
            asked["If-None-Match"] = self.headers["etag"]
        if "last-modified" in self.headers:
            asked["If-Modified-Since"] = self.headers["last-modified"]
        return asked


class DiskCache:
    """Pages and blobs under ``root`` (created on first write); thread-safe
    (every write is an atomic rename of a complete file)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # -- pages ---------------------------------------------------------------------

    def _page_path(self, url: str, accept: str) -> Path:
        key = hashlib.sha256(f"{url}\n{accept}".encode()).hexdigest()
        return self.root / "pages" / key[:2] / key

    def page(self, url: str, accept: str) -> CachedPage | None:
        """The kept page for ``url`` asked with ``accept``; None when none is
        kept or the file is unreadable (then it is fetched again)."""
        try:
            data = self._page_path(url, accept).read_bytes()
        except OSError:
            return None
        head, newline, body = data.partition(b"\n")
        try:
            meta = json.loads(head)
            headers = {str(k): str(v) for k, v in meta["headers"].items()}
            return CachedPage(str(meta["url"]), headers, body) if newline else None
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def keep_page(self, url: str, accept: str, final_url: str,
                  headers: Mapping[str, str], body: bytes) -> bool:
        """Keep a page answered with ``headers`` (any case); False (not kept)
        when they carry no validator."""
        kept = {name: headers[name] for name in _KEPT_HEADERS if name in headers}
        if "etag" not in kept and "last-modified" not in kept:
            return False
        head = json.dumps({"url": final_url, "headers": kept}, sort_keys=True).encode()
        atomic_write(self._page_path(url, accept), head + b"\n" + body, fsync=False)
        return True

    # -- immutable bytes -----------------------------------------------------------

    def _blob_path(self, key: str) -> Path:
        return self.root / "blobs" / key[:2] / key

    def blob_folders(self) -> list[Path]:
        """The folders the blobs live in (``gc`` reads them), sorted; none yet: []."""
        blobs = self.root / "blobs"
        return sorted(p for p in blobs.iterdir() if p.is_dir()) if blobs.is_dir() else []

    def blob(self, key: str, *, limit: int | None = None) -> bytes | None:
        """The bytes kept under ``key`` (a sha256 hex digest, maybe with a suffix);
        None when there are none, or more than ``limit`` (kept before a cap was)."""
        path = self._blob_path(key)
        try:
            if limit is not None and path.stat().st_size > limit:
                return None
            return path.read_bytes()
        except OSError:
            return None

    def keep_blob(self, key: str, data: bytes) -> None:
        atomic_write(self._blob_path(key), data, fsync=False)
