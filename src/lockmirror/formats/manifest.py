"""``manifest.json``: every file of a mirror tree with its size and sha256.

The index stage writes it last; verify, bundle, import and publish read it.
Format (sorted keys, one stable encoding, so the same tree gives the same
bytes)::

    {"format": "lockmirror-manifest/1",
     "files": {"files/certifi/certifi-2023.7.22-py3-none-any.whl":
                   {"sha256": "...", "size": 158334}, ...}}

Paths are POSIX, relative to the tree root, and never include
``manifest.json`` itself.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, IntegrityError, LockmirrorError
from ..fsutil import atomic_write, sha256_file
from .bounded import load_json

MANIFEST_NAME = "manifest.json"
FORMAT = "lockmirror-manifest/1"
INSTALLABLE_DIRS = ("simple/", "files/", "constraints/", "requirements/", "lockfiles/")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Entry:
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    files: Mapping[str, Entry] = field(default_factory=dict)

    def dumps(self) -> str:
        return join_encoded([encode_entries(sorted(self.files.items()))])

    @classmethod
    def loads(cls, text: str | bytes, *, where: str = MANIFEST_NAME) -> Manifest:
        """Parse with :mod:`lockmirror.formats.bounded`'s limits; InputError (exit 2)
        naming ``where`` if it is not a manifest, IntegrityError for an unsafe path."""
        data = load_json(text, where=where)
        try:
            files = entries_from_json(check_format(data, FORMAT)["files"], where=where)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"not a lockmirror manifest: {exc}", where=where) from None
        return cls(files=files)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise LockmirrorError("manifest is missing", where=str(path),
                                  hint="build the index with `doit index`") from None
        except OSError as exc:
            raise LockmirrorError(f"cannot read the manifest: {exc.strerror}",
                                  where=str(path)) from None
        return cls.loads(data, where=str(path))

    def write(self, path: Path) -> bool:
        return atomic_write(path, self.dumps(), only_if_changed=True)

    @property
    def total_size(self) -> int:
        return sum(e.size for e in self.files.values())

    def installable(self) -> Manifest:
        """What an installer reads: the pages, files, constraints, requirements and lockfile copies
        (not the landing page, its data or the SBOMs, which name mirror.yaml's commit)."""
        return Manifest({rel: entry for rel, entry in self.files.items()
                         if rel.startswith(INSTALLABLE_DIRS)})


def encode_entries(entries: Iterable[tuple[str, Entry]]) -> str:
    """The text of ``entries`` (sorted by path) inside a manifest's ``files``.

    :func:`join_encoded` of such parts, in path order, is :meth:`Manifest.dumps`.
    The bytes are those of ``json.dumps(data, indent=1, sort_keys=True)``,
    3-5x faster (indented JSON is encoded in pure Python).
    """
    return encode_files([(path, entry.sha256, entry.size) for path, entry in entries])


def encode_files(files: Iterable[tuple[str, str, int]]) -> str:
    """:func:`encode_entries` of plain (path, sha256, size) tuples, sorted by
    path: a writer of a large manifest need not make an Entry per file."""
    quote = json.encoder.encode_basestring_ascii
    return ",\n".join([
        f'  {quote(path)}: {{\n   "sha256": {quote(sha256)},\n   "size": {int(size)}\n  }}'
        for path, sha256, size in files])


def join_encoded(parts: Iterable[str]) -> str:
    """A whole manifest from :func:`encode_entries` parts given in path order."""
    body = ",\n".join(part for part in parts if part)
    if not body:
        return json.dumps({"format": FORMAT, "files": {}}, indent=1, sort_keys=True) + "\n"
    return f'{{\n "files": {{\n{body}\n }},\n "format": {json.dumps(FORMAT)}\n}}\n'


def entries_to_json(files: Mapping[str, Entry]) -> dict[str, dict[str, str | int]]:
    """``{path: {"sha256", "size"}}``, sorted: the encoding of a file list
    (shared with bundle.json)."""
    return {path: {"sha256": e.sha256, "size": e.size} for path, e in sorted(files.items())}


def check_format(raw: Any, expected: str) -> dict[str, Any]:
    """``raw`` itself if it is a JSON object whose ``format`` is ``expected``;
    TypeError/ValueError for the caller to word (shared with bundle.json)."""
    if not isinstance(raw, dict):
        raise TypeError(f"a JSON {type(raw).__name__}, not an object")
    if raw.get("format") != expected:
        raise ValueError(f"format is {raw.get('format')!r}, expected {expected!r}")
    return raw


def entries_from_json(raw: Mapping[str, Mapping[str, Any]], *,
                      where: str) -> dict[str, Entry]:
    """Decode :func:`entries_to_json`; unsafe paths raise IntegrityError,
    malformed entries ValueError/KeyError/TypeError for the caller to word."""
    if not isinstance(raw, Mapping):
        raise TypeError(f"'files' is a JSON {type(raw).__name__}, not an object")
    files = {}
    for path, entry in raw.items():
        check_relative_path(path, where=where)
        if not isinstance(entry, Mapping) or not {"sha256", "size"} <= entry.keys():
            raise ValueError(f"the entry of {path!r} is not {{\"sha256\": ..., \"size\": ...}}")
        size, sha256 = entry["size"], entry["sha256"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"size of {path!r} is {size!r}, not a byte count")
        if not isinstance(sha256, str) or not _SHA256_HEX.fullmatch(sha256.lower()):
            raise ValueError(f"sha256 of {path!r} is {sha256!r}, not 64 hex digits")
        files[path] = Entry(sha256=sha256.lower(), size=size)
    return files


def check_relative_path(path: str, *, where: str) -> None:
    """Refuse absolute paths, ``..``, backslashes, empty parts and control or
    format characters (a newline, an escape, a bidi override) (IntegrityError)."""
    if (not path or path.startswith("/") or "\\" in path
            or any(part in {"", ".", ".."} for part in path.split("/"))
            or not (path.isascii() and path.isprintable())  # the common case, fast
            and any(unicodedata.category(ch) in ("Cc", "Cf") for ch in path)):
        raise IntegrityError(f"unsafe path {path!r}", where=where)


# fsutil.atomic_writer writes ``<dir>/.<name>.XXXXXXXX.tmp`` (tempfile.mkstemp's
# eight characters) and renames it to ``<dir>/<name>``; the index stage writes
# ``<dir>/.<name>.index-<pid>.tmp`` (:func:`index_temporary`); a process killed
# in between leaves it behind.
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?:[a-z0-9_]{8}|index-(?P<pid>[0-9]+))\.tmp")
STATE_DIR = ".lockmirror"  # an imported mirror's or a publisher's own files; never an index's
# What a directory publish keeps in its destination (publish/directory.py): its lock
# and its receipt (formats/directory_receipt.py reads and writes it here).
DIRECTORY_RECEIPT = f"{STATE_DIR}/receipt.json"
DIRECTORY_LOCK = f"{STATE_DIR}/lock"
PUBLISHER_STATE = frozenset({DIRECTORY_LOCK, DIRECTORY_RECEIPT})
# What an imported mirror keeps about itself (stages/import_state.py): the
# advisory snapshot and mirror.yaml its bundles carried, the quarantine list a
# refresh bundle applied, the manifest its last bundle pinned, the manifest its
# last import or refresh wrote, that bundle's mirror name, time and content id,
# and the key its signature was checked against.
IMPORT_ADVISORIES = f"{STATE_DIR}/advisories.json"
IMPORT_MIRROR_YAML = f"{STATE_DIR}/mirror.yaml"
IMPORT_QUARANTINE = f"{STATE_DIR}/quarantine.json"
IMPORT_BUNDLE_MANIFEST = f"{STATE_DIR}/bundle-manifest.sha256"
IMPORT_MANIFEST = f"{STATE_DIR}/manifest.sha256"  # manifest.json as lockmirror wrote it
IMPORT_BUNDLE_NAME = f"{STATE_DIR}/bundle-name"  # the mirror name its bundles carry
IMPORT_BUNDLE_TIME = f"{STATE_DIR}/bundle-time"  # its epoch and content id (no rollback)
IMPORT_SIGNER = f"{STATE_DIR}/signer"  # the key its last bundle's signature was checked against
IMPORT_STATE = frozenset({IMPORT_ADVISORIES, IMPORT_MIRROR_YAML, IMPORT_QUARANTINE,
                          IMPORT_BUNDLE_MANIFEST, IMPORT_MANIFEST, IMPORT_BUNDLE_NAME,
                          IMPORT_BUNDLE_TIME, IMPORT_SIGNER})


def temporary_target(name: str) -> str | None:
    """The file name an interrupted atomic write was writing when ``name`` is
    such a leftover temporary file (``.wheel.whl.k2j4h5g6.tmp`` -> ``wheel.whl``),
    else None."""
    match = _TEMPORARY.fullmatch(name)
    return match.group("name") if match else None


def index_temporary(name: str, pid: int) -> str:
    """The temporary file an index run (process ``pid``) writes ``name`` to, beside it."""
    return f".{name}.index-{pid}.tmp"


def index_temporary_writer(name: str) -> int | None:
    """The pid of the index run whose temporary file ``name`` is, else None."""
    match = _TEMPORARY.fullmatch(name)
    return int(match.group("pid")) if match and match.group("pid") else None


def scan_tree(root: Path, *, exclude: Iterable[str] = (MANIFEST_NAME,)) -> Manifest:
    """Hash every regular file below ``root`` (sorted; symlinks are refused), but
    ``exclude`` and an imported mirror's state (:data:`IMPORT_STATE`)."""
    skip = set(exclude) | IMPORT_STATE
    files: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if rel in skip or name.startswith(".") and name.endswith(".tmp"):
                continue
            if full.is_symlink() or not full.is_file():
                raise IntegrityError("not a regular file", where=str(full))
            files[rel] = Entry(sha256=sha256_file(full), size=full.stat().st_size)
    return Manifest(files=files)


@dataclass(frozen=True)
class TreeReport:
    """What :func:`check_tree` found. ``temporary`` lists leftovers of an
    interrupted atomic write (named, not counted against the tree: they are
    hidden, never linked, and ``publish --prune`` removes them)."""

    missing: tuple[str, ...]
    altered: tuple[str, ...]
    unexpected: tuple[str, ...]
    temporary: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.missing or self.altered or self.unexpected)


def check_tree(root: Path, manifest: Manifest, *, hash_files: bool = True) -> TreeReport:
    """Compare a tree with a manifest: missing, altered (size or hash), unexpected.

    A directory publish's own state (:data:`PUBLISHER_STATE`) and an imported
    mirror's (:data:`IMPORT_STATE`) are not
    unexpected; leftover temporary files of lockmirror's atomic writes are
    reported apart, in ``temporary``."""
    missing, altered = [], []
    for rel, entry in sorted(manifest.files.items()):
        path = root / rel
        try:
            stat = path.lstat()
        except FileNotFoundError:
            missing.append(rel)
            continue
        wrong_kind = not path.is_file() or path.is_symlink() or stat.st_size != entry.size
        if wrong_kind or (hash_files and sha256_file(path) != entry.sha256):
            altered.append(rel)
    unexpected: list[str] = []
    temporary: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if (rel == MANIFEST_NAME or rel in manifest.files or rel in PUBLISHER_STATE
                    or rel in IMPORT_STATE):
                continue
            (temporary if temporary_target(name) else unexpected).append(rel)
    return TreeReport(tuple(missing), tuple(altered), tuple(unexpected), tuple(temporary))
