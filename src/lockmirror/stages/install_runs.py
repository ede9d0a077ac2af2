"""One installer run each: what ``doit check-install`` asks uv and pip to do, as a :class:`Check`.

Every run sees the mirror and nothing else: the caller's ``PIP_*``/``UV_*``
variables, configuration files and proxy settings are dropped, pip runs
``--isolated --no-cache-dir`` (with ``--trusted-host`` for a plain-http mirror
pip would otherwise ignore), uv ``--no-config`` with the run's private
cache. When the mirror is ours (a directory, or served on 127.0.0.1) the
network is cut: every proxy variable points at a closed port on 127.0.0.1
and only 127.0.0.1 is exempt, so a file named by an upstream URL fails as it
would behind the gap. Each install goes into a fresh virtual environment that is removed afterwards,
then ``pip check`` (or ``uv pip check``) runs in it.

* :func:`uv_compile`: resolve a set's requirements with a target's pins for the
  target's Python and platform;
* :func:`index_install`: install a set from the index (requirements + the
  target's constraints) with one installer of the matrix;
* :func:`lockfile_install`: install a set from its mirrored lockfile
  (``-r pylock.<set>.toml``), with build requirements from the index;
* :func:`lockfile_dry_run`: ``uv pip install --dry-run`` of the lockfile for a
  target this machine cannot run (:func:`host_mismatch` says why; its
  ``--python-platform``/``--python-version``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

from ..errors import LockmirrorError
from ..formats.client_config import pip_index_arguments
from .installer_output import explain_pip, explain_pip_check, explain_uv
from .installers import Installer, pip_command, seed_wheel

# glibc minors uv accepts as x86_64-manylinux_2_X / aarch64-manylinux_2_X
# (`uv pip compile --help`, uv 0.13); 17 is also spelled manylinux2014.
_UV_GLIBC = (17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)
_UV_LINUX_ARCHES = ("x86_64", "aarch64")
_WINDOWS = {"win_amd64": "x86_64-pc-windows-msvc", "win32": "i686-pc-windows-msvc",
            "win_arm64": "aarch64-pc-windows-msvc"}
_MAC_ARCH = {"arm64": "aarch64", "x86_64": "x86_64", "universal2": "aarch64",
             "universal": "x86_64", "intel": "x86_64"}
_PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "ftp_proxy", "no_proxy"}
_NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens
_CUT = (("HTTP_PROXY", _NOWHERE), ("HTTPS_PROXY", _NOWHERE), ("ALL_PROXY", _NOWHERE),
        ("http_proxy", _NOWHERE), ("https_proxy", _NOWHERE), ("all_proxy", _NOWHERE),
        ("NO_PROXY", "127.0.0.1"), ("no_proxy", "127.0.0.1"))


@dataclass(frozen=True)
class UvPlatform:
    """How a target is described to uv's ``--python-platform``."""

    python_platform: str
    environment: tuple[tuple[str, str], ...] = ()  # e.g. MACOSX_DEPLOYMENT_TARGET
    note: str | None = None  # when the mapping is approximate


def uv_platform(platforms: Sequence[str]) -> UvPlatform:
    """Map a target's platform tags to uv's ``--python-platform`` (first tag that maps).

    ``manylinux_2_28_x86_64`` -> ``x86_64-manylinux_2_28``; a glibc uv does not
    list maps to the nearest lower one it does (approximate, noted);
    ``musllinux_1_2_aarch64`` -> ``aarch64-unknown-linux-musl``;
    ``macosx_11_0_arm64`` -> ``aarch64-apple-darwin`` with
    ``MACOSX_DEPLOYMENT_TARGET=11.0``; ``win_amd64`` -> ``x86_64-pc-windows-msvc``.
    Raises LockmirrorError when no tag maps.
    """
    for platform in platforms:
        legacy = re.fullmatch(r"manylinux(2014|2010|1)_(\w+)", platform)
        modern = re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", platform)
        if legacy or modern:
            if legacy:
                glibc, arch = {"2014": 17, "2010": 12, "1": 5}[legacy.group(1)], legacy.group(2)
            else:
                assert modern is not None
                if modern.group(1) != "2":
                    continue
                glibc, arch = int(modern.group(2)), modern.group(3)
            if arch not in _UV_LINUX_ARCHES:
                continue
            lower = [g for g in _UV_GLIBC if g <= glibc]
            chosen = max(lower) if lower else min(_UV_GLIBC)
            note = None
            if chosen != glibc:
                note = (f"{platform} resolved as manylinux_2_{chosen}, the nearest glibc "
                        "uv knows")
            return UvPlatform(f"{arch}-manylinux_2_{chosen}", note=note)
        match = re.fullmatch(r"musllinux_\d+_\d+_(\w+)", platform)
        if match and match.group(1) in _UV_LINUX_ARCHES:
            return UvPlatform(f"{match.group(1)}-unknown-linux-musl")
        match = re.fullmatch(r"linux_(\w+)", platform)
        if match and match.group(1) in _UV_LINUX_ARCHES:
            return UvPlatform(f"{match.group(1)}-unknown-linux-gnu")
        match = re.fullmatch(r"macosx_(\d+)_(\d+)_(\w+)", platform)
        if match and match.group(3) in _MAC_ARCH:
            return UvPlatform(f"{_MAC_ARCH[match.group(3)]}-apple-darwin",
                              environment=(("MACOSX_DEPLOYMENT_TARGET",
                                            f"{match.group(1)}.{match.group(2)}"),))
        if platform in _WINDOWS:
            return UvPlatform(_WINDOWS[platform])
    raise LockmirrorError(f"no uv --python-platform matches the platforms {', '.join(platforms)}",
                          hint="uv can check manylinux/musllinux x86_64 and aarch64, macOS "
                               "and Windows targets")


def host_mismatch(python: str, implementation: str, platforms: Sequence[str]) -> str | None:
    """Why this machine cannot stand in for a target of that Python (``"3.12"``),
    implementation (``"cp"``) and platform tags (None: it can)."""
    from packaging.tags import sys_tags

    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    wanted = ".".join(python.split(".")[:2])
    if implementation != "cp" or sys.implementation.name != "cpython":
        return f"needs {implementation}{python}; this is {sys.implementation.name}"
    host_platforms = [tag.platform for tag in sys_tags()]  # the most specific first
    if wanted != here or not any(p in host_platforms for p in platforms):
        return (f"needs Python {python} on {', '.join(platforms)}; "
                f"this is Python {here} on {host_platforms[0]}")
    return None


@dataclass(frozen=True)
class Check:
    """One installer run (or one that was not run, with the reason)."""

    set_name: str
    target: str
    step: str  # e.g. "uv pip compile (file://)", "pip 23.0.1 install (http)"
    ok: bool
    skipped: str | None = None
    requirement: str | None = None  # what could not be met, as the installer named it
    detail: str = ""  # the installer's own words (the lines that matter)
    seconds: float = 0.0
    installed: frozenset[str] = frozenset()  # "name==version" after a passing install

    @property
    def passed(self) -> bool:
        return self.ok and not self.skipped

    def describe(self) -> str:
        head = f"set '{self.set_name}', target '{self.target}': {self.step}"
        if self.skipped:
            return f"{head}: skipped ({self.skipped})"
        if self.ok:
            note = f"; {self.detail}" if self.detail else ""
            return f"{head}: ok ({self.seconds:.1f} s{note})"
        text = f"{head} failed"
        if self.requirement:
            text += f": cannot install {self.requirement}"
        if self.detail:
            text += f" ({self.detail})"
        return text


@dataclass(frozen=True)
class Where:
    """The set and target a run is for, and where its mirror is."""

    set_name: str
    target: str
    python: str
    implementation: str
    platforms: tuple[str, ...]
    url: str  # the simple index (file:// or http://)
    transport: str  # "file://" | "http" | "given"

    def environment(self, extra: Sequence[tuple[str, str]] = ()) -> dict[str, str]:
        """:func:`clean_environment`, with the network cut unless the URL was given."""
        return clean_environment((*extra, *(_CUT if self.transport != "given" else ())))

    def check(self, step: str, **fields: object) -> Check:
        return Check(self.set_name, self.target, step, **fields)  # type: ignore[arg-type]


@dataclass
class Runner:
    """What every run shares: the uv binary, a work directory, a time limit."""

    uv: str
    work: Path  # the run's own: uv cache and virtual environments
    timeout: float
    _numbers: Iterator[int] = field(default_factory=count)

    @property
    def uv_cache(self) -> Path:
        return self.work / "uv-cache"

    def uv_flags(self, where: Where) -> list[str]:
        return ["--no-config", "--cache-dir", str(self.uv_cache), "--default-index", where.url]

    @contextmanager
    def fresh_venv(self) -> Iterator[Path]:
        """A new, empty virtual environment of this interpreter; removed afterwards."""
        venv = self.work / f"venv-{next(self._numbers)}"
        shutil.rmtree(venv, ignore_errors=True)
        code, output, _ = run([sys.executable, "-m", "venv", "--without-pip", str(venv)],
                              clean_environment(), self.timeout)
        if code != 0:
            raise LockmirrorError(f"cannot create a virtual environment: {output.strip()}",
                                  where=str(venv))
        try:
            yield venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        finally:
            shutil.rmtree(venv, ignore_errors=True)


def clean_environment(extra: Sequence[tuple[str, str]] = ()) -> dict[str, str]:
    """The caller's environment without pip/uv settings or proxies (the mirror is all
    there is) and without what a build backend may not see (an sdist in the mirror is
    built by code from its index: :func:`~lockmirror.resolve.build_environ.build_environ`)."""
    from ..resolve.build_environ import build_environ

    env = {k: v for k, v in build_environ(os.environ).items()
           if not k.startswith(("PIP_", "UV_")) and k.lower() not in _PROXY_VARIABLES}
    env.update({
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "UV_NO_CONFIG": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "NO_COLOR": "1",
    })
    env.update(dict(extra))
    return env


def run(command: Sequence[str], env: dict[str, str], timeout: float,
        cwd: Path | None = None) -> tuple[int, str, float]:
    """(exit code, stdout + stderr, seconds); -1 when it could not run or timed out."""
    started = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout:.0f} s", time.perf_counter() - started
    except OSError as exc:
        return -1, f"cannot run {command[0]}: {exc.strerror}", time.perf_counter() - started
    return done.returncode, done.stdout + done.stderr, time.perf_counter() - started


# --------------------------------------------------------------------------
# The runs
# --------------------------------------------------------------------------


def uv_compile(runner: Runner, where: Where, requirements: Path, constraints: Path) -> Check:
    """``uv pip compile`` of the set for the target's Python and platform."""
    step = f"uv pip compile ({where.transport})"
    if where.implementation != "cp":
        return where.check(step, ok=True,
                           skipped=f"uv resolves for the running interpreter's implementation; "
                                   f"{where.implementation} targets are not checked")
    if not constraints.is_file():
        return where.check(step, ok=False,
                           detail=f"constraints/{constraints.name} is missing from the index")
    return _uv_as_target(runner, where, step,
                         ["pip", "compile", str(requirements), "-c", str(constraints),
                          "--no-header", "--quiet"])


def index_install(runner: Runner, where: Where, installer: Installer, copy: Path,
                  requirements: Path, constraints: Path) -> Check:
    """Install the set from the index with one installer, then check the environment."""
    step = f"{installer.name} install ({where.transport})"
    if installer.kind == "uv":
        arguments = ["-r", str(requirements), "-c", str(constraints)]
    else:
        arguments = [*pip_index_arguments(where.url), "-r", str(requirements),
                     "-c", str(constraints)]
    return _install(runner, where, installer, copy, step, arguments)


def lockfile_install(runner: Runner, where: Where, installer: Installer, copy: Path,
                     lockfile: str, label: str) -> Check:
    """Install the set from ``lockfile`` (a path or URL); build requirements from the index."""
    step = f"{installer.name} install -r {label} ({where.transport})"
    arguments = ["-r", lockfile]
    if installer.kind == "pip":
        arguments = [*pip_index_arguments(where.url), *arguments]
    return _install(runner, where, installer, copy, step, arguments)


def lockfile_dry_run(runner: Runner, where: Where, lockfile: str, label: str) -> Check:
    """``uv pip install --dry-run -r lockfile`` (a path) as the target (its platform and
    Python)."""
    step = f"uv install --dry-run -r {label} ({where.transport})"
    if where.implementation != "cp":
        return where.check(step, ok=True, skipped=f"uv cannot stand in for "
                                                  f"{where.implementation} targets")
    return _uv_as_target(runner, where, step,
                         ["pip", "install", "--dry-run", "-r", lockfile,
                          "--target", str(runner.work / "dry-run-target")])


def _uv_as_target(runner: Runner, where: Where, step: str, arguments: list[str]) -> Check:
    """Run ``uv <arguments>`` for the target's Python and platform (skipped: no uv platform)."""
    try:
        platform = uv_platform(where.platforms)
    except LockmirrorError as exc:
        return where.check(step, ok=True, skipped=exc.message)
    command = [runner.uv, *arguments, "--python-version", where.python,
               "--python-platform", platform.python_platform, "--python", sys.executable,
               *runner.uv_flags(where)]
    code, output, seconds = run(command, where.environment(platform.environment),
                                runner.timeout)
    if code == 0:
        return where.check(step, ok=True, seconds=seconds, detail=platform.note or "")
    requirement, detail = explain_uv(output)
    return where.check(step, ok=False, requirement=requirement, detail=detail, seconds=seconds)


def _install(runner: Runner, where: Where, installer: Installer, copy: Path, step: str,
             arguments: list[str]) -> Check:
    env = where.environment()
    with runner.fresh_venv() as python:
        if installer.kind == "uv":
            install = [str(copy), "pip", "install", "--python", str(python),
                       *runner.uv_flags(where), *arguments]
            verify = [str(copy), "pip", "check", "--python", str(python), "--no-config"]
            freeze = [str(copy), "pip", "freeze", "--python", str(python), "--no-config"]
        else:
            pip = pip_command(copy, python)
            seeded = _seed(runner, installer, copy, pip, env)
            if seeded is not None:
                return where.check(step, ok=False, detail=seeded)
            install = [*pip, "install", "--isolated", "--no-cache-dir",
                       "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
                       *arguments]
            verify = [*pip, "check", "--disable-pip-version-check"]
            freeze = [*pip, "freeze", "--all", "--disable-pip-version-check"]
        code, output, seconds = run(install, env, runner.timeout)
        if code != 0:
            explain = explain_uv if installer.kind == "uv" else explain_pip
            requirement, detail = explain(output)
            return where.check(step, ok=False, requirement=requirement, detail=detail,
                               seconds=seconds)
        code, output, more = run(verify, env, runner.timeout)
        if code != 0:
            requirement, detail = explain_pip_check(output)
            return where.check(step, ok=False, requirement=requirement,
                               detail=f"installed, but the check failed: {detail}",
                               seconds=seconds + more)
        installed: frozenset[str] = frozenset()
        if installer.reads_pylock:  # compared with the lockfile install (verify.py)
            _, output, _ = run(freeze, env, runner.timeout)
            installed = _pins(output)
    return where.check(step, ok=True, seconds=seconds + more, installed=installed)


def _pins(freeze_output: str) -> frozenset[str]:
    """Normalized ``name==version`` lines of ``pip freeze`` / ``uv pip freeze``."""
    pins = set()
    for line in freeze_output.splitlines():
        name, sep, version = line.strip().partition("==")
        if sep:
            pins.add(f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}")
    return frozenset(pins)


def closure_mismatch(lockfile: Check, index: Check) -> Check:
    """``lockfile`` failed unless it installed what the index install of the set did.

    The index install (requirements + constraints) installs exactly the set's
    runtime closure; a lockfile install that adds to it installs build-only or
    stale entries at run time, one that lacks some leaves the set incomplete.
    """
    if not (lockfile.passed and index.passed and lockfile.installed and index.installed):
        return lockfile
    extra = sorted(lockfile.installed - index.installed)
    missing = sorted(index.installed - lockfile.installed)
    if not extra and not missing:
        return lockfile
    parts = []
    if extra:
        parts.append(f"installs {', '.join(extra)} beyond the set's runtime closure")
    if missing:
        parts.append(f"lacks {', '.join(missing)}")
    return Check(lockfile.set_name, lockfile.target, lockfile.step, ok=False,
                 detail="; ".join(parts) + f", which is what {index.step} installed",
                 seconds=lockfile.seconds)


def _seed(runner: Runner, installer: Installer, copy: Path, pip: list[str],
          env: dict[str, str]) -> str | None:
    """Give the environment the setuptools its distribution's venv starts with; None: done."""
    wheel = seed_wheel(installer, copy)
    if wheel is None:
        return None
    code, output, _ = run([*pip, "install", "--isolated", "--no-index", "--no-deps",
                           "--disable-pip-version-check", "--quiet", str(wheel)],
                          env, runner.timeout)
    return None if code == 0 else f"cannot seed the environment with {wheel.name}: " + (
        output.strip().splitlines() or ["no output"])[-1]

