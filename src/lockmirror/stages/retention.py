"""Which earlier locks the mirror keeps serving: the retention window, read from git history.

A release stays in the index while any of the last ``lock_revisions``
revisions of its set's lockfile names it (the current lockfile counts as the
first), or while the revision that named it stopped being current less than
``days`` days ago. The current lockfile is the working tree's; earlier
revisions are the commits that changed the files it locks (``git log`` of that
one file, read with ``git show``; a commit that left them as they were, changing
only the input hash, a requirement's text or a marker, is part of the lock it
re-locked). Without git history only the current lock is kept,
and the notes say so; so do they when the window reaches past the oldest commit
of a shallow clone. No network; a few git processes per set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_name

from ..errors import LockmirrorError
from ..fsutil import atomic_write
from ..gitutil import run_git

if TYPE_CHECKING:
    from ..config_schema import SourceConfig
    from ..formats.lockfile import Lockfile

_MAX_SCANNED = 50  # revisions of one lockfile looked at, at most: the window is short


@dataclass(frozen=True)
class RetainedLock:
    """An earlier revision of a set's lockfile that is still in the window."""

    set_name: str
    commit: str          # the commit that wrote this revision
    superseded: datetime  # when the next revision replaced it
    reason: str           # "the previous lock" / "superseded 3 days ago (days: 7)"
    until: str            # "the next lock" / "2026-12-07": when it leaves (no clock in it)
    data: bytes           # the revision's bytes, as git holds them
    where: str            # "lockfiles/pylock.core.toml@1a2b3c4d", for messages
    # the bytes as TOML, read once to tell lock revisions apart; or why they do not read
    document: dict[str, Any] | LockmirrorError = field(compare=False, repr=False)

    @cached_property
    def lockfile(self) -> Lockfile:
        """The revision as a PEP 751 lockfile, validated from :attr:`document` on
        first use (no second parse); LockmirrorError naming ``where`` when it does
        not read or is no lockfile."""
        from ..formats.lockfile import Lockfile  # packaging.pylock is slow to load

        if isinstance(self.document, LockmirrorError):
            raise self.document
        return Lockfile.from_toml(self.document, where=self.where)

    @property
    def label(self) -> str:
        """``core@1a2b3c4d``: how pages and messages name the revision."""
        return f"{self.set_name}@{self.commit[:8]}"

    @property
    def note(self) -> str:
        """What the landing page says of its releases: ``kept for the previous lock
        (core@1a2b3c4d), until the next lock``; the same inputs, the same words."""
        what = ("the previous lock" if self.reason == "the previous lock"
                else "an earlier lock")
        return f"kept for {what} ({self.label}), until {self.until}"


@dataclass(frozen=True)
class Retention:
    """What the window keeps: earlier revisions per set, and notes to print."""

    kept: tuple[RetainedLock, ...] = ()
    notes: tuple[str, ...] = ()


def retained_locks(lockfile_paths: Sequence[tuple[str, Path]], *, lock_revisions: int,
                   days: float, now: datetime) -> Retention:
    """The earlier revisions of each ``(set name, lockfile path)`` still in the window."""
    kept: list[RetainedLock] = []
    unrecorded: list[tuple[str, Path]] = []  # sets whose lockfile git has no history of
    cut_short: list[tuple[str, Path]] = []  # sets whose window reaches past git's oldest commit
    for set_name, path in lockfile_paths:
        found = _retained_for(set_name, path, lock_revisions, days, now)
        if found is None:
            unrecorded.append((set_name, path))
        else:
            kept += found[0]
            if found[1]:
                cut_short.append((set_name, path))
    notes = [_no_history_note(unrecorded)] if unrecorded else []
    # found by an outside tester: actions/checkout clones one commit deep by default,
    # and the previous lock's releases left the index without a word
    if cut_short and _shallow(cut_short[0][1]):
        notes.append(_shallow_note(cut_short))
    return Retention(tuple(kept), tuple(notes))


def under_sources(found: Retention, sources: Sequence[SourceConfig]) -> Retention:
    """``found`` without the revisions that do not read as lockfiles or name a file
    under none of today's ``sources`` (any of them, whatever project each is
    pinned to: a project moved to another source keeps its previous lock served),
    each named in a note. Git history holds commits no review saw (a fast-forward
    or rebase merge keeps a pull request's intermediate commits, and the previous
    lock may be one), so a revision is checked before anything fetches or serves
    its files (found by an outside tester: a wheel from any host reached the index
    and the bundle as "kept for the previous lock")."""
    from ..formats.url_policy import check_lockfile_urls

    declared = [source.model_copy(update={"projects": []}) for source in sources]
    kept, notes = [], list(found.notes)
    for revision in found.kept:
        try:  # parsed as PEP 751 here (every consumer needs that), its URLs checked
            check_lockfile_urls(revision.lockfile, revision.where, declared)
        except LockmirrorError as error:
            notes.append(f"{revision.where}: not kept for retention: {error.message}")
            continue
        kept.append(revision)
    return Retention(tuple(kept), tuple(notes))


def _no_history_note(unrecorded: list[tuple[str, Path]]) -> str:
    """One line for every set without git history (not one per set)."""
    if len(unrecorded) == 1:
        set_name, path = unrecorded[0]
        return (f"{path}: no git history, so only the current lock of set "
                f"'{set_name}' is kept (retention needs the lockfiles committed)")
    names = ", ".join(f"'{name}'" for name, _ in unrecorded)
    return (f"{unrecorded[0][1].parent}: no git history, so only the current lock of sets "
            f"{names} is kept (retention needs the lockfiles committed)")


def _shallow_note(cut_short: list[tuple[str, Path]]) -> str:
    """One line for every set whose window a shallow clone may cut short."""
    where = (cut_short[0][1] if len(cut_short) == 1
             else f"{cut_short[0][1].parent} (sets {', '.join(repr(n) for n, _ in cut_short)})")
    return (f"{where}: shallow git clone: earlier lock revisions may be missing, so "
            "releases retention should keep may leave the index (check out the full "
            "history: fetch-depth: 0)")


def kept_until(locks: int, or_later: str | None = None) -> str:
    """How long a revision that ``locks`` more locks will push out stays: ``the
    next lock``, ``3 more locks``; with ``or_later`` (a date, ``7 days``), ``...
    or <it>, whichever is later``. The words of the landing page and of diff."""
    until = "the next lock" if locks == 1 else f"{locks} more locks"
    return f"{until} or {or_later}, whichever is later" if or_later else until


def _retained_for(set_name: str, path: Path, lock_revisions: int, days: float,
                  now: datetime) -> tuple[list[RetainedLock], bool] | None:
    """(the set's earlier revisions in the window, whether the window reaches past
    the oldest commit git has of ``path``); None when git has no history of ``path``.
    A commit that left the files as the next newer revision has them (a re-lock
    after a policy edit, a source added or a requirement reworded that locks the
    same releases; see :func:`_served`) is no lock revision of its own: it takes no
    place in the window (found by an outside tester: it pushed the previous real lock
    out while nothing installed changed)."""
    history = _history(path)
    if history is None:
        return None
    try:
        current = path.read_bytes()
    except OSError:
        return [], False  # the set is not locked yet
    revisions = history
    newest = _show(path, revisions[0][0]) if revisions else None  # read once, used below
    if newest == current:
        revisions = revisions[1:]  # the working tree is the newest commit's revision
    if not revisions:  # committed once, as it is now: no earlier revision
        return [], _reaches_past(history, 1, lock_revisions, days, now)
    kept: list[RetainedLock] = []
    # revisions[i] was superseded when the revision before it in the list was committed;
    # the newest earlier revision was superseded by the working tree's (at its commit, or now)
    superseded_at = [history[0][1] if len(revisions) < len(history) else now]
    superseded_at += [when for _, when in revisions[:-1]]
    newer = _served(_document(current, str(path)))
    position = 1  # the current lockfile is revision 1
    for (commit, _), superseded in zip(revisions, superseded_at, strict=True):
        data = newest if commit == history[0][0] else _show(path, commit)
        where = f"{path}@{commit[:8]}"
        document = None if data is None else _document(data, where)
        served = _served(document)
        if served is not None and served == newer:
            continue  # the same lock as the newer one, superseded when that one was
        newer, position = served, position + 1
        window = _window(position, superseded, lock_revisions, days, now)
        if window is None:
            return kept, False
        if data is None or document is None:  # not in that commit (one implies the other)
            continue
        kept.append(RetainedLock(set_name, commit, superseded, *window, data, where, document))
    return kept, _reaches_past(history, position, lock_revisions, days, now)


def _reaches_past(history: list[tuple[str, datetime]], position: int, lock_revisions: int,
                  days: float, now: datetime) -> bool:
    """Whether a revision older than ``history``'s oldest (superseded by it, at
    ``position`` + 1) would still be in the window: git's history ended there,
    not the scan's limit."""
    return (0 < len(history) < _MAX_SCANNED
            and _window(position + 1, history[-1][1], lock_revisions, days, now) is not None)


def _window(position: int, superseded: datetime, lock_revisions: int, days: float,
            now: datetime) -> tuple[str, str] | None:
    """(reason, until) of the revision at ``position`` (the current lock is 1),
    superseded at ``superseded``; None when it is outside the window. A ``days``
    deadline already past is not said."""
    expires = superseded + timedelta(days=days)
    date = f"{expires:%Y-%m-%d}"
    in_days = days > 0 and now < expires
    if position <= lock_revisions:
        reason = "the previous lock" if position == 2 else f"lock revision {position}"
        return reason, kept_until(lock_revisions - position + 1, date if in_days else None)
    if in_days:
        return (f"superseded {_age(now - superseded)} ago, kept until {date} "
                f"(days: {days:g})"), date
    return None


def _document(data: bytes, where: str) -> dict[str, Any] | LockmirrorError:
    """A revision's bytes read as TOML (the one parse of them), or the error naming
    ``where`` when they do not read (:func:`under_sources` then says why)."""
    from ..errors import InputError
    from ..formats.bounded import load_toml

    try:
        return load_toml(data.decode("utf-8"), where=where)
    except UnicodeDecodeError as error:
        return InputError(f"not UTF-8 text: {error}", where=where)
    except LockmirrorError as error:
        return error


def _served(document: dict[str, Any] | LockmirrorError | None,
            ) -> frozenset[tuple[str, str, str, str]] | None:
    """What a revision serves: (name, version, file name, sha256) of every wheel and
    sdist of its ``packages``; None when it does not read, is not there, or its
    packages are not tables of that shape (a revision of its own, which
    :func:`under_sources` then checks). Nothing else tells two locks apart: not the
    input hash, the tool tables (each package's ``why`` holds the requirement text,
    found by an outside tester: relaxing ``flask>=2.3.2`` to ``>=2.3.3`` with 2.3.3
    locked already pushed the previous real lock out), nor markers, targets, groups,
    URLs or upload times. Those change which of the files a target installs, not
    which files the index must serve for a machine holding either revision."""
    if not isinstance(document, dict):
        return None
    try:
        return frozenset(
            (canonicalize_name(package["name"]), str(package["version"]),
             archive.get("name") or archive["url"].rsplit("/", 1)[-1],
             archive["hashes"]["sha256"])
            for package in document["packages"]
            for archive in [*(package.get("wheels") or ()),
                            *([package["sdist"]] if "sdist" in package else [])])
    except (KeyError, TypeError, AttributeError):
        return None


def write_retained(retention: Retention, directory: Path) -> dict[Path, RetainedLock]:
    """Each kept revision as a lockfile ``<directory>/pylock.<set>@<commit>.toml``
    (written only when absent or different), for the stages that read lockfile
    paths (fetch, index); other ``*.toml`` files there are removed. Path -> revision."""
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[Path, RetainedLock] = {}
    for revision in retention.kept:
        path = directory / f"pylock.{revision.set_name}@{revision.commit}.toml"
        atomic_write(path, revision.data, only_if_changed=True, fsync=False)
        written[path] = revision
    for stale in directory.glob("*.toml"):
        if stale not in written:
            stale.unlink()
    return written


def _history(path: Path) -> list[tuple[str, datetime]] | None:
    """(commit, commit time) of the revisions that changed ``path``, newest first,
    along first parents: a merged branch's own lock commits were never the
    mirror's lock (its merge is one revision, superseding the lock before it);
    None when ``path`` is not in a git work tree."""
    out = run_git(path.parent, "log", "--first-parent", f"-n{_MAX_SCANNED}",
                  "--format=%H %ct", "--", path.name, optional=True)
    if out is None:
        return None
    revisions = []
    for line in out.splitlines():
        commit, _, stamp = line.partition(" ")
        revisions.append((commit, datetime.fromtimestamp(int(stamp), UTC)))
    return revisions


def _shallow(path: Path) -> bool:
    """Whether the repository holding ``path`` is a shallow clone (one git process)."""
    out = run_git(path.parent, "rev-parse", "--is-shallow-repository", optional=True)
    return (out or "").strip() == "true"


def _show(path: Path, commit: str) -> bytes | None:
    # "<rev>:./<name>": the path relative to the directory git runs in (one process)
    text = run_git(path.parent, "show", f"{commit}:./{path.name}", optional=True)
    return None if text is None else text.encode("utf-8")


def _age(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:.0f} days" if days >= 1 else f"{delta.total_seconds() / 3600:.0f} hours"
