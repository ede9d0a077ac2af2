"""The declared license of each locked release, without downloading a distribution.

Where from, in order: the store (the PEP 658 metadata file fetch put there, or
the metadata inside a stored wheel or sdist: :func:`lockmirror.stages.sbom.facts_of`, each
file used only where its bytes match its sha256 name),
then, for a release the store lacks and when an index client is given, the
index's PEP 658 ``.metadata`` file of a locked wheel (a few KiB), else, where
the index serves none (lock then read METADATA out of the wheel and recorded its
hash), the METADATA read the way lock reads it: the client's memo or HTTP cache,
or range requests on the wheel's zip directory (where the server ignores Range,
a download of the whole wheel). A release neither can tell about, or whose
wheel's METADATA cannot be read, is left out: its license was not checked,
which audit and diff say.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import LockmirrorError
from ..formats.licenses import DeclaredLicense, declared_license
from ..fsutil import sha256_bytes

if TYPE_CHECKING:
    from packaging.version import Version

    from ..formats.lockfile import LockedPackage, Lockfile
    from ..net.s3_store import AnyStore

__all__ = ["release_licenses"]


def release_licenses(lockfiles: Sequence[Lockfile], store: AnyStore | None, client: Any = None,
                     *, only: Collection[tuple[str, Version]] | None = None,
                     wheel_metadata: bool = False,
                     ) -> dict[tuple[str, Version], DeclaredLicense]:
    """(name, version) -> declared license, for every locked release (those in
    ``only`` when given) whose core metadata the store or the index's PEP 658
    files give (``wheel_metadata``: or, where the index serves none, the METADATA
    in a locked wheel whose hash the lockfile records, read as lock reads it: by
    range requests, or the whole wheel where the server ignores Range).
    ``client``: an :class:`~lockmirror.net.index_client.IndexClient` (anything
    else, or None: the store only). Raises NetworkError when the index cannot be
    reached."""
    from .sbom import facts_of

    found: dict[tuple[str, Version], DeclaredLicense] = {}
    missing: dict[tuple[str, Version], LockedPackage] = {}
    for lockfile in lockfiles:
        for package in lockfile.packages:
            key = package.key
            if key in found or key in missing or (only is not None and key not in only):
                continue
            known = (facts_of(package, store, hash_archives=True) if store is not None
                     else None)
            if known is not None and known.metadata_found:
                found[key] = known.license
            else:
                missing[key] = package
    if missing and client is not None and hasattr(client, "metadata"):
        for key, package in sorted(missing.items()):
            declared = _from_index(client, package, wheel_metadata)
            if declared is not None:
                found[key] = declared
    return found


def _from_index(client: Any, package: LockedPackage, wheel_metadata: bool
                ) -> DeclaredLicense | None:
    """The license in the core metadata of one of ``package``'s locked wheels: its
    PEP 658 file if the index serves one (verified against the advertised sha256),
    else (``wheel_metadata``), for a wheel whose metadata hash the lockfile records
    (lock read METADATA out of the wheel), that METADATA read again (the client's
    memo or cache, or range requests; the whole wheel where the server ignores Range)
    and checked against the recorded hash; None when neither is there or that read
    fails (a network, integrity or metadata error: the license is not compared)."""
    from ..formats.core_metadata import parse_metadata

    recorded = {f.filename: f.metadata_sha256 for f in package.files if f.is_wheel}
    try:
        page = client.project(package.name)
    except LockmirrorError:
        return None
    wheels = [f for f in page.files if f.filename in recorded and f.is_wheel]
    for file in sorted(wheels, key=lambda f: not f.has_metadata):  # a PEP 658 file first
        if file.has_metadata:
            return declared_license(parse_metadata(client.metadata(file)))
        pinned = recorded[file.filename]
        if wheel_metadata and pinned:
            try:  # bump's diff runs after its commit: a failed read must not fail it
                data = client.metadata(file)
            except LockmirrorError:
                return None
            if sha256_bytes(data) == pinned.lower():
                return declared_license(parse_metadata(data))
    return None
