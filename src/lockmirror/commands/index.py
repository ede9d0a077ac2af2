"""``lockmirror index``: build the static index (dist-index/) from lockfiles and the store.

With no arguments every set of mirror.yaml is indexed into its ``paths.index``.
Given lockfiles, ``--store`` and ``--out``, mirror.yaml is not read at all;
that form is also what ``python -m lockmirror.commands.index`` runs, which
imports nothing but the index stage (a no-op run then costs tens of
milliseconds as a whole process).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..stages.index import IndexResult

NAME = "index"
HELP = "build dist-index/ (PEP 503/691/658/700 pages, files, manifest) from lockfiles and the store"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lockfiles", nargs="*", type=Path,
                        help="pylock.<set>.toml files (default: every set of mirror.yaml)")
    parser.add_argument("--config", help="default: mirror.yaml (not read when lockfiles, --store "
                        "and --out are all given, unless named here)")
    parser.add_argument("--store", type=Path, help="default: paths.store of mirror.yaml")
    parser.add_argument("--out", type=Path, help="default: paths.index of mirror.yaml")
    parser.add_argument("--title", help="landing page title (default: the mirror's name)")
    parser.add_argument("--mirror-yaml", type=Path,
                        help="the mirror.yaml to name on the landing page (default: --config "
                             "when it is read)")
    parser.add_argument("--quarantine", type=Path,
                        help="quarantine list whose releases are left out (default: "
                             "paths.quarantine of mirror.yaml when it is read)")
    parser.add_argument("--full", action="store_true",
                        help="ignore the saved state: compare every file of the tree")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors")


def run(args: argparse.Namespace) -> int:
    from ..fsutil import format_size

    overrides = (args.lockfiles, args.store, args.title, args.mirror_yaml, args.quarantine)
    if any(overrides):
        result = _build_given(args)
        out = args.out or result.out_dir
    else:  # the mirror as mirror.yaml describes it: the same entry as `doit index`
        from .. import pipeline
        from ..config import load_config

        loaded = load_config(args.config or "mirror.yaml")
        result = pipeline.index(loaded, out=args.out, full=args.full)
        out = args.out or loaded.index_dir
    if args.quiet:
        return 0
    what = (f"{result.projects} projects, {result.files} files, "
            f"{format_size(result.total_size)}")
    if result.noop:
        print(f"{out}: up to date ({what})")
        return 0
    print(f"{out}: {what}; wrote {len(result.written)} files "
          f"({result.linked} linked, {result.copied} copied), removed {len(result.removed)}")
    for release in result.removed_releases:
        print(f"  removed {release}")
    return 0


def _build_given(args: argparse.Namespace) -> IndexResult:
    """The index of the lockfiles, store and list given on the command line,
    anything not given taken from mirror.yaml (read only when needed)."""
    from ..formats.quarantine_list import quarantined
    from ..formats.url_policy import UrlRule
    from ..stages.index import DEFAULT_TITLE, build_index

    lockfiles: list[Path] = list(args.lockfiles)
    store, out, mirror_yaml, title = args.store, args.out, args.mirror_yaml, args.title
    quarantine = args.quarantine
    sources = None  # without mirror.yaml: only the URL rules that need no sources
    if not (lockfiles and store and out) or args.config is not None:
        from ..config import load_config

        loaded = load_config(args.config or "mirror.yaml")
        sources = loaded.config.sources
        lockfiles = lockfiles or [loaded.lockfile_path(name) for name in loaded.config.sets]
        store = store or loaded.store_dir
        out = out or loaded.index_dir
        mirror_yaml = mirror_yaml or loaded.path
        title = title or loaded.config.name
        quarantine = quarantine or loaded.quarantine_path
    # a mistyped --quarantine must not publish what it keeps out
    exclude = quarantined(quarantine, required=args.quarantine is not None)
    # every URL must lie under a declared source before anything is indexed
    return build_index(lockfiles, store, out, mirror_yaml=mirror_yaml,
                       title=title or DEFAULT_TITLE, full=args.full, exclude=exclude,
                       url_rule=UrlRule(tuple(sources) if sources is not None else None))
