"""``lockmirror du``: the mirror's size per set, target and retained lock revision,
lockmirror's own set, and what the build's directories take on this disk now."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

NAME = "du"
HELP = ("how big the mirror is per set, target and retained lock revision, its size budget, "
        "and what the store, index, bundles and caches take on this disk")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="mirror.yaml", help="default: mirror.yaml")


def run(args: argparse.Namespace) -> int:
    from .. import pipeline
    from ..config import load_config
    from ..stages.disk_footprint import render_footprint
    from ..stages.disk_usage import over_budget, render_usage

    loaded = load_config(args.config)
    usage, retention, on_disk = pipeline.disk_usage(loaded, now=datetime.now(UTC))
    for note in (*retention.notes, *on_disk.notes, *usage.notes):
        print(f"du: {note}", file=sys.stderr)
    sys.stdout.write(render_usage(usage))
    sys.stdout.write(render_footprint(on_disk))
    rule = loaded.config.retention
    problem = over_budget(usage, rule)
    if problem is not None:
        print(f"du: {'error' if rule.over_size == 'fail' else 'warning'}: {problem}",
              file=sys.stderr)
        return 1 if rule.over_size == "fail" else 0
    return 0
