"""``lockmirror outdated``: what is newer upstream, what the set allows, and why not.

Exit status: 0 when every locked release is the newest its set allows and
none has an advisory (releases held back by a pin, a constraint or the
policy are listed with the reason and do not fail it); 1 when a release can
move or a locked release has an advisory that no exception waives; 2 for a
configuration error.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from .. import pipeline
from ..config import load_config
from ..stages.outdated import RENDERERS
from ..timeutil import parse_when
from ._options import NameList

NAME = "outdated"
HELP = ("list locked releases behind upstream with the reason each newer one is not "
        "allowed; exit 1 when something can move or has an advisory")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default="mirror.yaml", help="default: mirror.yaml")
    parser.add_argument("--set", dest="sets", action=NameList, metavar="NAME",
                        help="only this set (repeatable or A,B; default: every set)")
    parser.add_argument("--format", choices=sorted(RENDERERS), default="text",
                        help="text (terminal), markdown (job summary, PR body) or json")
    parser.add_argument("--now", metavar="WHEN",
                        help="judge ages and exceptions as of this ISO date/time (UTC)")


def run(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    now = parse_when(args.now) if args.now else datetime.now(UTC)
    report = pipeline.outdated(loaded, now=now, sets=args.sets)
    sys.stdout.write(RENDERERS[args.format](report))
    return report.exit_code
