"""Importing a refresh bundle on the far side: new advisories, the build side's quarantine.

``refresh_opened(opened)`` (what ``lockmirror import`` runs for a bundle of
kind ``advisories``, :mod:`lockmirror.stages.refresh_bundle`, through
:func:`lockmirror.stages.importer.import_any`):

1. finds the bundle and its ``.sha256``, takes the import lock beside the
   mirror, resolves what a killed import left and reads ``bundle.json``, its
   signature checked with ``pubkey``, as every import does
   (:mod:`lockmirror.stages.import_open`);
2. vets it as every bundle is vetted (:mod:`lockmirror.stages.import_plan`:
   headers against ``bundle.json``), checks its outer sha256 and every member's;
3. refuses it, in one line and changing nothing, when its advisories were
   taken before those the mirror holds (``.lockmirror/advisories.json``), unless
   ``allow_older``: the rule and wording a full or delta bundle meets
   (:func:`lockmirror.stages.import_state.check_advisories_time`); a full bundle
   imported since may have brought back a release it would take out;
4. re-audits the mirror's lockfiles against the new snapshot under the policy
   its bundle carried (a release the snapshot does not cover is reported as
   not checked, never as clean);
5. takes the releases of its ``quarantine.json`` out of the index
   (:mod:`lockmirror.stages.import_quarantine`: staged, checked, swapped in
   with the snapshot and the list as the mirror's new state).

The result says what changed: advisories new since the last import, releases
taken out now, files removed, pages rewritten, and the audit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from packaging.utils import NormalizedName
from packaging.version import Version

from ..errors import BundleError, LockmirrorError
from ..formats.bundle_format import ADVISORIES, ADVISORIES_NAME, QUARANTINE_NAME
from ..formats.manifest import (
    IMPORT_ADVISORIES,
    IMPORT_MIRROR_YAML,
    IMPORT_QUARANTINE,
    IMPORT_SIGNER,
    MANIFEST_NAME,
    Manifest,
)
from ..formats.quarantine_list import QuarantineList
from ..fsutil import plural
from ..net.osv import Advisory
from ..resolve.advisories import AdvisoryDB
from ..resolve.advisory_snapshot import Snapshot, SnapshotSource
from .audit import AuditReport
from .import_open import OpenedImport
from .import_plan import VettedBundle, check_outer_hashes, read_member, signature_note, vet_bundle
from .import_quarantine import TreeEdit, apply_edit, plan_edit
from .import_state import (
    WHEN,
    audit_imported,
    check_advisories_time,
    held_snapshot,
    signer_record,
)
from .import_swap import staging_dir
from .verify import check_manifest_record

Progress = Callable[[str], None]
MAX_MEMBER = 64 << 20


@dataclass(frozen=True)
class RefreshResult:
    """What importing a refresh bundle did."""

    into: Path
    content_id: str
    taken: datetime
    previous: datetime | None       # when the advisories the mirror held were taken
    new_advisories: tuple[str, ...]  # ids not in the previous snapshot
    quarantined: tuple[str, ...]    # every release on the imported list
    edit: TreeEdit                  # what left the index now
    report: AuditReport | None      # None: no mirror.yaml of its bundle to audit under
    signed: bool
    signer: str | None
    recovered: str | None
    allowed_older: str | None = None  # the refusal --allow-older set aside
    leftover: str | None = None  # the previous tree, left where it could not be removed


def refresh_opened(opened: OpenedImport, *, now: datetime, progress: Progress | None = None,
                   allow_older: bool = False) -> RefreshResult:
    """Import the refresh bundle
    :func:`~lockmirror.stages.import_open.opened_import` opened (the lock held) into
    the imported mirror it names (``lockmirror import``:
    :func:`lockmirror.stages.importer.import_any`).

    ``now`` is the far side's time for the re-audit (exceptions expire).
    Raises BundleError (exit 2) for a damaged or older (unless ``allow_older``)
    refresh bundle and LockmirrorError when the destination holds no mirror; it is
    then exactly as it was. Costs a read of the bundle (KiB) and, when releases
    leave the index, one hard link per file of the mirror."""
    if not (opened.into / MANIFEST_NAME).is_file():
        raise LockmirrorError("holds no imported mirror; a refresh bundle applies onto one",
                              where=str(opened.into), hint="import a full bundle first")
    return _refresh(opened, now, progress, allow_older=allow_older)


def _refresh(opened: OpenedImport, now: datetime, progress: Progress | None, *,
             allow_older: bool) -> RefreshResult:
    source, into = opened.source, opened.into
    members, vetted = _read_refresh(opened)
    where = f"{source.display}:{ADVISORIES_NAME}"
    snapshot = Snapshot.loads(members[ADVISORIES_NAME], where=where)
    listed = QuarantineList.loads(members[QUARANTINE_NAME].decode("utf-8", "replace"),
                                  where=f"{source.display}:{QUARANTINE_NAME}")
    held = held_snapshot(into)
    older = check_advisories_time("refresh", snapshot.taken, held, into,
                                  allow_older=allow_older)
    check_manifest_record(into)  # a tree edited by hand is not recorded as imported
    if progress:
        progress(f"refreshing {into} with advisories taken {snapshot.taken:{WHEN}}")
    report = None  # a mirror imported before lockmirror kept its mirror.yaml: no policy
    if (into / IMPORT_MIRROR_YAML).is_file():
        report = audit_imported(into, now=now, sources=AdvisoryDB(
            [CoveringSnapshotSource(snapshot, where=where)]))
    manifest = Manifest.read(into / MANIFEST_NAME)
    edit = plan_edit(into, manifest, listed.keys)
    state = {IMPORT_ADVISORIES: members[ADVISORIES_NAME],
             IMPORT_QUARANTINE: members[QUARANTINE_NAME]}
    if vetted.signer:  # checked against --pubkey: from now on every import must check one
        state[IMPORT_SIGNER] = signer_record(vetted.signer)
    leftover = apply_edit(into, manifest, edit, state)
    known = {a.advisory.id for a in held.advisories} if held else set()
    return RefreshResult(
        into=into, content_id=vetted.info.content_id, taken=snapshot.taken,
        previous=held.taken if held else None,
        new_advisories=tuple(a.advisory.id for a in snapshot.advisories
                             if a.advisory.id not in known),
        quarantined=tuple(r.release for _, r in sorted(listed.releases.items())),
        edit=edit, report=report, signed=vetted.signed, signer=vetted.signer,
        recovered=opened.recovered, allowed_older=older, leftover=leftover)


def _read_refresh(opened: OpenedImport) -> tuple[dict[str, bytes], VettedBundle]:
    """Vet the bundle (headers, outer and member sha256; its signature was checked as
    it was opened); its members' bytes, and the vetted bundle (its info, whether
    signed and by whom)."""
    source, head = opened.source, opened.head
    if head.info.kind != ADVISORIES:
        raise BundleError(f"is a {head.info.kind} bundle, not a refresh bundle",
                          where=source.display)
    check_outer_hashes(source)
    with source.open() as reader:
        vetted = vet_bundle(source, head, reader, staging_dir(opened.into))
        found = {}
        for item in vetted.members:
            if item.entry.size > MAX_MEMBER:
                raise BundleError("implausibly large for a refresh bundle",
                                  where=f"{source.display}:{item.member.name}")
            found[item.path] = read_member(reader, item, source.display)
    for name in (ADVISORIES_NAME, QUARANTINE_NAME):
        if name not in found:
            raise BundleError(f"refresh bundle carries no {name}", where=source.display)
    return found, vetted


class CoveringSnapshotSource(SnapshotSource):
    """A snapshot that reports a release it was not asked about as not checked
    (an audit row at the policy's ``vulnerabilities`` level), so that a refresh
    taken of newer lockfiles still re-audits the releases it covers."""

    def advisories_for(self, name: NormalizedName, version: Version) -> list[Advisory]:
        if (name, version) not in self.snapshot.releases:
            return []
        return super().advisories_for(name, version)

    def unchecked(self, name: NormalizedName, version: Version) -> str | None:
        if (name, version) in self.snapshot.releases:
            return super().unchecked(name, version)  # covered, unless no source could tell
        return "the refresh bundle's advisory snapshot does not cover it"


def render_refresh(result: RefreshResult) -> Iterable[str]:
    """What a refresh import did, line by line, for a terminal."""
    previous = ("the same this mirror holds (its audit and quarantine checked again)"
                if result.previous == result.taken
                else f"replacing those taken {result.previous:{WHEN}}" if result.previous
                else "the first advisories this mirror holds")
    signature = signature_note(result.signed, result.signer)
    yield (f"import: refresh bundle {result.content_id}: advisories taken "
           f"{result.taken:{WHEN}}, {previous}; {signature}")
    if result.recovered:
        yield f"import: {result.recovered}"
    if result.allowed_older:
        yield f"import: {result.allowed_older}"
    yield ("import: new advisories: " + (", ".join(result.new_advisories) or "none"))
    edit = result.edit
    if edit.releases:
        yield (f"import: quarantined now (out of the index): {', '.join(edit.releases)} "
               f"({sum(1 for r in edit.removed if r.startswith('files/'))} files removed, "
               f"{len(edit.rewritten)} pages rewritten)")
    else:
        yield "import: quarantined now: none (nothing listed is in the index)"
    for rel in edit.removed:
        yield f"import: removed {result.into / rel}"
    for rel in edit.rewritten:
        yield f"import: rewrote {result.into / rel}"
    yield (f"import: quarantine list: {plural(len(result.quarantined), 'release')}"
           + (f" ({', '.join(result.quarantined)})" if result.quarantined else ""))
    report = result.report
    if report is None:
        yield ("import: not re-audited: the mirror holds no mirror.yaml of its bundle (import "
               "a full bundle with this lockmirror, then `lockmirror audit --mirror`)")
        return
    for row in report.denied:
        yield f"import: audit: deny {row.release}: {row.advisory or row.rule}: {row.message}"
    yield (f"import: audit of {plural(report.releases, 'imported release')}: "
           f"{len(report.denied)} denied, {plural(len(report.warnings), 'warning')}")
