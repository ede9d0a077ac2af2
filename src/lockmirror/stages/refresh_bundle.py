"""The refresh bundle: today's advisories and quarantine list for the far side, no packages.

``lockmirror bundle --advisories-only`` writes
``<out>/lockmirror-<name>-<id>.advisories.tar`` and its ``.sha256``: a bundle
of kind ``advisories`` (:mod:`lockmirror.formats.bundle_format`) whose members
are ``advisories.json`` (the advisory snapshot of every locked release,
:mod:`lockmirror.resolve.advisory_snapshot`), ``quarantine.json`` (the
committed quarantine list, empty when there is none), ``README.txt`` and
``SHA256SUMS``, pinned by ``bundle.json`` and signed like any bundle. A few
KiB: it crosses the gap between full bundles.

Written by the same path as every bundle (:mod:`lockmirror.stages.bundle_write`),
and as reproducible: the same snapshot (sources' answers and ``taken`` time),
list, key and epoch give the same bytes. On the far side
:mod:`lockmirror.stages.import_refresh` imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..config import LoadedConfig
from ..errors import LockmirrorError
from ..formats.bundle_format import ADVISORIES, ADVISORIES_NAME, QUARANTINE_NAME, BundleInfo
from ..formats.manifest import MANIFEST_NAME
from ..formats.quarantine_list import QuarantineList
from ..fsutil import sha256_bytes
from ..resolve.advisory_snapshot import Snapshot
from ..timeutil import resolve_source_date_epoch
from .bundle_tar import Member
from .bundle_write import write_bundle, writing_in


@dataclass(frozen=True)
class RefreshBundleResult:
    path: Path
    checksums: Path
    sha256: str
    content_id: str
    size: int
    advisories: int
    quarantined: int
    signed: bool
    taken: str
    source_date_epoch: int
    changed: bool  # False: an identical refresh bundle was already there


def build_refresh_bundle(loaded: LoadedConfig, snapshot: Snapshot, *, out_dir: Path,
                         key: Path | None = None,
                         source_date_epoch: int | None = None) -> RefreshBundleResult:
    """Write the refresh bundle of ``snapshot`` and the quarantine list
    (``paths.quarantine``) into ``out_dir``; ``key`` signs it.

    Raises LockmirrorError for an unreadable or malformed quarantine list or
    key, or when the bundle cannot be written (nothing is left then)."""
    quarantine = QuarantineList.read(loaded.quarantine_path)
    epoch, _ = resolve_source_date_epoch(source_date_epoch, loaded.lockfile_dir)
    manifest = loaded.index_dir / MANIFEST_NAME
    try:
        index_sha = sha256_bytes(manifest.read_bytes())
    except FileNotFoundError:
        raise LockmirrorError("the index was not built", where=str(manifest),
                              hint="run `doit index` (a refresh goes with the mirror's "
                                   "index)") from None
    provisional = BundleInfo(name=loaded.config.name, kind=ADVISORIES,
                             index_manifest_sha256=index_sha, base_manifest_sha256=None,
                             lockmirror_version=__version__, tool_python=None, files={})
    members = [Member(ADVISORIES_NAME, data=snapshot.dumps().encode()),
               Member(QUARANTINE_NAME, data=quarantine.dumps().encode())]
    with writing_in(out_dir, provisional.name):
        written = write_bundle(provisional, members, _readme(provisional, snapshot),
                               out_dir=out_dir, epoch=epoch, key=key)
    return RefreshBundleResult(
        path=written.parts[0], checksums=written.checksums, sha256=written.sha256[0],
        content_id=written.info.content_id, size=written.size,
        advisories=len(snapshot.advisories), quarantined=len(quarantine.releases),
        signed=written.signed, taken=snapshot.taken.strftime("%Y-%m-%dT%H:%M:%SZ"),
        source_date_epoch=epoch, changed=written.changed)


def _readme(info: BundleInfo, snapshot: Snapshot) -> bytes:
    stem = f"lockmirror-{info.name}-*.advisories"
    return f"""\
lockmirror refresh bundle of the mirror "{info.name}" (lockmirror {info.lockmirror_version})

Advisories taken {snapshot.taken:%Y-%m-%d %H:%M} UTC from {', '.join(snapshot.sources)};
and the build side's quarantine list. No packages.

1. Check it arrived intact:  sha256sum -c {stem}.tar.sha256
2. Import it into the mirror a full bundle made:
     lockmirror import {stem}.tar --into /srv/mirror [--pubkey signer.pub]
   It re-audits the mirror against these advisories, takes the quarantined
   releases out of the index, and says what changed. A refresh older than the
   advisories the mirror holds is refused.
3. Audit at any time, no network:  lockmirror audit --mirror /srv/mirror
""".encode()
