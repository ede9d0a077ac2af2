"""Quarantine: releases taken out of the mirror until someone re-locks.

``audit --quarantine`` adds every release with a deny-level finding to the
quarantine list, a committed file next to ``mirror.yaml``
(``paths.quarantine``, default ``quarantine.json``), then rebuilds the
index without them. Keeping the list as a committed *input* (not only an
edit of ``dist-index/``) is what makes the removal stick: the index stage
reads it on every build, so the next ``doit index`` does not bring the
release back, a reviewer sees the change in the pull request, and the next
``publish --prune`` deletes the files remotely because they are gone from
``manifest.json``.

The format (sorted, stable: the same list gives the same bytes)::

    {"format": "lockmirror-quarantine/1",
     "releases": [{"name": "urllib3", "version": "2.0.4",
                   "since": "2024-10-10T12:00:00Z",
                   "reasons": ["PYSEC-2023-192 (CVE-2023-43804, ...): ..."]}]}

A release leaves quarantine when its entry is deleted from the file (by
hand, in a reviewed change) -- typically after ``doit lock`` moved the set
to a fixed version, at which point the entry matches nothing locked and
audit notes it as stale.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from .bounded import load_json
from .config import LoadedConfig
from .errors import LockmirrorError
from .fsutil import atomic_write, sha256_bytes
from .manifest import MANIFEST_NAME, Entry, Manifest
from .policy import as_utc

if TYPE_CHECKING:
    from .audit import AuditReport
    from .pages import Release

FORMAT = "lockmirror-quarantine/1"
Key = tuple[NormalizedName, Version]


@dataclass(frozen=True)
class QuarantinedRelease:
    name: NormalizedName
    version: Version
    since: datetime
    reasons: tuple[str, ...]

    @property
    def key(self) -> Key:
        return (self.name, self.version)

    @property
    def release(self) -> str:
        return f"{self.name}=={self.version}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": str(self.version),
                "since": self.since.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "reasons": list(self.reasons)}


@dataclass(frozen=True)
class QuarantineList:
    """The committed list of quarantined releases."""

    releases: Mapping[Key, QuarantinedRelease] = field(default_factory=dict)

    @property
    def keys(self) -> frozenset[Key]:
        """What the index stage must leave out: (normalized name, version)."""
        return frozenset(self.releases)

    def dumps(self) -> str:
        ordered = [self.releases[k] for k in sorted(self.releases)]
        return json.dumps({"format": FORMAT, "releases": [r.to_json() for r in ordered]},
                          indent=1, sort_keys=True) + "\n"

    @classmethod
    def loads(cls, text: str, *, where: str) -> QuarantineList:
        data = load_json(text, where=where)  # InputError (exit 2) if malformed or too deep
        try:
            if data.get("format") != FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
            releases = {}
            for i, entry in enumerate(data["releases"]):
                try:
                    release = QuarantinedRelease(
                        name=canonicalize_name(str(entry["name"])),
                        version=Version(str(entry["version"])),
                        since=as_utc(datetime.fromisoformat(str(entry["since"]))),
                        reasons=tuple(str(r) for r in entry.get("reasons", ())))
                except (KeyError, TypeError, ValueError, InvalidVersion) as exc:
                    raise ValueError(f"releases[{i}]: {exc}") from None
                releases[release.key] = release
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LockmirrorError(f"not a lockmirror quarantine list: {exc}", where=where,
                                  hint="fix or delete the file; `lockmirror audit "
                                       "--quarantine` writes it") from None
        return cls(releases)

    @classmethod
    def read(cls, path: Path) -> QuarantineList:
        """The list at ``path``; an absent file is an empty list."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        return cls.loads(text, where=str(path))

    def write(self, path: Path) -> bool:
        return atomic_write(path, self.dumps(), only_if_changed=True)

    def with_added(self, found: Mapping[tuple[str, str], Iterable[str]], *,
                   now: datetime) -> tuple[QuarantineList, list[QuarantinedRelease]]:
        """This list plus ``found`` ((name, version) -> reasons); also returns
        the releases that were not quarantined before. An entry already
        present keeps its ``since`` and gains new reasons."""
        releases = dict(self.releases)
        added = []
        for (name, version), reasons in sorted(found.items()):
            key = (canonicalize_name(name), Version(version))
            old = releases.get(key)
            if old is None:
                entry = QuarantinedRelease(key[0], key[1], as_utc(now), tuple(sorted(set(reasons))))
                added.append(entry)
            else:
                entry = QuarantinedRelease(key[0], key[1], old.since,
                                           tuple(sorted(set(old.reasons) | set(reasons))))
            releases[key] = entry
        return QuarantineList(releases), added


def release_of(filename: str) -> Key | None:
    """(name, version) of a wheel or sdist filename (a ``.metadata`` file
    belongs to its wheel); None for anything else."""
    filename = filename.removesuffix(".metadata")
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
            return name, version
        if filename.endswith((".tar.gz", ".zip")):
            return parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return None


def files_in_index(manifest: Manifest, releases: Iterable[Key]) -> list[str]:
    """The ``files/<project>/...`` paths of ``releases`` (artifacts and
    their ``.metadata``) that the index's manifest lists, sorted."""
    wanted = set(releases)
    found = []
    for path in manifest.files:
        parts = path.split("/")
        if len(parts) == 3 and parts[0] == "files" and release_of(parts[2]) in wanted:
            found.append(path)
    return sorted(found)


# --------------------------------------------------------------------------
# Taking releases out of a built index, in place
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexChange:
    """What removing releases from an index tree does (or would do)."""

    removed: tuple[str, ...] = ()  # artifacts, .metadata files, pages of emptied projects
    rewritten: tuple[str, ...] = ()  # project pages and root pages written anew
    releases: tuple[str, ...] = ()  # "name==version" found in the tree and taken out


def _releases_from_page(project: str, page: Any, where: str) -> list[Release]:
    """A PEP 691 project page (as the index stage writes it) back into releases."""
    from .pages import IndexFile, Release

    by_version: dict[str, dict[str, Any]] = {}
    try:
        for entry in page["files"]:
            filename = str(entry["filename"])
            key = release_of(filename)
            if key is None:
                raise ValueError(f"cannot tell the version of {filename!r}")
            version = str(key[1])
            release = by_version.setdefault(version, {
                "requires_python": entry.get("requires-python"),
                "yanked": None, "files": []})
            yanked = entry.get("yanked", False)
            if yanked is not False:
                release["yanked"] = "" if yanked is True else str(yanked)
            metadata = entry.get("core-metadata") or entry.get("dist-info-metadata")
            release["files"].append(IndexFile(
                filename=filename, size=int(entry["size"]), sha256=str(entry["hashes"]["sha256"]),
                upload_time=entry.get("upload-time"),
                metadata_sha256=metadata.get("sha256") if isinstance(metadata, dict) else None))
    except (KeyError, TypeError, ValueError) as exc:
        raise LockmirrorError(f"not a PEP 691 project page as lockmirror writes it: {exc}",
                              where=where) from None
    # keep versions as the page wrote them (release_of normalizes "1.0.0" the same way)
    return [Release(project, version, data["requires_python"], data["yanked"],
                    tuple(data["files"])) for version, data in by_version.items()]


def remove_from_index(index_dir: Path, releases: Iterable[Key], *,
                      dry_run: bool = False) -> IndexChange:
    """Take ``releases`` out of the index tree at ``index_dir``, in place.

    Works on any lockmirror index, with no store and no lockfile parsing,
    so it also serves an index imported on the far side of an air gap.
    Rewrites the affected project pages (PEP 503 and 691, via
    :mod:`lockmirror.pages`), the root pages when a project has no release
    left, then ``manifest.json``; only then deletes the files, so no page
    ever links to a missing file. The lockfiles and constraints in the tree
    are left as they are: an install that still asks for a quarantined
    release fails rather than getting something else. The landing page is
    not re-rendered (the next index build does that).

    Cost: reads the manifest and one JSON page per affected project.
    Raises LockmirrorError when the tree has no manifest.
    """
    from .pages import project_html, project_json, root_html, root_json

    wanted = set(releases)
    manifest_path = index_dir / MANIFEST_NAME
    manifest = Manifest.read(manifest_path)
    doomed = files_in_index(manifest, wanted)
    if not doomed:
        return IndexChange()
    projects = sorted({path.split("/")[1] for path in doomed})
    entries = dict(manifest.files)
    writes: list[tuple[str, bytes]] = []
    removed = list(doomed)
    taken: set[str] = set()
    emptied = []
    for project in projects:
        page_rel = f"simple/{project}/index.json"
        try:
            page = json.loads((index_dir / page_rel).read_bytes())
        except (OSError, ValueError) as exc:
            raise LockmirrorError(f"cannot read the project page: {exc}",
                                  where=str(index_dir / page_rel)) from None
        kept = []
        for release in _releases_from_page(project, page, str(index_dir / page_rel)):
            key = (canonicalize_name(release.name), Version(release.version))
            if key in wanted:
                taken.add(f"{key[0]}=={key[1]}")
            else:
                kept.append(release)
        if kept:
            writes.append((f"simple/{project}/index.html", project_html(project, kept).encode()))
            writes.append((page_rel, project_json(project, kept).encode()))
        else:
            emptied.append(project)
            removed += [f"simple/{project}/index.html", page_rel]
    if emptied:
        remaining = sorted({rel.split("/")[1] for rel in entries
                            if rel.startswith("simple/") and rel.count("/") == 2
                            and rel.split("/")[1] not in emptied})
        writes.append(("simple/index.html", root_html(remaining).encode()))
        writes.append(("simple/index.json", root_json(remaining).encode()))
    change = IndexChange(removed=tuple(sorted(set(removed))),
                         rewritten=tuple(sorted(rel for rel, _ in writes)),
                         releases=tuple(sorted(taken)))
    if dry_run:
        return change
    for rel in change.removed:
        entries.pop(rel, None)
    # pages first (each atomically), the manifest next, deletions last
    for rel, data in writes:
        atomic_write(index_dir / rel, data)
        entries[rel] = Entry(sha256_bytes(data), len(data))
    Manifest(files=entries).write(manifest_path)
    for rel in change.removed:
        try:
            (index_dir / rel).unlink()
        except FileNotFoundError:
            pass
    for directory in sorted({(index_dir / rel).parent for rel in change.removed}, reverse=True):
        try:
            directory.rmdir()  # only when empty
        except OSError:
            pass
    return change


# --------------------------------------------------------------------------
# The stage: audit findings -> quarantine list -> index
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class QuarantineResult:
    list_path: Path
    index_dir: Path
    added: tuple[QuarantinedRelease, ...]  # newly on the list
    quarantined: tuple[QuarantinedRelease, ...]  # the whole list after this run
    change: IndexChange
    dry_run: bool
    index_found: bool = True


def apply_quarantine(loaded: LoadedConfig, report: AuditReport, *, now: datetime,
                     dry_run: bool = False, index_dir: Path | None = None) -> QuarantineResult:
    """Quarantine every release the report denies.

    Adds them to the quarantine list (``loaded.quarantine_path``), then takes
    every listed release out of the index (``index_dir``, default the
    configured ``dist-index/``) with :func:`remove_from_index`. With
    ``dry_run`` nothing is written: the result says what would change. An
    index that was not built yet is skipped (the list alone is updated; the
    index stage leaves listed releases out).
    """
    index_dir = index_dir or loaded.index_dir
    current = QuarantineList.read(loaded.quarantine_path)
    updated, added = current.with_added(report.quarantine_candidates(), now=now)
    index_found = (index_dir / MANIFEST_NAME).is_file()
    # the list first: if editing the index fails, the next index build still
    # leaves the listed releases out
    if not dry_run and (added or loaded.quarantine_path.exists()):
        updated.write(loaded.quarantine_path)
    change = (remove_from_index(index_dir, updated.keys, dry_run=dry_run) if index_found
              else IndexChange())
    ordered = tuple(updated.releases[k] for k in sorted(updated.releases))
    return QuarantineResult(loaded.quarantine_path, index_dir, tuple(added), ordered, change,
                            dry_run, index_found)


def render_plan(result: QuarantineResult) -> str:
    """What --quarantine did (or, with --dry-run, would do), for a terminal."""
    verb = "would" if result.dry_run else "did"
    lines = []
    if not result.quarantined:
        return "quarantine: nothing to quarantine\n"
    for release in result.added:
        lines.append(f"quarantine: {verb} add {release.release} to {result.list_path}")
    if not result.index_found:
        lines.append(f"quarantine: no index at {result.index_dir} (nothing to remove there)")
    for rel in result.change.rewritten:
        lines.append(f"quarantine: {verb} rewrite {result.index_dir / rel}")
    for rel in result.change.removed:
        lines.append(f"quarantine: {verb} remove {result.index_dir / rel}")
    taken = ", ".join(result.change.releases) or "none (already out of the index)"
    lines.append(f"quarantine: {len(result.quarantined)} releases on the list; "
                 f"taken out of the index now: {taken}")
    if result.change.removed and not result.dry_run:
        lines.append("quarantine: run `lockmirror publish --prune` (or `doit publish`) to delete "
                     "them remotely; commit the quarantine list so the next index build keeps "
                     "them out")
    return "\n".join(lines) + "\n"
