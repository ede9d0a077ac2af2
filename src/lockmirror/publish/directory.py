"""Publish into a local directory: a pypiserver package directory, or a static web root.

``layout: flat`` copies the artifacts (wheels, sdists) side by side, which
is what ``pypi-server run DIR`` serves; ``layout: tree`` copies the whole
static index (pages, ``.metadata``, constraints, lockfiles, manifest) for a
plain web server. Every file is copied to a temporary name in its target
directory while being hashed, checked against the manifest, then renamed
into place; identical files are left alone. Phases follow
:mod:`lockmirror.publish.tree`, so a web root never links a missing file.

State lives in ``<dir>/.lockmirror/`` (pypiserver ignores dot paths): a
receipt of (sha256, size, mtime) per file lockmirror wrote, so a no-op
publish stats every file and hashes none, and the sets published with their
files (a flat layout has no lockfile copies to tell them by); a lock file is
held with ``flock`` while publishing. ``--prune`` deletes only files the
receipt records: anything else there is not lockmirror's and is left. A
publish killed mid-copy leaves ``.<name>.XXXXXXXX.tmp`` files: they are stale
like a dropped file, and ``--prune`` removes them.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from stat import S_ISREG

from ..config_schema import DirectoryDestination
from ..errors import LockmirrorError, PublishError
from ..formats.directory_receipt import RECEIPT_FORMAT, read_receipt, receipt_path
from ..formats.manifest import DIRECTORY_LOCK, STATE_DIR, temporary_target
from ..fsutil import CHUNK, atomic_write, atomic_writer, plural, sha256_file
from .tree import (
    PAGES_LEFT,
    Item,
    Plan,
    Progress,
    ProgressEvent,
    PublishResult,
    SourceTree,
    conflict,
    is_artifact,
    lock_holder_text,
    no_progress,
    upload_steps,
)


class DirectoryPublisher:
    """The directory implementation of :class:`lockmirror.publish.Publisher`."""

    def __init__(self, destination: DirectoryDestination, root: Path, *,
                 lock_wait: float = 0.0, progress: Progress = no_progress) -> None:
        self.destination = destination
        self.root = Path(os.path.abspath(root))
        self.display = str(self.root)
        self.flat = destination.layout == "flat"
        self.lock_wait = lock_wait
        self.progress = progress
        self._receipt_path = receipt_path(self.root)
        self._known: dict[str, tuple[str, int, int]] = {}
        # the sets the receipt read says were published (None: an older receipt that
        # does not say), and the tree's sets the next receipt records
        self._sets: list[str] | None = None
        self._receipt_read: tuple[dict[str, tuple[str, int, int]], list[str] | None] = ({}, None)

    def wanted(self, tree: SourceTree) -> list[Item]:
        if not self.flat:
            return tree.items()
        items = [Item(item.path.rsplit("/", 1)[-1], item.source, item.sha256, item.size)
                 for item in tree.artifacts()]
        names: dict[str, str] = {}
        for item in items:
            if item.path in names:
                raise LockmirrorError(f"two artifacts are named {item.path} "
                                      f"({names[item.path]} and {item.source})",
                                      hint="use layout: tree")
            names[item.path] = item.source
        return items

    def plan(self, tree: SourceTree, *, prune: bool = False) -> Plan:
        """Compare the tree with the directory. Costs a stat per file; a file is
        hashed only when its size or mtime differs from the receipt. A wheel or
        sdist there that lockmirror did not write (the receipt does not name it)
        with other bytes is a conflict, never overwritten (as the upload API's)."""
        if self.root.exists() and not self.root.is_dir():
            raise PublishError("is not a directory", where=self.display)
        self._receipt_read = read_receipt(self.root)
        receipt = self._receipt_read[0]
        upload: list[Item] = []
        present: list[Item] = []
        conflicts: list[str] = []
        wanted = self.wanted(tree)
        for item in wanted:
            target = self.root / item.path
            try:
                stat = target.stat()
            except FileNotFoundError:
                upload.append(item)
                continue
            except OSError as error:
                raise PublishError(f"cannot read ({error.strerror})", where=str(target)) from None
            remembered = receipt.get(item.path)
            current = (item.sha256, stat.st_size, stat.st_mtime_ns)
            # not a file (a directory in its place): writing it fails, naming it
            ours = remembered is not None or not is_artifact(item.source) \
                or not S_ISREG(stat.st_mode)
            if stat.st_size != item.size and ours:
                upload.append(item)
            elif remembered == current or (found := sha256_file(target)) == item.sha256:
                present.append(item)
                self._known[item.path] = current
            elif ours:
                upload.append(item)
            else:
                conflicts.append(conflict(item, stat.st_size, found))
        names = {item.path for item in wanted}
        stale: list[str] = []
        foreign: list[str] = []
        published: list[str] = []  # stale files lockmirror wrote (not leftovers of its writes)
        for path in self._existing():
            if path in names:
                continue
            leftover = temporary_target(path.rsplit("/", 1)[-1]) is not None
            if path in receipt:  # published by lockmirror: the next receipt keeps it
                self._known[path] = receipt[path]
                published.append(path)
            (stale if path in receipt or leftover else foreign).append(path)
        self._sets = self._recorded_sets(tree, published)
        self._refuse_unrecorded_prune(prune, published)
        return tree.guard(Plan(destination=self.display, upload=tuple(upload),
                               present=tuple(present), stale=tuple(stale),
                               delete=tuple(stale) if prune else (), foreign=tuple(foreign),
                               conflicts=tuple(conflicts)),
                          held_sets=self._held_sets or ())

    @property
    def _held_sets(self) -> list[str] | None:
        """The sets the receipt :meth:`plan` read records (None: it records none)."""
        return self._receipt_read[1]

    def _recorded_sets(self, tree: SourceTree, published: list[str]) -> list[str] | None:
        """The sets the next receipt records: the tree's. Not when an older receipt did
        not record its sets and files it lists are stale (``published``: they may be a
        set this tree lacks, and recording the tree's sets would let --prune delete them)."""
        if self._held_sets is None and published:
            return None
        return tree.set_names()

    def _refuse_unrecorded_prune(self, prune: bool, published: list[str]) -> None:
        """--prune is refused when the receipt (an older lockmirror's) does not say which
        sets were published and some file it published is stale (``published``): a set
        this index lacks could not be told from a file it dropped."""
        if prune and self.flat and self._held_sets is None and published:
            shown = ", ".join(published[:10]) + (" ..." if len(published) > 10 else "")
            raise PublishError(
                f"refused: --prune would delete {plural(len(published), 'published file')} "
                f"({shown}), and the receipt (an older lockmirror's) does not say which sets "
                "were published, so a set this index lacks cannot be told from a dropped file",
                where=self.display,
                hint="if no set you still publish there needs them, delete those files by "
                     "hand: the next publish records its sets, and --prune works from then on")

    def _existing(self) -> list[str]:
        """Files lockmirror may own there: artifacts (flat) or every non-hidden file
        (tree), and the temporary files its own interrupted writes left (both layouts:
        ``.<name>.XXXXXXXX.tmp`` of an artifact, a tree file or the receipt)."""
        if not self.root.is_dir():
            return []
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            top = dirpath == str(self.root)
            dirnames[:] = sorted(d for d in dirnames if top and d == STATE_DIR
                                 or not self.flat and not d.startswith("."))
            in_state = not top and Path(dirpath).name == STATE_DIR
            for name in sorted(filenames):
                if self._owned(name, top=top, in_state=in_state):
                    found.append((Path(dirpath) / name).relative_to(self.root).as_posix())
        return found

    def _owned(self, name: str, *, top: bool, in_state: bool) -> bool:
        target = temporary_target(name)
        if in_state:
            return target is not None
        if self.flat:
            return top and is_artifact(f"files/{target or name}") and (
                target is not None or not name.startswith("."))
        return target is not None or not name.startswith(".")

    def run(self, tree: SourceTree, *, prune: bool = False) -> PublishResult:
        """:meth:`plan`, then :meth:`apply` (which re-plans under the lock)."""
        return self.apply(tree, self.plan(tree, prune=prune), prune=prune)

    def apply(self, tree: SourceTree, plan: Plan, *, prune: bool = False) -> PublishResult:
        """Copy what differs, phase by phase, then delete what ``--prune`` asked for.

        Raises IntegrityError when a tree file does not match the manifest
        (its phase stops; later phases are not started), PublishError when
        the directory cannot be written or another publish holds the lock.
        """
        if plan.empty and not plan.conflicts and self._receipt_current():
            return PublishResult(destination=self.display, plan=plan, dry_run=False)
        uploaded: list[str] = []
        deleted: list[str] = []
        with self._locked():
            plan = self.plan(tree, prune=prune)
            try:
                # a conflict is refused once the other files went, before a page links it
                for step in upload_steps(plan, uploaded, self._left_on_conflict):
                    self.progress(ProgressEvent(f"copying {step.describe()}", 0,
                                                len(step.items)))
                    for count, item in enumerate(step.items, 1):
                        self._copy(tree, item)
                        uploaded.append(item.path)
                        self.progress(ProgressEvent(f"copied {item.path}", count,
                                                    len(step.items), detail=True))
                for path in plan.delete:
                    self._remove(path)
                    deleted.append(path)
            finally:
                self._write_receipt()
        return PublishResult(destination=self.display, plan=plan, dry_run=False,
                             uploaded=tuple(uploaded), deleted=tuple(deleted))

    @property
    def _left_on_conflict(self) -> str:
        """What a conflict's hint says of the destination: a flat directory has no
        pages to hold the file there back."""
        return ("a flat directory has no pages: the file there is served as it is"
                if self.flat else PAGES_LEFT)

    @property
    def _left_on_mismatch(self) -> str:
        """What the hint for a tree file that does not match its manifest says of the
        destination (a flat directory serves every file it holds)."""
        return ("it was not copied, and a flat directory has no pages: the files copied "
                "before it are served" if self.flat
                else "the destination's pages were left as they were")

    def _copy(self, tree: SourceTree, item: Item) -> None:
        source = tree.root / item.source
        target = self.root / item.path
        try:
            with atomic_writer(target) as out, open(source, "rb") as handle:
                digest = hashlib.sha256()
                size = 0
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                item.check_bytes(source, size, digest.hexdigest(), self._left_on_mismatch)
        except OSError as error:
            raise PublishError(f"cannot write ({error.strerror})", where=str(target)) from None
        stat = target.stat()
        self._known[item.path] = (item.sha256, stat.st_size, stat.st_mtime_ns)

    def _remove(self, path: str) -> None:
        target = self.root / path
        try:
            target.unlink()
        except FileNotFoundError:
            pass
        except OSError as error:
            raise PublishError(f"cannot delete ({error.strerror})", where=str(target)) from None
        self._known.pop(path, None)
        parent = target.parent
        while parent != self.root:
            try:
                parent.rmdir()  # only empty directories go
            except OSError:
                break
            parent = parent.parent

    def _receipt_current(self) -> bool:
        """Whether the receipt :meth:`plan` read already says what this publish would write."""
        return self._receipt_read == (self._known, self._sets)

    def _write_receipt(self) -> None:
        data: dict[str, object] = {
            "format": RECEIPT_FORMAT,
            "files": {k: list(v) for k, v in sorted(self._known.items())}}
        if self._sets is not None:  # the sets published (a flat layout has no lockfile copies)
            data["sets"] = self._sets
        try:
            atomic_write(self._receipt_path, json.dumps(data, indent=0, sort_keys=True) + "\n",
                         only_if_changed=True)
        except OSError as error:
            raise PublishError(f"cannot write the receipt ({error.strerror})",
                               where=str(self._receipt_path)) from None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        path = self.root / DIRECTORY_LOCK
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - `with handle` below
        except OSError as error:
            raise PublishError(f"cannot create ({error.strerror})", where=str(path)) from None
        deadline = time.monotonic() + self.lock_wait
        with handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as error:
                    if error.errno not in (errno.EAGAIN, errno.EACCES):
                        raise PublishError(f"cannot lock ({error.strerror})",
                                           where=str(path)) from None
                    if time.monotonic() >= deadline:
                        handle.seek(0)
                        holder = handle.read().strip() or "another process"
                        raise PublishError(f"locked by {holder}", where=self.display,
                                           hint="another publish is running; wait for it "
                                                "(--lock-wait SECONDS)") from None
                    time.sleep(0.2)
            handle.seek(0)
            handle.truncate()
            handle.write(lock_holder_text() + "\n")
            handle.flush()
            try:
                yield
            finally:
                handle.seek(0)
                handle.truncate()
                fcntl.flock(handle, fcntl.LOCK_UN)
