"""The declared license of each locked release, without downloading a distribution.

Where from, in order: the store (the PEP 658 metadata file fetch put there, or
the metadata inside a stored wheel or sdist: :func:`lockmirror.stages.sbom.facts_of`, each
file used only where its bytes match its sha256 name),
then, for a release the store lacks and when an index client is given, the
index's PEP 658 ``.metadata`` file of a locked wheel (a few KiB; never the
wheel). A release neither can tell about is left out: its license was not
checked, which audit says.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import LockmirrorError
from ..formats.licenses import DeclaredLicense, declared_license

if TYPE_CHECKING:
    from packaging.version import Version

    from ..formats.lockfile import LockedPackage, Lockfile
    from ..net.s3_store import AnyStore

__all__ = ["release_licenses"]


def release_licenses(lockfiles: Sequence[Lockfile], store: AnyStore | None, client: Any = None,
                     *, only: Collection[tuple[str, Version]] | None = None,
                     ) -> dict[tuple[str, Version], DeclaredLicense]:
    """(name, version) -> declared license, for every locked release (those in
    ``only`` when given) whose core metadata the store or the index's PEP 658
    files give. ``client``: an :class:`~lockmirror.net.index_client.IndexClient`
    (anything else, or None: the store only). Raises NetworkError when the
    index cannot be reached."""
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
            declared = _from_index(client, package)
            if declared is not None:
                found[key] = declared
    return found


def _from_index(client: Any, package: LockedPackage) -> DeclaredLicense | None:
    """The license in the PEP 658 file of one of ``package``'s locked wheels, if
    its index serves one (verified against the advertised sha256)."""
    from ..formats.core_metadata import parse_metadata

    locked = {f.filename for f in package.files}
    try:
        page = client.project(package.name)
    except LockmirrorError:
        return None
    for file in page.files:
        if file.filename in locked and file.is_wheel and file.has_metadata:
            return declared_license(parse_metadata(client.metadata(file)))
    return None
