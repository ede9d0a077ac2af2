"""Publish stage benchmark: lockmirror against the tools a user would otherwise run.

Builds a ~100 MB mirror with the real index stage (deterministic random
wheels: 2 x 15 MB, so multipart is used, 10 x 3 MB, 60 x 500 KB, 150 x 50 KB,
each wheel with its PEP 658 ``.metadata``), starts the real servers on
127.0.0.1 (moto's S3 server mode, pypiserver with an htpasswd file), then
times, each as a whole process (interpreter start-up included):

* S3, initial: ``lockmirror publish --to s3://A/pypi --no-directory-keys`` into
  an empty bucket vs ``aws s3 sync dist-index s3://B/pypi`` into another empty
  bucket (same server, same tree, the same objects; alternating who goes
  first, median of --repeat runs). Once more with the directory keys (a
  ``simple/<p>/`` copy of each page, what pip needs from a REST endpoint:
  25 % more objects), reported beside;
* S3, no-op: both again with nothing changed (median of --repeat runs);
* upload API, initial: ``lockmirror publish --to http://pypiserver/`` vs one
  plain ``twine upload`` of the same wheels (credentials from the
  environment, the packages directory emptied before each; alternating who
  goes first, median of --repeat runs);
* upload API, no-op: lockmirror again (it must upload nothing; twine has no
  no-op for pypiserver: twine 7 refuses --skip-existing there).

Goal (issue 20): an S3 no-op publish takes at most 1 s, the whole process,
on the test server; the upload-API no-op uploads nothing. The ratios beside
it (the other tool's time divided by lockmirror's; above 1: lockmirror is
faster) are printed for information: speed beyond the goal is not worth
code a newcomer cannot follow.

    .venv/bin/python benchmarks/bench_publish.py [--scale 1.0] [--repeat 3]
        [--only s3|upload] [--upload-jobs N]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fixtureindex import build_wheel
from servers import BIN, S3Server, start_moto, start_pypiserver

from lockmirror.formats.lockfile import LockedFile, LockedPackage, LockedTarget, Lockfile
from lockmirror.formats.store import Store
from lockmirror.fsutil import sha256_bytes
from lockmirror.stages.index import build_index

HOST = LockedTarget("host", "3.11", "cp", ("manylinux_2_28_x86_64",),
                    "python_version == '3.11' and sys_platform == 'linux'")
# (count, payload bytes) per size class: about 100 MB in all
SIZES = ((2, 15_000_000), (10, 3_000_000), (60, 500_000), (150, 50_000))
NOOP_GOAL = 1.0  # seconds: an S3 no-op publish, the whole process


def store_bytes(store: Store, data: bytes) -> str:
    digest = sha256_bytes(data)
    path = store.path(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def build_mirror(root: Path, scale: float) -> Path:
    """A dist-index built by the index stage from generated wheels."""
    rng = random.Random(20240601)
    wheels_dir = root / "wheels"
    store = Store(root / "store")
    packages = []
    number = 0
    for count, size in SIZES:
        for _ in range(max(1, round(count * scale))):
            number += 1
            name = f"bench-project-{number:03d}"
            payload = rng.randbytes(size)
            wheel = build_wheel(wheels_dir, name, "1.0",
                                files={f"bench_project_{number:03d}/data.bin": payload})
            data = wheel.read_bytes()
            with zipfile.ZipFile(wheel) as archive:
                metadata = archive.read(f"bench_project_{number:03d}-1.0.dist-info/METADATA")
            digest = store_bytes(store, data)
            metadata_digest = store_bytes(store, metadata)
            packages.append(LockedPackage(
                name=name, version=Version("1.0"), targets=("host",),
                index="https://bench.example/simple/",
                wheels=(LockedFile(filename=wheel.name, url=f"https://bench.example/{wheel.name}",
                                   size=len(data), sha256=digest,
                                   upload_time=datetime(2024, 1, 1, tzinfo=UTC),
                                   metadata_sha256=metadata_digest),),
                sdist=None, requires_python=None, why={"host": ("bench",)}, build_only=False,
                yanked=None))
    lockfile = root / "lockfiles" / "pylock.bench.toml"
    lockfile.parent.mkdir(parents=True)
    Lockfile(set_name="bench", requirements=tuple(p.name for p in packages), targets=(HOST,),
             packages=tuple(packages), input_hash="bench").write(lockfile)
    out = root / "dist-index"
    build_index([lockfile], store, out)
    return out


def timed(argv: Sequence[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(list(argv), env=env, cwd=cwd, capture_output=True, text=True,
                          check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {done.stdout}{done.stderr}")
    return elapsed, done.stdout + done.stderr


def tree_size(tree: Path) -> tuple[int, int]:
    files = [p for p in tree.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def bench_s3(server: S3Server, tree: Path, work: Path, repeat: int) -> dict[str, float]:
    env = {**os.environ, **server.env()}

    def commands(ours_bucket: str, theirs_bucket: str, directory_keys: bool = False
                 ) -> tuple[list[str], list[str]]:
        ours = [sys.executable, "-m", "lockmirror", "publish", "-q", "--to",
                f"s3://{ours_bucket}/pypi", "--from", str(tree),
                "--endpoint-url", server.endpoint_url]
        if not directory_keys:  # the same objects as aws s3 sync
            ours.append("--no-directory-keys")
        theirs = [str(BIN / "aws"), "s3", "sync", "--only-show-errors", str(tree),
                  f"s3://{theirs_bucket}/pypi", "--endpoint-url", server.endpoint_url]
        return ours, theirs

    initial_ours, initial_theirs = [], []
    for run in range(repeat):  # fresh buckets each time; who goes first alternates
        buckets = server.new_bucket(), server.new_bucket()  # ours, aws's
        ours, theirs = commands(*buckets)
        for which in ((0, 1) if run % 2 == 0 else (1, 0)):
            if which == 0:
                elapsed, out = timed(ours, env, work)
                initial_ours.append(elapsed)
            else:
                initial_theirs.append(timed(theirs, env, work)[0])
    print(f"  lockmirror: {out.strip()}")
    noop_ours, noop_theirs = [], []
    for _ in range(repeat):
        elapsed, out = timed(ours, env, work)
        assert ": 0 uploaded (0 B)" in out, out
        noop_ours.append(elapsed)
        noop_theirs.append(timed(theirs, env, work)[0])
    print(f"  lockmirror no-op: {out.strip()}")
    print(f"  objects: lockmirror {len(server.keys(buckets[0]))}, "
          f"aws {len(server.keys(buckets[1]))}")
    with_keys, _ = commands(server.new_bucket(), "unused", directory_keys=True)
    keys_initial, out = timed(with_keys, env, work)
    print(f"  with directory keys (what pip needs on a REST endpoint): {out.strip()}")
    keys_noop, out = timed(with_keys, env, work)
    return {"s3 initial: lockmirror +dir keys": keys_initial,
            "s3 no-op: lockmirror +dir keys": keys_noop,
            "s3 initial: lockmirror": statistics.median(initial_ours),
            "s3 initial: aws s3 sync": statistics.median(initial_theirs),
            "s3 no-op: lockmirror": statistics.median(noop_ours),
            "s3 no-op: aws s3 sync": statistics.median(noop_theirs)}


def bench_upload(tree: Path, work: Path, repeat: int, jobs: int | None) -> dict[str, float]:
    pypi = start_pypiserver(Path(tempfile.mkdtemp(prefix="lm-bench-pypi-")))
    try:
        server = pypi.server
        env = {**os.environ, "TWINE_USERNAME": server.username,
               "TWINE_PASSWORD": server.password}
        wheels = sorted(str(p) for p in (tree / "files").rglob("*.whl"))
        ours = [sys.executable, "-m", "lockmirror", "publish", "-q", "--to", server.url,
                "--from", str(tree), *(["--jobs", str(jobs)] if jobs else [])]
        theirs = [str(BIN / "twine"), "upload", "--non-interactive", "--disable-progress-bar",
                  "--repository-url", server.url, *wheels]
        results: dict[str, float] = {}
        initial_ours, initial_theirs = [], []
        for run in range(repeat):  # an empty repository each time; who goes first alternates
            for which in ((0, 1) if run % 2 == 0 else (1, 0)):
                pypi.clear()
                if which == 0:
                    elapsed, out = timed(ours, env, work)
                    assert f": {len(wheels)} uploaded" in out, out
                    initial_ours.append(elapsed)
                else:
                    initial_theirs.append(timed(theirs, env, work)[0])
        print(f"  lockmirror: {out.strip()}")
        results["upload initial: lockmirror"] = statistics.median(initial_ours)
        results["upload initial: twine upload"] = statistics.median(initial_theirs)
        noop = []
        for _ in range(repeat):
            elapsed, out = timed(ours, env, work)
            assert ": 0 uploaded (0 B)" in out, out
            noop.append(elapsed)
        print(f"  lockmirror no-op: {out.strip()}")
        results["upload no-op: lockmirror"] = statistics.median(noop)
        return results
    finally:
        pypi.process.stop()
        shutil.rmtree(pypi.process.log_path.parent, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="files per size class x this")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("s3", "upload"), help="run one half only")
    parser.add_argument("--upload-jobs", type=int, default=None, metavar="N",
                        help="lockmirror's --jobs for the upload API (default: its own)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lm-bench-publish-"))
    moto = None
    try:
        start = time.perf_counter()
        tree = build_mirror(work / "mirror", args.scale)
        count, size = tree_size(tree)
        print(f"mirror: {count} files, {size / 1e6:.1f} MB "
              f"(built in {time.perf_counter() - start:.1f} s)")
        results: dict[str, float] = {}
        if args.only in (None, "s3"):
            moto = start_moto(Path(tempfile.mkdtemp(prefix="lm-bench-moto-")))
            print("S3 (moto server mode):")
            results.update(bench_s3(moto, tree, work, args.repeat))
        if args.only in (None, "upload"):
            print("upload API (pypiserver):")
            results.update(bench_upload(tree, work, args.repeat, args.upload_jobs))
    finally:
        if moto is not None:
            moto.process.stop()
            shutil.rmtree(moto.process.log_path.parent, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    print()
    for name, seconds in results.items():
        print(f"{name:36s} {seconds:7.2f} s")
    print()
    if "s3 no-op: lockmirror" in results:
        seconds = results["s3 no-op: lockmirror"]
        verdict = "ok" if seconds <= NOOP_GOAL else "MISSED"
        print(f"{'S3 no-op: lockmirror':40s} {seconds:5.2f} s  "
              f"(goal <= {NOOP_GOAL:g} s: {verdict})")
    ratios = [
        ("S3 initial: aws s3 sync / lockmirror", "s3 initial: aws s3 sync",
         "s3 initial: lockmirror"),
        ("S3 no-op: aws s3 sync / lockmirror", "s3 no-op: aws s3 sync",
         "s3 no-op: lockmirror"),
        ("upload: twine / lockmirror", "upload initial: twine upload",
         "upload initial: lockmirror"),
    ]
    for name, theirs, ours in ratios:
        if theirs in results:
            print(f"{name:40s} {results[theirs] / results[ours]:5.2f}x  (for information)")


if __name__ == "__main__":
    main()
