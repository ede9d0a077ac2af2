"""Times as lockmirror reads them: aware UTC, from files and from the command line,
and the reproducible builds' SOURCE_DATE_EPOCH."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from .errors import InputError, LockmirrorError


def as_utc(moment: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_when(text: str) -> datetime:
    """An ISO date or date-time from the command line (``--now``), as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"'{text}' is not an ISO date or date-time",
                          hint="e.g. 2024-10-10 or 2024-10-10T12:00:00Z") from None
    return as_utc(moment)


def snapshot_taken(now: datetime | None) -> datetime:
    """When a bundle's advisory snapshot is taken: the clock, or ``now`` (``--now``)
    unless it is later than the clock. A far side refuses every bundle whose advisories
    are older than those it holds, so a snapshot dated in the future (a mistyped year)
    would keep out every real one until that date; LockmirrorError then."""
    clock = datetime.now(UTC)
    if now is None:
        return clock
    if now > clock:
        raise LockmirrorError(
            f"--now {now:%Y-%m-%d %H:%M:%S} UTC is later than the clock "
            f"({clock:%Y-%m-%d %H:%M:%S} UTC)",
            hint="a far side refuses every bundle whose advisories are older than those it "
                 "holds: give a time that has passed, or leave --now out")
    return now


def resolve_source_date_epoch(explicit: int | None, lockfile_dir: Path) -> tuple[int, str]:
    """The mtime stamped on every member and where it came from.

    ``explicit`` wins, then ``$SOURCE_DATE_EPOCH``, then the time of the last
    commit touching ``lockfile_dir`` when the lockfiles there are that commit's;
    else 0 (so output stays reproducible), and why.
    """
    epoch, source = source_date_epoch_of(explicit, lockfile_dir)
    return (0 if epoch is None else epoch), source


NO_EPOCH = (0, "none (no SOURCE_DATE_EPOCH, lockfiles not committed)")
UNCOMMITTED = ("none (no SOURCE_DATE_EPOCH, lockfiles have uncommitted changes: commit them "
               "to date the bundle)")


def mtime_stamp(lockfile_dir: Path) -> str:
    """:func:`resolve_source_date_epoch` as text for an up-to-date stamp; "invalid"
    for a bad $SOURCE_DATE_EPOCH, which the bundle itself reports in one line.
    Costs two git processes (status, log) without $SOURCE_DATE_EPOCH."""
    from .errors import LockmirrorError

    try:
        return str(resolve_source_date_epoch(None, lockfile_dir)[0])
    except LockmirrorError:
        return "invalid"


def known_source_date_epoch(explicit: int | None,
                            lockfile_dir: Path | None) -> tuple[int, str] | None:
    """:func:`resolve_source_date_epoch` without its fallback: None when no time
    is known (the SBOMs then carry no time stamp)."""
    epoch, source = source_date_epoch_of(explicit, lockfile_dir)
    return None if epoch is None else (epoch, source)


def source_date_epoch_of(explicit: int | None, lockfile_dir: Path | None) -> tuple[int | None, str]:
    """The time to stamp (None when none is known) and where it came from, or why
    there is none: ``explicit``, ``$SOURCE_DATE_EPOCH``, the last commit touching
    ``lockfile_dir`` unless ``git status`` shows its files modified, added or
    deleted since (that commit's time would date lockfiles it does not hold).
    Raises LockmirrorError for a $SOURCE_DATE_EPOCH that is not an integer."""
    if explicit is not None:
        return int(explicit), "argument"
    env = _env_source_date_epoch()
    if env is not None:
        return env, "SOURCE_DATE_EPOCH"
    if lockfile_dir is None:
        return None, NO_EPOCH[1]
    from .gitutil import run_git  # only here: keeps the module light for the index stage

    changes = run_git(lockfile_dir, "status", "--porcelain", "--", ".", optional=True)
    if changes and changes.strip():
        return None, UNCOMMITTED
    stamp = run_git(lockfile_dir, "log", "-1", "--format=%ct", "--", ".", optional=True)
    if stamp and stamp.strip().isdigit():
        return int(stamp.strip()), "git log (lockfiles)"
    return None, NO_EPOCH[1]


def _env_source_date_epoch() -> int | None:
    """``$SOURCE_DATE_EPOCH`` when set; LockmirrorError when it is not an integer."""
    env = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not env:
        return None
    try:
        return int(env)
    except ValueError:
        raise LockmirrorError(f"SOURCE_DATE_EPOCH={env!r} is not an integer") from None
