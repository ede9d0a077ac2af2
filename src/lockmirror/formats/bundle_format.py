"""The bundle format on disk: names, ``bundle.json``, checksum listings, sizes, reading.

Everything here works on bytes already on disk and never touches the
network; the bundle stage (:mod:`lockmirror.stages.bundle`) writes what this module
reads, and the importer reads bundles with it.

* :class:`BundleInfo` is ``bundle.json``: what a bundle is and the sha256 and
  size of every other member. Its hash names the bundle (the content id).
* :func:`format_checksums` / :func:`read_checksums`: ``sha256sum`` listings
  (the outer ``X.tar.sha256`` and the inner ``SHA256SUMS``).
* :func:`parse_size`: ``--split`` sizes such as ``700M`` or ``4G``.
* :func:`locate_bundle`, :class:`ConcatenatedReader`, :func:`read_head`: a bundle's
  volumes found, read as one stream, and its first members read and checked (tar headers
  through :mod:`lockmirror.formats.bundle_headers`, every stated size capped before it is
  read; a delta's base manifest: :func:`lockmirror.stages.bundle.load_delta_base`).
"""

from __future__ import annotations

import bisect
import io
import json
import os
import re
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..errors import BundleError, BundleFormatError, LockmirrorError
from ..fsutil import parse_size as fsutil_parse_size
from ..fsutil import sha256_bytes
from . import signing
from .bounded import check_json_size, load_json
from .bundle_headers import next_member, open_tar, refuse_cut
from .manifest import (
    MANIFEST_NAME,
    Entry,
    check_format,
    entries_from_json,
    entries_to_json,
)

FORMAT = "lockmirror-bundle/2"  # /2 records the members' mtime; a /1 bundle.json has none
FORMAT_V1 = "lockmirror-bundle/1"  # still read: bundles written before it
_FORMAT_NUMBER = re.compile(r"lockmirror-bundle/([0-9]{1,9})")  # a newer one: say so
NEWER_FORMAT_HINT = ("install lockmirror from that bundle's tool/ (a delta's: the newest full "
                     "bundle's), as the README's 'Across the air gap' says, and read it with "
                     "that; refusing the whole bundle; nothing was changed")
INFO_NAME = "bundle.json"
SIGNATURE_NAME = "bundle.json.sig"
SUMS_NAME = "SHA256SUMS"
README_NAME = "README.txt"
MIRROR_YAML_NAME = "mirror.yaml"
INDEX_DIR = "index"
TOOL_DIR = "tool"
TOOL_SBOM = "tool.cdx.json"  # the SBOM of what tool/ carries (a full bundle's)
LOCKFILE_DIR = "lockfiles"
INDEX_MANIFEST = f"{INDEX_DIR}/{MANIFEST_NAME}"
CONTENT_ID_LENGTH = 16
FULL, DELTA = "full", "delta"
# a refresh bundle: the advisory snapshot and the quarantine list, no index
# (lockmirror bundle --advisories-only; stages/refresh_bundle.py, import_refresh.py)
ADVISORIES = "advisories"
ADVISORIES_NAME = "advisories.json"
QUARANTINE_NAME = "quarantine.json"
BLOCK = tarfile.BLOCKSIZE
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"

Buffer = bytearray | memoryview


# --------------------------------------------------------------------------
# bundle.json
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleInfo:
    """``bundle.json``: what a bundle is and every member's sha256 and size.

    ``files`` lists every member (paths below the bundle's top directory)
    except ``bundle.json`` and its signature. A delta records the sha256 of
    the ``manifest.json`` it applies onto (``base_manifest_sha256``).
    ``mtime`` is every member's modification time in the tar (SOURCE_DATE_EPOCH):
    part of the tar's bytes, so part of the content id, and one id never names two
    different tars.
    """

    name: str
    kind: str
    index_manifest_sha256: str
    base_manifest_sha256: str | None
    lockmirror_version: str
    tool_python: str | None
    files: Mapping[str, Entry] = field(default_factory=dict)
    mtime: int | None = None  # None: a bundle written before bundle.json recorded it
    # the format a read bundle.json gave, written back as it was (None: /2 with an mtime)
    format_read: str | None = field(default=None, compare=False)

    def dumps(self) -> bytes:
        """The bytes of bundle.json; made once per instance (the content id, the
        top directory and the file name all hash them)."""
        return self._dumped

    @cached_property
    def _dumped(self) -> bytes:
        data: dict[str, object] = {
            "format": self.format_read or (FORMAT if self.mtime is not None else FORMAT_V1),
            "name": self.name,
            "kind": self.kind,
            "index_manifest_sha256": self.index_manifest_sha256,
            "base_manifest_sha256": self.base_manifest_sha256,
            "lockmirror_version": self.lockmirror_version,
            "tool_python": self.tool_python,
            "files": entries_to_json(self.files),
        }
        if self.mtime is not None:
            data["mtime"] = self.mtime
        return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def loads(cls, data: bytes, *, where: str) -> BundleInfo:
        """Parse (with :mod:`lockmirror.formats.bounded`'s limits) and sanity-check;
        BundleFormatError (a BundleError, exit 2) naming ``where`` otherwise."""
        raw = load_json(data, where=where, error=BundleFormatError)
        _refuse_newer_format(raw, where=where)
        try:
            found = raw.get("format") if isinstance(raw, dict) else None
            if isinstance(raw, dict) and found not in (FORMAT_V1, FORMAT):
                raise ValueError(f"format is {found!r}, expected {FORMAT_V1!r} "
                                 f"or {FORMAT!r}")  # both are read
            raw = check_format(raw, FORMAT_V1 if found == FORMAT_V1 else FORMAT)  # an object
            files = entries_from_json(raw["files"], where=where)
            for key in ("base_manifest_sha256", "tool_python"):
                if not isinstance(raw[key], str | None):
                    raise TypeError(f"{key} is a JSON {type(raw[key]).__name__}")
            mtime = raw["mtime"] if raw["format"] == FORMAT else raw.get("mtime")
            if mtime is not None and (type(mtime) is not int or mtime < 0):
                raise TypeError(f"mtime is {mtime!r}, not a time in seconds")
            info = cls(name=str(raw["name"]), kind=str(raw["kind"]),
                       index_manifest_sha256=str(raw["index_manifest_sha256"]),
                       base_manifest_sha256=raw["base_manifest_sha256"],
                       lockmirror_version=str(raw["lockmirror_version"]),
                       tool_python=raw["tool_python"], files=files, mtime=mtime,
                       format_read=str(raw["format"]))
            if info.kind not in (FULL, DELTA, ADVISORIES) or (info.kind == DELTA) != bool(
                    info.base_manifest_sha256):
                raise ValueError(f"kind {info.kind!r} with base {info.base_manifest_sha256!r}")
            if not re.fullmatch(NAME_PATTERN, info.name):
                raise ValueError(f"bad name {info.name!r}")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BundleFormatError(f"not a lockmirror bundle.json: {exc}", where=where) from None
        except LockmirrorError as exc:
            raise BundleFormatError(exc.message, where=exc.where) from None
        return info

    @cached_property
    def content_id(self) -> str:
        return sha256_bytes(self.dumps())[:CONTENT_ID_LENGTH]

    @property
    def top(self) -> str:
        """The directory every member lives in."""
        return f"lockmirror-{self.name}-{self.content_id}"

    @property
    def filename(self) -> str:
        suffix = {DELTA: ".delta.tar", ADVISORIES: ".advisories.tar"}.get(self.kind, ".tar")
        return f"{self.top}{suffix}"


def _refuse_newer_format(raw: object, *, where: str) -> None:
    """Say what a ``bundle.json`` of a format after :data:`FORMAT` is, a newer
    lockmirror's, and how to read it (it was "not a lockmirror bundle.json")."""
    found = _FORMAT_NUMBER.fullmatch(str(raw.get("format"))) if isinstance(raw, dict) else None
    if found and int(found[1]) > int(FORMAT.rsplit("/", 1)[1]):
        raise BundleFormatError(
            f"made by a newer lockmirror (format {found[0]}; this one reads {FORMAT_V1} and "
            f"{FORMAT})", where=where, hint=NEWER_FORMAT_HINT)


# --------------------------------------------------------------------------
# Checksum listings (``X.tar.sha256``) and sizes
# --------------------------------------------------------------------------

_SUMS_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


def format_checksums(entries: Iterable[tuple[str, str]]) -> str:
    """``sha256sum`` output: ``<hex>  <name>`` per line."""
    return "".join(f"{digest}  {name}\n" for name, digest in entries)


def read_checksums(path: Path) -> list[tuple[str, str]]:
    """(name, sha256) pairs of a ``sha256sum`` listing; BundleError if unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BundleError("checksum file is missing", where=str(path),
                          hint="copy the .sha256 file along with the bundle") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"cannot read checksum file: {exc}", where=str(path)) from None
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _SUMS_LINE.match(line)
        if not match or "/" in match.group(2):
            raise BundleError("not a sha256sum line", where=f"{path}:{number}")
        entries.append((match.group(2), match.group(1).lower()))
    if not entries:
        raise BundleError("checksum file is empty", where=str(path))
    return entries


def parse_size(text: str | int) -> int:
    """A ``--split`` volume size (:func:`lockmirror.fsutil.parse_size`) in bytes.

    Raises LockmirrorError for anything else or for less than one tar block.
    """
    try:
        value = fsutil_parse_size(text)
    except ValueError:
        raise LockmirrorError(f"not a size: {text!r}", hint="e.g. 700M, 4095M, 4G, 650MB") from None
    if value < BLOCK:
        raise LockmirrorError(f"volume size {value} is smaller than one tar block ({BLOCK})")
    return value


# --------------------------------------------------------------------------
# Reading bundles (shared with the importer)
# --------------------------------------------------------------------------

VOLUME_NAME = re.compile(r"^(.+\.tar)\.(\d{3})$")


@dataclass(frozen=True)
class BundleSource:
    """A bundle on disk: one tar or its volumes in order, and their expected hashes."""

    parts: tuple[Path, ...]
    expected_sha256: tuple[str, ...]
    checksums: Path

    @property
    def display(self) -> str:
        return self.parts[0].name if len(self.parts) == 1 else f"{self.checksums.stem}.*"

    def open(self) -> ConcatenatedReader:
        return ConcatenatedReader(self.parts)


def locate_bundle(paths: Sequence[Path]) -> BundleSource:
    """Find a bundle's volumes and its ``.sha256`` listing from the paths given.

    Accepts one ``.tar``, or volumes ``X.tar.NNN`` (any order; volumes not
    given are looked for beside the ones given); ``.sha256`` arguments are
    skipped. Raises BundleError naming a missing volume or listing.
    """
    given = [Path(p) for p in paths if not str(p).endswith(".sha256")]
    if not given:
        raise BundleError("no bundle given")
    for candidate in given:
        if not candidate.is_file():
            raise BundleError("no such file", where=str(candidate))
    stems = {volume_stem(p.name) for p in given}
    if len(stems) != 1:
        raise BundleError(f"these are not one bundle: {', '.join(sorted(stems))}",
                          hint="import one bundle at a time, oldest first")
    stem = stems.pop()
    listing = next((p.parent / f"{stem}.sha256" for p in given
                    if (p.parent / f"{stem}.sha256").is_file()), given[0].parent / f"{stem}.sha256")
    entries = read_checksums(listing)
    by_name = {p.name: p for p in given}
    parts = []
    for name, _digest in entries:
        if not (name == stem or VOLUME_NAME.match(name) and name.startswith(stem + ".")):
            raise BundleError(f"lists {name!r}, which is not part of {stem}", where=str(listing))
        path = by_name.get(name) or next(
            (p.parent / name for p in given if (p.parent / name).is_file()), None)
        if path is None or not path.is_file():
            raise BundleError(f"{name} is missing", where=str(listing),
                              hint="pass every volume of the bundle")
        parts.append(path)
    unknown = set(by_name) - {name for name, _ in entries}
    if unknown:
        raise BundleError(f"not listed in {listing.name}: {', '.join(sorted(unknown))}")
    return BundleSource(tuple(parts), tuple(d for _, d in entries), listing)


def volume_stem(name: str) -> str:
    """``X.tar`` for a volume ``X.tar.007``; the name itself otherwise."""
    match = VOLUME_NAME.match(name)
    return match.group(1) if match else name


class ConcatenatedReader(io.RawIOBase):
    """A read-only, seekable view of several files as one (a bundle's volumes)."""

    def __init__(self, parts: Sequence[Path]) -> None:
        super().__init__()
        self._files = []
        try:
            for part in parts:
                self._files.append(open(part, "rb", buffering=0))  # noqa: SIM115 - closed in close()
        except OSError as exc:
            self.close()
            raise BundleError(f"cannot open: {exc.strerror}", where=str(exc.filename)) from None
        sizes = [os.fstat(f.fileno()).st_size for f in self._files]
        self._starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self._sizes = sizes
        self.size = sum(sizes)
        self._pos = 0

    @property
    def part_sizes(self) -> list[int]:
        return list(self._sizes)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self.size:
            index = bisect.bisect_right(self._starts, self._pos) - 1
            local = self._pos - self._starts[index]
            want = min(len(view) - done, self._sizes[index] - local)
            handle = self._files[index]
            handle.seek(local)
            got = handle.readinto(view[done:done + want])
            if not got:
                break  # the file shrank under us; callers see a short read
            done += got
            self._pos += got
        return done

    def close(self) -> None:
        for handle in self._files:
            handle.close()
        super().close()


def read_exact(reader: ConcatenatedReader, offset: int, size: int, *, where: str) -> bytes:
    reader.seek(offset)
    data = bytearray(size)
    if reader.readinto(data) != size:
        raise BundleError("bundle is truncated: it ends inside this member", where=where)
    return bytes(data)


@dataclass(frozen=True)
class BundleHead:
    info: BundleInfo
    info_bytes: bytes
    signature: str | None
    signer: str | None = None  # fingerprint of the key that verified the signature, if given


def read_head(source: BundleSource, trusted: Ed25519PublicKey | None = None) -> BundleHead:
    """Read ``bundle.json`` (and its signature) from the start of a bundle; with
    ``trusted``, check the signature before ``bundle.json`` is parsed.

    Costs a few header reads and one read of ``bundle.json``, refused unread when its
    header states more than JSON's size cap. Raises BundleError if the bundle does not
    start the way lockmirror writes them, or with ``trusted`` is unsigned or not
    signed by it (BundleFormatError for a ``bundle.json`` past the cap or malformed).
    """
    with source.open() as reader:
        return head_of(reader, source.display, trusted)


def head_of(reader: ConcatenatedReader, display: str,
            trusted: Ed25519PublicKey | None = None) -> BundleHead:
    """:func:`read_head` of the bundle ``display`` names, open as ``reader``."""
    reader.seek(0)
    top, info_member, sig_member = _first_members(open_tar(reader, where=display),
                                                  reader.size, display)
    where = f"{display}:{info_member.name}"
    info_bytes = read_exact(reader, info_member.offset_data, info_member.size, where=where)
    signature = None
    if sig_member is not None and sig_member.name == f"{top.name}/{SIGNATURE_NAME}":
        if sig_member.size > 1 << 16:
            raise BundleError("signature is implausibly large", where=sig_member.name)
        raw = read_exact(reader, sig_member.offset_data, sig_member.size,
                         where=f"{display}:{sig_member.name}")
        signature = raw.decode("ascii", "replace")
    signer = signing.check_bundle_signature(
        info_bytes, signature, trusted, bundle=display,
        where=f"{display}:{top.name}/{SIGNATURE_NAME}")
    info = BundleInfo.loads(info_bytes, where=where)
    if info.top != top.name:
        raise BundleError(f"bundle.json hashes to {info.content_id}, but the bundle "
                          f"directory is {top.name}", where=where,
                          hint="bundle.json was altered")
    return BundleHead(info, info_bytes, signature, signer)


def _first_members(tar: tarfile.TarFile, total: int, display: str
                   ) -> tuple[tarfile.TarInfo, tarfile.TarInfo, tarfile.TarInfo | None]:
    """The bundle's directory, its ``bundle.json`` (refused by the size its header
    states before tarfile seeks past it) and the member after it (the signature, if
    signed); BundleError if the bundle does not start so."""
    top = info_member = None
    try:
        top = next_member(tar, where=display)
        info_member = next_member(tar, where=display)
    except tarfile.TarError as exc:
        raise _damaged(exc, top, total, display) from None
    if top is not None and top.isdir() and info_member is None:
        raise BundleError(f"bundle is truncated: it ends before {INFO_NAME}",
                          where=display, hint="copy it again")
    if (top is None or not top.isdir() or info_member is None
            or info_member.name != f"{top.name}/{INFO_NAME}"):
        raise BundleError(f"does not start with <dir>/{INFO_NAME}; not a lockmirror bundle",
                          where=display)
    check_json_size(info_member.size, where=f"{display}:{info_member.name}",
                    error=BundleFormatError)
    try:
        return top, info_member, next_member(tar, where=display)
    except tarfile.TarError as exc:
        raise _damaged(exc, info_member, total, display) from None


def _damaged(exc: tarfile.TarError, last: tarfile.TarInfo | None, total: int,
             display: str) -> BundleError:
    """The error for a tar header that does not read after ``last``: the bundle cut
    inside ``last`` (raised), else a damaged header."""
    if last is not None:
        refuse_cut(last, total, bundle=display)
    return BundleError(f"damaged tar header ({exc})", where=display)
