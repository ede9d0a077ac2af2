"""``lockmirror lock``: resolve the sets into lockfiles, or ``--check`` them
(fingerprint, URLs, project pages; ``--resolve``: a fresh resolution)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from packaging.utils import canonicalize_name

from ..config import load_config
from ..errors import LockmirrorError, StaleLockError
from ..fsutil import plural
from ._options import NameList, positive_int

if TYPE_CHECKING:
    from ..config import LoadedConfig
    from ..formats.lockfile import Lockfile
    from ..stages.lock import LockResult
    from ..stages.lock_watch import LockProgress

NAME = "lock"
HELP = "resolve every set for every target into lockfiles/pylock.<set>.toml (or --check them)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="mirror.yaml", help="default: mirror.yaml")
    parser.add_argument("--set", dest="sets", action=NameList, metavar="NAME",
                        help="lock only this set (repeatable or A,B): one shard of a CI matrix")
    parser.add_argument("--target", dest="targets", action=NameList, metavar="NAME",
                        help="with --set and --shard-dir: resolve the set for this target "
                             "alone (repeatable or A,B): one shard of a CI matrix")
    parser.add_argument("--shard-dir", type=Path, metavar="DIR",
                        help="with --target: write DIR/pylock.<set>.<target>.toml, not the "
                             "set's lockfile")
    parser.add_argument("--from-shards", type=Path, metavar="DIR",
                        help="resolve nothing: write each set's lockfile from its targets' "
                             "shards in DIR (the gather job; the bytes a plain lock writes)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 listing sets whose lockfile is stale or "
                             "missing, or entries that differ from the sources' project pages "
                             "(exit 2 for bad input: a lockfile that does not read, a URL "
                             "outside its source, an unknown --set)")
    parser.add_argument("--resolve", action="store_true",
                        help="with --check: also resolve every set again in memory and fail "
                             "unless the lockfile is byte for byte what `lock` writes today")
    parser.add_argument("--upgrade", nargs="*", action=NameList, metavar="PACKAGE",
                        default=None, help="move pins deliberately: the named packages "
                                           "(A B or A,B), or every one if none named")
    parser.add_argument("--upgrade-vulnerable", action="store_true",
                        help="move only the packages with deny-level advisories, each to the "
                             "lowest release without one, every other pin kept; exit 1 naming "
                             "the mirror.yaml line of a vulnerable == pin")
    parser.add_argument("--jobs", type=positive_int, default=6, metavar="N",
                        help="concurrent resolutions (default 6)")


def before_lock(loaded: LoadedConfig, filename: str | None = None, *,
                targets: Iterable[str] | None = None, asks_sources: bool = True,
                said: set[str] | None = None) -> None:
    """What both front doors do before a lock: warn of a likely unintended platform
    tag (of ``targets``; default every target; none already in ``said``, to which
    each is added: doit's lock tasks say each once per run), then, when sources
    will be asked, raise the ConfigError naming every unset credential variable
    with its line."""
    said = set() if said is None else said
    for warning in loaded.platform_warnings(filename, targets=targets):
        if warning not in said:
            print(f"lockmirror: warning: {warning}", file=sys.stderr)
            said.add(warning)
    if asks_sources and (unset := loaded.unset_credentials(filename)) is not None:
        raise unset


def run(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    _check_shard_options(args)
    before_lock(loaded, args.config, asks_sources=not args.from_shards)  # a gather asks none
    if args.resolve and not args.check:
        raise LockmirrorError("--resolve goes with --check",
                              hint="lockmirror lock --check --resolve")
    if args.check:
        from ..stages.lock import stale_sets
        from ..stages.lock_check import check_lockfiles
        from ..stages.lock_orphans import orphan_problems
        from ..stages.tool_set import lock_scopes

        scopes = lock_scopes(loaded, args.sets)  # mirror.yaml's sets, lockmirror's own
        stale = {name: why for scope, names in scopes
                 for name, why in stale_sets(scope, names).items()}
        # a set gone from mirror.yaml: its lockfile must go too (diff reads every one)
        lines = [f"set '{name}': {why}" for name, why in sorted(stale.items())]
        lines += [] if args.sets else orphan_problems(loaded)
        if lines:
            raise StaleLockError("stale lockfiles; run `doit lock` and commit the result:\n  "
                                 + "\n  ".join(lines))
        for scope, names in scopes:
            report = check_lockfiles(scope, names, resolve=args.resolve)
            how = "; re-resolved: identical" if report.resolved else ""
            print(f"lockfiles current: {', '.join(report.sets)} "
                  f"({plural(report.packages, 'package')}, {plural(report.files, 'file')} "
                  f"match their sources' project pages{how})")
        return 0
    if args.upgrade_vulnerable:
        return _upgrade_vulnerable(args, loaded)
    from .. import pipeline
    from ..stages.tool_set import lock_scopes

    started = time.monotonic()
    # read only to say where named pins moved: every lockfile the lock covers
    # (lockmirror's own set too, as pipeline.lock's scopes)
    before = _versions(scope.lockfile_path(name)
                       for scope, names in lock_scopes(loaded, args.sets)
                       for name in names or scope.config.sets) if args.upgrade else {}
    from ..stages.lock_watch import LocksFailed

    line = LockLine(sys.stderr)
    try:
        results = pipeline.lock(loaded, args.sets, upgrade=args.upgrade or (),
                                upgrade_all=args.upgrade is not None and not args.upgrade,
                                jobs=args.jobs, progress=line, targets=args.targets,
                                shard_dir=args.shard_dir, from_shards=args.from_shards)
    except LocksFailed as failed:  # the sets that locked, then the error naming the others
        line.close()
        print_results(failed.results)
        raise
    finally:
        line.close()
    print_results(results)
    if not args.sets and args.shard_dir is None:  # every set written: the rest is gone
        from ..stages.lock_orphans import remove_orphans

        for text in remove_orphans(loaded):
            print(text)
    for text in upgrade_outcomes(args.upgrade or (), before, results):
        print(text)
    what = plural(len(results), "shard" if args.shard_dir else "set")
    print(f"locked {what} in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return 0


def _check_shard_options(args: argparse.Namespace) -> None:
    """The shard options only in the combinations that mean something (the
    pipeline checks them too; here with the options only this command has)."""
    from ..stages.lock_shard import check_shard_options

    check_shard_options(args.sets, args.targets, args.shard_dir, args.from_shards,
                        upgrade=args.upgrade is not None, check=args.check,
                        upgrade_vulnerable=args.upgrade_vulnerable)


class LockLine:
    """The live line of a lock on ``stream``: rewritten in place on a terminal
    (at most every ``tty_interval`` seconds), else a line when a resolution
    ends and at most every ``interval`` seconds in between (CI logs). A note
    (an sdist being built or skipped) is always a line of its own, kept."""

    def __init__(self, stream: TextIO, *, interval: float = 10.0,
                 tty_interval: float = 0.1) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._interval = tty_interval if self._tty else interval
        self._last = -self._interval
        self._shown = False

    def __call__(self, event: LockProgress) -> None:
        now = time.monotonic()
        text = f"lock: {event.describe()}"
        if event.note:
            self._stream.write(f"\r\x1b[K{text}\n" if self._tty else text + "\n")
            self._shown = False
            self._stream.flush()
            return
        if not event.finished and now - self._last < self._interval:
            return
        self._last = now
        if self._tty:
            self._stream.write(f"\r\x1b[K{text}")
            self._shown = True
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def close(self) -> None:
        """Clear the live line (a terminal) so what follows starts on a clean line."""
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = False


def upgrade_outcomes(names: Iterable[str], before: dict[tuple[str, str], set[str]],
                     results: Sequence[LockResult]) -> list[str]:
    """For each ``--upgrade`` name and set that locks it: where it moved, or that it
    stayed (the newest version its requirements and the policy allow)."""
    after = _pins(r.lockfile for r in results)
    lines = []
    for name in names:
        wanted = canonicalize_name(name)
        for result in results:
            old = before.get((result.set_name, wanted), set())
            new = after.get((result.set_name, wanted), set())
            if not new:
                continue
            if old == new:
                lines.append(f"upgrade {name}: stays at {', '.join(sorted(new))} in set "
                             f"'{result.set_name}' (the newest its requirements and the "
                             "policy allow)")
            else:
                lines.append(f"upgrade {name}: {', '.join(sorted(old)) or 'new'} -> "
                             f"{', '.join(sorted(new))} in set '{result.set_name}'")
    return lines


def _versions(paths: Iterable[Path]) -> dict[tuple[str, str], set[str]]:
    """(set, package) -> the versions its lockfile pins (unreadable lockfiles: none)."""
    from ..formats.lockfile import Lockfile

    lockfiles = []
    for path in paths:
        try:
            lockfiles.append(Lockfile.read(path))
        except (LockmirrorError, OSError):
            continue
    return _pins(lockfiles)


def _pins(lockfiles: Iterable[Lockfile]) -> dict[tuple[str, str], set[str]]:
    """(set, package) -> the versions the lockfiles pin."""
    found: dict[tuple[str, str], set[str]] = {}
    for lockfile in lockfiles:
        for package in lockfile.packages:
            found.setdefault((lockfile.set_name, str(package.name)), set()).add(
                str(package.version))
    return found


def print_results(results: Sequence[LockResult]) -> None:
    """One line per lockfile, then its policy warnings."""
    for result in results:
        count = len(result.lockfile.packages)
        state = "written" if result.written else "unchanged"
        targets = len(result.lockfile.targets)
        print(f"{result.path}: {plural(count, 'package')} for {plural(targets, 'target')} "
              f"({state})")
        for warning in result.warnings:
            print(f"  policy warning: {warning}", file=sys.stderr)


def _upgrade_vulnerable(args: argparse.Namespace, loaded: LoadedConfig) -> int:
    """``--upgrade-vulnerable``: one line per move, then the lockfiles written."""
    from datetime import UTC, datetime

    from .. import pipeline

    if args.upgrade is not None:
        raise LockmirrorError("--upgrade-vulnerable and --upgrade are separate moves",
                              hint="run one, then the other")
    upgrade = pipeline.upgrade_vulnerable(loaded, args.sets, now=datetime.now(UTC),
                                          jobs=args.jobs)
    for note in upgrade.not_checked:  # "nothing to move" is not "nothing vulnerable"
        print(f"lockmirror: warning: {note}", file=sys.stderr)
    if not upgrade.found:  # a set locked from other inputs is still said
        print(f"{upgrade.none_found}: nothing to move, nothing written")
        _warn_stale(loaded)
        return 0
    found = {(r.set_name, r.package): r for r in upgrade.found}
    for set_name, package, old, new in upgrade.moves():
        ids = ", ".join(found[(set_name, package)].advisories)
        print(f"set '{set_name}': {package} {old} -> {', '.join(map(str, new))} ({ids})")
    print_results(upgrade.results)
    _warn_stale(loaded)
    return 0


def _warn_stale(loaded: LoadedConfig) -> None:
    """One line per set the vulnerable move left locked from other inputs (it locks only
    the sets holding a vulnerable release): ``lock --check`` fails for it until locked."""
    from ..stages.lock_stale import stale_lines

    for line in stale_lines(loaded):
        print(f"lockmirror: warning: {line}", file=sys.stderr)
