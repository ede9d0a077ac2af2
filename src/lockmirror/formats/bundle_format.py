"""The bundle format on disk: names, ``bundle.json``, checksum listings, sizes.

Everything here works on bytes already on disk and never touches the
network; the bundle stage (:mod:`lockmirror.stages.bundle`) writes what this module
describes, and :mod:`lockmirror.formats.bundle_reader` reads a bundle by it.

* :class:`BundleInfo` is ``bundle.json``: what a bundle is and the sha256 and
  size of every other member. Its hash names the bundle (the content id).
* :func:`format_checksums` / :func:`read_checksums`: ``sha256sum`` listings
  (the outer ``X.tar.sha256`` and the inner ``SHA256SUMS``).
* :func:`parse_size`: ``--split`` sizes such as ``700M`` or ``4G``.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ..errors import BundleError, BundleFormatError, LockmirrorError
from ..fsutil import parse_size as fsutil_parse_size
from ..fsutil import sha256_bytes
from .bounded import load_json
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
