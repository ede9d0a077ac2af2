"""The store on S3 against the local store: bytes through the runner and wall time.

Builds a synthetic mirror (``--projects`` projects, default 300; each with
``--files-per-project`` package files, default 1: that many wheels for one
platform each, or, from 2 on, one wheel fewer and an sdist; each of
``--file-kb`` random bytes, default 20-200, plus each wheel's PEP 658
``.metadata``: about 33 MB by default) into a local store and copies that
store to an S3 bucket (moto's server mode on 127.0.0.1, as the tests start
it). Then, for each store, in this process with a counting boto3 client
(bytes sent = request bodies, bytes received = GetObject bodies, and of those
the package files' bytes: wheels and sdists, not pages or ``.metadata``; the
local store's reads from disk are the bundle's size):

* index: ``build_index`` into a fresh ``dist-index/``;
* publish, first: ``S3Publisher.run`` into an empty prefix (the local store's
  index uploads its files; the S3 store's index streams them from the store,
  hashed, so they count twice);
* publish, no-op: the same again;
* bundle: ``build_bundle`` (no tool wheels), the tar written locally;

beside ``aws s3 sync`` of the local ``dist-index/`` (first and no-op), as a
whole process. The figures are for orientation: moto is a local Python
server, so a real service moves bytes more slowly and copies faster.

    .venv/bin/python benchmarks/bench_s3_store.py [--projects 300]
        [--files-per-project 1] [--file-kb 20-200]

The issue's scale, 2,000 projects and 10,000 package files:
``--projects 2000 --files-per-project 5 --file-kb 5-50``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fixtureindex import build_wheel
from fixtureindex.fixture_backend import core_metadata, write_sdist
from servers import BIN, S3Server, start_moto

from lockmirror.config_schema import S3Destination
from lockmirror.formats.lockfile import LockedFile, LockedPackage, LockedTarget, Lockfile
from lockmirror.formats.store import Store
from lockmirror.fsutil import format_size, sha256_bytes
from lockmirror.net.s3_client import make_client
from lockmirror.net.s3_store import S3Store
from lockmirror.publish import SourceTree
from lockmirror.publish.s3 import S3Publisher
from lockmirror.stages.bundle import build_bundle
from lockmirror.stages.index import build_index

# one target per platform a project has a wheel for (the first alone is the default)
PLATFORMS = (("manylinux_2_28_x86_64", "linux", "x86_64"),
             ("manylinux_2_28_aarch64", "linux", "aarch64"),
             ("macosx_11_0_arm64", "darwin", "arm64"),
             ("macosx_11_0_x86_64", "darwin", "x86_64"),
             ("win_amd64", "win32", "AMD64"),
             ("win_arm64", "win32", "ARM64"))
TARGETS = tuple(
    LockedTarget(f"{system}-{machine}".lower(), "3.11", "cp", (tag,),
                 f"python_version == '3.11' and sys_platform == '{system}' and "
                 f"platform_machine == '{machine}'")
    for tag, system, machine in PLATFORMS)


class Counter:
    """Bytes a boto3 client sends (request bodies) and receives (GetObject
    bodies), and of those the bytes of package files (keys ``is_package`` says)."""

    def __init__(self, is_package: Callable[[str], bool]) -> None:
        self.sent = self.received = self.requests = self.package = 0
        self.is_package = is_package

    def attach(self, client: Any) -> Any:
        client.meta.events.register("provide-client-params.s3.GetObject", self._key)
        client.meta.events.register("before-send.s3.*", self._send)
        client.meta.events.register("after-call.s3.GetObject", self._got)
        return client

    def _key(self, params: Any, context: Any, **_: Any) -> None:
        context["bench-key"] = params.get("Key", "")

    def _send(self, request: Any, **_: Any) -> None:
        self.requests += 1
        size = int(request.headers.get("Content-Length") or 0)
        self.sent += size
        if self.is_package(unquote(urlsplit(request.url).path)):
            self.package += size

    def _got(self, http_response: Any, context: Any, **_: Any) -> None:
        size = int(http_response.headers.get("Content-Length") or 0)
        self.received += size
        if self.is_package(context.get("bench-key", "")):
            self.package += size

    def moved(self) -> tuple[int, int]:
        return self.sent + self.received, self.package


def package_keys(digests: Collection[str]) -> Callable[[str], bool]:
    """Is an object key (or URL path) a package file: a wheel or sdist by its
    name, or a store key of one of ``digests`` (the package files' sha256)?"""
    tails = {f"sha256/{d[:2]}/{d[2:]}" for d in digests}

    def is_package(key: str) -> bool:
        return key.endswith((".whl", ".tar.gz")) or key[-(len("sha256/ab/") + 62):] in tails

    return is_package


def put(store: Store, data: bytes) -> str:
    digest = sha256_bytes(data)
    path = store.path(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def build_mirror(root: Path, projects: int, files_per_project: int,
                 kib: tuple[int, int]) -> tuple[Path, Store, set[str]]:
    """A local store, one lockfile of ``projects`` generated projects of
    ``files_per_project`` package files each (random content of ``kib`` KiB),
    and the package files' sha256."""
    rng = random.Random(20261206)
    store = Store(root / "store")
    wheels_each = files_per_project if files_per_project == 1 else files_per_project - 1
    targets = TARGETS[:wheels_each]
    packages, digests = [], set()
    uploaded = datetime(2026, 1, 1, tzinfo=UTC)

    def locked(path: Path, metadata: bytes | None) -> LockedFile:
        data = path.read_bytes()
        path.unlink()
        digests.add(put(store, data))
        return LockedFile(filename=path.name, url=f"https://bench.example/{path.name}",
                          size=len(data), sha256=sha256_bytes(data), upload_time=uploaded,
                          metadata_sha256=put(store, metadata) if metadata else None)

    for number in range(projects):
        name = f"bench-s3-{number:04d}"
        module = name.replace("-", "_")
        wheels = []
        for target in targets:
            tag = "py3-none-any" if wheels_each == 1 else f"cp311-cp311-{target.platforms[0]}"
            wheel = build_wheel(root / "wheels", name, "1.0", tag=tag, files={
                f"{module}/data.bin": rng.randbytes(rng.randint(*kib) << 10)})
            with zipfile.ZipFile(wheel) as archive:
                metadata = archive.read(f"{module}-1.0.dist-info/METADATA")
            wheels.append(locked(wheel, metadata))
        sdist = None
        if files_per_project > 1:
            sdist = locked(Path(root / "wheels", write_sdist(root / "wheels", name, "1.0", {
                "PKG-INFO": core_metadata(name, "1.0", metadata_version="2.2").encode(),
                f"{module}/data.bin": rng.randbytes(rng.randint(*kib) << 10)})), None)
        packages.append(LockedPackage(
            name=name, version=Version("1.0"), targets=tuple(t.name for t in targets),
            index="https://bench.example/simple/", wheels=tuple(wheels), sdist=sdist,
            requires_python=None, why={t.name: ("bench",) for t in targets},
            build_only=False, yanked=None))
    lockfile = root / "lockfiles" / "pylock.bench.toml"
    lockfile.parent.mkdir(parents=True)
    Lockfile(set_name="bench", requirements=tuple(p.name for p in packages), targets=targets,
             packages=tuple(packages), input_hash="bench").write(lockfile)
    (root / "mirror.yaml").write_text("name: bench\n")
    return lockfile, store, digests


def timed(step: Callable[[], Any]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


Row = tuple[str, float, int, int | None]  # step, seconds, bytes, of those package bytes


def run_stages(kind: str, lockfile: Path, store: Store | S3Store, server: S3Server,
               work: Path, counter: Counter) -> list[Row]:
    """index, publish (first, no-op), bundle: (step, seconds, bytes through the
    runner, of those the package files')."""
    rows: list[Row] = []
    index = work / f"{kind}-index"

    def step(name: str, action: Callable[[], Any]) -> None:
        moved, package = counter.moved()
        seconds = timed(action)
        after, package_after = counter.moved()
        rows.append((f"{kind}: {name}", seconds, after - moved, package_after - package))

    step("index", lambda: build_index([lockfile], store, index, title="bench"))
    remote = store if isinstance(store, S3Store) else None
    dest = S3Destination(kind="s3", bucket=server.new_bucket(public=False), prefix="pypi",
                         endpoint_url=server.endpoint_url, directory_keys=False)
    client = counter.attach(make_client(dest))
    step("publish, first", lambda: S3Publisher(dest, client=client).run(
        SourceTree.open(index, store=remote)))
    step("publish, no-op", lambda: S3Publisher(dest, client=client).run(
        SourceTree.open(index, store=remote)))
    before, package = counter.moved()
    start = time.perf_counter()
    result = build_bundle(index, lockfile_dir=lockfile.parent, mirror_yaml=work / "mirror.yaml",
                          out_dir=work / f"{kind}-dist", name="bench", source_date_epoch=0,
                          tool=False, store=remote)
    seconds = time.perf_counter() - start
    after, package_after = counter.moved()
    # the local store's bundle reads its files from disk: those bytes pass through too
    rows.append((f"{kind}: bundle ({format_size(result.size)} written)", seconds,
                 after - before if remote is not None else result.size,
                 package_after - package if remote is not None else None))
    return rows


def aws_sync(server: S3Server, tree: Path) -> list[Row]:
    aws = shutil.which("aws") or str(BIN / "aws")
    env = {**os.environ, **server.env()}
    target = f"s3://{server.new_bucket(public=False)}/pypi"
    argv = [aws, "s3", "sync", "--only-show-errors", str(tree), target,
            "--endpoint-url", server.endpoint_url]
    size = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    first = timed(lambda: subprocess.run(argv, env=env, check=True))
    noop = timed(lambda: subprocess.run(argv, env=env, check=True))
    return [("aws s3 sync local dist-index, first", first, size, None),
            ("aws s3 sync local dist-index, no-op", noop, 0, None)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=300)
    parser.add_argument("--files-per-project", type=int, default=1,
                        choices=range(1, len(PLATFORMS) + 2), metavar="N",
                        help="package files per project: N wheels (1), else N-1 wheels, "
                             f"one per platform, and an sdist (at most {len(PLATFORMS) + 1})")
    parser.add_argument("--file-kb", default="20-200", metavar="LOW-HIGH",
                        help="each package file's random content, in KiB (default 20-200)")
    args = parser.parse_args()
    low, _, high = args.file_kb.partition("-")
    kib = (int(low), int(high or low))
    work = Path(tempfile.mkdtemp(prefix="lm-bench-s3-"))
    server = start_moto(work)
    os.environ.update(server.env())  # boto3's chain, as in CI
    try:
        started = time.perf_counter()
        lockfile, local, digests = build_mirror(work, args.projects, args.files_per_project, kib)
        files = [p for p in (local.root / "sha256").rglob("*") if p.is_file()]
        print(f"mirror: {args.projects} projects, {len(digests)} package files, "
              f"{len(files)} store files (with .metadata), "
              f"{format_size(sum(p.stat().st_size for p in files))} "
              f"(built in {time.perf_counter() - started:.0f} s)", flush=True)
        bucket = server.new_bucket(public=False)
        setup = server.client()
        for path in files:  # what fetch would have put there
            setup.upload_file(str(path), bucket, f"store/{path.relative_to(local.root)}")
        is_package = package_keys(digests)
        counter = Counter(is_package)
        s3 = S3Store(f"s3://{bucket}/store",
                     counter.attach(make_client(S3Destination(
                         kind="s3", bucket=bucket, endpoint_url=server.endpoint_url))),
                     work / "staging")
        rows = run_stages("local", lockfile, local, server, work, Counter(is_package))
        rows += run_stages("s3", lockfile, s3, server, work, counter)
        rows += aws_sync(server, work / "local-index")
        print(f"{'step':<48} {'seconds':>8} {'through the runner':>20} {'of it packages':>16}")
        for name, seconds, moved, package in rows:
            packages = "" if package is None else format_size(package)
            print(f"{name:<48} {seconds:>8.2f} {format_size(moved):>20} {packages:>16}")
        same = [p.read_bytes() for p in sorted((work / "local-dist").iterdir())] == \
            [p.read_bytes() for p in sorted((work / "s3-dist").iterdir())]
        print(f"same bundle bytes from both stores: {same}")
    finally:
        server.process.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
