"""The installers the far side uses, as ``doit check-install`` runs them: versions and copies.

:data:`INSTALLERS` is the one place the project names installer versions. It
holds the newest pip and uv, and the pips that long-term distributions ship:

==========  ====================================================  ======  ==========
installer   shipped as                                            Python  setuptools
==========  ====================================================  ======  ==========
pip 26.3    newest on PyPI                                        any     -
uv 0.13.9   newest on PyPI (the ``uv`` dependency)                any     -
pip 23.0.1  Debian 12 ``python3-pip 23.0.1+dfsg-1``               3.11    66.1.1
pip 22.0.2  Ubuntu 22.04 ``python3-pip 22.0.2+dfsg-1ubuntu0.x``   3.10    59.6.0
pip 21.2.3  RHEL 9 ``python3-pip-21.2.3-*.el9``                   3.9     53.0.0
==========  ====================================================  ======  ==========

A distribution's ``python3 -m venv`` gives the environment its pip *and* its
setuptools (ensurepip); the pips of 2021-2023 build a legacy ``setup.py``
sdist with that setuptools rather than in an isolated build, so each fresh
environment of an old pip starts with that setuptools, as it does there.

Copies live in a cache directory, one per installer and version
(``pip-23.0.1/``, its setuptools wheel in ``wheels/``; ``uv-0.13.9/``),
fetched once from the package index with this interpreter's own pip
(``pip install --no-deps --only-binary :all: --target``), so they come
through whatever index configuration the machine has. pip is pure Python:
its copy serves every interpreter and is run as ``python <copy>/pip`` (what
pip's own ``--python`` option does), so the virtual environment an installer
fills never contains the installer. uv is the ``uv`` package's binary when
its version matches, else a fetched copy.
:func:`prune_installers` removes every copy the table no longer names.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import LockmirrorError
from ..fsutil import check_output_dir, disk_bytes, format_size

INSTALLER_CACHE_ENV = "LOCKMIRROR_INSTALLER_CACHE"  # where the installer copies are kept


class InstallerUnavailable(LockmirrorError):
    """An installer copy could not be had (no package index, no wheel for it)."""


@dataclass(frozen=True)
class Installer:
    """One installer at one version, and why it is in the matrix."""

    kind: str  # "pip" | "uv"
    version: str
    shipped_as: str
    newest_python: tuple[int, int] | None = None  # newest minor it runs on (None: any)
    reads_pylock: bool = False  # installs from a PEP 751 lockfile with -r
    # what the distribution's `python3 -m venv` puts beside its pip (ensurepip): old pips
    # build a legacy setup.py sdist with the environment's own setuptools
    setuptools: str | None = None

    @property
    def name(self) -> str:
        return f"{self.kind} {self.version}"

    @property
    def key(self) -> str:
        """Its cache directory's name."""
        return f"{self.kind}-{self.version}"

    def unusable_on(self, python: tuple[int, int]) -> str | None:
        """Why it cannot run on that Python minor version (None: it can)."""
        if self.newest_python is not None and python > self.newest_python:
            newest = ".".join(map(str, self.newest_python))
            return (f"{self.name} ({self.shipped_as}) runs on Python <= {newest}; "
                    f"this is {python[0]}.{python[1]}")
        return None


NEWEST_PIP = Installer("pip", "26.3", "newest pip on PyPI", reads_pylock=True)
UV = Installer("uv", "0.13.9", "newest uv on PyPI", reads_pylock=True)
DEBIAN_12_PIP = Installer("pip", "23.0.1", "Debian 12 python3-pip 23.0.1+dfsg-1", (3, 11),
                          setuptools="66.1.1")
UBUNTU_2204_PIP = Installer("pip", "22.0.2", "Ubuntu 22.04 python3-pip 22.0.2+dfsg-1ubuntu0.x",
                            (3, 11), setuptools="59.6.0")
RHEL_9_PIP = Installer("pip", "21.2.3", "RHEL 9 python3-pip-21.2.3", (3, 11),
                       setuptools="53.0.0")
INSTALLERS: tuple[Installer, ...] = (NEWEST_PIP, UV, DEBIAN_12_PIP, UBUNTU_2204_PIP, RHEL_9_PIP)
FETCH_TIMEOUT = 300.0
_COPY_NAME = re.compile(r"(pip|uv)-[0-9][0-9a-z.]*|\.(pip|uv)-[0-9][0-9a-z.]*\..+")


def find_installers(names: Sequence[str] | None) -> tuple[Installer, ...]:
    """The installers named ``"pip 23.0.1"``, ``"pip-23.0.1"`` or ``"uv"`` (None: all)."""
    if not names:
        return INSTALLERS
    chosen = []
    for name in names:
        spelled = name.replace("-", " ").replace("==", " ").strip()
        found = [i for i in INSTALLERS if spelled in (i.name, i.kind)]
        if not found:
            raise LockmirrorError(f"unknown installer {name!r} (known: "
                                  f"{', '.join(i.name for i in INSTALLERS)})", where="--installer")
        chosen += [i for i in found if i not in chosen]
    return tuple(chosen)


def ensure_installer(installer: Installer, cache: Path) -> Path:
    """A runnable copy: for pip the directory holding ``pip/``, for uv the binary.

    Fetched into ``cache/<kind>-<version>/`` on first use (atomically: a
    half-fetched copy is never used). Raises InstallerUnavailable saying why
    when it cannot be fetched.
    """
    if installer.kind == "uv":
        installed = _installed_uv(installer.version)
        if installed is not None:
            return installed
    home = cache / installer.key
    present = (home / installer.kind).exists() or (home / "bin" / installer.kind).exists()
    if not present or (installer.setuptools and seed_wheel(installer, home) is None):
        _fetch(installer, home)
    if installer.kind == "uv":
        return home / "bin" / "uv"
    return home


def prune_installers(cache: Path, keep: Sequence[Installer] = INSTALLERS) -> list[Path]:
    """Remove every installer copy in ``cache`` that ``keep`` does not name; return what went.

    Only entries named like a copy (``pip-1.2.3``, ``uv-0.1.0``, or a staging
    ``.pip-1.2.3.xxxx`` left by an interrupted fetch) are touched.
    """
    if not cache.is_dir():
        return []
    wanted = {i.key for i in keep}
    gone = []
    for entry in sorted(cache.iterdir()):
        if _COPY_NAME.fullmatch(entry.name) and entry.name not in wanted:
            shutil.rmtree(entry, ignore_errors=True)
            gone.append(entry)
    return gone


# What a check-install run leaves in its work directory, never needed by the next:
# the run directory, and the venvs, uv cache and requirement files of the layout
# before issue 14 (hundreds of MiB after one build of the bundled mirror.yaml).
_LEFTOVERS = ("run", "venv-*", "uv-cache", "requirements-*.txt")


def stale_work(work_dir: Path, cache: Path | None = None,
               keep: Sequence[Installer] = INSTALLERS) -> list[Path]:
    """What earlier check-install runs left that no run will use: the leftovers
    in ``work_dir`` and the installer copies in ``cache`` (default
    ``work_dir/installers``) that ``keep`` does not name. Removes nothing."""
    found = [p for pattern in _LEFTOVERS for p in sorted(work_dir.glob(pattern))]
    cache = work_dir / "installers" if cache is None else cache
    if cache.is_dir():
        wanted = {i.key for i in keep}
        found += [entry for entry in sorted(cache.iterdir())
                  if _COPY_NAME.fullmatch(entry.name) and entry.name not in wanted]
    return found


def clean_work(work_dir: Path, cache: Path | None = None,
               keep: Sequence[Installer] = INSTALLERS) -> list[tuple[Path, int]]:
    """Remove :func:`stale_work`; return each path removed with the bytes it freed."""
    removed = []
    for path in stale_work(work_dir, cache, keep):
        freed = disk_bytes(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append((path, freed))
    return removed


def installer_copies(chosen: Sequence[Installer], cache: Path,
                     say: Callable[[str], None]) -> dict[Installer, Path | str]:
    """Each installer's runnable copy, or why it cannot be had."""
    copies: dict[Installer, Path | str] = {}
    for installer in chosen:
        try:
            copies[installer] = ensure_installer(installer, cache)
        except InstallerUnavailable as exc:
            say(f"{installer.name}: {exc.message}")
            copies[installer] = f"{installer.name} unavailable: {exc.message}"
    return copies


def uv_binary(copies: dict[Installer, Path | str]) -> str:
    """The uv copy of the matrix, else the uv installed here."""
    for installer, copy in copies.items():
        if installer.kind == "uv" and isinstance(copy, Path):
            return str(copy)
    return find_uv()


def default_installer_cache(work_dir: Path | None) -> Path:
    """``$LOCKMIRROR_INSTALLER_CACHE``, else ``work_dir/installers``, else the user's cache."""
    if os.environ.get(INSTALLER_CACHE_ENV):
        return Path(os.environ[INSTALLER_CACHE_ENV])
    if work_dir is not None:
        return work_dir / "installers"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lockmirror" / "installers"


def clean_work_dir(work_dir: Path, cache: Path, say: Callable[[str], None]) -> None:
    """Remove what earlier runs left (their venvs and uv cache) and installer copies
    the matrix no longer names, and say what went; keep the copies in use."""
    removed = clean_work(work_dir, cache)
    if removed:
        names = ", ".join(str(path.relative_to(work_dir)) if path.is_relative_to(work_dir)
                          else str(path) for path, _ in removed)
        freed = format_size(sum(size for _, size in removed))
        say(f"removed what earlier runs left and no run needs: {names} ({freed} freed)")


def find_uv() -> str:
    """The uv binary of the ``uv`` package, else one on PATH; LockmirrorError if none."""
    try:
        from uv import find_uv_bin
    except ImportError:
        found = shutil.which("uv")
        if found:
            return found
        raise LockmirrorError("uv is not installed", hint="pip install uv") from None
    try:
        return str(find_uv_bin())
    except FileNotFoundError:
        raise LockmirrorError("the uv package has no uv binary",
                              hint="reinstall it: pip install --force-reinstall uv") from None


def pip_command(copy: Path, python: Path) -> list[str]:
    """The command line running the pip copy for the environment of ``python``."""
    return [str(python), str(copy / "pip")]


def seed_wheel(installer: Installer, copy: Path) -> Path | None:
    """The setuptools wheel a fresh environment of this installer starts with (None: none)."""
    if not installer.setuptools:
        return None
    found = sorted((copy / "wheels").glob(f"setuptools-{installer.setuptools}-*.whl"))
    return found[0] if found else None


def _installed_uv(version: str) -> Path | None:
    try:
        from uv import find_uv_bin
    except ImportError:
        return None
    try:
        binary = find_uv_bin()
        done = subprocess.run([binary, "--version"], capture_output=True, text=True,
                              timeout=30, check=False)
    except (FileNotFoundError, OSError, subprocess.TimeoutExpired):
        return None
    words = done.stdout.split()
    return Path(binary) if len(words) >= 2 and words[1] == version else None


def _fetch(installer: Installer, home: Path) -> None:
    staging = _staging_dir(installer, home.parent)
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--only-binary", ":all:",
               "--target", str(staging), "--disable-pip-version-check", "--no-input",
               "--quiet", f"{installer.kind}=={installer.version}"]
    commands = [command]
    if installer.setuptools:
        commands.append([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary",
                         ":all:", "--dest", str(staging / "wheels"), "--disable-pip-version-check",
                         "--no-input", "--quiet", f"setuptools=={installer.setuptools}"])
    try:
        for step in commands:
            _pip(step, installer, home)
        shutil.rmtree(home, ignore_errors=True)
        os.replace(staging, home)
    except OSError as exc:  # pip not runnable, or the old copy would not go
        shutil.rmtree(staging, ignore_errors=True)
        raise InstallerUnavailable(f"cannot fetch {installer.name}: {exc.strerror or exc}",
                                   where=str(home)) from None
    except BaseException:  # InstallerUnavailable, Ctrl-C: no staging copy is left behind
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _staging_dir(installer: Installer, cache: Path) -> Path:
    """A new directory in the installer cache to fetch a copy into; LockmirrorError
    naming the cache (and the variable that set it) when it cannot be made there."""
    named = os.environ.get(INSTALLER_CACHE_ENV)
    hint = (f"${INSTALLER_CACHE_ENV} names it; point it at a directory"
            if named and Path(named) == cache else
            f"set ${INSTALLER_CACHE_ENV} to a directory for the installer copies")
    check_output_dir(cache, "the installer cache", hint=hint)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{installer.key}.", dir=cache))
    except OSError as exc:
        raise LockmirrorError(f"the installer cache cannot be written: {exc.strerror or exc}",
                              where=str(cache), hint=hint) from None


def _pip(command: list[str], installer: Installer, home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_TARGET", "PIP_PREFIX")}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True,
                              timeout=FETCH_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise InstallerUnavailable(f"cannot fetch {installer.name}: timed out after "
                                   f"{FETCH_TIMEOUT:.0f} s", where=str(home)) from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        raise InstallerUnavailable(f"cannot fetch {installer.name}: "
                                   f"{lines[-1].strip() if lines else 'pip failed'}",
                                   where=str(home), hint="it comes from the package index once, "
                                   "then from this cache")
