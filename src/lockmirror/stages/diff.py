"""The lock diff: what a change to the lockfiles means, for the reviewer of a pull request.

This module is the entry: it reads the two sides and compares them.

- :func:`run` — the stage as ``lockmirror diff`` runs it: the default sides
  (merge base, working tree), the comparison, and the audit when asked.
- :func:`load_lockfiles` — one side of a diff from a lockfile, a directory of
  lockfiles, a git revision, or the working tree.
- :func:`default_base` — the merge base of ``HEAD`` with the main branch.
- :func:`diff_lockfiles` — compare two sides, set by set, into a
  :class:`~lockmirror.stages.diff_model.LockDiff`.

The rest, by concern: :mod:`lockmirror.stages.diff_model` (the change model and
merging the audit's findings), :mod:`lockmirror.stages.diff_compare` (comparing
two lockfiles: changes, why, alarms, findings) and
:mod:`lockmirror.stages.diff_render` (text, Markdown, JSON and git textconv).

Nothing here prints; ``commands/diff.py`` does. Reading a git revision runs
``git`` (``ls-tree`` once, ``show`` per lockfile); everything else is in
memory and linear in the number of packages and files.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..config import LoadedConfig, load_config
from ..config_schema import RetentionConfig
from ..errors import LockmirrorError
from ..formats.lockfile import Lockfile, read_text, text_digest
from ..formats.url_policy import url_host
from ..fsutil import first_of, plural
from ..gitutil import path_in_repository, repository_root, run_git
from .diff_compare import diff_set
from .diff_model import Alarm, LockDiff, SetDiff, with_audit
from .retention import kept_until

LOCKFILE_GLOB = "pylock.*.toml"
NO_GIT_HINT = "give two lockfiles or two directories to compare"


def run(old: str | None, new: str | None, *, config: Path, branches: Sequence[str],
        audit_now: datetime | None = None, offline: bool = False,
        client: Any = None) -> LockDiff:
    """Compare two lock states: ``old`` and ``new`` are lockfiles, directories or git revisions.

    ``old`` None is the merge base of ``HEAD`` with the first of ``branches``
    that exists; ``new`` None is the working tree (the lockfile directory
    ``config`` names, ``lockfiles/`` beside it without one). Git revisions
    are read from the repository holding ``config``. With ``audit_now`` the
    audit of NEW's lockfiles as of that time is added (``offline``: offline
    databases only); an audit that cannot run is a note, not an error, since
    the audit is a gate of its own. Licenses come from the store's metadata
    and, given ``client`` (an IndexClient), from the index's PEP 658 files of
    the releases the store lacks. What the diff could not do is in its
    ``notes``. Raises LockmirrorError for a side that cannot be read.
    """
    loaded = load_config(config) if config.is_file() else None
    lockfile_dir = loaded.lockfile_dir if loaded else (config.parent / "lockfiles").resolve()
    needs_git = old is None or not Path(old).exists() or (new is not None
                                                          and not Path(new).exists())
    root, relative = Path.cwd(), "lockfiles"
    if needs_git:
        root = repository_root(config.resolve().parent if loaded else Path.cwd(),
                               hint=NO_GIT_HINT)
        relative = path_in_repository(lockfile_dir, root, hint="give lockfile paths instead")
    if old is None:
        branch, old = default_base(root, branches)
        found = load_lockfiles(old, repo=root, lockfile_dir=relative)
        old_side = dataclasses.replace(found, label=f"merge base with {branch} ({old[:12]})")
    else:
        old_side = load_lockfiles(old, repo=root, lockfile_dir=relative)
    new_side = (read_directory(lockfile_dir, label="working tree") if new is None
                else load_lockfiles(new, repo=root, lockfile_dir=relative))
    diff = diff_lockfiles(old_side, new_side)
    if needs_git and config.is_file():
        diff = dataclasses.replace(diff, config_changes=_config_changes(config, root, old, new))
    if loaded is not None:  # licenses from the store's metadata (issue 23)
        diff = _with_licenses(diff, loaded, old_side, new_side, client)
        diff = with_retention(diff, old_side, new_side, loaded.config.retention)
    if audit_now is not None:
        diff = _audited(diff, loaded or config, new_side, audit_now, offline)
    return diff


def _config_changes(config: Path, root: Path, old: str, new: str | None) -> tuple[str, ...]:
    """The trust settings (policy, sources, paths, ...) and quarantined releases that
    differ between mirror.yaml (and the quarantine list it names) at the two sides,
    each a git revision or (``new`` None) the working tree; () when a side is a
    path or has no mirror.yaml (:mod:`lockmirror.stages.diff_config`)."""
    from .diff_config import config_changes, quarantine_path

    # the path as given, not through a symbolic link: each side follows its own
    given, real = Path(os.path.abspath(config)).parent, config.resolve().parent
    try:
        folder = (given if given.is_relative_to(root) else real).relative_to(root).as_posix()
    except ValueError:  # mirror.yaml outside the repository: no revision of it
        return ()

    def text_at(revision: str | None, name: str) -> str | None:
        """A file beside mirror.yaml (``name`` relative to it) at a side; None if none,
        or if it lies outside the repository (git holds no revision of it: comparing
        the working tree's with nothing would call every release new)."""
        member = posixpath.normpath(posixpath.join(folder, name))
        if member.startswith(("/", "../")) or member == ".." or "\0" in member:
            return None
        if revision is None:
            path = config.parent / name
            return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None
        if Path(revision).exists():  # a lockfile path or directory: no mirror.yaml side
            return None
        return show_file(root, revision, member)

    old_text, new_text = text_at(old, config.name), text_at(new, config.name)
    if not old_text or not new_text:
        return ()
    return config_changes(old_text, new_text, (text_at(old, quarantine_path(old_text)),
                                               text_at(new, quarantine_path(new_text))))


def show_file(root: Path, revision: str, member: str) -> str | None:
    """A file's text at ``revision``, following symbolic links git holds (a few, inside
    the repository: found by an outside tester, a mirror.yaml or quarantine list made a
    link hid every change made with it); None when there is none."""
    for _ in range(8):
        listed = run_git(root, "ls-tree", revision, "--", member, optional=True) or ""
        text = run_git(root, "show", f"{revision}:{member}", optional=True)
        if text is None or not listed.startswith("120000 "):
            return text
        member = posixpath.normpath(posixpath.join(posixpath.dirname(member), text.strip()))
        if member.startswith(("/", "../")) or member == "..":
            return None
    return None


def _with_licenses(diff: LockDiff, loaded: LoadedConfig, old: LockfileSide,
                   new: LockfileSide, client: Any) -> LockDiff:
    """``diff`` with the license changes the store's metadata (and ``client``'s
    index) shows, and a note naming the moves whose licenses it could not compare."""
    from ..net.s3_store import store_of
    from .diff_compare import with_license_changes

    lockfiles = [*dict(old.lockfiles).values(), *dict(new.lockfiles).values()]
    diff, unknown = with_license_changes(diff, lockfiles, store_of(loaded), client)
    if not unknown:
        return diff
    return dataclasses.replace(diff, notes=(*diff.notes, (
        f"licenses not compared for {plural(len(unknown), 'release move')} "
        f"({first_of(unknown, 3)}): the store lacks their metadata; run lockmirror fetch "
        "first")))


def _audited(diff: LockDiff, config: LoadedConfig | Path, new: LockfileSide, now: datetime,
             offline: bool) -> LockDiff:
    """``diff`` with the audit of NEW's lockfiles, or with a note saying why not."""
    from .audit import audit_mirror  # the audit pulls in the network clients: only when asked

    paths = [Path(p) for p in new.paths.values()]
    if any(not p.is_file() for p in paths):
        raise LockmirrorError("--audit needs NEW to be the working tree or lockfile paths, "
                              "not a git revision")
    loaded = config if isinstance(config, LoadedConfig) else load_config(config)
    try:
        report = audit_mirror(loaded, now=now, lockfile_paths=paths, offline=offline)
    except LockmirrorError as error:
        return dataclasses.replace(diff, notes=(*diff.notes, f"audit not included: {error}"))
    return with_audit(diff, report.rows)


@dataclass(frozen=True)
class LockfileSide:
    """One side of a diff: set name -> lockfile, and where each came from."""

    label: str
    lockfiles: Mapping[str, Lockfile]
    paths: Mapping[str, str] = field(default_factory=dict)
    single_file: bool = False  # given as one lockfile path: pairs with any one set
    # set -> its text's digest and whether it is the text lock writes for it
    texts: Mapping[str, TextFacts] = field(default_factory=dict)


@dataclass(frozen=True)
class TextFacts:
    """What a lockfile's text says beyond its parsed content."""

    digest: str  # formats.lockfile.text_digest
    as_lock_writes: bool  # the text Lockfile.dumps writes for its content

    @classmethod
    def of(cls, lockfile: Lockfile, text: str) -> TextFacts:
        digest = text_digest(text)
        return cls(digest, digest == text_digest(lockfile.dumps()))


def read_directory(directory: Path, *, label: str | None = None) -> LockfileSide:
    """Every ``pylock.*.toml`` in ``directory`` (a missing directory is an empty side).

    Raises LockmirrorError naming the file when one is not a valid lockfile.
    """
    lockfiles: dict[str, Lockfile] = {}
    paths: dict[str, str] = {}
    texts: dict[str, TextFacts] = {}
    for path in sorted(directory.glob(LOCKFILE_GLOB)):
        text = read_text(path)
        lockfile = Lockfile.loads(text, where=str(path))
        texts[_add(lockfiles, paths, lockfile, str(path), path.name)] = TextFacts.of(
            lockfile, text)
    return LockfileSide(label or str(directory), lockfiles, paths, texts=texts)


def read_file(path: Path) -> LockfileSide:
    """One lockfile as a side; raises LockmirrorError naming it when invalid."""
    text = read_text(path)
    lockfile = Lockfile.loads(text, where=str(path))
    name = _set_name(lockfile, path.name)
    return LockfileSide(str(path), {name: lockfile}, {name: str(path)}, single_file=True,
                        texts={name: TextFacts.of(lockfile, text)})



def read_revision(repo: Path, revision: str, lockfile_dir: str) -> LockfileSide:
    """The lockfiles in ``lockfile_dir`` (relative to the repository root) at ``revision``.

    A revision without that directory is an empty side (every set "added").
    Raises LockmirrorError when ``revision`` is not a commit in ``repo``, or
    when git is missing. Costs one ``git ls-tree`` and one ``git show`` per lockfile.
    """
    unknown = f"'{revision}' is not a lockfile, a directory or a git revision"
    commit = run_git(repo, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}",
                     failed=unknown).strip()
    prefix = lockfile_dir.strip("/")
    listing = run_git(repo, "ls-tree", "--name-only", "-z", commit, "--", f"{prefix}/")
    lockfiles: dict[str, Lockfile] = {}
    paths: dict[str, str] = {}
    texts: dict[str, TextFacts] = {}
    for member in sorted(n for n in listing.split("\0") if n):
        name = member.rsplit("/", 1)[-1]
        if not Path(name).match(LOCKFILE_GLOB):
            continue
        where = f"{revision}:{member}"
        text = run_git(repo, "show", f"{commit}:{member}", failed=f"cannot read {where}")
        lockfile = Lockfile.loads(text, where=where)
        texts[_add(lockfiles, paths, lockfile, where, name)] = TextFacts.of(lockfile, text)
    named = len(revision) < 7 or not commit.startswith(revision.lower())  # not a commit id
    shown = f"{revision} ({commit[:12]})" if named else commit[:12]
    return LockfileSide(shown, lockfiles, paths, texts=texts)


def load_lockfiles(spec: str, *, repo: Path, lockfile_dir: str) -> LockfileSide:
    """A side from a lockfile path, a directory of lockfiles, or a git revision.

    An existing path wins over a revision of the same name. ``repo`` is a
    directory inside the git work tree; ``lockfile_dir`` is relative to its root.
    """
    path = Path(spec)
    if path.is_dir():
        return read_directory(path)
    if path.is_file():
        return read_file(path)
    return read_revision(repo, spec, lockfile_dir)


def default_base(repo: Path, branches: Sequence[str]) -> tuple[str, str]:
    """(branch, commit): the merge base of ``HEAD`` with the first of ``branches`` that exists.

    ``branches`` is the caller's preference order, e.g. ``origin/HEAD``,
    ``origin/main``, ``main``; the branch is named as git resolves it (``origin/HEAD``
    is the remote's default branch: ``origin/main``). Raises LockmirrorError naming
    the candidates when none exists.
    """
    for branch in branches:
        if run_git(repo, "rev-parse", "--verify", "--quiet", f"{branch}^{{commit}}",
                   optional=True) is None:
            continue
        commit = run_git(repo, "merge-base", "HEAD", branch,
                         failed=f"HEAD and {branch} have no common ancestor").strip()
        named = (run_git(repo, "rev-parse", "--abbrev-ref", branch, optional=True) or "").strip()
        return named or branch, commit
    raise LockmirrorError(f"none of the branches {', '.join(branches)} exists",
                          where=str(repo), hint="name the old side: `lockmirror diff REVISION`")


def _set_name(lockfile: Lockfile, filename: str) -> str:
    if lockfile.set_name:
        return lockfile.set_name
    match = re.fullmatch(r"pylock\.(.+)\.toml", filename)
    return match.group(1) if match else filename


def _add(lockfiles: dict[str, Lockfile], paths: dict[str, str], lockfile: Lockfile,
         where: str, filename: str) -> str:
    """Add ``lockfile`` under its set's name, which is returned."""
    name = _set_name(lockfile, filename)
    if name in lockfiles:
        raise LockmirrorError(f"two lockfiles for the set '{name}' (also {paths[name]})",
                              where=where)
    lockfiles[name] = lockfile
    paths[name] = where
    return name



def with_retention(diff: LockDiff, old: LockfileSide, new: LockfileSide,
                   rule: RetentionConfig) -> LockDiff:
    """``diff`` with, per set, the releases OLD's lock names and no set of NEW's
    does that ``retention:`` keeps in the index once NEW is committed (OLD
    becomes the previous lock): kept while ``lock_revisions`` >= 2 or for
    ``days`` days."""
    if rule.lock_revisions >= 2:
        why = "for the previous lock, until " + kept_until(
            rule.lock_revisions - 1, f"{rule.days} days" if rule.days else None)
    elif rule.days:
        why = f"for the previous lock, {rule.days} days after this lock is committed"
    else:
        return diff
    why += f" (retention: lock_revisions {rule.lock_revisions}, days {rule.days})"
    # a release another set of NEW still locks stays in the index for good
    locked = {(p.name, str(p.version)) for lf in new.lockfiles.values() for p in lf.packages}
    sets = []
    for set_diff in diff.sets:
        before, after = old.lockfiles.get(set_diff.set_name), new.lockfiles.get(set_diff.set_name)
        kept: list[str] = []
        if before is not None and after is not None:
            kept = sorted({f"{p.name} {p.version}" for p in before.packages
                           if (p.name, str(p.version)) not in locked})
        sets.append(dataclasses.replace(set_diff, retained=tuple(kept),
                                        retained_why=why if kept else ""))
    return dataclasses.replace(diff, sets=tuple(sets))


def diff_lockfiles(old: LockfileSide, new: LockfileSide) -> LockDiff:
    """Compare two sides set by set (two single files are compared whatever their sets).

    Pure and deterministic: sets sorted by name, targets in the new
    lockfile's order (then targets only the old one has), packages by name.
    """
    old_map, new_map = dict(old.lockfiles), dict(new.lockfiles)
    old_paths, new_paths = dict(old.paths), dict(new.paths)
    old_texts = dict(old.texts)
    if (old.single_file and new.single_file and len(old_map) == len(new_map) == 1
            and set(old_map) != set(new_map)):
        (old_name, lock), = old_map.items()
        new_name = next(iter(new_map))
        old_map, old_paths = {new_name: lock}, {new_name: old_paths[old_name]}
        old_texts = {new_name: old.texts[old_name]} if old_name in old.texts else {}
    # where the old side's files come from, all its sets: a file added from elsewhere
    # is an alarm (a bump served from another host reads as a routine bump)
    old_hosts = frozenset(url_host(f.url) for lock in old_map.values()
                          for _, f in lock.iter_files())
    sets = tuple(
        _text_checked(diff_set(name, old_map.get(name), new_map.get(name),
                               old_paths.get(name), new_paths.get(name), old_hosts),
                      old_texts.get(name), new.texts.get(name))
        for name in sorted(set(old_map) | set(new_map)))
    return LockDiff(old.label, new.label, sets)


def _text_checked(set_diff: SetDiff, old: TextFacts | None, new: TextFacts | None
                  ) -> SetDiff:
    """``set_diff`` with an alarm when NEW's text changed in a part no comparison
    reads (``default-groups``, a comment): it is no longer the text lock writes
    while OLD's was (whatever else changed beside it), or the two texts differ
    while their content compares equal (an old lockfile written otherwise)."""
    if old is None or new is None or old.digest == new.digest:
        return set_diff
    if new.as_lock_writes or (not old.as_lock_writes and set_diff.status != "unchanged"):
        return set_diff
    return dataclasses.replace(set_diff, status="changed", alarms=(*set_diff.alarms, Alarm(
        "text", "", "", "", old.digest, "the lockfile's text changed where this diff does not "
        "compare (default-groups, dependency-groups, environments, a comment): lock writes "
        "no such change; lockmirror lock --check says what differs")))

