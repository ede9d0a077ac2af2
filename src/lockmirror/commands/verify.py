"""``lockmirror verify DIR``: re-check a mirror tree against its manifest.json.

The one meaning of "verify" at both front doors; the install check is
``check-install`` (``lockmirror check-install``, ``doit check-install``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import DEFAULT_CONFIG, LoadedConfig, load_config
from ..errors import LockmirrorError
from ..stages.verify import (
    refuse_while_changing,
    repair_hint,
    unchecked_manifest,
    verify_mirror,
)
from ._options import is_project_index, project_if_any

NAME = "verify"
HELP = ("re-check a mirror directory against its manifest.json: missing, altered and "
        "unexpected files (exit 1 if any); the install check is check-install")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", type=Path, metavar="DIR",
                        help="a mirror tree (an imported bundle, dist-index/, or a tree-layout "
                             "directory publish)")
    parser.add_argument("--sizes-only", action="store_true",
                        help="compare sizes, not sha256 (fast; misses same-size changes)")
    parser.add_argument("--config", default=None, metavar="PATH",
                        help=f"mirror.yaml (default: ./{DEFAULT_CONFIG} when present): tells its "
                             "index (a copy, as a CI job holds) from other trees, as publish does")


def run(args: argparse.Namespace) -> int:
    report = verify_mirror(args.directory, hash_files=not args.sizes_only)
    if not report.ok:  # an index build or import begun meanwhile: its files, not damage
        refuse_while_changing(args.directory)
    for label, paths in (("missing", report.missing), ("altered", report.altered),
                         ("unexpected", report.unexpected)):
        for path in paths:
            print(f"{label}: {args.directory / path}")
    for path in report.temporary:
        print(f"leftover: {args.directory / path} (an interrupted write's temporary file; "
              "not part of the mirror, `publish --prune` removes it)")
    if report.ok:
        unchecked = unchecked_manifest(
            args.directory, project_index=is_project_index(args.directory, _project(args.config)))
        print(f"verify: {args.directory}: every file matches manifest.json"
              + (f"; {unchecked}" if unchecked else ""))
        return 0
    print(f"verify: {args.directory}: {len(report.missing)} missing, {len(report.altered)} "
          f"altered, {len(report.unexpected)} unexpected")
    print(f"verify: to repair {repair_hint(args.directory)}")
    return 1


def _project(config: str | None) -> LoadedConfig | None:
    """The project whose index verify words its answer for: ``--config``'s, else
    ./mirror.yaml's when it loads (verify checks a mirror, not the config: a broken
    mirror.yaml in the directory it runs from is no project, not an error)."""
    if config is not None:
        return load_config(config)
    try:
        return project_if_any(None)
    except LockmirrorError:
        return None
