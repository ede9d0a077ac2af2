"""The lock stage: every set of ``mirror.yaml``, for each of its targets, into
``lockfiles/pylock.<set>.toml``.

Entries:

- :func:`lock_sets` — resolve and write. All sets and targets share one
  index client (each page and metadata file fetched once) and run
  concurrently (:mod:`lockmirror.stages.lock_run`), each set written as soon
  as all its targets are resolved. Its steps follow it; merging the targets'
  resolutions into one lockfile is :mod:`lockmirror.stages.lock_merge`.
- :func:`input_hash` (from :mod:`lockmirror.stages.lock_inputs`) — the hash of
  what shapes a set's lock; recorded in the lockfile with its named parts, so
  "is it current?" needs no network and no doit database, and a stale one says
  which input changed.
- :func:`stale_sets` — the ``lock --check`` gate (:func:`stale_reason` for one set).

What a person sees while it runs and when it fails (progress events, errors at
their mirror.yaml line, ``--upgrade`` names checked) is :mod:`lockmirror.stages.lock_watch`.
The license rule (``policy.licenses``) is :mod:`lockmirror.stages.lock_licenses`;
the sdists' build requirements, :mod:`lockmirror.stages.lock_build`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from ..config import LoadedConfig
from ..errors import InputError, LockmirrorError, StaleLockError
from ..formats.lockfile import Lockfile, has_conflict_markers, read_input_hash
from .lock_build import build_group
from .lock_inputs import input_hash, input_parts, what_changed
from .lock_licenses import LicenseGate
from .lock_merge import (
    TargetLock,
    TargetPart,
    check_one_entry_per_name,
    merge_parts,
    skipped_notes,
    target_parts,
)
from .lock_run import resolve_all
from .lock_watch import LockProgress, LocksFailed, Watch, check_upgrade

if TYPE_CHECKING:  # the resolver and HTTP stack load only when something is resolved
    from ..net.index_client import IndexClient
    from ..resolve.candidates import Candidate, CandidateFilter, TargetContext
    from ..resolve.policy import ExceptionUse, Finding, PolicyEngine

__all__ = ["LockResult", "build_group", "input_hash", "lock_sets", "resolve_parts", "stale_reason",
           "stale_sets", "write_lockfile"]


# how to go on from a committed lockfile that does not read (_read_committed); the merge
# conflict is named only when git's markers are in it (a line starting <<<<<<< or >>>>>>>)
NOT_READ_HINT = "`git checkout` it, or delete it to lock the set afresh"
CONFLICT_HINT = "resolve the merge conflict in it, or " + NOT_READ_HINT

# what a set resolved for all its targets is handed to: (set, target -> part, warnings)
SetDone = Callable[[str, dict[str, TargetPart], tuple[str, ...]], None]


@dataclass(frozen=True)
class LockResult:
    set_name: str
    path: Path
    lockfile: Lockfile
    written: bool  # False when the file already had exactly these bytes
    warnings: tuple[str, ...] = ()  # warn-level policy findings on what was locked


def stopped_note(kept: Sequence[LockResult], names: Sequence[str]) -> str:
    """The line under a stopped lock's own: the files it wrote (``kept``, with those of
    the run's earlier locks: doit's lock tasks) and which of the sets it was asked for
    (``names``) it did not lock."""
    done = {result.set_name for result in kept}
    # the lock's order, after the earlier locks' files (in the order they were written)
    written = sorted(kept, key=lambda result: names.index(result.set_name)
                     if result.set_name in names else -1)
    parts = [f"kept: {', '.join(str(result.path) for result in written) or 'nothing'}"]
    if missing := [name for name in names if name not in done]:
        parts.append(f"not locked: {', '.join(missing)}")
    return "lockmirror: " + "; ".join(parts)


def lock_sets(loaded: LoadedConfig, set_names: Sequence[str] | None = None, *,
              client: IndexClient | None = None, now: datetime | None = None,
              upgrade: Iterable[str] = (), upgrade_all: bool = False, jobs: int = 6,
              candidate_filter_for: Callable[[str], CandidateFilter | None] | None = None,
              prefer: Mapping[str, Mapping[NormalizedName, Version]] | None = None,
              progress: Callable[[LockProgress], None] | None = None,
              all_or_nothing: bool = False,
              kept: list[LockResult] | None = None) -> list[LockResult]:
    """Resolve and write the lockfiles of ``set_names`` (default: all sets).

    Existing pins are kept unless they must move, or the package is named in
    ``upgrade`` (``upgrade_all`` frees every pin; a name no set locks, or one
    mirror.yaml pins with ``==``, is refused before any work:
    :func:`~lockmirror.stages.lock_watch.check_upgrade`); ``prefer`` (set ->
    name -> version) is tried first instead of the pin (``--upgrade-vulnerable``).
    ``progress`` gets a
    :class:`~lockmirror.stages.lock_watch.LockProgress` as each resolution
    starts, sees another project and ends (from worker threads, one at a time).
    Raises LockmirrorError subclasses (see
    :func:`~lockmirror.resolve.resolver.resolve_target`), placed at the set,
    target and mirror.yaml line (:func:`~lockmirror.stages.lock_watch.in_context`);
    a failed set leaves its previous lockfile untouched, and the other sets are
    still locked and written: with several sets, LocksFailed names every one
    that failed (its ``results``: the lockfiles written). ``all_or_nothing``:
    none is written unless every set locked (``bump`` commits all or none).
    ``kept`` gets each lockfile as it is written (what a lock stopped by Ctrl-C
    or SIGTERM kept: :func:`lockmirror.pipeline.lock` names it).

    Each set is its targets' :class:`~lockmirror.stages.lock_merge.TargetPart`
    merged (:func:`resolve_parts`, then :func:`write_lockfile`): the same
    parts a sharded lock (:mod:`lockmirror.stages.lock_shard`) writes one per
    file and gathers, so both give the same bytes.
    """
    names = loaded.chosen_sets(list(set_names) if set_names else None)
    written: dict[str, LockResult] = {}

    def write(name: str, parts: dict[str, TargetPart], warnings: tuple[str, ...]) -> None:
        written[name] = write_lockfile(loaded, name, parts, warnings)
        if kept is not None:
            kept.append(written[name])

    try:
        resolved = resolve_parts(
            loaded, {s: loaded.config.set_targets(s) for s in names}, client=client, now=now,
            upgrade=upgrade, upgrade_all=upgrade_all, jobs=jobs,
            candidate_filter_for=candidate_filter_for, prefer=prefer, progress=progress,
            on_set=None if all_or_nothing else write)
    except LocksFailed as failed:
        failed.results = [written[n] for n in names if n in written]
        raise
    if all_or_nothing:  # bump: every set resolved, then all written
        for name, (parts, warnings) in resolved.items():
            write(name, parts, warnings)
    return [written[n] for n in names]


def write_lockfile(loaded: LoadedConfig, set_name: str, parts: Mapping[str, TargetPart],
                   warnings: tuple[str, ...] = ()) -> LockResult:
    """Merge every target's part of a set into its lockfile, check it (one
    active entry per name, URLs of declared sources) and write it if its bytes
    changed. ``parts`` must hold every target of the set. No network."""
    path = loaded.lockfile_path(set_name)
    lockfile = build_lockfile(loaded, set_name, parts, path)
    written = lockfile.write(path)
    return LockResult(set_name, path, lockfile, written, warnings)


def build_lockfile(loaded: LoadedConfig, set_name: str, parts: Mapping[str, TargetPart],
                   path: Path) -> Lockfile:
    """The lockfile of ``parts`` (every target of the set, or one for a shard),
    checked as every lockfile is: one active entry per name, and only URLs of
    declared sources (issue 19; ``path`` names it in errors)."""
    from ..formats.url_policy import check_lockfile_urls

    targets = loaded.config.all_targets()
    lockfile = dataclasses.replace(
        merge_parts(loaded, set_name, parts, targets, input_hash(loaded, set_name)),
        inputs=input_parts(loaded, set_name))
    check_one_entry_per_name(lockfile, targets)
    check_lockfile_urls(lockfile, path, loaded.config.sources)
    return lockfile


def resolve_parts(loaded: LoadedConfig, work: Mapping[str, Sequence[str]], *,
                  client: IndexClient | None = None, now: datetime | None = None,
                  upgrade: Iterable[str] = (), upgrade_all: bool = False, jobs: int = 6,
                  candidate_filter_for: Callable[[str], CandidateFilter | None] | None = None,
                  prefer: Mapping[str, Mapping[NormalizedName, Version]] | None = None,
                  progress: Callable[[LockProgress], None] | None = None,
                  on_set: SetDone | None = None,
                  ) -> dict[str, tuple[dict[str, TargetPart], tuple[str, ...]]]:
    """Resolve each set of ``work`` (set -> the targets to resolve, checked
    names) for those targets: set -> (target -> its part, with the policy
    exceptions its lock used; the policy warnings). Options and errors as
    :func:`lock_sets`; writes nothing itself: each set is handed to ``on_set``
    (set, parts, warnings) as soon as all its targets are resolved (so a lock
    stopped by Ctrl-C or SIGTERM keeps the sets done). A failed set does
    not stop the others: when one of several failed, LocksFailed names each
    after the others were handed on (one set alone: its own error).

    Steps: each (set, target) gets its resolver context (:func:`_contexts`:
    previous pins, policy filter), all resolve concurrently on one client
    (:func:`_resolve_all`), and each set's targets become parts with the
    policy records each target's own files needed (:func:`_set_parts`)."""
    from ..net.index_client import IndexClient

    if client is None:  # ours: closed (its prefetches cancelled) however the lock ends
        # pages keep only the wheels some target installs (and the sdists): less to hold
        keep = {(t.interpreter, t.abi, t.platform)
                for target in loaded.config.all_targets().values() for t in target.tags}
        with IndexClient(loaded.config.sources_by_priority(),
                         cache_dir=loaded.cache_dir / "http", keep_tags=keep) as own:
            return resolve_parts(loaded, work, client=own, now=now, upgrade=upgrade,
                                 upgrade_all=upgrade_all, jobs=jobs,
                                 candidate_filter_for=candidate_filter_for, prefer=prefer,
                                 progress=progress, on_set=on_set)
    names = list(work)
    upgrade = list(upgrade)
    # each set's previous lockfile read once, not once per target, and under upgrade_all
    # too (one that does not read is refused, not written over); none kept under upgrade_all
    committed = {s: _read_committed(loaded.lockfile_path(s)) for s in names}
    previous_locks = {} if upgrade_all else committed
    if upgrade:
        check_upgrade(loaded, upgrade, names, previous_locks)
    engines = (_policy_engines(loaded, names, now or datetime.now(UTC))
               if candidate_filter_for is None else {})
    gates = {name: LicenseGate(engine) for name, engine in engines.items()}  # policy.licenses
    if candidate_filter_for is None:
        def candidate_filter_for(name: str) -> CandidateFilter:
            return gates[name].wrap(_policy_filter(engines[name]))

    # Ask for every top-level project at once: the network is the cost.
    client.prefetch_projects(sorted({
        canonicalize_name(n)
        for s in names for n in _requirement_names(loaded.config.sets[s].requirements)}))
    keys = [(s, t) for s in names for t in work[s]]
    watch = Watch(progress, len(keys))
    pins = {key: _pins_to_keep(previous_locks.get(key[0]), key[1], upgrade,
                               (prefer or {}).get(key[0], {})) for key in keys}
    contexts = _contexts(loaded, client, keys, pins, watch, candidate_filter_for)
    failed: dict[str, LockmirrorError] = {}
    resolved = {}

    def set_done(set_name: str, per_target: dict[str, TargetLock]) -> None:
        resolved[set_name] = _set_parts(loaded, set_name,
                                        {t: per_target[t] for t in work[set_name]},
                                        client, engines.get(set_name), gates.get(set_name))
        if on_set is not None:  # now: a lock stopped later keeps it
            on_set(set_name, *resolved[set_name])

    resolve_all(loaded, contexts, gates, watch, jobs, failed, set_done)
    if len(names) == 1 and failed:
        raise failed[names[0]]
    if failed:
        raise LocksFailed({n: failed[n] for n in names if n in failed}, len(names))
    return {name: resolved[name] for name in names}


def _pins_to_keep(previous: Lockfile | None, target: str, upgrade: Sequence[str],
                  prefer: Mapping[NormalizedName, Version]) -> dict[NormalizedName, Version]:
    """What the resolver tries first for ``target``: the previous lock's pins
    but those named in ``upgrade``, and over them ``prefer``."""
    freed = {canonicalize_name(n) for n in upgrade}
    return {name: version for name, version in _previous_pins(previous, target).items()
            if name not in freed} | dict(prefer)


def _contexts(loaded: LoadedConfig, client: IndexClient, keys: Sequence[tuple[str, str]],
              pins: Mapping[tuple[str, str], Mapping[NormalizedName, Version]], watch: Watch,
              candidate_filter_for: Callable[[str], CandidateFilter | None],
              ) -> dict[tuple[str, str], TargetContext]:
    """The resolver's context of each (set, target): its target, the set's options
    and policy, the pins to keep, the candidate filter (watched for progress)."""
    from ..resolve.candidates import TargetContext
    from ..resolve.sdist_metadata import SdistMetadataSource

    config = loaded.config
    targets = config.all_targets()
    # the variables mirror.yaml names as credentials, kept from build backends
    secrets = [name for holder in [*config.sources, *config.publish.values()]
               for name in (getattr(holder, "username_env", None),
                            getattr(holder, "password_env", None)) if name]
    sdists = SdistMetadataSource(client, loaded.cache_dir / "build",
                                 [s.url for s in config.sources_by_priority()], secrets)
    contexts = {}
    for set_name, target_name in keys:
        spec = config.sets[set_name]
        contexts[(set_name, target_name)] = TargetContext(
            target=targets[target_name], client=client, sdists=sdists,
            prereleases=spec.prereleases, prefer_sdists=spec.prefer_sdists,
            allow_sdists=config.policy_for(set_name).sdists == "allow",
            preferred=dict(pins[(set_name, target_name)]),
            candidate_filter=watch.filter((set_name, target_name),
                                          candidate_filter_for(set_name)),
            note=watch.noter((set_name, target_name)))
    return contexts


def _set_parts(loaded: LoadedConfig, set_name: str, per_target: Mapping[str, TargetLock],
               client: IndexClient, engine: PolicyEngine | None, gate: LicenseGate | None,
               ) -> tuple[dict[str, TargetPart], tuple[str, ...]]:
    """A set's resolutions as parts, each with the policy exceptions and
    findings of what that target locks (the files it chose); the warnings."""
    parts = target_parts(per_target, client)
    warnings = skipped_notes(per_target)
    if engine is not None and gate is not None:
        targets = loaded.config.all_targets()
        released: set[tuple[str, Version]] = set()
        for target_name, part in parts.items():
            one = merge_parts(loaded, set_name, {target_name: part}, targets, "")
            records, findings, found = _record_policy(one, engine, gate)
            parts[target_name] = dataclasses.replace(part, exceptions_used=records,
                                                     policy_findings=findings)
            warnings += found
            released |= {p.key for p in one.packages}
        warnings += engine.not_checked(sorted(released))  # once for the set, every target's
    return parts, tuple(sorted(set(warnings)))


def _policy_engines(loaded: LoadedConfig, names: Sequence[str],
                    now: datetime) -> dict[str, PolicyEngine]:
    """One engine per set (expired exceptions raise PolicyError here)."""
    from ..resolve.advisories import open_advisory_db
    from ..resolve.policy import PolicyEngine
    from ..resolve.policy_exceptions import expired_exceptions

    config = loaded.config
    expired = expired_exceptions(config, names, now.date())
    if expired:  # named with their mirror.yaml lines (the engine would say it without)
        raise loaded.problems_at(expired)
    db = (open_advisory_db(config.policy.advisory_sources, base_dir=loaded.root)
          if config.policy.advisory_sources else None)
    return {name: PolicyEngine.for_set(config, name, now=now, advisories=db,
                                       where=loaded.path.name) for name in names}


def _policy_filter(engine: PolicyEngine) -> CandidateFilter:
    from ..resolve.candidates import Refusal

    def allowed(candidate: Candidate, pinned: bool) -> Refusal | None:
        decision = engine.candidate_allowed(
            candidate.name, candidate.version, [f.upload_time for f in candidate.files],
            (candidate.yanked_reason or "") if candidate.yanked else None, pinned=pinned)
        if decision.allowed:
            return None
        # an advisory by its id: an exception for it waives that one, not every advisory
        return Refusal("; ".join(decision.reasons),
                       tuple(f.advisory.id if f.advisory else f.rule
                             for f in decision.findings if f.blocking))

    return allowed


def _record_policy(lockfile: Lockfile, engine: PolicyEngine, gate: LicenseGate,
                   ) -> tuple[tuple[dict[str, str], ...], tuple[dict[str, str], ...],
                              tuple[str, ...]]:
    """What the lock of ``lockfile`` relied on and allowed, as records for the
    lockfile (audit trails, the SBOM): the exceptions (``exceptions-used``), the
    warn-level findings (``policy-findings``); and its warnings to print."""
    from packaging.requirements import Requirement

    from ..resolve.policy import policy_records
    from ..resolve.requirement_check import pins_exactly

    pinned = {canonicalize_name(r.name) for r in map(Requirement, lockfile.requirements)
              if pins_exactly(r)}
    uses: list[ExceptionUse] = []
    warned: list[Finding] = []
    for package in lockfile.packages:
        times = [f.upload_time for f in package.files]
        decision = engine.candidate_allowed(package.name, package.version, times,
                                            package.yanked, pinned=package.name in pinned)
        uses.extend(decision.exceptions_used)
        warned.extend(decision.warnings)
        licensed = gate.finding(package.name, package.version)
        if licensed is not None and licensed.waived_by is not None:
            uses.append(licensed.waived_by)
        elif licensed is not None and licensed.level == "warn":
            warned.append(licensed)
        if package.sdist is not None:
            waiver = engine.sdist_waiver(package.name, package.version)
            if waiver is not None:
                uses.append(waiver)
    return (policy_records(uses), policy_records(warned),
            tuple(sorted({f.message for f in warned})))


def _requirement_names(requirements: Iterable[str]) -> list[str]:
    from packaging.requirements import Requirement

    return [Requirement(r).name for r in requirements]


def _read_committed(path: Path) -> Lockfile | None:
    """The set's lockfile as it stands (the pins a lock keeps); None when there is
    none, and the set locks afresh. One that is there but does not read (merge-conflict
    markers left in it, not TOML, not a lockfile) raises its InputError (exit 2: the
    file, the parse error's line and column) saying how to go on, never None: locking
    over it would move every pin silently. Unreadable: LockmirrorError."""
    try:
        return Lockfile.read(path)
    except StaleLockError:  # missing
        return None
    except InputError as exc:
        try:
            conflicted = has_conflict_markers(path.read_bytes())
        except OSError:
            conflicted = False
        raise InputError(exc.message, where=exc.where,
                         hint=CONFLICT_HINT if conflicted else NOT_READ_HINT) from None


def _previous_pins(previous: Lockfile | None, target: str) -> dict[NormalizedName, Version]:
    """The versions ``previous`` pins for ``target`` (the runtime pin over a build-only one)."""
    if previous is None:
        return {}
    pins = {p.name: p.version for p in previous.packages if target in p.targets and p.build_only}
    pins.update({p.name: p.version for p in previous.packages
                 if target in p.targets and not p.build_only})  # the runtime pin wins
    return pins


def stale_sets(loaded: LoadedConfig, set_names: Iterable[str] | None = None) -> dict[str, str]:
    """Sets whose lockfile is missing or was made from other inputs -> why
    (:func:`stale_reason`, each lockfile named by its path)."""
    stale = {}
    for name in loaded.chosen_sets(list(set_names) if set_names else None):
        if (why := stale_reason(loaded, name)) is not None:
            stale[name] = why
    return stale


def stale_reason(loaded: LoadedConfig, name: str, shown: str | None = None) -> str | None:
    """Why set ``name``'s lockfile is missing or was made from other inputs, the
    lockfile called ``shown`` (default: its path); None when it is current.

    Reads the lockfile's recorded hash: no network, milliseconds; a stale
    one is read whole to name the inputs that changed (:func:`what_changed`),
    and one whose hash does not read, to tell a missing lockfile (stale) from
    one that is there but does not read: the InputError a lock refuses it with
    (exit 2: the parse error's line and column).
    """
    path = loaded.lockfile_path(name)
    shown = shown or str(path)
    recorded = read_input_hash(path)
    if recorded is None:
        return (f"{shown} is missing" if _read_committed(path) is None
                else f"{shown} records no input hash (not written by `lock`)")
    if recorded == input_hash(loaded, name):
        return None
    previous = _read_committed(path)
    changed = what_changed(loaded, name, dict(previous.inputs) if previous else {})
    return f"{shown} was locked from other inputs ({changed})"
