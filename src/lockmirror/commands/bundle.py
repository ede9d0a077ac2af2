"""``lockmirror bundle``: a reproducible tarball of the mirror for the far side of a gap."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from .. import pipeline
from ..config import DEFAULT_CONFIG, load_config
from ..fsutil import format_size
from ..timeutil import parse_when

NAME = "bundle"
HELP = ("write dist/lockmirror-<name>-<id>.tar (+ .sha256): the index, lockfiles, mirror.yaml "
        "and lockmirror's own wheels, reproducibly; --since for a delta, --split for volumes")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=DEFAULT_CONFIG, metavar="PATH",
                        help="the mirror's configuration (default: mirror.yaml)")
    parser.add_argument("--index", type=Path, metavar="DIR",
                        help="the index tree to carry (default: paths.index of mirror.yaml)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="where to write the bundle (default: paths.dist of mirror.yaml)")
    parser.add_argument("--since", type=Path, metavar="MANIFEST|BUNDLE",
                        help="make a delta against this manifest.json, mirror directory or "
                             "previous bundle: carry only files the far side lacks")
    parser.add_argument("--split", metavar="SIZE",
                        help="cut into volumes of at most SIZE (e.g. 700M, 4095M, 4G)")
    parser.add_argument("--key", type=Path, metavar="KEY",
                        help="sign bundle.json with this Ed25519 private key (OpenSSH or PEM; "
                             "passphrase from $LOCKMIRROR_KEY_PASSPHRASE; default: the file "
                             "$LOCKMIRROR_SIGNING_KEY names, else unsigned)")
    tool = parser.add_mutually_exclusive_group()
    tool.add_argument("--tool", dest="tool", action="store_true", default=None,
                      help="carry lockmirror's wheels (default for full bundles)")
    tool.add_argument("--no-tool", dest="tool", action="store_false",
                      help="leave lockmirror's wheels out (default for deltas)")
    parser.add_argument("--keep", type=_count, metavar="N",
                        help="keep the newest N bundles of this mirror in the output directory, "
                             "this one included, and remove older ones (default: bundle.keep "
                             "of mirror.yaml, 3; 0 keeps all)")
    parser.add_argument("--advisories-only", action="store_true",
                        help="write a refresh bundle instead (.advisories.tar): the advisory "
                             "snapshot and quarantine.json, no packages; `lockmirror import` on "
                             "the far side re-audits and quarantines with it")
    parser.add_argument("--now", metavar="WHEN",
                        help="the time the advisory snapshot records as taken (default: now, "
                             "UTC, never SOURCE_DATE_EPOCH); the same inputs, answers and "
                             "--now give the same bytes")
    parser.add_argument("--source-date-epoch", type=int, metavar="SECONDS",
                        help="mtime of every member (default: $SOURCE_DATE_EPOCH, else the "
                             "lockfiles' last commit time)")


def run(args: argparse.Namespace) -> int:
    # without --now the advisories are taken at the clock, when the sources are asked:
    # --source-date-epoch / $SOURCE_DATE_EPOCH stamp the tar members only, never "taken"
    now = parse_when(args.now) if args.now else None
    if args.advisories_only:
        return _refresh(args, now)
    result = pipeline.bundle(
        load_config(args.config), index_dir=args.index, out=args.out, since=args.since,
        split=args.split, key=args.key, source_date_epoch=args.source_date_epoch,
        tool=args.tool, keep=args.keep, now=now,
        progress=lambda text: print(f"bundle: {text}", file=sys.stderr))
    state = "written" if result.changed else "already current"
    for said in result.notes:
        print(f"bundle: {said}", file=sys.stderr)
    print(f"bundle: {result.kind} bundle {result.content_id} {state}: "
          f"{format_size(result.size)}, {result.index_files_carried} of "
          f"{result.index_files_total} index files, {result.tool_wheels} tool wheels, "
          f"{'signed' if result.signed else 'unsigned'}")
    for part, digest in zip(result.parts, result.sha256, strict=True):
        print(f"  {part}  sha256 {digest}")
    print(f"  {result.checksums}")
    if result.base_manifest_sha256:
        print(f"  applies onto the mirror whose last full or delta bundle's manifest.json "
              f"had sha256 {result.base_manifest_sha256}")
    for release in result.removes:
        print(f"  removes {release} on the far side (left the lock and the retention window)")
    print(f"  mtime {result.source_date_epoch} from {result.epoch_source}")
    if note := result.tool_note():
        print(f"  {note}")
    removed = result.removed.summary()
    if removed:
        print(f"bundle: {removed}")
    return 0


def _refresh(args: argparse.Namespace, now: datetime | None) -> int:
    """``--advisories-only``: the refresh bundle (stages/refresh_bundle.py)."""
    result = pipeline.refresh_bundle(load_config(args.config), out=args.out, key=args.key,
                                     source_date_epoch=args.source_date_epoch, now=now)
    state = "written" if result.changed else "already current"
    print(f"bundle: refresh bundle {result.content_id} {state}: {result.advisories} "
          f"advisories taken {result.taken}, {result.quarantined} quarantined releases, "
          f"{'signed' if result.signed else 'unsigned'}")
    print(f"  {result.path}  sha256 {result.sha256}")
    print(f"  {result.checksums}")
    return 0


def _count(text: str) -> int:
    """A ``--keep`` value: a whole number >= 0 (argparse reports anything else)."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a whole number >= 0: {text!r}")
    return int(text)
