"""What an import decides before a byte is extracted: the bundle's members, vetted.

:func:`vet_bundle`, the one vetting of every import (a bundle's and a refresh
bundle's), takes ``bundle.json`` and its signature as
:func:`bundle_reader.read_head` read them once, under the import lock
(:func:`lockmirror.stages.import_open.opened_import`; with a public key, the
signature checked before ``bundle.json`` is parsed), reads every tar header (through
:mod:`lockmirror.formats.bundle_headers`: no pax headers, GNU long names capped,
each refused before tarfile reads what it states), and refuses the
bundle if any member is not a regular file or directory (links, devices,
FIFOs), has an absolute name or ``..``, lies outside the bundle's
directory, is listed twice, is not in ``bundle.json``, or has another
size; tarfile's ``data`` filter (Python >= 3.11.4, 3.12.1) vets each member
as well. On a Python without it the checks above stand alone: they are
stricter than the filter (no links of any kind), and files are created
only with ``O_EXCL`` in a fresh staging directory that never contains a
link. :func:`plan_import` adds the index manifest the bundle pins, its size
checked against JSON's cap before it is read.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import BundleError, BundleFormatError, IntegrityError, LockmirrorError
from ..formats.bounded import check_json_size
from ..formats.bundle_format import INDEX_DIR, INDEX_MANIFEST, SIGNATURE_NAME, BundleInfo
from ..formats.bundle_headers import next_member, open_tar, refuse_cut
from ..formats.bundle_reader import BundleHead, BundleSource, ConcatenatedReader, read_exact
from ..formats.manifest import STATE_DIR, Entry, Manifest, check_relative_path
from ..fsutil import sha256_bytes

INDEX_PREFIX = f"{INDEX_DIR}/"
DataFilter = Callable[[tarfile.TarInfo, str], tarfile.TarInfo]
REFUSED = "refusing the whole bundle; nothing was changed"
DAMAGED = "damaged in transit or tampered; nothing was changed"  # a member's hint


def refusal(problem: str, where: str, hint: str = REFUSED) -> BundleError:
    """The one wording of a bundle an import refuses before it changes anything
    (while vetting and planning, or extracting into a staging tree that is then
    removed): ``problem`` at ``where``, and a hint that says nothing was changed.
    Only for refusals where that is true."""
    return BundleError(problem, where=where, hint=hint)


@dataclass(frozen=True)
class Carried:
    """A regular file the bundle carries: its tar member, path in the bundle, entry."""

    member: tarfile.TarInfo
    path: str
    entry: Entry


@dataclass(frozen=True)
class VettedBundle:
    """A bundle whose tar headers, ``bundle.json`` and signature passed every check."""

    info: BundleInfo
    members: list[Carried]   # every regular file but bundle.json and its signature
    signer: str | None       # fingerprint of the key that was checked, if any
    signed: bool
    data_filter: bool        # whether tarfile's data filter vetted the members too

    @property
    def top(self) -> str:
        """The bundle's directory, the first part of every member's name."""
        return self.info.top


@dataclass(frozen=True)
class ImportPlan(VettedBundle):
    """Everything decided before a byte is extracted: the vetted bundle and its
    index manifest."""

    manifest: Manifest


def plan_import(source: BundleSource, head: BundleHead, reader: ConcatenatedReader,
                staging: Path) -> ImportPlan:
    """Vet a bundle (:func:`vet_bundle`, against its ``head`` as
    :func:`lockmirror.stages.import_open.opened_import` read it, the signature
    checked) and the index manifest it pins; nothing is written.

    Raises what :func:`vet_bundle` raises, BundleError for an index manifest
    that does not match ``bundle.json``, BundleFormatError (exit 2) for a
    malformed one (a key twice, an unsafe path).
    Costs :func:`vet_bundle`'s reads and one of the index manifest.
    """
    vetted = vet_bundle(source, head, reader, staging)
    manifest = _index_manifest(reader, vetted.members, head.info, source.display)
    return ImportPlan(**vars(vetted), manifest=manifest)


def vet_bundle(source: BundleSource, head: BundleHead, reader: ConcatenatedReader,
               staging: Path) -> VettedBundle:
    """Vet every tar header of a bundle against its ``head`` (:func:`read_head`, which
    checked the signature when given a key); nothing is written. The one vetting of
    every import, a bundle's and a refresh bundle's.

    ``staging`` is where members would be extracted (for tarfile's data
    filter, used where this Python has it). Raises BundleError naming the
    member at fault. Costs one read of every tar header; each is vetted as it is
    read, so what it holds is at most the members ``bundle.json`` lists.
    """
    top = head.info.top
    data_filter: DataFilter | None = getattr(tarfile, "data_filter", None)
    folders = _folders(head.info)
    seen: set[str] = set()
    carried: list[Carried] = []
    signed = False
    # each header vetted as it is read: a bundle of a million forged headers is refused
    # at the first, not after all of them are held in memory
    for position, member in enumerate(_read_members(reader, source)):
        where = f"{source.display}:{member.name}"
        _check_member(member, top, seen, staging, data_filter, where=where)
        if member.isfile():
            refuse_cut(member, reader.size, bundle=source.display)
        # [0] is the directory, [1] bundle.json (read_head checked both), [2] the signature
        # if it has one; a signature anywhere else is an unlisted member
        if position == 2 and member.name == f"{top}/{SIGNATURE_NAME}":
            signed = True
        elif position >= 2:
            item = _carried(member, head.info, folders, where)
            if item is not None:  # a file; a directory carries nothing
                carried.append(item)
    _check_complete(source, head.info, carried)
    return VettedBundle(head.info, carried, head.signer, signed, data_filter is not None)


def _check_complete(source: BundleSource, info: BundleInfo, carried: list[Carried]) -> None:
    """Refuse a bundle that lacks members ``bundle.json`` lists: it ends early, or
    tarfile stopped listing at a damaged header (then the copy is said damaged)."""
    missing = sorted(set(info.files) - {item.path for item in carried})
    if missing:
        found = (f"truncated or incomplete: {len(missing)} member(s) listed in bundle.json "
                 f"are missing, first {info.top}/{missing[0]}")
        _refuse_damaged_copy(source, found)
        raise refusal(f"bundle is {found}", source.display)


def _refuse_damaged_copy(source: BundleSource, seen: str) -> None:
    """Raise BundleError saying the copy is damaged when a volume's sha256 is not the
    ``.sha256`` listing's: what ``seen`` describes (tarfile stops early at a damaged
    header) is then a symptom, and the remedy is a new copy. Costs one read of the
    bundle, on the way to refusing it only."""
    try:
        check_outer_hashes(source)
    except BundleError as exc:
        raise BundleError(f"bundle is damaged: its sha256 differs from the "
                          f"{source.checksums.name} listing ({seen})", where=exc.where,
                          hint="damaged in transit or cut short; copy it again. Nothing was "
                               "changed") from None


def check_outer_hashes(source: BundleSource) -> None:
    """Hash every volume against the ``.sha256`` listing; raise BundleError
    naming the first that differs. One sequential read of the bundle."""
    for part, expected in zip(source.parts, source.expected_sha256, strict=True):
        with open(part, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        if digest != expected:
            raise volume_damaged(source, part)


def volume_damaged(source: BundleSource, part: Path) -> BundleError:
    """The error for a volume whose sha256 is not the ``.sha256`` listing's."""
    return BundleError(f"sha256 does not match {source.checksums.name}", where=str(part),
                       hint="damaged in transit; copy it again. Nothing was changed")


def read_member(reader: ConcatenatedReader, item: Carried, display: str) -> bytes:
    """The bytes of a carried member; BundleError if their sha256 is not ``bundle.json``'s."""
    where = f"{display}:{item.member.name}"
    data = read_exact(reader, item.member.offset_data, item.entry.size, where=where)
    if sha256_bytes(data) != item.entry.sha256:
        raise refusal("sha256 does not match bundle.json", where, DAMAGED)
    return data


def signature_note(signed: bool, signer: str | None) -> str:
    """What an import says about a bundle's signature."""
    return (f"signature by {signer} verified" if signer
            else "carries a signature, NOT checked: who made it is unknown (give --pubkey)"
            if signed
            else "unsigned")


def _read_members(reader: ConcatenatedReader, source: BundleSource) -> Iterator[tarfile.TarInfo]:
    """Every tar header, in order, each read once the one before was vetted; BundleError
    for a damaged or truncated tar."""
    display = source.display
    tar = open_tar(reader, where=display)
    last: tarfile.TarInfo | None = None
    try:
        while (member := next_member(tar, where=display)) is not None:
            last = member
            yield member
    except tarfile.TarError as exc:
        if last is not None:
            refuse_cut(last, reader.size, bundle=display)
        after = f" after {last.name}" if last is not None else ""
        _refuse_damaged_copy(source, f"a damaged tar header{after}: {exc}")
        raise refusal(f"damaged or truncated tar{after} ({exc})", display) from None


def member_problem(member: tarfile.TarInfo) -> str | None:
    """Why a member is not a plain file or directory (None when it is)."""
    if member.issym():
        return f"is a symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"is a hard link (to {member.linkname!r})"
    if member.ischr() or member.isblk():
        return "is a device node"
    if member.isfifo():
        return "is a FIFO"
    if not (member.isdir() or member.type in (tarfile.REGTYPE, tarfile.AREGTYPE)):
        return f"has tar type {member.type!r}"
    return None


def _check_member(member: tarfile.TarInfo, top: str, seen: set[str],
                  staging: Path, data_filter: DataFilter | None, *, where: str) -> None:
    """Refuse one member that is not a plain, safe, unique file or directory under ``top``."""
    problem = member_problem(member)
    if problem:
        raise refusal(f"{problem}; a bundle holds only regular files and directories", where)
    try:
        check_relative_path(member.name.rstrip("/") if member.isdir() else member.name,
                            where=where)
    except IntegrityError:
        raise refusal("unsafe member name (absolute, '..', empty parts or control "
                      "characters)", where) from None
    if member.name != top and not member.name.startswith(top + "/"):
        raise refusal(f"lies outside the bundle directory {top}/", where)
    if data_filter is not None:
        try:
            data_filter(member, str(staging))
        except tarfile.FilterError as exc:
            raise refusal(f"refused by tarfile's data filter: {exc}", where) from None
    if member.name in seen:
        raise refusal("appears twice", where)
    seen.add(member.name)


def _folders(info: BundleInfo) -> set[str]:
    """The directories a bundle may carry: its top and the parents of what it lists."""
    return {info.top} | {f"{info.top}/{parent}" for path in info.files
                         for parent in PurePosixPath(path).parents if str(parent) != "."}


def _carried(member: tarfile.TarInfo, info: BundleInfo, folders: set[str],
             where: str) -> Carried | None:
    """A member after ``bundle.json`` (and its signature): a regular file listed in
    ``bundle.json`` with its size (its Carried), or a directory of ``folders`` (None);
    BundleError if a file is unlisted or of another size, or a directory holds no
    listed file (:func:`vet_bundle` counts the missing ones)."""
    if member.isdir() and member.name.rstrip("/") not in folders:
        raise refusal("is a directory holding nothing bundle.json lists", where)
    if not member.isfile():
        return None
    path = member.name[len(info.top) + 1:]
    entry = info.files.get(path)
    if entry is None:
        raise refusal("is not listed in bundle.json", where)
    if entry.size != member.size:
        raise refusal(f"has {member.size} bytes, bundle.json says {entry.size}", where)
    return Carried(member, path, entry)


def _index_manifest(reader: ConcatenatedReader, carried: list[Carried], info: BundleInfo,
                    display: str) -> Manifest:
    """The index manifest the bundle carries, matching ``bundle.json`` in hash and entries."""
    item = next((item for item in carried if item.path == INDEX_MANIFEST), None)
    if item is None:
        raise refusal(f"carries no {INDEX_MANIFEST}", display)
    where = f"{display}:{item.member.name}"
    check_json_size(item.entry.size, where=where, error=BundleFormatError)  # before reading
    data = read_member(reader, item, display)  # its sha256 is now item.entry.sha256
    if item.entry.sha256 != info.index_manifest_sha256:
        raise refusal("sha256 does not match bundle.json", where, DAMAGED)
    try:
        manifest = Manifest.loads(data, where=where)
    except LockmirrorError as exc:  # malformed: bad input (exit 2), as a bundle.json would be
        raise BundleFormatError(exc.message, where=exc.where, hint=REFUSED) from None
    state = next((path for path in sorted(manifest.files)
                  if path.split("/", 1)[0] == STATE_DIR), None)
    if state is not None:  # the far side's own state: no index has such a file
        raise BundleFormatError(f"the index manifest names {state}, the mirror's own state",
                                where=where, hint="this bundle was not made by `lockmirror "
                                                  "bundle`; nothing was changed")
    for path, entry in info.files.items():
        if (path.startswith(INDEX_PREFIX) and path != INDEX_MANIFEST
                and manifest.files.get(path[len(INDEX_PREFIX):]) != entry):
            raise refusal("bundle.json and the index manifest disagree about it",
                          f"{display}:{info.top}/{path}")
    return manifest
