"""``lockmirror setup-git``: let plain ``git diff`` and ``git log -p`` read the
lockfiles the lockmirror way, from any shell.

Writes, into the repository's ``.git/config``, the ``lockmirror`` diff driver
with this interpreter's absolute path (``<python> -m lockmirror diff ...``),
so the driver works without the venv on ``PATH``:

- ``diff.lockmirror.textconv``: each lockfile rendered as self-describing lines
  (``git log -p``, ``git show``, ``git diff`` with ``--no-ext-diff``);
- ``diff.lockmirror.command``: both sides compared by ``lockmirror diff``
  (``git diff``, and ``git log -p --ext-diff``): a pin bump reads
  ``^ requests 2.31.0 -> 2.32.3``.

and the ``.gitattributes`` line that marks the lockfiles ``diff=lockmirror``
(added when missing). Re-running it is harmless; after moving or recreating the
venv, run it again.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

NAME = "setup-git"
HELP = ("configure git's diff driver for the lockfiles with this interpreter's absolute path, "
        "so `git diff` and `git log -p` work from any shell")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config",
                        help="mirror.yaml, for where the lockfiles live (default: ./mirror.yaml "
                             "when present, else ./lockfiles/)")
    parser.add_argument("--textconv-only", action="store_true",
                        help="set the textconv only: `git diff` shows -/+ lines of the "
                             "rendering instead of lockmirror's diff")


def run(args: argparse.Namespace) -> int:
    from ..fsutil import atomic_write
    from ..gitutil import repository_root, run_git
    from ._options import project_if_any

    loaded = project_if_any(args.config)
    start = loaded.root if loaded else Path.cwd()
    root = repository_root(start, hint="run it in the clone that holds mirror.yaml")
    lockfile_dir = loaded.lockfile_dir if loaded else start / "lockfiles"
    pattern = f"{_relative(lockfile_dir, root)}pylock.*.toml diff=lockmirror"
    command = f"{shlex.quote(sys.executable)} -m lockmirror diff"
    settings = {"diff.lockmirror.textconv": f"{command} --textconv"}
    if not args.textconv_only:
        settings["diff.lockmirror.command"] = f"{command} --git-external"
    else:
        run_git(root, "config", "--unset", "diff.lockmirror.command", optional=True)
    for key, value in settings.items():
        run_git(root, "config", key, value, failed=f"cannot set {key}")
        print(f"git config {key} {shlex.quote(value)}")
    attributes = root / ".gitattributes"
    text = attributes.read_text(encoding="utf-8") if attributes.is_file() else ""
    if pattern not in text.splitlines():
        atomic_write(attributes, text + ("" if not text or text.endswith("\n") else "\n")
                     + pattern + "\n")
        print(f"{attributes}: added `{pattern}` (commit it)")
    return 0


def _relative(directory: Path, root: Path) -> str:
    try:
        relative = directory.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return "**/"
    return "" if relative == "." else relative + "/"
