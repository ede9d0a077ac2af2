"""What an index is built from: lockfiles as package sets, grouped into projects.

:func:`hash_lockfiles` hashes each lockfile (one whose stat is unchanged keeps
the hash the last run recorded); :func:`read_sets` turns each into a
:class:`PackageSet` of :class:`Row` values, the plain data the index stage
renders and links from. A lockfile is parsed and validated
(:meth:`Lockfile.loads`) once: its rows are then kept beside the index's
state, named by the lockfile's sha256 (:func:`keep_rows`), and later runs
read them instead, as dumb-pypi takes the previous package list. Names and
file names that would be unsafe in a path are refused here.
:func:`group_projects` and :func:`merge_project` give each project's rows over
every set and its releases; :func:`set_summary` a set's landing-page summary,
:func:`lockfile_copy` its lockfile as the index serves it, :func:`set_record`
what its files depend on, :func:`fetch_hint` the command that fetches files
the store lacks, naming the sets that lock them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import InputError, IntegrityError, LockmirrorError, NotFoundError
from ..formats.landing_page import SetPackage, SetSummary, SetTarget
from ..formats.mirror_lockfile import COPY_FORMAT, relocate_document, relocate_lockfile
from ..formats.pages import IndexFile, Release
from ..fsutil import atomic_write, sha256_bytes
from ..timeutil import as_utc
from .fetch_plan import fetch_command
from .index_fs import read_json, stat_key

if TYPE_CHECKING:
    from packaging.version import Version

    from ..formats.lockfile import LockedPackage, Lockfile
    from ..formats.url_policy import UrlRule

# Bump when what a row holds changes: rows kept by earlier runs are then not used.
ROWS_FORMAT = "lockmirror-index-rows/1"

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_SET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_FILENAME_BAD = re.compile(r"[/\\\x00-\x1f]")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


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
class LockfileInput:
    """A lockfile given to the index: its stat (to skip hashing an unchanged
    one) and sha256; its bytes once read."""

    path: Path
    stat_key: list[int]
    sha256: str
    data: bytes | None = None

    def read(self) -> bytes:
        if self.data is None:
            self.data = self.path.read_bytes()
        return self.data


@dataclass
class PackageSet:
    """A package set: its lockfile and the package rows it locks."""

    name: str
    input: LockfileInput
    requirements: tuple[str, ...]
    targets: tuple[SetTarget, ...]
    input_hash: str
    rows: list[Row]
    kept: bool = False  # read from the rows an earlier run kept (not parsed)
    # the lockfile's TOML when parsed in this run, for its mirror copy (no second parse)
    document: dict[str, Any] | None = None
    lockfile: Lockfile | None = None  # the same, read by the SBOMs (relocation leaves it be)
    checked: str = ""  # the key of the URL rule its file URLs were checked under
    kept_for: str = ""  # an earlier revision retention keeps: what the landing page says


def hash_lockfiles(paths: list[Path], previous: dict[str, list[Any]], *,
                   by_name: bool = True) -> list[LockfileInput]:
    """Each lockfile's sha256, sorted by file name (``by_name`` False: in the
    order given, as retention gives its revisions, newest first): read and
    hashed only when its stat (size, mtime, ctime, inode) differs from the last run's."""
    found = []
    for path in paths:
        stamp = stat_key(path)
        if stamp is None:
            raise NotFoundError("lockfile is missing", where=str(path), hint="run `doit lock`")
        before = previous.get(str(path))
        if isinstance(before, list) and before[:4] == stamp and isinstance(before[4], str):
            found.append(LockfileInput(path, stamp, before[4]))
        else:
            data = path.read_bytes()
            found.append(LockfileInput(path, stamp, sha256_bytes(data), data))
    return sorted(found, key=lambda i: (i.path.name, str(i.path))) if by_name else found


def read_sets(inputs: list[LockfileInput], rows_dir: Path, *, full: bool,
              url_rule: UrlRule | None = None, unique: bool = True) -> list[PackageSet]:
    """Every lockfile as a set, sorted by name (a stable sort: the revisions of
    one set stay in the order given): from the rows it gave before
    (kept in ``rows_dir`` by its sha256, checked under the same ``url_rule``)
    unless ``full``, else parsed, validated and checked against ``url_rule``.
    Raises LockmirrorError for an invalid lockfile or (``unique``: not for
    retained revisions) a set locked twice,
    UrlPolicyError for a file URL the rule refuses."""
    checked = url_rule.key if url_rule else ""
    sets = []
    for item in inputs:
        known = None if full else read_rows(rows_dir, item, checked)
        sets.append(known or parse_set(item, url_rule))
    sets.sort(key=lambda s: s.name)
    seen: dict[str, Path] = {}
    for locked in sets if unique else ():
        if locked.name in seen:
            raise LockmirrorError(f"set '{locked.name}' is also locked in {seen[locked.name]}",
                                  where=str(locked.input.path))
        seen[locked.name] = locked.input.path
    return sets


def read_rows(rows_dir: Path, item: LockfileInput, checked: str) -> PackageSet | None:
    """The set a lockfile with these bytes gave before, its URLs checked under
    the rule keyed ``checked``; None when not kept."""
    data = read_json(rows_dir / f"{item.sha256}.json")
    if data is None or data.get("format") != ROWS_FORMAT or data.get("checked") != checked:
        return None
    try:
        rows = [Row(name, version, requires_python, yanked, tuple(targets), build_only, source,
                    tuple(RowFile(*file) for file in files))
                for name, version, requires_python, yanked, targets, build_only, source, files
                in data["rows"]]
        return PackageSet(name=data["set"], input=item, requirements=tuple(data["requirements"]),
                    targets=tuple(SetTarget(t[0], t[1], t[2], tuple(t[3]))
                                  for t in data["targets"]),
                    input_hash=data["input_hash"], rows=rows, kept=True, checked=checked)
    except (KeyError, TypeError, ValueError):
        return None


def parse_set(item: LockfileInput, url_rule: UrlRule | None = None) -> PackageSet:
    """Parse and validate a lockfile (:meth:`Lockfile.loads`) into a set,
    after checking its file URLs against ``url_rule``."""
    from ..formats.bounded import load_toml
    from ..formats.lockfile import (
        Lockfile,  # only when a lockfile changed: packaging.pylock is slow to load
    )

    where = str(item.path)
    try:
        text = item.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text: {exc}", where=where) from None
    document = load_toml(text, where=where)
    if url_rule is not None:
        url_rule.check(document, item.path)
    lock = Lockfile.from_toml(document, where=where)
    rows = [_row(package, where) for package in lock.packages]
    if not _SET_RE.match(lock.set_name or ""):
        raise InputError(f"set name {lock.set_name!r} is missing or unsafe", where=where)
    for target in lock.targets:
        if not _SET_RE.match(target.name):
            raise InputError(f"target name {target.name!r} is unsafe", where=where)
    return PackageSet(name=lock.set_name, input=item, requirements=tuple(lock.requirements),
                targets=tuple(SetTarget(t.name, t.python, t.implementation, tuple(t.platforms))
                              for t in lock.targets),
                input_hash=lock.input_hash, rows=rows, document=document, lockfile=lock,
                checked=url_rule.key if url_rule else "")


def _row(package: LockedPackage, where: str) -> Row:
    """A package as a row; refuses names and file names unsafe in a path."""
    if not _NAME_RE.match(package.name):
        raise InputError(f"package name {package.name!r} is not a normalized name",
                         where=where, hint="re-create the lockfile with `doit lock`")
    files = []
    for file in package.files:
        if (not file.filename or file.filename.startswith(".")
                or _FILENAME_BAD.search(file.filename)):
            raise InputError(f"unsafe file name {file.filename!r} for {package.name}",
                             where=where)
        if not _SHA256_RE.match(file.sha256 or ""):
            raise InputError(f"{file.filename}: sha256 {file.sha256!r} is not 64 hex digits"
                             if file.sha256 else f"{file.filename} has no sha256", where=where)
        if file.size < 0:  # packaging.pylock took it as an int
            raise InputError(f"{file.filename}: size {file.size!r} is not a byte count",
                             where=where)
        metadata = (file.metadata_sha256 or "").lower() if file.is_wheel else ""
        if metadata and not _SHA256_RE.match(metadata):  # it names a store file: no paths
            raise InputError(f"{file.filename} has an invalid metadata sha256",
                             where=where)
        files.append(RowFile(file.filename, int(file.size), file.sha256, _iso(file.upload_time),
                             metadata or None))
    return Row(package.name, str(package.version), package.requires_python, package.yanked,
               tuple(package.targets), bool(package.build_only), package.index,
               tuple(sorted(files)))


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return as_utc(moment).replace(tzinfo=None).isoformat() + "Z"


def keep_rows(rows_dir: Path, sets: list[PackageSet]) -> None:
    """Keep each set's rows in ``rows_dir`` for the next run (named by its
    lockfile's sha256), and only those."""
    rows_dir.mkdir(parents=True, exist_ok=True)
    for locked in sets:
        if not locked.kept:
            write_rows(rows_dir / f"{locked.input.sha256}.json", locked)
    current = {f"{s.input.sha256}.json" for s in sets}
    for entry in os.listdir(rows_dir):
        if entry not in current:
            os.unlink(rows_dir / entry)


def write_rows(path: Path, locked: PackageSet) -> None:
    """Keep a set's rows for the next run, named by its lockfile's sha256."""
    data = {"format": ROWS_FORMAT, "set": locked.name, "checked": locked.checked,
            "requirements": locked.requirements, "input_hash": locked.input_hash,
            "targets": [[t.name, t.python, t.implementation, t.platforms]
                        for t in locked.targets],
            "rows": locked.rows}
    atomic_write(path, json.dumps(data), fsync=False)


# (the set as messages name it, row) for each set (or retained revision) locking the project
ProjectRows = list[tuple[str, Row]]


def group_projects(sets: list[PackageSet], exclude: frozenset[tuple[str, str]],
                    ) -> dict[str, tuple[str, ProjectRows]]:
    """Project -> (digest of its rows, its rows), sets in name order;
    excluded releases left out."""
    grouped: dict[str, ProjectRows] = {}
    keyed: dict[str, list[tuple[str, Row]]] = {}  # what the digest covers: no revision's note
    for locked in sets:
        label = f"set '{locked.name}'" + (f" ({locked.kept_for})" if locked.kept_for else "")
        for row in locked.rows:
            if (row.name, row.version) not in exclude:
                grouped.setdefault(row.name, []).append((label, row))
                keyed.setdefault(row.name, []).append((locked.name, row))
    return {name: (sha256_bytes(json.dumps(keyed[name]).encode()), rows)
            for name, rows in sorted(grouped.items())}


def merge_project(name: str, rows: ProjectRows) -> list[Release]:
    """A project's releases over every set; a file locked twice must agree."""
    versions: dict[str, dict[str, Any]] = {}
    origin: dict[str, tuple[str, str]] = {}  # filename -> (sha256, the set as named)
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
                    f"{filename} is locked with sha256 {first[0][:12]}... in "
                    f"{first[1]} and {sha256[:12]}... in {set_name}",
                    hint="re-lock both sets from the same index")
            origin[filename] = (sha256, set_name)
            known = release["files"].get(filename)
            if known is None or (known.metadata_sha256 is None and metadata):
                release["files"][filename] = IndexFile(filename, size, sha256, upload_time,
                                                       metadata)
    return [Release(name, version, data["requires_python"], data["yanked"],
                    tuple(data["files"][f] for f in sorted(data["files"])))
            for version, data in sorted(versions.items())]


def set_summary(locked: PackageSet, excluded: frozenset[tuple[str, str]],
                kept: Iterable[PackageSet] = (),
                locked_elsewhere: Iterable[tuple[str, str]] = ()) -> SetSummary:
    """A set's part of the landing page; the releases of its ``kept`` (retained)
    revisions that its current lock does not name, marked with why they stay
    (by the first revision naming one: ``kept`` newest first, the one keeping it longest),
    unless another set locks them now (``locked_elsewhere``: they do not leave
    with the next lock, so they are not this set's to keep). The set's size is
    that of its current lock's files the mirror serves (``excluded`` left out)."""
    packages = []
    sizes: dict[str, int] = {}
    current = {(row.name, row.version) for row in locked.rows} | set(locked_elsewhere)
    rows = [(row, "") for row in locked.rows]
    for revision in kept:
        if revision.name == locked.name:
            rows += [(row, revision.kept_for) for row in revision.rows
                     if (row.name, row.version) not in current]
            current |= {(row.name, row.version) for row in revision.rows}
    for row, kept_for in rows:
        if not kept_for and (row.name, row.version) not in excluded:  # what is served
            for file in row.files:
                sizes[file.sha256] = file.size
        packages.append(SetPackage(name=row.name, version=row.version, targets=row.targets,
                                   size=sum(f.size for f in row.files), files=len(row.files),
                                   build_only=row.build_only, yanked=row.yanked,
                                   quarantined=(row.name, row.version) in excluded,
                                   kept_for=kept_for or None))
    packages.sort(key=lambda p: (p.name, p.version))
    return SetSummary(name=locked.name, requirements=locked.requirements,
                      targets=locked.targets, packages=tuple(packages),
                      input_hash=locked.input_hash, total_size=sum(sizes.values()))


def lockfile_copy(locked: PackageSet) -> bytes:
    """``lockfiles/pylock.<set>.toml``: the lockfile with its files pointing at the
    mirror's own (relative PEP 751 paths), so it installs behind the gap."""
    where = str(locked.input.path)
    if locked.document is not None:  # parsed (and validated) in this run
        return relocate_document(locked.document, locked.input.read(), where=where)
    return relocate_lockfile(locked.input.read(), where=where)


def set_record(locked: PackageSet, exclude: frozenset[tuple[str, str]]) -> list[Any]:
    """What a set's files depend on besides its name: its lockfile, the
    releases of it left out and what lays out the lockfile copy."""
    excluded = {(row.name, row.version) for row in locked.rows} & exclude
    return [locked.input.sha256, sorted([name, version] for name, version in excluded),
            COPY_FORMAT]


def fetch_hint(sets: Iterable[PackageSet], missing: Collection[str]) -> str:
    """The hint for locked files the store lacks (``missing``: their sha256, a
    wheel's metadata file's too): :func:`~lockmirror.stages.fetch_plan.fetch_command`
    of the sets that lock them."""
    return fetch_command({locked.name for locked in sets for row in locked.rows
                          for file in row.files
                          if file.sha256 in missing or file.metadata_sha256 in missing})


def constraint_pins(rows: Iterable[Row], target: str) -> list[tuple[str, str]]:
    """A target's ``name==version`` pins: the runtime ones, and a build-only one
    only where its name has no other version (a build may need another version
    of a runtime pin; pip constraints reach no isolated build anyway)."""
    mine = [row for row in rows if target in row.targets]
    runtime = {row.name for row in mine if not row.build_only}
    versions: dict[str, set[str]] = {}
    for row in mine:
        versions.setdefault(row.name, set()).add(row.version)
    return [(row.name, row.version) for row in mine
            if not row.build_only or (row.name not in runtime and len(versions[row.name]) == 1)]


def hashed_pins(rows: Iterable[Row], target: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """A target's locked closure for ``pip install --require-hashes -r``: each runtime
    release, sorted, with the sha256 of every file the lockfile locks for it. Build-only
    releases are left out (they are no part of what installs; pip builds an sdist in an
    environment of its own). A release's wheels for the set's other targets are in too,
    as pip-compile --generate-hashes lists every file: pip takes only a file its
    interpreter accepts, and the lockfile records no ABI to tell a free-threaded
    target's wheels from the others by."""
    hashes: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        if target in row.targets and not row.build_only:
            hashes.setdefault((row.name, row.version), set()).update(f.sha256 for f in row.files)
    return [(name, version, tuple(sorted(digests)))
            for (name, version), digests in sorted(hashes.items())]


def normalized_releases(releases: Iterable[tuple[str, Version | str]],
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
