"""``lockmirror check-install [DIR]``: prove every set installs from the index alone."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "check-install"
HELP = ("prove with real installers (uv pip compile per set and target, pip install + "
        "pip check where this machine matches a target) that every set installs from the "
        "index alone")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", nargs="?", type=Path, default=Path("dist-index"),
                        help="the index tree (default: dist-index)")
    parser.add_argument("--set", dest="sets", action="append", metavar="SET",
                        help="only this set (repeatable)")
    parser.add_argument("--target", dest="targets", action="append", metavar="TARGET",
                        help="only this target (repeatable)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--index-url", help="use this simple index URL instead of the directory "
                                           "(e.g. a deployed mirror)")
    where.add_argument("--serve", action="store_true",
                       help="serve the directory over HTTP on 127.0.0.1 while checking, "
                            "instead of a file:// URL")
    parser.add_argument("--no-install", action="store_true",
                        help="only resolve with uv; skip the pip install on this machine")
    parser.add_argument("--work-dir", type=Path,
                        help="keep the uv cache and virtual environments here")


def run(args: argparse.Namespace) -> int:
    from ..verify import verify_closure

    def progress(message: str) -> None:
        print(f"... {message}", file=sys.stderr, flush=True)

    report = verify_closure(args.directory, sets=args.sets, targets=args.targets,
                            index_url=args.index_url, serve=args.serve,
                            install=not args.no_install, work_dir=args.work_dir,
                            progress=progress)
    for check in report.checks:
        if check.ok:  # failures are listed once, in the error below
            print(check.describe())
    report.raise_for_failures()
    from ..http import redact_url

    print(f"closure verified from {redact_url(report.index_url)}")
    return 0
