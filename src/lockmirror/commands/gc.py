"""``lockmirror gc``: remove from the store and the caches what no current lockfile needs.

The same stage as ``doit gc`` (``pipeline.gc``, :mod:`lockmirror.stages.gc`). With
no mirror.yaml (no ``--config`` and none here: the far side) only what killed
check-install runs outside a project left."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import DEFAULT_CONFIG
from ..errors import InputError
from ..fsutil import format_size
from ._options import project_if_any

if TYPE_CHECKING:
    from ..stages.gc import GcResult

NAME = "gc"
HELP = ("remove store files, cached metadata and check-install leftovers that no current "
        "lockfile needs, and say how many bytes that freed")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH",
                        help=f"the mirror's configuration (default: ./{DEFAULT_CONFIG}; with "
                             "none here, only what killed check-install runs outside a "
                             "project and killed publishes left is collected)")
    parser.add_argument("--dry-run", action="store_true",
                        help="list what would be removed and the bytes it would free; "
                             "remove nothing")
    parser.add_argument("--shared-store", action="store_true",
                        help="also collect a store given by $LOCKMIRROR_STORE, by this "
                             "mirror's lockfiles alone (other mirrors sharing it lose theirs)")
    parser.add_argument("--list", action="store_true", help="one line per path removed")


def run(args: argparse.Namespace) -> int:
    from .. import pipeline

    loaded = project_if_any(args.config)
    if loaded is None and args.shared_store:  # outside a project (the far side): no store
        raise InputError(f"--shared-store: no {DEFAULT_CONFIG} in {Path.cwd()}, so no store "
                         "to collect", hint="run it in the mirror's project or pass --config")
    result = pipeline.gc(loaded, dry_run=args.dry_run, shared_store=args.shared_store)
    print_result(result, each=args.list or args.dry_run)
    return 0


def print_result(result: GcResult, *, each: bool = False) -> None:
    """What went, by kind (each path with ``each``), then the one-line total."""
    kinds: dict[str, list[int]] = {}
    for removal in result.removed:
        kinds.setdefault(removal.kind, []).append(removal.freed)
        if each:
            print(f"  {removal.kind}: {removal.path} ({format_size(removal.freed)})")
    for kind, sizes in sorted(kinds.items()):
        print(f"gc: {len(sizes)} x {kind} ({format_size(sum(sizes))})")
    for note in result.skipped:
        print(f"gc: {note}")
    print(f"gc: {result.describe()}")
