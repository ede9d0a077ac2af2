"""The doit glue: the only module that imports doit, and doit's one print site.

Each ``*_task(s)`` function returns the task dict (or yields subtasks) for one
stage; ``dodo.py`` only wires them. Each action calls the stage's one entry in
:mod:`lockmirror.pipeline` (the same the CLI commands call), prints its summary,
and turns a LockmirrorError into a one-line message and a failed task (no
traceback), through :func:`_report`. Heavy modules are imported inside
actions so a no-op run stays fast.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

from doit.exceptions import TaskFailed  # type: ignore[import-untyped]
from doit.tools import config_changed  # type: ignore[import-untyped]

from . import mutation, pipeline
from .config import signing_key_stamp, split_names
from .doit_project import Project
from .doit_uptodate import bundle_there, installs_unchanged, lock_current, store_complete
from .errors import LockmirrorError, error_text
from .fsutil import format_size
from .interrupt import leave, restore, stopped, terminate_as_interrupt
from .timeutil import mtime_stamp, parse_when

TaskDict = dict[str, Any]
_Creator = TypeVar("_Creator", bound=Callable[[Project], Any])


# audit and gc go without: they read mirror.yaml in their actions, not as doit lists tasks
def needs_config(basename: str) -> Callable[[_Creator], _Creator]:
    """While mirror.yaml does not load (``Project.error``), a task ``basename`` stands in
    (one, or an iterator of one), so ``doit list`` works; run, it says why and fails."""
    def wrap(creator: _Creator) -> _Creator:
        @functools.wraps(creator)
        def create(project: Project) -> Any:
            if not (error := project.error):
                return creator(project)
            task = {"basename": basename, "actions": [lambda: _report(error)], "uptodate": [False]}
            return iter([task]) if inspect.isgeneratorfunction(creator) else task
        return cast(_Creator, create)
    return wrap


def _report(error: Exception) -> TaskFailed:
    """Print ``error`` as one line on stderr (a ConfigError: its lines) and
    return the failed task: doit's one place that reports an error. The
    TaskFailed is not reported again by doit (``report=False``): each error
    is printed once, and doit still exits 1."""
    if isinstance(error, (LockmirrorError, OSError)):  # as the CLI words them
        text = error_text(error)
        print(text, file=sys.stderr)
        return TaskFailed(text.removeprefix("lockmirror: error: ").splitlines()[0],
                          report=False)
    line = (str(error).splitlines() or [""])[0][:300]
    print(f"lockmirror: internal error: {type(error).__name__}: {line} (a bug in "
          "lockmirror; set LOCKMIRROR_TRACEBACK=1 for the traceback)", file=sys.stderr)
    return TaskFailed(f"internal error: {type(error).__name__}", report=False)


def _action(function: Callable[..., object], *args: Any
            ) -> Callable[[], TaskFailed | dict[str, Any] | None]:
    """Wrap a stage call: LockmirrorError or OSError -> one line, task failed;
    any other exception -> one "internal error" line (a bug; doit's traceback
    with LOCKMIRROR_TRACEBACK=1); a TaskFailed the call returns is passed on, and
    a dict (doit keeps it as the task's values, for its up-to-date checks).
    Ctrl-C or SIGTERM (taken as Ctrl-C while the action runs: :mod:`lockmirror.interrupt`;
    once the clean-up ran) -> one line, exit 130/143 as the CLI's (:func:`leave`)."""

    def run() -> TaskFailed | dict[str, Any] | None:
        previous = terminate_as_interrupt()
        try:
            result = function(*args)
        except (LockmirrorError, OSError) as error:
            return _report(error)
        except KeyboardInterrupt as interrupt:
            line, code = stopped(interrupt)
            sys.stderr.write(line + "\n")  # one write: no worker's line is glued onto it
            leave(code)  # SystemExit, which passes doit by; with workers stuck, ends at once
        except Exception as error:
            if os.environ.get("LOCKMIRROR_TRACEBACK"):
                raise
            return _report(error)
        finally:
            restore(previous)
        return result if isinstance(result, (TaskFailed, dict)) else None

    run.__name__ = getattr(function, "__name__", "action")
    return run


# -- lock --------------------------------------------------------------------


def _remove_orphans(project: Project) -> None:
    from .stages.lock_orphans import remove_orphans

    for line in remove_orphans(project.loaded):
        print(line)


def _lock_one(project: Project, set_name: str) -> None:
    from .commands.lock import LockLine, before_lock, print_results

    loaded = project.loaded  # a linux_* tag: named once per run, by a set that locks for it
    before_lock(loaded, targets=loaded.config.set_targets(set_name)
                if set_name in loaded.config.sets else [], said=project.warned)
    line = LockLine(sys.stderr)
    try:
        results = pipeline.lock(loaded, [set_name], progress=line, kept=project.locked)
    finally:
        line.close()
    print_results(results)


@needs_config("lock")
def lock_tasks(project: Project) -> Iterator[TaskDict]:
    from .stages.lock_orphans import orphan_lockfiles

    for set_name, path, wanted, what in project.locks():
        yield {
            "name": set_name,
            "doc": f"{what} into {path.name}",
            "actions": [_action(_lock_one, project, set_name)],
            "targets": [str(path)],
            "uptodate": [lambda path=path, wanted=wanted: lock_current(path, wanted)],
            "verbosity": 2,
        }
    # as `lockmirror lock`: a set gone from mirror.yaml loses its lockfile (no set is .orphans)
    yield {"name": ".orphans", "doc": "remove the lockfiles of sets mirror.yaml no longer has",
           "actions": [_action(_remove_orphans, project)], "verbosity": 2, "uptodate": [
               lambda: not orphan_lockfiles(project.path_of("lockfiles"), project.set_names)]}


# -- fetch -------------------------------------------------------------------


def _fetch(project: Project, sets: list[str], targets: list[str]) -> None:
    from .commands.fetch import console_progress

    progress = console_progress(sys.stderr)
    try:
        summary = pipeline.fetch(project.loaded, progress=progress, sets=sets or None,
                                 targets=targets or None, retained=project.retained)
    finally:
        if (close := getattr(progress, "close", None)) is not None:
            close()
    for note in summary.notes:
        print(f"fetch: {note}", file=sys.stderr)
    print(f"fetch: {summary.describe()}")


def _names(values: list[str] | None) -> list[str]:
    """A list param's names: doit appends each ``--set`` as given, so
    ``--set a,b`` arrives as one value, split here (``--set a --set b`` works too)."""
    return split_names(values or ())


def _shard_params() -> list[dict[str, Any]]:
    """``--set a,b`` and ``--target x,y`` (doit's lists are comma-separated): one shard.
    (doit reserves the argument name ``targets``, hence ``target_names``.)"""
    return [{"name": "sets", "long": "set", "type": list, "default": [],
             "help": "only these sets (comma-separated): one shard of a CI matrix"},
            {"name": "target_names", "long": "target", "type": list, "default": [],
             "help": "only these targets (comma-separated)"}]


@needs_config("fetch")
def fetch_task(project: Project) -> TaskDict:
    """`doit fetch [--set A,B] [--target X]`: every set, or one shard."""
    def fetch(sets: list[str] | None = None, target_names: list[str] | None = None
              ) -> TaskFailed | None:  # doit passes its params by name
        return _action(_fetch, project, _names(sets), _names(target_names))()

    return {
        "doc": "download every locked file (and wheel metadata) into the store, verified",
        "actions": [fetch],
        "params": _shard_params(),
        "file_dep": [str(p) for p in project.lockfile_paths()],
        "task_dep": ["lock"],
        # doit passes the task (its params) by the argument's name
        "uptodate": [lambda task=None: store_complete(project, task)],
        "verbosity": 2,
    }


# -- index -------------------------------------------------------------------


def _index(project: Project) -> None:
    from .commands.index import print_result

    result = pipeline.index(project.loaded, retained=project.retained)
    for note in result.notes:
        print(f"index: {note}", file=sys.stderr)
    print_result(result)


@needs_config("index")
def index_task(project: Project) -> TaskDict:
    return {
        "doc": "build dist-index/ (PEP 503/691/658/700 pages, files, constraints, manifest)",
        "actions": [_action(_index, project)],
        "task_dep": ["fetch"],
        # Always runs: the stage's own no-op check (a few stats) is the only one
        # that sees every input. doit's file_dep could see the lockfiles and
        # mirror.yaml, but not a page or file deleted or added in dist-index/ by
        # hand (the stage compares the directories with its state), an earlier
        # lock leaving the retention window (the clock and git history), an
        # optional quarantine list appearing, another lockmirror version or
        # $LOCKMIRROR_STORE: a doit skip would miss those rebuilds.
        "uptodate": [False],
        "targets": [str(project.path_of("index") / "manifest.json")],
        "verbosity": 2,
    }


# -- check-install -------------------------------------------------------------


def _check_install(project: Project, sets: list[str], targets: list[str]) -> None:
    loaded = project.loaded  # the stage records the pass, as for lockmirror check-install
    report = pipeline.check_install(loaded, progress=print, sets=sets or None,
                                    targets=targets or None)
    for line in report.installers:
        print(f"check-install: installer {line}")
    for check in report.checks:
        if check.ok:  # failures are listed once, in the error
            print(f"check-install: {check.describe()}")
    print(f"check-install: {report.summary()} from {loaded.index_dir} alone")
    report.raise_for_failures()


@needs_config("check-install")
def check_install_task(project: Project) -> TaskDict:
    """`doit check-install [--set A,B] [--target X]`: every set, or one shard."""
    from .stages.check_install_work import PASS_RECORD

    index, verify = project.path_of("index"), project.path_of("cache") / "verify"

    def check(sets: list[str] | None = None, target_names: list[str] | None = None
              ) -> TaskFailed | None:  # doit passes its params by name
        return _action(_check_install, project, _names(sets), _names(target_names))()

    return {
        "basename": "check-install",
        "doc": "prove every set installs from dist-index/ alone with the far side's installers",
        "actions": [check],
        "params": _shard_params(),
        "task_dep": ["index"],
        # the pass either door recorded: what installers read and the installer matrix
        "uptodate": [lambda: installs_unchanged(index, verify)],
        "targets": [str(verify / PASS_RECORD)],
        "verbosity": 2,
    }


def verify_alias_task() -> TaskDict:
    """``doit verify``: the old name of check-install, kept so scripts still work."""
    def point_to_new_name() -> None:
        print("doit verify is deprecated: it runs `doit check-install` (the install check); "
              "`lockmirror verify DIR` checks a tree against its manifest", file=sys.stderr)

    return {"doc": "deprecated name of check-install", "actions": [point_to_new_name],
            "task_dep": ["check-install"], "uptodate": [False], "verbosity": 2}


# -- bundle ------------------------------------------------------------------


def _bundle(project: Project, now: str = "") -> dict[str, Any]:
    result = pipeline.bundle(project.loaded, retained=project.retained,
                             now=parse_when(now) if now else None)
    state = "written" if result.changed else "unchanged"
    print(f"bundle: {result.path} ({format_size(result.size)}, {result.members} members, "
          f"sha256 {result.sha256[0]}, {'signed' if result.signed else 'unsigned'}) ({state})")
    for line in (*result.notes, result.tool_note(), result.removed.summary()):
        if line:
            print(f"bundle: {line}")
    return {"parts": [str(part) for part in (*result.parts, result.checksums)], "now": now}


@needs_config("bundle")
def bundle_task(project: Project) -> TaskDict:
    """`doit bundle [--now WHEN]`: as `lockmirror bundle [--now WHEN]`."""
    def write(now: str = "") -> TaskFailed | dict[str, Any] | None:  # doit passes its param
        return _action(_bundle, project, now)()

    return {
        "doc": "write dist/lockmirror-<name>-<id>.tar: the index, lockfiles, manifest, tool wheels",
        "actions": [write],
        "params": [{"name": "now", "long": "now", "type": str, "default": "",
                    "help": "the time the advisory snapshot records as taken (default: now, "
                            "UTC); the same inputs, answers and --now give the same bytes"}],
        "task_dep": ["check-install"],
        "file_dep": [str(project.path_of("index") / "manifest.json"), str(project.path),
                     *(str(p) for p in project.lockfile_paths())],
        # signed or not, and by which key file ($LOCKMIRROR_SIGNING_KEY), and the members'
        # mtime (the lockfiles' last commit, or $SOURCE_DATE_EPOCH): doit keeps a digest
        "uptodate": [config_changed({**signing_key_stamp(),
                                     "mtime": mtime_stamp(project.path_of("lockfiles"))}),
                     bundle_there],
        "verbosity": 2,
    }


# -- audit -------------------------------------------------------------------


def _audit(project: Project) -> TaskFailed | None:
    from datetime import UTC, datetime

    from .stages.audit_render import render_markdown, render_text

    report = pipeline.audit(project.loaded, now=datetime.now(UTC), retained=project.retained)
    print(render_text(report))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(render_markdown(report) + "\n")
    return TaskFailed("deny-level policy findings") if report.exit_code else None


def audit_task(project: Project) -> TaskDict:
    return {
        "doc": "re-check every locked release now (advisories, yanks, exceptions); never cached",
        "actions": [_action(_audit, project)],
        "uptodate": [False],
        "verbosity": 2,
    }


# -- publish -----------------------------------------------------------------


def _publish(project: Project, names: list[str], drop_sets: list[str]) -> TaskFailed | None:
    """Each destination in turn, each tried (:func:`lockmirror.publish.publish_each`)."""
    from .publish import publish_each

    def one(name: str) -> None:
        result = pipeline.publish(project.loaded, name, drop_sets=drop_sets)
        for note in result.notes:
            print(f"publish {name}: {note}", file=sys.stderr)
        print(f"publish {name}: {result.summary()}")

    failed = publish_each(names, one, report=_report)
    return None if failed is None else _report(LockmirrorError(failed))


@needs_config("publish")
def publish_tasks(project: Project) -> Iterator[TaskDict]:
    """``publish``: every destination in name order, each tried; ``publish:<name>``:
    one. Each asks the destination what it lacks (a listing, a receipt or its simple
    pages), so it always runs and a current destination costs a few requests.
    Not doit subtasks: doit starts subtasks waiting on one task (``index``) in the
    order of a set (another each run), and stops at the first that fails."""
    names = project.summary["publish"]
    if not names:
        def explain() -> None:
            print("publish: mirror.yaml defines no destinations; add a `publish:` section "
                  "(kinds s3, upload, directory) - see README, Publishing")

        yield {"basename": "publish", "doc": "no destinations in mirror.yaml",
               "actions": [explain], "uptodate": [False], "verbosity": 2}
        return
    params = [{"name": "drop_sets", "long": "drop-sets", "type": list, "default": [],
               "help": "sets this publish may remove from the destination "
                       "(comma-separated; else an index lacking one is refused)"}]
    every = f"every destination of mirror.yaml ({', '.join(names)}), each tried"
    for task, chosen, what in [("publish", names, every),
                               *((f"publish:{n}", [n], f"the destination '{n}'") for n in names)]:
        def publish(drop_sets: list[str] | None = None, chosen: list[str] = chosen
                    ) -> TaskFailed | None:  # doit passes its param by name
            return _action(_publish, project, chosen, _names(drop_sets))()

        yield {"basename": task, "doc": f"publish dist-index/ to {what}", "actions": [publish],
               "params": params, "task_dep": ["index"], "uptodate": [False], "verbosity": 2}


# -- gc (not part of build) ---------------------------------------------------------


def _gc(project: Project, dry_run: bool, shared_store: bool) -> None:
    from .commands.gc import print_result

    print_result(pipeline.gc(project.loaded, dry_run=dry_run, shared_store=shared_store),
                 each=dry_run)


def gc_task(project: Project) -> TaskDict:
    """`doit gc [--dry-run] [--shared-store]`: what `lockmirror gc` does."""
    def collect(dry_run: bool, shared_store: bool) -> TaskFailed | None:
        return _action(_gc, project, dry_run, shared_store)()

    return {
        "doc": "remove store files and cached metadata no current lockfile needs, and "
               "check-install leftovers; says the bytes freed (--dry-run: only list)",
        "actions": [(collect,)],
        "params": [
            {"name": "dry_run", "long": "dry-run", "type": bool, "default": False,
             "help": "list what would be removed; remove nothing"},
            {"name": "shared_store", "long": "shared-store", "type": bool, "default": False,
             "help": "also collect a store given by $LOCKMIRROR_STORE (by this mirror's "
                     "lockfiles alone)"},
        ],
        "uptodate": [False],
        "verbosity": 2,
    }


# -- mutation (not part of build) --------------------------------------------------


def _mutation(modules: str, jobs: int) -> None:
    print(mutation.run(modules, jobs), end="")
    print(f"(survivors: `mutmut results`; one mutant: `mutmut show NAME`; score in "
          f"{mutation.MUTATION_SCORE})")


def mutation_task() -> TaskDict | None:
    """`doit mutation [--modules formats.signing,stages.serve] [--jobs 2]`: mutmut over
    the safety modules of lockmirror's own sources, in lockmirror's repository only
    (None, which doit reads as no task, in a mirror repository with a copied dodo.py)."""
    if not mutation.lockmirror_repository(Path.cwd()):
        return None

    def run(modules: str, jobs: int) -> TaskFailed | None:  # doit passes the params
        return _action(_mutation, modules, jobs)()

    return {
        "doc": "lockmirror development: mutation testing (mutmut) of lockmirror's safety "
               "checks; slow, never in build",
        "actions": [(run,)],
        "params": [
            {"name": "modules", "long": "modules", "type": str, "default": "",
             "help": "comma-separated modules whose safety checks to mutate, e.g. "
                     "download,import_plan (default: every module of mutation.SCOPE)"},
            {"name": "jobs", "long": "jobs", "type": int, "default": 2,
             "help": "mutants tested in parallel (default: 2)"},
        ],
        "uptodate": [False],
        "verbosity": 2,
    }
