"""``lockmirror audit``: re-check every locked release now; optionally quarantine.

Exit status: 0 when nothing is denied, 1 when a deny-level finding remains,
2 for a configuration error. With ``--quarantine`` the report and the status are
those of the audit before quarantining; afterwards a release a current lockfile
pins stays denied until a new lock moves it, and one only earlier lock revisions
name is reported ``quarantined``, which fails nothing
(:mod:`lockmirror.stages.audit_quarantine`).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from .. import pipeline
from ..config import load_config
from ..stages.audit_render import RENDERERS
from ..stages.quarantine import render_plan
from ..timeutil import parse_when
from ._options import NameList

NAME = "audit"
HELP = ("re-check every locked release against the policy now (advisories, yanks, "
        "expired exceptions); exit 1 on denied findings")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="default: mirror.yaml (with --mirror: the one "
                        "its bundle carried)")
    parser.add_argument("--set", dest="sets", action=NameList, metavar="SET",
                        help="audit only this set (repeatable or A,B; default: every set)")
    parser.add_argument("--lockfile", dest="lockfiles", action="extend", nargs="+", type=Path,
                        metavar="PATH", help="audit these lockfiles instead of the sets' "
                        "(e.g. dist-index/lockfiles/*.toml on the far side)")
    parser.add_argument("--format", choices=sorted(RENDERERS), default="text",
                        help="text (terminal), markdown (job summary, PR comment) or json")
    parser.add_argument("--advisories", action="append", type=Path, default=[],
                        metavar="PATH", help="also use this offline OSV database "
                        "(directory or .zip) or advisory snapshot (`lockmirror advisories "
                        "-o FILE.json`); repeatable")
    parser.add_argument("--offline", action="store_true",
                        help="no network: offline advisory databases only, yanked state "
                        "from the lockfiles")
    parser.add_argument("--mirror", type=Path, metavar="DIR",
                        help="audit a mirror imported on the far side: its lockfiles, the "
                        "advisory snapshot and mirror.yaml its bundles carried (-c to use "
                        "another); no network")
    parser.add_argument("--now", metavar="WHEN",
                        help="audit as of this ISO date/time instead of now (UTC)")
    parser.add_argument("--quarantine", action="store_true",
                        help="take releases with denied findings out of the index and add "
                        "them to the quarantine list")
    parser.add_argument("--dry-run", action="store_true",
                        help="with --quarantine: show what would be removed, change nothing")


def run(args: argparse.Namespace) -> int:
    # the command line is the one place that reads the clock
    now = parse_when(args.now) if args.now else datetime.now(UTC)
    if args.mirror is not None:  # the far side (stages/import_state.py)
        from ..errors import LockmirrorError
        from ..stages.import_state import audit_imported

        if args.quarantine:
            raise LockmirrorError("--quarantine works on the build side; on the far side a "
                                  "refresh bundle (bundle --advisories-only) quarantines")
        report = audit_imported(args.mirror, now=now, databases=args.advisories,
                                config=Path(args.config) if args.config else None)
        sys.stdout.write(RENDERERS[args.format](report))
        return report.exit_code
    loaded = load_config(args.config or "mirror.yaml")
    report = pipeline.audit(loaded, now=now, sets=args.sets, lockfiles=args.lockfiles,
                          offline=args.offline, databases=args.advisories)
    sys.stdout.write(RENDERERS[args.format](report))
    if args.quarantine:
        plan = pipeline.quarantine(loaded, report, now=now, dry_run=args.dry_run)
        # the plan goes to stderr so that --format json stays parseable on stdout
        sys.stderr.write(render_plan(plan))
    return report.exit_code
