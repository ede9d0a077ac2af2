"""Running ``git``: the one helper every caller goes through.

Callers: the lock diff (reading lockfiles at a revision, the merge base),
the index's provenance (the last commit touching mirror.yaml) and the
bundle's ``SOURCE_DATE_EPOCH`` (the last commit touching the lockfiles).

Conventions, the same for all of them: git runs in the directory given
(``git -C DIR``, so a missing directory is git's own error, not ours), never
prompts (``GIT_TERMINAL_PROMPT=0``, standard input closed), takes no
optional locks (a build reading ``git status`` must not rewrite the user's
index while they work), decodes its output as UTF-8 and gives up after
:data:`TIMEOUT` seconds.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Literal, overload

from .errors import LockmirrorError

TIMEOUT = 60  # seconds; a local git command that takes longer is stuck, not busy


@overload
def run_git(cwd: Path, *args: str, failed: str | None = None, hint: str | None = None,
            optional: Literal[False] = False) -> str: ...
@overload
def run_git(cwd: Path, *args: str, failed: str | None = None, hint: str | None = None,
            optional: Literal[True]) -> str | None: ...


def run_git(cwd: Path, *args: str, failed: str | None = None, hint: str | None = None,
            optional: bool = False) -> str | None:
    """The standard output of ``git -C cwd args...``.

    When git is not installed, does not finish within :data:`TIMEOUT`, or
    exits non-zero (``cwd`` is no repository, a revision does not exist...):
    with ``optional`` returns None; otherwise raises LockmirrorError, whose
    message is ``failed`` when given (else the command and git's last line
    of error output) or "git is not installed", with ``hint`` appended.
    Costs one process.
    """
    command = ["git", "-C", str(cwd), *args]
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"}
    try:
        done = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL, env=env,
                              encoding="utf-8", timeout=TIMEOUT, check=False)
    except FileNotFoundError:
        problem = "git is not installed"
    except OSError as exc:
        problem = f"cannot run git: {exc.strerror}"
    except subprocess.TimeoutExpired:
        problem = failed or f"git {' '.join(args)} did not finish in {TIMEOUT} s"
    except UnicodeDecodeError:
        problem = failed or f"git {' '.join(args)} printed text that is not UTF-8"
    except ValueError:  # a NUL in an argument (a path from a hostile file)
        problem = failed or "an argument for git holds a NUL character"
    else:
        if done.returncode == 0:
            return done.stdout
        detail = done.stderr.strip().splitlines()
        problem = failed or (f"git {' '.join(args)} failed in {cwd}: "
                             f"{detail[-1] if detail else f'exit code {done.returncode}'}")
    if optional:
        return None
    raise LockmirrorError(problem, hint=hint)


def repository_root(directory: Path, *, hint: str | None = None) -> Path:
    """The root of the git work tree holding ``directory``; LockmirrorError outside one."""
    top = run_git(directory, "rev-parse", "--show-toplevel",
                  failed=f"{directory} is not inside a git repository", hint=hint)
    return Path(top.strip())


def path_in_repository(path: Path, root: Path, *, hint: str | None = None) -> str:
    """``path`` relative to the work tree ``root``, as git names it ("." for the
    root itself); LockmirrorError when it lies outside."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise LockmirrorError(f"the lockfile directory {path} is outside the git "
                              f"repository {root}", hint=hint) from None


def last_commit(path: Path) -> str | None:
    """The last commit touching ``path`` (its full hash); None outside git or
    when no commit touches it."""
    out = run_git(path.absolute().parent, "log", "-1", "--format=%H", "--", path.name,
                  optional=True)
    return (out or "").strip() or None


def commit_of(path: Path) -> tuple[str | None, bool]:
    """The last commit touching ``path`` (None outside git or when none does)
    and whether ``path`` differs from it now (``git status``: modified, staged or
    deleted), so what names that commit as ``path``'s source can say it is not.
    Costs two git processes (one outside git)."""
    commit = last_commit(path)
    if commit is None:
        return None, False
    changes = run_git(path.absolute().parent, "status", "--porcelain", "--", path.name,
                      optional=True)
    return commit, bool((changes or "").strip())
