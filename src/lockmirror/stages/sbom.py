"""The SBOMs of a mirror: one CycloneDX document per set and one for the whole mirror.

The facts come from what fetch already put in the store: each release's PEP
658 metadata file (or the metadata inside its wheel or sdist); nothing is
downloaded. A release whose metadata is not in the store (fetch not run yet)
is listed with its hashes and "unknown: no core metadata in the store". The
documents are rendered by :mod:`lockmirror.formats.sbom`; the index stage
writes them under ``dist-index/sbom/`` and ``lockmirror sbom`` prints one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ..formats.sbom import MISSING, ReleaseFacts, SbomSubject, render_sbom

if TYPE_CHECKING:
    from pathlib import Path

    from packaging.version import Version

    from ..formats.lockfile import LockedPackage, Lockfile
    from ..net.s3_store import AnyStore
    from .toolwheels import ToolWheel

MIRROR_DOCUMENT = "mirror.cdx.json"  # every set; the one a bundle's reader starts from


def sbom_name(set_name: str) -> str:
    """The file name of a set's SBOM under ``sbom/``."""
    return f"{set_name}.cdx.json"


def sbom_stamp(lockfile_dir: Path | None) -> int | None:
    """The SBOMs' time stamp: ``$SOURCE_DATE_EPOCH``, else the last commit of
    the lockfiles in ``lockfile_dir``; None (no time stamp) when neither is known."""
    from ..timeutil import known_source_date_epoch

    known = known_source_date_epoch(None, lockfile_dir)
    return known[0] if known else None


def sbom_documents(lockfiles: Sequence[Lockfile], store: AnyStore, *, mirror_name: str,
                   tool_version: str, commit: str | None = None,
                   commit_modified: bool = False, source_date_epoch: int | None = None,
                   retained: Sequence[tuple[Lockfile, str]] = (),
                   quarantined: Iterable[tuple[str, Version | str]] = ()) -> dict[str, bytes]:
    """File name -> bytes: one document per lockfile's set and
    :data:`MIRROR_DOCUMENT` for all of them; the releases only ``retained``
    revisions (lockfile, why it is kept) name are declared in their set's and
    the mirror's document, as the index serves and bundles them. The releases
    ``quarantined`` (normalized name, version: the quarantine list) are not, as
    the index leaves them out; each document names those its sets lock in a
    ``lockmirror:quarantined`` property. Deterministic for the same lockfiles,
    list and store."""
    # the lockfiles' spelling: a normalized name, str(Version) (a version's text as is)
    left_out = frozenset((str(name), str(version)) for name, version in quarantined)
    facts = release_facts([*lockfiles, *(lock for lock, _ in retained)], store)
    documents = {}
    for lockfile in lockfiles:
        subject = SbomSubject(f"{mirror_name} set {lockfile.set_name}", tool_version, commit,
                              source_date_epoch, commit_modified)
        documents[sbom_name(lockfile.set_name)] = render_sbom(
            subject, [lockfile], facts,
            [kept for kept in retained if kept[0].set_name == lockfile.set_name], left_out)
    everything = SbomSubject(mirror_name, tool_version, commit, source_date_epoch,
                             commit_modified)
    documents[MIRROR_DOCUMENT] = render_sbom(everything, list(lockfiles), facts, retained,
                                             left_out)
    return documents


def tool_sbom(wheels: Sequence[ToolWheel], *, mirror_name: str, tool_version: str,
              source_date_epoch: int | None = None) -> bytes:
    """``tool.cdx.json``: the CycloneDX document of the wheels a full bundle's ``tool/``
    carries (lockmirror's own and its dependencies', which the far side installs
    before anything is imported): each a component with its file's sha256 and what
    the wheel's own METADATA says, for the same review as the sets' releases."""
    from packaging.utils import parse_wheel_filename

    from ..formats.core_metadata import archive_metadata, parse_metadata
    from ..formats.lockfile import LockedFile, LockedPackage, Lockfile

    files: dict[tuple[str, Version], list[LockedFile]] = {}
    facts: dict[tuple[str, Version], ReleaseFacts] = {}
    for wheel in sorted(wheels, key=lambda w: w.filename):
        name, version, _, _ = parse_wheel_filename(wheel.filename)
        files.setdefault((name, version), []).append(
            LockedFile(wheel.filename, "", len(wheel.data), wheel.sha256))
        facts[(name, version)] = ReleaseFacts.from_metadata(
            parse_metadata(archive_metadata(wheel.data, wheel.filename)))
    roots = ("lockmirror",) if any(name == "lockmirror" for name, _ in files) else ()
    packages = tuple(LockedPackage(name, version, (), "", wheels=tuple(found))  # type: ignore[arg-type]
                     for (name, version), found in sorted(files.items()))
    carried = Lockfile(set_name="tool", requirements=roots, targets=(), input_hash="",
                       packages=packages)
    subject = SbomSubject(f"{mirror_name} tool/ (lockmirror and its dependencies)",
                          tool_version, None, source_date_epoch)
    return render_sbom(subject, [carried], facts)


def release_facts(lockfiles: Sequence[Lockfile], store: AnyStore
                  ) -> dict[tuple[str, Version], ReleaseFacts]:
    """(name, version) -> what its core metadata in the store says."""
    facts: dict[tuple[str, Version], ReleaseFacts] = {}
    for lockfile in lockfiles:
        for package in lockfile.packages:
            if package.key not in facts:
                facts[package.key] = facts_of(package, store)
    return facts


def facts_of(package: LockedPackage, store: AnyStore, *,
             hash_archives: bool = False) -> ReleaseFacts:
    """What ``package``'s core metadata in the store says (MISSING when it has none).
    An S3 store is asked for the PEP 658 files only (fetch keeps one beside every
    wheel); a local store also for the metadata inside an sdist. A store file is
    read only where its bytes match its sha256 name: the PEP 658 file always (it is
    read whole anyway), a wheel or sdist with ``hash_archives`` (a store restored from
    a cache entry, which any job of a CI repository can write)."""
    from ..formats.core_metadata import MetadataError, archive_metadata, parse_metadata
    from ..formats.store import Store
    from ..fsutil import sha256_bytes, sha256_file

    for file in package.files:  # a PEP 658 file is smallest: any wheel's will do
        if file.metadata_sha256 and store.has(file.metadata_sha256):
            data = _read(store, file.metadata_sha256)
            if data is not None and sha256_bytes(data) == file.metadata_sha256.lower():
                return ReleaseFacts.from_metadata(parse_metadata(data))
    if not isinstance(store, Store):
        return MISSING
    for file in package.files:
        if store.has(file.sha256, file.size):
            archive = store.path(file.sha256)
            if hash_archives and sha256_file(archive) != file.sha256:
                continue
            try:
                data = archive_metadata(archive, file.filename)
            except MetadataError:
                continue
            return ReleaseFacts.from_metadata(parse_metadata(data))
    return MISSING


def _read(store: AnyStore, sha256: str) -> bytes | None:
    try:
        with store.open(sha256) as handle:
            return handle.read()
    except OSError:
        return None
