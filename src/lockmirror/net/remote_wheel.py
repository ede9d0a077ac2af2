"""A wheel's METADATA read from a server: HTTP Range requests, or one download.

:func:`metadata_by_ranges` reads the zip's central directory and the one
member through Range requests (a few KiB of a wheel of any size);
:func:`metadata_by_download` streams the whole wheel to a temporary file,
verifying its sha256 and size, when the server ignores Range. Both parse the
archive with :func:`lockmirror.formats.core_metadata.zip_metadata`, the one reader.

The server decides nothing of how much is read: a Range answer must be the range
asked, one range read is at most :data:`MAX_RANGE_BYTES` (whatever size the zip's
central directory states), and a wheel downloaded whole is at most the page's size,
or :data:`lockmirror.net.body.MAX_WHEEL_BYTES` when the page states none.
"""

from __future__ import annotations

import hashlib
import io
import re
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import requests

from ..errors import IntegrityError, LockmirrorError, NetworkError
from ..formats.core_metadata import zip_metadata
from ..fsutil import format_size
from ..redaction import redact_url
from .body import MAX_WHEEL_BYTES, iter_raw_body, read_body, too_large
from .http import get

if TYPE_CHECKING:
    from ..config_schema import SourceConfig
    from .simple_page import DistFile

CHUNK = 1 << 20
# One Range request reads at most this much: a member (METADATA is capped at 16 MiB) or
# the zip central directory, whose size the archive states (a real wheel's: KiBs to a
# few MiB, ~100 bytes a file).
MAX_RANGE_BYTES = 32 << 20
# zipfile reads a member's header, then its data: read a little ahead.
READ_AHEAD = 16 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


class RangeFile:
    """A read-only, seekable file of ``length`` bytes on a server, fetching only
    the byte ranges read; ``fetch(start, end)`` answers exactly bytes
    ``start`` to ``end`` (exclusive), ``known`` holds ranges already read."""

    def __init__(self, length: int, fetch: Callable[[int, int], bytes],
                 known: Mapping[int, bytes]) -> None:
        self._length = length
        self._fetch = fetch
        self._segments: dict[int, bytes] = dict(known)
        self._position = 0

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        self._position = max(0, base + offset)
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        start = self._position
        end = self._length if size is None or size < 0 else min(self._length, start + size)
        if end <= start:
            return b""
        self._fill(start, end)
        out = bytearray()
        for segment_start, data in sorted(self._segments.items()):
            here = start + len(out)
            if segment_start + len(data) <= here or segment_start > here:
                continue
            offset = here - segment_start
            out += data[offset: offset + (end - start - len(out))]
            if len(out) >= end - start:
                break
        self._position = start + len(out)
        return bytes(out)

    def _fill(self, start: int, end: int) -> None:
        """Fetch the parts of [start, end) not yet read."""
        position = start
        for segment_start, data in sorted(self._segments.items()):
            if segment_start + len(data) <= position:
                continue
            if segment_start >= end:
                break
            if segment_start > position:
                self._segments[position] = self._fetch(position, segment_start)
            position = max(position, segment_start + len(data))
            if position >= end:
                return
        if position < end:
            stop = min(self._length, max(end, position + READ_AHEAD))
            self._segments[position] = self._fetch(position, stop)


def metadata_by_ranges(file: DistFile, response: requests.Response,
                       session: requests.Session, auth: requests.auth.AuthBase,
                       sources: Sequence[SourceConfig] = (), *, asked: int) -> bytes:
    """METADATA of ``file`` given the 206 ``response`` to a Range request for its last
    ``asked`` bytes; further ranges are asked through ``session`` with ``auth``,
    following redirects as :func:`lockmirror.net.http.get` does with ``sources``.
    Reads at most ``asked`` bytes of ``response`` and :data:`MAX_RANGE_BYTES` a range.

    Raises LockmirrorError (no usable Content-Range, or one other than asked; a range
    past the cap), IntegrityError (the length differs from the page's size),
    NetworkError (a short range), MetadataError, zipfile.BadZipFile and requests' errors."""
    start, end, length = _content_range(response, file)
    if file.size is not None and length != file.size:
        raise IntegrityError(f"{file.filename} is {length} bytes, the index says {file.size}",
                             where=redact_url(file.url))
    if (start, end) != (max(0, length - asked), length - 1):
        raise _other_range(file, f"the last {asked} bytes", start, end, length)
    tail = read_body(response, file.url, cap=end + 1 - start,
                     what=f"the tail of {file.filename}")

    def fetch(begin: int, stop: int) -> bytes:
        if stop - begin > MAX_RANGE_BYTES:  # a zip central directory stating any size
            raise LockmirrorError(f"{file.filename}: a read of {stop - begin} bytes (its zip "
                                  f"central directory or a member) is more than the "
                                  f"{format_size(MAX_RANGE_BYTES)} lockmirror reads by Range "
                                  "requests; refused", where=redact_url(file.url))
        part = get(session, file.url, auth=auth, sources=sources, stream=True,
                   headers={"Range": f"bytes={begin}-{stop - 1}", "Accept-Encoding": "identity"})
        with part:
            if part.status_code == 200:  # the server stopped honouring Range
                body = _slice_of_whole(part, begin, stop, file.url)
            else:
                answered = _content_range(part, file)
                if answered != (begin, stop - 1, length):
                    raise _other_range(file, f"bytes {begin}-{stop - 1}", *answered)
                body = read_body(part, file.url, cap=stop - begin,
                                 what=f"a range of {file.filename}")
        if len(body) != stop - begin:
            raise NetworkError(f"cannot fetch {redact_url(file.url)}: asked for "
                               f"{stop - begin} bytes, got {len(body)}")
        return body

    with zipfile.ZipFile(RangeFile(length, fetch, {start: tail})) as archive:
        return zip_metadata(archive, file.filename)


def metadata_by_download(file: DistFile, response: requests.Response) -> bytes:
    """METADATA of ``file`` from the whole body of ``response``, spooled to a
    temporary file and verified against the page's sha256 and size first; a page
    that states no size admits :data:`MAX_WHEEL_BYTES`.

    Raises IntegrityError, LockmirrorError (past the cap), MetadataError,
    zipfile.BadZipFile, requests' errors."""
    digest = hashlib.sha256()
    size = 0
    what = f"the wheel {file.filename}"
    stated = response.headers.get("Content-Length", "").strip()
    if file.size is None and stated.isdigit() and int(stated) > MAX_WHEEL_BYTES:
        raise too_large(file.url, what, MAX_WHEEL_BYTES, int(stated))
    with tempfile.TemporaryFile(prefix="lockmirror-wheel-") as spool:
        for chunk in iter_raw_body(response, CHUNK, file.url):
            spool.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            if file.size is not None and size > file.size:
                break  # longer than the page says: verify_digest refuses it
            if size > MAX_WHEEL_BYTES:
                raise too_large(file.url, what, MAX_WHEEL_BYTES)
        verify_digest(digest.hexdigest(), size, file)
        spool.seek(0)
        with zipfile.ZipFile(spool) as archive:
            return zip_metadata(archive, file.filename)


def verify_digest(actual_sha256: str, actual_size: int, file: DistFile) -> None:
    """Raise IntegrityError when the bytes read differ from what the page says of ``file``."""
    if file.size is not None and actual_size != file.size:
        raise IntegrityError(f"{file.filename} is {actual_size} bytes, the index says {file.size}",
                             where=redact_url(file.url))
    if file.sha256 is not None and actual_sha256 != file.sha256:
        raise IntegrityError(f"{file.filename} has sha256 {actual_sha256}, "
                             f"the index says {file.sha256}", where=redact_url(file.url),
                             hint="the index or something between serves altered bytes; "
                                  "refusing them")


def _content_range(response: requests.Response, file: DistFile) -> tuple[int, int, int]:
    """(first byte, last byte, length) the Content-Range of the 206 ``response`` states.

    Raises LockmirrorError when it has none usable."""
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if not match:
        raise LockmirrorError("the server sent a partial response without a usable "
                              "Content-Range", where=redact_url(file.url))
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def _other_range(file: DistFile, asked: str, start: int, end: int,
                 length: int) -> LockmirrorError:
    return LockmirrorError(f"asked for {asked} of {file.filename}, the server answered "
                           f"bytes {start}-{end}/{length}; refused", where=redact_url(file.url))


def _slice_of_whole(response: requests.Response, begin: int, stop: int, url: str) -> bytes:
    """Bytes ``begin`` to ``stop`` (exclusive) of the whole body of ``response``: the
    bytes before are read and dropped, none after ``stop`` are waited for."""
    kept = bytearray()
    seen = 0
    for piece in iter_raw_body(response, CHUNK, url):
        kept += piece[max(0, begin - seen): max(0, stop - seen)]
        seen += len(piece)
        if seen >= stop:
            break
    return bytes(kept)
