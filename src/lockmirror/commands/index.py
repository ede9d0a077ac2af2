"""``lockmirror index``: build the static index (dist-index/) from lockfiles and the store.

With no arguments every set of mirror.yaml is indexed into its ``paths.index``.
Given lockfiles, ``--store`` and ``--out``, mirror.yaml is not read at all;
that form imports nothing but the index stage (a no-op run then costs tens
of milliseconds as a whole process).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import LoadedConfig
    from ..net.s3_store import AnyStore
    from ..stages.index import IndexResult

NAME = "index"
HELP = "build dist-index/ (PEP 503/691/658/700 pages, files, manifest) from lockfiles and the store"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lockfiles", nargs="*", type=Path,
                        help="pylock.<set>.toml files (default: every set of mirror.yaml)")
    parser.add_argument("--config", help="default: mirror.yaml (not read when lockfiles, --store "
                        "and --out are all given, unless named here)")
    parser.add_argument("--store", help="a directory or s3://bucket/prefix (default: "
                        "paths.store of mirror.yaml)")
    parser.add_argument("--out", type=Path, help="default: paths.index of mirror.yaml")
    parser.add_argument("--title", help="landing page title (default: the mirror's name)")
    parser.add_argument("--mirror-yaml", type=Path,
                        help="the mirror.yaml to name on the landing page (default: --config "
                             "when it is read)")
    parser.add_argument("--quarantine", type=Path,
                        help="quarantine list whose releases are left out (default: "
                             "paths.quarantine of mirror.yaml when it is read)")
    parser.add_argument("--full", action="store_true",
                        help="ignore the saved state: compare every file of the tree and "
                             "hash every store file it links against its name")
    parser.add_argument("--sbom", action=argparse.BooleanOptionalAction, default=None,
                        help="write the CycloneDX SBOMs sbom/<set>.cdx.json and "
                             "sbom/mirror.cdx.json (default: with mirror.yaml, not with "
                             "explicit lockfiles, --store and --out)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors")


def run(args: argparse.Namespace) -> int:
    from .. import pipeline

    loaded = None  # lockfiles, --store and --out given: mirror.yaml is not read
    if not (args.lockfiles and args.store and args.out) or args.config is not None:
        from ..config import load_config

        loaded = load_config(args.config or "mirror.yaml")
    result = pipeline.index(loaded, lockfiles=args.lockfiles, store=_store(args.store, loaded),
                            out=args.out, title=args.title, mirror_yaml=args.mirror_yaml,
                            quarantine=args.quarantine, full=args.full, sbom=args.sbom)
    for note in result.notes:
        print(f"index: {note}", file=sys.stderr)
    if not args.quiet:
        print_result(result)
    return 0


def print_result(result: IndexResult) -> None:
    """What a run did, as both front doors (this command and ``doit index``) say it."""
    from ..fsutil import format_size, plural

    what = (f"{plural(result.projects, 'project')}, {plural(result.files, 'file')}, "
            f"{format_size(result.total_size)}")
    if result.noop:
        print(f"index: {result.out_dir}: up to date ({what})")
        return
    print(f"index: {result.out_dir}: {what}; {plural(len(result.written), 'file')} written "
          f"({result.linked} linked, {result.copied} copied), {len(result.removed)} removed")
    for release in result.removed_releases:
        print(f"  removed {release} (no lockfile needs it any more)")


def _store(given: str | None, loaded: LoadedConfig | None) -> Path | AnyStore | None:
    """``--store`` read as ``paths.store`` is: an ``s3://`` URL names an S3 store
    (client options from mirror.yaml's S3 destination on that bucket, when it is
    read), anything else a local directory."""
    if given is None:
        return None
    from ..net.s3_store import is_s3_url, open_store, store_of

    if not is_s3_url(given):
        return Path(given)
    if loaded is not None:
        return store_of(loaded, given)
    return open_store(given, Path(".cache") / "s3-staging")  # staging: unused by the index
