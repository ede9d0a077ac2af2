"""Closure check: every set installs from ``dist-index/`` alone, with the far side's installers.

Entry: :func:`verify_closure`. Everything it needs comes from the index tree:
the sets, their requirements and targets from ``lockfiles/pylock.<set>.toml``,
the pins from ``constraints/<set>-<target>.txt``, and the packages from
``simple/`` and ``files/``, over ``file://`` and over HTTP (a
:class:`~lockmirror.stages.serve.MirrorServer` on a free 127.0.0.1 port), or from a
deployed mirror's URL, whose own lockfiles and constraints are read from beside its
``simple/`` (:mod:`~lockmirror.stages.deployed_mirror`; an upload repository serves
none, so the directory's pin the sets). For every set and target:

1. ``uv pip compile`` of the set's requirements with the target's pins, for the
   target's Python and platform, over each transport;
2. where this machine can stand in for the target (CPython of this
   interpreter's minor version, platform tags it accepts):

   * an install from the index (requirements + constraints) with every
     installer of :data:`lockmirror.stages.installers.INSTALLERS` (newest pip and uv,
     the pips of Debian 12, Ubuntu 22.04 and RHEL 9), over each transport;
   * an install from the mirrored lockfile with uv and the newest pip: the local
     path (``-r dist-index/lockfiles/pylock.<set>.toml``); over HTTP pip reads
     it from its URL and uv reads a copy relocated to the server's URL
     (what ``lockmirror lockfile --base-url`` writes);

   each into a fresh virtual environment, followed by ``pip check``; a
   lockfile install must install exactly what the same installer installed
   from the index (the runtime closure: no build-only or stale entry);
3. elsewhere: ``uv pip install --dry-run -r`` of the lockfile for the target's
   platform and Python, read as step 2's uv reads it (over a URL a relocated copy,
   of whose files uv then reads none: a deployed mirror is asked for each file the
   target installs, :meth:`~.deployed_mirror.DeployedInputs.files_check`).

A failure names the set, the target, the step and the requirement the
installer could not meet. What cannot run here is reported as skipped, with
the reason, and counted as skipped (:meth:`VerifyReport.summary`).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LockmirrorError, UnknownNameError
from ..formats.landing_page import LANDING_DATA
from ..fsutil import check_output_dir, one_at_a_time
from .check_install_report import VerifyReport, quarantined_locks
from .check_install_work import temporary_work_dir  # named with the pid: a killed run's goes
from .deployed_mirror import (
    FILES_STEP,
    NO_TREE,
    DeployedInputs,
    DeployedMirror,
    parse_index_url,
    probe,
    read_lockfiles,
)
from .install_runs import (
    Check,
    Runner,
    UvPlatform,
    Where,
    closure_mismatch,
    host_mismatch,
    index_install,
    lockfile_dry_run,
    lockfile_install,
    uv_compile,
    uv_platform,
)
from .installer_output import explain_pip, explain_pip_check, explain_uv
from .installers import (
    Installer,
    clean_work_dir,
    default_installer_cache,
    find_installers,
    installer_copies,
    uv_binary,
)
from .verify import require_local_files

if TYPE_CHECKING:
    import requests

    from ..formats.lockfile import LockedTarget, Lockfile

__all__ = ["Check", "UvPlatform", "VerifyReport", "explain_pip", "explain_pip_check",
           "explain_uv", "uv_platform", "verify_closure"]

Progress = Callable[[str], None]
DEFAULT_TIMEOUT = 900.0
TRANSPORTS = ("file://", "http")


@dataclass(frozen=True)
class _SetTarget:
    set_name: str
    requirements: tuple[str, ...]
    locked: LockedTarget  # as the set's lockfile records it

    @property
    def target(self) -> str:
        return self.locked.name

    @property
    def inputs(self) -> tuple[str, str]:  # its constraints and lockfile, in the tree
        return (f"constraints/{self.set_name}-{self.target}.txt",
                f"lockfiles/pylock.{self.set_name}.toml")

    def where(self, transport: str, url: str) -> Where:
        t = self.locked
        return Where(self.set_name, t.name, t.python, t.implementation, t.platforms, url,
                     transport)


@dataclass(frozen=True)
class _Transport:
    name: str  # "file://" | "http" | "given"
    url: str  # the simple index
    root: str | None  # its root URL (lockfiles/ beside simple/); None: the local tree, or unknown
    shown: str  # the simple index as printed
    query: str = ""  # the given URL's query, sent with the lockfile's URL too
    unplaced: str | None = None  # why its lockfiles cannot be installed from (None: they can)


def verify_closure(
    index_dir: Path,
    *,
    sets: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    index_url: str | None = None,
    transports: Sequence[str] = TRANSPORTS,
    install: bool = True,
    installers: Sequence[str] | None = None,
    work_dir: Path | None = None, installer_cache: Path | None = None,
    uv_bin: str | None = None, timeout: float = DEFAULT_TIMEOUT,
    progress: Progress | None = None,
) -> VerifyReport:
    """Prove each set (optionally only ``sets``/``targets``) installs from the index alone.

    ``transports``: ``file://`` (the directory) and/or ``http`` (served on
    127.0.0.1 for the duration); ``index_url`` replaces both with one URL (a
    deployed mirror). ``installers`` names a part of the matrix (``"pip
    23.0.1"``, ``"uv"``; default all); ``install=False`` runs only the uv
    resolutions and dry runs. ``work_dir`` (default: a temporary directory)
    holds ``run/`` (uv cache, virtual environments: emptied before and after,
    so nothing cached can hide a missing file) and, unless
    ``installer_cache`` or ``$LOCKMIRROR_INSTALLER_CACHE`` is given,
    ``installers/`` (the installer copies, kept and pruned to the matrix); without
    any of them the copies are kept in ``$XDG_CACHE_HOME/lockmirror/installers``.

    With ``index_url``, the lockfiles and constraints installed from are the
    deployed mirror's (beside its ``simple/``), each required to equal the
    directory's copy, unless it serves none of them and no ``manifest.json``
    (an upload repository: the directory's pin the sets, its lockfile installs are
    skipped); with no lockfiles in ``index_dir``, the sets are those
    the mirror's ``manifest.json`` lists. A URL carrying credentials raises
    InputError before anything runs.

    Returns a report (``report.raise_for_failures()`` turns failures into a
    ResolutionError). Raises LockmirrorError when the index has no lockfiles
    or (without ``index_url``) holds none of the files its manifest lists (an
    index built from an S3 store), when a requested installer does not exist,
    or no uv can be found; UnknownNameError (exit 2) for a requested set or
    target the index does not have.
    An installer that cannot be fetched is reported as skipped with the reason (and
    named in ``report.unavailable``). Costs one venv and install per installer,
    transport and host-matching target: seconds each, dominated by sdist builds.
    """
    from ..net.http import make_session

    index_dir = Path(index_dir)
    mirror = parse_index_url(index_url) if index_url else None
    if work_dir is not None:
        check_output_dir(Path(work_dir), "the check-install work directory",
                         hint="point --work-dir (paths.cache) at a directory")
    with make_session() as session:
        return _verify(index_dir, mirror, session, sets=sets, targets=targets,
                       transports=transports, install=install, installers=installers,
                       work_dir=work_dir, installer_cache=installer_cache, uv_bin=uv_bin,
                       timeout=timeout, say=progress or (lambda _message: None))


def _verify(index_dir: Path, mirror: DeployedMirror | None, session: requests.Session, *,
            sets: Sequence[str] | None, targets: Sequence[str] | None,
            transports: Sequence[str], install: bool, installers: Sequence[str] | None,
            work_dir: Path | None, installer_cache: Path | None, uv_bin: str | None,
            timeout: float, say: Progress) -> VerifyReport:
    lockfiles, inputs = read_lockfiles(index_dir, mirror, session)
    pairs = _pairs(lockfiles, inputs.mirror.shown if inputs and inputs.listed else str(index_dir),
                   sets, targets)
    if mirror is None:  # the tree itself is installed from: its files must be here
        require_local_files(index_dir)
    elif mirror.simple.startswith(("http://", "https://")):
        probe(mirror, [r for pair in pairs for r in pair.requirements][:1])
    chosen = find_installers(installers)
    temp_root = temporary_work_dir(say) if work_dir is None else None
    work_dir = temp_root or Path(work_dir)  # type: ignore[arg-type]
    cache = installer_cache or default_installer_cache(None if temp_root else work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    checks: list[Check] = []
    used: list[str] = []
    try:  # whatever fails (no uv, an installer copy), no temporary directory is left
        # held while the run lives: gc (and another run) leave its run/ alone
        with one_at_a_time(work_dir, "another check-install is running in this work directory"):
            clean_work_dir(work_dir, cache, say)
            copies = installer_copies(chosen, cache, say) if install else {}
            runner = Runner(uv_bin or uv_binary(copies), work_dir / "run", timeout)
            runner.work.mkdir(parents=True)
            try:
                no_tree = inputs.tree_absent([r for pair in pairs for r in pair.inputs],
                                             index_dir) if inputs else None
                if no_tree:  # an upload repository: the directory's lockfiles say what it holds
                    say(no_tree)
                with _transports(index_dir, mirror, transports, tree=not no_tree) as served:
                    used = [t.shown for t in served]
                    for pair in pairs:
                        checks += _check_pair(runner, (index_dir, None if no_tree else inputs),
                                              pair, served, chosen, copies, install, say)
            finally:
                shutil.rmtree(runner.work, ignore_errors=True)
    finally:
        if temp_root is not None:
            shutil.rmtree(temp_root, ignore_errors=True)
    failing = {c.set_name for c in checks if not c.ok and not c.skipped}
    return VerifyReport(index_dir=index_dir, index_urls=tuple(used),
                        checks=tuple(mirror.scrub_check(c) if mirror else c for c in checks),
                        installers=tuple(f"{i.name} ({i.shipped_as})" for i in chosen),
                        deployed=mirror.shown if mirror else None,
                        upload_repository=bool(no_tree),
                        unavailable=tuple(i.name for i, c in copies.items() if isinstance(c, str)),
                        quarantined=quarantined_locks(_landing_data(
                            index_dir, None if no_tree else inputs), failing) if failing else ())


def _landing_data(index_dir: Path, inputs: DeployedInputs | None) -> bytes | None:
    """The ``landing.json`` of the tree installed from (which marks what it quarantined):
    the deployed mirror's when its tree is read (``inputs``), else the directory's;
    None when there is none or it cannot be read."""
    if inputs is not None:
        return inputs.landing_data()
    try:
        return (index_dir / LANDING_DATA).read_bytes()
    except OSError:
        return None


def _check_pair(runner: Runner, tree: tuple[Path, DeployedInputs | None], pair: _SetTarget,
                served: Sequence[_Transport], chosen: Sequence[Installer],
                copies: dict[Installer, Path | str], install: bool,
                say: Progress) -> list[Check]:
    """Every check of one set and target."""
    requirements = runner.work / f"requirements-{pair.set_name}.txt"
    requirements.write_text("".join(r + "\n" for r in pair.requirements))
    index_dir, inputs = tree
    if inputs is None:
        constraints, lockfile = (index_dir / relative for relative in pair.inputs)
    else:  # the deployed mirror's own, which must be the directory's
        placed = [inputs.place(relative, runner.work / "deployed") for relative in pair.inputs]
        if any(isinstance(p, str) for p in placed):  # failed: nothing runs without them
            where = pair.where(served[0].name, served[0].url)
            return [where.check(f"read {relative} ({served[0].name})", ok=False, detail=p)
                    for relative, p in zip(pair.inputs, placed, strict=True) if isinstance(p, str)]
        constraints, lockfile = (Path(p) for p in placed)
    head = f"set '{pair.set_name}', target '{pair.target}'"
    checks = []
    for transport in served:
        say(f"{head}: uv pip compile ({transport.name})")
        checks.append(uv_compile(runner, pair.where(transport.name, transport.url),
                                 requirements, constraints))
    mismatch = host_mismatch(pair.locked.python, pair.locked.implementation,
                             pair.locked.platforms)
    if mismatch or not install:
        where = pair.where(served[0].name, served[0].url)
        checks.append(where.check("installs", ok=True, skipped=mismatch or "not requested"))
        if mismatch:
            checks.append(_dry_run(runner, where, served[0], lockfile, say))
        if mismatch and inputs is not None and checks[-1].passed:
            say(f"{head}: {FILES_STEP}")
            checks.append(inputs.files_check(where, pair.locked))
        return checks
    for transport in served:
        checks += _installs(runner, pair.where(transport.name, transport.url), transport,
                            chosen, copies, (requirements, constraints, lockfile), say)
    return checks


def _installs(runner: Runner, where: Where, transport: _Transport,
              chosen: Sequence[Installer], copies: dict[Installer, Path | str],
              inputs: tuple[Path, Path, Path], say: Progress) -> list[Check]:
    """Over one transport: the set from the index with every installer, then from its
    lockfile with those that read one (compared with what they installed from the index)."""
    requirements, constraints, lockfile = inputs
    head = f"set '{where.set_name}', target '{where.target}'"
    checks = []
    from_index: dict[Installer, Check] = {}
    for installer in chosen:
        copy = copies[installer]
        step = f"{installer.name} install ({transport.name})"
        reason = copy if isinstance(copy, str) else installer.unusable_on(sys.version_info[:2])
        if reason:
            checks.append(where.check(step, ok=True, skipped=reason))
            continue
        say(f"{head}: {step}")
        from_index[installer] = index_install(runner, where, installer, Path(copy),
                                              requirements, constraints)
        checks.append(from_index[installer])
    for installer in (i for i in chosen if i.reads_pylock):
        copy = copies[installer]
        source, label = _lockfile_source(runner, transport, installer.kind, lockfile)
        step = f"{installer.name} install -r {label} ({transport.name})"
        if isinstance(copy, str) or transport.unplaced:
            checks.append(where.check(step, ok=True, skipped=transport.unplaced or str(copy)))
            continue
        say(f"{head}: {step}")
        done = lockfile_install(runner, where, installer, copy, source, label)
        index = from_index.get(installer)
        checks.append(closure_mismatch(done, index) if index else done)
    return checks


def _dry_run(runner: Runner, where: Where, transport: _Transport, lockfile: Path,
             say: Progress) -> Check:
    """The lockfile's dry run for a target this machine is not, reading the files
    over the transport as the lockfile installs do (a deployed mirror's own)."""
    source, label = _lockfile_source(runner, transport, "uv", lockfile)
    step = f"uv install --dry-run -r {label} ({transport.name})"
    if transport.unplaced:
        return where.check(step, ok=True, skipped=transport.unplaced)
    say(f"set '{where.set_name}', target '{where.target}': {step}")
    return lockfile_dry_run(runner, where, source, label)


def _lockfile_source(runner: Runner, transport: _Transport, kind: str,
                     lockfile: Path) -> tuple[str, str]:
    """(what -r gets, its label) for one kind of installer over one transport: the
    path; over a URL, pip its URL (pip resolves the relative paths against it), uv a
    copy relocated to the URL (uv resolves them against the current directory)."""
    if transport.root is None:
        return str(lockfile), "lockfile"
    if kind == "pip":
        query = f"?{transport.query}" if transport.query else ""
        return f"{transport.root}lockfiles/{lockfile.name}{query}", "lockfile"
    from ..formats.mirror_lockfile import relocate_lockfile

    copy = runner.work / "base-url" / lockfile.name
    copy.parent.mkdir(exist_ok=True)
    copy.write_bytes(relocate_lockfile(lockfile.read_bytes(), base_url=transport.root,
                                       where=str(lockfile)))
    return str(copy), "lockfile --base-url"


# --------------------------------------------------------------------------
# What to check
# --------------------------------------------------------------------------


@contextmanager
def _transports(index_dir: Path, mirror: DeployedMirror | None, transports: Sequence[str],
                tree: bool = True) -> Iterator[list[_Transport]]:
    if mirror is not None:
        # a deployed mirror's lockfiles are beside its simple/, as in the tree
        unplaced = None if tree else NO_TREE  # an upload repository serves none
        if mirror.root is None:
            unplaced = ("the index URL does not end in /simple/, so where its lockfiles are "
                        "is not known")
        yield [_Transport("given", mirror.simple, mirror.root if tree else None, mirror.shown,
                          mirror.query, unplaced)]
        return
    unknown = sorted(set(transports) - set(TRANSPORTS))
    if unknown or not transports:
        raise LockmirrorError(f"unknown transport {', '.join(unknown) or '(none)'} "
                              f"(known: {', '.join(TRANSPORTS)})")
    if not (index_dir / "simple" / "index.html").is_file():
        raise LockmirrorError("is not a built index (no simple/index.html)",
                              where=str(index_dir), hint="build it with `doit index`")
    found = []
    if "file://" in transports:
        url = (index_dir.absolute() / "simple").as_uri() + "/"
        found.append(_Transport("file://", url, None, url))
    if "http" not in transports:
        yield found
        return
    from .serve import MirrorServer

    with MirrorServer(index_dir, "127.0.0.1", 0) as server:
        root = server.simple_url.removesuffix("simple/")
        yield [*found, _Transport("http", server.simple_url, root, server.simple_url)]


def _pairs(lockfiles: Sequence[Lockfile], where: str, sets: Sequence[str] | None,
           targets: Sequence[str] | None) -> list[_SetTarget]:
    found = []
    set_names = set()
    target_names = set()
    for lock in lockfiles:
        set_names.add(lock.set_name)
        if sets and lock.set_name not in sets:
            continue
        for target in lock.targets:
            target_names.add(target.name)
            if targets and target.name not in targets:
                continue
            found.append(_SetTarget(lock.set_name, lock.requirements, target))
    for name in sets or ():
        if name not in set_names:
            raise UnknownNameError(f"no set '{name}' in the index (sets: "
                                   f"{', '.join(sorted(set_names))})", where=where)
    for name in targets or ():
        if name not in target_names:
            raise UnknownNameError(f"no target '{name}' in the index (targets: "
                                   f"{', '.join(sorted(target_names))})", where=where)
    return sorted(found, key=lambda p: (p.set_name, p.target))

