"""The index stage's file-system operations, none of them specific to one
file system: placing a store file (hard link, else a copy, atomically),
flushing written files before the manifest names them, the directory stamp
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

from ..fsutil import pid_alive

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


def link(source: str, dest: str, *, replace: bool) -> None:
    """Hard-link ``source`` to ``dest``; ``replace``: over an existing file, atomically."""
    if replace:
        _into_place(dest, lambda temp: os.link(source, temp))
    else:
        os.link(source, dest)


def copy(source: str, dest: str, src: os.stat_result) -> None:
    """Copy ``source`` (whose stat is ``src``) to ``dest`` atomically, with its
    mtime: how a later run knows the copy is current (same size and mtime)."""

    def make(temp: str) -> None:
        shutil.copyfile(source, temp)
        os.chmod(temp, 0o644)
        os.utime(temp, ns=(src.st_atime_ns, src.st_mtime_ns))

    _into_place(dest, make)


def _into_place(dest: str, make: Callable[[str], None]) -> None:
    """``make`` a temporary file beside ``dest``, then rename it to ``dest``;
    whatever fails, no temporary file is left."""
    directory, name = os.path.split(dest)
    temp = f"{directory}/.{name}.{os.getpid()}.tmp"
    try:
        make(temp)
        os.replace(temp, dest)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        if isinstance(exc, OSError) and temp in (exc.filename, exc.filename2):
            raise OSError(exc.errno, exc.strerror, dest) from None  # the name the user knows
        raise


def flush(root: Path, written: list[str], *, everything: bool) -> None:
    """Make ``written`` durable before the manifest names them: files written
    without a flush each (a journal commit per file is what makes many small
    writes slow), flushed back to back here; ``everything`` (a staging tree)
    or many files: one os.sync()."""
    if everything or len(written) > BULK_WRITES:
        os.sync()
        return
    parents = sorted({os.path.dirname(f"{root}/{rel}") for rel in written})
    for path in [*(f"{root}/{rel}" for rel in written), *parents]:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def walk(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        found += [prefix + name for name in sorted(filenames)]
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
