"""Index stage: ``dist-index/`` from the lockfiles and the store, incrementally.

Entry: :func:`build_index`. It writes the tree docs/ARCHITECTURE.md lays
out: PEP 503/691/700 pages (rendered by :mod:`lockmirror.formats.pages`), each
artifact and its PEP 658 ``.metadata`` file hard-linked from the store
(copied when the store is on another file system), constraints, the
lockfiles, the landing page (and its data, ``landing.json``), and
``manifest.json`` naming every other file.

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
6. flush what was written, rename the files that replace others into place
   (the manifest last), remove what no lockfile names (pages first), save the state.

Every file goes into the tree through :class:`~lockmirror.stages.index_tree.Tree`
(write if changed, link unless current, the manifest entries, the flush, the
removals, the staging swap). Artifacts are not hashed: the lockfile states
each sha256 and the store's file name proves it (fetch checked the bytes).
``full=True`` trusts no state: every lockfile is parsed, every file of the
tree compared and every store file it links hashed against its name. A first
build goes into a staging directory renamed into place at the end. Output is
byte-identical whatever the order of the lockfiles, the store or a directory
listing.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import LockmirrorError, NotFoundError
from ..formats.landing_page import (
    LANDING_DATA,
    LandingData,
    Provenance,
    landing_html,
    public_url,
)
from ..formats.manifest import MANIFEST_NAME
from ..formats.mirror_lockfile import COPY_FORMAT
from ..formats.pages import (
    Release,
    constraints_text,
    project_html,
    project_json,
    requirements_text,
    root_html,
    root_json,
)
from ..formats.quarantine_list import releases_of
from ..formats.store import Store
from ..formats.url_policy import UrlRule
from ..fsutil import atomic_write, check_output_dir, one_at_a_time, plural, sha256_bytes
from ..net.s3_store import AnyStore, S3Store
from . import index_fs as fs
from .index_sbom import write_sboms
from .index_sets import (
    LockfileInput,
    PackageSet,
    constraint_pins,
    fetch_hint,
    group_projects,
    hash_lockfiles,
    hashed_pins,
    keep_rows,
    lockfile_copy,
    merge_project,
    normalized_releases,
    read_sets,
    set_record,
    set_summary,
)
from .index_tree import Tree

if TYPE_CHECKING:
    from packaging.version import Version


# Bump whenever what a page contains for the same input changes: every
# project's pages are then rendered (and compared) again.
INDEX_FORMAT = "lockmirror-index/6"  # 6: requirements/<set>-<target>.txt
DEFAULT_TITLE = "Python package mirror"
STATE_NAME = "state.json"
STATE_FORMAT = f"{INDEX_FORMAT};state/3"
ROWS_DIR = "sets"  # in the state directory: <lockfile sha256>.json, its package rows
# after an upgrade (a state of another format; not on --full): why that run was long
REBUILT_NOTE = "compared every page and file: the index state is another lockmirror version's"

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
    notes: tuple[str, ...] = ()  # for the user: retention's, the size budget's, REBUILT_NOTE

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed)


def state_dir_for(out_dir: Path) -> Path:
    """Where :func:`build_index` keeps its state by default: beside ``out_dir``
    (not inside: the tree holds only what clients may fetch). Symbolic links are
    resolved: one index reached by two names has one state and one lock."""
    out_dir = Path(os.path.realpath(out_dir))
    return out_dir.with_name(f".{out_dir.name}.lockmirror")


def build_index(
    lockfiles: Sequence[Path],
    store: AnyStore | Path,
    out_dir: Path,
    *,
    mirror_yaml: Path | None = None,
    title: str = DEFAULT_TITLE,
    full: bool = False,
    exclude: Iterable[tuple[str, Version | str]] = (),
    state_dir: Path | None = None,
    progress: Progress | None = None,
    url_rule: UrlRule | None = None,
    sbom: str | None = None,
    retained: Mapping[Path, str] | None = None,
) -> IndexResult:
    """Bring ``out_dir`` to the index of ``lockfiles`` (paths to ``pylock.<set>.toml``).

    ``store`` holds every locked file and each wheel's PEP 658 metadata file
    (the fetch stage's job). ``mirror_yaml``, when given, is named on the
    landing page with its sha256 and the last git commit that touched it.
    ``full`` ignores the saved state, compares every file and hashes every
    local store file it links (disk rot).
    ``url_rule`` checks the file URLs of every lockfile this run parses (a
    lockfile whose rows an earlier run kept was checked then, under the same
    rule; a ``retained`` revision by the rules that need no source: retention
    checked it under today's sources when it chose it); without it no URL is checked.
    ``retained`` holds earlier lockfile revisions the mirror keeps serving, newest
    first (path -> the landing page's words, e.g. ``kept for the previous lock
    (core@1a2b3c4d), until the next lock``): their releases get files and page
    entries like any other, marked on their set's landing section by the newest
    revision naming them; lockfile copies and constraints stay those of ``lockfiles``.
    ``exclude`` holds releases, (name, version), to leave out although locked:
    the quarantine list (``QuarantineList.keys``). Their files and page
    entries are not in the index; the landing page marks them quarantined and
    the constraints still pin them (installing them must fail, not drift).
    ``sbom``, the mirror's name, adds the CycloneDX SBOMs ``sbom/<set>.cdx.json``
    and ``sbom/mirror.cdx.json`` (:mod:`lockmirror.stages.index_sbom`).

    Raises NotFoundError when a locked file is not in the store (run fetch),
    IntegrityError when the store or two lockfiles disagree about a file, and
    LockmirrorError for an unreadable lockfile, an ``out_dir`` that is not
    an index, or a file that cannot be written (a full disk): a first build
    that fails leaves no tree; an update leaves the previous tree as it was.
    Costs: a no-op run stats the lockfiles, the manifest and the tree's
    directories (and runs git twice when ``mirror_yaml`` is given); otherwise
    time grows with the changed lockfiles and projects plus a pass over every
    project's rows (no artifact is read or hashed, but under ``full``).
    """
    check_output_dir(Path(out_dir), "the index output",
                     hint="point --out (paths.index) at a directory")
    out_dir = Path(os.path.realpath(out_dir))  # one index by two names: one lock, one state
    state = Path(state_dir) if state_dir else state_dir_for(out_dir)
    run = _Run(store=store if isinstance(store, (Store, S3Store)) else Store(Path(store)),
               out_dir=out_dir, state_dir=state,
               title=title, full=full, exclude=normalized_releases(exclude),
               progress=progress or (lambda _message: None), url_rule=url_rule, sbom=sbom)
    try:
        state.mkdir(parents=True, exist_ok=True)
        with one_at_a_time(state, "another lockmirror index is building this index"):
            return run.build([Path(p) for p in lockfiles],
                             Path(mirror_yaml) if mirror_yaml else None, dict(retained or {}))
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


@dataclass
class _Run:
    """One run of :func:`build_index`: its options, then what it learns and does."""

    store: AnyStore
    out_dir: Path
    state_dir: Path
    title: str
    full: bool
    exclude: frozenset[tuple[str, str]]
    progress: Progress
    url_rule: UrlRule | None
    sbom: str | None = None  # the mirror's name in its SBOMs; None: no sbom/
    sbom_key: str | None = None  # what the SBOMs written or kept were made from

    previous: dict[str, Any] = field(default_factory=dict)  # the trusted state ({} if none)
    projects: dict[str, list[Any]] = field(default_factory=dict)  # name -> its state record

    def build(self, lockfiles: list[Path], mirror_yaml: Path | None,
              retained: dict[Path, str]) -> IndexResult:
        """The whole run: :func:`build_index` without its error wording."""
        state = {} if self.full else fs.read_json(self.state_dir / STATE_NAME) or {}
        inputs = hash_lockfiles(lockfiles, state.get("lockfiles", {}))
        kept_inputs = hash_lockfiles(list(retained), state.get("lockfiles", {}), by_name=False)
        provenance = provenance_of(mirror_yaml)
        key = self._run_key(inputs, provenance, [
            (i.path.name, i.sha256, retained[i.path]) for i in kept_inputs])
        intact = self._tree_intact(state)
        if intact and state.get("key") == key:
            counts = _summary(state.get("projects", {}))
            return IndexResult(out_dir=self.out_dir, noop=True, written=(), removed=(),
                               removed_releases=(), projects=counts["projects"],
                               files=counts["files"], total_size=counts["total_size"])
        self.progress(f"reading {plural(len(inputs), 'lockfile')}")
        sets = read_sets(inputs, self.state_dir / ROWS_DIR, full=self.full,
                         url_rule=self.url_rule)
        # an earlier revision was checked under today's sources when retention chose it
        # (stages/retention.under_sources): here the rules that need no source
        kept = read_sets(kept_inputs, self.state_dir / ROWS_DIR, full=self.full,
                         url_rule=UrlRule(None) if self.url_rule else None, unique=False)
        for revision in kept:
            revision.kept_for = retained[revision.input.path]
        tree = Tree.open(self.out_dir, self.store.root, trusted=intact,
                         remote=self.store if isinstance(self.store, S3Store) else None)
        tree.verify = self.full
        self.previous = state if tree.trusted else {}
        try:
            summary = self._write_tree(tree, sets, provenance, kept)
            self.progress("writing the manifest")
            removed = tree.finish()
        except BaseException:
            tree.discard()
            raise
        self._save_state(key, inputs + kept_inputs, sets, tree, kept)
        return IndexResult(
            out_dir=self.out_dir, noop=False, written=tuple(sorted(tree.written)),
            removed=tuple(removed), removed_releases=tuple(sorted(releases_of(removed))),
            projects=summary["projects"], files=summary["files"],
            total_size=summary["total_size"], linked=tree.linked, copied=tree.copied,
            notes=(REBUILT_NOTE,) if state and state.get("format") != STATE_FORMAT else ())

    # -- 1. the no-op check ----------------------------------------------

    def _run_key(self, inputs: list[LockfileInput], provenance: Provenance,
                 kept: list[tuple[str, str, str]]) -> str:
        """A digest of every input of the tree: equal keys and an intact tree are a no-op."""
        return sha256_bytes(json.dumps([
            INDEX_FORMAT, COPY_FORMAT, __version__, self.title, str(self.out_dir),
            self.store.identity,
            [provenance.config_name, provenance.config_sha256, provenance.commit,
             provenance.config_modified],
            [(i.path.name, i.sha256) for i in inputs], kept,
            sorted(self.exclude),
            self.url_rule.key if self.url_rule else "",
            self.sbom,
        ]).encode())

    def _tree_intact(self, state: dict[str, Any]) -> bool:
        """Whether the tree is the one the state describes: same manifest
        (by stat), and no directory gained or lost an entry since."""
        if state.get("format") != STATE_FORMAT or state.get("out_dir") != str(self.out_dir):
            return False
        if state.get("store") != self.store.identity:
            return False
        manifest = fs.stat_key(self.out_dir / MANIFEST_NAME)
        return (manifest is not None and state.get("manifest") == manifest
                and fs.tree_key(self.out_dir, state.get("dirs", [])) == state.get("tree"))

    # -- 3-5. the tree -----------------------------------------------------

    def _write_tree(self, tree: Tree, sets: list[PackageSet], provenance: Provenance,
                    kept: list[PackageSet]) -> dict[str, int]:
        """Steps 3 to 5: every project's files and pages (of the current and the
        ``kept`` lock revisions), the sets' files, the root and landing pages,
        into ``tree``; the summary."""
        projects = group_projects(sets + kept, self.exclude)
        known: dict[str, list[Any]] = self.previous.get("projects", {})
        for name, (digest, _rows) in projects.items():
            before = known.get(name)
            if before is not None and before[0] == digest:
                tree.keep(f"files/{name}/", f"simple/{name}/")
                self.projects[name] = before
        changed = {name: merge_project(name, rows)
                   for name, (_digest, rows) in projects.items() if name not in self.projects}
        self.progress(f"{len(changed)} of {len(projects)} projects changed")
        self._place_files(tree, changed, sets + kept)
        for name, releases in changed.items():
            tree.put(f"simple/{name}/index.html", project_html(name, releases).encode())
            tree.put(f"simple/{name}/index.json", project_json(name, releases).encode())
            self.projects[name] = [projects[name][0], sum(len(r.files) for r in releases),
                                   sum(f.size for r in releases for f in r.files)]
        self.progress("writing lockfiles, constraints, root and landing pages")
        for locked in sets:
            self._write_set(tree, locked)
        names = sorted(projects)
        summary = _summary(self.projects)
        locked_now = {(row.name, row.version) for s in sets for row in s.rows}
        # without credentials, as the page shows them (landing.json is published too)
        sources = sorted({public_url(url) for url in {row.source for s in sets for row in s.rows}}
                         - {""})
        landing = LandingData(
            title=self.title, provenance=replace(provenance, sources=tuple(sources)),
            sets=tuple(set_summary(s, self.exclude, kept, locked_now) for s in sets),
            sbom=self.sbom is not None)
        tree.put("simple/index.html", root_html(names).encode())
        tree.put("simple/index.json", root_json(names).encode())
        tree.put("index.html", landing_html(landing.page(
            projects=summary["projects"], files=summary["files"],
            total_size=summary["total_size"])).encode())
        tree.put(LANDING_DATA, landing.to_json())
        if self.sbom is not None:
            self.sbom_key = write_sboms(tree, sets, self.store, provenance,
                                        mirror_name=self.sbom,
                                        previous_key=self.previous.get("sbom"), kept=kept,
                                        exclude=self.exclude)
        return summary

    def _place_files(self, tree: Tree, releases: dict[str, list[Release]],
                     sets: list[PackageSet]) -> None:
        """Link (or copy) every file of the changed projects, .metadata files
        included, before any page links to them; then report all files
        missing from the store at once, with the ``sets`` that lock them."""
        missing: dict[str, str] = {}  # sha256 -> the file as the error names it
        for name, project_releases in releases.items():
            for release in project_releases:
                for file in release.files:
                    rel = f"files/{name}/{file.filename}"
                    if not tree.place(rel, file.sha256, file.size):
                        missing[file.sha256] = f"{file.filename} ({file.sha256[:12]})"
                    if file.metadata_sha256 and not tree.place(
                            rel + ".metadata", file.metadata_sha256, None):
                        missing[file.metadata_sha256] = (f"{file.filename}.metadata "
                                                         f"({file.metadata_sha256[:12]})")
        if missing:
            shown = list(missing.values())
            listed = "; ".join(shown[:5]) + ("; ..." if len(shown) > 5 else "")
            raise NotFoundError(f"{plural(len(shown), 'locked file')} "
                                f"{'is' if len(shown) == 1 else 'are'} not in the store: {listed}",
                                where=self.store.identity, hint=fetch_hint(sets, missing))

    def _write_set(self, tree: Tree, locked: PackageSet) -> None:
        """A set's lockfile copy, constraints and hashed requirements, unless its
        lockfile and exclusions are those of the last run."""
        paths = [f"lockfiles/pylock.{locked.name}.toml",
                 *(f"{kind}/{locked.name}-{t.name}.txt" for t in locked.targets
                   for kind in ("constraints", "requirements"))]
        if (self.previous.get("sets", {}).get(locked.name) == set_record(locked, self.exclude)
                and tree.keep_files(paths)):
            return
        tree.put(paths[0], lockfile_copy(locked))
        for target in locked.targets:
            pins = constraint_pins(locked.rows, target.name)
            tree.put(f"constraints/{locked.name}-{target.name}.txt",
                     constraints_text(locked.name, target, pins).encode())
            tree.put(f"requirements/{locked.name}-{target.name}.txt", requirements_text(
                locked.name, target, hashed_pins(locked.rows, target.name)).encode())

    # -- 6. the state --------------------------------------------------------

    def _save_state(self, key: str, inputs: list[LockfileInput], sets: list[PackageSet],
                    tree: Tree, kept: list[PackageSet]) -> None:
        """What the next run trusts: the inputs' key and hashes, the tree's
        manifest stat and directories, each project's and set's inputs, and
        each lockfile's package rows (by its sha256)."""
        keep_rows(self.state_dir / ROWS_DIR, sets + kept)
        (self.state_dir / "cache.marshal").unlink(missing_ok=True)  # earlier versions' cache
        dirs = sorted(fs.ancestors(tree.entries))
        state = {
            "format": STATE_FORMAT, "key": key, "out_dir": str(self.out_dir),
            "store": self.store.identity,
            "lockfiles": {str(i.path): [*i.stat_key, i.sha256] for i in inputs},
            "manifest": fs.stat_key(self.out_dir / MANIFEST_NAME),
            "dirs": dirs, "tree": fs.tree_key(self.out_dir, dirs),
            "projects": self.projects,
            "sets": {s.name: set_record(s, self.exclude) for s in sets},
            "sbom": self.sbom_key,
        }
        atomic_write(self.state_dir / STATE_NAME, json.dumps(state, sort_keys=True) + "\n",
                     fsync=False)


def _summary(projects: dict[str, list[Any]]) -> dict[str, int]:
    """IndexResult's counts from the projects' state records ([digest, files, size])."""
    return {"projects": len(projects), "files": sum(int(r[1]) for r in projects.values()),
            "total_size": sum(int(r[2]) for r in projects.values())}


def provenance_of(mirror_yaml: Path | None) -> Provenance:
    """sha256 of mirror.yaml and the last git commit touching it (if in git)."""
    if mirror_yaml is None:
        return Provenance(tool_version=__version__)
    try:
        digest = hashlib.sha256(mirror_yaml.read_bytes()).hexdigest()
    except OSError as exc:
        raise LockmirrorError(f"cannot read: {exc.strerror}", where=str(mirror_yaml)) from None
    from ..gitutil import commit_of  # only with a mirror.yaml: keeps the entry light

    commit, modified = commit_of(mirror_yaml)
    return Provenance(config_name=mirror_yaml.name, config_sha256=digest, commit=commit,
                      config_modified=modified, tool_version=__version__)
