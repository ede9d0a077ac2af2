"""``lockmirror diff [OLD] [NEW]``: what a lockfile change means, for a reviewer.

OLD and NEW are each a git revision, a lockfile, or a directory of
lockfiles. OLD defaults to the merge base of HEAD with the main branch
(``--base``, else ``origin/$GITHUB_BASE_REF`` in a pull-request workflow,
else origin/HEAD, origin/main, origin/master, main, master); NEW defaults to
the working tree. ``--textconv FILE`` renders one lockfile for git's diff
driver, and ``--git-external`` compares the two sides git hands to
``diff.lockmirror.command`` (both set up by ``lockmirror setup-git``). The work
is :func:`lockmirror.stages.diff.run`'s; this module parses options and prints.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LockmirrorError
from ..formats.lockfile import Lockfile, text_digest
from ..fsutil import atomic_write
from ..stages.diff_textconv import render_textconv

if TYPE_CHECKING:
    from ..stages.diff import LockfileSide

NAME = "diff"
HELP = "show what changed between two lock states: packages, why, files, sizes, policy"

MAIN_BRANCHES = ("origin/HEAD", "origin/main", "origin/master", "main", "master")
FORMATS = ("text", "markdown", "json")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", nargs="?", metavar="OLD",
                        help="git revision, lockfile or directory (default: merge base of HEAD "
                             "with the main branch)")
    parser.add_argument("new", nargs="?", metavar="NEW",
                        help="git revision, lockfile or directory (default: the working tree)")
    parser.add_argument("--format", choices=FORMATS, default="text",
                        help="text for terminals (default), markdown for a PR comment or "
                             "$GITHUB_STEP_SUMMARY, json for machines")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write to FILE (atomically) instead of standard output")
    parser.add_argument("--config", default="mirror.yaml",
                        help="mirror.yaml, for where the lockfiles live (default: mirror.yaml)")
    parser.add_argument("--base", metavar="BRANCH",
                        help="the main branch whose merge base is the default OLD")
    parser.add_argument("--exit-code", action="store_true",
                        help="exit 1 when the lockfiles differ, 2 on an error (like "
                             "`git diff --exit-code`)")
    parser.add_argument("--audit", action="store_true",
                        help="add the audit's findings (advisories, yanks as of now) for the "
                             "NEW lockfiles; asks the sources unless --offline")
    parser.add_argument("--offline", action="store_true",
                        help="with --audit: offline advisory databases and the lockfiles' "
                             "own yanked state only")
    parser.add_argument("--textconv", metavar="FILE",
                        help="print one lockfile as lines for git's diff driver "
                             "(set up by `lockmirror setup-git`)")
    parser.add_argument("--git-external", nargs="+", metavar="ARG",
                        help="compare two lockfiles for git's diff.lockmirror.command (set up "
                             "by `lockmirror setup-git`): PATH OLD-FILE OLD-HEX OLD-MODE "
                             "NEW-FILE NEW-HEX NEW-MODE")


def run(args: argparse.Namespace) -> int:
    if args.textconv:
        return _textconv(Path(args.textconv))
    if args.git_external:
        sys.stdout.write(_git_external(args.git_external))
        return 0
    # git's drivers above run once per changed lockfile: the stage (and mirror.yaml's
    # reader) is imported only here
    from ..stages import diff as stage
    from ..stages import diff_render

    render = {"text": diff_render.render_text, "markdown": diff_render.render_markdown,
              "json": diff_render.render_json}[args.format]
    try:  # the command line is where the clock is read
        diff = stage.run(args.old, args.new, config=Path(args.config),
                         branches=_branches(args.base),
                         audit_now=datetime.now(UTC) if args.audit else None,
                         offline=args.offline)
        text = render(diff)
        if args.output:
            _write_output(Path(args.output), text)
    except OSError as exc:  # an input that cannot be read: as the front door words it
        error = LockmirrorError(str(exc.strerror or exc),
                                where=str(exc.filename) if exc.filename else None)
        error.exit_code = 2 if args.exit_code else 1
        raise error from None
    except LockmirrorError as error:
        if args.exit_code and error.exit_code == 1:  # 1 means "they differ" here
            error.exit_code = 2
        raise
    if args.output:  # else the notes are in what is printed
        for note in diff.notes:
            print(f"lockmirror: warning: {note}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 1 if args.exit_code and diff.changed else 0


def _write_output(path: Path, text: str) -> None:
    """``--output``: written whole or not at all; LockmirrorError naming it if it cannot be."""
    try:
        atomic_write(path, text)
    except OSError as exc:
        raise LockmirrorError(f"cannot write: {exc.strerror or exc}", where=str(path)) from None


def _textconv(path: Path) -> int:
    # git gives an empty file for the missing side of an added or deleted lockfile,
    # and a failing textconv aborts the whole `git diff`: fall back to the raw text.
    # The name in the repository is looked up only for an error (it costs a git process
    # scanning the index, for every blob `git log -p` hands over).
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LockmirrorError(f"cannot read: {exc}", where=_name_in_repository(path)) from None
    if not raw.strip():
        return 0
    try:
        sys.stdout.write(render_textconv(Lockfile.loads(raw, where=str(path)),
                                         text_sha256=text_digest(raw)))
    except LockmirrorError as error:
        if error.where == str(path):
            error.where = _name_in_repository(path)
        print(f"lockmirror: warning: {error}; showing the raw text", file=sys.stderr)
        sys.stdout.write(raw)
    return 0


def _name_in_repository(path: Path) -> str:
    """``path`` as the user knows it: git hands textconv a side that is no working-tree
    file as ``$TMPDIR/git-blob-XXXXXX/<its base name>``, named here by the one tracked
    file of that base name (git runs textconv at the work tree's top), else the base name."""
    if not path.parent.name.startswith("git-blob-"):
        return str(path)
    from ..gitutil import run_git

    listed = run_git(Path.cwd(), "ls-files", "--full-name", "-z", "--",
                     f":(glob)**/{path.name}", optional=True) or ""
    found = [name for name in listed.split("\0") if name]
    return found[0] if len(found) == 1 else path.name


def _git_external(argv: list[str]) -> str:
    """git's external diff: ``lockmirror diff`` of the two sides, pin bumps as moves.

    git passes PATH OLD-FILE OLD-HEX OLD-MODE NEW-FILE NEW-HEX NEW-MODE (only PATH
    for an unmerged file); a side that does not exist is ``/dev/null``. A side that
    is no valid lockfile falls back to a unified diff of the text, since a failing
    driver would abort the whole ``git diff``.
    """
    from ..stages.diff import diff_lockfiles
    from ..stages.diff_render import render_text

    if len(argv) != 7:
        return f"* Unmerged path {argv[0]}\n"
    path, old_file, old_hex, _, new_file, new_hex, _ = argv
    header = f"diff --lockmirror a/{path} b/{path}\n"
    old_text, new_text = _side_text(old_file), _side_text(new_file)
    try:
        old = _side(old_text, f"a/{path} ({_blob(old_hex)})")
        new = _side(new_text, f"b/{path} ({_blob(new_hex)})")
    except LockmirrorError as error:
        print(f"lockmirror: warning: {error}; showing the raw text", file=sys.stderr)
        return header + "".join(difflib.unified_diff(
            old_text.splitlines(keepends=True), new_text.splitlines(keepends=True),
            f"a/{path}", f"b/{path}"))
    return header + render_text(diff_lockfiles(old, new))


def _blob(hex_id: str) -> str:
    return "working tree" if not hex_id.strip("0.") else hex_id[:12]


def _side_text(file: str) -> str:
    try:
        return "" if file == os.devnull else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LockmirrorError(f"cannot read: {exc}", where=file) from None


def _side(text: str, label: str) -> LockfileSide:
    from ..stages.diff import LockfileSide, TextFacts

    if not text.strip():
        return LockfileSide(label, {}, {}, single_file=True)
    lockfile = Lockfile.loads(text, where=label)
    return LockfileSide(label, {lockfile.set_name: lockfile},
                        {lockfile.set_name: label}, single_file=True,
                        texts={lockfile.set_name: TextFacts.of(lockfile, text)})


def _branches(explicit: str | None) -> list[str]:
    if explicit:
        return [explicit]
    branches = list(MAIN_BRANCHES)
    base_ref = os.environ.get("GITHUB_BASE_REF")  # set by GitHub Actions on pull_request
    if base_ref:
        branches.insert(0, f"origin/{base_ref}")
    return branches
