"""The bundle stage: a reproducible tarball that carries a mirror across an air gap.

``build_bundle`` writes ``<out>/lockmirror-<name>-<content id>.tar`` (a delta:
``...-<content id>.delta.tar``) and ``<that>.sha256`` (``sha256sum -c``
format). With ``split`` the tar is cut into volumes ``.tar.001``,
``.tar.002``, ... and the ``.sha256`` file lists each volume's hash.

Layout (every member below one directory, ``lockmirror-<name>-<id>/``)::

    bundle.json          first member: what the bundle is and the sha256 and
                         size of every other member (except the signature)
    bundle.json.sig      optional SSHSIG (Ed25519) signature of bundle.json
    README.txt           how to check, install and import on the far side
    SHA256SUMS           ``sha256sum -c`` list of the members below
    mirror.yaml
    lockfiles/pylock.<set>.toml
    tool/*.whl           lockmirror's wheel and its dependencies' wheels
    index/...            the dist-index tree, ``index/manifest.json`` included
                         (a delta carries only files the base lacks, plus
                         every page and the new manifest)

Reproducible: members in a fixed order (the head above, then sorted), GNU
tar headers without pax records, mtime from ``SOURCE_DATE_EPOCH`` (else the
lockfiles' last commit time, else 0), uid/gid 0, no user or group names,
mode 0644/0755. The same inputs give the same bytes wherever and whenever
they are built. Plain tar, no compression: the payload is wheels, which are
zip files already (benchmarks/bench_bundle.py measures gzip and zstd).

The content id is the first 16 hex digits of the sha256 of ``bundle.json``,
which pins every member, so it names the content.
"""

from __future__ import annotations

import bisect
import glob
import hashlib
import io
import json
import os
import queue
import re
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import __version__, signing
from .bounded import load_json
from .errors import BundleError, BundleFormatError, LockmirrorError
from .fsutil import CHUNK, atomic_write, sha256_bytes
from .manifest import MANIFEST_NAME, Entry, Manifest, entries_from_json, entries_to_json
from .toolwheels import collect_tool_wheels

FORMAT = "lockmirror-bundle/1"
INFO_NAME = "bundle.json"
SIGNATURE_NAME = "bundle.json.sig"
SUMS_NAME = "SHA256SUMS"
README_NAME = "README.txt"
MIRROR_YAML_NAME = "mirror.yaml"
INDEX_DIR = "index"
TOOL_DIR = "tool"
LOCKFILE_DIR = "lockfiles"
INDEX_MANIFEST = f"{INDEX_DIR}/{MANIFEST_NAME}"
CONTENT_ID_LENGTH = 16
FULL, DELTA = "full", "delta"

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
FILE_MODE, DIR_MODE = 0o644, 0o755
# Files up to this size are read into memory and written with the headers;
# bigger ones are copied by the kernel and hashed by a second thread.
SMALL_FILE = 256 * 1024
MAX_PARTS = 999

Progress = Callable[[str], None]
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
    """

    name: str
    kind: str
    index_manifest_sha256: str
    base_manifest_sha256: str | None
    lockmirror_version: str
    tool_python: str | None
    files: Mapping[str, Entry] = field(default_factory=dict)

    def dumps(self) -> bytes:
        data = {
            "format": FORMAT,
            "name": self.name,
            "kind": self.kind,
            "index_manifest_sha256": self.index_manifest_sha256,
            "base_manifest_sha256": self.base_manifest_sha256,
            "lockmirror_version": self.lockmirror_version,
            "tool_python": self.tool_python,
            "files": entries_to_json(self.files),
        }
        return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def loads(cls, data: bytes, *, where: str) -> BundleInfo:
        """Parse (with :mod:`lockmirror.bounded`'s limits) and sanity-check;
        BundleFormatError (a BundleError, exit 2) naming ``where`` otherwise."""
        raw = load_json(data, where=where, error=BundleFormatError)
        try:
            if not isinstance(raw, dict):
                raise TypeError(f"a JSON {type(raw).__name__}, not an object")
            if raw.get("format") != FORMAT:
                raise ValueError(f"format is {raw.get('format')!r}, expected {FORMAT!r}")
            files = entries_from_json(raw["files"], where=where)
            for key in ("base_manifest_sha256", "tool_python"):
                if not isinstance(raw[key], str | None):
                    raise TypeError(f"{key} is a JSON {type(raw[key]).__name__}")
            info = cls(name=str(raw["name"]), kind=str(raw["kind"]),
                       index_manifest_sha256=str(raw["index_manifest_sha256"]),
                       base_manifest_sha256=raw["base_manifest_sha256"],
                       lockmirror_version=str(raw["lockmirror_version"]),
                       tool_python=raw["tool_python"], files=files)
            if info.kind not in (FULL, DELTA) or (info.kind == DELTA) != bool(
                    info.base_manifest_sha256):
                raise ValueError(f"kind {info.kind!r} with base {info.base_manifest_sha256!r}")
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", info.name):
                raise ValueError(f"bad name {info.name!r}")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BundleFormatError(f"not a lockmirror bundle.json: {exc}", where=where) from None
        except LockmirrorError as exc:
            raise BundleFormatError(exc.message, where=exc.where) from None
        return info

    @property
    def content_id(self) -> str:
        return sha256_bytes(self.dumps())[:CONTENT_ID_LENGTH]

    @property
    def top(self) -> str:
        """The directory every member lives in."""
        return f"lockmirror-{self.name}-{self.content_id}"

    @property
    def filename(self) -> str:
        suffix = ".delta.tar" if self.kind == DELTA else ".tar"
        return f"{self.top}{suffix}"


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


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """``700M``, ``4G``, ``1.5GiB``, ``650MB``, ``123456`` -> bytes.

    K/M/G/T and KiB/MiB/... are powers of 1024; KB/MB/... powers of 1000.
    Raises LockmirrorError for anything else or for less than one tar block.
    """
    if isinstance(text, int):
        value = text
    else:
        match = _SIZE.match(text)
        if not match:
            raise LockmirrorError(f"not a size: {text!r}", hint="e.g. 700M, 4095M, 4G, 650MB")
        number, unit, suffix = match.groups()
        power = "KMGT".find(unit.upper()) + 1 if unit else 0
        base = 1000 if suffix and suffix.lower() == "b" else 1024
        value = int(float(number) * base ** power)
    if value < BLOCK:
        raise LockmirrorError(f"volume size {value} is smaller than one tar block ({BLOCK})")
    return value


# --------------------------------------------------------------------------
# Reading bundles (shared with the importer)
# --------------------------------------------------------------------------

_PART = re.compile(r"^(.+\.tar)\.(\d{3})$")


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
    stems = {_stem(p.name) for p in given}
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
        if not (name == stem or _PART.match(name) and name.startswith(stem + ".")):
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


def _stem(name: str) -> str:
    """``X.tar`` for a volume ``X.tar.007``; the name itself otherwise."""
    match = _PART.match(name)
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


def open_tar(reader: ConcatenatedReader, *, where: str) -> tarfile.TarFile:
    try:
        return tarfile.open(fileobj=reader, mode="r:")
    except tarfile.TarError as exc:
        raise BundleError(f"not a tar archive ({exc})", where=where) from None


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
    first_mtime: int


def read_head(source: BundleSource) -> BundleHead:
    """Read ``bundle.json`` (and its signature) from the start of a bundle.

    Costs a few header reads; raises BundleError if the bundle does not
    start the way lockmirror writes them.
    """
    with source.open() as reader:
        tar = open_tar(reader, where=source.display)
        try:
            top = tar.next()
            info_member = tar.next()
            sig_member = tar.next()
        except tarfile.TarError as exc:
            raise BundleError(f"damaged tar header ({exc})", where=source.display) from None
        if (top is None or not top.isdir() or info_member is None
                or info_member.name != f"{top.name}/{INFO_NAME}" or info_member.size > 1 << 30):
            raise BundleError(f"does not start with <dir>/{INFO_NAME}; not a lockmirror bundle",
                              where=source.display)
        where = f"{source.display}:{info_member.name}"
        info_bytes = read_exact(reader, info_member.offset_data, info_member.size, where=where)
        info = BundleInfo.loads(info_bytes, where=where)
        if info.top != top.name:
            raise BundleError(f"bundle.json belongs to {info.top}, not to {top.name}",
                              where=where, hint="the bundle was altered")
        signature = None
        if sig_member is not None and sig_member.name == f"{top.name}/{SIGNATURE_NAME}":
            if sig_member.size > 1 << 16:
                raise BundleError("signature is implausibly large", where=sig_member.name)
            raw = read_exact(reader, sig_member.offset_data, sig_member.size,
                             where=f"{source.display}:{sig_member.name}")
            signature = raw.decode("ascii", "replace")
        return BundleHead(info, info_bytes, signature, int(info_member.mtime))


def read_index_manifest(source: BundleSource) -> tuple[Manifest, str]:
    """The index manifest a bundle carries, and its sha256 (checked against bundle.json)."""
    head = read_head(source)
    wanted = f"{head.info.top}/{INDEX_MANIFEST}"
    with source.open() as reader:
        tar = open_tar(reader, where=source.display)
        try:
            member = next((m for m in tar if m.name == wanted), None)
        except tarfile.TarError as exc:
            raise BundleError(f"damaged tar header ({exc})", where=source.display) from None
        if member is None:
            raise BundleError(f"{wanted} is missing", where=source.display)
        where = f"{source.display}:{wanted}"
        data = read_exact(reader, member.offset_data, member.size, where=where)
    digest = sha256_bytes(data)
    if digest != head.info.index_manifest_sha256:
        raise BundleError("index manifest does not match bundle.json", where=where)
    return Manifest.loads(data, where=where), digest


# --------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleResult:
    """What ``build_bundle`` wrote (or found already current)."""

    parts: tuple[Path, ...]
    checksums: Path
    sha256: tuple[str, ...]
    content_id: str
    kind: str
    base_manifest_sha256: str | None
    size: int
    members: int
    index_files_carried: int
    index_files_total: int
    signed: bool
    source_date_epoch: int
    epoch_source: str
    tool_wheels: int
    changed: bool

    @property
    def path(self) -> Path:
        """The bundle (its first volume when split)."""
        return self.parts[0]


@dataclass
class _Member:
    """One tar member to write: in-memory bytes or a file streamed from disk."""

    name: str                  # below the top directory ("" for the top itself)
    is_dir: bool = False
    data: bytes | None = None
    path: Path | None = None   # streamed; sha256 and size then come from the manifest
    entry: Entry | None = None

    def __post_init__(self) -> None:
        if self.data is not None and self.entry is None:
            self.entry = Entry(sha256_bytes(self.data), len(self.data))


def resolve_source_date_epoch(explicit: int | None, lockfile_dir: Path) -> tuple[int, str]:
    """The mtime stamped on every member and where it came from.

    ``explicit`` wins, then ``$SOURCE_DATE_EPOCH``, then the time of the last
    commit touching ``lockfile_dir``; else 0 (so output stays reproducible).
    """
    if explicit is not None:
        return int(explicit), "argument"
    env = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if env:
        try:
            return int(env), "SOURCE_DATE_EPOCH"
        except ValueError:
            raise LockmirrorError(f"SOURCE_DATE_EPOCH={env!r} is not an integer") from None
    try:
        done = subprocess.run(["git", "log", "-1", "--format=%ct", "--", "."],
                              cwd=lockfile_dir, capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.strip().isdigit():
            return int(done.stdout.strip()), "git log (lockfiles)"
    except OSError:
        pass
    return 0, "none (no SOURCE_DATE_EPOCH, lockfiles not committed)"


def load_base_manifest(since: Path) -> tuple[Manifest, str]:
    """The manifest a delta starts from, and the sha256 of its bytes.

    ``since`` is a ``manifest.json``, a mirror directory holding one, or a
    previous bundle (``.tar`` or a volume).
    """
    if since.is_dir():
        since = since / MANIFEST_NAME
    if since.name.endswith(".json"):
        try:
            data = since.read_bytes()
        except OSError as exc:
            raise LockmirrorError(f"cannot read base manifest: {exc.strerror}",
                                  where=str(since)) from None
        return Manifest.loads(data.decode("utf-8"), where=str(since)), sha256_bytes(data)
    return read_index_manifest(locate_bundle([since]))


def _is_page(path: str) -> bool:
    """Index pages (HTML/JSON, constraints, lockfiles) travel in every delta;
    only artifacts and their metadata under ``files/`` are left out when the
    far side has them."""
    return not path.startswith("files/")


def _readme(info: BundleInfo) -> bytes:
    """The far side's instructions (no content id or time in it: it is a member,
    so it must not depend on what depends on it)."""
    stem = f"lockmirror-{info.name}-*"
    delta = (f"This is a DELTA bundle: it applies only onto the mirror whose manifest.json has\n"
             f"sha256 {info.base_manifest_sha256}\n"
             f"(check with: sha256sum /srv/mirror/manifest.json).\n\n"
             if info.kind == DELTA else "")
    tool = (f"""\
2. Install lockmirror with no network (its wheels are for {info.tool_python}):
     tar xf {stem}.tar --wildcards '*/{TOOL_DIR}/*'
     python3 -m venv lockmirror-venv
     lockmirror-venv/bin/pip install --no-index --find-links {stem}/{TOOL_DIR} lockmirror
""" if info.tool_python else """\
2. This bundle does not carry lockmirror's own wheels (deltas leave them out):
   use the lockmirror installed from a full bundle.
""")
    text = f"""\
lockmirror {info.kind} bundle of the mirror "{info.name}" (lockmirror {info.lockmirror_version})

{delta}The index manifest carried here has sha256 {info.index_manifest_sha256}.

1. Check the bundle arrived intact (the .sha256 file travels beside it):
     sha256sum -c {stem}.sha256
{tool}3. Import: every file is checked before the new tree is swapped in atomically.
     lockmirror import {stem}.tar --into /srv/mirror [--pubkey signer.pub]
   Volumes of a split bundle: pass them all ({stem}.tar.0*).
4. Serve /srv/mirror with any static web server, or: lockmirror serve /srv/mirror
   Clients: pip install --index-url http://HOST/simple/ PACKAGE
5. Re-check the mirror at any time: lockmirror verify /srv/mirror

To check the members by hand, extract the tar and, in its directory, run
     sha256sum -c {SUMS_NAME}
"""
    return text.encode()


def build_bundle(index_dir: Path, *, lockfile_dir: Path, mirror_yaml: Path, out_dir: Path,
                 name: str, since: Path | None = None, split: int | str | None = None,
                 key: Path | None = None, source_date_epoch: int | None = None,
                 tool: bool | None = None, cache_dir: Path | None = None,
                 verify_sources: bool = False,
                 progress: Progress | None = None) -> BundleResult:
    """Write a reproducible bundle of ``index_dir`` into ``out_dir``.

    ``since`` (a manifest.json, a mirror dir or a previous bundle) makes a
    delta; ``split`` (bytes or ``700M``/``4G``) cuts volumes; ``key`` (an
    Ed25519 private key, OpenSSH or PEM) signs bundle.json. ``tool`` carries
    lockmirror's wheels (default: in full bundles, not in deltas), with the
    dependency wheels cached under ``cache_dir`` (default ``~/.cache/lockmirror``).

    Index files are taken at the sha256 manifest.json gives them (their
    sizes are checked, and files up to 256 KiB are hashed as they are read);
    ``verify_sources`` re-hashes the big ones too, on another thread, so rot
    in the build tree fails here rather than at import on the far side.

    Raises LockmirrorError (or BundleError) when an input is missing, an
    index file does not match the manifest, or pip cannot fetch the tool's
    dependencies; nothing is left in ``out_dir`` then. Costs one kernel
    copy of every carried file and, on a second core, one sha256 pass over
    the output (plus one over the big index files with ``verify_sources``);
    an existing identical bundle is recognised from its first member and
    left alone.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise LockmirrorError(f"bad bundle name {name!r}", hint="letters, digits, '.', '_', '-'")
    volume_size = parse_size(split) if split is not None else None
    epoch, epoch_source = resolve_source_date_epoch(source_date_epoch, lockfile_dir)
    kind = DELTA if since is not None else FULL
    with_tool = (kind == FULL) if tool is None else tool
    index_manifest_bytes = _read_input(index_dir / MANIFEST_NAME, hint="build the index first")
    manifest = Manifest.loads(index_manifest_bytes.decode("utf-8"),
                              where=str(index_dir / MANIFEST_NAME))
    base_sha = None
    carried = dict(manifest.files)
    if since is not None:
        base, base_sha = load_base_manifest(since)
        have = {entry.sha256 for entry in base.files.values()}
        carried = {path: entry for path, entry in manifest.files.items()
                   if _is_page(path) or entry.sha256 not in have}

    members, tool_python = _gather(index_dir, carried, lockfile_dir=lockfile_dir,
                                   mirror_yaml=mirror_yaml, index_manifest=index_manifest_bytes,
                                   with_tool=with_tool, cache_dir=cache_dir, progress=progress)
    tool_count = sum(1 for m in members if m.name.startswith(f"{TOOL_DIR}/"))

    provisional = BundleInfo(name=name, kind=kind, index_manifest_sha256=sha256_bytes(
        index_manifest_bytes), base_manifest_sha256=base_sha, lockmirror_version=__version__,
        tool_python=tool_python, files={})
    members.append(_Member(README_NAME, data=_readme(provisional)))
    sums = format_checksums((m.name, m.entry.sha256) for m in sorted(members, key=_key)
                            if m.entry).encode()
    members.append(_Member(SUMS_NAME, data=sums))
    files = {m.name: m.entry for m in members if m.entry}
    info = BundleInfo(name=name, kind=kind, index_manifest_sha256=provisional.index_manifest_sha256,
                      base_manifest_sha256=base_sha, lockmirror_version=__version__,
                      tool_python=tool_python, files=files)
    info_bytes = info.dumps()
    signature = None
    if key is not None:
        private: Ed25519PrivateKey = signing.load_private_key(key)
        signature = signing.sign(info_bytes, private).encode()

    head = [_Member("", is_dir=True), _Member(INFO_NAME, data=info_bytes)]
    if signature is not None:
        head.append(_Member(SIGNATURE_NAME, data=signature))
    ordered = head + sorted([*members, *_directories(members)], key=_key)
    layout = _Layout(info.top, ordered, epoch)

    stem = info.filename
    total = layout.total_size
    part_count = 1 if volume_size is None else max(1, -(-total // volume_size))
    if part_count > MAX_PARTS:
        raise LockmirrorError(f"{total} bytes in volumes of {volume_size} makes {part_count} "
                              f"volumes; at most {MAX_PARTS}", hint="use a larger --split")
    names = [stem] if volume_size is None else [f"{stem}.{i:03d}" for i in range(1, part_count + 1)]
    checksums_path = out_dir / f"{stem}.sha256"

    def result(digests: Sequence[str], changed: bool) -> BundleResult:
        return BundleResult(
            parts=tuple(out_dir / n for n in names), checksums=checksums_path,
            sha256=tuple(digests), content_id=info.content_id, kind=kind,
            base_manifest_sha256=base_sha, size=total, members=len(files) + len(head) - 1,
            index_files_carried=len(carried), index_files_total=len(manifest.files),
            signed=signature is not None, source_date_epoch=epoch, epoch_source=epoch_source,
            tool_wheels=tool_count, changed=changed)

    current = _existing_digests(out_dir, names, checksums_path, total, volume_size, info_bytes,
                                signature, epoch)
    if current is not None:
        return result(current, changed=False)
    if progress:
        progress(f"writing {stem} ({total} bytes, {len(ordered)} members)")
    digests = layout.write(out_dir, names, volume_size, verify_sources=verify_sources)
    atomic_write(checksums_path, format_checksums(zip(names, digests)))
    return result(digests, changed=True)


def _gather(index_dir: Path, carried: Mapping[str, Entry], *, lockfile_dir: Path,
            mirror_yaml: Path, index_manifest: bytes, with_tool: bool,
            cache_dir: Path | None, progress: Progress | None) -> tuple[list[_Member], str | None]:
    """Every member but the head, README and SHA256SUMS; and the tool wheels' Python."""
    members = [_Member(MIRROR_YAML_NAME, data=_read_input(mirror_yaml))]
    lockfiles = sorted(lockfile_dir.glob("pylock.*.toml"))
    if not lockfiles:
        raise LockmirrorError("no pylock.*.toml lockfiles here", where=str(lockfile_dir),
                              hint="run `doit lock`")
    members += [_Member(f"{LOCKFILE_DIR}/{path.name}", data=_read_input(path))
                for path in lockfiles]
    tool_python = None
    if with_tool:
        if progress:
            progress("collecting lockmirror's wheels")
        with tempfile.TemporaryDirectory(prefix="lockmirror-bundle-") as scratch:
            wheels = collect_tool_wheels(cache_dir or Path.home() / ".cache" / "lockmirror",
                                         Path(scratch), progress=progress)
            members += [_Member(f"{TOOL_DIR}/{path.name}", data=_read_input(path))
                        for path in sorted(wheels.wheels, key=lambda p: p.name)]
        tool_python = wheels.python
    members.append(_Member(INDEX_MANIFEST, data=index_manifest))
    for rel, entry in sorted(carried.items()):
        path = index_dir / rel
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise LockmirrorError("listed in manifest.json but missing", where=str(path),
                                  hint="rebuild the index") from None
        if size != entry.size:
            raise LockmirrorError(f"size {size} differs from manifest.json ({entry.size})",
                                  where=str(path), hint="rebuild the index")
        members.append(_Member(f"{INDEX_DIR}/{rel}", path=path, entry=entry))
    return members, tool_python


def _directories(members: Iterable[_Member]) -> list[_Member]:
    """A directory entry for every parent of a member (below the top)."""
    found: set[str] = set()
    for member in members:
        parts = member.name.split("/")[:-1]
        found.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    return [_Member(directory, is_dir=True) for directory in found]


def _key(member: _Member) -> str:
    return member.name


def _read_input(path: Path, *, hint: str | None = None) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise LockmirrorError("missing", where=str(path), hint=hint) from None
    except OSError as exc:
        raise LockmirrorError(f"cannot read: {exc.strerror}", where=str(path)) from None


def _existing_digests(out_dir: Path, names: list[str], checksums: Path, total: int,
                      volume_size: int | None, info_bytes: bytes, signature: bytes | None,
                      epoch: int) -> tuple[str, ...] | None:
    """The hashes of an identical bundle already on disk, else None.

    The tar is a function of bundle.json (which pins every member's bytes),
    the signature and the epoch, so comparing those three and the volume
    sizes is enough; nothing is re-hashed.
    """
    try:
        listed = read_checksums(checksums)
    except BundleError:
        return None
    if [name for name, _ in listed] != names:
        return None
    for index, name in enumerate(names):
        expected = total if volume_size is None else min(volume_size, total - index * volume_size)
        try:
            if (out_dir / name).stat().st_size != expected:
                return None
        except FileNotFoundError:
            return None
    try:
        source = locate_bundle([out_dir / n for n in names])
        head = read_head(source)
    except LockmirrorError:
        return None
    if (head.info_bytes != info_bytes or head.first_mtime != epoch
            or (head.signature or "").encode() != (signature or b"")):
        return None
    return tuple(digest for _, digest in listed)


class _Layout:
    """The exact byte sequence of the tar: headers computed up front, so the
    total size (and the number of volumes) is known before writing."""

    def __init__(self, top: str, members: list[_Member], epoch: int) -> None:
        self.items: list[tuple[bytes, _Member]] = []
        size = 0
        for member in members:
            header = _header(top, member, epoch)
            self.items.append((header, member))
            data_size = 0 if member.is_dir or member.entry is None else member.entry.size
            size += len(header) + data_size + _padding(data_size)
        size += 2 * BLOCK
        self.end_padding = 2 * BLOCK + (-size % RECORD)
        self.total_size = size + (-size % RECORD)

    def write(self, out_dir: Path, names: list[str], volume_size: int | None, *,
              verify_sources: bool) -> list[str]:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            writer = _VolumeWriter(out_dir, names, volume_size)
        except OSError as exc:
            raise LockmirrorError(f"cannot write the bundle: {exc.strerror}",
                                  where=str(exc.filename or out_dir)) from None
        hasher = _StreamHasher(volume_size)
        checker = _SourceChecker(enabled=verify_sources)
        hasher.start()
        checker.start()
        try:
            pending = bytearray()
            for header, member in self.items:
                pending += header
                if member.is_dir:
                    continue
                assert member.entry is not None
                if member.data is not None or member.entry.size <= SMALL_FILE:
                    data = member.data if member.data is not None else _read_small(member)
                    pending += data
                    pending += bytes(_padding(len(data)))
                    continue
                if pending:
                    writer.write(bytes(pending))
                    hasher.feed(bytes(pending))
                    pending.clear()
                self._stream(member, writer, hasher, checker)
                pending += bytes(_padding(member.entry.size))
            pending += bytes(self.end_padding)
            writer.write(bytes(pending))
            hasher.feed(bytes(pending))
            digests = hasher.finish()
            checker.finish()
            writer.commit()
            return digests
        except BaseException as exc:
            hasher.cancel()
            checker.cancel()
            writer.abort()
            if isinstance(exc, OSError):  # ENOSPC, EFBIG, EACCES, ...
                raise LockmirrorError(f"cannot write the bundle: {exc.strerror}",
                                      where=str(exc.filename or out_dir),
                                      hint="nothing was left behind") from None
            raise

    @staticmethod
    def _stream(member: _Member, writer: _VolumeWriter, hasher: _StreamHasher,
                checker: _SourceChecker) -> None:
        assert member.path is not None and member.entry is not None
        try:
            fd = os.open(member.path, os.O_RDONLY)
        except OSError as exc:
            raise LockmirrorError(f"cannot read: {exc.strerror}", where=str(member.path)) from None
        try:
            # Every reader gets its own descriptor of the same open file, so
            # all three see the same inode even if the index is rebuilt meanwhile.
            hasher.feed_file(os.dup(fd), member.entry.size, member.path)
            checker.check(fd, member.entry, member.path)
            writer.copy_from(fd, member.entry.size, member.path)
        finally:
            os.close(fd)


def _padding(size: int) -> int:
    return -size % BLOCK


def _header(top: str, member: _Member, epoch: int) -> bytes:
    info = tarfile.TarInfo(f"{top}/{member.name}" if member.name else top)
    info.mtime = epoch
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if member.is_dir:
        info.type, info.mode = tarfile.DIRTYPE, DIR_MODE
    else:
        assert member.entry is not None
        info.type, info.mode, info.size = tarfile.REGTYPE, FILE_MODE, member.entry.size
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def _read_small(member: _Member) -> bytes:
    assert member.path is not None and member.entry is not None
    data = _read_input(member.path)
    if len(data) != member.entry.size or sha256_bytes(data) != member.entry.sha256:
        raise LockmirrorError("does not match manifest.json", where=str(member.path),
                              hint="the index tree changed or rotted; rebuild it")
    return data


class _VolumeWriter:
    """Writes the tar into temporary files cut at ``volume_size``; ``commit``
    renames them into place (the .sha256 listing is written after, last)."""

    def __init__(self, out_dir: Path, names: list[str], volume_size: int | None) -> None:
        self.out_dir = out_dir
        self.names = names
        self.volume_size = volume_size
        self.temps: list[Path] = []
        self.fd = -1
        self.room = 0
        self._next()

    def _next(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        index = len(self.temps)
        if index >= len(self.names):
            raise AssertionError("more volumes than computed")
        fd, temp = tempfile.mkstemp(prefix=f".{self.names[index]}.", suffix=".tmp",
                                    dir=self.out_dir)
        os.fchmod(fd, FILE_MODE)
        self.temps.append(Path(temp))
        self.fd = fd
        self.room = self.volume_size if self.volume_size is not None else 1 << 62

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if not self.room:
                self._next()
            written = os.write(self.fd, view[:self.room])
            view = view[written:]
            self.room -= written

    def copy_from(self, src: int, size: int, where: Path) -> None:
        offset = 0
        while offset < size:
            if not self.room:
                self._next()
            count = min(size - offset, self.room, 1 << 30)
            try:
                copied = os.copy_file_range(src, self.fd, count, offset_src=offset)
            except OSError:
                copied = self._copy_by_hand(src, count, offset)
            if copied == 0:
                raise LockmirrorError("file shrank while being bundled", where=str(where))
            offset += copied
            self.room -= copied

    def _copy_by_hand(self, src: int, count: int, offset: int) -> int:
        """For filesystems without copy_file_range; stays within the volume."""
        view = memoryview(os.pread(src, min(count, CHUNK), offset))
        done = 0
        while done < len(view):
            done += os.write(self.fd, view[done:])
        return done

    def commit(self) -> None:
        # No fsync: a volume torn by a crash fails its .sha256, which is
        # checked before anything is imported.
        os.close(self.fd)
        self.fd = -1
        if len(self.temps) != len(self.names):
            raise AssertionError("fewer volumes than computed")
        for temp, name in zip(self.temps, self.names):
            os.replace(temp, self.out_dir / name)
        # The same bundle written before with other volume sizes (or unsplit):
        # its files would no longer match the .sha256 listing written next.
        stem = _stem(self.names[0])
        for stale in self.out_dir.glob(f"{glob.escape(stem)}*"):
            if stale.name not in self.names and (stale.name == stem or _PART.match(stale.name)):
                stale.unlink(missing_ok=True)

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        for temp in self.temps:
            temp.unlink(missing_ok=True)


class _StreamHasher(threading.Thread):
    """sha256 of each output volume, on a second core.

    Fed the same byte sequence the writer writes: bytes, or (descriptor,
    size) pairs whose contents it reads itself, so the bytes are never copied
    between threads. hashlib releases the GIL on large updates.
    """

    def __init__(self, volume_size: int | None) -> None:
        super().__init__(daemon=True, name="bundle-sha256")
        self.queue: queue.Queue[tuple[bytes | None, int, int, Path | None]] = queue.Queue(64)
        self.volume_size = volume_size
        self.digests: list[str] = []
        self.error: BaseException | None = None
        self._cancelled = threading.Event()
        self._hash = hashlib.sha256()
        self._room = volume_size if volume_size is not None else 1 << 62

    def feed(self, data: bytes) -> None:
        self.queue.put((data, -1, 0, None))

    def feed_file(self, fd: int, size: int, where: Path) -> None:
        self.queue.put((None, fd, size, where))

    def _update(self, view: memoryview) -> None:
        while view:
            if not self._room:
                self.digests.append(self._hash.hexdigest())
                self._hash = hashlib.sha256()
                self._room = self.volume_size or 0
            take = min(len(view), self._room)
            self._hash.update(view[:take])
            view = view[take:]
            self._room -= take

    def run(self) -> None:
        buffer = bytearray(CHUNK)
        try:
            while True:
                data, fd, size, where = self.queue.get()
                if data is None and fd < 0:
                    break
                if data is not None:
                    self._update(memoryview(data))
                    continue
                try:
                    offset = 0
                    while offset < size and not self._cancelled.is_set():
                        got = os.preadv(fd, [memoryview(buffer)[:min(CHUNK, size - offset)]],
                                        offset)
                        if not got:
                            raise LockmirrorError("file shrank while being bundled",
                                                  where=str(where))
                        self._update(memoryview(buffer)[:got])
                        offset += got
                finally:
                    os.close(fd)
            self.digests.append(self._hash.hexdigest())
        except Exception as exc:  # noqa: BLE001 - handed to the main thread by finish()
            self.error = exc
            self._drain()

    def _drain(self) -> None:
        while True:
            data, fd, _size, _where = self.queue.get()
            if fd >= 0:
                os.close(fd)
            if data is None and fd < 0:
                return

    def finish(self) -> list[str]:
        self.queue.put((None, -1, 0, None))
        self.join()
        if self.error is not None:
            raise self.error
        return self.digests

    def cancel(self) -> None:
        self._cancelled.set()
        if self.is_alive():
            self.queue.put((None, -1, 0, None))
            self.join()


class _SourceChecker(threading.Thread):
    """Checks each streamed index file against its manifest sha256, in parallel,
    so rot in the build tree fails here and not on the far side of the gap."""

    def __init__(self, *, enabled: bool) -> None:
        super().__init__(daemon=True, name="bundle-check")
        self.queue: queue.Queue[tuple[int, Entry | None, Path | None]] = queue.Queue(64)
        self.error: BaseException | None = None
        self.enabled = enabled
        self._cancelled = threading.Event()

    def check(self, fd: int, entry: Entry, where: Path) -> None:
        if self.enabled:
            self.queue.put((os.dup(fd), entry, where))

    def run(self) -> None:
        buffer = bytearray(CHUNK)
        while True:
            fd, entry, where = self.queue.get()
            if entry is None:
                return
            try:
                if self.error is None and not self._cancelled.is_set():
                    digest = hashlib.sha256()
                    offset = 0
                    while offset < entry.size:
                        got = os.preadv(fd, [buffer], offset)
                        if not got:
                            break
                        digest.update(memoryview(buffer)[:min(got, entry.size - offset)])
                        offset += got
                    if offset < entry.size or digest.hexdigest() != entry.sha256:
                        self.error = LockmirrorError(
                            "does not match manifest.json", where=str(where),
                            hint="the index tree changed or rotted; rebuild it")
            except OSError as exc:
                self.error = LockmirrorError(f"cannot read: {exc.strerror}", where=str(where))
            finally:
                os.close(fd)

    def finish(self) -> None:
        self.queue.put((-1, None, None))
        self.join()
        if self.error is not None:
            raise self.error

    def cancel(self) -> None:
        self._cancelled.set()
        if self.is_alive():
            self.queue.put((-1, None, None))
            self.join()
