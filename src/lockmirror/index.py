"""Index stage: ``dist-index/`` from the lockfiles and the store, incrementally.

Entry: :func:`build_index`. It writes (layout in docs/ARCHITECTURE.md)::

    index.html                   landing page (pages.landing_html)
    simple/index.html|json       PEP 503 / PEP 691 root
    simple/<project>/index.html  PEP 503 page, index.json beside it (PEP 691 1.1 + PEP 700)
    files/<project>/<filename>   the artifact, hard-linked from the store (copied
                                 when the store is on another file system)
    files/<project>/<wheel>.metadata   PEP 658 core metadata, also from the store
    constraints/<set>-<target>.txt     pins for ``pip install -c``
    lockfiles/pylock.<set>.toml        the lockfiles, files pointing into the mirror
    manifest.json                every other file: path, size, sha256

How it stays fast and quiet:

* Hashes are never recomputed for artifacts: the lockfile states each
  sha256 and the store's file name proves it. Pages are hashed in memory.
* A small state file beside the output (``.<out>.lockmirror/state.json``)
  records the inputs' key (lockfile hashes, title, mirror.yaml commit, tool
  version), the manifest's stat and the mtimes of the tree's directories;
  when all match, a run returns without parsing anything or writing. It
  stats each directory, not each file: a file deleted or added by hand
  changes its directory and is put back or taken out by the next run; a
  file edited in place is found by ``full=True`` (every file compared) or
  ``lockmirror verify DIR`` (every hash checked against the manifest).
* A cache beside it (``cache.marshal``) keeps every lockfile package block
  already parsed (keyed by the block's text, so only changed blocks of a
  changed lockfile are parsed again, and unchanged lockfiles are not read),
  and per project and per set what was written. A project whose blocks did
  not change is not merged, rendered or linked again; a set whose lockfile
  did not change keeps its constraints and its landing-page section. So a
  changed pin rewrites only that project's pages, the root pages, the
  landing page, the set's lockfile copy and constraints, and the manifest.
  Without the cache (or with ``full=True``) every file is compared with
  what it should be (links by inode, pages by content) and only differing
  ones are written.
  Rows read from the cache stay encoded until used, and an unchanged
  project's part of the manifest is cut from the previous manifest (the
  cache keeps where each part is), so a one-package change costs little
  more than the stat calls of the no-op check.
* Pages are written with :func:`~lockmirror.fsutil.atomic_write` and
  ``only_if_changed``: an unchanged file keeps its mtime. Written files are
  flushed to disk together just before the manifest names them. A first
  build goes into a staging directory renamed into place at the end.
* A first build uses both cores, with forked children (from a
  single-threaded process on Linux only): one parses half the package
  blocks; then another places the files of half the projects and renders
  and writes their pages while the parent does the other half. Processes,
  not threads: tens of thousands of short system calls from two threads
  mostly wait for each other at the GIL. If a child fails, the parent does
  (or checks) its share and reports any error; without fork, a thread
  places the files while the pages are written. An update whose
  lockfiles changed forks a child at once that imports the lockfile
  parser (about 30 ms) while this process stats the tree and reads the
  cache, then parses the changed blocks for it.

Output is byte-identical whatever the order of the lockfiles, the store or
a directory listing: everything is sorted, and nothing depends on the clock.
"""

from __future__ import annotations

import errno
import gc
import hashlib
import json
import marshal
import os
import re
import shutil
import signal
import stat as statmod
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from . import __version__
from .errors import IntegrityError, LockmirrorError, NotFoundError
from .fsutil import atomic_write, sha256_bytes
from .manifest import MANIFEST_NAME, Entry, encode_entries, join_encoded_spans
from .pages import (
    IndexFile,
    LandingPage,
    Provenance,
    Release,
    SetPackage,
    SetSummary,
    SetTarget,
    constraints_text,
    landing_html,
    project_html,
    project_json,
    root_html,
    root_json,
    set_section,
)
from .store import Store

if TYPE_CHECKING:
    import subprocess

    from packaging.version import Version

    from .lockfile import LockedPackage, Lockfile

# Bump whenever what a page contains for the same input changes: it
# invalidates the cache and so re-renders (and compares) every page.
INDEX_FORMAT = "lockmirror-index/2"
DEFAULT_TITLE = "Python package mirror"
STATE_NAME = "state.json"
CACHE_NAME = "cache.marshal"
CACHE_VERSION = 3  # bump when what cache.marshal holds changes shape
# Up to this many written files are fsync'ed one by one at the end (one journal
# commit covers them all); above it, one os.sync() is cheaper.
BULK_WRITES = 64

# os.open's descriptors are not inherited (PEP 446); O_BINARY: no newline
# translation on Windows
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_SET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_FILENAME_BAD = re.compile(r"[/\\\x00-\x1f]")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class IndexResult:
    """What a run did. Paths are relative to ``out_dir``, sorted."""

    out_dir: Path
    noop: bool  # nothing to do: the inputs and the tree were as last built
    written: tuple[str, ...]  # files created or replaced (pages, links, copies)
    removed: tuple[str, ...]  # files taken out because no lockfile needs them
    removed_releases: tuple[str, ...]  # "name version" of releases taken out
    projects: int
    files: int  # artifacts (wheels and sdists), without .metadata files
    total_size: int  # bytes of those artifacts
    linked: int = 0
    copied: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed)


def state_dir_for(out_dir: Path) -> Path:
    """Where :func:`build_index` keeps its state by default: beside ``out_dir``
    (not inside: the tree holds only what clients may fetch)."""
    out_dir = Path(os.path.abspath(out_dir))
    return out_dir.with_name(f".{out_dir.name}.lockmirror")


def build_index(
    lockfiles: Sequence[Path],
    store: Store | Path,
    out_dir: Path,
    *,
    mirror_yaml: Path | None = None,
    title: str = DEFAULT_TITLE,
    full: bool = False,
    exclude: Iterable[tuple[str, Version | str]] = (),
    state_dir: Path | None = None,
    progress: Progress | None = None,
) -> IndexResult:
    """Bring ``out_dir`` to the index of ``lockfiles`` (paths to ``pylock.<set>.toml``).

    ``store`` holds every locked file and each wheel's PEP 658 metadata file
    (the fetch stage's job). ``mirror_yaml``, when given, is named on the
    landing page with its sha256 and the last git commit that touched it.
    ``full`` ignores the state and cache and compares every file.
    ``exclude`` holds releases, (name, version), to leave out although locked:
    the quarantine list (``QuarantineList.keys``). Their files and page
    entries are not in the index; the landing page marks them quarantined and
    the constraints still pin them (installing them must fail, not drift).

    Raises NotFoundError when a locked file is not in the store (run fetch),
    IntegrityError when the store or two lockfiles disagree about a file, and
    LockmirrorError for an unreadable lockfile, an ``out_dir`` that is not
    an index, or a file that cannot be written (a full disk): a first build
    that fails before its rename leaves no tree; an update keeps the
    previous manifest. Costs: a no-op run stats the lockfiles and the manifest and
    runs git twice; otherwise time grows with the changed packages plus a
    pass over every locked file name (no artifact is read or hashed).
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise LockmirrorError("the index output is a file, not a directory", where=str(out_dir),
                              hint="point --out (paths.index) at a directory")
    builder = _Builder(
        lockfiles=[Path(p) for p in lockfiles],
        store=store if isinstance(store, Store) else Store(Path(store)),
        out_dir=Path(os.path.abspath(out_dir)),
        mirror_yaml=Path(mirror_yaml) if mirror_yaml else None,
        title=title,
        full=full,
        exclude=_normalized_releases(exclude),
        state_dir=Path(state_dir) if state_dir else None,
        progress=progress or (lambda _message: None),
    )
    # Parsing makes hundreds of thousands of small objects and no cycles the
    # run needs collected: the cyclic collector's passes cost 3-5 % for nothing.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return builder.run()
    except OSError as exc:  # a full disk, an unwritable directory, a failing device
        # link() and copies name the source first, the file being written second
        named = exc.filename2 if isinstance(exc.filename2, str) else exc.filename
        where = named if isinstance(named, str) else str(builder.out_dir)
        hint = ("free some space and run again"
                if exc.errno in (errno.ENOSPC, errno.EDQUOT) else None)
        raise LockmirrorError(f"cannot build the index: {exc.strerror or exc}", where=where,
                              hint=hint) from exc
    finally:
        if collecting:
            gc.enable()


# --------------------------------------------------------------------------
# Lockfiles as the index needs them
# --------------------------------------------------------------------------

# One package block of a lockfile, reduced to plain values (marshal-able):
# (name, version, requires_python, yanked, targets, build_only, source,
#  ((filename, size, sha256, upload_time, metadata_sha256), ...))
Row = tuple[str, str, str | None, str | None, tuple[str, ...], bool, str,
            tuple[tuple[str, int, str, str | None, str | None], ...]]


@dataclass
class _Input:
    path: Path
    stat_key: list[int]
    sha256: str
    data: bytes | None = None

    def read(self) -> bytes:
        if self.data is None:
            self.data = self.path.read_bytes()
        return self.data


class _Rows(MutableMapping[str, Row]):
    """The rows cache, block key -> Row. Rows read from the cache file stay
    marshal-encoded until first used: a run that changes one package decodes
    a handful of rows, not every row of every lockfile."""

    def __init__(self, encoded: dict[str, bytes] | None = None) -> None:
        self._encoded = dict(encoded or {})
        self._decoded: dict[str, Row] = {}

    def __getitem__(self, key: str) -> Row:
        row = self._decoded.get(key)
        if row is None:
            row = self._decoded[key] = marshal.loads(self._encoded[key])
        return row

    def __setitem__(self, key: str, row: Row) -> None:
        self._decoded[key] = row
        self._encoded.pop(key, None)

    def __delitem__(self, key: str) -> None:
        found = self._decoded.pop(key, None) is not None
        if self._encoded.pop(key, None) is None and not found:
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in self._decoded or key in self._encoded

    def __iter__(self) -> Iterator[str]:
        return iter({**self._encoded, **self._decoded})

    def __len__(self) -> int:
        return len({**self._encoded, **self._decoded})

    def encoded(self, keys: Iterable[str]) -> dict[str, bytes]:
        """``keys``' rows as the cache file keeps them."""
        return {key: self._encoded[key] if key in self._encoded
                else marshal.dumps(self._decoded[key]) for key in keys}


@dataclass
class _LockedSet:
    name: str
    input: _Input
    requirements: tuple[str, ...]
    targets: tuple[SetTarget, ...]
    input_hash: str
    keys: list[str]  # one per row: the row's key in the rows cache
    pins: list[tuple[str, str]]  # one per row: (name, version)
    store: Mapping[str, Row]  # where the rows are

    @property
    def rows(self) -> list[Row]:
        return [self.store[key] for key in self.keys]

    def meta(self) -> tuple[Any, ...]:
        """What the cache keeps of the lockfile besides its rows (marshal-able)."""
        return (self.name, self.requirements,
                tuple((t.name, t.python, t.implementation, t.platforms) for t in self.targets),
                self.input_hash)

    @classmethod
    def from_cache(cls, item: _Input, cached: tuple[Any, ...], rows_cache: _Rows,
                   ) -> _LockedSet:
        (name, requirements, targets, input_hash), keys, pins = cached
        return cls(name=name, input=item, requirements=tuple(requirements),
                   targets=tuple(SetTarget(t[0], t[1], t[2], tuple(t[3])) for t in targets),
                   input_hash=input_hash, keys=list(keys),
                   pins=[(pin[0], pin[1]) for pin in pins], store=rows_cache)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.replace(tzinfo=None).isoformat() + "Z"


def _row(package: LockedPackage, where: str) -> Row:
    if not _NAME_RE.match(package.name):
        raise LockmirrorError(f"package name {package.name!r} is not a normalized name",
                              where=where, hint="re-create the lockfile with `doit lock`")
    files = []
    for file in package.files:
        if (not file.filename or file.filename.startswith(".")
                or _FILENAME_BAD.search(file.filename)):
            raise LockmirrorError(f"unsafe file name {file.filename!r} for {package.name}",
                                  where=where)
        if not re.fullmatch(r"[0-9a-f]{64}", file.sha256 or ""):
            raise LockmirrorError(f"{file.filename} has no sha256", where=where)
        metadata = file.metadata_sha256 if file.is_wheel else None
        files.append((file.filename, int(file.size), file.sha256, _iso(file.upload_time),
                      metadata.lower() if metadata else None))
    return (package.name, str(package.version), package.requires_python, package.yanked,
            tuple(package.targets), bool(package.build_only), package.index,
            tuple(sorted(files)))


def _split_blocks(text: str) -> tuple[str, list[str], str] | None:
    """(header, package blocks, trailer) of a lockfile as lockmirror writes it
    (tomli-w puts top-level keys first, then each ``[[packages]]`` with its
    sub-tables, then ``[tool...]``), or None when it does not have that shape.
    Uses str.find, not a multi-line regex: 20x faster on megabytes of text."""
    marker = "\n[[packages]]\n"
    first = text.find(marker)
    if first < 0:
        return None
    last = text.rfind(marker)
    end = len(text)
    position = text.find("\n[", last + 1)
    while position >= 0:
        if not (text.startswith(marker, position) or text.startswith("\n[packages.", position)
                or text.startswith("\n[[packages.", position)):
            end = position + 1
            break
        position = text.find("\n[", position + 1)
    starts = []
    position = first
    while 0 <= position < end:
        starts.append(position + 1)
        position = text.find(marker, position + 1)
    blocks = [text[a:b] for a, b in zip(starts, [*starts[1:], end], strict=True)]
    return text[:first + 1], blocks, text[end:]


def _block_key(targets_key: str, block: str) -> str:
    return hashlib.sha256(f"{INDEX_FORMAT}\n{targets_key}\n{block}".encode()).hexdigest()


@dataclass
class _Split:
    """A lockfile cut into its package blocks, each keyed for the rows cache."""

    item: _Input
    header: str
    blocks: list[str]
    trailer: str
    keys: list[str]

    def missing(self, rows_cache: MutableMapping[str, Row], skip: frozenset[str] = frozenset(),
                ) -> list[int]:
        return [i for i, key in enumerate(self.keys) if key not in rows_cache and key not in skip]

    def parse(self, indices: list[int], rows_cache: MutableMapping[str, Row]) -> Lockfile | None:
        """Parse the blocks at ``indices`` (at least one, for the set's header)
        with the header and trailer, into ``rows_cache``; validates them with
        :meth:`Lockfile.loads`. None when the blocks do not parse on their own
        (the file is not cut where we thought): the caller parses it whole."""
        from .lockfile import Lockfile

        sample = indices or [0]
        where = str(self.item.path)
        partial = self.header + "".join(self.blocks[i] for i in sample) + self.trailer
        try:
            lock = _loads(Lockfile, partial, where)
        except LockmirrorError:
            return None
        if len(lock.packages) != len(sample):
            return None
        for i, package in zip(sample, lock.packages, strict=True):
            rows_cache[self.keys[i]] = _row(package, where)
        return lock


def _text_of(item: _Input) -> str:
    try:
        return item.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LockmirrorError(f"not UTF-8 text: {exc}", where=str(item.path)) from None


def _split_input(item: _Input) -> _Split | None:
    """The lockfile's blocks, or None when it does not have the shape lockmirror writes."""
    split = _split_blocks(_text_of(item))
    if split is None:
        return None
    header, blocks, trailer = split
    targets_key = _targets_key(trailer)
    if targets_key is None:
        return None
    return _Split(item, header, blocks, trailer,
                  [_block_key(targets_key, block) for block in blocks])


def _load_whole(item: _Input, rows_cache: MutableMapping[str, Row]) -> _LockedSet:
    """Parse a lockfile in one piece (one that cannot be cut into blocks)."""
    from .lockfile import Lockfile

    where = str(item.path)
    text = _text_of(item)
    lock = _loads(Lockfile, text, where)
    rows = [_row(package, where) for package in lock.packages]
    split = _split_blocks(text)
    if split is not None and len(split[1]) == len(rows):
        targets_key = _targets_key(split[2]) or ""
        keys = [_block_key(targets_key, block) for block in split[1]]
    else:  # keyed by content, so unchanged packages still keep their pages
        keys = [_block_key("row", repr(row)) for row in rows]
    rows_cache.update(zip(keys, rows, strict=True))
    return _set_from(_lock_meta(lock), item, rows, keys)


def _load_all(inputs: Sequence[_Input], rows_cache: _Rows,
              lock_cache: dict[str, tuple[Any, ...]],
              importer: _ChildImporter | None = None) -> list[_LockedSet]:
    """Every lockfile as a set: from the cache when its bytes were seen before,
    else its changed package blocks parsed (validated by :meth:`Lockfile.loads`).
    Many blocks to parse (a first build) are shared with a forked child, so
    both cores parse; a few (an update) go to ``importer`` when given."""
    found: dict[int, _LockedSet] = {}
    splits: list[_Split] = []
    numbers: list[int] = []  # each split's place in ``inputs``
    for number, item in enumerate(inputs):
        known = lock_cache.get(item.sha256)
        if known is not None and all(k in rows_cache for k in known[1]):
            found[number] = _LockedSet.from_cache(item, known, rows_cache)
            continue
        split = _split_input(item)
        if split is None:
            found[number] = _load_whole(item, rows_cache)
        else:
            splits.append(split)
            numbers.append(number)
    metas = importer.parse(splits, rows_cache) if importer is not None else None
    if metas is None:
        child = _ChildParser.start(splits, rows_cache)
        skip = child.keys if child is not None else frozenset()
        try:
            locks = [s.parse(s.missing(rows_cache, skip), rows_cache) for s in splits]
        finally:
            if child is not None:  # always reaped; nothing when it failed: parsed below
                rows_cache.update(child.collect())
        metas = [None if lock is None else _lock_meta(lock) for lock in locks]
    for number, split, meta in zip(numbers, splits, metas, strict=True):
        missing = split.missing(rows_cache)
        if meta is not None and missing:
            lock = split.parse(missing, rows_cache)
            meta = None if lock is None else _lock_meta(lock)
        if meta is None:  # not parsed in blocks (or an error): parsed whole, here
            found[number] = _load_whole(split.item, rows_cache)
        else:
            found[number] = _set_from(meta, split.item, [rows_cache[k] for k in split.keys],
                                      split.keys)
    return [found[number] for number in range(len(inputs))]


def _lockfiles_changed(state: dict[str, Any], inputs: Sequence[_Input]) -> bool:
    """Whether a lockfile's bytes differ from the previous run's."""
    previous = state.get("lockfiles", {})
    for item in inputs:
        before = previous.get(str(item.path))
        if not (isinstance(before, list) and len(before) == 5 and before[4] == item.sha256):
            return True
    return False


# Up to this many package blocks to parse go to the importer child (an update);
# more are parsed here and by a _ChildParser.
IMPORTER_BLOCKS = 100


class _ChildImporter:
    """A child forked early in an update that imports the lockfile parser
    (packaging.pylock: about 30 ms of imports and regex compiling) while this
    process stats the tree and reads the cache, then parses and validates the
    package blocks this process sends it and sends back their rows. Only from
    a single-threaded process on Linux, where fork is safe. Whatever fails in
    the child, the parent parses those blocks itself and so reports any error."""

    def __init__(self, pid: int, to_child: int, from_child: int) -> None:
        self.pid, self.to_child, self.from_child = pid, to_child, from_child
        self.done = False

    @classmethod
    def start(cls) -> _ChildImporter | None:
        if not _may_fork():
            return None
        requests_read, requests_write = os.pipe()
        replies_read, replies_write = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for descriptor in (requests_read, requests_write, replies_read, replies_write):
                os.close(descriptor)
            return None
        if pid == 0:  # the child: import, parse what is asked, leave without any cleanup
            status = 1
            try:  # even an interrupt must not unwind into the parent's code
                os.close(requests_write)
                os.close(replies_read)
                status = _child_import(requests_read, replies_write)
            finally:
                os._exit(status)
        os.close(requests_read)
        os.close(replies_write)
        return cls(pid, requests_write, replies_read)

    def parse(self, splits: list[_Split], rows_cache: MutableMapping[str, Row],
              ) -> list[LockMeta | None] | None:
        """Have the child parse the blocks of ``splits`` missing from
        ``rows_cache`` (at least one block each, for the header); their rows
        go into ``rows_cache``. Each split's lockfile meta, None for a split
        whose blocks did not parse on their own; None for all when too many
        blocks are missing or the child failed."""
        wanted = [split.missing(rows_cache) for split in splits]
        if not splits or sum(map(len, wanted)) > IMPORTER_BLOCKS:
            self.stop()
            return None
        requests = []
        for split, indices in zip(splits, wanted, strict=True):
            sample = indices or [0]
            requests.append((str(split.item.path),
                             split.header + "".join(split.blocks[i] for i in sample)
                             + split.trailer,
                             [split.keys[i] for i in sample]))
        to_child, self.to_child = self.to_child, -1  # the with block closes it
        try:
            with os.fdopen(to_child, "wb") as pipe:
                pipe.write(marshal.dumps(requests))
        except OSError:  # the child is gone: parsed here
            pass
        replies = self._reap()
        if not isinstance(replies, list) or len(replies) != len(splits):
            return None
        metas: list[LockMeta | None] = []
        for reply in replies:
            if reply is None:
                metas.append(None)
                continue
            rows, meta = reply
            rows_cache.update(rows)
            metas.append(meta)
        return metas

    def stop(self) -> None:
        """End the child, unused (it may still be importing), and reap it;
        idempotent."""
        if self.done:
            return
        if self.to_child >= 0:
            os.close(self.to_child)
            self.to_child = -1
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._reap()

    def _reap(self) -> Any:
        if self.done:
            return None
        self.done = True
        return _reap(self.pid, self.from_child)


def _child_import(requests: int, replies: int) -> int:
    """In the importer child: import the parser, then parse each (where,
    text, keys) request into its rows and lockfile meta (None when the text
    does not parse, or its packages are not one per key); the exit status."""
    try:
        import packaging.pylock  # noqa: F401 - what Lockfile.loads imports on first use

        from .lockfile import Lockfile

        with os.fdopen(requests, "rb") as pipe:
            data = pipe.read()
        if not data:  # nothing to parse after all
            return 0
        answers: list[tuple[dict[str, Row], LockMeta] | None] = []
        for where, text, keys in marshal.loads(data):
            try:
                lock = _loads(Lockfile, text, where)
                if len(lock.packages) != len(keys):
                    answers.append(None)
                    continue
                rows = {key: _row(package, where)
                        for key, package in zip(keys, lock.packages, strict=True)}
            except LockmirrorError:  # the parent parses it again and reports
                answers.append(None)
                continue
            answers.append((rows, _lock_meta(lock)))
        with os.fdopen(replies, "wb") as pipe:
            pipe.write(marshal.dumps(answers))
    except BaseException:  # noqa: BLE001 - the parent parses the blocks itself
        return 1
    return 0


def _reap(pid: int, reader: int) -> Any:
    """What a forked child sent on the pipe (marshal), None when it failed:
    a non-zero exit status, one that cannot be known (the child was reaped by
    someone else), or a report that does not decode. The child is always
    waited for, even when reading is interrupted."""
    try:
        with os.fdopen(reader, "rb") as pipe:
            data = pipe.read()
    finally:
        try:
            _pid, status = os.waitpid(pid, 0)
        except ChildProcessError:
            status = -1
    if status != 0:
        return None
    try:
        return marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return None


def _fork_reporter(work: Callable[[int], int]) -> tuple[int, int] | None:
    """Fork a child that runs ``work(writer)``, ``writer`` being the write end
    of a pipe for its report, and leaves with the status it returns (1 on any
    exception, an interrupt included: nothing unwinds into the parent's code,
    and no cleanup runs). The parent gets (pid, reader), None if fork failed."""
    reader, writer = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(reader)
        os.close(writer)
        return None
    if pid == 0:
        status = 1
        try:
            os.close(reader)
            status = work(writer)
        finally:
            os._exit(status)
    os.close(writer)
    return pid, reader


def _temp_path(directory: str, name: str, pid: int) -> str:
    """Where process ``pid`` copies a file before renaming it to ``name``."""
    return f"{directory}/.{name}.{pid}.tmp"


def _may_fork() -> bool:
    """Whether this process may fork a helper child: Linux only (on macOS a
    forked child of a process that loaded system frameworks may crash, why
    multiprocessing spawns there), a single thread (fork copies no other
    thread, nor the locks they hold), and SIGCHLD not ignored (the kernel
    would reap the child, and its exit status could not be checked)."""
    return (sys.platform.startswith("linux") and threading.active_count() == 1
            and signal.getsignal(signal.SIGCHLD) is not signal.SIG_IGN)


# Below this many package blocks to parse, a child process costs more than it saves.
PARALLEL_BLOCKS = 600


def _child_parse(writer: int, shares: list[tuple[_Split, list[int]]]) -> int:
    """In the forked child: parse ``shares``, send their rows; the exit status.
    Any failure is status 1 and no output: the parent parses the share itself
    and so reports the error."""
    try:
        rows: dict[str, Row] = {}
        for split, indices in shares:
            if split.parse(indices, rows) is None:
                return 1
        with os.fdopen(writer, "wb") as pipe:
            pipe.write(marshal.dumps(rows))
    except BaseException:  # noqa: BLE001 - reported by the parent, which parses again
        return 1
    return 0


class _ChildParser:
    """A forked child that parses a share of the package blocks and sends the
    rows back (marshal over a pipe). Only from a single-threaded process, where
    fork is safe; any failure in the child just leaves its share to the parent,
    which then reports errors itself."""

    def __init__(self, pid: int, reader: int, keys: frozenset[str]) -> None:
        self.pid, self.reader, self.keys = pid, reader, keys

    @classmethod
    def start(cls, splits: list[_Split], rows_cache: MutableMapping[str, Row]) -> _ChildParser | None:
        missing = [(split, i) for split in splits for i in split.missing(rows_cache)]
        if len(missing) < PARALLEL_BLOCKS or not _may_fork():
            return None
        # the child's share: the last blocks, a little under half (it also
        # pays for sending its rows, the parent for reading them)
        share = missing[len(missing) * 14 // 25:]
        by_split: dict[int, tuple[_Split, list[int]]] = {}
        for split, i in share:
            by_split.setdefault(id(split), (split, []))[1].append(i)
        keys = frozenset(split.keys[i] for split, i in share)
        forked = _fork_reporter(lambda writer: _child_parse(writer, list(by_split.values())))
        return None if forked is None else cls(*forked, keys)

    def collect(self) -> dict[str, Row]:
        """The child's rows; {} when it failed."""
        rows = _reap(self.pid, self.reader)
        return rows if isinstance(rows, dict) else {}


def _loads(cls: type[Lockfile], text: str, where: str) -> Lockfile:
    return cls.loads(text, where=where)


def _targets_key(trailer: str) -> str | None:
    """The set's target names, which a package block without its own
    ``targets`` inherits; None when the trailer does not parse alone."""
    try:
        import tomli as tomllib
    except ImportError:  # pragma: no cover
        import tomllib  # type: ignore[no-redef]
    try:
        tool = tomllib.loads(trailer).get("tool", {}).get("lockmirror", {})
    except tomllib.TOMLDecodeError:
        return None
    targets = tool.get("targets")
    return ",".join(targets) if isinstance(targets, dict) else None


# What a set needs of its lockfile besides the package rows (marshal-able):
# (set name, requirements, ((target, python, implementation, platforms), ...),
#  input hash)
LockMeta = tuple[str, tuple[str, ...], tuple[tuple[str, str, str, tuple[str, ...]], ...], str]


def _lock_meta(lock: Lockfile) -> LockMeta:
    return (lock.set_name, tuple(lock.requirements),
            tuple((t.name, t.python, t.implementation, tuple(t.platforms))
                  for t in lock.targets), lock.input_hash)


def _set_from(meta: LockMeta, item: _Input, rows: list[Row], keys: list[str]) -> _LockedSet:
    """The set of a parsed lockfile (``rows`` are its packages' rows, in order)."""
    where = str(item.path)
    set_name, requirements, targets, input_hash = meta
    if not _SET_RE.match(set_name or ""):
        raise LockmirrorError(f"set name {set_name!r} is missing or unsafe", where=where)
    for target in targets:
        if not _SET_RE.match(target[0]):
            raise LockmirrorError(f"target name {target[0]!r} is unsafe", where=where)
    return _LockedSet(name=set_name, input=item, requirements=tuple(requirements),
                      targets=tuple(SetTarget(t[0], t[1], t[2], tuple(t[3])) for t in targets),
                      input_hash=input_hash, keys=keys,
                      pins=[(row[0], row[1]) for row in rows], store=dict(zip(keys, rows)))


# --------------------------------------------------------------------------
# The builder
# --------------------------------------------------------------------------


def _stat_key(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


DirStats = dict[str, tuple[int, int]]  # directory (relative) -> (mtime_ns, inode)


def _dir_stats(root: Path, dirs: Iterable[str], known: DirStats | None = None,
               restat: Iterable[str] = ()) -> DirStats | None:
    """(mtime, inode) of ``dirs`` below ``root``, None if one is missing.
    Those in ``known`` and not in ``restat`` are taken from ``known``, unstatted."""
    found: DirStats = {}
    base = str(root)
    again = set(restat)
    for rel in dirs:
        if known is not None and rel in known and rel not in again:
            found[rel] = known[rel]
            continue
        try:
            stat = os.stat(f"{base}/{rel}" if rel else base)
        except (FileNotFoundError, NotADirectoryError):
            return None
        found[rel] = (stat.st_mtime_ns, stat.st_ino)
    return found


def _tree_key(dirs: Sequence[str], stats: DirStats | None) -> str | None:
    """A digest of the mtimes of ``dirs`` (None if one is missing)."""
    if stats is None:
        return None
    digest = hashlib.sha256()
    for rel in dirs:
        mtime, inode = stats[rel]
        digest.update(f"{rel}\0{mtime}\0{inode}\n".encode())
    return digest.hexdigest()


def _ancestors(paths: Iterable[str]) -> set[str]:
    """Every directory above each of ``paths`` ("" for the tree itself)."""
    found = {""}
    for path in paths:
        parent = path.rpartition("/")[0]
        while parent and parent not in found:
            found.add(parent)
            parent = parent.rpartition("/")[0]
    return found


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _git(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str] | None:
    import subprocess  # only when a mirror.yaml is named: keeps the entry point light

    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return None


def provenance_of(mirror_yaml: Path | None) -> Provenance:
    """sha256 of mirror.yaml and the last git commit touching it (if in git)."""
    if mirror_yaml is None:
        return Provenance(tool_version=__version__)
    try:
        digest = hashlib.sha256(mirror_yaml.read_bytes()).hexdigest()
    except OSError as exc:
        raise LockmirrorError(f"cannot read: {exc.strerror}", where=str(mirror_yaml)) from None
    cwd, name = mirror_yaml.absolute().parent, mirror_yaml.name
    commit, modified = None, False
    done = _git(["log", "-1", "--format=%H", "--", name], cwd)
    if done is not None and done.returncode == 0 and done.stdout.strip():
        commit = done.stdout.strip()
        status = _git(["status", "--porcelain", "--", name], cwd)
        modified = bool(status is not None and status.stdout.strip())
    return Provenance(config_name=name, config_sha256=digest, commit=commit,
                      config_modified=modified, tool_version=__version__)


@dataclass
class _Builder:
    lockfiles: list[Path]
    store: Store
    out_dir: Path
    mirror_yaml: Path | None
    title: str
    full: bool
    exclude: frozenset[tuple[str, str]]
    state_dir: Path | None
    progress: Progress

    written: list[str] = field(default_factory=list)
    linked: int = 0
    copied: int = 0
    can_link: bool = True
    unsynced: list[str] = field(default_factory=list)  # written, not yet flushed to disk
    fresh: bool = False  # building into a new staging directory
    made_dirs: set[str] = field(default_factory=set)
    store_prefix: str | None = None

    # -- top level ---------------------------------------------------------

    def run(self) -> IndexResult:
        state_dir = self.state_dir or state_dir_for(self.out_dir)
        state = _read_json(state_dir / STATE_NAME) or {}
        inputs = self._inputs(state.get("lockfiles", {}))
        provenance = provenance_of(self.mirror_yaml)
        key = hashlib.sha256(json.dumps([
            INDEX_FORMAT, __version__, self.title, str(self.out_dir),
            str(Path(os.path.abspath(self.store.root))),
            [provenance.config_name, provenance.config_sha256, provenance.commit,
             provenance.config_modified],
            [(i.path.name, i.sha256) for i in inputs],
            sorted(self.exclude),
        ]).encode()).hexdigest()
        importer = None
        if state.get("key") not in (None, key) and _lockfiles_changed(state, inputs):
            # An update that will parse changed package blocks: a child imports
            # the parser (about 30 ms) while this process stats the tree and
            # reads the cache, then parses the blocks this process sends it.
            importer = _ChildImporter.start()
        try:
            return self._update(state, state_dir, inputs, provenance, key, importer)
        finally:
            if importer is not None:
                importer.stop()

    def _update(self, state: dict[str, Any], state_dir: Path, inputs: list[_Input],
                provenance: Provenance, key: str, importer: _ChildImporter | None,
                ) -> IndexResult:
        """The rest of :meth:`run`: the no-op check, then the build."""
        state_path, cache_path = state_dir / STATE_NAME, state_dir / CACHE_NAME
        manifest_path = self.out_dir / MANIFEST_NAME
        manifest_stat = _stat_key(manifest_path)
        # The tree is as we left it: same manifest, and no directory gained or
        # lost an entry (a file deleted or added by hand changes its directory's
        # mtime; one stat per directory, not per file).
        old_dirs = state.get("dirs", [])
        dir_stats = _dir_stats(self.out_dir, old_dirs) if manifest_stat is not None else None
        intact = (manifest_stat is not None and state.get("manifest") == manifest_stat
                  and _tree_key(old_dirs, dir_stats) == state.get("tree"))
        if not self.full and state.get("key") == key and intact:
            summary = state.get("summary", {})
            return IndexResult(out_dir=self.out_dir, noop=True, written=(), removed=(),
                               removed_releases=(), projects=int(summary.get("projects", 0)),
                               files=int(summary.get("files", 0)),
                               total_size=int(summary.get("total_size", 0)))
        cache = self._read_cache(cache_path)
        # The previous outputs are trusted only while the tree is the one we left.
        trusted = (not self.full and intact
                   and cache.get("out_dir") == str(self.out_dir)
                   and cache.get("store") == str(self.store.root))
        rows_cache: _Rows = cache.get("rows") or _Rows()
        lock_cache: dict[str, tuple[Any, ...]] = cache.get("lockfiles", {})
        self.progress(f"reading {len(inputs)} lockfiles")
        sets = sorted(_load_all(inputs, rows_cache, lock_cache, importer), key=lambda s: s.name)
        _check_unique_sets(sets)

        fresh = not self.out_dir.exists()
        if not fresh and manifest_stat is None and any(self.out_dir.iterdir()):
            raise LockmirrorError(
                "exists, is not empty and holds no manifest.json, so it is not a "
                "lockmirror index", where=str(self.out_dir),
                hint="remove it or choose another output directory")
        root = self.out_dir
        self.fresh = fresh
        if fresh:
            _remove_stale_staging(self.out_dir)
            root = self.out_dir.with_name(f".{self.out_dir.name}.staging-{os.getpid()}")
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
        previous = cache if trusted and not fresh else {}
        try:
            built = self._build(root, sets, provenance, previous)
            if fresh:
                os.replace(root, self.out_dir)
        except BaseException:
            if fresh:
                shutil.rmtree(root, ignore_errors=True)
            raise

        state_dir.mkdir(parents=True, exist_ok=True)
        cache_data = {
            "format": _cache_format(), "out_dir": str(self.out_dir),
            "store": str(self.store.root),
            "rows": rows_cache.encoded(k for s in sets for k in s.keys),
            "lockfiles": {s.input.sha256: (s.meta(), tuple(s.keys), tuple(s.pins))
                          for s in sets},
            "projects": {k: tuple(v) for k, v in built.projects.items()},
            "sets": {k: tuple(v) for k, v in built.sets.items()},
            "spans": built.spans,
        }
        atomic_write(cache_path, marshal.dumps(cache_data), fsync=False)
        dirs = list(built.dirs)
        # Only the directories this run added or removed entries in changed:
        # the others keep the stat taken before (one stat each, not 4,000).
        touched = _ancestors([*self.written, *built.removed])
        known = dir_stats if (intact and not fresh) else None
        tree = _tree_key(dirs, _dir_stats(self.out_dir, dirs, known, touched))
        new_state = {
            "format": INDEX_FORMAT, "key": key,
            "lockfiles": {str(i.path): [*i.stat_key, i.sha256] for i in inputs},
            "manifest": _stat_key(manifest_path), "summary": built.summary,
            "dirs": dirs, "tree": tree,
        }
        atomic_write(state_path, json.dumps(new_state, indent=1, sort_keys=True) + "\n",
                     fsync=False)
        return IndexResult(
            out_dir=self.out_dir, noop=False, written=tuple(sorted(self.written)),
            removed=tuple(built.removed), removed_releases=tuple(_releases_of(built.removed)),
            projects=built.summary["projects"], files=built.summary["files"],
            total_size=built.summary["total_size"], linked=self.linked, copied=self.copied)

    def _inputs(self, previous: dict[str, list[Any]]) -> list[_Input]:
        found = []
        for path in self.lockfiles:
            stat_key = _stat_key(path)
            if stat_key is None:
                raise NotFoundError("lockfile is missing", where=str(path),
                                    hint="run `doit lock`")
            before = previous.get(str(path))
            if before and before[:4] == stat_key and isinstance(before[4], str):
                found.append(_Input(path, stat_key, before[4]))
            else:
                data = path.read_bytes()
                found.append(_Input(path, stat_key, hashlib.sha256(data).hexdigest(), data))
        return sorted(found, key=lambda i: (i.path.name, str(i.path)))

    def _read_cache(self, path: Path) -> dict[str, Any]:
        try:
            data = marshal.loads(path.read_bytes())
        except (OSError, EOFError, ValueError, TypeError):
            return {}
        if not isinstance(data, dict) or data.get("format") != _cache_format():
            return {}
        try:  # stored as plain tuples (marshal knows no named tuples)
            data["rows"] = _Rows(data.get("rows", {}))
            data["projects"] = {k: ProjectRecord._make(v)
                                for k, v in data.get("projects", {}).items()}
            data["sets"] = {k: SetRecord._make(v) for k, v in data.get("sets", {}).items()}
        except (TypeError, ValueError, AttributeError):
            return {}
        return data

    # -- the tree ----------------------------------------------------------

    def _build(self, root: Path, sets: list[_LockedSet], provenance: Provenance,
               previous: dict[str, Any]) -> _Built:
        """Write what changed into ``root``; ``previous`` is the trusted cache ({} if none)."""
        prev_projects: dict[str, ProjectRecord] = previous.get("projects", {})
        prev_sets: dict[str, SetRecord] = previous.get("sets", {})
        prev_rows: Mapping[str, Row] = previous.get("rows", {})
        # name -> (set, row key, where the row is); rows are only looked at
        # for projects that changed
        grouped: dict[str, list[tuple[str, str, Mapping[str, Row]]]] = {}
        for locked in sets:
            for key, pin in zip(locked.keys, locked.pins, strict=True):
                if pin not in self.exclude:
                    grouped.setdefault(pin[0], []).append((locked.name, key, locked.store))
        names = sorted(grouped)
        records: dict[str, ProjectRecord] = {}
        dirty: list[tuple[str, str, list[Release]]] = []
        for name in names:
            items = grouped[name]
            digest = _sha("\n".join(f"{s} {k}" for s, k, _ in items).encode())
            before = prev_projects.get(name)
            if before is not None and before.digest == digest:
                records[name] = before
            else:
                dirty.append((name, digest, _merge_project(
                    name, [(s, k, store[k]) for s, k, store in items])))
        self.progress(f"{len(dirty)} of {len(names)} projects changed")

        # 1. artifacts and metadata, before any page links to them
        # (wheel filename, its .metadata path, sha256, size when already in the tree)
        planned_metadata: dict[str, list[tuple[str, str, str, int | None]]] = {}
        to_place: list[tuple[str, str, int | None]] = []
        cuts: list[int] = []  # where each project's files start in to_place
        for name, _digest, releases in dirty:
            cuts.append(len(to_place))
            before = prev_projects.get(name)
            had = {rel: (sha256, size) for rel, sha256, size
                   in _previous_files(name, before, prev_rows)}
            metadata_files = planned_metadata[name] = []
            for release in releases:
                for file in release.files:
                    rel = f"files/{name}/{file.filename}"
                    if had.get(rel) != (file.sha256, file.size):
                        to_place.append((rel, file.sha256, file.size))
                    if file.metadata_sha256:
                        old = had.get(rel + ".metadata")
                        if old is not None and old[0] == file.metadata_sha256:
                            size = old[1]
                        else:
                            size = None
                            to_place.append((rel + ".metadata", file.metadata_sha256, None))
                        metadata_files.append((file.filename, rel + ".metadata",
                                               file.metadata_sha256, size))
        placed: dict[str, int] = {}
        missing: list[str] = []
        if self.fresh:
            pages = self._fill_staging(root, dirty, to_place, cuts, placed, missing)
            self._raise_missing(missing)
        else:
            self._place_all(root, to_place, placed, missing)
            self._raise_missing(missing)
            # 2. the pages of changed projects
            pages = self._pages(root, dirty)
        wanted: set[str] = set()  # what changed projects, sets and the root now hold
        fresh_parts: dict[str, tuple[bytes, bytes]] = {}  # their manifest parts
        for name, digest, releases in dirty:
            metadata_sizes = tuple((filename, placed[rel] if size is None else size)
                                   for filename, rel, _sha256, size in planned_metadata[name])
            html_sha256, html_size, json_sha256, json_size = pages[name]
            files = sorted(_project_files(name, [store[k] for _, k, store in grouped[name]],
                                          dict(metadata_sizes)))
            page_entries = [(f"simple/{name}/index.html", Entry(html_sha256, html_size)),
                            (f"simple/{name}/index.json", Entry(json_sha256, json_size))]
            wanted.update(rel for rel, _, _ in files)
            wanted.update(rel for rel, _ in page_entries)
            records[name] = ProjectRecord(
                digest, tuple(k for _, k, _ in grouped[name]), *pages[name],
                artifacts=sum(len(r.files) for r in releases),
                size=sum(f.size for r in releases for f in r.files),
                metadata_sizes=metadata_sizes)
            fresh_parts[name] = (
                encode_entries((rel, Entry(sha256, size)) for rel, sha256, size in files).encode(),
                encode_entries(page_entries).encode())

        # 3. lockfiles, constraints and each set's part of the landing page
        self.progress("writing lockfiles, constraints, root and landing pages")
        set_records: dict[str, SetRecord] = {}
        for locked in sets:
            before_set = prev_sets.get(locked.name)
            excluded = tuple(sorted(set(locked.pins) & self.exclude))
            if (before_set is not None and before_set.lockfile_sha256 == locked.input.sha256
                    and before_set.excluded == excluded):
                set_records[locked.name] = before_set
            else:
                set_records[locked.name] = self._set_files(root, locked, excluded)

        # 4. root pages and the landing page
        artifacts = sum(r.artifacts for r in records.values())
        total = sum(r.size for r in records.values())
        sources = sorted({s for record in set_records.values() for s in record.sources})
        landing = LandingPage(
            title=self.title, set_names=tuple(s.name for s in sets),
            sections=tuple(set_records[s.name].section for s in sets),
            provenance=replace(provenance, sources=tuple(sources)),
            projects=len(names), files=artifacts, total_size=total)
        root_files = [self._put(root, "simple/index.html", root_html(names).encode()),
                      self._put(root, "simple/index.json", root_json(names).encode()),
                      self._put(root, "index.html", landing_html(landing).encode())]

        # 5. the manifest (synced after bulk writes, so it never names lost data),
        #    then what no lockfile needs any more. It is assembled from each
        #    project's part: a project's paths sort together under its
        #    directory, so parts ordered by that directory give sorted paths.
        #    An unchanged project's part is cut from the previous manifest.
        self.progress("writing the manifest")
        single = [*(f for record in set_records.values() for f in record.files), *root_files]
        wanted.update(rel for rel, _, _ in single)
        parts = [(rel, encode_entries([(rel, Entry(sha256, size))]).encode())
                 for rel, sha256, size in single]
        kept = len(fresh_parts) < len(names)
        last_manifest = _OldManifest.read(root, previous) if kept else None
        for name in names:
            if name in fresh_parts:
                files_part, pages_part = fresh_parts[name]
            else:
                files_part, pages_part = self._kept_parts(name, records[name], prev_rows,
                                                          last_manifest)
            parts.append((f"files/{name}/", files_part))
            parts.append((f"simple/{name}/", pages_part))
        parts.sort()
        data, part_spans = join_encoded_spans([part for _, part in parts])
        files_spans: dict[str, tuple[int, int]] = {}
        pages_spans: dict[str, tuple[int, int]] = {}
        for (key, _part), span in zip(parts, part_spans, strict=True):
            if key.endswith("/"):
                kind, name = key[:-1].split("/", 1)
                (files_spans if kind == "files" else pages_spans)[name] = span
        spans = {name: (*files_spans[name], *pages_spans[name]) for name in names}
        self._sync(root)
        removed = self._stale(root, wanted, (prev_projects, prev_sets, prev_rows),
                              records, set_records)
        if last_manifest is None:
            atomic_write(root / MANIFEST_NAME, data, only_if_changed=True)
        elif last_manifest.data != data:
            atomic_write(root / MANIFEST_NAME, data)
        for rel in removed:
            try:
                os.unlink(root / rel)
            except FileNotFoundError:
                pass
        _prune_dirs(root, removed)
        dirs = {rel.rpartition("/")[0] for rel, _, _ in single} | {"", "simple"}
        for name in names:
            dirs.add(f"simple/{name}")
            if records[name].artifacts:
                dirs.update(("files", f"files/{name}"))
        summary = {"projects": len(names), "files": artifacts, "total_size": total}
        return _Built(records, set_records, removed, summary, tuple(sorted(dirs)), spans)

    def _kept_parts(self, name: str, record: ProjectRecord, rows: Mapping[str, Row],
                    old: _OldManifest | None) -> tuple[bytes, bytes]:
        """An unchanged project's manifest parts: from the previous manifest
        when it has them where the cache says, else encoded again."""
        if old is not None:
            found = old.parts(name)
            if found is not None:
                return found
        files = sorted(_previous_files(name, record, rows))
        pages = [(f"simple/{name}/index.html", Entry(record.html_sha256, record.html_size)),
                 (f"simple/{name}/index.json", Entry(record.json_sha256, record.json_size))]
        return (encode_entries((rel, Entry(sha256, size)) for rel, sha256, size in files).encode(),
                encode_entries(pages).encode())

    def _fill_staging(self, root: Path, dirty: list[tuple[str, str, list[Release]]],
                      to_place: list[tuple[str, str, int | None]], cuts: list[int],
                      placed: dict[str, int], missing: list[str],
                      ) -> dict[str, tuple[str, int, str, int]]:
        """A first build's files and project pages (what :meth:`_pages` returns).

        Nobody sees the staging tree before the rename, so files need not be
        placed before the pages that link to them. A forked child takes the
        last projects (their files and pages), about half the work, while
        this process does the first ones: both cores, and no GIL between
        them. If the child fails, this process does (or checks) its share too
        and so reports any error. Where it cannot fork, a thread places the
        files while this thread renders and writes the pages."""
        half = _halfway(cuts, len(to_place))
        cut = cuts[half] if half < len(cuts) else len(to_place)
        child = _ChildShare.start(self, root, dirty[half:], to_place[cut:])
        if child is not None:
            try:
                self._place_all(root, to_place[:cut], placed, missing)
                pages = self._pages(root, dirty[:half])
            except BaseException:
                # never leave the child writing into a tree about to be removed
                child.collect(stop=True)
                raise
            report = child.collect()
            if report is None:
                # a copy the child was making when it died: not part of the tree
                for rel, _sha256, _size in to_place[cut:]:
                    directory, name = os.path.split(f"{root}/{rel}")
                    try:
                        os.unlink(_temp_path(directory, name, child.pid))
                    except FileNotFoundError:
                        pass
                self._place_all(root, to_place[cut:], placed, missing, recheck=True)
                pages.update(self._pages(root, dirty[half:]))
                return pages
            child_pages, sizes, child_missing, linked, copied = report
            pages.update(child_pages)
            placed.update(sizes)
            missing.extend(child_missing)
            self.linked += linked
            self.copied += copied
            self.written.extend(rel for rel, _sha256, _size in to_place[cut:])
            self.written.extend(f"simple/{name}/{page}" for name, _digest, _releases
                                in dirty[half:] for page in ("index.html", "index.json"))
            return pages
        worker = _Worker(lambda: self._place_all(root, to_place, placed, missing))
        worker.start()
        try:
            pages = self._pages(root, dirty)
        finally:  # never leave the thread writing into a tree being removed
            worker.join()
        worker.finish()
        return pages

    def _pages(self, root: Path, dirty: list[tuple[str, str, list[Release]]],
               ) -> dict[str, tuple[str, int, str, int]]:
        """Render and write the pages of changed projects: name -> (html sha256,
        size, json sha256, size)."""
        pages = {}
        rendered = []
        for name, _digest, releases in dirty:
            html = project_html(name, releases).encode()
            data = project_json(name, releases).encode()
            rendered.append((name, html, data))
            pages[name] = (_sha(html), len(html), _sha(data), len(data))
        for name, html, data in rendered:
            self._write(root, f"simple/{name}/index.html", html)
            self._write(root, f"simple/{name}/index.json", data)
        return pages

    def _set_files(self, root: Path, locked: _LockedSet,
                   excluded: tuple[tuple[str, str], ...]) -> SetRecord:
        """Write a set's lockfile copy and constraints; render its landing section."""
        files = []
        rel = f"lockfiles/pylock.{locked.name}.toml"
        # --- issue 14 hook (merger: keep): the mirror's copy points at the mirror's own
        # files (relative PEP 751 paths), not upstream; the manifest lists these bytes.
        from .mirror_lockfile import relocate_lockfile

        data = relocate_lockfile(locked.input.read(), where=str(locked.input.path))
        files.append(self._put(root, rel, data))
        # --- end of issue 14 hook
        for target in locked.targets:
            pins = [(row[0], row[1]) for row in locked.rows if target.name in row[4]]
            files.append(self._put(root, f"constraints/{locked.name}-{target.name}.txt",
                                   constraints_text(locked.name, target, pins).encode()))
        sources = tuple(sorted({row[6] for row in locked.rows} - {""}))
        section = set_section(_summary(locked, frozenset(excluded)))
        return SetRecord(locked.input.sha256, tuple(files), section, sources, excluded)

    def _place_all(self, root: Path, to_place: list[tuple[str, str, int | None]],
                   placed: dict[str, int], missing: list[str], *, recheck: bool = False,
                   ) -> None:
        for rel, sha256, size in to_place:
            placed[rel] = self._place(root, rel, sha256, size, missing, recheck=recheck)

    def _raise_missing(self, missing: list[str]) -> None:
        if missing:
            shown = "; ".join(missing[:5]) + ("; ..." if len(missing) > 5 else "")
            raise NotFoundError(f"{len(missing)} locked files are not in the store: {shown}",
                                where=str(self.store.root), hint="run `doit fetch`")

    def _stale(self, root: Path, wanted: set[str],
               previous: tuple[dict[str, ProjectRecord], dict[str, SetRecord], Mapping[str, Row]],
               records: dict[str, ProjectRecord], set_records: dict[str, SetRecord],
               ) -> list[str]:
        """Files of the tree no lockfile needs any more, pages first (so no page
        links to a file already gone). With the previous records only what they
        list for changed projects and sets is considered (``wanted`` holds what
        those have now); without them, every file of the tree."""
        if self.fresh:
            return []
        prev_projects, prev_sets, prev_rows = previous
        if prev_projects or prev_sets:
            candidates: set[str] = set()
            for name, record in prev_projects.items():
                if records.get(name) is not record:
                    candidates.update(rel for rel, _, _ in
                                      _previous_files(name, record, prev_rows))
                    candidates.update((f"simple/{name}/index.html", f"simple/{name}/index.json"))
            for set_name, set_record in prev_sets.items():
                if set_records.get(set_name) is not set_record:
                    candidates.update(rel for rel, _, _ in set_record.files)
            present: Iterable[str] = candidates
        else:
            present = _walk(root)  # every project was rebuilt: ``wanted`` has them all
        stale = [rel for rel in present if rel not in wanted and rel != MANIFEST_NAME]
        return sorted(stale, key=lambda rel: (not rel.startswith("simple/"),
                                              rel.startswith("files/"), rel))

    def _put(self, root: Path, rel: str, data: bytes) -> tuple[str, str, int]:
        self._write(root, rel, data)
        return rel, _sha(data), len(data)

    def _write(self, root: Path, rel: str, data: bytes) -> None:
        if self.fresh:
            # a staging directory nobody reads yet: no temp file, no fsync (synced
            # once before the manifest is written)
            path = f"{root}/{rel}"
            self._mkdir(os.path.dirname(path))
            # os.open, not open(): no buffered file object, no fstat or isatty
            # call (4,000 pages on a first build)
            descriptor = os.open(path, _WRITE_FLAGS, 0o666)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(descriptor, view):]
            finally:
                os.close(descriptor)
            self.written.append(rel)
        elif atomic_write(root / rel, data, only_if_changed=True, fsync=False):
            self.written.append(rel)
            self.unsynced.append(rel)

    def _sync(self, root: Path) -> None:
        """Make everything written so far durable before the manifest names it.

        Files are written without a flush each (a journal commit per file is
        what makes many small writes slow); flushing them back to back at the
        end costs about one commit. A staging tree or many files: one os.sync().
        """
        if self.fresh or len(self.unsynced) > BULK_WRITES:
            os.sync()
        else:
            # the files, then their directories (which hold the renames)
            parents = sorted({os.path.dirname(f"{root}/{rel}") for rel in self.unsynced})
            for path in [*(f"{root}/{rel}" for rel in self.unsynced), *parents]:
                descriptor = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
        self.unsynced.clear()

    def _mkdir(self, directory: str) -> None:
        if directory not in self.made_dirs:
            try:  # the parent (files/, simple/) almost always exists: one syscall
                os.mkdir(directory)
            except FileExistsError:
                pass
            except FileNotFoundError:
                os.makedirs(directory, exist_ok=True)
            self.made_dirs.add(directory)

    def _place(self, root: Path, rel: str, sha256: str, size: int | None,
               missing: list[str], *, recheck: bool = False) -> int:
        """Hard-link (or copy) the store's file to ``rel`` unless already there;
        returns its size. Records files absent from the store in ``missing``.
        In a staging tree ``rel`` is taken to be absent unless ``recheck``."""
        source = self._store_path(sha256)
        try:
            src = os.stat(source)
        except FileNotFoundError:
            missing.append(f"{rel.split('/', 2)[2]} ({sha256[:12]})")
            return size or 0
        if size is None and src.st_size == 0 and sha256 != _EMPTY_SHA256:
            # a size-less file (PEP 658 metadata) left empty by a crash: not the file
            missing.append(f"{rel.split('/', 2)[2]} ({sha256[:12]})")
            return 0
        if size is not None and src.st_size != size:
            raise IntegrityError(f"the store holds {src.st_size} bytes for {rel}, the lockfile "
                                 f"says {size}", where=source,
                                 hint="remove the store file and run `doit fetch`")
        dest = f"{root}/{rel}"
        have = None
        if not self.fresh or recheck:
            try:
                have = os.lstat(dest)
            except FileNotFoundError:
                pass
        if have is not None and statmod.S_ISREG(have.st_mode):
            if have.st_ino == src.st_ino and have.st_dev == src.st_dev:
                if recheck:  # linked by a failed child of this run: count it here
                    self.linked += 1
                    self.written.append(rel)
                return src.st_size
            if (have.st_dev != src.st_dev and have.st_size == src.st_size
                    and have.st_mtime_ns == src.st_mtime_ns):
                if recheck:
                    self.copied += 1
                    self.written.append(rel)
                return src.st_size  # a copy made by an earlier run (or a failed child)
        directory, name = os.path.split(dest)
        self._mkdir(directory)
        temp = _temp_path(directory, name, os.getpid())
        if self.can_link:
            try:
                os.link(source, dest if have is None else temp)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP,
                                     errno.EACCES):
                    raise
                self.can_link = False
            else:
                if have is not None:
                    os.replace(temp, dest)
                self.linked += 1
                self.written.append(rel)
                self.unsynced.append(rel)
                return src.st_size
        try:
            shutil.copyfile(source, temp)
            os.chmod(temp, 0o644)
            os.utime(temp, ns=(src.st_atime_ns, src.st_mtime_ns))
            os.replace(temp, dest)
        except BaseException:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
            raise
        self.copied += 1
        self.written.append(rel)
        self.unsynced.append(rel)
        return src.st_size

    def _store_path(self, sha256: str) -> str:
        """``str(store.path(sha256))`` without building a Path per file (18k files
        cost 0.1 s that way); checked against Store.path once."""
        if self.store_prefix is None:
            probe = "ab" + "c" * 62
            prefix = f"{os.path.abspath(self.store.root)}/sha256/"
            expected = str(Path(os.path.abspath(self.store.path(probe))))
            self.store_prefix = prefix if expected == f"{prefix}ab/{'c' * 62}" else ""
        if not self.store_prefix:
            return str(self.store.path(sha256))
        digest = sha256.lower()
        return f"{self.store_prefix}{digest[:2]}/{digest[2:]}"

# What the share child sends back: its projects' pages (name -> html sha256,
# size, json sha256, size), the sizes of the files it placed without a known
# size (rel -> size), the files missing from the store, and how many files it
# linked and copied.
_ShareReport = tuple[dict[str, tuple[str, int, str, int]], dict[str, int], list[str], int, int]


class _ChildShare:
    """A forked child that does a first build's share of projects: places
    their files in the staging tree (hard links, or copies) and renders and
    writes their pages. Only from a single-threaded process on Linux, where
    fork is safe. Any failure in the child, an error such as a size mismatch
    included, makes :meth:`collect` return None: the parent then does the
    share itself and so raises the error."""

    def __init__(self, pid: int, reader: int) -> None:
        self.pid, self.reader = pid, reader

    @classmethod
    def start(cls, builder: _Builder, root: Path, dirty: list[tuple[str, str, list[Release]]],
              to_place: list[tuple[str, str, int | None]]) -> _ChildShare | None:
        if len(to_place) < PARALLEL_FILES or not _may_fork():
            return None
        forked = _fork_reporter(
            lambda writer: _child_share(builder, root, dirty, to_place, writer))
        return None if forked is None else cls(*forked)

    def collect(self, *, stop: bool = False) -> _ShareReport | None:
        """Wait for the child; its report, or None when it failed. ``stop``
        kills it first (the build already failed: its work is not wanted)."""
        if stop:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        report = _reap(self.pid, self.reader)
        if not (isinstance(report, tuple) and len(report) == 5):
            return None
        pages, sizes, missing, linked, copied = report
        return pages, sizes, missing, linked, copied


# Below this many files to place in its share, a child process costs more
# than it saves.
PARALLEL_FILES = 2000
# A project's two pages (render, hash, write) cost about as much as placing
# this many files (bench mirror: 2,000 projects' pages 0.3 s, 20,000 links 0.2 s).
PAGES_WEIGHT = 15


def _halfway(cuts: list[int], files: int) -> int:
    """The first project of the second half of the work: ``cuts[i]`` is where
    project ``i``'s files start among ``files`` files to place."""
    total = files + PAGES_WEIGHT * len(cuts)
    for number, cut in enumerate(cuts):
        if 2 * (cut + PAGES_WEIGHT * number) >= total:
            return number
    return len(cuts)


def _child_share(builder: _Builder, root: Path, dirty: list[tuple[str, str, list[Release]]],
                 to_place: list[tuple[str, str, int | None]], writer: int) -> int:
    """In the forked share child: place ``to_place``, write the pages of
    ``dirty``, send the report; the exit status. Any failure is status 1 (the
    parent does the share itself)."""
    try:
        placed: dict[str, int] = {}
        missing: list[str] = []
        builder.linked = builder.copied = 0
        builder._place_all(root, to_place, placed, missing)
        pages = builder._pages(root, dirty)
        sizes = {rel: placed[rel] for rel, _sha256, size in to_place if size is None}
        report = (pages, sizes, missing, builder.linked, builder.copied)
        with os.fdopen(writer, "wb") as pipe:
            pipe.write(marshal.dumps(report))
    except BaseException:  # noqa: BLE001 - the parent does the share again and reports
        return 1
    return 0


class _Worker(threading.Thread):
    """A thread whose exception :meth:`finish` re-raises in the caller."""

    def __init__(self, work: Callable[[], None]) -> None:
        super().__init__(name="lockmirror-index-files", daemon=True)
        self.work = work
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.work()
        except BaseException as exc:  # noqa: BLE001 - finish() re-raises it in the caller
            self.error = exc

    def finish(self) -> None:
        self.join()
        if self.error is not None:
            raise self.error


def _cache_format() -> str:
    # marshal's format belongs to the interpreter version
    return (f"{INDEX_FORMAT};cache/{CACHE_VERSION};{__version__};"
            f"{sys.version_info[0]}.{sys.version_info[1]}")


_sha = sha256_bytes
_EMPTY_SHA256 = sha256_bytes(b"")


def _check_unique_sets(sets: list[_LockedSet]) -> None:
    seen: dict[str, Path] = {}
    for locked in sets:
        if locked.name in seen:
            raise LockmirrorError(f"set '{locked.name}' is also locked in {seen[locked.name]}",
                                  where=str(locked.input.path))
        seen[locked.name] = locked.input.path


class ProjectRecord(NamedTuple):
    """What the cache remembers of a project's part of the tree (stored as a plain tuple)."""

    digest: str  # of the package blocks it was built from
    keys: tuple[str, ...]  # those blocks' keys in the rows cache
    html_sha256: str
    html_size: int
    json_sha256: str
    json_size: int
    artifacts: int
    size: int  # bytes of its artifacts
    metadata_sizes: tuple[tuple[str, int], ...]  # (wheel filename, .metadata size)


class SetRecord(NamedTuple):
    """What the cache remembers of a set's files (stored as a plain tuple)."""

    lockfile_sha256: str
    files: tuple[tuple[str, str, int], ...]  # (path, sha256, size): lockfile copy, constraints
    section: str  # its landing-page section
    sources: tuple[str, ...]
    excluded: tuple[tuple[str, str], ...]  # its releases left out (quarantined)


@dataclass
class _Built:
    projects: dict[str, ProjectRecord]
    sets: dict[str, SetRecord]
    removed: list[str]
    summary: dict[str, int]
    dirs: tuple[str, ...]  # every directory of the tree ("" is the tree itself)
    # project -> where its files/ and simple/ parts are in the manifest written:
    # (offset, length, offset, length)
    spans: dict[str, tuple[int, int, int, int]]


@dataclass
class _OldManifest:
    """The manifest the previous run wrote, and where each project's parts are in it."""

    data: bytes
    spans: dict[str, tuple[int, int, int, int]]

    @classmethod
    def read(cls, root: Path, previous: dict[str, Any]) -> _OldManifest | None:
        spans = previous.get("spans")
        if not spans:
            return None
        try:
            data = (root / MANIFEST_NAME).read_bytes()
        except OSError:
            return None
        return cls(data, spans)

    def parts(self, name: str) -> tuple[bytes, bytes] | None:
        """The project's (files part, pages part); None unless both are where
        the cache says (each starts with its directory's first path)."""
        span = self.spans.get(name)
        if span is None or len(span) != 4:
            return None
        files_at, files_length, pages_at, pages_length = span
        if not self.data.startswith(f'  "simple/{name}/'.encode(), pages_at):
            return None
        if files_length and not self.data.startswith(f'  "files/{name}/'.encode(), files_at):
            return None
        files = self.data[files_at:files_at + files_length] if files_length else b""
        return files, self.data[pages_at:pages_at + pages_length]


def _merge_project(name: str, items: list[tuple[str, str, Row]]) -> list[Release]:
    """A project's releases over every set; a file locked twice must agree."""
    versions: dict[str, dict[str, Any]] = {}
    origin: dict[str, tuple[str, str]] = {}  # filename -> (sha256, set)
    for set_name, _key, row in items:
        _name, version, requires_python, yanked, _t, _b, _s, files = row
        release = versions.get(version)
        if release is None:
            release = versions[version] = {"requires_python": requires_python,
                                           "yanked": yanked, "files": {}}
        else:
            if release["requires_python"] is None:
                release["requires_python"] = requires_python
            if release["yanked"] is None:
                release["yanked"] = yanked
        for filename, size, sha256, upload_time, metadata in files:
            first = origin.get(filename)
            if first is not None and first[0] != sha256:
                raise IntegrityError(
                    f"{filename} is locked with sha256 {first[0][:12]}... in set "
                    f"'{first[1]}' and {sha256[:12]}... in set '{set_name}'",
                    hint="re-lock both sets from the same index")
            origin[filename] = (sha256, set_name)
            known = release["files"].get(filename)
            if known is None or (known.metadata_sha256 is None and metadata):
                release["files"][filename] = IndexFile(filename, size, sha256, upload_time,
                                                       metadata)
    return [Release(name, version, data["requires_python"], data["yanked"],
                    tuple(data["files"][f] for f in sorted(data["files"])))
            for version, data in sorted(versions.items())]


def _normalized_releases(releases: Iterable[tuple[str, Version | str]],
                         ) -> frozenset[tuple[str, str]]:
    """(normalized name, normalized version) pairs, as the rows spell them."""
    pairs = list(releases)
    if not pairs:
        return frozenset()
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    found = set()
    for name, version in pairs:
        try:
            text = str(Version(str(version)))
        except InvalidVersion:
            text = str(version)
        found.add((str(canonicalize_name(str(name))), text))
    return frozenset(found)


def _project_files(name: str, rows: Iterable[Row],
                   metadata_sizes: dict[str, int]) -> list[tuple[str, str, int]]:
    """(path, sha256, size) of a project's artifacts and .metadata files, as
    :func:`_merge_project` would place them (first set's file wins)."""
    files: dict[str, tuple[str, int]] = {}
    metadata: dict[str, str] = {}
    for row in rows:
        for filename, size, sha256, _upload_time, metadata_sha256 in row[7]:
            files.setdefault(filename, (sha256, size))
            if metadata_sha256 and filename not in metadata:
                metadata[filename] = metadata_sha256
    found = []
    for filename, (sha256, size) in files.items():
        rel = f"files/{name}/{filename}"
        found.append((rel, sha256, size))
        if filename in metadata and filename in metadata_sizes:
            found.append((rel + ".metadata", metadata[filename], metadata_sizes[filename]))
    return found


def _previous_files(name: str, record: ProjectRecord | None,
                    rows: Mapping[str, Row]) -> list[tuple[str, str, int]]:
    """What an earlier run placed for a project (nothing when unknown)."""
    if record is None or any(key not in rows for key in record.keys):
        return []
    return _project_files(name, [rows[key] for key in record.keys], dict(record.metadata_sizes))


def _summary(locked: _LockedSet, excluded: frozenset[tuple[str, str]]) -> SetSummary:
    packages = []
    sizes: dict[str, int] = {}
    for name, version, _rp, yanked, targets, build_only, _source, files in locked.rows:
        for file in files:
            sizes[file[2]] = file[1]
        packages.append(SetPackage(name=name, version=version, targets=targets,
                                   size=sum(f[1] for f in files), files=len(files),
                                   build_only=build_only, yanked=yanked,
                                   quarantined=(name, version) in excluded))
    packages.sort(key=lambda p: (p.name, p.version))
    return SetSummary(name=locked.name, requirements=locked.requirements,
                      targets=locked.targets, packages=tuple(packages),
                      input_hash=locked.input_hash, total_size=sum(sizes.values()))


def _walk(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        found += [prefix + name for name in sorted(filenames)]
    return found


def _prune_dirs(root: Path, removed: Iterable[str]) -> None:
    parents = sorted({(root / rel).parent for rel in removed},
                     key=lambda p: len(p.parts), reverse=True)
    for directory in parents:
        while directory != root and root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                break
            directory = directory.parent


def _releases_of(removed: Iterable[str]) -> list[str]:
    """"name version" of the artifacts among ``removed`` paths."""
    artifacts = []
    for rel in removed:
        parts = rel.split("/")
        if len(parts) == 3 and parts[0] == "files" and not parts[2].endswith(".metadata"):
            artifacts.append((parts[1], parts[2]))
    if not artifacts:  # most runs: and no packaging.utils import (packaging.tags: ~9 ms)
        return []
    from packaging.utils import (
        InvalidSdistFilename,
        InvalidWheelFilename,
        parse_sdist_filename,
        parse_wheel_filename,
    )

    releases = set()
    for project, filename in artifacts:
        try:
            if filename.endswith(".whl"):
                version = str(parse_wheel_filename(filename)[1])
            else:
                version = str(parse_sdist_filename(filename)[1])
        except (InvalidWheelFilename, InvalidSdistFilename):
            continue  # not a distribution (a stray file)
        releases.add(f"{project} {version}")
    return sorted(releases)


def _remove_stale_staging(out_dir: Path) -> None:
    """Staging directories left by builds that were killed."""
    parent = out_dir.parent
    if not parent.is_dir():
        return
    prefix = f".{out_dir.name}.staging-"
    for entry in parent.iterdir():
        if entry.name.startswith(prefix) and entry.is_dir():
            pid = entry.name[len(prefix):]
            if pid.isdigit() and _pid_alive(int(pid)):
                continue
            shutil.rmtree(entry, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
