"""Lock a platform of 10, 40, 120 and 300 popular projects: lockmirror vs `uv pip compile`.

    .venv/bin/python benchmarks/bench_lock.py [--sizes 10,40,120,300] [--rounds 3]
    .venv/bin/python benchmarks/bench_lock.py --sizes 40 --profile /tmp/lock40.prof

Needs the network: PyPI (or ``LOCKMIRROR_PYPI_URL``). The projects are the
first N lines of ``benchmarks/lock_projects.txt`` (popular top-level
projects in order of downloads). One set, one target: CPython 3.11 on
manylinux_2_28_x86_64. For each size, in the same run:

- lockmirror: ``python -m lockmirror lock --set platform`` (not lockmirror's
  own tool set) in a scratch directory holding only mirror.yaml; cold = a
  fresh cache directory, warm = the cache the cold run left, lockfiles
  removed (so everything is resolved again);
- uv: ``uv pip compile`` of the same requirements for the same platform,
  cold = a fresh ``--cache-dir``, warm = that cache again.

Each run is one process, timed by wall clock with its peak RSS
(``wait4``); warm figures are medians of ``--rounds``. Prints the table,
the ratios against the goals (warm 300: wall <= 2x uv and RSS <= 1.5x;
warm 10: wall <= 2x), and every package lockmirror locked older than uv
(lockmirror's choice must not be the worse one). ``--profile FILE`` runs
one more warm lockmirror lock of the largest size under cProfile, every
thread included, and writes the stats to FILE.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECTS = Path(__file__).resolve().parent / "lock_projects.txt"
INDEX = os.environ.get("LOCKMIRROR_PYPI_URL", "https://pypi.org/simple/")
PYTHON, PLATFORM, UV_PLATFORM = "3.11", "manylinux_2_28_x86_64", "x86_64-manylinux_2_28"
GOALS = {"wall-300": 2.0, "rss-300": 1.5, "wall-10": 2.0}
# Runs every thread of `lockmirror lock` under cProfile (argv: stats file, mirror.yaml).
PROFILER = """
import cProfile, pstats, sys, threading
profiles, guard = [], threading.Lock()
def start(*_):
    profile = cProfile.Profile()
    with guard:
        profiles.append(profile)
    sys.setprofile(None)
    profile.enable()
threading.setprofile(start)
main = cProfile.Profile()
profiles.append(main)
main.enable()
import runpy
stats_file = sys.argv[1]
sys.argv = ["lockmirror", "lock", "--config", sys.argv[2], "--set", "platform"]
try:
    runpy.run_module("lockmirror", run_name="__main__")  # as `python -m lockmirror lock ...`
except SystemExit:
    pass
for profile in profiles:
    profile.disable()
    profile.create_stats()
pstats.Stats(*profiles).dump_stats(stats_file)
"""


@dataclass(frozen=True)
class Run:
    seconds: float
    rss_mib: float


def timed(cmd: list[str], cwd: Path | None = None) -> Run:
    """Run ``cmd`` to completion; its wall time and peak RSS. Exits on failure."""
    started = time.perf_counter()
    process = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    errors = process.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed:\n{errors[-2000:]}")
    return Run(seconds, usage.ru_maxrss / 1024)


def projects(count: int) -> list[str]:
    names = [line.split("#")[0].strip() for line in PROJECTS.read_text().splitlines()]
    names = [n for n in names if n]
    if count > len(names):
        raise SystemExit(f"{PROJECTS} lists {len(names)} projects, not {count}")
    return names[:count]


def write_config(directory: Path, names: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["version: 1", "name: bench", "sources:", "  - name: pypi", f"    url: {INDEX}",
             "targets:", "  cp311:", f'    python: "{PYTHON}"', f"    platforms: [{PLATFORM}]",
             "sets:", "  platform:", "    requirements:"]
    lines += [f"      - {name}" for name in names]
    lines += ["paths:", "  cache: cache"]
    (directory / "mirror.yaml").write_text("\n".join(lines) + "\n")
    (directory / "requirements.in").write_text("\n".join(names) + "\n")
    return directory / "mirror.yaml"


def lockmirror_run(directory: Path) -> Run:
    shutil.rmtree(directory / "lockfiles", ignore_errors=True)
    # --set: the platform alone (a plain `lock` also locks lockmirror's own tool set)
    return timed([sys.executable, "-m", "lockmirror", "lock", "--set", "platform"],
                 cwd=directory)


def uv_run(uv: str, directory: Path) -> Run:
    return timed([uv, "pip", "compile", "requirements.in", "--no-config", "--quiet",
                  "--python-version", PYTHON, "--python-platform", UV_PLATFORM,
                  "--index-url", INDEX, "--cache-dir", "uv-cache", "-o", "uv.txt"],
                 cwd=directory)


def locked_versions(directory: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(lockmirror's, uv's) name -> version."""
    ours = dict(re.findall(r'^name = "([^"]+)"\nversion = "([^"]+)"',
                           (directory / "lockfiles" / "pylock.platform.toml").read_text(),
                           re.MULTILINE))
    theirs = dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+)",
                             (directory / "uv.txt").read_text(), re.MULTILINE))
    return ours, theirs


def older_than_uv(ours: dict[str, str], theirs: dict[str, str]) -> list[str]:
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    uv: dict[str, str] = {canonicalize_name(k): v for k, v in theirs.items()}
    return [f"{name} {version} < uv's {uv[name]}" for name, version in sorted(ours.items())
            if name in uv and Version(version) < Version(uv[name])]


@dataclass
class Measured:
    """One list size: cold and warm runs of both tools, and how the results compare."""

    runs: dict[str, Run]        # "lm-cold", "uv-cold", "lm-warm", "uv-warm"
    resolved: tuple[int, int]   # packages locked by lockmirror, by uv
    older: list[str]            # packages lockmirror locked older than uv


def measure(size: int, scratch: Path, uv: str, rounds: int) -> Measured:
    directory = scratch / f"p{size}"
    write_config(directory, projects(size))
    runs = {"lm-cold": lockmirror_run(directory), "uv-cold": uv_run(uv, directory)}
    lm_warm, uv_warm = [], []
    for _ in range(rounds):
        lm_warm.append(lockmirror_run(directory))
        uv_warm.append(uv_run(uv, directory))
    runs["lm-warm"], runs["uv-warm"] = median(lm_warm), median(uv_warm)
    ours, theirs = locked_versions(directory)
    return Measured(runs, (len(ours), len(theirs)), older_than_uv(ours, theirs))


def median(runs: list[Run]) -> Run:
    return Run(statistics.median(r.seconds for r in runs),
               statistics.median(r.rss_mib for r in runs))


def report(results: dict[int, Measured]) -> None:
    print(f"\n{'projects (resolved lm/uv)':<27}{'phase':<6}{'lockmirror s/MiB':>18}"
          f"{'uv s/MiB':>16}{'wall':>8}{'RSS':>7}")
    for size, result in results.items():
        ours, theirs = result.resolved
        for phase in ("cold", "warm"):
            lm, uv = result.runs[f"lm-{phase}"], result.runs[f"uv-{phase}"]
            print(f"{f'{size} ({ours}/{theirs})':<27}{phase:<6}"
                  f"{f'{lm.seconds:.2f} / {lm.rss_mib:.0f}':>18}"
                  f"{f'{uv.seconds:.2f} / {uv.rss_mib:.0f}':>16}"
                  f"{lm.seconds / uv.seconds:>7.2f}x{lm.rss_mib / uv.rss_mib:>6.2f}x")
    for size, result in results.items():
        print(f"{size}: " + ("no package older than uv's" if not result.older
                             else "older than uv's: " + "; ".join(result.older)))
    for key, limit in GOALS.items():
        what, count = key.split("-")
        if int(count) not in results:
            continue
        runs = results[int(count)].runs
        lm, uv = runs["lm-warm"], runs["uv-warm"]
        ratio = lm.seconds / uv.seconds if what == "wall" else lm.rss_mib / uv.rss_mib
        verdict = "meets" if ratio <= limit else "MISSES"
        print(f"warm {count}, {what}: {ratio:.2f}x uv's ({verdict} goal <= {limit}x)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,40,120,300", help="comma-separated list sizes")
    parser.add_argument("--rounds", type=int, default=3, help="warm rounds (median)")
    parser.add_argument("--profile", type=Path, help="cProfile a warm lock of the largest size")
    parser.add_argument("--keep", type=Path, help="use this scratch directory and keep it")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    from uv import find_uv_bin

    uv = find_uv_bin()
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="bench-lock-"))
    try:
        results = {}
        for size in sizes:
            print(f"{size} projects ...", flush=True)
            results[size] = measure(size, scratch, uv, args.rounds)
        report(results)
        if args.profile:
            directory = scratch / f"p{max(sizes)}"
            shutil.rmtree(directory / "lockfiles", ignore_errors=True)
            timed([sys.executable, "-c", PROFILER, str(args.profile.resolve()),
                   str(directory / "mirror.yaml")], cwd=directory)
            print(f"profile of a warm lock of {max(sizes)} projects: {args.profile}")
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
