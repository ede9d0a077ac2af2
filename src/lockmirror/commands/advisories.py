"""``lockmirror advisories``: the advisory snapshot the far side audits with.

Asks ``policy.advisory_sources`` (every kind) about every locked release and
writes what they said, with their labels and the time, to ``-o FILE``
(``advisories.json``): carry it across the gap beside the bundle, and there
``lockmirror audit --offline --advisories advisories.json --lockfile ...``
judges the imported lockfiles with no network. Exit status: 0 written; 1
when a source cannot be reached or a lockfile is missing; 2 for a
configuration error.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from .. import pipeline
from ..config import load_config
from ..errors import LockmirrorError
from ..fsutil import atomic_write
from ..timeutil import parse_when
from ._options import NameList

NAME = "advisories"
HELP = ("write the advisory snapshot of the locked releases (-o advisories.json) for "
        "`audit --offline --advisories` on the far side")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default="mirror.yaml", help="default: mirror.yaml")
    parser.add_argument("--set", dest="sets", action=NameList, metavar="NAME",
                        help="only this set's lockfile (repeatable or A,B; default: every set)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                        help="where to write the snapshot (atomically)")
    parser.add_argument("--now", metavar="WHEN",
                        help="the time recorded as taken (default: now, UTC)")


def run(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    if not loaded.config.policy.advisory_sources:
        raise LockmirrorError("no advisory sources to take a snapshot of",
                              where=loaded.path.name,
                              hint="list them under policy.advisory_sources")
    now = parse_when(args.now) if args.now else datetime.now(UTC)
    snapshot = pipeline.advisories(loaded, now=now, sets=args.sets)
    atomic_write(args.output, snapshot.dumps())
    print(f"{args.output}: {len(snapshot.advisories)} advisories on "
          f"{len(snapshot.releases)} locked releases from {', '.join(snapshot.sources)}")
    return 0
