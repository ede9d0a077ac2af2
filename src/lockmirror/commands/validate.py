"""``lockmirror validate [PATH]``: check mirror.yaml and report every problem."""

from __future__ import annotations

import argparse

from ..config import load_config

NAME = "validate"
HELP = "check mirror.yaml and report every problem, one line each (exit 2 on errors)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", default="mirror.yaml", help="default: mirror.yaml")


def run(args: argparse.Namespace) -> int:
    loaded = load_config(args.path)
    config = loaded.config
    print(f"{args.path}: ok: {len(config.sets)} sets, {len(config.targets)} targets, "
          f"{len(config.sources)} sources")
    return 0
