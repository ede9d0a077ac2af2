"""Closure check: every set installs from ``dist-index/`` alone, with real installers.

Entry: :func:`verify_closure`. Everything it needs comes from the index tree:
the sets, their requirements and targets from ``lockfiles/pylock.<set>.toml``,
the pins from ``constraints/<set>-<target>.txt``, and the packages from
``simple/`` (as a ``file://`` URL, or over HTTP from a ``lockmirror serve``
instance it starts, or any URL given).

For every set and target:

1. ``uv pip compile`` of the set's requirements with the target's pins as
   constraints, for the target's ``--python-version`` and ``--python-platform``,
   with the mirror as the only index (``--no-config``, a private cache, no
   Python downloads, no ``UV_*``/``PIP_*`` variables from the caller);
2. for the target this machine can stand in for (CPython of this
   interpreter's minor version, platform tags this host accepts): a real
   ``pip install`` of the set into a fresh virtual environment from the
   mirror alone (``--isolated --no-cache-dir --index-url``), then ``pip check``.

A failure names the set, the target, the step and the requirement the
installer could not meet (read from its output). uv comes from the ``uv``
package (``uv.find_uv_bin()``), pip from this interpreter.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import LockmirrorError, ResolutionError

Progress = Callable[[str], None]

# glibc minors uv accepts as x86_64-manylinux_2_X / aarch64-manylinux_2_X
# (`uv pip compile --help`, uv 0.13); 17 is also spelled manylinux2014.
_UV_GLIBC = (17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)
_UV_LINUX_ARCHES = ("x86_64", "aarch64")
_WINDOWS = {"win_amd64": "x86_64-pc-windows-msvc", "win32": "i686-pc-windows-msvc",
            "win_arm64": "aarch64-pc-windows-msvc"}
_MAC_ARCH = {"arm64": "aarch64", "x86_64": "x86_64", "universal2": "aarch64",
             "universal": "x86_64", "intel": "x86_64"}
DEFAULT_TIMEOUT = 900.0


@dataclass(frozen=True)
class UvPlatform:
    """How a target is described to ``uv pip compile``."""

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


@dataclass(frozen=True)
class Check:
    """One installer run (or one that was not run, with the reason)."""

    set_name: str
    target: str
    step: str  # "uv pip compile" | "pip install" | "pip check"
    ok: bool
    skipped: str | None = None
    requirement: str | None = None  # what could not be met, as the installer named it
    detail: str = ""  # the installer's own words (the lines that matter)
    seconds: float = 0.0

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
class VerifyReport:
    index_dir: Path
    index_url: str
    checks: tuple[Check, ...]

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok and not c.skipped)

    @property
    def ok(self) -> bool:
        return not self.failures

    def raise_for_failures(self) -> None:
        """Raise ResolutionError naming every failed set/target/requirement."""
        if self.failures:
            lines = [f.describe() for f in self.failures]
            raise ResolutionError(
                f"{len(lines)} closure check(s) failed for {self.index_dir}:\n  "
                + "\n  ".join(lines),
                hint="the index lacks what these requirements need; re-run `doit fetch` "
                     "and `doit index`, or fix the lockfile")


@dataclass(frozen=True)
class _SetTarget:
    set_name: str
    requirements: tuple[str, ...]
    target: str
    python: str
    implementation: str
    platforms: tuple[str, ...]


def verify_closure(
    index_dir: Path,
    *,
    sets: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    index_url: str | None = None,
    serve: bool = False,
    install: bool = True,
    work_dir: Path | None = None,
    uv_bin: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: Progress | None = None,
) -> VerifyReport:
    """Prove each set (optionally only ``sets``/``targets``) installs from the index alone.

    ``index_url`` defaults to the ``file://`` URL of ``index_dir/simple/``;
    ``serve=True`` serves ``index_dir`` with :class:`~lockmirror.serve.MirrorServer`
    on a free 127.0.0.1 port for the duration instead. ``install=False`` runs
    only the uv resolutions. ``work_dir`` (default: a temporary directory,
    removed afterwards) holds the uv cache and the virtual environments; both
    start empty on every run, so nothing cached can hide a missing file.

    Returns a report (``report.raise_for_failures()`` turns failures into a
    ResolutionError). Raises LockmirrorError when the index has no lockfiles,
    a requested set or target does not exist, or uv cannot be found. Costs one
    uv resolution per set and target, and a venv plus a pip install for the
    matching target: seconds each on a small mirror, dominated by sdist builds.
    """
    index_dir = Path(index_dir)
    say = progress or (lambda _message: None)
    work = _pairs(index_dir, sets, targets)
    uv = uv_bin or _find_uv()
    temp_root = None
    if work_dir is None:
        temp_root = Path(tempfile.mkdtemp(prefix="lockmirror-verify-"))
        work_dir = temp_root
    work_dir.mkdir(parents=True, exist_ok=True)
    # A cache left by an earlier run could stand in for a file the index has lost.
    shutil.rmtree(work_dir / "uv-cache", ignore_errors=True)
    checks: list[Check] = []
    used_url = ""
    try:
        with _index_url(index_dir, index_url, serve) as url:
            used_url = url
            for number, pair in enumerate(work):
                requirements = work_dir / f"requirements-{pair.set_name}.txt"
                requirements.write_text("".join(r + "\n" for r in pair.requirements))
                constraints = index_dir / "constraints" / f"{pair.set_name}-{pair.target}.txt"
                say(f"set '{pair.set_name}', target '{pair.target}': uv pip compile")
                checks.append(_uv_compile(uv, url, pair, requirements, constraints,
                                          work_dir / "uv-cache", timeout))
                reason = _host_mismatch(pair)
                if not install:
                    reason = "not requested"
                if reason:
                    checks.append(Check(pair.set_name, pair.target, "pip install", ok=True,
                                        skipped=reason))
                    continue
                say(f"set '{pair.set_name}', target '{pair.target}': pip install")
                checks.extend(_pip_install(url, pair, requirements, constraints,
                                           work_dir / f"venv-{number}", timeout))
    finally:
        if temp_root is not None:
            shutil.rmtree(temp_root, ignore_errors=True)
    return VerifyReport(index_dir=index_dir, index_url=used_url, checks=tuple(checks))


# --------------------------------------------------------------------------
# What to check
# --------------------------------------------------------------------------


def _pairs(index_dir: Path, sets: Sequence[str] | None,
           targets: Sequence[str] | None) -> list[_SetTarget]:
    from .lockfile import Lockfile

    paths = sorted((index_dir / "lockfiles").glob("pylock.*.toml"))
    if not paths:
        raise LockmirrorError("holds no lockfiles/pylock.*.toml", where=str(index_dir),
                              hint="build the index with `doit index`")
    found = []
    set_names = set()
    target_names = set()
    for path in paths:
        lock = Lockfile.read(path)
        set_names.add(lock.set_name)
        if sets and lock.set_name not in sets:
            continue
        for target in lock.targets:
            target_names.add(target.name)
            if targets and target.name not in targets:
                continue
            found.append(_SetTarget(lock.set_name, lock.requirements, target.name,
                                    target.python, target.implementation, target.platforms))
    for name in sets or ():
        if name not in set_names:
            raise LockmirrorError(f"no set '{name}' in the index (sets: "
                                  f"{', '.join(sorted(set_names))})", where=str(index_dir))
    for name in targets or ():
        if name not in target_names:
            raise LockmirrorError(f"no target '{name}' in the index (targets: "
                                  f"{', '.join(sorted(target_names))})", where=str(index_dir))
    return sorted(found, key=lambda p: (p.set_name, p.target))


def _find_uv() -> str:
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


@contextmanager
def _index_url(index_dir: Path, index_url: str | None, serve: bool) -> Iterator[str]:
    if index_url:
        yield index_url if index_url.endswith("/") else index_url + "/"
        return
    if not (index_dir / "simple" / "index.html").is_file():
        raise LockmirrorError("is not a built index (no simple/index.html)",
                              where=str(index_dir), hint="build it with `doit index`")
    if not serve:
        yield (index_dir.absolute() / "simple").as_uri() + "/"
        return
    from .serve import MirrorServer

    with MirrorServer(index_dir, "127.0.0.1", 0) as server:
        yield server.simple_url


def _host_mismatch(pair: _SetTarget) -> str | None:
    """Why this machine cannot stand in for the target (None: it can)."""
    from packaging.tags import sys_tags

    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    wanted = ".".join(pair.python.split(".")[:2])
    if pair.implementation != "cp" or sys.implementation.name != "cpython":
        return f"needs {pair.implementation}{pair.python}; this is {sys.implementation.name}"
    if wanted != here:
        return f"needs Python {pair.python}; this is {here}"
    host_platforms = {tag.platform for tag in sys_tags()}
    if not any(p in host_platforms for p in pair.platforms):
        return f"needs {', '.join(pair.platforms)}; this host is not one"
    return None


def _clean_environment(extra: Sequence[tuple[str, str]] = ()) -> dict[str, str]:
    """The caller's environment without any pip or uv settings that could add an index."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "UV_")) and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
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


def _run(command: Sequence[str], env: dict[str, str], timeout: float,
         cwd: Path | None = None) -> tuple[int, str, float]:
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
# The installers
# --------------------------------------------------------------------------


def _uv_compile(uv: str, url: str, pair: _SetTarget, requirements: Path, constraints: Path,
                cache: Path, timeout: float) -> Check:
    step = "uv pip compile"
    if pair.implementation != "cp":
        return Check(pair.set_name, pair.target, step, ok=True,
                     skipped=f"uv resolves for the running interpreter's implementation; "
                             f"{pair.implementation} targets are not checked")
    if not constraints.is_file():
        return Check(pair.set_name, pair.target, step, ok=False,
                     detail=f"constraints/{constraints.name} is missing from the index")
    try:
        platform = uv_platform(pair.platforms)
    except LockmirrorError as exc:
        return Check(pair.set_name, pair.target, step, ok=True, skipped=exc.message)
    command = [uv, "pip", "compile", str(requirements), "-c", str(constraints),
               "--python-version", pair.python, "--python-platform", platform.python_platform,
               "--default-index", url, "--no-config", "--cache-dir", str(cache),
               "--python", sys.executable, "--no-header", "--quiet"]
    code, output, seconds = _run(command, _clean_environment(platform.environment), timeout)
    if code == 0:
        return Check(pair.set_name, pair.target, step, ok=True, seconds=seconds,
                     detail=platform.note or "")
    requirement, detail = explain_uv(output)
    return Check(pair.set_name, pair.target, step, ok=False, requirement=requirement,
                 detail=detail, seconds=seconds)


def _pip_install(url: str, pair: _SetTarget, requirements: Path, constraints: Path,
                 venv: Path, timeout: float) -> list[Check]:
    env = _clean_environment()
    shutil.rmtree(venv, ignore_errors=True)
    code, output, seconds = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)],
                                 env, timeout)
    if code != 0:
        raise LockmirrorError(f"cannot create a virtual environment: {output.strip()}",
                              where=str(venv))
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    command = [*pip, "install", "--isolated", "--no-cache-dir", "--index-url", url,
               "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
               "-r", str(requirements), "-c", str(constraints)]
    code, output, seconds = _run(command, env, timeout)
    if code != 0:
        requirement, detail = explain_pip(output)
        return [Check(pair.set_name, pair.target, "pip install", ok=False,
                      requirement=requirement, detail=detail, seconds=seconds)]
    checks = [Check(pair.set_name, pair.target, "pip install", ok=True, seconds=seconds)]
    code, output, seconds = _run([*pip, "check", "--disable-pip-version-check"], env, timeout)
    if code != 0:
        requirement, detail = explain_pip_check(output)
        checks.append(Check(pair.set_name, pair.target, "pip check", ok=False,
                            requirement=requirement, detail=detail, seconds=seconds))
    else:
        checks.append(Check(pair.set_name, pair.target, "pip check", ok=True, seconds=seconds))
    return checks


# --------------------------------------------------------------------------
# Reading installer output
# --------------------------------------------------------------------------


def _release_of_file(location: str) -> str:
    """"name==version" from a distribution file's URL or path, else the file name."""
    from packaging.utils import (
        InvalidSdistFilename,
        InvalidWheelFilename,
        parse_sdist_filename,
        parse_wheel_filename,
    )

    filename = location.split("#")[0].rstrip("/").rsplit("/", 1)[-1]
    filename = filename.removesuffix(".metadata")
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename):
        return filename
    return f"{name}=={version}"


def _first_line(output: str, pattern: str) -> str | None:
    for line in output.splitlines():
        if re.search(pattern, line):
            return line.strip()
    return None


def explain_uv(output: str) -> tuple[str | None, str]:
    """(requirement, the line that says why) from uv's error output."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", output)
    missing_file = re.search(r"(?:failed to open file|Failed to (?:fetch|download|read))"
                             r"[^`]*`([^`]+)`", text, re.IGNORECASE)
    if missing_file:
        location = missing_file.group(1)
        line = _first_line(text, re.escape(location)) or missing_file.group(0)
        if "/" in location or location.endswith((".whl", ".tar.gz", ".zip", ".metadata")):
            return _release_of_file(location), line
        return location, line
    patterns = (
        r"Because (?:there is no version of |there are no versions of )([^\s,]+)",
        r"Because ([^\s,]+) was not found in the package registry",
        r"Because ([^\s,]+) (?:was not found|has no (?:usable )?wheels|is not available)",
        r"and you require ([^\s,]+), we can conclude",
        r"you require ([^\s,]+)",
        r"No solution found when resolving dependencies for split \(([^)]*)\)",
    )
    for pattern in patterns:
        match = re.search(pattern, text)
        if match:
            line = _first_line(text, re.escape(match.group(0))) or match.group(0)
            return match.group(1), _trim(line)
    line = _first_line(text, r"^\s*(error|×|╰─▶|cause)") or _last_line(text)
    return None, _trim(line)


def explain_pip(output: str) -> tuple[str | None, str]:
    """(requirement, the line that says why) from ``pip install`` output."""
    missing = re.search(r"HTTP error \d+ while getting (\S+)", output)
    if missing:
        return _release_of_file(missing.group(1)), _trim(missing.group(0))
    missing = re.search(r"No such file or directory: '([^']+)'", output)
    if missing:
        return _release_of_file(missing.group(1)), _trim(missing.group(0))
    match = re.search(r"No matching distribution found for (.+)", output)
    if match:
        line = _first_line(output, r"Could not find a version that satisfies") or match.group(0)
        return match.group(1).strip(), _trim(line)
    unavailable = re.search(r"no matching distributions available for your environment:\s*\n"
                            r"((?:[ \t]+\S.*\n?)+)", output)
    cause = re.search(r"The conflict is caused by:\s*\n((?:[ \t]+\S.*\n?)+)", output)
    if unavailable:
        names = ", ".join(line.strip() for line in unavailable.group(1).splitlines())
        detail = "no distribution in the index"
        if cause:
            detail += "; " + "; ".join(line.strip() for line in cause.group(1).splitlines())
        return names, _trim(detail)
    if cause:
        return None, _trim("; ".join(line.strip() for line in cause.group(1).splitlines()))
    line = _first_line(output, r"^ERROR:") or _last_line(output)
    return None, _trim(line)


def explain_pip_check(output: str) -> tuple[str | None, str]:
    """(requirement, line) from ``pip check``: a missing or wrong dependency."""
    match = re.search(r"^(\S+ \S+) requires (\S+?),? which is not installed", output, re.MULTILINE)
    if match:
        return match.group(2), _trim(match.group(0))
    match = re.search(r"^(\S+ \S+) has requirement (\S+), but you have (.+)$", output, re.MULTILINE)
    if match:
        return match.group(2), _trim(match.group(0))
    return None, _trim(_last_line(output))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _trim(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
