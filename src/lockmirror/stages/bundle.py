"""The bundle stage: a reproducible tarball that carries a mirror across an air gap.

``build_bundle`` writes ``<out>/lockmirror-<name>-<content id>.tar`` (a delta:
``...-<content id>.delta.tar``) and ``<that>.sha256`` (``sha256sum -c``
format). With ``split`` the tar is cut into volumes ``.tar.001``,
``.tar.002``, ... and the ``.sha256`` file lists each volume's hash. With
``keep`` the mirror's older bundles in ``<out>`` beyond that many are then
removed (:mod:`lockmirror.stages.bundle_retention`).

Layout (every member below one directory, ``lockmirror-<name>-<id>/``)::

    bundle.json          first member: what the bundle is and the sha256 and
                         size of every other member (except the signature)
    bundle.json.sig      optional SSHSIG (Ed25519) signature of bundle.json
    README.txt           how to check, install and import on the far side
    SHA256SUMS           ``sha256sum -c`` list of the members below
    mirror.yaml
    lockfiles/pylock.<set>.toml
    tool/*.whl           lockmirror's wheel and its dependencies' wheels
    index/...            the dist-index tree, ``index/manifest.json`` included
                         (a delta carries only the files whose bytes the
                         base lacks, and the new manifest)

Reproducible: members in a fixed order (the head above, then sorted), GNU
tar headers without pax records, mtime from ``SOURCE_DATE_EPOCH`` (else the
lockfiles' last commit time, else 0), uid/gid 0, no user or group names,
mode 0644/0755 (:mod:`lockmirror.stages.bundle_tar`). The same inputs give the
same bytes wherever and whenever they are built. Plain tar, no compression:
the payload is wheels, which are zip files already (benchmarks/bench_bundle.py
measures gzip and zstd). The format itself (bundle.json, checksum listings)
is :mod:`lockmirror.formats.bundle_format`, reading a bundle
:mod:`lockmirror.formats.bundle_reader`; members become files on disk through
:mod:`lockmirror.stages.bundle_write`, the path the refresh bundle takes too.

The content id is the first 16 hex digits of the sha256 of ``bundle.json``,
which pins every member, so it names the content.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import LockmirrorError
from ..formats.bundle_format import (
    DELTA,
    FORMAT,
    FORMAT_V1,
    FULL,
    INDEX_DIR,
    INDEX_MANIFEST,
    LOCKFILE_DIR,
    MIRROR_YAML_NAME,
    NAME_PATTERN,
    TOOL_DIR,
    TOOL_SBOM,
    BundleInfo,
    parse_size,
)
from ..formats.bundle_reader import DeltaBase, locate_bundle, read_index_manifest
from ..formats.manifest import (
    IMPORT_BUNDLE_MANIFEST,
    IMPORT_BUNDLE_TIME,
    IMPORT_MANIFEST,
    MANIFEST_NAME,
    STATE_DIR,
    Entry,
    Manifest,
)
from ..formats.quarantine_list import removed_releases
from ..fsutil import sha256_bytes
from ..timeutil import source_date_epoch_of
from .bundle_readme import readme_text
from .bundle_retention import Removed, prune_bundles
from .bundle_tar import Member, read_input
from .bundle_write import write_bundle, writing_in
from .import_swap import state_line
from .sbom import tool_sbom
from .tool_set import collect_tool_wheels
from .toolwheels import ToolWheel

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BundleResult:
    """What ``build_bundle`` wrote (or found already current)."""

    parts: tuple[Path, ...]
    checksums: Path
    sha256: tuple[str, ...]
    content_id: str
    kind: str
    base_manifest_sha256: str | None
    size: int
    members: int
    index_files_carried: int
    index_files_total: int
    signed: bool
    source_date_epoch: int
    epoch_source: str
    tool_wheels: int
    changed: bool
    removed: Removed = Removed()  # older bundles taken out of ``out_dir``
    # a delta: "name version" of the releases its base serves and it no longer does
    # (left the lock and the retention window); its import removes them
    removes: tuple[str, ...] = ()
    tool_python: str | None = None  # the Pythons and platforms tool/'s wheels install on
    tool_left_out: tuple[str, ...] = ()  # mirror.yaml's targets lockmirror cannot run on
    # a delta onto an older lockmirror's bundle, retention's (a shallow clone...): for the
    # edge to print
    notes: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        """The bundle (its first volume when split)."""
        return self.parts[0]

    def tool_note(self) -> str | None:
        """What the far side can install lockmirror on (both front doors print it):
        found out here, not after the media crossed the gap."""
        if not self.tool_python:
            return None
        note = f"tool/ installs lockmirror on {self.tool_python}"
        if self.tool_left_out:
            note += (f"; not on {', '.join(self.tool_left_out)} (a Python or platform "
                     "lockmirror does not run on): there the far side checks and unpacks the "
                     "bundle by hand, as its README.txt says")
        return note


def build_bundle(index_dir: Path, *, lockfile_dir: Path, mirror_yaml: Path, out_dir: Path,
                 name: str, since: Path | None = None, split: int | str | None = None,
                 key: Path | None = None, source_date_epoch: int | None = None,
                 tool: bool | None = None, cache_dir: Path | None = None,
                 store_dir: Path | None = None, keep: int = 0,
                 extra: Sequence[tuple[str, bytes]] = (),
                 progress: Progress | None = None, store: Any = None,
                 built_from: Sequence[Path] | None = None) -> BundleResult:
    """Write a reproducible bundle of ``index_dir`` into ``out_dir``.

    ``since`` (a manifest.json, a mirror dir or a previous bundle) makes a
    delta; ``split`` (bytes or ``700M``/``4G``) cuts volumes; ``key`` (an
    Ed25519 private key, OpenSSH or PEM) signs bundle.json. ``tool`` carries
    lockmirror's wheels (default: in full bundles, not in deltas), with the
    dependency wheels the tool set's lockfile chose, from the store at
    ``store_dir`` (or, ``LOCKMIRROR_TOOL_WHEELS=installed``, repacked into
    ``cache_dir``): :func:`lockmirror.stages.tool_set.collect_tool_wheels`.
    ``keep`` > 0 then removes this mirror's older bundles from ``out_dir``
    beyond the newest ``keep`` (:mod:`lockmirror.stages.bundle_retention`).
    ``extra``: more top-level members, (name, bytes), such as the advisory
    snapshot ``advisories.json`` the bundle was audited with.
    ``store``: the S3 store an index built from ``store: s3://...`` names its
    ``files/`` entries in; they are streamed from it into the tar. ``built_from``:
    the sets' lockfiles the index must have been built from (else LockmirrorError).

    Every index file is taken at the sha256 and size manifest.json gives
    them; its size is checked, its bytes are not re-hashed: the import
    hashes every member against bundle.json (:mod:`.bundle_tar`).

    Raises LockmirrorError (or BundleError) when an input is missing, an
    index file is not of the manifest's size, or a tool wheel is not locked,
    fetched or intact; nothing is left in ``out_dir`` then. Costs one read and one
    sha256 pass (the volume's) over every carried byte; an existing
    identical bundle is recognised from its first member and left alone.
    """
    if not re.fullmatch(NAME_PATTERN, name):
        raise LockmirrorError(f"bad bundle name {name!r}", hint="letters, digits, '.', '_', '-'")
    volume_size = parse_size(split) if split is not None else None
    stamp, epoch_source = source_date_epoch_of(source_date_epoch, lockfile_dir)
    epoch = 0 if stamp is None else stamp  # the SBOM's time (stamp): none when none is known
    kind = DELTA if since is not None else FULL
    with_tool = (kind == FULL) if tool is None else tool
    manifest_bytes = read_input(index_dir / MANIFEST_NAME, hint="build the index first")
    manifest = Manifest.loads(manifest_bytes.decode("utf-8"), where=str(index_dir / MANIFEST_NAME))
    if built_from is not None:
        _check_built_from(manifest, built_from, index_dir)
    base = load_delta_base(since) if since is not None else None
    base_sha = base.sha256 if base else None
    carried, removes = _carried(manifest, base)
    manifest_sha = sha256_bytes(manifest_bytes)
    members, tool_python = _gather(
        index_dir, carried, lockfile_dir=lockfile_dir, mirror_yaml=mirror_yaml,
        index_manifest=Member(INDEX_MANIFEST, data=manifest_bytes,
                              entry=Entry(manifest_sha, len(manifest_bytes))),
        with_tool=with_tool,
        cache_dir=cache_dir, store_dir=store_dir, progress=progress, store=store,
        sbom=lambda wheels: tool_sbom(wheels, mirror_name=name, tool_version=__version__,
                                      source_date_epoch=stamp))
    members += [Member(member_name, data=data) for member_name, data in extra]
    provisional = BundleInfo(
        name=name, kind=kind, index_manifest_sha256=manifest_sha,
        base_manifest_sha256=base_sha, lockmirror_version=__version__,
        tool_python=tool_python, files={})
    with writing_in(out_dir, name):
        written = write_bundle(provisional, members, readme_text(provisional, removes),
                               out_dir=out_dir, epoch=epoch, key=key, volume_size=volume_size,
                               progress=progress)
        if not written.changed and keep:
            os.utime(written.checksums)  # the newest bundle, for the next prune
        removed = prune_bundles(out_dir, name, current=written.info.filename, keep=keep,
                                base_manifest_sha256=base_sha)
    return BundleResult(
        parts=written.parts, checksums=written.checksums, sha256=written.sha256,
        content_id=written.info.content_id, kind=kind, base_manifest_sha256=base_sha,
        size=written.size, members=written.members, index_files_carried=len(carried),
        index_files_total=len(manifest.files), signed=written.signed,
        source_date_epoch=epoch, epoch_source=epoch_source,
        tool_wheels=sum(1 for m in members if m.name.startswith(f"{TOOL_DIR}/")),
        changed=written.changed, removed=removed, removes=removes, tool_python=tool_python,
        notes=_older_base_notes(base, since, with_tool=with_tool))


def _check_built_from(manifest: Manifest, lockfiles: Sequence[Path], index_dir: Path) -> None:
    """Refuse to bundle an index (its ``manifest``) not built from ``lockfiles`` (each
    set's of mirror.yaml): each, relocated as the index copies it, must be the index's
    ``lockfiles/`` copy, and the index must hold no other. Else the far side got
    lockfiles and mirror.yaml that do not describe the index it serves (a lock
    after the last ``doit index``; found by an outside tester). LockmirrorError
    naming the lockfiles."""
    from ..formats.mirror_lockfile import relocate_lockfile

    indexed = {rel.removeprefix(f"{LOCKFILE_DIR}/"): entry.sha256
               for rel, entry in manifest.files.items() if rel.startswith(f"{LOCKFILE_DIR}/")}
    differ = []
    for path in sorted(lockfiles):
        copy = relocate_lockfile(read_input(path, hint="run `doit lock`"), where=str(path))
        if indexed.pop(path.name, None) != sha256_bytes(copy):
            differ.append(path.name)
    if differ or indexed:
        raise LockmirrorError(
            "the index was not built from today's lockfiles ("
            + ", ".join([*differ, *(f"{name} no longer locked" for name in sorted(indexed))])
            + ")", where=str(index_dir), hint="run `doit index` (or `lockmirror index`) first")


def load_delta_base(since: Path) -> DeltaBase:
    """The base a delta starts from. ``since`` is a ``manifest.json``, a mirror
    directory holding one, or a previous bundle (``.tar`` or a volume). An imported
    mirror's deltas apply onto the manifest its last bundle pinned (the import records
    it: a refresh bundle edits ``manifest.json``), as the far side checks them."""
    if since.is_dir():
        since = since / MANIFEST_NAME
    if since.name.endswith(".json"):
        try:
            data = since.read_bytes()
        except OSError as exc:
            raise LockmirrorError(f"cannot read base manifest: {exc.strerror}",
                                  where=str(since)) from None
        return DeltaBase(Manifest.loads(data.decode("utf-8"), where=str(since)),
                         state_line(since.parent, IMPORT_BUNDLE_MANIFEST) or sha256_bytes(data),
                         mirror=since.parent)
    return read_index_manifest(locate_bundle([since]))


def _older_base_notes(base: DeltaBase | None, since: Path | None, *,
                      with_tool: bool) -> tuple[str, ...]:
    """What a delta onto a base an older lockmirror wrote or imported must say: that
    lockmirror may be the far side's, and one from before this delta's format refuses
    it. A bundle of format /1 is one; so is a mirror directory whose last import or
    refresh recorded neither its bundle's time nor manifest.json, as none before /2 did
    (nor the first lockmirrors that wrote /2: so the note says "may")."""
    if base is None or since is None:
        return ()
    if base.bundle is not None:
        if base.bundle.format_read != FORMAT_V1:
            return ()
        made = (f"the base bundle {since.name} was written by an older lockmirror "
                f"(format {FORMAT_V1}); a far side still on that lockmirror refuses this "
                f"delta ({FORMAT})")
    else:
        mirror = base.mirror or since.parent
        if not os.path.lexists(mirror / IMPORT_BUNDLE_MANIFEST) or any(
                os.path.lexists(mirror / rel) for rel in (IMPORT_BUNDLE_TIME, IMPORT_MANIFEST)):
            return ()
        made = (f"the base mirror {mirror} was imported by an older lockmirror (its "
                f"{STATE_DIR}/ records no bundle-time); a far side still on that lockmirror "
                f"may refuse this delta ({FORMAT}; one from before that format does)")
    return (f"{made}, so it needs this lockmirror first: " + (
        "this delta carries it in tool/" if with_tool else
        "from a full bundle's tool/ (this delta carries none; --tool adds it)"),)


def _carried(manifest: Manifest, base: DeltaBase | None,
             ) -> tuple[dict[str, Entry], tuple[str, ...]]:
    """The index files to carry and the releases the ``base`` serves that
    ``manifest`` does not: all files (a full bundle: no base), or for a delta the files
    whose bytes the base lacks (new or changed; the importer takes the rest from the
    base by sha256, pages included) and what its import removes."""
    if base is None:
        return dict(manifest.files), ()
    have = {entry.sha256 for entry in base.manifest.files.values()}
    removes = removed_releases(base.manifest.files, manifest.files)
    return {path: entry for path, entry in manifest.files.items()
            if entry.sha256 not in have}, removes


def _gather(index_dir: Path, carried: Mapping[str, Entry], *, lockfile_dir: Path,
            mirror_yaml: Path, index_manifest: Member, with_tool: bool,
            cache_dir: Path | None, store_dir: Path | None,
            progress: Progress | None, sbom: Callable[[Sequence[ToolWheel]], bytes],
            store: Any = None) -> tuple[list[Member], str | None]:
    """Every member but the head, README and SHA256SUMS (with the tool wheels, their
    SBOM ``tool.cdx.json`` made by ``sbom``); and the tool wheels' Python."""
    members = [Member(MIRROR_YAML_NAME, data=read_input(mirror_yaml))]
    lockfiles = sorted(lockfile_dir.glob("pylock.*.toml"))
    if not lockfiles:
        raise LockmirrorError("no pylock.*.toml lockfiles here", where=str(lockfile_dir),
                              hint="run `doit lock`")
    members += [Member(f"{LOCKFILE_DIR}/{path.name}", data=read_input(path))
                for path in lockfiles]
    tool_python = None
    if with_tool:
        if progress:
            progress("collecting lockmirror's wheels")
        wheels = collect_tool_wheels(cache_dir, progress=progress, lockfile_dir=lockfile_dir,
                                     store_dir=store or store_dir)
        members += [Member(f"{TOOL_DIR}/{wheel.filename}", data=wheel.data,
                           entry=Entry(wheel.sha256, len(wheel.data)))
                    for wheel in sorted(wheels.wheels, key=lambda w: w.filename)]
        members.append(Member(TOOL_SBOM, data=sbom(wheels.wheels)))
        tool_python = wheels.python
    members.append(index_manifest)
    for rel, entry in sorted(carried.items()):
        path = index_dir / rel
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            if store is not None and rel.startswith("files/"):  # an S3 store's object
                _check_object(store, rel, entry)
                members.append(Member(f"{INDEX_DIR}/{rel}", entry=entry, store=store))
                continue
            raise LockmirrorError("listed in manifest.json but missing", where=str(path),
                                  hint="rebuild the index") from None
        if size != entry.size:
            raise LockmirrorError(f"size {size} differs from manifest.json ({entry.size})",
                                  where=str(path), hint="rebuild the index")
        members.append(Member(f"{INDEX_DIR}/{rel}", path=path, entry=entry))
    return members, tool_python


def _check_object(store: Any, rel: str, entry: Entry) -> None:
    """An index file held by the S3 store must be there with the manifest's size."""
    size = store.size_of(entry.sha256)
    if size != entry.size:
        found = "missing" if size is None else f"{size} bytes, manifest.json says {entry.size}"
        raise LockmirrorError(f"{rel} is {found} in the store",
                              where=f"{store.url} sha256 {entry.sha256}", hint="run `doit fetch`")
