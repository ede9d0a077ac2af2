"""What the fetch stage has to do: the files the lockfiles need, and which are missing.

* :func:`plan` lists the work: one :class:`~lockmirror.formats.store.FetchItem`
  per distinct sha256 (every wheel and sdist of every lockfile, plus the
  PEP 658 metadata file of each wheel whose hash the lockfile records), with
  the sets that need it. gc keeps what it names.
* :func:`missing` is the cheap "already current?" check (one ``stat`` per item);
  :func:`is_current` applies it to a loaded ``mirror.yaml`` (doit's up-to-date
  check of ``fetch``); :func:`fetch_command` is the hint for what it finds.

No network and no HTTP stack: the downloads are :mod:`lockmirror.stages.fetch`'s.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from ..errors import LockmirrorError
from ..formats.lockfile import Lockfile
from ..formats.store import FetchItem
from ..net.s3_store import store_of

if TYPE_CHECKING:
    from pathlib import Path

    from ..config import LoadedConfig
    from ..net.s3_store import AnyStore


def is_current(loaded: LoadedConfig, also: Sequence[Path] = ()) -> bool:
    """Whether every file the lockfiles of ``loaded`` (and ``also``) need is in its store.

    The cheap up-to-date check for a task runner: reads the lockfiles and
    ``stat``s one path per file; no network, no hashing. False when a
    lockfile is missing or unreadable (the fetch itself then says why).
    """
    try:
        lockfiles = [Lockfile.read(path) for path in
                     [*(loaded.lockfile_path(name) for name in sorted(loaded.config.sets)),
                      *also]]
    except LockmirrorError:
        return False
    return not missing(plan(lockfiles), store_of(loaded))


def metadata_url(file_url: str) -> str:
    """The PEP 658 metadata URL of a wheel: its URL (without fragment) + ``.metadata``."""
    return urllib.parse.urldefrag(file_url).url + ".metadata"


def plan(lockfiles: Sequence[Lockfile]) -> list[FetchItem]:
    """Every file the lockfiles need, once per sha256, sorted by URL.

    A file named by several sets or targets (or by several lockfiles) becomes
    one item whose ``needed_by`` lists every set. Raises LockmirrorError for
    a locked file without a usable sha256. Costs nothing but memory.
    """
    found: dict[str, tuple[FetchItem, set[str]]] = {}

    def add(url: str, sha256: str, size: int | None, filename: str, set_name: str,
            is_metadata: bool, wheel_sha256: str | None = None) -> None:
        digest = sha256.lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise LockmirrorError(f"{filename} has no valid sha256 ({sha256!r})",
                                  where=f"lockfile of set '{set_name}'",
                                  hint="re-create it with `doit lock`")
        if digest in found:
            found[digest][1].add(set_name)
        else:
            item = FetchItem(url=urllib.parse.urldefrag(url).url, sha256=digest, size=size,
                             filename=filename, needed_by=(), is_metadata=is_metadata,
                             wheel_sha256=wheel_sha256)
            found[digest] = (item, {set_name})

    for lockfile in lockfiles:
        for _package, file in lockfile.iter_files():
            # size 0 means "not recorded" (PEP 751 makes it optional), except
            # for the one file whose bytes really are empty.
            size = file.size if file.size > 0 or file.sha256.lower() == _EMPTY_SHA256 else None
            add(file.url, file.sha256, size, file.filename, lockfile.set_name, False)
            if file.is_wheel and file.metadata_sha256:
                add(metadata_url(file.url), file.metadata_sha256, None,
                    file.filename + ".metadata", lockfile.set_name, True, file.sha256.lower())
    items = [
        FetchItem(url=item.url, sha256=item.sha256, size=item.size, filename=item.filename,
                  needed_by=tuple(sorted(sets)), is_metadata=item.is_metadata,
                  wheel_sha256=item.wheel_sha256)
        for item, sets in found.values()
    ]
    return sorted(items)


def missing(items: Sequence[FetchItem], store: AnyStore) -> list[FetchItem]:
    """The items not yet in the store (one ``stat`` each; the name proves the hash).

    This is the stage's up-to-date check: empty means nothing to do. A file
    whose size the lockfile does not record must at least not be empty: that
    is what a crash can leave of a file renamed before the disk had its bytes
    (see ``durable`` in :func:`lockmirror.stages.fetch.fetch`).
    """
    return [item for item in items if not _present(item, store)]


def fetch_command(set_names: Collection[str]) -> str:
    """The hint for locked files the store lacks, given the sets that lock them: the
    fetch of those sets by name (in a CI matrix each set's own job fetches them)."""
    names = sorted(set_names)
    if not names:
        return "run `doit fetch`"
    return (f"locked by set{'s' if len(names) > 1 else ''} {', '.join(names)}: "
            f"run `lockmirror fetch --set {','.join(names)}`")


def _present(item: FetchItem, store: AnyStore) -> bool:
    if item.size is not None or item.sha256 == _EMPTY_SHA256:
        return store.has(item.sha256, item.size)
    return (store.size_of(item.sha256) or 0) > 0


_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
