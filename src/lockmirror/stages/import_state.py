"""What an imported mirror keeps about itself, and the far side's offline audit.

An imported mirror (``lockmirror import --into /srv/mirror``) is the index
tree plus a small state directory, ``.lockmirror/`` (never in
``manifest.json``; :data:`lockmirror.formats.manifest.IMPORT_STATE`), swapped
in with the tree so the two always agree:

* ``advisories.json``: the advisory snapshot the last full bundle or refresh
  bundle carried (:mod:`lockmirror.resolve.advisory_snapshot`); its ``taken``
  time orders refresh bundles (an older one is refused);
* ``mirror.yaml``: the policy the bundle was built under (sets, exceptions,
  ``vulnerabilities:`` level), for the far side's audit;
* ``quarantine.json``: the quarantine list the last refresh bundle applied; it
  holds for every bundle imported after it that brings no newer advisories (a
  delta, which carries none; a full bundle whose advisories are no newer than
  ``advisories.json``): the releases it lists are taken out of the tree such a
  bundle brings (:func:`lockmirror.stages.import_quarantine.quarantine_staged`).
  A full bundle whose advisories were taken after the mirror's resets it: its
  index already leaves the build side's quarantined releases out, and what it
  brings back is back;
* ``bundle-manifest.sha256``: the sha256 of the index manifest the last
  full or delta bundle pinned (a refresh edits ``manifest.json``; the next
  delta still applies onto that bundle);
* ``manifest.sha256``: the sha256 of ``manifest.json`` as the last import or
  refresh wrote it (the bundle's, or the one a refresh edited), which
  ``lockmirror verify`` holds the tree's to (:func:`manifest_record`);
* ``bundle-time``: the source date epoch (``bundle.json``'s ``mtime``: the
  lockfiles' last commit, or ``SOURCE_DATE_EPOCH``; 0 when unknown) and the
  content id of the last full or delta bundle: a bundle dated before it is
  refused unless the operator goes back on purpose (:func:`check_bundle_time`),
  and so is one whose advisories were taken before ``advisories.json``'s
  (:func:`check_advisories_time`, the rule refresh bundles meet too: a bundle
  replayed after a refresh);
* ``signer``: the fingerprint of the key a bundle's signature was checked
  against (``--pubkey``): from then on every import must check one with that
  key (:func:`require_signature_check`).

Nothing else lives there but a directory publish's state and the temporary files
of an interrupted write of either: an entry this lockmirror does not know (a newer
lockmirror's record, a protection like ``signer`` once was) stops every import
before anything changes, as the swap would drop it
(:func:`lockmirror.stages.import_open.refuse_unknown_state`).

:func:`audit_imported` is ``lockmirror audit --mirror DIR``: the imported
lockfiles judged against the carried snapshot and policy, no network.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from packaging.version import Version

from ..config import LoadedConfig, load_config
from ..errors import BundleError, ConfigError, LockmirrorError
from ..formats import signing
from ..formats.bundle_format import ADVISORIES_NAME, FORMAT, FORMAT_V1, MIRROR_YAML_NAME, BundleInfo
from ..formats.bundle_reader import ConcatenatedReader
from ..formats.licenses import DeclaredLicense
from ..formats.lockfile import Lockfile
from ..formats.manifest import (
    IMPORT_ADVISORIES,
    IMPORT_BUNDLE_MANIFEST,
    IMPORT_BUNDLE_NAME,
    IMPORT_BUNDLE_TIME,
    IMPORT_MANIFEST,
    IMPORT_MIRROR_YAML,
    IMPORT_QUARANTINE,
    IMPORT_SIGNER,
    STATE_DIR,
)
from ..fsutil import atomic_write, make_served_dirs, sha256_bytes
from ..resolve.advisories import AdvisoryDB, AdvisorySource
from ..resolve.advisory_snapshot import Snapshot, SnapshotSource
from .audit import AuditReport, audit, has_license_rule
from .import_plan import ImportPlan, read_member
from .import_swap import inside_mirror, link_or_copy, state_line

MAX_STATE_MEMBER = 64 << 20
WHEN = "%Y-%m-%d %H:%M:%S UTC"  # every time an import states: bundle dates, advisories
_BUNDLE_TIME = re.compile(r"(?P<epoch>[0-9]{1,20}) (?P<content_id>[0-9a-f]{1,64})")
ROLLBACK_HINT = ("an older bundle takes the mirror back to older releases, vulnerable ones "
                 "perhaps; to go back on purpose, import it with --allow-older")
UNREADABLE_TIME_HINT = ("the mirror's record of its last bundle is damaged: run `lockmirror "
                        "verify`, then import the newest bundle with --allow-older, which "
                        "writes the record again")
UNKNOWN_TIME_HINT = ("bundle it again with the lockfiles committed or SOURCE_DATE_EPOCH set, "
                     "or, to take it as it is, import it with --allow-older")
FORMAT_1_TIME_HINT = (f"bundle it again with a lockmirror that writes {FORMAT}, as this one "
                      "does, or, to take it as it is, import it with --allow-older")


def read_snapshot(mirror: Path) -> Snapshot | None:
    """The advisory snapshot an imported mirror holds, else None."""
    path = mirror / IMPORT_ADVISORIES
    return Snapshot.read(path) if path.is_file() else None


def bundle_manifest_sha256(mirror: Path) -> str | None:
    """The sha256 of the index manifest the mirror's last bundle pinned, if recorded."""
    return state_line(mirror, IMPORT_BUNDLE_MANIFEST)


def manifest_record(sha256: str) -> bytes:
    """What ``.lockmirror/manifest.sha256`` holds: the sha256 of the ``manifest.json``
    an import or a refresh just wrote (read back by
    :func:`lockmirror.stages.verify.check_manifest_record`)."""
    return f"{sha256}\n".encode()


def bundle_name(mirror: Path) -> str | None:
    """The mirror name of the last full or delta bundle imported into ``mirror``."""
    return state_line(mirror, IMPORT_BUNDLE_NAME)


def signer_record(signer: str) -> bytes:
    """What ``.lockmirror/signer`` holds: the fingerprint of the key that checked the
    last bundle's signature (read back by :func:`require_signature_check`)."""
    return f"{signer}\n".encode()


def require_signature_check(mirror: Path, trusted: Ed25519PublicKey | None) -> None:
    """Refuse an import into a mirror whose last bundle's signature was checked
    unless it checks one with the same key: a forgotten ``--pubkey`` must not let a
    carrier's unsigned full, delta or refresh bundle in, and another key (say, one
    a carrier handed over with the bundle) must not silently replace the recorded
    one. A record that cannot be read counts as one no key matches (the guard fails
    closed)."""
    if not os.path.lexists(mirror / IMPORT_SIGNER):
        return
    recorded = state_line(mirror, IMPORT_SIGNER)
    signer = recorded or f"named in {IMPORT_SIGNER} (unreadable)"
    if trusted is None:
        raise LockmirrorError(
            f"holds bundles whose signature was checked against the key {signer}; this "
            "import checks none", where=str(mirror),
            hint="give --pubkey with the signer's public key; nothing was changed")
    given = signing.fingerprint(trusted)
    if given != recorded:
        raise LockmirrorError(
            f"holds bundles whose signature was checked against the key {signer}; --pubkey "
            f"is the key {given}", where=str(mirror),
            hint=f"if the signing key was replaced on purpose, delete {mirror / IMPORT_SIGNER} "
                 "and import again; nothing was changed")


def bundle_time_record(info: BundleInfo) -> bytes:
    """What ``.lockmirror/bundle-time`` holds: the bundle's source date epoch (0 when
    unknown, as for a ``bundle.json`` of format /1, which records none) and its
    content id (read back by :func:`check_bundle_time`)."""
    return f"{info.mtime or 0} {info.content_id}\n".encode()


def check_bundle_time(info: BundleInfo, mirror: Path, *, allow_older: bool) -> str | None:
    """Refuse a full or delta bundle dated before the last one imported into
    ``mirror``, as TUF's updaters refuse older metadata: a carrier's older, validly
    signed bundle would take the mirror back to older releases. An equal time
    passes (the same bundle again, a rebuild of the same lock); a bundle whose time
    is unknown (0; a ``bundle.json`` of format /1, so said) passes only onto a mirror
    whose recorded time is unknown too; a mirror with no record (imported by an older
    lockmirror) takes any bundle. A record that does not read fails closed. With
    ``allow_older`` nothing is refused: the line that would have been is returned,
    for the operator, else None.

    Raises BundleError naming both times (UTC) and both content ids."""
    if not os.path.lexists(mirror / IMPORT_BUNDLE_TIME):
        return None
    match = _BUNDLE_TIME.fullmatch(state_line(mirror, IMPORT_BUNDLE_TIME) or "")
    epoch = info.mtime or 0
    if match and epoch >= int(match["epoch"]):
        return None
    this = f"this {info.kind} bundle {info.content_id}"
    if not match:
        problem = (f"{this}: the time of the last bundle imported ({IMPORT_BUNDLE_TIME}) "
                   "does not read")
    else:
        held_id, held_when = match["content_id"], _utc(int(match["epoch"]))
        problem = (f"{this}: its lock time is unknown{_why_unknown(info)}, and the bundle "
                   f"{held_id} the mirror holds is dated {held_when}" if epoch == 0
                   else f"{this} is dated {_utc(epoch)}, before the bundle {held_id} the "
                        f"mirror holds (dated {held_when})")
    if allow_older:
        return f"{problem}; imported as --allow-older asks"
    hint = (UNREADABLE_TIME_HINT if not match else ROLLBACK_HINT if epoch
            else FORMAT_1_TIME_HINT if info.mtime is None else UNKNOWN_TIME_HINT)
    raise BundleError(f"{problem}; refusing it, nothing was changed", where=str(mirror),
                      hint=hint)


def _why_unknown(info: BundleInfo) -> str:
    """Why the time is unknown when the format is why: /1 records none, however the
    lockfiles stood (an outside tester was told to commit them)."""
    return "" if info.mtime is not None else (
        f" (its bundle.json is of format {FORMAT_V1}, which records none)")


def held_snapshot(mirror: Path) -> Snapshot | None:
    """The advisory snapshot that orders the bundles ``mirror`` takes: None when it
    holds none, when the file is a symlink or lies below one, or when it does not
    read (it orders nothing then: the bundle's replaces it)."""
    if not inside_mirror(mirror, IMPORT_ADVISORIES):
        return None
    try:
        return read_snapshot(mirror)
    except LockmirrorError:
        return None


def check_advisories_time(kind: str, taken: datetime, held: Snapshot | None, into: Path, *,
                          allow_older: bool) -> str | None:
    """The one rule for every bundle that carries advisories (full, delta, refresh):
    refuse one whose advisories were ``taken`` before those ``into`` holds
    (``held``, :func:`held_snapshot`), as TUF's updaters refuse older metadata: a
    refresh would hide advisories the mirror knows, and a full or delta bundle
    imported before a refresh would put back the releases the refresh took out.
    ``kind`` names the bundle (``full``, ``delta``, ``refresh``). An equal time
    passes. With ``allow_older`` nothing is refused: the line that would have been
    is returned, else None.

    Raises BundleError naming both times (UTC)."""
    if held is None or taken >= held.taken:
        return None
    problem = (f"this {kind} bundle's advisories were taken {taken:{WHEN}}, before those "
               f"the mirror holds ({held.taken:{WHEN}}, from a refresh bundle or a newer "
               "bundle)")
    if allow_older:
        return f"{problem}; imported as --allow-older asks"
    raise BundleError(f"{problem}; refusing it, nothing was changed", where=str(into),
                      hint=ROLLBACK_HINT)


def bundle_snapshot_taken(plan: ImportPlan, reader: ConcatenatedReader, *,
                          display: str) -> datetime | None:
    """When the advisories a full or delta bundle carries were taken, before a byte is
    extracted: its ``advisories.json`` (the state member :func:`state_members` keeps)
    is read from ``reader`` as the index manifest is, so a bundle refused for it
    (:func:`check_advisories_time`) costs no extraction. None when it carries none (a
    delta; a mirror with no advisory sources): it keeps the mirror's snapshot.

    Raises BundleError for a snapshot whose sha256 is not ``bundle.json``'s,
    InputError for one that does not read (``display`` names the bundle). Costs one
    read of the member (KiB)."""
    if ADVISORIES_NAME not in state_members(plan):
        return None
    item = next(m for m in plan.members if m.path == ADVISORIES_NAME)
    return Snapshot.loads(read_member(reader, item, display),
                          where=f"{display}:{item.member.name}").taken


def _utc(epoch: int) -> str:
    """A source date epoch as the messages show it (past year 9999: the seconds)."""
    try:
        return datetime.fromtimestamp(epoch, UTC).strftime(WHEN)
    except (OverflowError, ValueError, OSError):
        return f"{epoch} s after 1970 (UTC)"


def state_members(plan: ImportPlan) -> dict[str, str]:
    """The bundle's members that become the new tree's state, path in the bundle ->
    path in the tree: its ``advisories.json`` and ``mirror.yaml``, as far as it
    carries them at no more than ``MAX_STATE_MEMBER`` bytes. The import's one pass
    over the bundle writes them (:func:`lockmirror.stages.import_extract.extract`)."""
    sizes = {item.path: item.entry.size for item in plan.members}
    return {name: target
            for name, target in ((ADVISORIES_NAME, IMPORT_ADVISORIES),
                                 (MIRROR_YAML_NAME, IMPORT_MIRROR_YAML))
            if sizes.get(name, MAX_STATE_MEMBER + 1) <= MAX_STATE_MEMBER}


def keep_bundle_state(plan: ImportPlan, written: Mapping[str, str], staging: Path,
                      into: Path, *, keep_quarantine: bool) -> None:
    """Complete the state of a full or delta bundle in ``staging`` (the tree about
    to be swapped in), once the state members ``written`` (:func:`state_members`)
    are there: a bundle without a snapshot keeps the mirror's previous one (so
    refresh bundles stay ordered), the mirror's quarantine list is kept when
    ``keep_quarantine`` (it still holds), and the manifest the bundle pins (the
    delta base), its mirror name and its time are recorded (the tree's own manifest
    once it is final: ``importer._build_and_swap``)."""
    if ADVISORIES_NAME not in written:
        keep_state(into, staging, IMPORT_ADVISORIES)
    if keep_quarantine:
        keep_state(into, staging, IMPORT_QUARANTINE)
    write_state(staging, IMPORT_BUNDLE_MANIFEST, manifest_record(plan.info.index_manifest_sha256))
    write_state(staging, IMPORT_BUNDLE_NAME, f"{plan.info.name}\n".encode())
    write_state(staging, IMPORT_BUNDLE_TIME, bundle_time_record(plan.info))
    if plan.signer:  # checked against --pubkey: from now on every import must check one
        write_state(staging, IMPORT_SIGNER, signer_record(plan.signer))


def record_held_bundle(plan: ImportPlan, into: Path) -> None:
    """After a no-op import (``into`` already holds the bundle): record what
    :func:`keep_bundle_state` records for an import that swaps a tree in, where it
    differs: the bundle's time and the manifest it pins, which ``manifest.json`` is
    (a mirror imported by an older lockmirror starts recording them) and, when the
    signature was checked, the signer, so every later import into ``into`` must
    check one too. Raises LockmirrorError when the state directory lies behind a
    symlink."""
    wanted = {IMPORT_BUNDLE_TIME: bundle_time_record(plan.info),
              IMPORT_MANIFEST: manifest_record(plan.info.index_manifest_sha256)}
    if plan.signer:
        wanted[IMPORT_SIGNER] = signer_record(plan.signer)
    for rel, data in sorted(wanted.items()):
        if state_line(into, rel) == data.decode().strip():
            continue
        if not inside_mirror(into, rel):
            raise LockmirrorError("is a symlink or lies below one; a mirror's state is its "
                                  "own files", where=str(into / rel),
                                  hint="run `lockmirror verify`, then import a full bundle")
        write_state(into, rel, data)


def snapshot_current(plan: ImportPlan, into: Path) -> bool:
    """Whether ``into`` already holds the advisory snapshot the bundle carries (or
    the bundle carries none): a bundle of the same index with newer advisories
    is not a no-op."""
    item = next((m for m in plan.members if m.path == ADVISORIES_NAME), None)
    if item is None:
        return True
    try:
        return sha256_bytes((into / IMPORT_ADVISORIES).read_bytes()) == item.entry.sha256
    except OSError:
        return False


def write_state(root: Path, rel: str, data: bytes) -> None:
    """One state file of the tree at ``root`` (atomically)."""
    make_served_dirs(root / STATE_DIR)
    atomic_write(root / rel, data)


def keep_state(mirror: Path, staging: Path, rel: str) -> None:
    """Carry the state file ``rel`` of the current ``mirror``, if it has one, into
    the tree ``staging`` that replaces it (a symlink there is not followed: the
    state is lockmirror's own files, never a link out of the mirror)."""
    if (mirror / rel).is_file() and inside_mirror(mirror, rel):
        make_served_dirs(staging / STATE_DIR)
        link_or_copy(mirror, rel, staging / rel)


def imported_lockfiles(mirror: Path) -> list[Path]:
    """The set lockfiles an imported mirror serves (``lockfiles/pylock.*.toml``)."""
    found = sorted((mirror / "lockfiles").glob("pylock.*.toml"))
    if not found:
        raise LockmirrorError("holds no lockfiles/pylock.*.toml; is it an imported mirror?",
                              where=str(mirror), hint="lockmirror import BUNDLE --into DIR")
    return found


def mirror_config(mirror: Path, config: Path | None) -> LoadedConfig:
    """``config`` if given, else the mirror.yaml the mirror's bundle carried."""
    path = config if config is not None else mirror / IMPORT_MIRROR_YAML
    if config is None and not mirror.is_dir():  # a mistyped path is not an old import
        from .verify import not_a_mirror

        raise not_a_mirror(mirror, IMPORT_MIRROR_YAML)
    if config is None and not path.is_file():
        raise LockmirrorError("holds no mirror.yaml of its bundle (imported before lockmirror "
                              "kept one)", where=str(mirror),
                              hint="pass the mirror's mirror.yaml with -c")
    try:
        return load_config(path)
    except ConfigError as exc:
        if config is not None:
            raise
        raise ConfigError([*exc.problems, f"{path}: this mirror.yaml came with the bundle: "
                           "fix it on the build side and import a new bundle"]) from None


def audit_imported(mirror: Path, *, now: datetime, config: Path | None = None,
                   databases: Sequence[Path] = (),
                   sources: AdvisoryDB | None = None) -> AuditReport:
    """Audit an imported mirror with no network: its lockfiles, under the policy
    of the mirror.yaml its bundle carried (or ``config``), against the advisory
    snapshot it holds plus ``databases`` (or ``sources`` when given).

    The releases the index serves for earlier lock revisions (retention) are audited
    too, named by their revision (:mod:`lockmirror.stages.audit_kept`). Raises
    LockmirrorError for a directory that is no imported mirror, what
    :class:`SnapshotSource` raises for a release the snapshot does not cover."""
    from ..resolve.advisory_snapshot import offline_source
    from .audit_kept import kept_revisions
    from .audit_quarantine import FAR_SIDE_REMEDY, quarantine_rows

    mirror = Path(os.path.abspath(mirror))
    loaded = mirror_config(mirror, config)
    lockfiles = [Lockfile.read(path) for path in imported_lockfiles(mirror)]
    snapshot = None
    if sources is None:
        snapshot = read_snapshot(mirror)
        found: list[AdvisorySource] = (
            [SnapshotSource(snapshot, where=str(mirror / IMPORT_ADVISORIES))] if snapshot else [])
        sources = AdvisoryDB([*found, *(offline_source(path) for path in databases)])
    kept, not_read = kept_revisions(mirror)
    report = audit(lockfiles, loaded.config, sources=sources, now=now, client=None,
                   where=str(loaded.path),
                   licenses=mirror_licenses(mirror, lockfiles)
                   if has_license_rule(loaded.config, lockfiles) else None, kept=kept)
    rows, notes = quarantine_rows(report.rows, lockfiles, (), remedy=FAR_SIDE_REMEDY)
    report = replace(report, rows=rows, notes=(*report.notes, *notes,
                                               *([not_read] if not_read else [])))
    if snapshot is not None and not snapshot.records_unchecked:
        report = replace(report, notes=(*report.notes, (
            "the advisory snapshot predates lockmirror recording which releases its sources "
            "could not check: one it lists with no advisory may not have been checked "
            "(import a refresh bundle)")))
    return report


def mirror_licenses(mirror: Path, lockfiles: Sequence[Lockfile]
                    ) -> dict[tuple[str, Version], DeclaredLicense]:
    """Each locked release's declared license, from the imported mirror's own files
    (a wheel's PEP 658 ``.metadata``, else the METADATA or PKG-INFO in the archive),
    every one verified at import; a release none of whose files says is left out."""
    from ..formats.core_metadata import MetadataError, parse_metadata, read_metadata
    from ..formats.licenses import declared_license

    found: dict[tuple[str, Version], DeclaredLicense] = {}
    for package in (p for lockfile in lockfiles for p in lockfile.packages):
        for file in package.files if package.key not in found else ():
            try:
                data = read_metadata(mirror / "files" / package.name / file.filename)
            except (OSError, MetadataError):
                continue
            found[package.key] = declared_license(parse_metadata(data))
            break
    return found
