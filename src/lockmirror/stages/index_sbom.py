"""The index's SBOMs: ``sbom/<set>.cdx.json`` and ``sbom/mirror.cdx.json``.

The documents are those ``lockmirror sbom`` prints (:mod:`lockmirror.stages.sbom`),
written into the index tree (so ``manifest.json`` names them and bundles carry
them). They are rendered only when what they are made from changed since the
last run (a lockfile, the mirror.yaml commit, the tool's version, the time
stamp, the quarantine list) or one of them is missing from the tree; otherwise
the previous ones are kept as they are. Same inputs, same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from .. import __version__
from ..fsutil import sha256_bytes

if TYPE_CHECKING:
    from ..formats.landing_page import Provenance
    from ..net.s3_store import AnyStore
    from .index_sets import PackageSet
    from .index_tree import Tree

SBOM_DIR = "sbom"

__all__ = ["SBOM_DIR", "sbom_path", "write_sboms"]


def sbom_path(set_name: str | None) -> str:
    """The tree path of a set's SBOM (None: the whole mirror's)."""
    from .sbom import MIRROR_DOCUMENT, sbom_name  # formats.sbom's imports: only with SBOMs

    return f"{SBOM_DIR}/{sbom_name(set_name) if set_name else MIRROR_DOCUMENT}"


def write_sboms(tree: Tree, sets: Sequence[PackageSet], store: AnyStore, provenance: Provenance,
                *, mirror_name: str, previous_key: str | None,
                kept: Sequence[PackageSet] = (),
                exclude: Collection[tuple[str, str]] = ()) -> str:
    """Put every set's SBOM and the mirror's into ``tree`` unless their inputs'
    key is ``previous_key`` and the tree has them all; the key (for the state).
    ``kept``: the earlier lock revisions the index serves (retention), declared too.
    ``exclude``: the releases the index leaves out (the quarantine list): no
    components, named in each document's ``lockmirror:quarantined`` properties.
    Costs, when rendering: one git call (the time stamp), a parse of each
    lockfile the index did not parse in this run (its rows were kept) and one
    small metadata read from the store per locked release."""
    from ..formats.lockfile import Lockfile
    from .sbom import sbom_documents, sbom_stamp

    paths = [*(sbom_path(s.name) for s in sets), sbom_path(None)]
    stamp = sbom_stamp(sets[0].input.path.parent if sets else None)
    key = sha256_bytes(json.dumps([
        "sbom/1", __version__, mirror_name, provenance.commit, provenance.config_modified, stamp,
        sorted((s.name, s.input.sha256) for s in sets),
        sorted((s.name, s.input.sha256, s.kept_for) for s in kept), sorted(exclude)]).encode())
    if key == previous_key and tree.keep_files(paths):
        return key

    def lockfile_of(locked: PackageSet) -> Lockfile:  # one the index parsed is not parsed again
        return locked.lockfile or Lockfile.loads(locked.input.read().decode(),
                                                 where=str(locked.input.path))

    documents = sbom_documents([lockfile_of(s) for s in sets], store, mirror_name=mirror_name,
                               tool_version=__version__, commit=provenance.commit,
                               commit_modified=provenance.config_modified,
                               source_date_epoch=stamp,
                               retained=[(lockfile_of(s), s.kept_for) for s in kept],
                               quarantined=exclude)
    for name, data in sorted(documents.items()):
        tree.put(f"{SBOM_DIR}/{name}", data)
    return key
