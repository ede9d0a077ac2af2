"""How every import starts: the lock beside the mirror, then the bundle's head, its
signature checked once, under the lock.

:func:`opened_import` is the one opening of a bundle for import: a full or delta
bundle's (:func:`lockmirror.stages.importer.import_bundle`), a refresh bundle's
(:func:`lockmirror.stages.import_refresh.refresh_opened`), and ``lockmirror
import``'s, which picks between the two by the kind the checked head names
(:func:`lockmirror.stages.importer.import_any`). What it yields is handed on:
nothing reads ``bundle.json`` or checks its signature again.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..errors import BundleError, printable
from ..formats import signing
from ..formats.bundle_reader import BundleHead, BundleSource, locate_bundle, read_head
from ..formats.manifest import IMPORT_STATE, PUBLISHER_STATE, STATE_DIR, temporary_target
from ..fsutil import check_output_dir, first_of
from .import_plan import REFUSED
from .import_state import require_signature_check
from .import_swap import import_lock, make_parents, mirror_path, remove_made_parents


@dataclass(frozen=True)
class OpenedImport:
    """A bundle an import holds the lock for, and the mirror it goes into."""

    source: BundleSource
    into: Path                        # absolute, a symlink resolved (:func:`mirror_path`)
    trusted: Ed25519PublicKey | None  # the --pubkey, if given
    head: BundleHead                  # bundle.json, its signature checked against trusted
    recovered: str | None             # how an interrupted earlier import was resolved


@contextmanager
def opened_import(paths: Sequence[Path], into: Path,
                  pubkey: Path | None) -> Iterator[OpenedImport]:
    """Hold the import lock beside ``into`` for the block and yield the bundle
    ``paths`` opened for it: what a killed import left resolved, a ``.lockmirror/``
    holding nothing this lockmirror does not know (:func:`refuse_unknown_state`), the
    mirror's recorded signer required of ``pubkey`` (:func:`require_signature_check`),
    then ``bundle.json`` read with its signature checked before it is parsed
    (:func:`read_head`).

    Missing parent directories of ``into`` are created for the lock, and removed
    again when the block (or the opening) fails. Raises LockmirrorError for an
    unusable key, destination (a file, or under one: :func:`check_output_dir`) or
    signer record, or while another import runs beside ``into``; BundleError for a
    state entry this lockmirror does not know, for a bundle that does not start as
    lockmirror writes them or whose signature is missing or wrong. Costs a few
    header reads and one read of ``bundle.json``."""
    source = locate_bundle([Path(p) for p in paths])
    check_output_dir(into, "the import destination", hint="point --into at a directory")
    into = mirror_path(into)
    trusted = signing.load_public_key(pubkey) if pubkey is not None else None
    made = make_parents(into)
    try:
        with import_lock(into) as recovered:
            refuse_unknown_state(into)  # a newer lockmirror's record: the swap would drop it
            require_signature_check(into, trusted)
            yield OpenedImport(source, into, trusted, read_head(source, trusted), recovered)
    except BaseException:
        remove_made_parents(made)  # a refused import leaves no new directories behind
        raise


def refuse_unknown_state(mirror: Path) -> None:
    """Refuse an import (a bundle's or a refresh bundle's) into a mirror whose
    ``.lockmirror/`` holds an entry this lockmirror does not write: a newer
    lockmirror's record, which the swap would drop without a word, and with it the
    protection it keeps (as an older lockmirror once dropped ``signer`` and
    ``bundle-time``). Known are the import's state (:data:`IMPORT_STATE`), a directory
    publish's (:data:`PUBLISHER_STATE`) and an interrupted atomic write's temporary
    file of either; the import and publish locks are taken on directories, and staging
    trees live beside the mirror, never in it. Raises BundleError naming the entries;
    costs one listing of the directory."""
    state = mirror / STATE_DIR
    if state.is_symlink() or not state.is_dir():
        return
    known = {rel.removeprefix(f"{STATE_DIR}/") for rel in IMPORT_STATE | PUBLISHER_STATE}
    unknown = sorted(printable(name) for name in os.listdir(state)
                     if name not in known and temporary_target(name) not in known)
    if unknown:
        raise BundleError(
            f"{STATE_DIR}/ holds {first_of(unknown, 5)}, which this lockmirror does not know "
            "(written by a newer lockmirror?)", where=str(mirror),
            hint=f"install lockmirror from the newest full bundle's tool/ (README.txt in it "
                 f"says how) and import with that; {REFUSED}")
