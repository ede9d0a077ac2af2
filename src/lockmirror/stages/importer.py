"""The import stage: a bundle becomes a verified mirror directory, with no network.

``import_bundle(paths, into)``:

1. finds the bundle's volumes and their ``.sha256`` listing, takes the
   directory lock, resolves what a killed earlier import left
   (:mod:`lockmirror.stages.import_swap`), then reads ``bundle.json`` and
   checks its signature, once (:mod:`lockmirror.stages.import_open`);
2. vets every tar header against ``bundle.json``, and the index
   manifest it pins, before a byte is extracted (:mod:`lockmirror.stages.import_plan`:
   regular files and directories only, no absolute names or ``..``, nothing
   unlisted or twice, tarfile's ``data`` filter where Python has it);
3. streams the tar once, front to back, into a staging directory beside
   ``into`` (same filesystem), each chunk hashed into its volume's sha256
   and its member's sha256 (:mod:`lockmirror.stages.import_extract`); a delta
   hard-links the files it does not carry from the current mirror, each
   hashed against the manifest first;
4. checks the staged tree against the manifest, then swaps it into place
   with two renames and removes the old tree.

Any failure removes the staging directory and leaves ``into`` as it was;
the error names the member or volume at fault. An import killed at any
point leaves a staging or old directory, which the next import (or
:func:`recover_interrupted_import`) resolves first; the previous good
mirror is never lost. Importing what ``into`` already holds is a no-op
that still checks the bundle's outer sha256 (a damaged copy is refused
even then) and records the bundle's time and, with ``pubkey``, the signer
as any import does. A bundle dated before the last one imported is refused
before anything changes, unless ``allow_older``
(:func:`lockmirror.stages.import_state.check_bundle_time`); so is one whose
advisories were taken before those the mirror holds (a bundle replayed after
a refresh bundle: :func:`lockmirror.stages.import_state.check_advisories_time`;
the bundle's small ``advisories.json`` is read while planning, as the index
manifest is, so a refused bundle costs no extraction). The quarantine list a
refresh bundle left holds for a bundle that brings no newer advisories (a delta
carries none): the releases it lists are taken out of the staged tree before the
swap, as the refresh took them out
(:func:`lockmirror.stages.import_quarantine.quarantine_staged`); a full bundle
whose advisories were taken after the mirror's lifts it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from stat import S_ISREG

from ..errors import BundleError, LockmirrorError
from ..formats.bundle_format import ADVISORIES, DELTA, INDEX_DIR
from ..formats.bundle_reader import BundleSource, ConcatenatedReader
from ..formats.manifest import (
    IMPORT_BUNDLE_MANIFEST,
    IMPORT_MANIFEST,
    MANIFEST_NAME,
    Entry,
    Manifest,
    check_tree,
)
from ..formats.quarantine_list import Key, QuarantineList, removed_releases
from ..fsutil import format_size, make_served_dirs, sha256_bytes
from .import_extract import extract
from .import_open import OpenedImport, opened_import
from .import_plan import INDEX_PREFIX, REFUSED, ImportPlan, plan_import, refusal
from .import_quarantine import (
    TreeEdit,
    edited_pages,
    held_quarantine,
    quarantine_staged,
    quarantined_files,
)
from .import_refresh import RefreshResult, refresh_opened
from .import_state import (
    bundle_manifest_sha256,
    bundle_name,
    bundle_snapshot_taken,
    check_advisories_time,
    check_bundle_time,
    held_snapshot,
    keep_bundle_state,
    manifest_record,
    record_held_bundle,
    snapshot_current,
    state_members,
    write_state,
)
from .import_swap import link_or_copy, replacing_tree, staging_dir

__all__ = ["ImportResult", "import_any", "import_bundle"]

REWRITTEN_HINT = ("the mirror's quarantine list (its last refresh bundle) rewrote that page, "
                  "and this delta was made against the tree before: import a delta made "
                  "after the refresh bundle, or a full bundle; nothing was changed")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ImportResult:
    """What ``import_bundle`` did."""

    into: Path
    changed: bool
    kind: str
    name: str
    content_id: str
    index_manifest_sha256: str
    files: int              # files in the mirror now (manifest entries)
    extracted: int          # written from the bundle
    linked: int             # reused from the previous mirror (delta)
    bytes_extracted: int
    signed: bool
    signer: str | None      # fingerprint of the key that was checked, if any
    data_filter: bool       # whether tarfile's data filter vetted the members too
    recovered: str | None   # how an interrupted earlier import was resolved
    # the previous tree could not be removed after the swap: where it is, how to remove it
    leftover: str | None = None
    # "name version" of the releases the mirror held before and no longer serves
    removed_releases: tuple[str, ...] = ()
    # what the mirror's quarantine list took out of the bundle's tree (None: nothing)
    kept_out: TreeEdit | None = None


@dataclass(frozen=True)
class _Built:
    """What building and swapping in the new tree did."""

    extracted: int
    linked: int
    bytes_extracted: int
    manifest: Manifest            # the tree's (the bundle's, less what the list keeps out)
    kept_out: TreeEdit | None
    leftover: str | None          # the previous tree, left where it could not be removed


def import_bundle(paths: Sequence[Path], into: Path, *, pubkey: Path | None = None,
                  progress: Progress | None = None, renamed: bool = False,
                  allow_older: bool = False) -> ImportResult:
    """Import a bundle (one ``.tar`` or all its volumes) into the mirror ``into``.

    With ``pubkey`` an unsigned bundle, or one signed by another key, is
    refused. A bundle of another mirror name than the one ``into`` holds is
    refused unless ``renamed`` (the mirror's name changed); a mirror whose
    last bundle's signature was checked takes no import without ``pubkey``;
    a bundle dated before the last one imported is refused unless
    ``allow_older`` (going back on purpose).
    Missing parent
    directories of ``into`` are created (and removed again if the import
    fails). Raises BundleError naming the member or
    volume at fault (the mirror is then exactly as before), LockmirrorError
    for unusable arguments. Costs one sequential read of the bundle, two sha256 passes
    over it (members; volumes) and one write of every carried index file;
    when ``into`` already holds this bundle's index, the same read and hashing
    (every member is still proved), one sha256 pass over the mirror's files (one
    altered in place is extracted again) and nothing written.
    """
    with opened_import(paths, into, pubkey) as opened:
        return _import(opened, progress, renamed=renamed, allow_older=allow_older)


def import_any(paths: Sequence[Path], into: Path, *, now: datetime,
               pubkey: Path | None = None, progress: Progress | None = None,
               renamed: bool = False, allow_older: bool = False
               ) -> ImportResult | RefreshResult:
    """What ``lockmirror import`` runs: a refresh bundle (``bundle.json`` says so) as
    :func:`~lockmirror.stages.import_refresh.refresh_opened` imports it (at ``now``;
    ``progress`` and ``renamed`` are for the others), any other as
    :func:`import_bundle` does. The signature is checked once, under the import
    lock, before ``bundle.json`` is parsed to tell which
    (:func:`~lockmirror.stages.import_open.opened_import`). Raises and costs what
    the one it runs does."""
    with opened_import(paths, into, pubkey) as opened:
        if opened.head.info.kind == ADVISORIES:
            return refresh_opened(opened, now=now, allow_older=allow_older)
        return _import(opened, progress, renamed=renamed, allow_older=allow_older)


def _check_destination(into: Path) -> None:
    """Refuse a destination that is a mount point, or holds something other than a
    mirror (one that is a file was refused when the import opened)."""
    if not into.is_dir():
        return
    if os.stat(into).st_dev != os.stat(into.parent).st_dev:
        raise LockmirrorError(
            "is a mount point, so the new tree cannot be swapped in atomically", where=str(into),
            hint=f"import into a directory inside it, e.g. {into / 'mirror'}")
    if not (into / MANIFEST_NAME).is_file() and any(into.iterdir()):
        raise LockmirrorError("is not empty and holds no manifest.json; refusing to replace it",
                              where=str(into), hint="import into a new or empty directory")


def _import(opened: OpenedImport, progress: Progress | None, *, renamed: bool,
            allow_older: bool) -> ImportResult:
    """Of a bundle :func:`opened_import` opened (the lock held): check the destination,
    plan, then either prove the no-op or build, check and swap in the new tree."""
    source, into, recovered = opened.source, opened.into, opened.recovered
    _check_destination(into)
    with source.open() as reader:
        plan = plan_import(source, opened.head, reader, staging_dir(into))
        info = plan.info
        held = bundle_name(into)
        if held is not None and held != info.name and not renamed:
            raise LockmirrorError(
                f"holds the mirror '{held}'; this bundle is of the mirror '{info.name}'",
                where=str(into), hint="import it into its own directory, or pass --renamed "
                                      "if the mirror was renamed; nothing was changed")
        listed = _check_order(plan, reader, into, source.display, progress,
                              allow_older=allow_older)

        def result(changed: bool, built: _Built | None = None,
                   removed: tuple[str, ...] = ()) -> ImportResult:
            return ImportResult(
                into=into, changed=changed, kind=info.kind, name=info.name,
                content_id=info.content_id, index_manifest_sha256=info.index_manifest_sha256,
                files=len((built.manifest if built else plan.manifest).files),
                extracted=built.extracted if built else 0,
                linked=built.linked if built else 0,
                bytes_extracted=built.bytes_extracted if built else 0, signed=plan.signed,
                signer=plan.signer, data_filter=plan.data_filter, recovered=recovered,
                removed_releases=removed, kept_out=built.kept_out if built else None,
                leftover=built.leftover if built else None)

        current = _read_manifest_bytes(into)
        current_sha = sha256_bytes(current) if current is not None else None
        report = (check_tree(into, plan.manifest, hash_files=True)
                  if current_sha == info.index_manifest_sha256 and snapshot_current(plan, into)
                  else None)
        if report is not None and report.ok:
            # every file hashed: one altered in place at its size is not "already held",
            # so importing the bundle again repairs what `lockmirror verify` reports.
            # A no-op still proves the bundle it was given: a copy whose .sha256 was made
            # again after damage is refused here too, not answered with "nothing to do"
            extract(reader, plan, None, source, {})
            record_held_bundle(plan, into)  # its time; a signed copy: checked from now on
            return result(False)
        if report is not None and info.kind == DELTA:  # it applies onto its base, not itself
            damaged = (report.missing + report.altered + report.unexpected)[0]
            raise refusal("the current mirror is damaged: this file is missing, altered or "
                          "not its own", str(into / damaged),
                          hint="run `lockmirror verify`, then import a full bundle and the "
                               "deltas after it; nothing was changed")
        # after a refresh bundle edited manifest.json, a delta applies onto its last bundle
        absent = _check_applies(plan, into, current_sha, bundle_manifest_sha256(into))
        before = _current_manifest(current, into, required=info.kind == DELTA)
        # a delta onto no mirror was refused by _check_applies
        reuse = (_reuse_plan(plan, absent, before, listed.keys if listed is not None else ())
                 if info.kind == DELTA and before else {})
        if progress:
            progress(f"importing {source.display} ({info.kind}, {len(plan.members)} files "
                     f"listed in bundle.json, "
                     f"{format_size(reader.size)}) into {into}")
            if not source.display.startswith(info.filename):  # named as another bundle
                progress(f"note: {source.display} is not named as bundle.json says: it holds "
                         f"{info.filename} (renamed after it was written)")
        built = _build_and_swap(reader, plan, reuse, source, into, listed)
        return result(True, built,
                      removed_releases(before.files, built.manifest.files) if before else ())


def _check_order(plan: ImportPlan, reader: ConcatenatedReader, into: Path, display: str,
                 progress: Progress | None, *, allow_older: bool) -> QuarantineList | None:
    """No rollback unasked, before any extraction: refuse a bundle dated before the
    mirror's last one, or whose advisories were taken before the mirror's (with
    ``allow_older``, say so instead). Returns the quarantine list the new tree keeps
    to: the mirror's (a refresh bundle's), or None when the bundle's advisories were
    taken after the mirror's (its index is the build side's quarantine as of them).
    Raises BundleError (refused), LockmirrorError (the list does not read)."""
    said = [check_bundle_time(plan.info, into, allow_older=allow_older)]
    lifted = False  # the bundle's advisories were taken after the mirror's
    held = held_snapshot(into)
    if held is not None:
        taken = bundle_snapshot_taken(plan, reader, display=display)
        if taken is not None:  # a delta carries none: the mirror's snapshot holds
            said.append(check_advisories_time(plan.info.kind, taken, held, into,
                                              allow_older=allow_older))
            lifted = taken > held.taken
    for older in said:
        if older and progress:
            progress(older)
    return None if lifted else held_quarantine(into)


def _build_and_swap(reader: ConcatenatedReader, plan: ImportPlan, reuse: dict[str, str],
                    source: BundleSource, into: Path, listed: QuarantineList | None) -> _Built:
    """Extract into staging, link the kept files, take out what the quarantine list
    ``listed`` keeps out (None: the bundle lifts the list), check, swap.

    On any failure the staging tree is removed and ``into`` is untouched;
    an OSError becomes a LockmirrorError naming the file."""
    with replacing_tree(into) as staged:
        staging = staged.path
        state = state_members(plan)  # .lockmirror/: advisories, mirror.yaml
        extracted, size = extract(reader, plan, staging, source, state)
        linked = _link_reused(reuse, into, staging, plan.manifest)
        keep_bundle_state(plan, state, staging, into, keep_quarantine=listed is not None)
        manifest, edit, edited = quarantine_staged(staging, plan.manifest,
                                                   listed.keys if listed is not None else ())
        # the manifest verify holds the mirror to: the bundle's (checked on the way in)
        # or the one the edit wrote
        write_state(staging, IMPORT_MANIFEST,
                    manifest_record(edited or plan.info.index_manifest_sha256))
        report = check_tree(staging, manifest, hash_files=False)
        if not report.ok:  # pragma: no cover - every path was checked on the way in
            first = (report.missing + report.altered + report.unexpected)[0]
            raise refusal("staged tree does not match the manifest",
                          f"{source.display}:{plan.top}/{INDEX_DIR}/{first}")
    return _Built(extracted, linked, size, manifest, edit if edit.changed else None,
                  staged.leftover)


def _read_manifest_bytes(root: Path) -> bytes | None:
    """The bytes of the mirror's ``manifest.json``; None when it has none."""
    try:
        return (root / MANIFEST_NAME).read_bytes()
    except FileNotFoundError:
        return None


def _check_applies(plan: ImportPlan, into: Path, current_sha: str | None,
                   pinned: str | None) -> list[str]:
    """The manifest's files the bundle does not carry, once it is sure the bundle
    applies onto the mirror whose last bundle's manifest has ``pinned`` (recorded by
    the import), else whose manifest has ``current_sha``.

    Raises BundleError for a full bundle that lacks files of its manifest or a
    delta onto another base."""
    info, manifest = plan.info, plan.manifest
    carried = {path[len(INDEX_PREFIX):] for path in info.files if path.startswith(INDEX_PREFIX)}
    absent = sorted(set(manifest.files) - carried)
    if info.kind != DELTA:
        if absent:
            raise refusal(f"full bundle lacks {len(absent)} file(s) of its manifest, "
                          f"first {absent[0]}", plan.top)
    elif (base := pinned or current_sha) != info.base_manifest_sha256:
        have = ("it holds no mirror" if base is None
                else f"its manifest.json has sha256 {base}" if base == current_sha
                else f"its last bundle's manifest.json had sha256 {base} (a refresh edited "
                     "manifest.json since)")
        raise BundleError(
            f"this delta applies only onto the mirror whose last full or delta bundle's "
            f"manifest.json had sha256 {info.base_manifest_sha256} ({IMPORT_BUNDLE_MANIFEST}; "
            f"on a mirror without that record, its manifest.json's), but {have}",
            where=str(into),
            hint="import the full bundle (or the deltas in order) first; nothing was changed")
    return absent


def _reuse_plan(plan: ImportPlan, absent: list[str], base: Manifest,
                kept_out: Iterable[Key]) -> dict[str, str]:
    """For a delta: each ``absent`` path -> the path in the current mirror (whose
    manifest is ``base``) holding the same bytes; the files of the releases
    ``kept_out`` (the quarantine list's) are not needed. Raises BundleError when the
    base lacks a file the delta needs."""
    keys = frozenset(kept_out)
    unneeded = quarantined_files(plan.manifest, keys)
    by_sha = {entry.sha256: path for path, entry in sorted(base.files.items())}
    reuse = {}
    for path in (path for path in absent if path not in unneeded):
        found = by_sha.get(plan.manifest.files[path].sha256)
        if found is None:
            raise refusal(f"delta neither carries {path} nor finds it in the base mirror",
                          plan.top, REWRITTEN_HINT if path in edited_pages(keys) else REFUSED)
        reuse[path] = found
    return reuse


def _current_manifest(data: bytes | None, into: Path, *, required: bool) -> Manifest | None:
    """The current mirror's manifest (to reuse its files, to say which releases
    leave); None when it has none, or, unless ``required`` (a delta needs its
    base), when it does not read: a full bundle replaces a damaged tree whole."""
    if data is None:
        return None
    try:
        return Manifest.loads(data, where=str(into / MANIFEST_NAME))
    except LockmirrorError:
        if required:
            raise
        return None


def _link_reused(reuse: dict[str, str], into: Path, staging: Path, manifest: Manifest) -> int:
    """Hard-link unchanged files of the current mirror into staging (copy if
    the filesystem refuses), each checked first for its size and its sha256
    against the new manifest: a delta's "every file verified" covers the
    files it takes from the base too. Raises BundleError naming a base file
    that is missing or altered."""
    for path, old in sorted(reuse.items()):
        source, target = into / old, staging / path
        if not _reused_file_intact(source, manifest.files[path]):
            raise refusal("the current mirror is damaged: this file is missing or altered",
                          str(source), hint="run `lockmirror verify`, then import a full "
                                            "bundle; nothing was changed")
        make_served_dirs(target.parent)
        link_or_copy(into, old, target)
    return len(reuse)


def _reused_file_intact(source: Path, entry: Entry) -> bool:
    """True when ``source`` is a regular file (not a symlink) of the entry's size and sha256."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as handle:
        stat = os.fstat(handle.fileno())
        if not S_ISREG(stat.st_mode) or stat.st_size != entry.size:
            return False
        return hashlib.file_digest(handle, "sha256").hexdigest() == entry.sha256
