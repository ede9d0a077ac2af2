"""The import stage: a bundle becomes a verified mirror directory, with no network.

``import_bundle(paths, into)``:

1. finds the bundle's volumes and their ``.sha256`` listing;
2. reads every tar header first and refuses the bundle if any member is not
   a regular file or directory (links, devices, FIFOs), has an absolute name
   or ``..``, lies outside the bundle's directory, is listed twice, is not
   in ``bundle.json``, or has another size; tarfile's ``data`` filter
   (Python >= 3.11.4, 3.12.1) vets each member as well. On a Python without
   it the checks above stand alone: they are stricter than the filter (no
   links of any kind), and files are created only with ``O_EXCL`` in a
   fresh staging directory that never contains a link;
3. checks ``bundle.json``: its top directory name embeds its own hash, its
   signature when a public key is given, and the index manifest it pins;
4. streams the tar once, front to back, into a staging directory beside
   ``into`` (same filesystem): each chunk read goes into the sha256 of the
   member it belongs to, index members are written as they pass, and a
   second thread feeds the same chunk into its volume's sha256 (the
   ``.sha256`` check); a delta hard-links the files it does not carry from
   the current mirror, each hashed against the manifest first;
5. checks the staged tree against the manifest, then swaps it into place
   (``renameat2(RENAME_EXCHANGE)`` where the kernel has it, else the rename
   dance ``into -> .into.lockmirror-old``, ``staging -> into``) and removes
   the old tree.

Any failure removes the staging directory and leaves ``into`` as it was;
the error names the member or volume at fault. An import killed midway
leaves a staging or old directory, which the next import (or
:func:`recover_interrupted_import`) resolves first. Importing what ``into``
already holds is a no-op that still checks the bundle's outer sha256
(a damaged copy is refused even then).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import os
import queue
import shutil
import tarfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import signing
from .bundle_format import (
    DELTA,
    INDEX_DIR,
    INDEX_MANIFEST,
    INFO_NAME,
    SIGNATURE_NAME,
    BundleInfo,
    BundleSource,
    ConcatenatedReader,
    locate_bundle,
    open_tar,
    read_exact,
)
from .errors import BundleError, IntegrityError, LockmirrorError
from .fsutil import sha256_bytes
from .manifest import MANIFEST_NAME, Entry, Manifest, TreeReport, check_relative_path, check_tree

CHUNK = 4 << 20
Progress = Callable[[str], None]
_INDEX_PREFIX = f"{INDEX_DIR}/"


@dataclass(frozen=True)
class ImportResult:
    """What ``import_bundle`` did."""

    into: Path
    changed: bool
    kind: str
    name: str
    content_id: str
    index_manifest_sha256: str
    files: int              # files in the mirror now (manifest entries)
    extracted: int          # written from the bundle
    linked: int             # reused from the previous mirror (delta)
    bytes_extracted: int
    signed: bool
    signer: str | None      # fingerprint of the key that was checked, if any
    data_filter: bool       # whether tarfile's data filter vetted the members too
    recovered: str | None   # how an interrupted earlier import was resolved


def staging_dir(into: Path) -> Path:
    """Where an import builds the new tree: a hidden sibling of ``into``."""
    return into.parent / f".{into.name}.lockmirror-staging"


def old_dir(into: Path) -> Path:
    """Where the previous tree waits during the rename dance."""
    return into.parent / f".{into.name}.lockmirror-old"


def recover_interrupted_import(into: Path) -> str | None:
    """Finish or undo what a killed import left behind; say what was done.

    The previous mirror comes back if the kill fell between the two renames;
    a leftover old tree (kill after the swap) or staging tree (kill during
    extraction) is removed. Idempotent; None when there was nothing to do.
    """
    done = []
    old, staging = old_dir(into), staging_dir(into)
    if old.is_dir():
        if into.exists():
            shutil.rmtree(old)
            done.append(f"removed the previous tree {old.name} left after a completed swap")
        else:
            os.rename(old, into)
            done.append(f"restored {into.name} from {old.name} (an import was interrupted "
                        "between its two renames)")
    if staging.exists():
        shutil.rmtree(staging)
        done.append(f"removed the unfinished staging tree {staging.name}")
    return "; ".join(done) or None


def verify_mirror(root: Path, *, hash_files: bool = True) -> TreeReport:
    """Compare a mirror tree with its ``manifest.json`` (missing, altered, unexpected).

    Raises LockmirrorError if there is no tree or no manifest. Costs one
    sha256 pass over the tree (a stat per file with ``hash_files=False``).
    """
    if not root.is_dir():
        hint = ("an import was interrupted; run `lockmirror import` again, which restores "
                "the previous mirror first" if old_dir(root).is_dir() else None)
        raise LockmirrorError("no such mirror directory", where=str(root), hint=hint)
    return check_tree(root, Manifest.read(root / MANIFEST_NAME), hash_files=hash_files)


def _manifest_sha256(root: Path) -> str | None:
    try:
        return sha256_bytes((root / MANIFEST_NAME).read_bytes())
    except FileNotFoundError:
        return None


@dataclass
class _Plan:
    """Everything decided before a byte is extracted."""

    info: BundleInfo
    top: str
    manifest: Manifest
    members: list[tuple[tarfile.TarInfo, str, Entry]]   # regular files: member, path, entry
    signer: str | None
    signed: bool


def import_bundle(paths: Sequence[Path], into: Path, *, pubkey: Path | None = None,
                  progress: Progress | None = None) -> ImportResult:
    """Import a bundle (one ``.tar`` or all its volumes) into the mirror ``into``.

    With ``pubkey`` an unsigned bundle, or one signed by another key, is
    refused. Raises BundleError naming the member or volume at fault (the
    mirror is then exactly as before), LockmirrorError for unusable
    arguments. Costs one sequential read of the bundle, two sha256 passes
    over it (members; volumes, on a second core) and one write of every
    carried index file; when ``into`` already holds this bundle's index,
    one read of the bundle for its outer sha256 and nothing written.
    """
    source = locate_bundle([Path(p) for p in paths])
    into = Path(os.path.abspath(into))
    if into.is_symlink():
        into = into.resolve()
    if not into.parent.is_dir():
        raise LockmirrorError("parent directory does not exist", where=str(into.parent))
    trusted = signing.load_public_key(pubkey) if pubkey is not None else None
    with _exclusive(into.parent):
        try:
            recovered = recover_interrupted_import(into)
        except OSError as exc:
            raise LockmirrorError(f"cannot clean up an interrupted import: {exc.strerror}",
                                  where=str(exc.filename or into)) from None
        _check_destination(into)
        return _import(source, into, trusted, recovered, progress)


@contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """One import at a time beside a mirror: the staging and old trees live
    there, and recovery would otherwise remove a running import's staging.
    The kernel drops the lock when the process ends, even by SIGKILL."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockmirrorError("another lockmirror import is running in this directory",
                                  where=str(directory), hint="wait for it to finish") from None
        yield
    finally:
        os.close(fd)


def _import(source: BundleSource, into: Path, trusted: Ed25519PublicKey | None,
            recovered: str | None, progress: Progress | None) -> ImportResult:
    data_filter = getattr(tarfile, "data_filter", None)
    staging = staging_dir(into)
    with source.open() as reader:
        plan = _plan(source, reader, staging, trusted, data_filter)
        info, manifest = plan.info, plan.manifest
        current_sha = _manifest_sha256(into)

        def result(changed: bool, extracted: int = 0, linked: int = 0,
                   size: int = 0) -> ImportResult:
            return ImportResult(
                into=into, changed=changed, kind=info.kind, name=info.name,
                content_id=info.content_id, index_manifest_sha256=info.index_manifest_sha256,
                files=len(manifest.files), extracted=extracted, linked=linked,
                bytes_extracted=size, signed=plan.signed, signer=plan.signer,
                data_filter=data_filter is not None, recovered=recovered)

        if (current_sha == info.index_manifest_sha256
                and check_tree(into, manifest, hash_files=False).ok):
            _check_outer_hashes(source)  # a no-op still proves the bundle it was given
            return result(False)
        reuse = _reuse_plan(info, manifest, into, current_sha, plan)

        if progress:
            progress(f"importing {source.display} ({info.kind}, {len(plan.members)} members, "
                     f"{reader.size} bytes) into {into}")
        try:
            staging.mkdir()
            extracted, size = _extract(reader, plan, staging, source)
            linked = _link_reused(reuse, into, staging, manifest)
            report = check_tree(staging, manifest, hash_files=False)
            if not report.ok:  # pragma: no cover - every path was checked on the way in
                first = (report.missing + report.altered + report.unexpected)[0]
                raise BundleError("staged tree does not match the manifest",
                                  where=f"{source.display}:{plan.top}/{INDEX_DIR}/{first}")
            _swap_into_place(staging, into)
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, OSError):
                raise LockmirrorError(
                    f"cannot write the new mirror: {exc.strerror}",
                    where=str(exc.filename or staging),
                    hint=f"nothing was changed in {into}") from None
            raise
    return result(True, extracted, linked, size)


def _check_destination(into: Path) -> None:
    if not into.exists():
        return
    if not into.is_dir():
        raise LockmirrorError("exists and is not a directory", where=str(into))
    if os.stat(into).st_dev != os.stat(into.parent).st_dev:
        raise LockmirrorError(
            "is a mount point, so the new tree cannot be swapped in atomically", where=str(into),
            hint=f"import into a directory inside it, e.g. {into / 'mirror'}")
    if not (into / MANIFEST_NAME).is_file() and any(into.iterdir()):
        raise LockmirrorError("is not empty and holds no manifest.json; refusing to replace it",
                              where=str(into), hint="import into a new or empty directory")


def _member_problem(member: tarfile.TarInfo) -> str | None:
    if member.issym():
        return f"is a symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"is a hard link (to {member.linkname!r})"
    if member.ischr() or member.isblk():
        return "is a device node"
    if member.isfifo():
        return "is a FIFO"
    if not (member.isdir() or member.type in (tarfile.REGTYPE, tarfile.AREGTYPE)):
        return f"has tar type {member.type!r}"
    return None


def _plan(source: BundleSource, reader: ConcatenatedReader, staging: Path,
          trusted: Ed25519PublicKey | None,
          data_filter: Callable[[tarfile.TarInfo, str], tarfile.TarInfo] | None) -> _Plan:
    display = source.display
    tar = open_tar(reader, where=display)
    members: list[tarfile.TarInfo] = []
    try:
        while (member := tar.next()) is not None:
            members.append(member)
    except tarfile.TarError as exc:
        if members and members[-1].offset_data + members[-1].size > reader.size:
            raise BundleError("bundle is truncated: it ends inside this member",
                              where=f"{display}:{members[-1].name}") from None
        after = f" after {members[-1].name}" if members else ""
        raise BundleError(f"damaged or truncated tar{after} ({exc})", where=display) from None
    if len(members) < 2 or not members[0].isdir():
        raise BundleError("does not start with the bundle's directory; not a lockmirror bundle",
                          where=display)
    top = members[0].name.rstrip("/")

    seen: set[str] = set()
    for member in members:
        where = f"{display}:{member.name}"
        problem = _member_problem(member)
        if problem:
            raise BundleError(f"{problem}; a bundle holds only regular files and directories",
                              where=where, hint="refusing the whole bundle; nothing was changed")
        try:
            check_relative_path(member.name.rstrip("/") if member.isdir() else member.name,
                                where=where)
        except IntegrityError:
            raise BundleError("unsafe member name (absolute, '..' or empty parts)", where=where,
                              hint="refusing the whole bundle; nothing was changed") from None
        if member.name != top and not member.name.startswith(top + "/"):
            raise BundleError(f"lies outside the bundle directory {top}/", where=where)
        if data_filter is not None:
            try:
                data_filter(member, str(staging))
            except tarfile.FilterError as exc:
                raise BundleError(f"refused by tarfile's data filter: {exc}",
                                  where=where) from None
        if member.name in seen:
            raise BundleError("appears twice", where=where)
        seen.add(member.name)
        if member.isfile() and member.offset_data + member.size > reader.size:
            raise BundleError("bundle is truncated: it ends inside this member", where=where)

    info_member = members[1]
    if info_member.name != f"{top}/{INFO_NAME}" or info_member.size > 1 << 30:
        raise BundleError(f"second member is not {top}/{INFO_NAME}; not a lockmirror bundle",
                          where=display)
    info_where = f"{display}:{info_member.name}"
    info_bytes = read_exact(reader, info_member.offset_data, info_member.size, where=info_where)
    info = BundleInfo.loads(info_bytes, where=info_where)
    if info.top != top:
        raise BundleError(f"bundle.json hashes to {info.content_id}, but the bundle directory "
                          f"is {top}", where=info_where, hint="bundle.json was altered")

    sig_member = next((m for m in members[2:3] if m.name == f"{top}/{SIGNATURE_NAME}"), None)
    signer = None
    if trusted is not None:
        if sig_member is None:
            raise BundleError("bundle is not signed, but a public key was given; refusing it",
                              where=display, hint="sign bundles with `lockmirror bundle --key`")
        sig_where = f"{display}:{sig_member.name}"
        signature = read_exact(reader, sig_member.offset_data, min(sig_member.size, 1 << 16),
                               where=sig_where).decode("ascii", "replace")
        signer = signing.verify(info_bytes, signature, trusted, where=sig_where).fingerprint

    planned: list[tuple[tarfile.TarInfo, str, Entry]] = []
    carried = set()
    for member in members:
        if not member.isfile() or member in (info_member, sig_member):
            continue
        path = member.name[len(top) + 1:]
        where = f"{display}:{member.name}"
        entry = info.files.get(path)
        if entry is None:
            raise BundleError("is not listed in bundle.json", where=where)
        if entry.size != member.size:
            raise BundleError(f"has {member.size} bytes, bundle.json says {entry.size}",
                              where=where)
        planned.append((member, path, entry))
        carried.add(path)
    missing = sorted(set(info.files) - carried)
    if missing:
        raise BundleError(
            f"bundle is truncated or incomplete: {len(missing)} member(s) listed in "
            f"bundle.json are missing, first {top}/{missing[0]}", where=display)

    manifest_member = next(m for m, path, _ in planned if path == INDEX_MANIFEST) \
        if INDEX_MANIFEST in info.files else None
    if manifest_member is None:
        raise BundleError(f"carries no {INDEX_MANIFEST}", where=display)
    manifest_where = f"{display}:{manifest_member.name}"
    manifest_bytes = read_exact(reader, manifest_member.offset_data, manifest_member.size,
                                where=manifest_where)
    manifest_sha = sha256_bytes(manifest_bytes)
    if manifest_sha != info.files[INDEX_MANIFEST].sha256 or \
            manifest_sha != info.index_manifest_sha256:
        raise BundleError("sha256 does not match bundle.json", where=manifest_where,
                          hint="damaged in transit or tampered; nothing was changed")
    manifest = Manifest.loads(manifest_bytes, where=manifest_where)  # InputError if malformed
    for path, entry in info.files.items():
        if (path.startswith(_INDEX_PREFIX) and path != INDEX_MANIFEST
                and manifest.files.get(path[len(_INDEX_PREFIX):]) != entry):
            raise BundleError("bundle.json and the index manifest disagree about it",
                              where=f"{display}:{top}/{path}")
    return _Plan(info, top, manifest, planned, signer, sig_member is not None)


def _reuse_plan(info: BundleInfo, manifest: Manifest, into: Path, current_sha: str | None,
                plan: _Plan) -> dict[str, str]:
    """For a delta: new path -> path in the current mirror holding the same bytes."""
    carried = {path[len(_INDEX_PREFIX):] for path in info.files if path.startswith(_INDEX_PREFIX)}
    absent = sorted(set(manifest.files) - carried)
    if info.kind != DELTA:
        if absent:
            raise BundleError(f"full bundle lacks {len(absent)} file(s) of its manifest, "
                              f"first {absent[0]}", where=plan.top)
        return {}
    if current_sha != info.base_manifest_sha256:
        have = (f"its manifest.json has sha256 {current_sha}" if current_sha
                else "it holds no mirror")
        raise BundleError(
            f"this delta applies only onto the mirror whose manifest.json has sha256 "
            f"{info.base_manifest_sha256}, but {have}", where=str(into),
            hint="import the full bundle (or the deltas in order) first; nothing was changed")
    base = Manifest.read(into / MANIFEST_NAME)
    by_sha = {entry.sha256: path for path, entry in sorted(base.files.items())}
    reuse = {}
    for path in absent:
        found = by_sha.get(manifest.files[path].sha256)
        if found is None:
            raise BundleError(f"delta neither carries {path} nor finds it in the base mirror",
                              where=plan.top)
        reuse[path] = found
    return reuse


def _extract(reader: ConcatenatedReader, plan: _Plan, staging: Path,
             source: BundleSource) -> tuple[int, int]:
    """One sequential pass over the bundle: every chunk read goes into the
    sha256 of the member it belongs to and, for the index, into a file in
    staging; a second thread feeds the same buffer into its volume's sha256
    (the .sha256 check). Nothing is read twice."""
    hashing = _VolumeHashing(_VolumeDigests(source, reader.part_sizes))
    hashing.start()
    spans = [(member.offset_data, member.offset_data + member.size, member, path, entry)
             for member, path, entry in plan.members]
    made: set[Path] = {staging}
    count = size = 0
    index, position = 0, 0
    writer: _MemberWriter | None = None
    try:
        reader.seek(0)
        while True:
            buffer = hashing.take()
            got = reader.readinto(buffer)
            if not got:
                break
            chunk = memoryview(buffer)[:got]
            end = position + got
            while index < len(spans) and spans[index][0] < end:
                start, stop, member, path, entry = spans[index]
                if writer is None:
                    target = _target(staging, path, made)
                    writer = _MemberWriter(target, f"{source.display}:{member.name}")
                writer.update(chunk[max(start, position) - position:min(stop, end) - position])
                if stop > end:
                    break  # the member goes on in the next chunk
                writer.finish(entry)
                if writer.target is not None and path != INDEX_MANIFEST:
                    count += 1
                    size += member.size
                writer = None
                index += 1
            chunk.release()
            hashing.give(buffer, got)
            position = end
        if index < len(spans):
            raise BundleError("bundle is truncated: it ends inside this member",
                              where=f"{source.display}:{spans[index][2].name}")
        hashing.finish()
    except BaseException:
        if writer is not None:
            writer.abort()
        hashing.stop()
        raise
    return count, size


def _target(staging: Path, path: str, made: set[Path]) -> Path | None:
    """Where an index member goes in staging (None: checked, not kept)."""
    if not path.startswith(_INDEX_PREFIX):
        return None
    target = staging / path[len(_INDEX_PREFIX):]
    if target.parent not in made:
        target.parent.mkdir(parents=True, exist_ok=True)
        made.add(target.parent)
    return target


class _MemberWriter:
    """One member on its way out: hashed, and written when it has a target.

    Files are created with O_EXCL and O_NOFOLLOW in the fresh staging tree,
    so nothing can be written through a link."""

    def __init__(self, target: Path | None, where: str) -> None:
        self.target = target
        self.where = where
        self.digest = hashlib.sha256()
        self.fd = (os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                           | os.O_CLOEXEC, 0o644) if target is not None else -1)

    def update(self, piece: memoryview) -> None:
        self.digest.update(piece)
        if self.fd >= 0:
            _write_all(self.fd, piece, self.target)

    def finish(self, entry: Entry) -> None:
        self.abort()
        if self.digest.hexdigest() != entry.sha256:
            raise BundleError(f"sha256 {self.digest.hexdigest()[:16]}... does not match "
                              f"bundle.json ({entry.sha256[:16]}...)", where=self.where,
                              hint="damaged in transit or tampered; nothing was changed")

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _VolumeDigests:
    """sha256 of each volume as the bytes stream past; checked against the
    .sha256 listing as soon as a volume ends."""

    def __init__(self, source: BundleSource, sizes: Sequence[int]) -> None:
        self.source = source
        self.sizes = list(sizes)
        self.index = 0
        self.room = self.sizes[0]
        self.digest = hashlib.sha256()

    def update(self, chunk: memoryview) -> None:
        while chunk:
            take = min(len(chunk), self.room)
            self.digest.update(chunk[:take])
            chunk = chunk[take:]
            self.room -= take
            if not self.room:
                self._close_volume()

    def _close_volume(self) -> None:
        part = self.source.parts[self.index]
        if self.digest.hexdigest() != self.source.expected_sha256[self.index]:
            raise BundleError(f"sha256 does not match {self.source.checksums.name}",
                              where=str(part),
                              hint="damaged in transit; copy it again. Nothing was changed")
        self.index += 1
        self.digest = hashlib.sha256()
        self.room = self.sizes[self.index] if self.index < len(self.sizes) else 1 << 62

    def check(self) -> None:
        if self.index < len(self.sizes):
            raise BundleError("bundle is truncated", where=str(self.source.parts[self.index]))


class _VolumeHashing(threading.Thread):
    """Runs :class:`_VolumeDigests` on a second core over the very buffers the
    extraction reads: a ring of buffers goes main -> this thread -> main, so
    a buffer is refilled only once it has been hashed. On a busy machine it
    costs nothing extra; on an idle second core it halves the hashing time."""

    RING = 4

    def __init__(self, digests: _VolumeDigests) -> None:
        super().__init__(daemon=True, name="import-volume-sha256")
        self.digests = digests
        self.todo: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
        self.free: queue.Queue[bytearray] = queue.Queue()
        for _ in range(self.RING):
            self.free.put(bytearray(CHUNK))
        self.error: BundleError | None = None

    def run(self) -> None:
        while (item := self.todo.get()) is not None:
            buffer, got = item
            if self.error is None:
                try:
                    self.digests.update(memoryview(buffer)[:got])
                except BundleError as exc:  # raised in the main thread by take()/finish()
                    self.error = exc
            self.free.put(buffer)

    def take(self) -> bytearray:
        """A buffer to read into (waits while all are being hashed)."""
        if self.error is not None:
            raise self.error
        return self.free.get()

    def give(self, buffer: bytearray, got: int) -> None:
        self.todo.put((buffer, got))

    def finish(self) -> None:
        """Wait for the last volume hashes; raise if one did not match."""
        self.todo.put(None)
        self.join()
        if self.error is not None:
            raise self.error
        self.digests.check()

    def stop(self) -> None:
        if self.is_alive():
            self.todo.put(None)
            self.join()


def _check_outer_hashes(source: BundleSource) -> None:
    """Hash every volume against the ``.sha256`` listing; raise BundleError
    naming the first that differs. One sequential read of the bundle."""
    for part, expected in zip(source.parts, source.expected_sha256, strict=True):
        with open(part, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        if digest != expected:
            raise BundleError(f"sha256 does not match {source.checksums.name}",
                              where=str(part),
                              hint="damaged in transit; copy it again. Nothing was changed")


def _write_all(fd: int, chunk: memoryview, target: Path | None) -> None:
    written = 0
    try:
        while written < len(chunk):
            written += os.write(fd, chunk[written:])
    except OSError as exc:  # name the file: a bare write error (ENOSPC, EFBIG) has none
        raise OSError(exc.errno, exc.strerror, str(target)) from None


def _link_reused(reuse: dict[str, str], into: Path, staging: Path, manifest: Manifest) -> int:
    """Hard-link unchanged files of the current mirror into staging (copy if
    the filesystem refuses), each checked first for its size and its sha256
    against the new manifest: a delta's "every file verified" covers the
    files it takes from the base too. Raises BundleError naming a base file
    that is missing or altered."""
    for path, old in sorted(reuse.items()):
        source, target = into / old, staging / path
        if not _reused_file_intact(source, manifest.files[path]):
            raise BundleError("the current mirror is damaged: this file is missing or altered",
                              where=str(source),
                              hint="run `lockmirror verify`, then import a full bundle")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target, follow_symlinks=False)
        except OSError:
            shutil.copyfile(source, target)
    return len(reuse)


def _reused_file_intact(source: Path, entry: Entry) -> bool:
    """True when ``source`` is a regular file (not a symlink) of the entry's size and sha256."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as handle:
        stat = os.fstat(handle.fileno())
        if not S_ISREG(stat.st_mode) or stat.st_size != entry.size:
            return False
        return hashlib.file_digest(handle, "sha256").hexdigest() == entry.sha256


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(first: Path, second: Path) -> bool:
    """Atomically swap two directories (Linux renameat2); False if unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second),
                 _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def _swap_into_place(staging: Path, into: Path) -> None:
    if into.exists():
        if _exchange(staging, into):
            # Now the previous tree; what a failure here leaves, the next import removes.
            shutil.rmtree(staging, ignore_errors=True)
            return
        old = old_dir(into)
        os.rename(into, old)
        try:
            os.rename(staging, into)
        except OSError:
            os.rename(old, into)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, into)
