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
keeps its page as it was).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import BundleError, LockmirrorError
from ..formats.landing_page import LANDING_DATA, LandingData, landing_html
from ..formats.manifest import IMPORT_STATE, MANIFEST_NAME, Entry, Manifest, check_tree
from ..formats.pages import IndexFile, Release, project_html, project_json, root_html, root_json
from ..formats.quarantine_list import Key, release_of
from ..fsutil import atomic_write, sha256_bytes
from .import_state import keep_state, write_state
from .import_swap import link_or_copy, replacing_tree


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


def plan_edit(mirror: Path, manifest: Manifest, keys: Iterable[Key]) -> TreeEdit:
    """The edit that takes the releases ``keys`` out of the tree at ``mirror``
    (nothing is written). Raises LockmirrorError for a project page that is
    not the index's own JSON."""
    wanted = set(keys)
    doomed: dict[str, set[str]] = {}  # project -> filenames
    taken: set[str] = set()
    removed: set[str] = set()
    for rel in manifest.files:
        parts = rel.split("/")
        if len(parts) != 3 or parts[0] != "files":
            continue
        key = release_of(parts[2])  # an artifact's and its .metadata file's
        if key is not None and key in wanted:
            doomed.setdefault(parts[1], set()).add(parts[2].removesuffix(".metadata"))
            taken.add(f"{key[0]}=={key[1]}")
            removed.add(rel)
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


def _landing_pages(mirror: Path, manifest: Manifest, removed: set[str],
                   taken: set[str], projects: int) -> dict[str, bytes]:
    """The landing page and its ``landing.json`` with the releases ``taken``
    ("name==version") marked quarantined and the counts of the tree left (its
    ``projects``): the bytes the build side's index writes with those releases
    quarantined. Every error of reading or rendering the carried data (it comes
    from a bundle) is one line naming the file."""
    path = mirror / LANDING_DATA
    artifacts = [entry for rel, entry in manifest.files.items()
                 if rel.startswith("files/") and rel not in removed
                 and not rel.endswith(".metadata")]
    try:
        data = path.read_bytes()
        if Entry(sha256_bytes(data), len(data)) != manifest.files[LANDING_DATA]:
            raise ValueError("its sha256 differs from manifest.json's")
        landing = LandingData.from_json(data)
        landing = replace(landing, sets=tuple(
            replace(summary, packages=tuple(
                replace(p, quarantined=True) if f"{p.name}=={p.version}" in taken else p
                for p in summary.packages))
            for summary in landing.sets))
        page = landing.page(projects=projects, files=len(artifacts),
                            total_size=sum(entry.size for entry in artifacts))
        return {"index.html": landing_html(page).encode(), LANDING_DATA: landing.to_json()}
    except (LockmirrorError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        reason = (exc.message if isinstance(exc, LockmirrorError) else
                  str(exc) if isinstance(exc, ValueError) else exc.__class__.__name__)
        raise LockmirrorError(f"not the index's own landing data ({reason})", where=str(path),
                              hint="run `lockmirror verify` on the mirror") from None


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
               state: dict[str, bytes]) -> Manifest:
    """Build the edited tree (with the state files ``state``, path -> bytes, the
    mirror's other state files kept) in a
    staging directory beside ``mirror``, check it, and swap it in; the new
    manifest. Hard links, so it costs one link per file and the pages' bytes.
    On any failure the staging tree is removed and ``mirror`` is as it was."""
    files = {rel: entry for rel, entry in manifest.files.items() if rel not in edit.removed}
    for rel, data in edit.pages.items():
        files[rel] = Entry(sha256_bytes(data), len(data))
    new = Manifest(files)
    with replacing_tree(mirror) as staging:
        for rel in sorted(files):
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if rel in edit.pages:
                atomic_write(target, edit.pages[rel])
            else:
                link_or_copy(mirror, rel, target)
        for rel in sorted(IMPORT_STATE - set(state)):  # the rest of the mirror's state
            keep_state(mirror, staging, rel)
        for rel, data in sorted(state.items()):
            write_state(staging, rel, data)
        new.write(staging / MANIFEST_NAME)
        report = check_tree(staging, new, hash_files=False)
        if not report.ok:  # pragma: no cover - every file was placed above
            raise BundleError("the edited tree does not match its manifest",
                              where=str(staging))
    return new

