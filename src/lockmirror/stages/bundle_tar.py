"""The bundle's deterministic tar layout and the writer that cuts it into volumes.

:class:`Layout` turns a list of :class:`Member` into the exact byte sequence
of a tar archive: GNU headers without pax records, mtime ``epoch``, uid/gid
0, no user or group names, mode 0644/0755, members in the order given. The
headers are computed up front, so the total size (and the number of
volumes) is known before a byte is written.

:meth:`Layout.write` writes that sequence into temporary files in the output
directory, cut at the volume size, and renames them into place only when
every byte is written: no partial bundle is ever visible. Every byte is
read once and hashed once, into its volume's sha256 for the ``.sha256``
listing (one thread, ``hashlib`` inline). File members are taken at the
sha256 and size the manifest gives them and are not re-hashed here: a file
whose size differs is refused, naming it; one whose bytes changed at the
same size is refused by the import on the far side, which hashes every
member against ``bundle.json`` (README, "Threat model": "bundle sizes").
Objects of an S3 store are hashed as they stream in (the same pass), and one
whose bytes differ from its key's sha256 fails the bundle: nothing on this
machine ever checked them (README, "The store on S3").
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import os
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import LockmirrorError
from ..formats.bundle_format import BLOCK
from ..formats.bundle_reader import VOLUME_NAME, volume_stem
from ..formats.manifest import Entry
from ..fsutil import CHUNK, sha256_bytes

RECORD = tarfile.RECORDSIZE
FILE_MODE, DIR_MODE = 0o644, 0o755
_ROT_HINT = "the index tree changed since it was built; rebuild it"
# Headers and padding are small writes; file data goes past this buffer in CHUNKs.
_WRITE_BUFFER = 1 << 16


@dataclass
class Member:
    """One tar member to write: a directory, in-memory bytes or a file read from disk."""

    name: str                  # below the top directory ("" for the top itself)
    is_dir: bool = False
    data: bytes | None = None
    path: Path | None = None   # read while writing; checked against ``entry`` (the manifest's)
    entry: Entry | None = None
    store: Any = None          # an S3 store: the bytes are its object ``entry.sha256``, streamed

    def __post_init__(self) -> None:
        if self.data is not None and self.entry is None:
            self.entry = Entry(sha256_bytes(self.data), len(self.data))

    @property
    def size(self) -> int:
        return 0 if self.is_dir or self.entry is None else self.entry.size


def directories(members: Iterable[Member]) -> list[Member]:
    """A directory member for every parent of a member (below the top)."""
    found: set[str] = set()
    for member in members:
        parts = member.name.split("/")[:-1]
        found.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    return [Member(directory, is_dir=True) for directory in found]


def read_input(path: Path, *, hint: str | None = None) -> bytes:
    """A whole input file; LockmirrorError naming it if it is missing or unreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise LockmirrorError("missing", where=str(path), hint=hint) from None
    except OSError as exc:
        raise LockmirrorError(f"cannot read: {exc.strerror}", where=str(path)) from None


def _padding(size: int) -> int:
    return -size % BLOCK


def _header(top: str, member: Member, epoch: int) -> bytes:
    info = tarfile.TarInfo(f"{top}/{member.name}" if member.name else top)
    info.mtime = epoch
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if member.is_dir:
        info.type, info.mode = tarfile.DIRTYPE, DIR_MODE
    else:
        info.type, info.mode, info.size = tarfile.REGTYPE, FILE_MODE, member.size
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


class Layout:
    """The exact byte sequence of the tar of ``members`` below directory ``top``."""

    def __init__(self, top: str, members: list[Member], epoch: int) -> None:
        self.items = [(_header(top, member, epoch), member) for member in members]
        size = sum(len(header) + member.size + _padding(member.size)
                   for header, member in self.items) + 2 * BLOCK
        self.end_padding = 2 * BLOCK + (-size % RECORD)
        self.total_size = size + (-size % RECORD)

    def write(self, out_dir: Path, names: list[str], volume_size: int | None) -> list[str]:
        """Write the tar as volumes ``names`` (cut at ``volume_size``) in ``out_dir``;
        their sha256s.

        Raises LockmirrorError naming the file when an input is unreadable or
        does not match its manifest entry, or when the output cannot be
        written (full disk, ...); no volume or temporary file is left then.
        """
        try:  # out_dir exists: bundle_write.writing_in made it
            writer = VolumeWriter(out_dir, names, volume_size)
        except OSError as exc:
            raise output_error(exc, out_dir) from None
        try:
            view = memoryview(bytearray(CHUNK))
            for header, member in self.items:
                writer.write(header)
                if member.is_dir:
                    continue
                if member.data is not None:
                    writer.write(member.data)
                elif member.store is not None:
                    _copy_object(member, writer)
                else:
                    _copy_sized(member, writer, view)
                writer.write(bytes(_padding(member.size)))
            writer.write(bytes(self.end_padding))
            return writer.commit()
        except BaseException as exc:
            writer.abort()
            if isinstance(exc, OSError):  # ENOSPC, EFBIG, EACCES, ...
                raise output_error(exc, out_dir) from None
            raise


def output_error(exc: OSError, out_dir: Path) -> LockmirrorError:
    """An error writing the bundle, naming the output directory (not a temporary
    file the user never sees). An output that is a file was refused before
    (:func:`lockmirror.stages.bundle_write.writing_in`)."""
    return LockmirrorError(f"cannot write the bundle: {exc.strerror}", where=str(out_dir),
                           hint="nothing was left behind")


def _copy_sized(member: Member, writer: VolumeWriter, view: memoryview) -> None:
    """Copy ``member.entry.size`` bytes of ``member.path`` into the tar through
    ``view``; LockmirrorError naming the file if it is unreadable or not of the
    manifest's size. The bytes are not re-hashed against the manifest (see the
    module docstring)."""
    assert member.path is not None and member.entry is not None
    left = member.entry.size
    try:
        source = open(member.path, "rb", buffering=0)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise LockmirrorError(f"cannot read: {exc.strerror}", where=str(member.path)) from None
    with source:
        if os.fstat(source.fileno()).st_size != left:
            raise LockmirrorError("size differs from manifest.json", where=str(member.path),
                                  hint=_ROT_HINT)
        while left and (got := _read_into(source, view[:min(left, len(view))], member.path)):
            writer.write(view[:got])
            left -= got
    if left:
        raise LockmirrorError("shrank while it was copied", where=str(member.path),
                              hint=_ROT_HINT)


def _copy_object(member: Member, writer: VolumeWriter) -> None:
    """Stream ``member``'s object from its S3 store into the tar (one GET; never
    on the runner's disk), hashed as it passes; IntegrityError naming the key
    unless it has the manifest's size and sha256 (the write is then aborted)."""
    assert member.entry is not None
    entry = member.entry
    for chunk in member.store.checked_chunks(entry.sha256, entry.size, member.name):
        writer.write(chunk)


def _read_into(source: io.RawIOBase, view: memoryview, path: Path) -> int:
    """``source.readinto(view)``; a read error as LockmirrorError naming ``path``."""
    try:
        return source.readinto(view) or 0
    except OSError as exc:
        raise LockmirrorError(f"cannot read: {exc.strerror}", where=str(path)) from None


class VolumeWriter:
    """Writes the tar into temporary files cut at ``volume_size``, hashing each
    as it goes; ``commit`` renames them into place (the caller writes the
    ``.sha256`` listing after, last)."""

    def __init__(self, out_dir: Path, names: list[str], volume_size: int | None) -> None:
        self.out_dir = out_dir
        self.names = names
        self.volume_size = volume_size
        self.temps: list[Path] = []
        self.digests: list[str] = []
        self.file: BinaryIO | None = None
        self.hash = hashlib.sha256()
        self.room = 0
        self._next()

    def _close_volume(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
            self.digests.append(self.hash.hexdigest())

    def _next(self) -> None:
        self._close_volume()
        index = len(self.temps)
        if index >= len(self.names):
            raise AssertionError("more volumes than computed")
        fd, temp = tempfile.mkstemp(prefix=f".{self.names[index]}.", suffix=".tmp",
                                    dir=self.out_dir)
        self.temps.append(Path(temp))
        self.file = open(fd, "wb", buffering=_WRITE_BUFFER, closefd=True)  # noqa: SIM115 - closed above
        os.fchmod(fd, FILE_MODE)
        self.hash = hashlib.sha256()
        self.room = self.volume_size if self.volume_size is not None else 1 << 62

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            if not self.room:
                self._next()
            assert self.file is not None
            piece = view[:self.room]
            self.file.write(piece)
            self.hash.update(piece)
            self.room -= len(piece)
            view = view[len(piece):]

    def commit(self) -> list[str]:
        """Rename the volumes into place and remove this bundle's volumes of an
        earlier, differently split build; the volumes' sha256s."""
        # No fsync: a volume torn by a crash fails its .sha256, which is
        # checked before anything is imported.
        self._close_volume()
        if len(self.temps) != len(self.names):
            raise AssertionError("fewer volumes than computed")
        for temp, name in zip(self.temps, self.names, strict=True):
            os.replace(temp, self.out_dir / name)
        # The same bundle written before with other volume sizes (or unsplit):
        # its files would no longer match the .sha256 listing written next.
        stem = volume_stem(self.names[0])
        for stale in self.out_dir.glob(f"{glob.escape(stem)}*"):
            if stale.name not in self.names and (stale.name == stem
                                                 or VOLUME_NAME.match(stale.name)):
                stale.unlink(missing_ok=True)
        return self.digests

    def abort(self) -> None:
        """Close and delete every temporary volume (after an error)."""
        if self.file is not None:
            with contextlib.suppress(OSError):  # flushing what a full disk refused fails again
                self.file.close()
            self.file = None
        for temp in self.temps:
            temp.unlink(missing_ok=True)
