"""``lockmirror bump``: move the lockfiles on a branch and write the pull request's words.

With ``--security`` only the packages with deny-level advisories move
(``lock --upgrade-vulnerable``), otherwise every pin moves to the newest
allowed release (``lock --upgrade``). When something moved: the branch is
made from HEAD (``git checkout -B``), the lockfiles are committed, and the
title and body go to ``--write-pr-title`` / ``--write-pr-body`` (for ``gh pr
create/edit``). When nothing moved it says so and writes nothing: no
branch, no commit, no files. Exit status: 0 either way; 1 when the lock
fails, the lockfiles have uncommitted changes, or a vulnerable release is
pinned in mirror.yaml; 2 for a configuration error.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from .. import pipeline
from ..config import load_config
from ..fsutil import atomic_write
from ..timeutil import parse_when
from ._options import NameList, positive_int

NAME = "bump"
HELP = ("move the lockfiles (--security: only what has advisories) on a branch, commit, and "
        "write the pull request's title and body")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default="mirror.yaml", help="default: mirror.yaml")
    parser.add_argument("--set", dest="sets", action=NameList, metavar="NAME",
                        help="only this set (repeatable or A,B; default: every set)")
    parser.add_argument("--security", action="store_true",
                        help="move only packages with deny-level advisories, to their lowest fix")
    parser.add_argument("--branch", help="default: lockmirror/bump (lockmirror/bump-security "
                                         "with --security)")
    parser.add_argument("--write-pr-title", type=Path, metavar="FILE",
                        help="write the pull request's title here (only when something moved)")
    parser.add_argument("--write-pr-body", type=Path, metavar="FILE",
                        help="write the pull request's body here (only when something moved)")
    parser.add_argument("--now", metavar="WHEN",
                        help="judge ages and advisories as of this ISO date/time (UTC)")
    parser.add_argument("--jobs", type=positive_int, default=6, metavar="N",
                        help="concurrent resolutions (default 6)")


def run(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    now = parse_when(args.now) if args.now else datetime.now(UTC)
    result = pipeline.bump(loaded, now=now, security=args.security, sets=args.sets,
                           branch=args.branch, jobs=args.jobs)
    for warning in result.warnings:  # "nothing to bump" is not "nothing vulnerable"
        print(f"lockmirror: warning: {warning}", file=sys.stderr)
    if not result.changed:
        print(result.message)
        return 0
    if args.write_pr_title is not None:
        atomic_write(args.write_pr_title, result.title + "\n")
    if args.write_pr_body is not None:
        atomic_write(args.write_pr_body, result.body)
    print(f"{result.branch}: {result.commit[:12]} {result.title}")
    for move in result.moves:
        print(f"  {move}")
    return 0
