"""The import's one pass over the bundle: every byte hashed, index files written to staging.

:func:`extract` reads the bundle front to back in chunks. Each chunk goes
into its volume's sha256 (the ``.sha256`` check) and into the sha256 of
the member it belongs to; index members (and the bundle's state members,
:func:`lockmirror.stages.import_state.state_members`) are written into the
staging tree as they pass. Plain ``hashlib`` in one thread: nothing is read twice.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..formats.bundle_format import INDEX_MANIFEST
from ..formats.bundle_reader import BundleSource, ConcatenatedReader
from ..formats.manifest import Entry
from ..fsutil import SERVED_FILE_MODE, make_served_dirs
from .import_plan import DAMAGED, INDEX_PREFIX, Carried, ImportPlan, refusal, volume_damaged

CHUNK = 1 << 20


def extract(reader: ConcatenatedReader, plan: ImportPlan, staging: Path | None,
            source: BundleSource, state: Mapping[str, str]) -> tuple[int, int]:
    """Hash every volume and member and write the index members into ``staging``,
    and the members ``state`` names (path in the bundle -> path in ``staging``);
    ``staging`` None writes nothing (a no-op import still proves every member).

    Returns (index files written, their bytes), not counting the index manifest.
    Raises BundleError naming the first member or volume whose sha256 does
    not match, or a truncated bundle; OSError (with the file name) if a
    write fails. ``staging``, when given, must exist and be empty.
    """
    volumes = VolumeDigests(source, reader.part_sizes)
    members = _Members(plan.members, staging, source.display, state)
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    position = 0
    try:
        reader.seek(0)
        while got := reader.readinto(buffer):
            chunk = view[:got]
            members.feed(chunk, position)  # first: a damaged member is named
            volumes.update(chunk)
            position += got
        members.check_complete()
        volumes.check_complete()
    finally:
        members.close()
    return members.count, members.size


class _Members:
    """The carried members in tar order, fed the chunks of the bundle as they are read."""

    def __init__(self, carried: list[Carried], staging: Path | None, display: str,
                 state: Mapping[str, str]) -> None:
        self.carried = carried
        self.staging = staging
        self.display = display
        self.state = state
        self.made: set[Path] = {staging} if staging is not None else set()
        self.index = 0
        self.writer: _MemberWriter | None = None
        self.count = self.size = 0

    def feed(self, chunk: memoryview, position: int) -> None:
        """Give each member the part of ``chunk`` (read at ``position``) that is its data."""
        end = position + len(chunk)
        while self.index < len(self.carried):
            item = self.carried[self.index]
            start = item.member.offset_data
            stop = start + item.member.size
            if start >= end:
                return
            if self.writer is None:
                self.writer = _MemberWriter(self._target(item.path),
                                            f"{self.display}:{item.member.name}")
            self.writer.update(chunk[max(start, position) - position:min(stop, end) - position])
            if stop > end:
                return  # the member goes on in the next chunk
            self._finish(item)

    def _finish(self, item: Carried) -> None:
        assert self.writer is not None
        self.writer.finish(item.entry)
        if item.path.startswith(INDEX_PREFIX) and item.path != INDEX_MANIFEST:
            self.count += 1
            self.size += item.member.size
        self.writer = None
        self.index += 1

    def _target(self, path: str) -> Path | None:
        """Where an index or state member goes in staging (None: checked, not kept)."""
        if self.staging is None:
            return None
        if path.startswith(INDEX_PREFIX):
            target = self.staging / path[len(INDEX_PREFIX):]
        elif path in self.state:
            target = self.staging / self.state[path]
        else:
            return None
        if target.parent not in self.made:
            make_served_dirs(target.parent)  # served: 0755 whatever the umask
            self.made.add(target.parent)
        return target

    def check_complete(self) -> None:
        """Raise BundleError if the bundle ended before the last member did."""
        if self.index < len(self.carried):
            raise refusal("bundle is truncated: it ends inside this member",
                          f"{self.display}:{self.carried[self.index].member.name}", DAMAGED)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class _MemberWriter:
    """One member on its way out: hashed, and written when it has a target.

    Files are created with O_EXCL and O_NOFOLLOW in the fresh staging tree,
    so nothing can be written through a link."""

    def __init__(self, target: Path | None, where: str) -> None:
        self.target = target
        self.where = where
        self.digest = hashlib.sha256()
        self.fd = (os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                           | os.O_CLOEXEC, SERVED_FILE_MODE) if target is not None else -1)
        if self.fd >= 0:
            os.fchmod(self.fd, SERVED_FILE_MODE)  # served: not the umask's 0600

    def update(self, piece: memoryview) -> None:
        self.digest.update(piece)
        if self.fd >= 0:
            _write_all(self.fd, piece, self.target)

    def finish(self, entry: Entry) -> None:
        """Close the file; BundleError if the member's sha256 is not the entry's."""
        self.close()
        if self.digest.hexdigest() != entry.sha256:
            raise refusal(f"sha256 {self.digest.hexdigest()[:16]}... does not match "
                          f"bundle.json ({entry.sha256[:16]}...)", self.where, DAMAGED)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _write_all(fd: int, chunk: memoryview, target: Path | None) -> None:
    written = 0
    try:
        while written < len(chunk):
            written += os.write(fd, chunk[written:])
    except OSError as exc:  # name the file: a bare write error (ENOSPC, EFBIG) has none
        raise OSError(exc.errno, exc.strerror, str(target)) from None


class VolumeDigests:
    """sha256 of each volume as the bytes stream past; checked against the
    ``.sha256`` listing as soon as a volume ends."""

    def __init__(self, source: BundleSource, sizes: Sequence[int]) -> None:
        self.source = source
        self.sizes = list(sizes)
        self.index = 0
        self.room = self.sizes[0]
        self.digest = hashlib.sha256()

    def update(self, chunk: memoryview) -> None:
        """Hash the next bytes of the bundle; BundleError when a volume ends wrong."""
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
            raise volume_damaged(self.source, part)
        self.index += 1
        self.digest = hashlib.sha256()
        self.room = self.sizes[self.index] if self.index < len(self.sizes) else 1 << 62

    def check_complete(self) -> None:
        """Raise BundleError if a volume was not read to its end."""
        if self.index < len(self.sizes):
            raise refusal("bundle is truncated", str(self.source.parts[self.index]), DAMAGED)
