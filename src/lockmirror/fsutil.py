"""Small filesystem helpers: atomic writes, streaming hashes, and the check that an
output directory can be one (:func:`check_output_dir`).

Nothing partial is ever visible: writers go to a temporary file in the
target's own directory and ``os.replace`` it into place.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .errors import LockmirrorError

CHUNK = 1 << 20
# An index (and the far side's mirror) is served, often by a web server running as
# another user: its files and directories get these modes whatever the umask.
SERVED_FILE_MODE = 0o644
SERVED_DIR_MODE = 0o755
# $TMPDIR/lockmirror-publish-<pid>-XXXXXXXX: where `publish --from BUNDLE` imports the
# bundle; a killed publish's is removed by the next one and by gc (:func:`killed_runs`)
PUBLISH_RUN_PREFIX = "lockmirror-publish-"


@contextmanager
def atomic_writer(path: Path, mode: int = 0o644, *, fsync: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` only if the block succeeds.

    ``fsync=False`` skips the per-file flush to disk (still atomic for
    readers); a caller writing thousands of files does one ``os.sync()``
    afterwards instead of paying a journal commit per file.
    """
    make_parent(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # name the file being written, not a temporary name
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename == tmp:
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise


def make_parent(path: Path) -> None:
    """Make the directory ``path`` goes in. Where a file stands in the way, the
    OSError says which file (``mkdir`` says "File exists" of the path itself)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        above = next((p for p in path.parents if p.exists() and not p.is_dir()), path.parent)
        raise NotADirectoryError(errno.ENOTDIR, f"{above} is a file, not a directory",
                                 str(path)) from None


def make_served_dirs(directory: Path | str) -> None:
    """Make ``directory`` and its missing parents, each :data:`SERVED_DIR_MODE`
    whatever the umask; existing ones are left as they are. FileExistsError
    when a file stands in the way (as ``mkdir -p``). Costs a mkdir, and a chmod
    per directory made."""
    path = os.fspath(directory)
    try:
        os.mkdir(path)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return
    except FileNotFoundError:
        make_served_dirs(os.path.dirname(path))
        make_served_dirs(path)
        return
    os.chmod(path, SERVED_DIR_MODE)


def atomic_write(path: Path, data: bytes | str, *, only_if_changed: bool = False,
                 fsync: bool = True) -> bool:
    """Write ``data`` to ``path`` atomically; return whether anything was written.

    With ``only_if_changed`` an identical existing file is left alone, so its
    mtime does not move (incremental builds rely on that).
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if only_if_changed:
        try:
            if path.stat().st_size == len(raw) and path.read_bytes() == raw:
                return False
        except FileNotFoundError:
            pass
    with atomic_writer(path, fsync=fsync) as handle:
        handle.write(raw)
    return True


def check_output_dir(path: Path, what: str, *, hint: str) -> None:
    """Refuse ``path`` as the directory ``what`` (``"the index output"``) is written
    into when it cannot be one: a LockmirrorError naming ``path`` as given, that it
    is a file, or that it lies under one (named too), with ``hint`` (the option or
    setting to change). A directory that does not exist yet passes: the writer makes
    it. Every command writing into a directory the user names calls this before it
    starts, so no error names a file inside it. Costs a stat per level that is missing."""
    if path.exists() and not path.is_dir():
        raise LockmirrorError(f"{what} is a file, not a directory", where=str(path), hint=hint)
    for parent in path.parents:
        if parent.is_dir():
            return
        if parent.exists():
            raise LockmirrorError(f"{what} lies under {parent}, a file, not a directory",
                                  where=str(path), hint=hint)


@contextmanager
def one_at_a_time(directory: Path, busy: str) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` for the block: one process at a time
    (the kernel drops the lock when the process ends, even by SIGKILL). Raises
    LockmirrorError ``busy``, naming the directory, while another process holds it."""
    from .errors import LockmirrorError

    with locked_unless_held(directory) as held:
        if not held:
            raise LockmirrorError(busy, where=str(directory), hint="wait for it to finish")
        yield


@contextmanager
def locked_unless_held(directory: Path) -> Iterator[bool]:
    """:func:`one_at_a_time`'s lock on ``directory`` for the block when no other
    process holds it (yields True), else nothing held (yields False) at once."""
    import fcntl

    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (flat memory)."""
    with open(path, "rb") as handle:
        return sha256_stream(handle)


def sha256_stream(handle: BinaryIO) -> str:
    """Hex sha256 of what is left to read from ``handle`` (a local or an S3 store's
    file), in 1 MiB chunks."""
    digest = hashlib.sha256()
    while chunk := handle.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def format_size(size: int, *, signed: bool = False) -> str:
    """Binary units with one decimal (``61.6 KiB``, ``512 B``); ``signed`` adds ``+``/``-``."""
    sign = ("-" if size < 0 else "+") if signed else ("-" if size < 0 else "")
    value = float(abs(size))
    if value < 1024:
        return f"{sign}{int(value)} B"
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{sign}{value:.1f} {unit}"


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """``700M``, ``4G``, ``1.5GiB``, ``650MB``, ``123456`` -> bytes.

    K/M/G/T and KiB/MiB/... are powers of 1024; KB/MB/... powers of 1000.
    Raises ValueError for anything else."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (e.g. 700M, 4G, 50GiB, 650MB)")
    number, unit, suffix = match.groups()
    power = "KMGT".find(unit.upper()) + 1 if unit else 0
    base = 1000 if suffix and suffix.lower() == "b" else 1024
    return int(float(number) * base ** power)


def plural(count: int, noun: str) -> str:
    """``1 file``, ``2 files``: a count for messages, beside :func:`format_size`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def first_of(items: Sequence[str], shown: int, *, separator: str = ", ") -> str:
    """The first ``shown`` of ``items`` and how many more, for messages:
    ``a, b, c and 4 more``."""
    more = len(items) - shown
    return separator.join(items[:shown]) + (f" and {more} more" if more > 0 else "")


def disk_bytes(path: Path) -> int:
    """Bytes removing ``path`` (a file or a whole tree) gives back: the sizes of
    its files that have no other hard link. Symlinks are not followed."""
    try:
        stat = path.lstat()
    except FileNotFoundError:
        return 0
    if not path.is_dir() or path.is_symlink():
        return stat.st_size if stat.st_nlink <= 1 else 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                found = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            total += found.st_size if found.st_nlink <= 1 else 0
    return total


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs (another user's counts): a directory named
    with its writer's pid is a killed writer's when that pid is gone. A number too
    large for a pid (read from a name anyone may choose) is no process's."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # it runs, as another user: not ours to signal
        pass
    return True


def killed_runs(prefix: str, root: Path | None = None,
                unnamed: re.Pattern[str] | None = None) -> list[Path]:
    """This user's run directories ``<root>/<prefix><pid>-*`` (``root`` default: the
    temporary directory, ``$TMPDIR``) whose run was killed: named with a pid no process
    has (or matching ``unnamed``, a name from before runs put their pid in it), and held
    by no run (a run holds its directory's lock, :func:`locked_unless_held`, while it
    lives, seen from any pid namespace). Removes nothing. Only this user's entries are
    looked into: the temporary directory is shared, and any user may name one there."""
    import tempfile

    root = Path(tempfile.gettempdir()) if root is None else root
    pid_named = re.compile(re.escape(prefix) + r"([0-9]{1,10})-[^/]+")
    found = []
    for entry in sorted(root.glob(f"{prefix}*")):
        try:
            mine = entry.is_dir() and not entry.is_symlink() and entry.stat().st_uid == os.getuid()
        except OSError:  # gone meanwhile
            continue
        if not mine:
            continue
        named = pid_named.fullmatch(entry.name)
        gone = (not pid_alive(int(named[1])) if named
                else unnamed is not None and unnamed.fullmatch(entry.name) is not None)
        if gone and _not_held(entry):
            found.append(entry)
    return found


def remove_killed_runs(prefix: str, say: Callable[[str], object], runs: str,
                       unnamed: re.Pattern[str] | None = None) -> None:
    """Remove the directories of killed runs (:func:`killed_runs` of ``prefix``) and
    ``say`` which went and what they freed (``runs``: "check-install runs")."""
    import shutil

    removed = [(path, disk_bytes(path)) for path in killed_runs(prefix, unnamed=unnamed)]
    for path, _ in removed:
        shutil.rmtree(path, ignore_errors=True)
    gone = [(path, size) for path, size in removed if not path.exists()]
    if gone:
        freed = format_size(sum(size for _, size in gone))
        say(f"removed what killed {runs} left: "
            f"{', '.join(str(path) for path, _ in gone)} ({freed} freed)")


def _not_held(directory: Path) -> bool:
    try:
        with locked_unless_held(directory) as free:
            return free
    except OSError:
        return False
