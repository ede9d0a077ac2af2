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
(added when missing). It adds to ``.gitignore`` what lockmirror writes into the
repository that must not be committed (:func:`ignore_lines`: the store, the
index and its state beside it, the bundles, the caches, doit's database), each
line once. Re-running it is harmless; after moving or recreating the venv, run
it again.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import LoadedConfig

NAME = "setup-git"
HELP = ("configure git's diff driver for the lockfiles with this interpreter's absolute path, "
        "so `git diff` and `git log -p` work from any shell; add what lockmirror writes and "
        "must not be committed to .gitignore")


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
    for name, lines in ((".gitattributes", [pattern]),
                        (".gitignore", ignore_lines(loaded, start, root))):
        path = root / name
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        missing = [line for line in lines if line not in text.splitlines()]
        if missing:
            atomic_write(path, text + ("" if not text or text.endswith("\n") else "\n")
                         + "".join(f"{line}\n" for line in missing))
            print(f"{path}: added {', '.join(f'`{line}`' for line in missing)} (commit it)")
    return 0


def ignore_lines(loaded: LoadedConfig | None, start: Path, root: Path) -> list[str]:
    """The ``.gitignore`` lines for what lockmirror writes into the repository at
    ``root`` and must not be committed, by mirror.yaml's ``paths`` (defaults
    without one, under ``start``): the store (unless on S3), the index and the
    index stage's state beside it (where :func:`~lockmirror.stages.index.state_dir_for`
    puts it), the bundles, the caches, and doit's database (``.doit.db*``, as
    ``dodo.py`` names it). A path outside the repository needs no line."""
    from ..config_schema import PathsConfig
    from ..stages.index import state_dir_for

    paths = loaded.config.paths if loaded else PathsConfig()
    base = loaded.root if loaded else start
    written = [base / paths.store] if not paths.store.startswith("s3://") else []
    index = base / paths.index
    written += [index, state_dir_for(index), base / paths.dist, base / paths.cache]
    lines = []
    for path in written:
        relative = _relative(path, root)
        if relative not in ("", "**/"):  # the repository itself, or outside it
            lines.append(f"/{relative}")
    return [*lines, ".doit.db*"]


def _relative(directory: Path, root: Path) -> str:
    try:
        relative = directory.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return "**/"
    return "" if relative == "." else relative + "/"
