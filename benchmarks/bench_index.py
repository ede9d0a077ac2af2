"""Index stage benchmark: lockmirror against dumb-pypi, same machine, same run.

Generates a synthetic mirror (deterministic): a content-addressed store of
small dummy files with real sha256 (every wheel also has its PEP 658
``.metadata`` file) and three lockfiles (sets sharing some projects) with
--projects projects and --files files in all. Then times, each as a whole
process (interpreter start-up included):

* full build: empty output directory, no state (the previous run's tree is
  moved aside, and deleted after all timings, so no run pays for deleting
  the one before);
* no-op: the same inputs again;
* add one file: one more wheel for one project, in one lockfile.

lockmirror runs ``python -m lockmirror index`` (complete output:
PEP 503 HTML + PEP 691/700 JSON pages, PEP 658 metadata, files hard-linked
from the store, constraints, lockfiles, landing page, manifest). dumb-pypi
gets the same files as a JSON-lines package list with hashes, requires-python,
upload times and core-metadata hashes (``--no-per-release-json``, and
``--previous-package-list-json`` for the incremental runs); it writes HTML
pages only and links to files it does not place. Ratios are dumb-pypi time
divided by lockmirror time (above 1: lockmirror is faster).

Goals (medians, 2-core machine): a full build no slower than dumb-pypi's,
no-op < 0.15 s, add one < 0.3 s. The machine may be shared: read the CPU
times and the ratios along with the wall times.

    .venv/bin/python benchmarks/bench_index.py [--projects 2000] [--files 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

from lockmirror.formats.lockfile import LockedFile, LockedPackage, LockedTarget, Lockfile
from lockmirror.formats.store import Store

TARGETS = (
    LockedTarget("linux-x86_64-py311", "3.11", "cp", ("manylinux_2_28_x86_64",),
                 "python_version == '3.11' and sys_platform == 'linux' and "
                 "platform_machine == 'x86_64'"),
    LockedTarget("linux-aarch64-py312", "3.12", "cp", ("manylinux_2_28_aarch64",),
                 "python_version == '3.12' and sys_platform == 'linux' and "
                 "platform_machine == 'aarch64'"),
)
SETS = ("core", "misp", "shuffle")
SHARED = 100  # the first projects are in every set (common dependencies)
EPOCH = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
# seconds; None: no slower than dumb-pypi
GOALS: dict[str, float | None] = {"full build": None, "no-op": 0.15, "add one file": 0.3}


@dataclass
class Mirror:
    root: Path
    store: Store
    lockfiles: list[Path]
    packages: dict[str, list[LockedPackage]]  # set -> packages
    added_set: str
    added_package: LockedPackage  # the package that gets one more wheel


def _put(store: Store, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = store.path(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, 0o644)
    return digest


def _wheel(store: Store, name: str, version: str, tag: str, number: int) -> LockedFile:
    filename = f"{name.replace('-', '_')}-{version}-{tag}.whl"
    digest = _put(store, f"{filename}\n".encode() * (1 + number % 16))
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    return LockedFile(filename=filename, url=f"https://files.example.org/{filename}",
                      size=store.path(digest).stat().st_size, sha256=digest,
                      upload_time=EPOCH + timedelta(minutes=number),
                      metadata_sha256=_put(store, metadata))


def generate(root: Path, projects: int, files: int) -> Mirror:
    """The synthetic store and lockfiles; ``files`` spread evenly over ``projects``."""
    store = Store(root / "store")
    per_project = max(1, files // projects)
    extra = files - per_project * projects
    packages: dict[str, list[LockedPackage]] = {s: [] for s in SETS}
    number = 0
    for i in range(projects):
        name = canonicalize_name(f"bench-{i:04d}")
        version = f"1.{i % 7}.{i}"
        count = per_project + (1 if i < extra else 0)
        wheels = []
        sdist = None
        for j in range(count):
            if j == count - 1 and count > 1:
                filename = f"{name.replace('-', '_')}-{version}.tar.gz"
                digest = _put(store, f"{filename}\n".encode() * (1 + number % 16))
                sdist = LockedFile(filename=filename, url=f"https://files.example.org/{filename}",
                                   size=store.path(digest).stat().st_size, sha256=digest,
                                   upload_time=EPOCH + timedelta(minutes=number))
            else:
                tag = f"cp3{10 + j}-cp3{10 + j}-manylinux_2_17_x86_64"
                wheels.append(_wheel(store, name, version, tag, number))
            number += 1
        package = LockedPackage(
            name=name, version=Version(version), targets=tuple(t.name for t in TARGETS),
            index="https://pypi.org/simple/", wheels=tuple(wheels), sdist=sdist,
            requires_python=">=3.8", why={t.name: ("set",) for t in TARGETS},
            yanked="bad build" if i % 97 == 5 else None)
        owners = SETS if i < SHARED else (SETS[i % len(SETS)],)
        for set_name in owners:
            packages[set_name].append(package)
    lockfiles = []
    for set_name in SETS:
        path = root / "lockfiles" / f"pylock.{set_name}.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        _lockfile(set_name, packages[set_name]).write(path)
        lockfiles.append(path)
    target = packages[SETS[1]][len(packages[SETS[1]]) // 2]
    return Mirror(root, store, lockfiles, packages, SETS[1], target)


def _lockfile(set_name: str, packages: Sequence[LockedPackage]) -> Lockfile:
    return Lockfile(set_name=set_name, requirements=tuple(f"{p.name}=={p.version}"
                                                          for p in packages[:50]),
                    targets=TARGETS, packages=tuple(packages), input_hash="0" * 64)


def add_one(mirror: Mirror) -> None:
    """One more wheel for one project of one set (the lockfile rewritten)."""
    package = mirror.added_package
    new = _wheel(mirror.store, package.name, str(package.version),
                 "cp314-cp314-manylinux_2_17_x86_64", 999_999)
    changed = replace(package, wheels=(*package.wheels, new))
    packages = [changed if p is package else p for p in mirror.packages[mirror.added_set]]
    _lockfile(mirror.added_set, packages).write(
        mirror.root / "lockfiles" / f"pylock.{mirror.added_set}.toml")


def remove_added(mirror: Mirror) -> None:
    _lockfile(mirror.added_set, mirror.packages[mirror.added_set]).write(
        mirror.root / "lockfiles" / f"pylock.{mirror.added_set}.toml")


def dumb_pypi_list(mirror: Mirror, path: Path, *, with_added: bool) -> None:
    """The same files as dumb-pypi's JSON-lines package list."""
    seen: dict[str, LockedPackage] = {}
    for set_name in SETS:
        for package in mirror.packages[set_name]:
            seen[f"{package.name} {package.version}"] = package
    lines = []
    for key in sorted(seen):
        package = seen[key]
        files = list(package.files)
        if with_added and package is mirror.added_package:
            files.append(_wheel(mirror.store, package.name, str(package.version),
                                "cp314-cp314-manylinux_2_17_x86_64", 999_999))
        for file in files:
            entry: dict[str, object] = {
                "filename": file.filename, "hash": f"sha256={file.sha256}",
                "requires_python": package.requires_python,
                "upload_timestamp": int(file.upload_time.timestamp()) if file.upload_time else None,
            }
            if file.metadata_sha256:
                entry["core_metadata"] = f"sha256={file.metadata_sha256}"
            if package.yanked is not None:
                entry["yanked_reason"] = package.yanked or "yanked"
            lines.append(json.dumps({k: v for k, v in entry.items() if v is not None}))
    path.write_text("\n".join(lines) + "\n")


def _module_dirs() -> list[str]:
    """Where lockmirror, dumb-pypi and the libraries they import live."""
    import dumb_pypi
    import packaging

    import lockmirror
    return sorted({str(Path(m.__file__).parent) for m in (lockmirror, dumb_pypi, packaging)})


def timed(command: Sequence[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one whole process.

    Dirty pages left by what ran before (the generator, the other tool's run)
    are written out first, untimed: lockmirror ends a first build with one
    os.sync(), which would otherwise pay for them."""
    os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stdout}{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=2000)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir", type=Path, help="keep the generated mirror here")
    args = parser.parse_args(argv)

    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench-index-"))
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    mirror = generate(root, args.projects, args.files)
    print(f"generated {args.projects} projects, {args.files} files in {len(SETS)} lockfiles "
          f"in {time.perf_counter() - start:.1f} s under {root}")

    # Byte-compiled modules, as an installed tool has them (pip compiles at install
    # time). PYTHONDONTWRITEBYTECODE with any value, even "0", stops Python from
    # writing them: drop it, and compile both tools' modules once before timing.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", *_module_dirs()], env=env,
                   check=False, capture_output=True)
    out = root / "dist-index"
    state = out.with_name(f".{out.name}.lockmirror")
    lockmirror = [sys.executable, "-m", "lockmirror", "index", *map(str, mirror.lockfiles),
                  "--store", str(mirror.store.root), "--out", str(out), "--quiet"]
    dumb_bin = str(Path(sys.executable).with_name("dumb-pypi"))
    dumb_out = root / "dumb-pypi"
    lists = {"base": root / "dumb-base.jsonl", "added": root / "dumb-added.jsonl"}
    dumb_pypi_list(mirror, lists["base"], with_added=False)
    dumb_pypi_list(mirror, lists["added"], with_added=True)

    def dumb(new: str, previous: str | None) -> list[str]:
        command = [dumb_bin, "--package-list-json", str(lists[new]), "--output-dir",
                   str(dumb_out), "--packages-url", "../../files/", "--no-generate-timestamp",
                   "--no-per-release-json"]
        if previous:
            command += ["--previous-package-list-json", str(lists[previous])]
        return command

    # The previous run's tree is moved aside before a full build and deleted
    # after all timings: deleting 20,000 entries right before a timed run
    # would charge that delete to whichever tool runs next.
    trash = root / "trash"
    trash.mkdir(exist_ok=True)

    def set_aside(*paths: Path) -> None:
        for path in paths:
            if path.exists():
                path.rename(trash / f"{path.name}-{len(list(trash.iterdir()))}")

    results: dict[str, dict[str, list[tuple[float, float]]]] = {
        tool: {step: [] for step in GOALS} for tool in ("lockmirror", "dumb-pypi")}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeat):
        # lockmirror
        set_aside(out, state)
        remove_added(mirror)
        results["lockmirror"]["full build"].append(timed(lockmirror, env))
        results["lockmirror"]["no-op"].append(timed(lockmirror, env))
        add_one(mirror)
        results["lockmirror"]["add one file"].append(timed(lockmirror, env))
        # dumb-pypi
        set_aside(dumb_out)
        results["dumb-pypi"]["full build"].append(timed(dumb("base", None), env))
        results["dumb-pypi"]["no-op"].append(timed(dumb("base", "base"), env))
        results["dumb-pypi"]["add one file"].append(timed(dumb("added", "base"), env))
    remove_added(mirror)
    shutil.rmtree(trash, ignore_errors=True)

    print(f"\nwall time (median of {args.repeat}); CPU time (user+system) in brackets; "
          f"load average before/after: {load_before:.1f}/{os.getloadavg()[0]:.1f}")
    print(f"{'':14}{'lockmirror':>20}{'dumb-pypi':>20}{'ratio':>8}{'goal':>14}")
    failed = False
    for step, goal in GOALS.items():
        ours = statistics.median(w for w, _ in results["lockmirror"][step])
        ours_cpu = statistics.median(c for _, c in results["lockmirror"][step])
        theirs = statistics.median(w for w, _ in results["dumb-pypi"][step])
        theirs_cpu = statistics.median(c for _, c in results["dumb-pypi"][step])
        ok = ours <= theirs if goal is None else ours < goal
        failed |= not ok
        wanted = "<= dumb-pypi" if goal is None else f"< {goal:g} s"
        print(f"{step:14}{ours:>9.3f} s [{ours_cpu:.3f}]{theirs:>9.3f} s [{theirs_cpu:.3f}]"
              f"{theirs / ours:>7.2f}x{wanted:>14} {'ok' if ok else 'MISSED'}")
    for tool in ("lockmirror", "dumb-pypi"):
        for step in GOALS:
            print(f"{tool} {step}: "
                  + " ".join(f"{w:.3f}" for w, _ in results[tool][step]) + " s")
    print("\nratio: dumb-pypi wall time / lockmirror wall time. lockmirror also hard-links "
          f"{args.files} files and their .metadata files from the store and writes PEP 691 "
          "JSON pages, a manifest and a landing page, which dumb-pypi does not.")
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
