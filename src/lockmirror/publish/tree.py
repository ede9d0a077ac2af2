"""What a publish carries and in which order: the source tree, its items, plans, results.

Every destination publishes the same ordered phases, so that no client ever
sees a link to something that is not there yet:

1. ``file``: artifacts and their PEP 658 ``.metadata`` (``files/...``), together
   with ``document``: constraints, lockfiles and anything else only the landing
   page links to;
2. ``project page``: ``simple/<project>/...``;
3. ``root page``: ``simple/index.html``, ``simple/index.json``, ``index.html``;
4. ``manifest``: ``manifest.json``, last of all: it vouches for the rest.

Deletions (``--prune``) come after every phase, when nothing links the
deleted objects any more.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import IntegrityError, LockmirrorError, PublishError
from ..formats.manifest import MANIFEST_NAME, Manifest
from ..formats.mirror_lockfile import set_of_lockfile_copy
from ..formats.pages import ARTIFACT_SUFFIXES
from ..fsutil import format_size, pid_alive, plural, sha256_bytes
from ..stages.verify import check_manifest_record

FILE = "file"
DOCUMENT = "document"
PROJECT_PAGE = "project page"
ROOT_PAGE = "root page"
MANIFEST = "manifest"
PHASES: tuple[str, ...] = (FILE, DOCUMENT, PROJECT_PAGE, ROOT_PAGE, MANIFEST)

ROOT_PAGES = frozenset({"index.html", "simple/index.html", "simple/index.json"})
# what a refusal says of a tree publish's pages (a flat directory has none)
PAGES_LEFT = "the pages were left as they were"


def kind_of(path: str) -> str:
    """The phase a tree path (or an S3 directory key such as ``simple/p/``) belongs to."""
    if path == MANIFEST_NAME:
        return MANIFEST
    if path in ROOT_PAGES or path == "simple/":
        return ROOT_PAGE
    if path.startswith("files/"):
        return FILE
    if path.startswith("simple/"):
        return PROJECT_PAGE
    return DOCUMENT


def is_artifact(path: str) -> bool:
    """A wheel or sdist under ``files/`` (not its ``.metadata``)."""
    return path.startswith("files/") and path.endswith(ARTIFACT_SUFFIXES)


@dataclass(frozen=True)
class Item:
    """One thing to publish: a tree file (``source`` relative path) under a remote name."""

    path: str          # where it goes, relative to the destination root (S3: key after prefix)
    source: str        # the tree file holding its bytes
    sha256: str
    size: int

    @property
    def kind(self) -> str:
        return kind_of(self.source)  # a flat directory's path is the file name alone

    def check_bytes(self, path: Path, size: int, sha256: str,
                    left: str = "nothing that links it was published") -> None:
        """IntegrityError naming ``path`` unless its bytes (``size``, ``sha256``)
        are what the manifest gave this item; ``left``: what the hint says of the
        destination."""
        if size != self.size or sha256 != self.sha256:
            raise IntegrityError(f"does not match manifest.json ({size} bytes, sha256 {sha256}; "
                                 f"expected {self.size} bytes, {self.sha256})", where=str(path),
                                 hint=f"rebuild or re-import the index; {left}")


@dataclass(frozen=True)
class ProgressEvent:
    """What a running publish reports; ``detail`` events are per file, the rest per phase.
    A ``note`` (a lock broken or taken over) is in the result's ``notes`` too: a front
    door that shows it as it happens (even when quiet) does not print it again."""

    message: str
    done: int = 0
    total: int = 0
    detail: bool = False
    note: bool = False


Progress = Callable[[ProgressEvent], None]


def no_progress(_event: ProgressEvent) -> None:
    return None


@dataclass(frozen=True)
class SourceTree:
    """A built ``dist-index/`` and its manifest (plus ``manifest.json`` itself)."""

    root: Path
    manifest: Manifest
    manifest_entry: tuple[str, int]   # sha256 and size of manifest.json
    store: Any = None  # an S3Store holding the files/ entries absent from ``root``
    drop_sets: frozenset[str] = frozenset()  # sets the destination may lose (--drop-sets)

    @classmethod
    def open(cls, root: Path, *, store: Any = None,
             drop_sets: Iterable[str] = ()) -> SourceTree:
        """Read ``root/manifest.json`` and check that every listed file exists with its size.
        ``drop_sets``: the sets a publish of this tree may remove (:meth:`guard`).

        With ``store`` (an S3 store: the index stage names its files without
        placing them), a ``files/`` entry absent from ``root`` must be the
        store's object of that sha256 and size (one listing of the store).

        Raises LockmirrorError when the manifest is missing or unreadable,
        IntegrityError naming the first file that is missing or has another
        size, or, for an imported mirror, when ``manifest.json`` is not the one
        its last import wrote (verify's check: a wheel and its entry edited by
        hand). Costs one stat per file and a sha256 of the manifest; no file
        is hashed here (each is hashed when it is read for upload).
        """
        if not root.is_dir():
            raise LockmirrorError("no such directory", where=str(root),
                                  hint="build the index first (`doit index`) or pass --from")
        path = root / MANIFEST_NAME
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise LockmirrorError("manifest is missing", where=str(path),
                                  hint="build the index with `doit index`") from None
        check_manifest_record(root, sha256_bytes(raw))  # an imported mirror edited by hand
        manifest = Manifest.loads(raw.decode("utf-8"), where=str(path))
        base = str(root)
        for rel, entry in sorted(manifest.files.items()):
            full = os.path.join(base, rel)  # strings: a no-op publish stats thousands of files
            size: int | None
            try:
                size = os.stat(full).st_size
            except FileNotFoundError:
                size = None
                if store is not None and rel.startswith("files/"):
                    size = store.size_of(entry.sha256)
                    full = f"{store.url} sha256 {entry.sha256}"
                if size is None:
                    raise IntegrityError("listed in manifest.json but missing",
                                         where=full) from None
            if size != entry.size:
                raise IntegrityError(f"is {size} bytes, manifest.json says {entry.size}",
                                     where=full, hint="rebuild or re-import the index")
        return cls(root=root, manifest=manifest, manifest_entry=(sha256_bytes(raw), len(raw)),
                   store=store, drop_sets=frozenset(drop_sets))

    def in_store(self, item: Item) -> bool:
        """Whether ``item``'s bytes are read from the S3 store, not from ``root``."""
        return self.store is not None and not os.path.exists(os.path.join(self.root, item.source))

    def guard(self, plan: Plan, held_sets: Iterable[str] = ()) -> Plan:
        """``plan``, unless publishing it would drop a set the destination holds.

        A set is held by the destination when its lockfile copy is there, or
        when ``held_sets`` (a flat directory's receipt, which has no copies)
        names it; the tree drops it when the copy is stale (at the destination,
        not in the tree) or the tree has no copy of it: its root pages would
        stop listing the set's projects and ``--prune`` would delete its
        files. Raises PublishError naming those sets, unless ``drop_sets``
        names every one of them; then the plan also deletes their lockfile
        copies (without ``--prune`` too). Costs nothing: the plan's listing
        already holds the answer. Publishers call it on every plan, the one
        re-made under the destination's lock too."""
        held = {path: name for path in plan.stale if (name := set_of_lockfile_copy(path))}
        recorded = set(held_sets) - set(self.set_names())
        dropped = sorted((set(held.values()) | recorded) - self.drop_sets)
        if dropped:
            names = ", ".join(f"'{name}'" for name in dropped)
            raise PublishError(
                f"refused: this index lacks {plural(len(dropped), 'set')} the destination "
                f"holds ({names}); publishing it would drop them",
                where=plan.destination,
                hint="publish the whole index from one job; to drop a set on purpose, use "
                     f"--drop-sets {','.join(dropped)}")
        # a set dropped on purpose loses its lockfile copy, --prune or not: the copy is
        # what says the destination holds the set
        copies = tuple(path for path in sorted(held) if path not in plan.delete)
        return replace(plan, delete=plan.delete + copies) if copies else plan

    def set_names(self) -> list[str]:
        """The sets whose lockfile copies the tree holds, sorted."""
        return sorted({name for rel in self.manifest.files
                       if (name := set_of_lockfile_copy(rel))})

    def items(self) -> list[Item]:
        """Every file of the tree, manifest.json included, in phase order."""
        items = [Item(rel, rel, e.sha256, e.size) for rel, e in self.manifest.files.items()]
        sha, size = self.manifest_entry
        items.append(Item(MANIFEST_NAME, MANIFEST_NAME, sha, size))
        return sorted(items, key=lambda item: (PHASES.index(item.kind), item.path))

    def artifacts(self) -> list[Item]:
        """Wheels and sdists only, sorted by path."""
        return [item for item in self.items() if is_artifact(item.path)]


@dataclass(frozen=True)
class Plan:
    """What a publish would do (and, once done, did)."""

    destination: str
    upload: tuple[Item, ...]
    present: tuple[Item, ...]
    stale: tuple[str, ...] = ()      # lockmirror published it there, the tree lacks it
    delete: tuple[str, ...] = ()     # what --prune removes (a subset of stale)
    foreign: tuple[str, ...] = ()    # there, not in the tree, not lockmirror's: never deleted
    # "NAME: the destination holds other bytes ...": a file of the same name that
    # lockmirror did not put there; never overwritten
    conflicts: tuple[str, ...] = ()
    locked: str = ""  # who holds the destination's publish lock (``locked by ...``), if anyone

    def by_kind(self) -> dict[str, tuple[int, int]]:
        """Phase -> (count, bytes) of what is to be uploaded, in phase order."""
        counts: dict[str, tuple[int, int]] = {}
        for phase in PHASES:
            chosen = [item for item in self.upload if item.kind == phase]
            if chosen:
                counts[phase] = (len(chosen), sum(item.size for item in chosen))
        return counts

    @property
    def upload_bytes(self) -> int:
        return sum(item.size for item in self.upload)

    @property
    def empty(self) -> bool:
        return not (self.upload or self.delete)


@dataclass(frozen=True)
class PublishResult:
    """What a publish did (``dry_run``: what it would do)."""

    destination: str
    plan: Plan
    dry_run: bool
    uploaded: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    found_present: tuple[str, ...] = field(default=())  # "already exists" answers that matched
    notes: tuple[str, ...] = ()

    @property
    def present_count(self) -> int:
        return len(self.plan.present) + len(self.found_present)

    @property
    def uploaded_bytes(self) -> int:
        sizes = {item.path: item.size for item in self.plan.upload}
        return sum(sizes.get(path, 0) for path in self.uploaded)

    def summary(self) -> str:
        """One line: ``N uploaded (X MiB), M already present[, K deleted][, S stale kept]``."""
        if self.dry_run:
            size = format_size(self.plan.upload_bytes)
            parts = [f"would upload {len(self.plan.upload)} ({size})",
                     f"{len(self.plan.present)} already present"]
            if self.plan.delete:
                parts.append(f"would delete {len(self.plan.delete)}")
        else:
            parts = [f"{len(self.uploaded)} uploaded ({format_size(self.uploaded_bytes)})",
                     f"{self.present_count} already present"]
            if self.deleted:
                parts.append(f"{len(self.deleted)} deleted")
        kept = len(self.plan.stale) - len(self.plan.delete)
        if kept:
            parts.append(f"{kept} stale kept (--prune deletes them)")
        return ", ".join(parts)


# Kinds written together: documents are linked from the landing page only, never from
# a project page, so they need not wait for the files (one barrier less).
_STEPS: tuple[tuple[str, ...], ...] = ((FILE, DOCUMENT), (PROJECT_PAGE,), (ROOT_PAGE,),
                                       (MANIFEST,))


@dataclass(frozen=True)
class Step:
    """Items uploaded together; the next step starts only when all of them are there."""

    kinds: tuple[str, ...]
    items: list[Item]

    @property
    def first(self) -> bool:
        """Nothing that links anything has been written before this step."""
        return FILE in self.kinds

    def describe(self) -> str:
        """``22 files and 5 documents`` / ``1 manifest``."""
        counts = [(kind, sum(1 for item in self.items if item.kind == kind))
                  for kind in self.kinds]
        return " and ".join(plural(count, kind) for kind, count in counts if count)

    def failure(self, problems: Sequence[LockmirrorError], destination: str) -> PublishError:
        """The one error for this step's failed items, saying what the destination's
        readers still see (the later steps were not started)."""
        untouched = PAGES_LEFT if self.first else \
            "the root pages and manifest were left as they were" if MANIFEST not in self.kinds \
            else "the manifest was left as it was"
        # One cause for all (credentials, bucket, endpoint) is shown as itself.
        first = problems[0]
        if isinstance(first, PublishError) and all(str(p) == str(first) for p in problems):
            return PublishError(first.message, where=first.where,
                                hint=f"{first.hint + '; ' if first.hint else ''}{untouched}")
        return PublishError(
            f"{len(problems)} of {len(self.items)} uploads ({self.describe()}) failed: "
            f"{first_lines([str(p) for p in problems])}", where=destination,
            hint=f"{untouched}; fix the cause and publish again")


def in_steps(items: Iterable[Item]) -> list[Step]:
    """Items grouped into publishing steps, in order (empty steps left out)."""
    chosen = list(items)
    steps = [Step(kinds, [item for item in chosen if item.kind in kinds]) for kinds in _STEPS]
    return [step for step in steps if step.items]


def upload_steps(plan: Plan, uploaded: Sequence[str],
                 left: str = PAGES_LEFT) -> Iterator[Step]:
    """``plan.upload`` in its steps, with the one conflict guard of the S3 and directory
    publishers: the plan's conflicts are refused (:func:`refuse_conflicts`, saying
    ``left``) once the files went, before the first step that links anything, or after
    the last step when none does. ``uploaded``: the caller's list of what went so far,
    appended to as the steps run (the refusal counts it)."""
    for step in in_steps(plan.upload):
        if not step.first:
            refuse_conflicts(plan, uploaded, left)
        yield step
    refuse_conflicts(plan, uploaded, left)


def conflict(item: Item, size: int, sha256: str | None) -> str:
    """A plan's line for a file the destination holds under ``item``'s name with other
    bytes (``size``; ``sha256`` when known) that lockmirror did not put there."""
    there = f"sha256 {sha256}" if sha256 else f"{size} bytes, sha256 not known"
    return (f"{item.path}: the destination holds other bytes under this name ({there}; "
            f"the index has sha256 {item.sha256})")


def refuse_conflicts(plan: Plan, uploaded: Sequence[str],
                     left: str = PAGES_LEFT) -> None:
    """PublishError for the plan's conflicts, if any: raised by a publisher once the
    other files went (``uploaded``), before any page could link a conflicting file;
    ``left``: what the hint says of the destination."""
    if plan.conflicts:
        done = PublishResult(destination=plan.destination, plan=plan, dry_run=False,
                             uploaded=tuple(uploaded))
        raise PublishError(f"{plural(len(plan.conflicts), 'file')} not published "
                           f"({done.summary()}): {first_lines(plan.conflicts)}",
                           where=plan.destination,
                           hint="lockmirror did not put it there: remove it from the destination "
                                f"if it is not needed, else publish a new version; {left}")


def first_lines(problems: Sequence[str], shown: int = 3) -> str:
    """Join the first few problems on one line, saying how many more there are."""
    text = "; ".join(problems[:shown])
    if len(problems) > shown:
        text += f"; and {len(problems) - shown} more"
    return text


def lock_holder_text() -> str:
    """``user@host pid N``: enough for an operator to find a running publish."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def process_gone(holder: str) -> int | None:
    """The pid in a :func:`lock_holder_text` when the process ran on this host and is
    gone; None otherwise (another host, still running, or not such a text)."""
    match = re.fullmatch(r".*@(.+) pid (\d+)", holder)
    if match is None or match.group(1) != socket.gethostname():
        return None
    pid = int(match.group(2))
    return None if pid_alive(pid) else pid
