"""The content-addressed artifact store: ``<root>/sha256/ab/cdef...``.

Files are named by the sha256 of their bytes, so a file used by several
sets, targets or mirror repositories is kept once, and a file is either
absent or exactly right. Only the fetch stage adds files (after verifying
them); the index stage hard-links them out. A download in progress is a
partial file under ``tmp/``, held by an exclusive lock (:func:`open_partial`)
so two processes sharing the store never write one file at once.
"""

from __future__ import annotations

import errno
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import LockmirrorError


@dataclass(frozen=True, order=True)
class FetchItem:
    """One distinct file (distinct by sha256) a lockfile needs in the store:
    what the fetch stage plans (:mod:`lockmirror.stages.fetch_plan`) and
    :mod:`lockmirror.net.download` brings in."""

    url: str
    sha256: str
    size: int | None  # None for PEP 658 metadata files: lockfiles record only their hash
    filename: str
    needed_by: tuple[str, ...]  # the package sets whose lockfiles name it, sorted
    is_metadata: bool = False
    wheel_sha256: str | None = None  # for a metadata file: the wheel it describes


@dataclass(frozen=True)
class Store:
    root: Path

    def path(self, sha256: str) -> Path:
        """Where the file with this sha256 lives (whether or not it is there)."""
        digest = sha256.lower()
        return self.root / "sha256" / digest[:2] / digest[2:]

    def has(self, sha256: str, size: int | None = None) -> bool:
        """Present with the expected size (the name proves the hash: only
        verified bytes are ever renamed to it)."""
        try:
            stat = self.path(sha256).stat()
        except FileNotFoundError:
            return False
        return size is None or stat.st_size == size

    def recheck(self, sha256: str, size: int | None = None) -> bool:
        """:meth:`has`, asked again just before a download (another process
        sharing the store may have finished it)."""
        return self.has(sha256, size)

    def size_of(self, sha256: str) -> int | None:
        """The size of the file with this sha256, or None when it is absent."""
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    @property
    def identity(self) -> str:
        """What names this store in saved state and messages: its absolute path."""
        return os.path.abspath(self.root)

    def open(self, sha256: str) -> BinaryIO:
        """The file with this sha256, open for reading (FileNotFoundError if absent)."""
        return open(self.path(sha256), "rb")

    def write(self, sha256: str, data: bytes) -> None:
        """Store small verified bytes under their sha256 (atomically, 0644)."""
        from ..fsutil import atomic_writer

        with atomic_writer(self.path(sha256)) as handle:
            handle.write(data)

    def temp_dir(self) -> Path:
        """Where downloads in progress live: same filesystem, never linked."""
        path = self.root / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def partial_path(self, sha256: str) -> Path:
        """Where an unfinished download of this sha256 is kept for resuming.

        Named by the *expected* hash, so a later run (or another mirror
        repository sharing the store) finds and continues it; it is never
        linked out, and only :meth:`adopt` after verification makes it visible.
        """
        return self.temp_dir() / f"{sha256.lower()}.partial"

    def adopt(self, verified: Path, sha256: str) -> Path:
        """Rename a file whose hash the caller has verified into the store. Raises
        OSError naming the store directory that refused the file (not the temporary
        file: the rename fails where the new name is made, as in a directory the
        operator made read-only)."""
        final = self.path(sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(verified, final)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(final.parent)) from None
        return final


def open_partial(path: Path) -> BinaryIO:
    """Open (creating) the partial file of one sha256, holding an exclusive
    lock until :func:`release_partial`.

    Waits while another process holds it. If the file was renamed into the
    store or deleted while we waited, the lock is on a stale inode: reopen.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            if current is not None and current.st_ino == os.fstat(fd).st_ino:
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    # Unbuffered: every write reaches the kernel in the downloader, so a full disk
    # surfaces there (not later, in a flush or close).
    return os.fdopen(fd, "r+b", buffering=0)


def release_partial(handle: BinaryIO, path: Path) -> None:
    """Close a partial opened by :func:`open_partial` (which releases the lock)."""
    # A partial that never received a byte is noise for the next run. Removed
    # while still locked, so a waiter sees a stale inode and reopens.
    try:
        fd = handle.fileno()
        if os.fstat(fd).st_size == 0 and os.stat(path).st_ino == os.fstat(fd).st_ino:
            path.unlink()
    except OSError:
        pass
    handle.close()


def store_write_error(exc: OSError, store: Any, path: Path) -> LockmirrorError:
    """The one-line error for a failed write under ``store`` (disk full or other)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LockmirrorError("the disk holding the store is full", where=str(store.root),
                               hint="free some space or point paths.store / LOCKMIRROR_STORE "
                                    "at a bigger disk, then re-run")
    return LockmirrorError(f"cannot write to the store: {exc.strerror}", where=str(path))
