"""lockmirror's own runtime dependencies as a locked set, for the bundle's ``tool/``.

A full bundle carries lockmirror's wheel and its dependencies' wheels so the
far side installs the tool with ``pip install --no-index --find-links tool/
lockmirror``. Those dependency wheels are a set like any other, named
:data:`TOOL_SET`:

* the lock stage resolves lockmirror's runtime requirements
  (:func:`tool_requirements`) from mirror.yaml's sources into
  ``lockfiles/pylock.lockmirror-tool.toml``, for every target of mirror.yaml
  whose Python and platform lockmirror runs on (:func:`tool_targets`), and
  on nothing of the machine that locks it, so the committed lockfile is the
  same bytes whichever Python runs ``lock``; ``lockmirror diff`` shows when
  they change and ``lock --check`` fails when they are stale;
* the fetch stage downloads what that lockfile names into the store,
  verified by sha256 like every other file;
* the bundle stage carries, for each target, the wheel of each package an
  installer there picks (:func:`choose_tool_wheels`), out of the store.

The tool set is not part of the index: the mirror serves the sets of
mirror.yaml only. With ``LOCKMIRROR_TOOL_WHEELS=installed`` there is no tool
set at all (:func:`tool_set_locked` is False): bundles repack the build
machine's installed distributions instead (build machines with no index,
and the test suite).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

from ..config import TOOL_SET as TOOL_SET  # named here by the stages that use it
from ..config import LoadedConfig, lockfile_name
from ..config_schema import MirrorConfig, SetConfig, TargetConfig
from ..errors import IntegrityError, LockmirrorError, StaleLockError
from ..formats.lockfile import LockedFile, Lockfile
from ..formats.store import Store
from ..targets import Target, Truth
from .toolwheels import (
    PROJECT,
    ToolWheel,
    ToolWheels,
    installed_dependency_wheels,
    own_wheel,
    runtime_requirements,
    tool_source,
)

# Where no target of mirror.yaml runs lockmirror (3.8 clients, Windows), tool/ is for
# this far-side mirror host: the oldest Python lockmirror runs on, on glibc 2.28 (RHEL 8,
# Ubuntu 20.04, Debian 11 and newer). Fixed, so the lockfile is the same wherever it is
# locked; a target of mirror.yaml for the real host (a set's `targets:` may leave it
# out) replaces it.
DEFAULT_TOOL_HOST = "mirror-host"
DEFAULT_TOOL_TARGET = TargetConfig(python="3.11", platforms=["manylinux_2_28_x86_64"])
LOCK_HINT = "run `lockmirror lock` (it locks lockmirror's own set too), or bundle --no-tool"


def tool_set_locked() -> bool:
    """Whether the tool's wheels are a locked set (``LOCKMIRROR_TOOL_WHEELS``
    ``index``, the default) rather than repacked from this installation."""
    return tool_source() == "index"


def tool_requirements() -> list[str]:
    """lockmirror's own runtime requirements, sorted (what the tool set locks)."""
    return sorted(runtime_requirements(metadata.distribution(PROJECT)), key=str.lower)


def requires_python() -> str:
    """lockmirror's ``Requires-Python`` (``>=3.11``)."""
    return metadata.distribution(PROJECT).metadata["Requires-Python"] or ""


def tool_targets(config: MirrorConfig) -> dict[str, TargetConfig]:
    """The targets the tool set is locked for: mirror.yaml's targets whose
    Python lockmirror supports on every patch release, on a POSIX platform
    (lockmirror locks files with ``flock``: not Windows). Never the machine
    that locks (its Python would make the committed lockfile differ between
    developers and CI runners). A target a marker cannot tell apart from one
    already chosen is left out (two sets of mirror.yaml may keep such targets
    apart; one lockfile cannot): a musllinux target beside a manylinux one of
    the same Python and machine. When none is left, :data:`DEFAULT_TOOL_TARGET`."""
    left_out = set(targets_without_tool(config))
    chosen: dict[str, TargetConfig] = {}
    for name, spec in config.targets.items():
        target = spec.target(name)
        if name not in left_out and not any(s.target(n).overlaps(target)
                                            for n, s in chosen.items()):
            chosen[name] = spec
    return chosen or {DEFAULT_TOOL_HOST: DEFAULT_TOOL_TARGET}


def targets_without_tool(config: MirrorConfig) -> list[str]:
    """mirror.yaml's targets lockmirror cannot run on (a Python older than its
    ``Requires-Python`` on some patch release, or Windows): their far side gets
    no ``tool/`` wheels and checks and unpacks a bundle by hand."""
    supported = requires_python()
    return [name for name, spec in config.targets.items()
            if spec.target(name).allows_python(supported) is not Truth.ALWAYS
            or spec.target(name).environment()["sys_platform"] == "win32"]


def tool_loaded(loaded: LoadedConfig) -> LoadedConfig:
    """mirror.yaml as the tool set sees it: its sources, policy and paths, the
    one set :data:`TOOL_SET` and :func:`tool_targets`. What ``lock_sets``,
    ``stale_sets`` and ``check_lockfiles`` take to lock or check the tool set.

    (A set named ``lockmirror-tool`` is refused by :func:`lockmirror.config.load_config`.)
    """
    config = loaded.config
    targets = tool_targets(config)
    spec = SetConfig(description="lockmirror's runtime dependencies (the bundle's tool/)",
                     requirements=tool_requirements())
    derived = config.model_copy(update={"sets": {TOOL_SET: spec}, "targets": targets})
    return LoadedConfig(derived, loaded.path, loaded.text)


def lock_scopes(loaded: LoadedConfig, sets: Sequence[str] | None
                ) -> list[tuple[LoadedConfig, list[str] | None]]:
    """What ``lock`` (or ``lock --check``) of ``sets`` covers, as (config, set
    names) pairs for ``lock_sets``/``stale_sets``/``check_lockfiles``:
    mirror.yaml's sets (None: all of them), then lockmirror's own set when it
    is locked and ``sets`` is None or names it."""
    mine = [name for name in sets or () if name != TOOL_SET]
    scopes: list[tuple[LoadedConfig, list[str] | None]] = (
        [(loaded, mine or None)] if mine or not sets else [])
    if tool_set_locked() and (not sets or TOOL_SET in sets):
        scopes.append((tool_loaded(loaded), [TOOL_SET]))
    return scopes


def upgrade_names(scope: LoadedConfig, loaded: LoadedConfig,
                  names: Sequence[str]) -> list[str]:
    """The ``--upgrade`` names for one scope of :func:`lock_scopes`: all of them for
    mirror.yaml's sets (which refuse a name none of them locks), and for
    lockmirror's own set only those its lockfile holds."""
    if scope is loaded or not names:
        return list(names)
    from packaging.utils import canonicalize_name

    from ..formats.lockfile import Lockfile

    path = scope.lockfile_path(TOOL_SET)
    locked = {p.name for p in Lockfile.read(path).packages} if path.exists() else set()
    return [name for name in names if canonicalize_name(name) in locked]


def tool_lockfile_paths(loaded: LoadedConfig) -> list[Path]:
    """The tool set's lockfile when the tool is a locked set, else none: what
    the fetch stage fetches beside the sets of mirror.yaml."""
    return [loaded.lockfile_path(TOOL_SET)] if tool_set_locked() else []


def check_tool_lock(loaded: LoadedConfig) -> None:
    """Raise StaleLockError unless the tool set's lockfile was locked from
    today's inputs (lockmirror's requirements, the targets, the sources, the
    policy). Reads one line of the lockfile: no network."""
    from .lock import stale_sets

    stale = stale_sets(tool_loaded(loaded))
    if stale:
        raise StaleLockError(f"lockmirror's own set: {stale[TOOL_SET]}", hint=LOCK_HINT)


# --------------------------------------------------------------------------
# The wheels a bundle carries
# --------------------------------------------------------------------------


def choose_tool_wheels(lockfile: Lockfile, *, where: str) -> dict[str, LockedFile]:
    """Filename -> file, sorted: for each target of the tool set's lockfile,
    the wheel of each runtime package an installer there picks (its best
    ranked tag).

    Raises LockmirrorError naming the package and target when one has no
    wheel there (the far side installs lockmirror with ``--no-index`` from
    wheels only).
    """
    chosen: dict[str, LockedFile] = {}
    for locked in lockfile.targets:
        target = Target.of_locked(locked)
        for package in lockfile.packages:
            if package.build_only or locked.name not in package.targets:
                continue
            ranked = sorted((rank, wheel.filename, wheel) for wheel in package.wheels
                            if (rank := target.wheel_rank(wheel.filename)) is not None)
            if not ranked:
                raise LockmirrorError(
                    f"{package.name} {package.version} has no wheel for target "
                    f"{target.describe()}", where=where,
                    hint="the far side installs lockmirror from wheels only; bundle --no-tool, "
                         "or leave that target out")
            best = ranked[0][2]
            chosen[best.filename] = best
    return dict(sorted(chosen.items()))


def describe_coverage(lockfile: Lockfile) -> str:
    """``CPython 3.11 (manylinux_2_28_x86_64); CPython 3.12 (manylinux_2_28_aarch64)``:
    the Pythons and platforms the tool's wheels install on."""
    names = {"cp": "CPython", "pp": "PyPy"}
    return "; ".join(f"{names.get(t.implementation, t.implementation)} {t.python} "
                     f"({', '.join(t.platforms)})" for t in lockfile.targets)


def locked_tool_wheels(lockfile_dir: Path, store_dir: Path | Any) -> ToolWheels:
    """The dependency wheels the tool set's lockfile chose, read from the store
    (a directory or an S3 store).

    Each wheel of :func:`choose_tool_wheels` is read once and its sha256 and
    size checked against the lockfile before it is used. Raises
    StaleLockError when the lockfile is missing, LockmirrorError when a wheel
    is not in the store (run fetch), IntegrityError when its bytes differ
    from the lockfile.
    """
    path = lockfile_dir / lockfile_name(TOOL_SET)
    if not path.is_file():
        raise StaleLockError("lockmirror's own set is not locked yet", where=str(path),
                             hint=LOCK_HINT)
    lockfile = Lockfile.read(path)
    store = Store(store_dir) if isinstance(store_dir, Path) else store_dir  # or an S3 store
    wheels = []
    for filename, locked in choose_tool_wheels(lockfile, where=str(path)).items():
        source = f"{store.identity} sha256 {locked.sha256}"
        if not store.has(locked.sha256):
            raise LockmirrorError(f"{filename} (lockmirror's own set) is not in the store",
                                  where=source, hint="run `lockmirror fetch`")
        with store.open(locked.sha256) as reader:
            wheels.append(_read_checked(reader, source, locked))
    return ToolWheels(wheels=tuple(wheels), python=describe_coverage(lockfile))


def _read_checked(reader: BinaryIO, source: str, locked: LockedFile) -> ToolWheel:
    """The wheel ``reader`` (the store's ``source``) holds; IntegrityError unless
    it has the locked sha256 and size."""
    data = reader.read(locked.size + 1)  # one byte more: a longer file shows it
    wheel = ToolWheel.of(locked.filename, data)
    if wheel.sha256 != locked.sha256 or len(data) != locked.size:
        found = (f"more than {locked.size} bytes" if len(data) > locked.size
                 else f"sha256 {wheel.sha256}, {len(data)} bytes")
        raise IntegrityError(f"{locked.filename} in the store is not the locked file "
                             f"({found})", where=source,
                             hint="delete it and run `lockmirror fetch`")
    return wheel


def collect_tool_wheels(cache_dir: Path | None, *,
                        progress: Callable[[str], None] | None = None,
                        lockfile_dir: Path | None = None,
                        store_dir: Path | Any = None) -> ToolWheels:
    """lockmirror's wheel (packed in memory) and its dependencies' wheels.

    By default those of the tool set's lockfile in ``lockfile_dir``, read
    from the store at ``store_dir`` and checked against the lockfile
    (:func:`locked_tool_wheels`: one wheel per package and target of the
    lockfile); with ``LOCKMIRROR_TOOL_WHEELS=installed``, this installation's
    own, repacked once into
    :func:`~lockmirror.stages.toolwheels.tool_wheel_cache` of ``cache_dir``.

    Raises LockmirrorError if the tool set is not locked or fetched, a
    dependency is not installed (``installed``) or the editable install's
    version is stale. Costs one read and one sha256 pass over each
    dependency wheel (or, once per dependency set, a repack) and a zip of
    lockmirror's sources; the wheels are held in memory.
    """
    dist = metadata.distribution(PROJECT)
    if tool_source() == "index":
        if lockfile_dir is None or store_dir is None:
            raise LockmirrorError("lockmirror's locked tool set needs the lockfiles and the "
                                  "store", hint="or LOCKMIRROR_TOOL_WHEELS=installed")
        deps = locked_tool_wheels(lockfile_dir, store_dir)
    else:
        deps = installed_dependency_wheels(dist, cache_dir, progress)
    return ToolWheels(wheels=(own_wheel(dist), *deps.wheels), python=deps.python)
