"""The bump stage: one reviewed pull request that moves the lockfiles, as Renovate would.

:func:`bump` decides everything a bump pull request needs, so the workflow
only pushes and calls ``gh``:

1. refuse lockfiles with uncommitted changes (the commit must hold only the
   bump), and a set's lockfile that does not read (the diff in the body, made
   after the commit, reads every set's);
2. ``outdated`` before, to know the advisories on the locked releases;
3. move: ``security`` runs ``lock --upgrade-vulnerable`` (only packages with
   deny-level advisories, each to its lowest fix), otherwise ``lock
   --upgrade`` (every pin to the newest allowed release);
4. nothing changed: nothing is written, no branch made, and the result says
   so (``changed`` False);
5. otherwise the chosen sets the move left locked from other inputs (a policy
   or source change since their lock) are locked again with their pins kept, as
   ``lock`` would, so ``lock --check`` passes on the branch; a stale set it
   leaves (outside ``--set``, or its lock failed) is named in a warning and in
   the body;
6. ``outdated`` after; the advisories fixed are those on a locked
   release before that are on none after; the branch (``git checkout -B``
   from HEAD; a warning names the commits an existing branch loses), one
   commit of the lockfile directory, and the pull request's title and body:
   the advisories fixed, ``lockmirror diff --format markdown`` of HEAD (named
   by its branch) against the new lockfiles, and the ``outdated`` summary of
   what is still behind. The diff reads the moved releases' licenses from the
   store, else from the index's PEP 658 files or the wheels' METADATA as lock
   read it (the bump job's fresh clone has no metadata of the releases it just
   locked).

Git runs through :func:`lockmirror.gitutil.run_git`; the commit's author is
git's configured one. Nothing here prints; the time is a parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import LoadedConfig
from ..errors import LockmirrorError
from ..fsutil import first_of, plural
from ..gitutil import path_in_repository, repository_root, run_git
from .outdated import OutdatedReport, outdated_sets, render_markdown

if TYPE_CHECKING:
    from ..net.index_client import IndexClient

SECURITY_BRANCH = "lockmirror/bump-security"
BRANCH = "lockmirror/bump"
BODY_LIMIT = 65_000  # a GitHub pull-request body holds 65,536 characters


@dataclass(frozen=True)
class FixedAdvisory:
    id: str
    aliases: tuple[str, ...]
    summary: str
    package: str
    old: str  # the vulnerable release that was locked
    new: tuple[str, ...]  # what the package is locked at now

    def line(self) -> str:
        aliases = f" ({', '.join(self.aliases)})" if self.aliases else ""
        now = ", ".join(self.new) or "removed"
        return f"- **{self.id}**{aliases}: {self.package} {self.old} -> {now}: {self.summary}"


@dataclass(frozen=True)
class BumpResult:
    changed: bool
    branch: str
    title: str = ""
    body: str = ""
    commit: str = ""  # the new commit's id
    moves: tuple[str, ...] = ()  # "set: name old -> new"
    fixed: tuple[FixedAdvisory, ...] = ()
    message: str = ""  # what happened, in words (the nothing-to-do note)
    warnings: tuple[str, ...] = ()  # releases no advisory source could tell about (--security)


def bump(loaded: LoadedConfig, *, now: datetime, security: bool = False,
         sets: list[str] | None = None, branch: str | None = None, jobs: int = 6) -> BumpResult:
    """Move the lockfiles, commit them on ``branch``, and write the PR's words.

    ``branch`` defaults to :data:`BRANCH` (:data:`SECURITY_BRANCH` with
    ``security``). Raises LockmirrorError when mirror.yaml is not in a git
    work tree or its lockfiles have uncommitted changes, InputError when a set's
    lockfile does not read (both before anything is written), and whatever the lock
    raises (its previous lockfiles stay). Costs two ``outdated`` runs (project
    pages, from the HTTP cache the lock also uses), one lock, and a PEP 658
    metadata file per moved release the store lacks (for the diff's licenses; where
    the index serves none, the wheel's METADATA as lock read it, or the whole wheel
    where the server ignores Range; a read that fails leaves the license uncompared).
    """
    from ..net.index_client import IndexClient
    from .lock import lock_sets, stale_sets
    from .lock_vulnerable import upgrade_vulnerable

    repo = repository_root(loaded.root, hint="run it in the clone that holds mirror.yaml")
    lockfiles = path_in_repository(loaded.lockfile_dir, repo)
    branch = branch or (SECURITY_BRANCH if security else BRANCH)
    if run_git(repo, "status", "--porcelain", "--", lockfiles).strip():
        raise LockmirrorError(f"{lockfiles} has uncommitted changes",
                              where=str(repo),
                              hint="commit or discard them: the bump commit holds only the bump")
    stale_sets(loaded)  # InputError for a lockfile that does not read: the body's diff reads all
    head = run_git(repo, "rev-parse", "HEAD").strip()
    # one client: each project page is read once for the lock and both reports
    with IndexClient(loaded.config.sources_by_priority(),
                     cache_dir=loaded.cache_dir / "http") as client:
        before = outdated_sets(loaded, sets, now=now, client=client)
        warnings: tuple[str, ...] = ()
        what = "every locked release is the newest its set allows"
        if security:
            upgrade = upgrade_vulnerable(loaded, sets, now=now, client=client, jobs=jobs,
                                         all_or_nothing=True)
            warnings, what = upgrade.not_checked, upgrade.none_found
        else:
            lock_sets(loaded, sets, client=client, now=now, upgrade_all=True, jobs=jobs,
                      all_or_nothing=True)  # a set that fails: no lockfile moves
        if not run_git(repo, "status", "--porcelain", "--", lockfiles).strip():
            return BumpResult(False, branch, message=f"nothing to bump: {what}; nothing written",
                              warnings=warnings)
        relocked, stale = _relock_stale(loaded, sets, client=client, now=now, jobs=jobs)
        after = outdated_sets(loaded, sets, now=now, client=client)
        fixed = fixed_advisories(before, after)
        moves = _moves(before, after)
        title = pr_title(moves, fixed, security)
        base = _base_name(repo, head, branch)
        warnings += _dropped(repo, branch)
        run_git(repo, "checkout", "-B", branch)
        run_git(repo, "add", "--", lockfiles)
        run_git(repo, "commit", "--quiet", "-m", commit_message(title, moves, fixed, relocked),
                failed="git commit failed", hint="is git's user.name and user.email set?")
        commit = run_git(repo, "rev-parse", "HEAD").strip()
        # the diff of the commit the pull request carries (its sides: the base and the
        # branch); the new releases' licenses from the index's PEP 658 files, as the
        # store of a fresh clone has no metadata of releases locked a moment ago
        diff_markdown = _diff_markdown(loaded, base, branch, client)
    body = pr_body(moves, fixed, diff_markdown, render_markdown(after), security,
                   relocked=relocked, stale=stale)
    return BumpResult(True, branch, title, body, commit, tuple(moves), tuple(fixed),
                      f"committed {plural(len(moves), 'move')} on {branch}",
                      (*warnings, *stale))


def _relock_stale(loaded: LoadedConfig, sets: list[str] | None, *, client: IndexClient,
                  now: datetime, jobs: int) -> tuple[list[str], list[str]]:
    """Lock again, pins kept, the chosen sets (``sets``; default every set) the move
    left locked from other inputs: ``lock --check`` would fail for them on the branch,
    so the pull request's CI would. Returns the sets locked again and a line for each
    set still stale (outside ``sets``, or its lock failed: nothing of it written) or
    whose lockfile does not read (outside ``sets``: the move read every chosen one)."""
    from .lock import lock_sets, stale_sets
    from .lock_stale import stale_lines

    chosen = loaded.chosen_sets(sets)
    relock = list(stale_sets(loaded, chosen))  # only these: another's lockfile may not read
    failed = ""
    if relock:
        try:
            lock_sets(loaded, relock, client=client, now=now, jobs=jobs, all_or_nothing=True)
        except LockmirrorError as error:
            failed, relock = f"; locking it again failed: {str(error).splitlines()[0]}", []
    return relock, stale_lines(loaded, {name: failed for name in chosen})


def _base_name(repo: Path, head: str, branch: str) -> str:
    """What the diff calls the pull request's base: HEAD's branch (``main``), which the
    bump does not move; the commit when HEAD is detached or is ``branch`` itself."""
    name = run_git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip()
    return head if name in ("HEAD", branch) else name


def _dropped(repo: Path, branch: str) -> tuple[str, ...]:
    """The line saying ``git checkout -B`` drops commits an existing ``branch`` holds
    that HEAD does not (an earlier bump's, or a hand-made fix): its old tip, to keep them."""
    if run_git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}",
               optional=True) is None:
        return ()
    dropped = run_git(repo, "rev-list", f"HEAD..refs/heads/{branch}").split()
    if not dropped:
        return ()
    return (f"branch {branch} is rebuilt from HEAD, dropping {plural(len(dropped), 'commit')} "
            f"HEAD does not have (tip {dropped[0][:12]}; `git branch {branch}-old "
            f"{dropped[0][:12]}` keeps them)",)


def _diff_markdown(loaded: LoadedConfig, head: str, branch: str, client: IndexClient) -> str:
    from .diff import run
    from .diff_render import render_markdown as render_diff

    return render_diff(run(head, branch, config=loaded.path, branches=(), client=client),
                       max_chars=BODY_LIMIT // 2)


def _locked(report: OutdatedReport) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for row in report.rows:
        out.setdefault((row.set_name, row.package), set()).add(str(row.locked))
    return out


def _moves(before: OutdatedReport, after: OutdatedReport) -> list[str]:
    """"set: name old -> new" for each package whose locked versions changed."""
    old, new = _locked(before), _locked(after)
    out = []
    for key in sorted(old.keys() | new.keys()):
        was, now = old.get(key, set()), new.get(key, set())
        if was != now:
            out.append(f"{key[0]}: {key[1]} {', '.join(sorted(was)) or '(new)'} -> "
                       f"{', '.join(sorted(now)) or '(removed)'}")
    return out


def fixed_advisories(before: OutdatedReport, after: OutdatedReport) -> list[FixedAdvisory]:
    """Advisories on a locked release before that are on no locked release after."""
    still = {(r.package, a.id) for r in after.rows for a in r.advisories}
    now = _locked(after)
    found: dict[tuple[str, str, str], FixedAdvisory] = {}
    for row in before.rows:
        for advisory in row.advisories:
            if (row.package, advisory.id) in still:
                continue
            key = (advisory.id, row.package, str(row.locked))
            found.setdefault(key, FixedAdvisory(
                advisory.id, advisory.aliases, advisory.summary, row.package, str(row.locked),
                tuple(sorted(now.get((row.set_name, row.package), set())))))
    return [found[k] for k in sorted(found)]


def pr_title(moves: list[str], fixed: list[FixedAdvisory], security: bool) -> str:
    names = sorted({m.split(": ", 1)[1].split(" ", 1)[0] for m in moves})
    shown = first_of(names, 3)
    if security or fixed:
        ids = sorted({f.id for f in fixed})
        return f"lockmirror: fix {', '.join(ids[:3])}{' ...' if len(ids) > 3 else ''} ({shown})"
    return f"lockmirror: bump {shown}"


def commit_message(title: str, moves: list[str], fixed: list[FixedAdvisory],
                   relocked: Sequence[str] = ()) -> str:
    lines = [title, "", *moves]
    if relocked:
        lines += ["", f"Locked again, pins kept (locked from other inputs): {', '.join(relocked)}"]
    if fixed:
        lines += ["", "Fixes:", *(f"{f.id} ({f.package} {f.old})" for f in fixed)]
    return "\n".join(lines) + "\n"


def pr_body(moves: list[str], fixed: list[FixedAdvisory], diff_markdown: str,
            outdated_markdown: str, security: bool, *, relocked: Sequence[str] = (),
            stale: Sequence[str] = ()) -> str:
    how = ("`lockmirror lock --upgrade-vulnerable`: only packages with deny-level advisories "
           "moved, each to the lowest release without one" if security else
           "`lockmirror lock --upgrade`: every pin moved to the newest release its set allows")
    parts = [f"Opened by `lockmirror bump` ({how}).", ""]
    if relocked:
        parts += [f"Also locked again with their pins kept, as `lockmirror lock` would (they "
                  f"were locked from other inputs): {', '.join(f'`{n}`' for n in relocked)}.",
                  ""]
    parts += [f"> [!WARNING]\n> {line}\n" for line in stale]
    parts += ["### Advisories fixed", ""]
    parts += [f.line() for f in fixed] or ["(none)"]
    parts += ["", diff_markdown.rstrip(), "", "<details><summary>Still behind after this bump"
              "</summary>", "", outdated_markdown.rstrip(), "", "</details>", ""]
    body = "\n".join(parts)
    if len(body) > BODY_LIMIT:
        body = body[:BODY_LIMIT - 80].rsplit("\n", 1)[0] + (
            "\n\n(cut at GitHub's size limit; run `lockmirror diff` for the rest)\n")
    return body
