"""``lockmirror validate [PATH]``: check mirror.yaml and report every problem; then
check that every file URL of the existing lockfiles lies under a declared source
(:mod:`lockmirror.formats.url_policy`; no network)."""

from __future__ import annotations

import argparse

from ..config import load_config

NAME = "validate"
HELP = ("check mirror.yaml and report every problem, one line each, and the lockfiles' URLs "
        "(exit 2 on errors)")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", default="mirror.yaml", help="default: mirror.yaml")


def run(args: argparse.Namespace) -> int:
    from ..formats.url_policy import check_lockfile_paths

    loaded = load_config(args.path)
    config = loaded.config
    # a set not locked yet is `lock --check`'s to report; a lockfile that exists must be sound
    check_lockfile_paths([loaded.lockfile_path(name) for name in config.sets], config.sources,
                         missing_ok=True)
    print(f"{args.path}: ok: {len(config.sets)} sets, {len(config.targets)} targets, "
          f"{len(config.sources)} sources")
    return 0
