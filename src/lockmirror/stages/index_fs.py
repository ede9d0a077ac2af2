"""The index stage's file-system operations, none of them specific to one
file system: writing a file beside the one it replaces (a temporary file
named by the run's pid) and renaming it, flushing written files before they
are renamed and the manifest names them, the directory stamp
the no-op check compares, walking and pruning the tree, and removing the
staging directories of killed builds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..formats.manifest import index_temporary, index_temporary_writer
from ..fsutil import SERVED_FILE_MODE, pid_alive

# Up to this many written files are flushed one by one; above it, one
# os.sync() is cheaper.
BULK_WRITES = 64


def stat_key(path: Path) -> list[int] | None:
    """(size, mtime, ctime, inode) of ``path``; None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def tree_key(root: Path, dirs: Iterable[str]) -> str | None:
    """A digest of the mtime and inode of each of ``dirs`` below ``root``
    (None when one is missing): a file added or removed changes it."""
    digest = hashlib.sha256()
    for rel in dirs:
        try:
            stat = os.stat(f"{root}/{rel}" if rel else root)
        except (FileNotFoundError, NotADirectoryError):
            return None
        digest.update(f"{rel}\0{stat.st_mtime_ns}\0{stat.st_ino}\n".encode())
    return digest.hexdigest()


def ancestors(paths: Iterable[str]) -> set[str]:
    """Every directory above each of ``paths`` ("" for the tree itself)."""
    found = {""}
    for path in paths:
        parent = path.rpartition("/")[0]
        while parent and parent not in found:
            found.add(parent)
            parent = parent.rpartition("/")[0]
    return found


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when unreadable or not an object."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_manifest(path: Path) -> dict[str, tuple[str, int]] | None:
    """The manifest the last run wrote: path -> (sha256, size); None if unreadable."""
    data = read_json(path)
    try:
        return {rel: (entry["sha256"], entry["size"])
                for rel, entry in data["files"].items()} if data else None
    except (KeyError, TypeError, AttributeError):
        return None


def temporary_name(dest: str) -> str:
    """The temporary file beside ``dest`` this run writes it to before the
    rename (``.<name>.index-<pid>.tmp``: verify names it a leftover, and
    :func:`walk` removes it once the run is gone)."""
    directory, name = os.path.split(dest)
    return f"{directory}/{index_temporary(name, os.getpid())}"


def make_beside(dest: str, make: Callable[[str], None], *, rename: bool = True) -> str:
    """``make`` the temporary file of ``dest`` (:func:`temporary_name`), then
    rename it to ``dest`` (``rename`` False: the caller does, later); its name.
    Whatever fails, no temporary file is left and the OSError names ``dest``."""
    temp = temporary_name(dest)
    try:
        make(temp)
        if rename:
            os.replace(temp, dest)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        if isinstance(exc, OSError) and temp in (exc.filename, exc.filename2):
            raise OSError(exc.errno, exc.strerror, dest) from None  # the name the user knows
        raise
    return temp


def writer(data: bytes) -> Callable[[str], None]:
    """What writes ``data`` to a new file (SERVED_FILE_MODE, 0644, whatever the umask)."""

    def write(path: str) -> None:
        with open(path, "wb") as handle:
            handle.write(data)
        os.chmod(path, SERVED_FILE_MODE)

    return write


def copier(source: str, src: os.stat_result) -> Callable[[str], None]:
    """What copies ``source`` (whose stat is ``src``) to a new file, with its
    mtime: how a later run knows the copy is current (same size and mtime)."""

    def make(path: str) -> None:
        shutil.copyfile(source, path)
        os.chmod(path, SERVED_FILE_MODE)
        os.utime(path, ns=(src.st_atime_ns, src.st_mtime_ns))

    return make


def holds(path: str, data: bytes) -> bool:
    """Whether the file ``path`` exists and holds ``data`` (read only when the size is right)."""
    try:
        with open(path, "rb") as handle:
            return os.fstat(handle.fileno()).st_size == len(data) and handle.read() == data
    except FileNotFoundError:
        return False


def flush(paths: list[str], *, everything: bool) -> bool:
    """Make the files ``paths`` durable before they are renamed or named by the
    manifest: files written without a flush each (a journal commit per file is
    what makes many small writes slow), flushed back to back here; ``everything``
    (a staging tree) or many files: one os.sync(), and True (their directories
    are flushed too)."""
    if everything or len(paths) > BULK_WRITES:
        os.sync()
        return True
    flush_dirs(paths)
    return False


def flush_dirs(paths: Iterable[str]) -> None:
    """fsync each of ``paths`` (files or directories), in that order."""
    for path in paths:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def walk(root: Path) -> list[str]:
    """Every file below ``root``, but index runs' temporary files: those of runs
    that are gone (killed) are removed on the way, a live run's left alone.
    Called before this run writes any."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        for name in sorted(filenames):
            pid = index_temporary_writer(name)
            if pid is None:
                found.append(prefix + name)
            elif pid == os.getpid() or not pid_alive(pid):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{dirpath}/{name}")
    return found


def remove_files(root: Path, removed: Iterable[str]) -> None:
    """Delete ``removed`` (paths below ``root``, in that order), then the
    directories that leaves empty."""
    for rel in removed:
        try:
            os.unlink(root / rel)
        except FileNotFoundError:
            pass
    prune_dirs(root, removed)


def prune_dirs(root: Path, removed: Iterable[str]) -> None:
    """Remove the directories ``removed`` emptied."""
    parents = sorted({(root / rel).parent for rel in removed},
                     key=lambda p: len(p.parts), reverse=True)
    for directory in parents:
        while directory != root and root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                break
            directory = directory.parent


def remove_stale_staging(out_dir: Path) -> None:
    """Staging directories left by builds that were killed."""
    parent = out_dir.parent
    if not parent.is_dir():
        return
    prefix = f".{out_dir.name}.staging-"
    for entry in parent.iterdir():
        if entry.name.startswith(prefix) and entry.is_dir():
            pid = entry.name[len(prefix):]
            if pid.isdigit() and pid_alive(int(pid)):
                continue
            shutil.rmtree(entry, ignore_errors=True)
