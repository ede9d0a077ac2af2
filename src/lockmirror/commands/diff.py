"""``lockmirror diff [OLD] [NEW]``: what a lockfile change means, for a reviewer.

OLD and NEW are each a git revision, a lockfile, or a directory of
lockfiles. OLD defaults to the merge base of HEAD with the main branch
(``--base``, else ``origin/$GITHUB_BASE_REF`` in a pull-request workflow,
else origin/HEAD, origin/main, origin/master, main, master); NEW defaults to
the working tree. ``--textconv FILE`` renders one lockfile for git's diff
driver instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from ..config import load_config
from ..diff import (
    LockDiff,
    LockfileSide,
    default_base,
    diff_lockfiles,
    load_lockfiles,
    read_directory,
    render_json,
    render_markdown,
    render_text,
    render_textconv,
    repository_root,
    with_audit,
)
from ..errors import LockmirrorError
from ..fsutil import atomic_write
from ..lockfile import Lockfile

NAME = "diff"
HELP = "show what changed between two lock states: packages, why, files, sizes, policy"

MAIN_BRANCHES = ("origin/HEAD", "origin/main", "origin/master", "main", "master")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", nargs="?", metavar="OLD",
                        help="git revision, lockfile or directory (default: merge base of HEAD "
                             "with the main branch)")
    parser.add_argument("new", nargs="?", metavar="NEW",
                        help="git revision, lockfile or directory (default: the working tree)")
    parser.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                        help="text for terminals (default), markdown for a PR comment or "
                             "$GITHUB_STEP_SUMMARY, json for machines")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write to FILE (atomically) instead of standard output")
    parser.add_argument("--config", default="mirror.yaml",
                        help="mirror.yaml, for where the lockfiles live (default: mirror.yaml)")
    parser.add_argument("--base", metavar="BRANCH",
                        help="the main branch whose merge base is the default OLD")
    parser.add_argument("--exit-code", action="store_true",
                        help="exit 1 when the lockfiles differ (like `git diff --exit-code`)")
    parser.add_argument("--audit", action="store_true",
                        help="add the audit's findings (advisories, yanks as of now) for the "
                             "NEW lockfiles; asks the sources unless --offline")
    parser.add_argument("--offline", action="store_true",
                        help="with --audit: offline advisory databases and the lockfiles' "
                             "own yanked state only")
    parser.add_argument("--textconv", metavar="FILE",
                        help="print one lockfile as lines for git's diff driver "
                             "(git config diff.lockmirror.textconv \"lockmirror diff --textconv\")")


def run(args: argparse.Namespace) -> int:
    if args.textconv:
        return _textconv(Path(args.textconv))
    config = Path(args.config)
    lockfile_dir = _lockfile_dir(config)
    needs_git = args.old is None or not Path(args.old).exists() or (
        args.new is not None and not Path(args.new).exists())
    root, relative = Path.cwd(), "lockfiles"
    if needs_git:
        root = repository_root(config.resolve().parent if config.is_file() else Path.cwd())
        relative = _relative_to(lockfile_dir, root)

    if args.old is None:
        branch, commit = default_base(root, _branches(args.base))
        found = load_lockfiles(commit, repo=root, lockfile_dir=relative)
        old = LockfileSide(f"merge base with {branch} ({commit[:12]})", found.lockfiles,
                           found.paths)
    else:
        old = load_lockfiles(args.old, repo=root, lockfile_dir=relative)
    if args.new is None:
        new = read_directory(lockfile_dir, label="working tree")
    else:
        new = load_lockfiles(args.new, repo=root, lockfile_dir=relative)

    diff = diff_lockfiles(old, new)
    if args.audit:
        diff = _with_audit(diff, config, new, args.offline)
    if args.format == "json":
        text = render_json(diff)
    elif args.format == "markdown":
        text = render_markdown(diff)
    else:
        text = render_text(diff)
    if args.output:
        atomic_write(Path(args.output), text)
    else:
        sys.stdout.write(text)
    return 1 if args.exit_code and diff.changed else 0


def _textconv(path: Path) -> int:
    # git gives an empty file for the missing side of an added or deleted lockfile,
    # and a failing textconv aborts the whole `git diff`: fall back to the raw text.
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LockmirrorError(f"cannot read: {exc}", where=str(path)) from None
    if not raw.strip():
        return 0
    try:
        sys.stdout.write(render_textconv(Lockfile.loads(raw, where=str(path))))
    except LockmirrorError as error:
        print(f"lockmirror: warning: {error}; showing the raw text", file=sys.stderr)
        sys.stdout.write(raw)
    return 0


def _with_audit(diff: LockDiff, config: Path, new: LockfileSide, offline: bool) -> LockDiff:
    """The diff with the audit of NEW's lockfiles; an audit that cannot run is a warning.

    The audit is a gate of its own (``lockmirror audit``); here it only
    informs the reviewer, so a source that is down must not hide the diff.
    """
    from ..audit import audit_mirror

    paths = [Path(p) for p in new.paths.values()]
    if any(not p.is_file() for p in paths):
        raise LockmirrorError("--audit needs NEW to be the working tree or lockfile paths, "
                              "not a git revision")
    loaded = load_config(config)
    try:
        # The command line is where the clock is read.
        report = audit_mirror(loaded, now=datetime.now(UTC), lockfile_paths=paths,
                              offline=offline)
    except LockmirrorError as error:
        print(f"lockmirror: warning: audit not included: {error}", file=sys.stderr)
        return diff
    return with_audit(diff, report.rows)


def _lockfile_dir(config: Path) -> Path:
    """The lockfile directory mirror.yaml names; ``lockfiles`` next to it by default."""
    if config.is_file():
        return load_config(config).lockfile_dir
    return (config.parent / "lockfiles").resolve()


def _relative_to(directory: Path, root: Path) -> str:
    try:
        return directory.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise LockmirrorError(f"the lockfile directory {directory} is outside the git "
                              f"repository {root}", hint="give lockfile paths instead") from None


def _branches(explicit: str | None) -> list[str]:
    if explicit:
        return [explicit]
    branches = list(MAIN_BRANCHES)
    base_ref = os.environ.get("GITHUB_BASE_REF")  # set by GitHub Actions on pull_request
    if base_ref:
        branches.insert(0, f"origin/{base_ref}")
    return branches
