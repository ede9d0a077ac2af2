"""``lockmirror sets [--json]``: mirror.yaml's sets, one shard of a CI matrix each.

``--json`` prints one line, ``{"set": [...], "include": [...]}``, for a
GitHub Actions ``strategy.matrix: ${{ fromJSON(...) }}``: ``set`` lists the
names, ``include`` gives each set its targets and lockfile.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config import DEFAULT_CONFIG, load_config

NAME = "sets"
HELP = "list mirror.yaml's sets (--json: the job matrix of a sharded CI run, one job per set)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=DEFAULT_CONFIG, metavar="PATH",
                        help="the mirror's configuration (default: mirror.yaml)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON line for strategy.matrix: {\"set\": [...], "
                             "\"include\": [{\"set\", \"targets\", \"lockfile\"}, ...]}")


def run(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    config = loaded.config
    rows = [{"set": name, "targets": config.set_targets(name),
             "lockfile": _relative(loaded.lockfile_path(name), loaded.root)}
            for name in config.sets]
    if args.json:
        print(json.dumps({"set": [row["set"] for row in rows], "include": rows},
                         separators=(",", ":")))
        return 0
    for row in rows:
        print(f"{row['set']}: {', '.join(row['targets'])} ({row['lockfile']})")
    return 0


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to mirror.yaml's directory where it lies below it (the
    form ``hashFiles`` takes), else as it is."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
