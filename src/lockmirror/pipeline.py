"""The one entry of every stage: ``<stage>(loaded, **options) -> result``.

Both front doors call these and nothing else: ``doit_tasks.py`` (the doit
tasks of ``dodo.py``) and the CLI commands (``commands/*.py``), which only
parse options and print. Each function turns the loaded mirror.yaml into the
plain arguments of its stage's engine (``lock_sets``, ``fetch_config``,
``build_index``, ``verify_closure``, ``build_bundle``, ``audit_mirror``,
``publish_configured``) in one way, so the two doors write the same bytes:
the same title and exclusions for the index, the same cache for the bundle's
tool wheels, the same URL checks before anything is read.

The functions live here, beside the engines rather than inside their
modules, so each engine module keeps one concern and takes plain arguments;
nothing here prints. Heavy modules are imported inside the functions so a
no-op ``doit`` stays fast. Every function raises the LockmirrorError
subclasses its engine documents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .timeutil import snapshot_taken

if TYPE_CHECKING:
    from packaging.version import Version

    from .config import LoadedConfig
    from .net.s3_store import AnyStore
    from .publish import Progress as PublishProgress
    from .publish import PublishResult
    from .resolve.advisory_snapshot import Snapshot
    from .stages.audit import AuditReport
    from .stages.bump import BumpResult
    from .stages.bundle import BundleResult
    from .stages.check_install import VerifyReport
    from .stages.disk_footprint import Footprint
    from .stages.disk_usage import Usage
    from .stages.fetch import FetchProgress, FetchSummary
    from .stages.gc import GcResult
    from .stages.index import IndexResult
    from .stages.lock import LockResult
    from .stages.lock_vulnerable import VulnerableUpgrade
    from .stages.lock_watch import LockProgress
    from .stages.outdated import OutdatedReport
    from .stages.quarantine import QuarantineResult
    from .stages.refresh_bundle import RefreshBundleResult
    from .stages.retention import RetainedLock, Retention

    # the earlier lock revisions retention keeps, written as lockfiles: path -> revision
    RetainedLockfiles = tuple[dict[Path, RetainedLock], Retention]

Progress = Callable[[str], None]


def lock(loaded: LoadedConfig, sets: Sequence[str] | None = None, *,
         upgrade: Sequence[str] = (), upgrade_all: bool = False, jobs: int = 6,
         progress: Callable[[LockProgress], None] | None = None, from_shards: Path | None = None,
         targets: Sequence[str] | None = None, shard_dir: Path | None = None,
         kept: list[LockResult] | None = None) -> list[LockResult]:
    """Resolve ``sets`` (default: every set, and lockmirror's own set, the
    bundle's tool wheels: :mod:`lockmirror.stages.tool_set`) into their
    lockfiles; ``progress`` sees each resolution start, look at another project
    and end. ``upgrade`` names reach lockmirror's own set only where it locks them.

    A lock split by target (:mod:`lockmirror.stages.lock_shard`): ``targets``
    with ``shard_dir`` resolves each of ``sets`` for each of ``targets`` alone
    into a shard file there; ``from_shards`` resolves nothing and writes each
    set's lockfile from the shards in that directory (the bytes a plain lock
    writes), after reading and checking every shard; lockmirror's own set is
    gathered only when ``sets`` names it. Stopped by Ctrl-C or SIGTERM, the KeyboardInterrupt
    gets a note naming the sets not locked and the files written (``kept``: one per doit run)."""
    from .stages.lock import lock_sets, stopped_note
    from .stages.lock_shard import check_shard_options, gather_shards, lock_shards
    from .stages.lock_watch import each_scope
    from .stages.tool_set import lock_scopes, upgrade_names

    check_shard_options(sets, targets, shard_dir, from_shards, upgrade=bool(upgrade) or upgrade_all)
    if from_shards is not None:
        return gather_shards(loaded, sets, from_shards)
    kept = [] if kept is None else kept  # every file written, as it is written

    def one(scope: LoadedConfig, names: list[str]) -> list[LockResult]:
        named = upgrade_names(scope, loaded, upgrade)
        if targets and shard_dir is not None:  # (check_shard_options: both or neither)
            return lock_shards(scope, names, targets, shard_dir, upgrade=named,
                               upgrade_all=upgrade_all, jobs=jobs, progress=progress, kept=kept)
        return lock_sets(scope, names, upgrade=named, upgrade_all=upgrade_all, jobs=jobs,
                         progress=progress, kept=kept)
    scopes = [(s, names or list(s.config.sets)) for s, names in lock_scopes(loaded, sets)]
    try:
        return each_scope(scopes, one)
    except KeyboardInterrupt as stopped:
        stopped.add_note(stopped_note(kept, [n for _, names in scopes for n in names]))
        raise


def fetch(loaded: LoadedConfig, *, jobs: int = 8, progress: FetchProgress | None = None,
          durable: bool = False, sets: Sequence[str] | None = None,
          targets: Sequence[str] | None = None,
          retained: RetainedLockfiles | None = None) -> FetchSummary:
    """Download every locked file into the store (``paths.store``), the tool
    set's too (:func:`lockmirror.stages.tool_set.tool_lockfile_paths`) and the
    earlier lock revisions' that ``retention:`` keeps (``retained``: what
    :func:`retained_lockfiles` returned for this run; default: asked now); a
    shard (:mod:`lockmirror.stages.shard`): only ``sets`` (the tool set when
    named), only the files that install on ``targets``."""
    from .stages.fetch import fetch_config
    from .stages.shard import check_targets, shard_sets
    from .stages.tool_set import TOOL_SET, tool_lockfile_paths

    names, tool = shard_sets(loaded, sets, TOOL_SET)
    check_targets(loaded, targets)
    written, found = retained if retained is not None else retained_lockfiles(loaded)
    kept = [path for path, revision in written.items()
            if names is None or revision.set_name in names]
    return replace(fetch_config(loaded, max_workers=jobs, progress=progress, durable=durable,
                                also=tool_lockfile_paths(loaded) if tool else [], kept=kept,
                                sets=names, targets=targets), notes=found.notes)


def retained_lockfiles(loaded: LoadedConfig, *, now: datetime | None = None) -> RetainedLockfiles:
    """The revisions ``retention:`` keeps as of ``now`` (default: the clock),
    written as lockfiles under ``<paths.cache>/retained-locks/`` (path ->
    revision) for fetch and index; a set not locked yet has none. The one
    place they are computed (a few git processes per set): a run that fetches
    and indexes (``doit``) asks once and hands the answer to both."""
    from .stages.retention import write_retained

    kept = retention(loaded, now=now or datetime.now(UTC))
    return write_retained(kept, loaded.cache_dir / "retained-locks"), kept


def index(loaded: LoadedConfig | None, *, lockfiles: Sequence[Path] = (),
          store: Path | AnyStore | None = None, out: Path | None = None,
          title: str | None = None,
          mirror_yaml: Path | None = None, quarantine: Path | None = None,
          full: bool = False, state_dir: Path | None = None,
          exclude: Iterable[tuple[str, Version | str]] | None = None,
          sbom: bool | None = None, retained: RetainedLockfiles | None = None) -> IndexResult:
    """Build the index (``out``, default ``paths.index``) from every set's
    lockfile and the store, leaving out the quarantine list's releases
    (``exclude`` replaces the list: quarantine's dry run). With mirror.yaml
    and its own lockfiles, the releases of the earlier revisions
    ``retention:`` keeps are served too (``retained``: what
    :func:`retained_lockfiles` returned for this run; default: asked now), and the size budget
    (``retention.max_size``) is checked first: over it, ``over_size: fail``
    raises LockmirrorError naming the largest sets and releases, ``warn``
    puts that line in the result's ``notes``.

    Each of ``lockfiles``, ``store``, ``out``, ``title``, ``mirror_yaml`` and
    ``quarantine`` given replaces what mirror.yaml says; with ``loaded`` None
    (no mirror.yaml) the first three are required, and only the URL rules that
    need no declared source apply. A ``quarantine`` given must exist.

    The only writer of ``dist-index/``: quarantine runs this too. Every
    lockfile it parses is refused unless its file URLs lie under a declared
    source (:class:`~lockmirror.formats.url_policy.UrlRule`). ``sbom`` (default:
    with mirror.yaml only) writes the sets' CycloneDX SBOMs under ``sbom/``."""
    from .formats.quarantine_list import quarantined
    from .formats.url_policy import UrlRule
    from .net.s3_store import store_of
    from .stages.index import DEFAULT_TITLE, build_index

    sources = None
    quarantine_path = quarantine
    kept_for: dict[Path, str] = {}  # a retained revision's lockfile -> the landing page's note
    notes: tuple[str, ...] = ()
    if loaded is not None and not lockfiles:
        from .stages.disk_usage import budget_notes  # pydantic's config: with mirror.yaml only

        written, kept = retained if retained is not None else retained_lockfiles(loaded)
        kept_for = {path: revision.note for path, revision in written.items()}
        notes = (*kept.notes, *budget_notes(loaded, kept))
    if loaded is not None:
        lockfiles = lockfiles or [loaded.lockfile_path(name) for name in loaded.config.sets]
        store, out = store or store_of(loaded), out or loaded.index_dir
        mirror_yaml, title = mirror_yaml or loaded.path, title or loaded.config.name
        quarantine_path = quarantine or loaded.quarantine_path
        sources = tuple(loaded.config.sources)
    if not lockfiles or store is None or out is None:
        raise ValueError("index without mirror.yaml needs lockfiles, store and out")
    if exclude is None:  # a mistyped --quarantine must not publish what it keeps out
        exclude = quarantined(quarantine_path, required=quarantine is not None)
    if sbom is None:
        sbom = loaded is not None
    name = ((loaded.config.name if loaded is not None else title) or "lockmirror")
    built = build_index(list(lockfiles), store, out, mirror_yaml=mirror_yaml,
                        title=title or DEFAULT_TITLE, full=full, exclude=exclude,
                        state_dir=state_dir, url_rule=UrlRule(sources),
                        sbom=name if sbom else None, retained=kept_for)
    return replace(built, notes=(*notes, *built.notes)) if notes else built


def check_install(loaded: LoadedConfig | None, *, index_dir: Path | None = None,
                  sets: Sequence[str] | None = None, targets: Sequence[str] | None = None,
                  installers: Sequence[str] | None = None, index_url: str | None = None,
                  transports: Sequence[str] | None = None, install: bool = True,
                  work_dir: Path | None = None, progress: Progress | None = None) -> VerifyReport:
    """Install every set from the index (default ``paths.index``; ``dist-index`` without a
    mirror.yaml) alone with the far side's installers. On ``paths.index`` the run works in
    (default) and records its pass in ``<paths.cache>/verify``, which doit's check reads
    (:mod:`lockmirror.stages.check_install_work`), once the index is found built from the
    project's lockfiles (else LockmirrorError). The caller raises its failures."""
    from .stages.check_install import TRANSPORTS, verify_closure
    from .stages.check_install_work import (
        record_before,
        record_pass,
        require_built_from,
        where_to_check,
    )

    index_dir, verify = where_to_check(loaded, index_dir)  # verify: None off paths.index
    if loaded is not None and verify is not None:  # the project's own index: of its lockfiles
        require_built_from(loaded, index_dir, sets)
    recorded = None if index_url else verify  # a deployed mirror's run records nothing
    record = record_before(recorded, index_dir)  # the index as the run found it
    report = verify_closure(index_dir, sets=sets, targets=targets, index_url=index_url,
                            transports=transports or TRANSPORTS, install=install,
                            installers=installers, work_dir=work_dir or verify, progress=progress)
    record_pass(recorded, record, report.ok,
                limited_by=(sets, targets, installers, transports, not install),
                unavailable=bool(report.unavailable))
    return report


def bundle(loaded: LoadedConfig, *, index_dir: Path | None = None, out: Path | None = None,
           since: Path | None = None, split: str | None = None, key: Path | None = None,
           tool: bool | None = None, source_date_epoch: int | None = None,
           keep: int | None = None, now: datetime | None = None, progress: Progress | None = None,
           retained: RetainedLockfiles | None = None) -> BundleResult:
    """Write the reproducible bundle of the index (default ``paths.index``, built from
    today's lockfiles) into ``out`` (default ``paths.dist``); the tool wheels from the
    store, as the tool set's lockfile (current, else StaleLockError) chose them, or
    repacked into ``paths.cache``; older bundles beyond ``keep`` removed. A full bundle
    carries ``advisories.json`` (when ``policy.advisory_sources`` lists any), the advisory
    snapshot taken at ``now`` (default: the clock, when the sources are really asked;
    never ``source_date_epoch``, which stamps the members only: with ``now`` given the
    bundle's bytes repeat while the answers do)."""
    from .errors import LockmirrorError
    from .formats.bundle_format import parse_size
    from .formats.url_policy import check_lockfile_dir
    from .net.s3_store import s3_store_of
    from .stages.bundle import build_bundle
    from .stages.tool_set import check_tool_lock, targets_without_tool, tool_set_locked
    from .stages.toolwheels import tool_source

    key = key or loaded.signing_key  # a key given wrongly fails before any check
    if split is not None:
        parse_size(split)  # a bad size fails before any work
    if since is not None and not since.exists():
        raise LockmirrorError("no such file or directory", where=str(since))
    check_lockfile_dir(loaded.lockfile_dir, loaded.config.sources)
    if (tool if tool is not None else since is None) and tool_set_locked():
        check_tool_lock(loaded)
    s3_store = s3_store_of(loaded)
    result = build_bundle(index_dir or loaded.index_dir, lockfile_dir=loaded.lockfile_dir,
                          mirror_yaml=loaded.path, out_dir=out or loaded.dist_dir,
                          name=loaded.config.name, since=since, split=split,
                          key=key, source_date_epoch=source_date_epoch,
                          tool=tool, cache_dir=loaded.cache_dir,
                          store_dir=None if s3_store else loaded.store_dir,
                          progress=progress, store=s3_store,
                          extra=_bundle_snapshot(loaded, since, now),
                          keep=loaded.config.bundle.keep if keep is None else keep,
                          built_from=[loaded.lockfile_path(n) for n in loaded.config.sets])
    if result.tool_python and tool_source() == "index":  # else: this machine's Python only
        result = replace(result, tool_left_out=tuple(targets_without_tool(loaded.config)))
    # retention's notes on the lockfiles the index was built from: this run's (``retained``)
    kept = retained[1] if retained else retention(loaded, now=datetime.now(UTC))
    return replace(result, notes=(*result.notes, *kept.notes))


def _bundle_snapshot(loaded: LoadedConfig, since: Path | None,
                     now: datetime | None) -> list[tuple[str, bytes]]:
    """``[("advisories.json", snapshot)]`` for a full bundle of a mirror with advisory
    sources (what the far side's ``audit --mirror`` uses), else ``[]``."""
    from .formats.bundle_format import ADVISORIES_NAME

    if since is not None or not loaded.config.policy.advisory_sources:
        return []
    snapshot = advisories(loaded, now=snapshot_taken(now))
    return [(ADVISORIES_NAME, snapshot.dumps().encode())]


def refresh_bundle(loaded: LoadedConfig, *, out: Path | None = None, key: Path | None = None,
                   source_date_epoch: int | None = None,
                   now: datetime | None = None) -> RefreshBundleResult:
    """``bundle --advisories-only``: the refresh bundle (the advisory snapshot as of
    ``now``, default the clock, as :func:`bundle`'s snapshot, and the quarantine list) in
    ``out`` (default ``paths.dist``); LockmirrorError without advisory sources."""
    from .errors import LockmirrorError
    from .stages.refresh_bundle import build_refresh_bundle

    if not loaded.config.policy.advisory_sources:
        raise LockmirrorError("no advisory sources to refresh the far side with",
                              where=loaded.path.name,
                              hint="list them under policy.advisory_sources")
    snapshot = advisories(loaded, now=snapshot_taken(now))
    return build_refresh_bundle(loaded, snapshot, out_dir=out or loaded.dist_dir,
                                key=key or loaded.signing_key,
                                source_date_epoch=source_date_epoch)


def sbom(loaded: LoadedConfig, sets: Sequence[str] | None = None) -> dict[str, bytes]:
    """The CycloneDX SBOMs of ``sets`` (default: all) as the index serves them: their
    lockfiles and the revisions ``retention:`` keeps, less the quarantine list's releases,
    with the store's metadata; file name -> bytes, one per set plus ``mirror.cdx.json``;
    stamped with ``$SOURCE_DATE_EPOCH`` or the lockfiles' last commit, else none."""
    from . import __version__
    from .formats.quarantine_list import quarantined
    from .formats.url_policy import read_checked_lockfiles
    from .gitutil import commit_of
    from .net.s3_store import store_of
    from .stages.sbom import sbom_documents, sbom_stamp

    names = loaded.chosen_sets(sets)
    lockfiles = read_checked_lockfiles([loaded.lockfile_path(n) for n in names],
                                       loaded.config.sources)
    retained = [(revision.lockfile, revision.note)  # served too (retention() checked them)
                for revision in retention(loaded, now=datetime.now(UTC)).kept
                if revision.set_name in names]
    commit, modified = commit_of(loaded.path)
    return sbom_documents(lockfiles, store_of(loaded), commit=commit, commit_modified=modified,
                          mirror_name=loaded.config.name or "lockmirror", tool_version=__version__,
                          retained=retained, source_date_epoch=sbom_stamp(loaded.lockfile_dir),
                          quarantined=quarantined(loaded.quarantine_path))


def retention(loaded: LoadedConfig, *, now: datetime) -> Retention:
    """The earlier lock revisions of every set that ``retention:`` keeps (git history),
    each checked as a lockfile under today's sources (one that is not is left out)."""
    from .stages.retention import retained_locks, under_sources

    rule, sets = loaded.config.retention, [(n, loaded.lockfile_path(n)) for n in loaded.config.sets]
    return under_sources(retained_locks(sets, lock_revisions=rule.lock_revisions, days=rule.days,
                                        now=now), loaded.config.sources)


def disk_usage(loaded: LoadedConfig, *, now: datetime) -> tuple[Usage, Retention, Footprint]:
    """The mirror's size per set, target and retained revision (lockmirror's own set's
    too), and what its directories take on this disk now (locked files missing included)."""
    from .stages.disk_footprint import footprint
    from .stages.disk_usage import mirror_usage

    kept = retention(loaded, now=now)
    usage, locked = mirror_usage(loaded, kept)
    return usage, kept, footprint(loaded, locked)


def audit(loaded: LoadedConfig, *, now: datetime, sets: Sequence[str] | None = None,
          lockfiles: Sequence[Path] | None = None, offline: bool = False,
          databases: Sequence[Path] = (), retained: RetainedLockfiles | None = None,
          ) -> AuditReport:
    """Re-check the locked releases against the policy as of ``now`` (with the sets:
    those the earlier lock revisions retention keeps serving, too; ``retained``:
    what :func:`retained_lockfiles` returned for this run, default: asked now)."""
    from .stages.audit import audit_mirror

    found = None if lockfiles is not None else (
        retained[1] if retained is not None else retention(loaded, now=now))
    report = audit_mirror(loaded, now=now, sets=sets, lockfile_paths=lockfiles,
                          offline=offline, databases=databases,
                          kept=found.kept if found is not None else ())
    return report if found is None else replace(report, notes=(*found.notes, *report.notes))


def quarantine(loaded: LoadedConfig, report: AuditReport, *, now: datetime,
               dry_run: bool = False) -> QuarantineResult:
    """``audit --quarantine``: put the releases ``report`` denies on the quarantine
    list, then rebuild the index without them (:func:`index`, the one writer of
    ``dist-index/``); ``dry_run``: into a scratch directory, writing nothing."""
    from .stages.quarantine import apply_quarantine

    return apply_quarantine(loaded, report, now=now, dry_run=dry_run, build_index=index)


def publish(loaded: LoadedConfig, name: str, *, dry_run: bool = False, prune: bool = False,
            break_lock: bool = False, lock_wait: float = 0.0, jobs: int | None = None,
            progress: PublishProgress | None = None,
            drop_sets: Sequence[str] = ()) -> PublishResult:
    """Publish ``paths.index`` to the destination ``name`` of mirror.yaml; a
    destination holding a set the index lacks is refused unless ``drop_sets``
    names it (:meth:`lockmirror.publish.tree.SourceTree.guard`)."""
    from .publish import publish_configured

    return publish_configured(loaded, name, dry_run=dry_run, prune=prune,
                              break_lock=break_lock, lock_wait=lock_wait, jobs=jobs,
                              progress=progress, drop_sets=drop_sets)


def gc(loaded: LoadedConfig | None, *, dry_run: bool = False, shared_store: bool = False,
       now: datetime | None = None) -> GcResult:
    """Remove from the store and caches what no lockfile in use needs (the current
    ones, and earlier revisions ``retention:`` keeps as of ``now``, default: the clock).
    ``loaded`` None (the far side): what killed check-install runs left."""
    from .stages.gc import collect_garbage, collect_outside_project
    if loaded is None:
        return collect_outside_project(dry_run=dry_run)
    kept = retention(loaded, now=now or datetime.now(UTC))
    return collect_garbage(loaded, kept, dry_run=dry_run, shared_store=shared_store)


# -- the update loop: what is behind, the smallest security move, the bump PR, advisories

def upgrade_vulnerable(loaded: LoadedConfig, sets: Sequence[str] | None = None, *,
                       now: datetime, jobs: int = 6) -> VulnerableUpgrade:
    """Re-lock only the packages with deny-level advisories, each to its lowest fix."""
    from .stages.lock_vulnerable import upgrade_vulnerable

    return upgrade_vulnerable(loaded, sets, now=now, jobs=jobs)


def outdated(loaded: LoadedConfig, *, now: datetime,
             sets: Sequence[str] | None = None) -> OutdatedReport:
    """How far each locked release is behind upstream as of ``now``, and why;
    project pages only, through ``lock``'s HTTP cache."""
    from .stages.outdated import outdated_sets

    return outdated_sets(loaded, sets, now=now)


def bump(loaded: LoadedConfig, *, now: datetime, security: bool = False,
         sets: Sequence[str] | None = None, branch: str | None = None,
         jobs: int = 6) -> BumpResult:
    """Move the lockfiles (``security``: only what has deny-level advisories), commit
    them on a branch, and return the pull request's title and body."""
    from .stages.bump import bump as run_bump

    return run_bump(loaded, now=now, security=security, sets=list(sets) if sets else None,
                    branch=branch, jobs=jobs)


def advisories(loaded: LoadedConfig, *, now: datetime,
               sets: Sequence[str] | None = None) -> Snapshot:
    """What ``policy.advisory_sources`` say as of ``now`` of each release :func:`audit` checks
    (default: every set, lockmirror's own, retained revisions): the far side's snapshot."""
    from .resolve.advisories import open_advisory_db
    from .resolve.advisory_snapshot import take_snapshot
    from .stages.audit import audited_lockfiles, kept_of

    lockfiles = audited_lockfiles(loaded, sets)
    lockfiles += [r.lockfile for r in kept_of(lockfiles, retention(loaded, now=now).kept)]
    db = open_advisory_db(loaded.config.policy.advisory_sources, base_dir=loaded.root)
    return take_snapshot(db, {(p.name, p.version) for lf in lockfiles for p in lf.packages},
                         taken=now)
