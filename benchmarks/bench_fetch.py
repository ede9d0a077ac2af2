"""Fetch stage benchmark: lockmirror against raw parallel curl and pip, same run.

Generates a local tree of wheels (deterministic, mixed sizes: many small, some
medium, a few large; about --megabytes in all, incompressible bytes), a PEP 503
simple index over them, and three lockfiles (the files split between the sets).
Serves the tree from 127.0.0.1 with Python's ThreadingHTTPServer (HTTP/1.1
keep-alive, ``sendfile``) in a subprocess, then times, each into an empty
directory (cold store, no cache), each as a whole process:

* lockmirror: ``python -m lockmirror fetch --jobs 8`` (sha256 + size of every
  file verified, renamed into the store; with ``--fsync``, fsync'ed first);
* raw parallel download: ``xargs -P 8 -L 1 curl -s -f -o DEST URL`` (no
  verification at all): the ceiling;
* pip: one ``pip download --no-deps --no-cache-dir -r requirements.txt`` with
  every file as a ``name==version`` requirement against the simple index:
  what a user would otherwise run.

Goals: lockmirror at least 0.7x the raw parallel throughput, and at least
3x faster than pip. The generated data (about 1 GB) is deleted at the end.

    .venv/bin/python benchmarks/bench_fetch.py [--files 300] [--megabytes 1024] [--repeat 3]
                                               [--fsync]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

from lockmirror.formats.lockfile import LockedFile, LockedPackage, LockedTarget, Lockfile
from lockmirror.fsutil import sha256_file

JOBS = 8
SETS = ("core", "misp", "shuffle")
TARGET = LockedTarget("linux-x86_64-py311", "3.11", "cp", ("manylinux_2_28_x86_64",),
                      "python_version == '3.11' and sys_platform == 'linux'")
UPLOADED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
GOAL_VS_RAW = 0.7   # lockmirror throughput / raw parallel throughput, at least
GOAL_VS_PIP = 3.0   # pip time / lockmirror time, at least

# The file server: a directory over HTTP/1.1 (keep-alive), bodies sent with
# sendfile so the server costs little of the two cores the clients need.
SERVER = r"""
import functools, http.server, shutil, sys
class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def copyfile(self, source, destination):
        self.wfile.flush()
        try:
            self.connection.sendfile(source)
        except (BrokenPipeError, ConnectionResetError):
            pass
handler = functools.partial(Handler, directory=sys.argv[1])
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@dataclass(frozen=True)
class Dist:
    name: str
    filename: str
    size: int
    sha256: str


def file_sizes(count: int, total: int, rng: random.Random) -> list[int]:
    """Mixed sizes summing to about ``total``: 75% small (8 KiB-1 MiB),
    20% medium (1-16 MiB), 5% large (the rest, shared out)."""
    small = int(count * 0.75)
    medium = int(count * 0.20)
    large = max(count - small - medium, 1)
    sizes = [int(2 ** rng.uniform(13, 20)) for _ in range(small)]
    sizes += [int(2 ** rng.uniform(20, 24)) for _ in range(medium)]
    rest = max(total - sum(sizes), large << 20)
    weights = [rng.uniform(0.5, 1.5) for _ in range(large)]
    sizes += [int(rest * w / sum(weights)) for w in weights]
    rng.shuffle(sizes)
    return sizes


def generate(root: Path, count: int, total: int) -> list[Dist]:
    """Wheels under ``root/files`` and a PEP 503 index under ``root/simple``."""
    rng = random.Random(20240102)
    pool = rng.randbytes(64 << 20)  # incompressible bytes, sliced at random offsets
    files_dir = root / "files"
    files_dir.mkdir(parents=True)
    dists = []
    for number, size in enumerate(file_sizes(count, total, rng)):
        name = f"benchpkg{number:04d}"
        filename = f"{name}-1.0-py3-none-any.whl"
        path = files_dir / filename
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as wheel:
            info = f"{name}-1.0.dist-info"
            wheel.writestr(f"{info}/METADATA",
                           f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
            wheel.writestr(f"{info}/WHEEL",
                           "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
            with wheel.open(f"{name}/blob.bin", "w", force_zip64=True) as blob:
                left = size
                while left > 0:
                    piece = min(left, 8 << 20)
                    start = rng.randrange(0, len(pool) - piece + 1)
                    blob.write(pool[start:start + piece])
                    left -= piece
            wheel.writestr(f"{info}/RECORD", "")
        digest = sha256_file(path)
        dists.append(Dist(name, filename, path.stat().st_size, digest))
        page = root / "simple" / name / "index.html"
        page.parent.mkdir(parents=True)
        page.write_text(f'<!DOCTYPE html><html><body><a href="../../files/{filename}'
                        f'#sha256={digest}">{filename}</a></body></html>\n')
    return dists


def write_mirror(root: Path, url: str, dists: Sequence[Dist]) -> Path:
    """mirror.yaml and one lockfile per set (files dealt out round-robin)."""
    for index, set_name in enumerate(SETS):
        packages = tuple(
            LockedPackage(
                name=canonicalize_name(d.name), version=Version("1.0"), targets=(TARGET.name,),
                index=f"{url}/simple/",
                wheels=(LockedFile(filename=d.filename, url=f"{url}/files/{d.filename}",
                                   size=d.size, sha256=d.sha256, upload_time=UPLOADED),),
                why={TARGET.name: (set_name,)})
            for d in dists[index::len(SETS)])
        Lockfile(set_name=set_name, requirements=(), targets=(TARGET,), packages=packages,
                 input_hash=hashlib.sha256(set_name.encode()).hexdigest()).write(
            root / "lockfiles" / f"pylock.{set_name}.toml")
    sets = "".join(f"  {s}: {{requirements: [benchpkg]}}\n" for s in SETS)
    config = root / "mirror.yaml"
    config.write_text(f'version: 1\nsources:\n  - {{name: local, url: "{url}/simple/"}}\n'
                      f'targets:\n  {TARGET.name}: {{python: "3.11", '
                      f'platforms: [manylinux_2_28_x86_64]}}\nsets:\n{sets}')
    return config


@dataclass(frozen=True)
class Timing:
    wall: float  # seconds
    cpu: float  # user + system seconds of the command and its children


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: Sequence[str], *, env: dict[str, str] | None = None,
          stdin: str | None = None) -> Timing:
    cpu = _children_cpu()
    started = time.perf_counter()
    result = subprocess.run(command, env=env, input=stdin, text=True, capture_output=True,
                            check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({result.returncode}):\n"
                         f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return Timing(elapsed, _children_cpu() - cpu)


def held(directory: Path) -> tuple[int, int]:
    """(files, bytes) under ``directory``."""
    files = [p for p in directory.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def run_lockmirror(work: Path, config: Path, *, fsync: bool = False
                   ) -> tuple[Timing, tuple[int, int]]:
    store = work / "store"
    # only the generated sets: lockmirror's own set (the bundle's tool wheels) is not
    # locked in the generated repository
    env = {**os.environ, "LOCKMIRROR_STORE": str(store), "LOCKMIRROR_TOOL_WHEELS": "installed"}
    seconds = timed([sys.executable, "-m", "lockmirror", "fetch", "--config", str(config),
                     "--jobs", str(JOBS), "--progress", "none", *(["--fsync"] if fsync else [])],
                    env=env)
    found = held(store / "sha256")
    shutil.rmtree(store)
    return seconds, found


def run_curl(work: Path, url: str, dists: Sequence[Dist]) -> tuple[Timing, tuple[int, int]]:
    out = work / "curl"
    out.mkdir()
    lines = "".join(f"{out / d.filename} {url}/files/{d.filename}\n" for d in dists)
    seconds = timed(["xargs", "-P", str(JOBS), "-L", "1", "curl", "-s", "-f", "-o"], stdin=lines)
    found = held(out)
    shutil.rmtree(out)
    return seconds, found


def run_pip(work: Path, url: str, dists: Sequence[Dist]) -> tuple[Timing, tuple[int, int]]:
    out = work / "pip"
    requirements = work / "requirements.txt"
    requirements.write_text("".join(f"{d.name}==1.0\n" for d in dists))
    seconds = timed([sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
                     "--disable-pip-version-check", "--progress-bar", "off",
                     "--index-url", f"{url}/simple/", "-d", str(out), "-r", str(requirements)])
    found = held(out)
    shutil.rmtree(out)
    return seconds, found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--megabytes", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of lockmirror and curl, interleaved (best and median "
                             "reported); pip runs once")
    parser.add_argument("--fsync", action="store_true",
                        help="lockmirror with --fsync (each file written to disk before naming)")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="bench-fetch-"))
    server: subprocess.Popen[str] | None = None
    try:
        started = time.perf_counter()
        dists = generate(root / "tree", args.files, args.megabytes << 20)
        total = sum(d.size for d in dists)
        print(f"generated {len(dists)} wheels, {total / 2**20:.0f} MiB "
              f"(largest {max(d.size for d in dists) / 2**20:.0f} MiB) "
              f"in {time.perf_counter() - started:.1f} s")
        server = subprocess.Popen([sys.executable, "-c", SERVER, str(root / "tree")],
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}"
        config = write_mirror(root / "repo", url, dists)
        # Every contender reads the served files from the page cache.
        for d in dists:
            sha256_file(root / "tree" / "files" / d.filename)

        runs: dict[str, Callable[[], tuple[Timing, tuple[int, int]]]] = {
            "raw parallel curl": functools.partial(run_curl, root, url, dists),
            "lockmirror fetch": functools.partial(run_lockmirror, root, config, fsync=args.fsync),
        }
        results: dict[str, list[Timing]] = {label: [] for label in runs}
        for _ in range(max(args.repeat, 1)):
            for label, run in runs.items():
                timing, (count, size) = run()
                if (count, size) != (len(dists), total):
                    raise SystemExit(f"{label}: got {count} files, {size} bytes; "
                                     f"expected {len(dists)}, {total}")
                results[label].append(timing)
        timing, (count, size) = run_pip(root, url, dists)
        if (count, size) != (len(dists), total):
            raise SystemExit(f"pip: got {count} files, {size} bytes")
        results["pip download"] = [timing]

        load = os.getloadavg()[0]
        print(f"\n{len(dists)} files, {total} bytes ({total / 2**20:.0f} MiB), "
              f"{JOBS} parallel downloads, 127.0.0.1, cold output each run, "
              f"{os.cpu_count()} CPUs, load average {load:.1f}")
        # Best of the runs: on a shared machine the other load only ever adds time.
        walls = {label: [t.wall for t in timings] for label, timings in results.items()}
        ours = min(walls["lockmirror fetch"])
        print(f"{'':18} {'best s':>7} {'MiB/s':>6} {'median s':>8} {'CPU s':>6}  "
              f"{'all runs (s)':<29} time / lockmirror's")
        for label, timings in results.items():
            best = min(walls[label])
            shown = " ".join(f"{t:.2f}" for t in walls[label])
            cpu = statistics.median(t.cpu for t in timings)
            print(f"{label:18} {best:7.2f} {total / 2**20 / best:6.0f} "
                  f"{statistics.median(walls[label]):8.2f} {cpu:6.2f}  {shown:<29} "
                  f"{best / ours:.2f}x")
        vs_raw = min(walls["raw parallel curl"]) / ours
        vs_raw_median = (statistics.median(walls["raw parallel curl"])
                         / statistics.median(walls["lockmirror fetch"]))
        vs_pip = walls["pip download"][0] / ours
        print(f"\nlockmirror / raw parallel throughput: {vs_raw:.2f}x best, "
              f"{vs_raw_median:.2f}x median "
              f"(goal >= {GOAL_VS_RAW}x: {'met' if vs_raw >= GOAL_VS_RAW else 'MISSED'})")
        print(f"pip time / lockmirror time: {vs_pip:.2f}x "
              f"(goal >= {GOAL_VS_PIP}x: {'met' if vs_pip >= GOAL_VS_PIP else 'MISSED'})")
        return 0
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
