"""``lockmirror check-install [DIR]``: prove every set installs from the index alone.

The same stage as ``doit check-install`` (``pipeline.check_install``): in a project
(``--config``, default ./mirror.yaml when present) on its ``paths.index``, the same
work directory and installer copies, and the same pass recorded."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import DEFAULT_CONFIG
from ._options import NameList, project_if_any

NAME = "check-install"
HELP = ("prove with the far side's installers (newest pip and uv, the pips of Debian 12, "
        "Ubuntu 22.04 and RHEL 9) that every set installs from the index and from its "
        "mirrored lockfile alone, over file:// and HTTP")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", nargs="?", type=Path,
                        help="the index tree (default: paths.index of mirror.yaml, else "
                             "dist-index)")
    parser.add_argument("--config", metavar="PATH",
                        help=f"mirror.yaml (default: ./{DEFAULT_CONFIG} when present); on its "
                             "paths.index the run works in its paths.cache/verify/ and records "
                             "a whole pass there, as `doit check-install` does")
    parser.add_argument("--set", dest="sets", action=NameList, metavar="SET",
                        help="only this set (repeatable or A,B)")
    parser.add_argument("--target", dest="targets", action=NameList, metavar="TARGET",
                        help="only this target (repeatable or A,B)")
    parser.add_argument("--installer", dest="installers", action="append", metavar="NAME",
                        help="only this installer of the matrix, e.g. 'pip 23.0.1' or uv "
                             "(repeatable; default: all)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--index-url", help="install from this simple index URL (a deployed "
                                           "mirror), with its own lockfiles and constraints "
                                           "(which must equal the directory's, if it has any; "
                                           "an upload repository such as pypiserver has none: "
                                           "its pages are checked with the directory's "
                                           "constraints)")
    where.add_argument("--serve", action="store_true",
                       help="only over HTTP (the directory served on 127.0.0.1)")
    where.add_argument("--file", action="store_true", help="only over file://")
    parser.add_argument("--no-install", action="store_true",
                        help="only resolve with uv (and dry-run the lockfiles); install nothing")
    parser.add_argument("--work-dir", type=Path,
                        help="keep the installer copies here (runs are removed afterwards; "
                             "default: paths.cache/verify/ on the project's index, else a "
                             "temporary directory and ~/.cache/lockmirror/installers)")


def run(args: argparse.Namespace) -> int:
    from .. import pipeline

    def progress(message: str) -> None:
        print(f"... {message}", file=sys.stderr, flush=True)

    transports = ("http",) if args.serve else ("file://",) if args.file else None
    report = pipeline.check_install(project_if_any(args.config), index_dir=args.directory,
                                    sets=args.sets, targets=args.targets,
                                    index_url=args.index_url, transports=transports,
                                    install=not args.no_install, installers=args.installers,
                                    work_dir=args.work_dir, progress=progress)
    for check in report.checks:
        if check.ok:  # failures are listed once, in the error below
            print(check.describe())
    print(f"check-install: {report.summary()}")
    report.raise_for_failures()
    from ..redaction import redact_url

    skipped = (f"; {len(report.skipped)} of the steps skipped (above): not everything was "
               "installed" if report.skipped else "")
    print(f"closure verified from {', '.join(redact_url(u) for u in report.index_urls)}"
          f"{skipped}")
    return 0
