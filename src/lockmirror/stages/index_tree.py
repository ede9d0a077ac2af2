"""The index tree as one run of the index stage writes it: each file only if it is not right.

A :class:`Tree` is opened on ``out_dir`` (:meth:`Tree.open`): an existing index is
updated in place; a first build goes into a staging directory that
:meth:`Tree.finish` renames into place. Every file the run names goes through
it, and it records each one for the manifest (:attr:`Tree.entries`):

* :meth:`Tree.put`: a generated file (a page, a constraints file), written
  unless it already holds these bytes;
* :meth:`Tree.place`: a store file, hard-linked (copied where linking is not
  possible) unless it already is the store's inode, or a copy of its size and
  mtime; artifacts are read and hashed only by a ``--full`` run (``verify``:
  disk rot in the store), or to tell which side is wrong when a size differs;
* :meth:`Tree.keep`: the previous manifest's entries below a directory, as they are;
* :meth:`Tree.finish`: write the manifest, flush what was written, rename the
  replacements into place (the manifest last), remove what nothing names (pages
  first), and swap a staging tree into place.

An update changes no file the previous manifest names before :meth:`Tree.finish`:
a file that replaces one is written to a temporary file beside it
(``.<name>.index-<pid>.tmp``), renamed into place, in the order the run made
them (files, project pages, root pages, the manifest last), only once every
file is written and flushed. Until then a failure (:meth:`Tree.discard`) leaves
the previous tree as it was: it removes the temporary files and the files and
directories the run created. A killed run's temporary files are removed by the
next run (:func:`index_fs.walk`).

An index is served: every file it writes is 0644 and every directory it makes 0755,
whatever the umask (``fsutil.SERVED_FILE_MODE``); a hard link into the store keeps
the store file's mode (the store writes 0644 too).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat as statmod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import IntegrityError, LockmirrorError
from ..formats.manifest import MANIFEST_NAME, encode_files, join_encoded
from ..fsutil import SERVED_DIR_MODE, SERVED_FILE_MODE, sha256_bytes, sha256_file
from . import index_fs as fs

_EMPTY_SHA256 = sha256_bytes(b"")
# link() errors after which a copy is made instead (another device, no hard links)
_NO_LINK = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES)


@dataclass
class Tree:
    """Where one run writes (``root``: ``out_dir``, or its staging directory
    when ``fresh``), the manifest it builds and what it wrote."""

    out_dir: Path
    root: Path
    fresh: bool
    store_objects: str  # the store's sha256/ directory, absolute
    trusted: bool  # the previous manifest is known: the tree is as the last run left it
    old_entries: dict[str, tuple[str, int]]  # that manifest ({} when not trusted)
    entries: dict[str, tuple[str, int]] = field(default_factory=dict)  # path -> sha256, size
    written: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # written where no file was (discard's)
    created_dirs: list[str] = field(default_factory=list)  # made by this run (discard's)
    pending: dict[str, str] = field(default_factory=dict)  # rel -> the temporary file replacing it
    present: list[str] = field(default_factory=list)  # the files found at open (untrusted)
    linked: int = 0
    copied: int = 0
    can_link: bool = True
    made_dirs: set[str] = field(default_factory=set)
    old_by_dir: dict[str, list[str]] = field(default_factory=dict)  # by keep(), on first use
    remote: Any = None  # an S3Store: files stay in it; the tree holds their manifest entries
    verify: bool = False  # hash every local store file placed against its name (--full)

    @classmethod
    def open(cls, out_dir: Path, store_root: Path, *, trusted: bool,
             remote: Any = None) -> Tree:
        """The tree at ``out_dir``, or a new staging directory when there is
        none. ``trusted``: the state says the tree is as the last run left it,
        so its manifest is the previous one. ``remote``: an S3 store, whose
        files are named in the manifest but not placed in the tree. Raises LockmirrorError for a
        non-empty directory that is not an index."""
        store_objects = f"{os.path.abspath(store_root)}/sha256"
        manifest = out_dir / MANIFEST_NAME
        if out_dir.exists():
            if not manifest.exists() and any(out_dir.iterdir()):
                raise LockmirrorError(
                    "exists, is not empty and holds no manifest.json, so it is not a "
                    "lockmirror index", where=str(out_dir),
                    hint="remove it or choose another output directory")
            old = fs.read_manifest(manifest) if trusted else None
            return cls(out_dir, out_dir, False, store_objects, old is not None, old or {},
                       present=[] if old is not None else fs.walk(out_dir), remote=remote)
        fs.remove_stale_staging(out_dir)
        root = out_dir.with_name(f".{out_dir.name}.staging-{os.getpid()}")
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        os.chmod(root, SERVED_DIR_MODE)  # it becomes out_dir
        return cls(out_dir, root, True, store_objects, False, {}, remote=remote)

    def keep(self, *directories: str) -> None:
        """Take the previous manifest's entries below ``directories``
        (``files/<project>/``) as they are."""
        if not self.old_by_dir and self.old_entries:
            for rel in self.old_entries:
                self.old_by_dir.setdefault(rel.rpartition("/")[0] + "/", []).append(rel)
        for directory in directories:
            for rel in self.old_by_dir.get(directory, ()):
                self.entries[rel] = self.old_entries[rel]

    def keep_files(self, paths: list[str]) -> bool:
        """Take the previous manifest's entries of ``paths`` as they are, if it
        has them all; else take none and return False."""
        if not all(rel in self.old_entries for rel in paths):
            return False
        for rel in paths:
            self.entries[rel] = self.old_entries[rel]
        return True

    def put(self, rel: str, data: bytes) -> None:
        """Write ``rel`` unless it already holds ``data``; enter it in the manifest."""
        self.entries[rel] = (sha256_bytes(data), len(data))
        path = f"{self.root}/{rel}"
        if self.fresh:  # nobody reads the staging tree: no temp file, synced at the end
            self._mkdir(os.path.dirname(path))
            with open(path, "wb") as handle:
                os.fchmod(handle.fileno(), SERVED_FILE_MODE)  # served: not the umask's 0600
                handle.write(data)
            self._wrote(rel)
            return
        have = fs.lstat(path)
        if have is None:
            self._mkdir(os.path.dirname(path))
            fs.make_beside(path, fs.writer(data))
        elif have.st_size == len(data) and fs.holds(path, data) and self._served(path, have):
            return
        else:
            self._replace_later(rel, fs.writer(data), have)
        self._wrote(rel, new=have is None)

    def _served(self, path: str, have: os.stat_result) -> bool:
        """Whether the generated file ``path`` (``have``: its lstat), which holds the
        right bytes, may stay as it is. A trusted tree's does (no call made). A tree
        compared file by file (another version's state, ``--full``) may be an older
        lockmirror's under umask 077: a 0600 file is made 0644, unless it is a hard
        link (never chmod through a link: False, it is written anew)."""
        if self.trusted or statmod.S_IMODE(have.st_mode) == SERVED_FILE_MODE:
            return True
        if have.st_nlink != 1 or not statmod.S_ISREG(have.st_mode):
            return False
        os.chmod(path, SERVED_FILE_MODE)
        return True

    def _served_dirs(self) -> None:
        """In a tree compared file by file: make the root and each directory holding
        a file of the manifest 0755 (an older lockmirror's under umask 077 are 0700)."""
        directories = {""}
        for rel in self.entries:
            parts = rel.split("/")[:-1]
            directories.update("/".join(parts[:depth]) for depth in range(1, len(parts) + 1))
        for directory in sorted(directories):
            have = fs.lstat(f"{self.root}/{directory}" if directory else str(self.root))
            if (have is not None and statmod.S_ISDIR(have.st_mode)
                    and statmod.S_IMODE(have.st_mode) != SERVED_DIR_MODE):
                os.chmod(f"{self.root}/{directory}" if directory else self.root,
                         SERVED_DIR_MODE)

    def place(self, rel: str, sha256: str, size: int | None) -> bool:
        """Make ``rel`` the store's file ``sha256``: nothing to do when it already
        is (same inode; or, on another device, same size and mtime), else a hard
        link, or a copy where linking is not possible. ``size`` None: not known
        (a .metadata file). False when the store has no such file (a size-less
        one left empty by a crash included); IntegrityError when its size is not
        ``size``. With an S3 store (``remote``) only the manifest entry is made."""
        if self.remote is not None:
            return self._enter_remote(rel, sha256, size)
        source = f"{self.store_objects}/{sha256[:2]}/{sha256[2:]}"  # rows hold lower-case hex
        try:
            src = os.stat(source)
        except FileNotFoundError:
            return False
        if size is None and src.st_size == 0 and sha256 != _EMPTY_SHA256:
            return False
        if size is not None and src.st_size != size:
            if sha256_file(Path(source)) == sha256:  # the store is right: the lockfile is not
                raise IntegrityError(
                    f"the lockfile says {size} bytes for {rel}, but the file with its sha256 "
                    f"has {src.st_size}", where=source,
                    hint="the lockfile was edited by hand; re-create it with `doit lock`")
            raise _damaged(rel, source)
        if self.verify and sha256_file(Path(source)) != sha256:
            raise _damaged(rel, source)
        self.entries[rel] = (sha256, src.st_size)
        dest = f"{self.root}/{rel}"
        have = None if self.fresh else fs.lstat(dest)
        if have is not None and statmod.S_ISREG(have.st_mode) and (
                (have.st_ino, have.st_dev) == (src.st_ino, src.st_dev)
                or (have.st_dev != src.st_dev  # a copy made by an earlier run
                    and (have.st_size, have.st_mtime_ns) == (src.st_size, src.st_mtime_ns))):
            return True
        self._mkdir(os.path.dirname(dest))
        if self.can_link:
            try:
                if have is None:
                    os.link(source, dest)
                else:
                    self._replace_later(rel, lambda temp: os.link(source, temp), have)
                self.linked += 1
                self._wrote(rel, new=have is None)
                return True
            except OSError as exc:
                if exc.errno not in _NO_LINK:
                    raise
                self.can_link = False
        if have is None:
            fs.make_beside(dest, fs.copier(source, src))
        else:
            self._replace_later(rel, fs.copier(source, src), have)
        self.copied += 1
        self._wrote(rel, new=have is None)
        return True

    def _replace_later(self, rel: str, make: Callable[[str], None],
                       have: os.stat_result | None) -> None:
        """``make`` the file that replaces ``rel`` (``have``: its stat) beside it;
        :meth:`finish` renames it into place."""
        dest = f"{self.root}/{rel}"
        if have is not None and statmod.S_ISDIR(have.st_mode):  # fail now, not at the rename
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), dest)
        self.pending[rel] = fs.make_beside(dest, make, rename=False)

    def _enter_remote(self, rel: str, sha256: str, size: int | None) -> bool:
        """:meth:`place` for an S3 store: the object's size from its listing."""
        have = self.remote.size_of(sha256)
        if have is None or (size is None and have == 0 and sha256 != _EMPTY_SHA256):
            return False
        if size is not None and have != size:
            raise IntegrityError(f"the store holds {have} bytes for {rel}, the lockfile "
                                 f"says {size}", where=f"s3://{self.remote.bucket}/{self.remote.key(sha256)}",
                                 hint="delete the object and run `doit fetch`")
        self.entries[rel] = (sha256, have)
        return True

    def finish(self) -> list[str]:
        """Write the manifest, flush what was written, rename the replacements
        into place (the manifest last), remove what nothing names (pages first,
        so no page links to a file already gone), and rename a staging tree
        into place. The removed paths, in that order."""
        present = self.old_entries if self.trusted else self.present
        removed = sorted((rel for rel in present if rel not in self.entries
                          and rel != MANIFEST_NAME),
                         key=lambda rel: (not rel.startswith("simple/"),
                                          rel.startswith("files/"), rel))
        manifest = f"{self.root}/{MANIFEST_NAME}"
        if self.entries != self.old_entries:  # else the manifest holds them already
            data = join_encoded([encode_files(
                [(rel, *self.entries[rel]) for rel in sorted(self.entries)])]).encode()
            if self.fresh:
                fs.writer(data)(manifest)
            elif self.trusted or not fs.holds(manifest, data) or not self._served(
                    manifest, os.lstat(manifest)):
                self._replace_later(MANIFEST_NAME, fs.writer(data), None)
        if not self.trusted and not self.fresh:
            self._served_dirs()
        self._commit()
        fs.remove_files(self.root, removed)
        if self.fresh:
            os.replace(self.root, self.out_dir)
        return removed

    def _commit(self) -> None:
        """Flush every file written (a replacement as its temporary file), then
        rename the replacements into place in the order they were made, then
        flush their directories: the point after which the run's files stay."""
        files = [f"{self.root}/{rel}" for rel in self.written if rel not in self.pending]
        synced = fs.flush([*files, *self.pending.values()], everything=self.fresh)
        self.created.clear()  # pages may name them from here on: they stay, whatever follows
        renamed = [f"{self.root}/{rel}" for rel in self.pending]
        for rel, temp in list(self.pending.items()):
            os.replace(temp, f"{self.root}/{rel}")
            del self.pending[rel]
        fs.flush_dirs(sorted({os.path.dirname(path)
                              for path in (renamed if synced else [*files, *renamed])}))

    def discard(self) -> None:
        """After a failure: a staging tree is removed; an updated tree loses
        the temporary files and the files and directories this run created
        where none was, so it is again the previous tree, which its manifest
        names (no file it names was changed before :meth:`finish`)."""
        if self.fresh:
            shutil.rmtree(self.root, ignore_errors=True)
            return
        for path in [*self.pending.values(), *(f"{self.root}/{rel}" for rel in self.created)]:
            with contextlib.suppress(OSError):
                os.unlink(path)
        for directory in reversed(self.created_dirs):  # deepest last made: first removed
            with contextlib.suppress(OSError):
                os.rmdir(directory)

    def _mkdir(self, directory: str) -> None:
        """Make ``directory`` (and its parents) once per run; note those made."""
        if directory not in self.made_dirs:
            try:  # the parent (files/, simple/) is almost always there: one call
                os.mkdir(directory)
            except FileExistsError:
                self.made_dirs.add(directory)
                return
            except FileNotFoundError:
                self._mkdir(os.path.dirname(directory))
                os.mkdir(directory)
            os.chmod(directory, SERVED_DIR_MODE)  # served: not the umask's 0700
            self.created_dirs.append(directory)
            self.made_dirs.add(directory)

    def _wrote(self, rel: str, *, new: bool = True) -> None:
        self.written.append(rel)
        if new:
            self.created.append(rel)


def _damaged(rel: str, source: str) -> IntegrityError:
    return IntegrityError(f"the store file for {rel} no longer has the sha256 it is named by "
                          "(damaged on disk, or edited through a hard link)", where=source,
                          hint="remove it, run `doit fetch`, then `lockmirror index --full`")
