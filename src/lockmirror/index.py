"""Index stage: ``dist-index/`` from the lockfiles and the store, incrementally.

Entry: :func:`build_index`. It writes (layout in docs/ARCHITECTURE.md)::

    index.html                   landing page (pages.landing_html)
    simple/index.html|json       PEP 503 / PEP 691 root
    simple/<project>/index.html  PEP 503 page, index.json beside it (PEP 691 1.1 + PEP 700)
    files/<project>/<filename>   the artifact, hard-linked from the store (copied
                                 when the store is on another file system)
    files/<project>/<wheel>.metadata   PEP 658 core metadata, also from the store
    constraints/<set>-<target>.txt     pins for ``pip install -c``
    lockfiles/pylock.<set>.toml        the lockfiles, byte for byte
    manifest.json                every other file: path, size, sha256

A run, step by step (like dumb-pypi's ``build_repo``, plus bandersnatch's
"is this file already current?"):

1. hash the lockfiles (a lockfile whose stat is unchanged keeps the hash the
   state recorded) and return at once when the inputs and the tree are as the
   last run left them (the manifest's stat and the mtime of every directory:
   a file deleted or added by hand changes its directory);
2. read each set's packages: a lockfile parsed before is not parsed again (the
   state keeps the package list each lockfile gave, keyed by its sha256, as
   dumb-pypi takes the previous package list);
3. group the packages by project; a project whose packages (a hash of its
   rows) are those of the last run keeps its files, pages and manifest entries;
4. for each other project: merge its releases, link (or copy) each file unless
   it is already the store's inode (or a copy of its size and mtime), then
   render its two pages and write each only if its bytes changed;
5. each changed set's lockfile copy and constraints, then the root pages and
   the landing page, each written only if changed;
6. flush what was written, write the manifest, remove what no lockfile names
   (pages first), save the state.

Artifacts are never hashed: the lockfile states each sha256 and the store's
file name proves it. ``full=True`` trusts no state: every lockfile is parsed
and every file of the tree compared. A first build goes into a staging
directory renamed into place at the end. Output is byte-identical whatever
the order of the lockfiles, the store or a directory listing.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat as statmod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from . import __version__
from .errors import IntegrityError, LockmirrorError, NotFoundError
from .fsutil import atomic_write, sha256_bytes
from .manifest import MANIFEST_NAME, encode_files, join_encoded
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

    from .lockfile import LockedPackage

# Bump whenever what a page contains for the same input changes: every
# project's pages are then rendered (and compared) again.
INDEX_FORMAT = "lockmirror-index/2"
DEFAULT_TITLE = "Python package mirror"
STATE_NAME = "state.json"
STATE_FORMAT = f"{INDEX_FORMAT};state/3"
ROWS_DIR = "sets"  # in the state directory: <lockfile sha256>.json, its package rows
# Up to this many written files are flushed one by one before the manifest
# names them; above it, one os.sync() is cheaper.
BULK_WRITES = 64

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_SET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_FILENAME_BAD = re.compile(r"[/\\\x00-\x1f]")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_EMPTY_SHA256 = sha256_bytes(b"")

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
    ``full`` ignores the saved state and compares every file.
    ``exclude`` holds releases, (name, version), to leave out although locked:
    the quarantine list (``QuarantineList.keys``). Their files and page
    entries are not in the index; the landing page marks them quarantined and
    the constraints still pin them (installing them must fail, not drift).

    Raises NotFoundError when a locked file is not in the store (run fetch),
    IntegrityError when the store or two lockfiles disagree about a file, and
    LockmirrorError for an unreadable lockfile, an ``out_dir`` that is not
    an index, or a file that cannot be written (a full disk): a first build
    that fails leaves no tree; an update keeps the previous manifest.
    Costs: a no-op run stats the lockfiles, the manifest and the tree's
    directories (and runs git twice when ``mirror_yaml`` is given); otherwise
    time grows with the changed lockfiles and projects plus a pass over every
    project's rows (no artifact is read or hashed).
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise LockmirrorError("the index output is a file, not a directory", where=str(out_dir),
                              hint="point --out (paths.index) at a directory")
    out_dir = Path(os.path.abspath(out_dir))
    run = _Run(store=store if isinstance(store, Store) else Store(Path(store)),
               out_dir=out_dir, state_dir=Path(state_dir) if state_dir else state_dir_for(out_dir),
               title=title, full=full, exclude=_normalized_releases(exclude),
               progress=progress or (lambda _message: None))
    try:
        return run.build([Path(p) for p in lockfiles],
                         Path(mirror_yaml) if mirror_yaml else None)
    except OSError as exc:  # a full disk, an unwritable directory, a failing device
        # link() and copies name the source first, the file being written second
        named = exc.filename2 if isinstance(exc.filename2, str) else exc.filename
        hint = ("free some space and run again"
                if exc.errno in (errno.ENOSPC, errno.EDQUOT) else None)
        raise LockmirrorError(f"cannot build the index: {exc.strerror or exc}",
                              where=named if isinstance(named, str) else str(out_dir),
                              hint=hint) from exc


# --------------------------------------------------------------------------
# The run, step by step
# --------------------------------------------------------------------------


class Row(NamedTuple):
    """One package of a lockfile, as the index needs it (JSON-able)."""

    name: str
    version: str
    requires_python: str | None
    yanked: str | None
    targets: tuple[str, ...]
    build_only: bool
    source: str
    files: tuple[RowFile, ...]  # sorted by filename


class RowFile(NamedTuple):
    filename: str
    size: int
    sha256: str
    upload_time: str | None  # ISO 8601, UTC, "Z"
    metadata_sha256: str | None  # wheels only


@dataclass
class _Input:
    """A lockfile given to the run: its stat (to skip hashing an unchanged one)
    and sha256; its bytes once read."""

    path: Path
    stat_key: list[int]
    sha256: str
    data: bytes | None = None

    def read(self) -> bytes:
        if self.data is None:
            self.data = self.path.read_bytes()
        return self.data


@dataclass
class _Set:
    """A package set: its lockfile and the package rows it locks."""

    name: str
    input: _Input
    requirements: tuple[str, ...]
    targets: tuple[SetTarget, ...]
    input_hash: str
    rows: list[Row]


@dataclass
class _Run:
    store: Store
    out_dir: Path
    state_dir: Path
    title: str
    full: bool
    exclude: frozenset[tuple[str, str]]
    progress: Progress

    root: Path = Path()  # where this run writes: out_dir, or a staging directory
    fresh: bool = False  # building into a new staging directory
    previous: dict[str, Any] = field(default_factory=dict)  # the trusted state ({} if none)
    old_entries: dict[str, tuple[str, int]] = field(default_factory=dict)  # old manifest
    old_by_dir: dict[str, list[str]] = field(default_factory=dict)  # its paths by directory
    entries: dict[str, tuple[str, int]] = field(default_factory=dict)  # the new manifest
    projects: dict[str, list[Any]] = field(default_factory=dict)  # name -> its state record
    written: list[str] = field(default_factory=list)
    unsynced: list[str] = field(default_factory=list)  # written, not yet flushed to disk
    linked: int = 0
    copied: int = 0
    can_link: bool = True
    made_dirs: set[str] = field(default_factory=set)
    store_objects: str = ""  # the store's sha256/ directory, absolute

    def __post_init__(self) -> None:
        self.store_objects = f"{os.path.abspath(self.store.root)}/sha256"

    def build(self, lockfiles: list[Path], mirror_yaml: Path | None) -> IndexResult:
        """The whole run: :func:`build_index` without its error wording."""
        state = {} if self.full else _read_json(self.state_dir / STATE_NAME) or {}
        inputs = _hash_lockfiles(lockfiles, state.get("lockfiles", {}))
        provenance = provenance_of(mirror_yaml)
        key = self._run_key(inputs, provenance)
        intact = self._tree_intact(state)
        if intact and state.get("key") == key:
            summary = state.get("summary", {})
            return IndexResult(out_dir=self.out_dir, noop=True, written=(), removed=(),
                               removed_releases=(), projects=int(summary.get("projects", 0)),
                               files=int(summary.get("files", 0)),
                               total_size=int(summary.get("total_size", 0)))
        self.progress(f"reading {len(inputs)} lockfiles")
        sets = self._read_sets(inputs)
        self._open_tree(state if intact else {})
        try:
            summary = self._write_tree(sets, provenance)
            removed = self._finish_tree()
        except BaseException:
            if self.fresh:
                shutil.rmtree(self.root, ignore_errors=True)
            raise
        self._save_state(key, inputs, sets, summary)
        return IndexResult(
            out_dir=self.out_dir, noop=False, written=tuple(sorted(self.written)),
            removed=tuple(removed), removed_releases=tuple(_releases_of(removed)),
            projects=summary["projects"], files=summary["files"],
            total_size=summary["total_size"], linked=self.linked, copied=self.copied)

    def _run_key(self, inputs: list[_Input], provenance: Provenance) -> str:
        """A digest of every input of the tree: equal keys and an intact tree are a no-op."""
        return sha256_bytes(json.dumps([
            INDEX_FORMAT, __version__, self.title, str(self.out_dir),
            os.path.abspath(self.store.root),
            [provenance.config_name, provenance.config_sha256, provenance.commit,
             provenance.config_modified],
            [(i.path.name, i.sha256) for i in inputs],
            sorted(self.exclude),
        ]).encode())

    def _tree_intact(self, state: dict[str, Any]) -> bool:
        """Whether the tree is the one the state describes: same manifest
        (by stat), and no directory gained or lost an entry since."""
        if state.get("format") != STATE_FORMAT or state.get("out_dir") != str(self.out_dir):
            return False
        if state.get("store") != os.path.abspath(self.store.root):
            return False
        manifest = _stat_key(self.out_dir / MANIFEST_NAME)
        return (manifest is not None and state.get("manifest") == manifest
                and _tree_key(self.out_dir, state.get("dirs", [])) == state.get("tree"))

    # -- 2. the sets -------------------------------------------------------

    def _read_sets(self, inputs: list[_Input]) -> list[_Set]:
        """Every lockfile as a set, sorted by name: from the package rows it
        gave before (by its sha256), else parsed and validated."""
        sets = []
        for item in inputs:
            known = None if self.full else _read_rows(self.state_dir, item)
            sets.append(known or _parse_set(item))
        sets.sort(key=lambda s: s.name)
        seen: dict[str, Path] = {}
        for locked in sets:
            if locked.name in seen:
                raise LockmirrorError(f"set '{locked.name}' is also locked in {seen[locked.name]}",
                                      where=str(locked.input.path))
            seen[locked.name] = locked.input.path
        return sets

    # -- 3-5. the tree -----------------------------------------------------

    def _open_tree(self, state: dict[str, Any]) -> None:
        """Choose where to write: the tree itself, or a staging directory for
        a first build. ``state`` is trusted (the tree is as it describes)."""
        self.fresh = not self.out_dir.exists()
        manifest = self.out_dir / MANIFEST_NAME
        if not self.fresh and not manifest.exists() and any(self.out_dir.iterdir()):
            raise LockmirrorError(
                "exists, is not empty and holds no manifest.json, so it is not a "
                "lockmirror index", where=str(self.out_dir),
                hint="remove it or choose another output directory")
        if self.fresh:
            _remove_stale_staging(self.out_dir)
            self.root = self.out_dir.with_name(f".{self.out_dir.name}.staging-{os.getpid()}")
            shutil.rmtree(self.root, ignore_errors=True)
            self.root.mkdir(parents=True)
            return
        self.root = self.out_dir
        old_entries = _read_manifest(manifest) if state else None
        if old_entries is not None:
            self.previous, self.old_entries = state, old_entries

    def _write_tree(self, sets: list[_Set], provenance: Provenance) -> dict[str, int]:
        """Steps 3 to 5: every project's files and pages, the sets' files, the
        root and landing pages, into ``self.entries``; the summary."""
        projects = _group_projects(sets, self.exclude)
        known: dict[str, list[Any]] = self.previous.get("projects", {})
        for name, (digest, _rows) in projects.items():
            before = known.get(name)
            if before is not None and before[0] == digest:
                self._keep(f"files/{name}/", f"simple/{name}/")
                self.projects[name] = before
        changed = {name: _merge_project(name, rows)
                   for name, (_digest, rows) in projects.items() if name not in self.projects}
        self.progress(f"{len(changed)} of {len(projects)} projects changed")
        self._place_files(changed)
        for name, releases in changed.items():
            self._write_pages(name, releases)
            self.projects[name] = [projects[name][0], sum(len(r.files) for r in releases),
                                   sum(f.size for r in releases for f in r.files)]
        self.progress("writing lockfiles, constraints, root and landing pages")
        for locked in sets:
            self._write_set(locked)
        names = sorted(projects)
        summary = {"projects": len(names),
                   "files": sum(int(self.projects[name][1]) for name in names),
                   "total_size": sum(int(self.projects[name][2]) for name in names)}
        sources = sorted({row.source for s in sets for row in s.rows} - {""})
        landing = LandingPage(
            title=self.title, set_names=tuple(s.name for s in sets),
            sections=tuple(set_section(_summary(s, self.exclude)) for s in sets),
            provenance=replace(provenance, sources=tuple(sources)),
            projects=summary["projects"], files=summary["files"],
            total_size=summary["total_size"])
        self._put("simple/index.html", root_html(names).encode())
        self._put("simple/index.json", root_json(names).encode())
        self._put("index.html", landing_html(landing).encode())
        return summary

    def _keep(self, *prefixes: str) -> None:
        """Take the old manifest's entries below the directories ``prefixes``
        (``files/<project>/``) as they are."""
        if not self.old_by_dir and self.old_entries:
            for rel in self.old_entries:
                directory = rel.rpartition("/")[0]
                self.old_by_dir.setdefault(directory + "/", []).append(rel)
        for prefix in prefixes:
            for rel in self.old_by_dir.get(prefix, ()):
                self.entries[rel] = self.old_entries[rel]

    def _place_files(self, releases: dict[str, list[Release]]) -> None:
        """Link (or copy) every file of the changed projects, .metadata files
        included, before any page links to them; then report all files
        missing from the store at once."""
        missing: list[str] = []
        for name, project_releases in releases.items():
            for release in project_releases:
                for file in release.files:
                    rel = f"files/{name}/{file.filename}"
                    self._place(rel, file.sha256, file.size, missing)
                    if file.metadata_sha256:
                        self._place(rel + ".metadata", file.metadata_sha256, None, missing)
        if missing:
            shown = "; ".join(missing[:5]) + ("; ..." if len(missing) > 5 else "")
            raise NotFoundError(f"{len(missing)} locked files are not in the store: {shown}",
                                where=str(self.store.root), hint="run `doit fetch`")

    def _place(self, rel: str, sha256: str, size: int | None, missing: list[str]) -> None:
        """Make ``rel`` the store's file: nothing to do when it already is
        (same inode; or, for a copy, same size and mtime), else a hard link,
        or a copy where linking is not possible. ``size`` None: not known
        (a .metadata file). A file absent from the store goes to ``missing``."""
        source = self._store_path(sha256)
        try:
            src = os.stat(source)
        except FileNotFoundError:
            missing.append(f"{rel.split('/', 2)[2]} ({sha256[:12]})")
            return
        if size is None and src.st_size == 0 and sha256 != _EMPTY_SHA256:
            # a size-less file (PEP 658 metadata) left empty by a crash: not the file
            missing.append(f"{rel.split('/', 2)[2]} ({sha256[:12]})")
            return
        if size is not None and src.st_size != size:
            raise IntegrityError(f"the store holds {src.st_size} bytes for {rel}, the lockfile "
                                 f"says {size}", where=source,
                                 hint="remove the store file and run `doit fetch`")
        self.entries[rel] = (sha256, src.st_size)
        dest = f"{self.root}/{rel}"
        have = None if self.fresh else _lstat(dest)
        if have is not None and statmod.S_ISREG(have.st_mode) and (
                (have.st_ino, have.st_dev) == (src.st_ino, src.st_dev)
                or (have.st_size, have.st_mtime_ns) == (src.st_size, src.st_mtime_ns)):
            return
        self._mkdir(os.path.dirname(dest))
        if self.can_link:
            try:
                _link(source, dest, replace=have is not None)
                self.linked += 1
                self._wrote(rel)
                return
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP,
                                     errno.EACCES):
                    raise
                self.can_link = False
        _copy(source, dest, src)
        self.copied += 1
        self._wrote(rel)

    def _store_path(self, sha256: str) -> str:
        """``str(self.store.path(sha256))``, without a Path object per file
        (20,000 of them cost a tenth of a second); test_index checks they agree."""
        digest = sha256.lower()
        return f"{self.store_objects}/{digest[:2]}/{digest[2:]}"

    def _mkdir(self, directory: str) -> None:
        """Make ``directory`` (and its parents) once per run."""
        if directory not in self.made_dirs:
            os.makedirs(directory, exist_ok=True)
            self.made_dirs.add(directory)

    def _write_pages(self, name: str, releases: list[Release]) -> None:
        """A changed project's PEP 503 and PEP 691 pages."""
        self._put(f"simple/{name}/index.html", project_html(name, releases).encode())
        self._put(f"simple/{name}/index.json", project_json(name, releases).encode())

    def _write_set(self, locked: _Set) -> None:
        """A set's lockfile copy and constraints, unless its lockfile and
        exclusions are those of the last run."""
        paths = [f"lockfiles/pylock.{locked.name}.toml",
                 *(f"constraints/{locked.name}-{t.name}.txt" for t in locked.targets)]
        if (self.previous.get("sets", {}).get(locked.name) == _set_record(locked, self.exclude)
                and all(rel in self.old_entries for rel in paths)):
            for rel in paths:
                self.entries[rel] = self.old_entries[rel]
            return
        self._write_lockfile_copy(locked)
        for target in locked.targets:
            pins = [(row.name, row.version) for row in locked.rows if target.name in row.targets]
            self._put(f"constraints/{locked.name}-{target.name}.txt",
                      constraints_text(locked.name, target, pins).encode())

    def _write_lockfile_copy(self, locked: _Set) -> None:
        """``lockfiles/pylock.<set>.toml``: the lockfile as it is."""
        self._put(f"lockfiles/pylock.{locked.name}.toml", locked.input.read())

    def _put(self, rel: str, data: bytes) -> None:
        """Write ``rel`` unless it already holds ``data``; enter it in the manifest."""
        self.entries[rel] = (sha256_bytes(data), len(data))
        path = f"{self.root}/{rel}"
        if self.fresh:  # nobody reads the staging tree: no temp file, synced at the end
            self._mkdir(os.path.dirname(path))
            with open(path, "wb") as handle:
                handle.write(data)
            self.written.append(rel)
        elif atomic_write(Path(path), data, only_if_changed=True, fsync=False):
            self._wrote(rel)

    def _wrote(self, rel: str) -> None:
        self.written.append(rel)
        self.unsynced.append(rel)

    # -- 6. manifest, removals, state --------------------------------------

    def _finish_tree(self) -> list[str]:
        """Flush what was written, write the manifest, remove what nothing
        names (pages first, so no page links to a file already gone), and
        rename a staging tree into place. The removed paths, in that order."""
        self.progress("writing the manifest")
        _flush(self.root, self.unsynced, everything=self.fresh)
        present = self.old_entries if self.previous else (
            {} if self.fresh else dict.fromkeys(_walk(self.root)))
        removed = sorted((rel for rel in present if rel not in self.entries
                          and rel != MANIFEST_NAME),
                         key=lambda rel: (not rel.startswith("simple/"),
                                          rel.startswith("files/"), rel))
        data = join_encoded([encode_files(
            [(rel, *self.entries[rel]) for rel in sorted(self.entries)])])
        atomic_write(self.root / MANIFEST_NAME, data, only_if_changed=True)
        for rel in removed:
            try:
                os.unlink(self.root / rel)
            except FileNotFoundError:
                pass
        _prune_dirs(self.root, removed)
        if self.fresh:
            os.replace(self.root, self.out_dir)
        return removed

    def _save_state(self, key: str, inputs: list[_Input], sets: list[_Set],
                    summary: dict[str, int]) -> None:
        """What the next run trusts: the inputs' key and hashes, the tree's
        manifest stat and directories, each project's and set's inputs, and
        each lockfile's package rows (by its sha256)."""
        rows_dir = self.state_dir / ROWS_DIR
        rows_dir.mkdir(parents=True, exist_ok=True)
        current = {f"{s.input.sha256}.json" for s in sets}
        for locked in sets:
            _write_rows(rows_dir / f"{locked.input.sha256}.json", locked)
        for entry in os.listdir(rows_dir):
            if entry not in current:
                os.unlink(rows_dir / entry)
        dirs = sorted(_ancestors(self.entries))
        state = {
            "format": STATE_FORMAT, "key": key, "out_dir": str(self.out_dir),
            "store": os.path.abspath(self.store.root),
            "lockfiles": {str(i.path): [*i.stat_key, i.sha256] for i in inputs},
            "manifest": _stat_key(self.out_dir / MANIFEST_NAME), "summary": summary,
            "dirs": dirs, "tree": _tree_key(self.out_dir, dirs),
            "projects": self.projects,
            "sets": {s.name: _set_record(s, self.exclude) for s in sets},
        }
        atomic_write(self.state_dir / STATE_NAME, json.dumps(state, sort_keys=True) + "\n",
                     fsync=False)


# --------------------------------------------------------------------------
# Lockfiles and package rows
# --------------------------------------------------------------------------

def _hash_lockfiles(paths: list[Path], previous: dict[str, list[Any]]) -> list[_Input]:
    """Each lockfile's sha256, sorted by file name: read and hashed only when
    its stat (size, mtime, ctime, inode) differs from the last run's."""
    found = []
    for path in paths:
        stat_key = _stat_key(path)
        if stat_key is None:
            raise NotFoundError("lockfile is missing", where=str(path), hint="run `doit lock`")
        before = previous.get(str(path))
        if isinstance(before, list) and before[:4] == stat_key and isinstance(before[4], str):
            found.append(_Input(path, stat_key, before[4]))
        else:
            data = path.read_bytes()
            found.append(_Input(path, stat_key, sha256_bytes(data), data))
    return sorted(found, key=lambda i: (i.path.name, str(i.path)))


def _parse_set(item: _Input) -> _Set:
    """Parse and validate a lockfile (:meth:`Lockfile.loads`) into a set."""
    from .lockfile import Lockfile  # only when a lockfile changed: packaging.pylock is slow to load

    where = str(item.path)
    try:
        text = item.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LockmirrorError(f"not UTF-8 text: {exc}", where=where) from None
    lock = Lockfile.loads(text, where=where)
    rows = [_row(package, where) for package in lock.packages]
    if not _SET_RE.match(lock.set_name or ""):
        raise LockmirrorError(f"set name {lock.set_name!r} is missing or unsafe", where=where)
    for target in lock.targets:
        if not _SET_RE.match(target.name):
            raise LockmirrorError(f"target name {target.name!r} is unsafe", where=where)
    return _Set(name=lock.set_name, input=item, requirements=tuple(lock.requirements),
                targets=tuple(SetTarget(t.name, t.python, t.implementation, tuple(t.platforms))
                              for t in lock.targets),
                input_hash=lock.input_hash, rows=rows)


def _row(package: LockedPackage, where: str) -> Row:
    """A package as a row; refuses names and file names unsafe in a path."""
    if not _NAME_RE.match(package.name):
        raise LockmirrorError(f"package name {package.name!r} is not a normalized name",
                              where=where, hint="re-create the lockfile with `doit lock`")
    files = []
    for file in package.files:
        if (not file.filename or file.filename.startswith(".")
                or _FILENAME_BAD.search(file.filename)):
            raise LockmirrorError(f"unsafe file name {file.filename!r} for {package.name}",
                                  where=where)
        if not _SHA256_RE.match(file.sha256 or ""):
            raise LockmirrorError(f"{file.filename} has no sha256", where=where)
        metadata = file.metadata_sha256 if file.is_wheel else None
        files.append(RowFile(file.filename, int(file.size), file.sha256, _iso(file.upload_time),
                             metadata.lower() if metadata else None))
    return Row(package.name, str(package.version), package.requires_python, package.yanked,
               tuple(package.targets), bool(package.build_only), package.index,
               tuple(sorted(files)))


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.replace(tzinfo=None).isoformat() + "Z"


def _write_rows(path: Path, locked: _Set) -> None:
    """Keep a set's rows for the next run, named by its lockfile's sha256."""
    if path.exists():  # same name, same lockfile bytes, same rows
        return
    data = {"format": STATE_FORMAT, "set": locked.name,
            "requirements": locked.requirements, "input_hash": locked.input_hash,
            "targets": [[t.name, t.python, t.implementation, t.platforms]
                        for t in locked.targets],
            "rows": locked.rows}
    atomic_write(path, json.dumps(data), fsync=False)


def _read_rows(state_dir: Path, item: _Input) -> _Set | None:
    """The set a lockfile with these bytes gave before; None when not kept."""
    data = _read_json(state_dir / ROWS_DIR / f"{item.sha256}.json")
    if data is None or data.get("format") != STATE_FORMAT:
        return None
    try:
        rows = [Row(name, version, requires_python, yanked, tuple(targets), build_only, source,
                    tuple(RowFile(*file) for file in files))
                for name, version, requires_python, yanked, targets, build_only, source, files
                in data["rows"]]
        return _Set(name=data["set"], input=item, requirements=tuple(data["requirements"]),
                    targets=tuple(SetTarget(t[0], t[1], t[2], tuple(t[3]))
                                  for t in data["targets"]),
                    input_hash=data["input_hash"], rows=rows)
    except (KeyError, TypeError, ValueError):
        return None


def _set_record(locked: _Set, exclude: frozenset[tuple[str, str]]) -> list[Any]:
    """What a set's files depend on besides its name: its lockfile and the
    releases of it left out."""
    excluded = {(row.name, row.version) for row in locked.rows} & exclude
    return [locked.input.sha256, sorted([name, version] for name, version in excluded)]


ProjectRows = list[tuple[str, Row]]  # (set name, row) for each set that locks the project


def _group_projects(sets: list[_Set], exclude: frozenset[tuple[str, str]],
                    ) -> dict[str, tuple[str, ProjectRows]]:
    """Project -> (digest of its rows, its rows), sets in name order;
    excluded releases left out."""
    grouped: dict[str, ProjectRows] = {}
    for locked in sets:
        for row in locked.rows:
            if (row.name, row.version) not in exclude:
                grouped.setdefault(row.name, []).append((locked.name, row))
    return {name: (sha256_bytes(json.dumps(rows).encode()), rows)
            for name, rows in sorted(grouped.items())}


def _merge_project(name: str, rows: ProjectRows) -> list[Release]:
    """A project's releases over every set; a file locked twice must agree."""
    versions: dict[str, dict[str, Any]] = {}
    origin: dict[str, tuple[str, str]] = {}  # filename -> (sha256, set)
    for set_name, row in rows:
        release = versions.get(row.version)
        if release is None:
            release = versions[row.version] = {"requires_python": row.requires_python,
                                               "yanked": row.yanked, "files": {}}
        else:
            if release["requires_python"] is None:
                release["requires_python"] = row.requires_python
            if release["yanked"] is None:
                release["yanked"] = row.yanked
        for filename, size, sha256, upload_time, metadata in row.files:
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


def _summary(locked: _Set, excluded: frozenset[tuple[str, str]]) -> SetSummary:
    """A set's part of the landing page."""
    packages = []
    sizes: dict[str, int] = {}
    for row in locked.rows:
        for file in row.files:
            sizes[file.sha256] = file.size
        packages.append(SetPackage(name=row.name, version=row.version, targets=row.targets,
                                   size=sum(f.size for f in row.files), files=len(row.files),
                                   build_only=row.build_only, yanked=row.yanked,
                                   quarantined=(row.name, row.version) in excluded))
    packages.sort(key=lambda p: (p.name, p.version))
    return SetSummary(name=locked.name, requirements=locked.requirements,
                      targets=locked.targets, packages=tuple(packages),
                      input_hash=locked.input_hash, total_size=sum(sizes.values()))


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


def _git(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str] | None:
    import subprocess  # only when a mirror.yaml is named: keeps the entry point light

    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return None


# --------------------------------------------------------------------------
# The file system
# --------------------------------------------------------------------------


def _stat_key(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _tree_key(root: Path, dirs: Iterable[str]) -> str | None:
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


def _read_manifest(path: Path) -> dict[str, tuple[str, int]] | None:
    """The manifest the last run wrote: path -> (sha256, size); None if unreadable."""
    data = _read_json(path)
    try:
        return {rel: (entry["sha256"], entry["size"])
                for rel, entry in data["files"].items()} if data else None
    except (KeyError, TypeError, AttributeError):
        return None


def _link(source: str, dest: str, *, replace: bool) -> None:
    """Hard-link ``source`` to ``dest``; ``replace``: over an existing file, atomically."""
    if not replace:
        os.link(source, dest)
        return
    temp = _temp_path(dest)
    os.link(source, temp)
    try:
        os.replace(temp, dest)
    except BaseException:
        os.unlink(temp)
        raise


def _copy(source: str, dest: str, src: os.stat_result) -> None:
    """Copy ``source`` to ``dest`` atomically, with its mtime (how a later run
    knows the copy is current: same size and mtime)."""
    temp = _temp_path(dest)
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


def _temp_path(dest: str) -> str:
    directory, name = os.path.split(dest)
    return f"{directory}/.{name}.{os.getpid()}.tmp"


def _flush(root: Path, written: list[str], *, everything: bool) -> None:
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


def _walk(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        found += [prefix + name for name in sorted(filenames)]
    return found


def _prune_dirs(root: Path, removed: Iterable[str]) -> None:
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


def _releases_of(removed: Iterable[str]) -> list[str]:
    """"name version" of the artifacts among ``removed`` paths."""
    artifacts = []
    for rel in removed:
        parts = rel.split("/")
        if len(parts) == 3 and parts[0] == "files" and not parts[2].endswith(".metadata"):
            artifacts.append((parts[1], parts[2]))
    if not artifacts:
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
