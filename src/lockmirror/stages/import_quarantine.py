"""The far side's quarantine: releases taken out of an imported mirror, with no store.

The build side quarantines by rebuilding its index from the store without the
listed releases (:mod:`lockmirror.stages.quarantine`). The far side has no
store, only the imported tree, so :func:`quarantine_tree` edits a copy of it:
every file of the tree is hard-linked into a staging directory beside it,
except the listed releases' artifacts and ``.metadata`` files; each touched
project's PEP 691 page (``simple/<p>/index.json``, the index's own, complete
record of the project) is read, the listed releases' files dropped, and both
pages rendered again by the index's own renderers (:mod:`lockmirror.formats.pages`),
so they are the bytes the build side writes; a project left with no file loses
its pages and leaves the root pages; ``manifest.json`` is written anew. The
staged tree is checked against it and swapped in with the import's two
renames (:mod:`lockmirror.stages.import_swap`): a server sees the old tree or
the new one, never a page that links a removed file.

Lockfile copies and constraints are left as they are, as the build side
leaves them: an installer asked for a quarantined release fails; it never
drifts to another one. The landing page is rendered again from the
``landing.json`` the index keeps beside it, with the releases marked
quarantined and the tree's new counts (an index from before ``landing.json``
keeps its page as it was). An edit that takes no file out changes nothing, not
even a landing page another lockmirror version rendered.

The list a refresh bundle applied (``.lockmirror/quarantine.json``,
:func:`held_quarantine`) holds for the bundles imported after it that bring no
newer advisories (a delta, which carries none; a full bundle whose advisories are
no newer than the mirror's): :func:`quarantine_staged` makes the same edit in the
tree such an import is about to swap in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import BundleError, LockmirrorError
from ..formats.landing_page import (
    LANDING_DATA,
    LandingData,
    SetSummary,
    landing_html,
    reading_landing_data,
)
from ..formats.manifest import (
    IMPORT_MANIFEST,
    IMPORT_QUARANTINE,
    IMPORT_STATE,
    MANIFEST_NAME,
    Entry,
    Manifest,
    check_tree,
)
from ..formats.pages import IndexFile, Release, project_html, project_json, root_html, root_json
from ..formats.quarantine_list import Key, QuarantineList, release_of
from ..fsutil import atomic_write, make_served_dirs, sha256_bytes
from .import_state import keep_state, manifest_record, write_state
from .import_swap import inside_mirror, link_or_copy, replacing_tree

HELD_LIST_HINT = ("import the newest refresh bundle again (it writes the list anew); nothing "
                  "was changed")


@dataclass(frozen=True)
class TreeEdit:
    """What quarantining changes in an imported tree."""

    removed: tuple[str, ...]        # paths taken out (files, pages of emptied projects)
    rewritten: tuple[str, ...]      # pages written anew
    releases: tuple[str, ...]       # "name==version" taken out now
    pages: dict[str, bytes]         # new bytes of each rewritten path

    @property
    def changed(self) -> bool:
        return bool(self.removed or self.rewritten)

    @property
    def distributions_removed(self) -> int:
        """How many distribution files (wheels, sdists) the edit takes out; a wheel's
        PEP 658 ``.metadata`` goes with it and is not counted."""
        return sum(1 for rel in self.removed if is_distribution(rel))


def is_distribution(rel: str) -> bool:
    """Whether the tree path ``rel`` is a distribution file under ``files/``, not a
    wheel's ``.metadata`` (or a page)."""
    return rel.startswith("files/") and not rel.endswith(".metadata")


def plan_edit(mirror: Path, manifest: Manifest, keys: Iterable[Key]) -> TreeEdit:
    """The edit that takes the releases ``keys`` out of the tree at ``mirror``
    (nothing is written). Raises LockmirrorError for a project page that is
    not the index's own JSON."""
    doomed: dict[str, set[str]] = {}  # project -> filenames
    taken: set[str] = set()
    removed = quarantined_files(manifest, keys)
    if not removed:  # nothing of the bundle is kept out: its pages are left as they are
        return TreeEdit((), (), (), {})
    for rel in removed:
        _, project, filename = rel.split("/")
        key = release_of(filename)
        assert key is not None  # quarantined_files took only releases' files
        doomed.setdefault(project, set()).add(filename.removesuffix(".metadata"))
        taken.add(f"{key[0]}=={key[1]}")
    pages: dict[str, bytes] = {}
    emptied = []
    for project, filenames in sorted(doomed.items()):
        releases = _kept_releases(mirror, project, filenames)
        base = f"simple/{project}"
        if releases:
            pages[f"{base}/index.html"] = project_html(project, releases).encode()
            pages[f"{base}/index.json"] = project_json(project, releases).encode()
        else:
            emptied.append(project)
            removed.update(rel for rel in manifest.files if rel.startswith(f"{base}/"))
    projects = {rel.split("/")[1] for rel in manifest.files
                if rel.startswith("simple/") and rel.count("/") == 2} - set(emptied)
    if emptied:
        pages["simple/index.html"] = root_html(projects).encode()
        pages["simple/index.json"] = root_json(projects).encode()
    if LANDING_DATA in manifest.files:
        pages.update(_landing_pages(mirror, manifest, removed, taken, len(projects)))
    rewritten = {rel: data for rel, data in pages.items()
                 if manifest.files.get(rel) != Entry(sha256_bytes(data), len(data))}
    return TreeEdit(tuple(sorted(removed)), tuple(sorted(rewritten)), tuple(sorted(taken)),
                    rewritten)


def quarantined_files(manifest: Manifest, keys: Iterable[Key]) -> set[str]:
    """The paths of ``manifest`` that are files of the releases ``keys``: their
    artifacts and ``.metadata`` files (``files/<project>/<filename>``)."""
    wanted = set(keys)
    found = set()
    for rel in manifest.files if wanted else ():
        parts = rel.split("/")
        if len(parts) == 3 and parts[0] == "files" and release_of(parts[2]) in wanted:
            found.add(rel)  # an artifact's and its .metadata file's release
    return found


def edited_pages(keys: Iterable[Key]) -> frozenset[str]:
    """The pages taking the releases ``keys`` out may rewrite: their projects' pages,
    the root pages and the landing page with its data."""
    projects = sorted({name for name, _ in keys})
    if not projects:
        return frozenset()
    return frozenset({"simple/index.html", "simple/index.json", "index.html", LANDING_DATA,
                      *(f"simple/{project}/index.{kind}" for project in projects
                        for kind in ("html", "json"))})


def _landing_pages(mirror: Path, manifest: Manifest, removed: set[str],
                   taken: set[str], projects: int) -> dict[str, bytes]:
    """The landing page and its ``landing.json`` with the releases ``taken``
    ("name==version") marked quarantined and the counts of the tree left (its
    ``projects``): the bytes the build side's index writes with those releases
    quarantined. Every error of reading or rendering the carried data (it comes
    from a bundle) is one line naming the file."""
    path = mirror / LANDING_DATA
    artifacts = [entry for rel, entry in manifest.files.items()
                 if is_distribution(rel) and rel not in removed]
    with reading_landing_data(path):
        data = path.read_bytes()
        if Entry(sha256_bytes(data), len(data)) != manifest.files[LANDING_DATA]:
            raise ValueError("its sha256 differs from manifest.json's")
        landing = LandingData.from_json(data)
        landing = replace(landing, sets=tuple(_quarantined(s, taken) for s in landing.sets))
        page = landing.page(projects=projects, files=len(artifacts),
                            total_size=sum(entry.size for entry in artifacts))
        return {"index.html": landing_html(page).encode(), LANDING_DATA: landing.to_json()}


def _quarantined(summary: SetSummary, taken: set[str]) -> SetSummary:
    """A set's landing summary with the releases ``taken`` ("name==version") marked
    quarantined and the size of its current lock's files no longer served (one entry
    per release, each release's files its own) taken off its total, as the
    build side's :func:`~lockmirror.stages.index_sets.set_summary` counts it."""
    packages, size_out = [], 0
    for package in summary.packages:
        if f"{package.name}=={package.version}" in taken and not package.quarantined:
            size_out += package.size if package.kept_for is None else 0
            package = replace(package, quarantined=True)
        packages.append(package)
    return replace(summary, packages=tuple(packages), total_size=summary.total_size - size_out)


def _kept_releases(mirror: Path, project: str, dropped: set[str]) -> list[Release]:
    """The project's releases from its PEP 691 page, without the files ``dropped``."""
    path = mirror / "simple" / project / "index.json"
    try:
        data: dict[str, Any] = json.loads(path.read_bytes())
        by_version: dict[str, list[IndexFile]] = {}
        meta: dict[str, tuple[str | None, str | None]] = {}
        for item in data["files"]:
            filename = str(item["filename"])
            key = release_of(filename)
            if filename in dropped or key is None:
                continue
            core = item.get("core-metadata")
            yanked = item.get("yanked", False)
            by_version.setdefault(str(key[1]), []).append(IndexFile(
                filename, int(item["size"]), str(item["hashes"]["sha256"]),
                item.get("upload-time"), core.get("sha256") if isinstance(core, dict) else None))
            meta[str(key[1])] = (item.get("requires-python"),
                                 None if yanked is False else ("" if yanked is True
                                                               else str(yanked)))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LockmirrorError(f"not the index's own project page ({exc.__class__.__name__})",
                              where=str(path),
                              hint="run `lockmirror verify` on the mirror") from None
    return [Release(project, version, meta[version][0], meta[version][1], tuple(files))
            for version, files in by_version.items()]


def apply_edit(mirror: Path, manifest: Manifest, edit: TreeEdit,
               state: dict[str, bytes]) -> str | None:
    """Build the edited tree (with the state files ``state``, path -> bytes, the
    mirror's other state files kept, and the record of the new ``manifest.json``
    that ``lockmirror verify`` holds it to) in a
    staging directory beside ``mirror``, check it, and swap it in. None, or the warning
    naming the previous tree where it could not be removed (the edited tree is in place
    all the same: :func:`~lockmirror.stages.import_swap.swap_into_place`). Hard links,
    so it costs one link per file and the pages' bytes.
    On any failure the staging tree is removed and ``mirror`` is as it was."""
    new = _edited_manifest(manifest, edit)
    with replacing_tree(mirror) as staged:
        staging = staged.path
        for rel in sorted(new.files):
            target = staging / rel
            make_served_dirs(target.parent)
            if rel in edit.pages:
                atomic_write(target, edit.pages[rel])
            else:
                link_or_copy(mirror, rel, target)
        state = {**state, IMPORT_MANIFEST: manifest_record(write_manifest(staging, new))}
        for rel in sorted(IMPORT_STATE - set(state)):  # the rest of the mirror's state
            keep_state(mirror, staging, rel)
        for rel, data in sorted(state.items()):
            write_state(staging, rel, data)
        report = check_tree(staging, new, hash_files=False)
        if not report.ok:  # pragma: no cover - every file was placed above
            raise BundleError("the edited tree does not match its manifest",
                              where=str(staging))
    return staged.leftover


def write_manifest(tree: Path, manifest: Manifest) -> str:
    """Write ``manifest`` as ``tree``'s ``manifest.json``; the sha256 of its bytes
    (what ``lockmirror verify`` holds the tree to)."""
    written = manifest.dumps().encode()
    atomic_write(tree / MANIFEST_NAME, written)
    return sha256_bytes(written)


def _edited_manifest(manifest: Manifest, edit: TreeEdit) -> Manifest:
    """``manifest`` without the paths ``edit`` removes, with its pages' new entries."""
    files = {rel: entry for rel, entry in manifest.files.items() if rel not in edit.removed}
    for rel, data in edit.pages.items():
        files[rel] = Entry(sha256_bytes(data), len(data))
    return Manifest(files)


def held_quarantine(mirror: Path) -> QuarantineList:
    """The quarantine list the last refresh bundle left in ``mirror`` (empty when
    there is none). Raises LockmirrorError when it is a symlink, lies below one or
    does not read: the list fails closed, so no bundle brings back what it lists."""
    path = mirror / IMPORT_QUARANTINE
    if not path.exists() and not path.is_symlink():
        return QuarantineList()
    if not inside_mirror(mirror, IMPORT_QUARANTINE):
        raise LockmirrorError("the mirror's quarantine list is a symlink or lies below one",
                              where=str(path), hint=HELD_LIST_HINT)
    try:
        return QuarantineList.loads(path.read_text(encoding="utf-8"), where=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise LockmirrorError(f"the mirror's quarantine list does not read ({reason})",
                              where=str(path), hint=HELD_LIST_HINT) from None
    except LockmirrorError as exc:
        raise LockmirrorError(f"the mirror's quarantine list does not read ({exc.message})",
                              where=str(path), hint=HELD_LIST_HINT) from None


def quarantine_staged(staging: Path, manifest: Manifest,
                      keys: Iterable[Key]) -> tuple[Manifest, TreeEdit, str | None]:
    """Take the releases ``keys`` out of the tree ``staging`` an import is about to
    swap in, whose manifest is ``manifest``: the edit a refresh bundle makes
    (:func:`plan_edit`: files and ``.metadata`` removed, pages and landing page
    rendered again, a project left empty out of the root pages), made in place
    before the swap. A listed file the tree lacks is no error (a delta need not
    find it). Each page is replaced, never written through (a staged file may be a
    hard link to the current mirror's); ``manifest.json`` is written anew. Returns
    the tree's manifest, the edit (empty: nothing listed is in the tree) and the
    sha256 of the manifest written (None: the tree's is left as it was). Raises
    LockmirrorError for a page that is not the index's own; OSError when a write fails."""
    edit = plan_edit(staging, manifest, keys)
    if not edit.changed:
        return manifest, edit, None
    for rel in edit.removed:
        (staging / rel).unlink(missing_ok=True)
        try:
            (staging / rel).parent.rmdir()  # a project left with no file: no directory
        except OSError:
            pass  # it holds the project's other files
    for rel, data in sorted(edit.pages.items()):
        atomic_write(staging / rel, data)
    new = _edited_manifest(manifest, edit)
    return new, edit, write_manifest(staging, new)
