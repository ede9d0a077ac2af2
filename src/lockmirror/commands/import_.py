"""``lockmirror import``: check a bundle completely and swap it into a mirror directory.

Works with no network and no mirror.yaml: this is what runs on the far side.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from ..fsutil import format_size, plural
from ..stages.import_plan import signature_note
from ..stages.import_refresh import RefreshResult, render_refresh
from ..stages.importer import import_any

NAME = "import"
HELP = ("check a bundle (outer hash, signature, every member) and swap it atomically into a "
        "mirror directory; no network")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", nargs="+", type=Path, metavar="BUNDLE",
                        help="the bundle's .tar, or all of its volumes (.tar.001 ...)")
    parser.add_argument("--into", type=Path, required=True, metavar="DIR",
                        help="the mirror directory to create or replace")
    parser.add_argument("--pubkey", type=Path, metavar="KEY",
                        help="require a signature by this Ed25519 public key (OpenSSH or PEM)")
    parser.add_argument("--renamed", action="store_true",
                        help="accept a bundle whose mirror name differs from the one DIR holds "
                             "(the mirror was renamed in mirror.yaml)")
    parser.add_argument("--allow-older", action="store_true",
                        help="accept a full or delta bundle dated before the last one DIR "
                             "took (or of unknown date), or any bundle whose advisories were "
                             "taken before those DIR holds: going back on purpose")


def run(args: argparse.Namespace) -> int:
    # a bundle --advisories-only made is imported by stages/import_refresh.py; with
    # --pubkey, an unsigned bundle.json is refused before it is parsed to tell which
    result = import_any(args.bundle, args.into, now=datetime.now(UTC), pubkey=args.pubkey,
                        renamed=args.renamed, allow_older=args.allow_older,
                        progress=lambda text: print(f"import: {text}", file=sys.stderr))
    if isinstance(result, RefreshResult):
        print("\n".join(render_refresh(result)))
        _warn_leftover(result.leftover)
        return 0
    if result.recovered:
        print(f"import: {result.recovered}")
    signature = signature_note(result.signed, result.signer)
    if not result.changed:
        print(f"import: {result.into} already holds {result.kind} bundle {result.content_id} "
              f"({result.files} files); nothing to do; {signature}")
        return 0
    print(f"import: {result.kind} bundle {result.content_id} of {result.name!r} is now "
          f"{result.into}: {result.files} files, {result.extracted} extracted "
          f"({format_size(result.bytes_extracted)}), {result.linked} kept; every file "
          f"verified; {signature}")
    for release in result.removed_releases:
        print(f"import: removed {release} (the bundle's index no longer serves it)")
    if result.kept_out is not None:  # the bundle brought releases a refresh took out
        edit = result.kept_out  # files: wheels and sdists, not a wheel's .metadata
        print(f"import: kept out {', '.join(edit.releases)}: on the mirror's quarantine list "
              f"(from its last refresh bundle); {plural(edit.distributions_removed, 'file')} "
              f"left out, {plural(len(edit.rewritten), 'page')} rewritten")
    if not result.data_filter:
        print("import: this Python's tarfile has no data filter; lockmirror's own member "
              "checks (regular files and directories only, no absolute names or '..') applied")
    _warn_leftover(result.leftover)
    return 0


def _warn_leftover(leftover: str | None) -> None:
    """The import succeeded, but the previous tree it swapped out is still there."""
    if leftover:
        print(f"lockmirror: warning: {leftover}", file=sys.stderr)
