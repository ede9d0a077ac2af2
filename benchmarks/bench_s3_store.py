"""The store on S3 against the local store: bytes through the runner and wall time.

Builds a synthetic mirror (``--projects`` projects, default 300, one wheel each
of 20-200 KB random bytes plus its PEP 658 ``.metadata``: about 33 MB) into a
local store and copies that store to an S3 bucket (moto's server mode on
127.0.0.1, as the tests start it). Then, for each store, in this process with
a counting boto3 client (bytes sent = request bodies, bytes received =
GetObject bodies; the local store's reads from disk are the bundle's size):

* index: ``build_index`` into a fresh ``dist-index/``;
* publish, first: ``S3Publisher.run`` into an empty prefix (the local store's
  index uploads its files; the S3 store's index copies them server-side);
* publish, no-op: the same again;
* bundle: ``build_bundle`` (no tool wheels), the tar written locally;

beside ``aws s3 sync`` of the local ``dist-index/`` (first and no-op), as a
whole process. The figures are for orientation: moto is a local Python
server, so a real service moves bytes more slowly and copies faster.

    .venv/bin/python benchmarks/bench_s3_store.py [--projects 300]
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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fixtureindex import build_wheel
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

HOST = LockedTarget("host", "3.11", "cp", ("manylinux_2_28_x86_64",),
                    "python_version == '3.11' and sys_platform == 'linux'")


class Counter:
    """Bytes a boto3 client sends (request bodies) and receives (GetObject bodies)."""

    def __init__(self) -> None:
        self.sent = self.received = self.requests = 0

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-send.s3.*", self._send)
        client.meta.events.register("after-call.s3.GetObject", self._got)
        return client

    def _send(self, request: Any, **_: Any) -> None:
        self.requests += 1
        self.sent += int(request.headers.get("Content-Length") or 0)

    def _got(self, http_response: Any, **_: Any) -> None:
        self.received += int(http_response.headers.get("Content-Length") or 0)

    def moved(self) -> int:
        return self.sent + self.received


def put(store: Store, data: bytes) -> str:
    digest = sha256_bytes(data)
    path = store.path(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def build_mirror(root: Path, projects: int) -> tuple[Path, Store]:
    """A local store and one lockfile of ``projects`` generated wheels."""
    rng = random.Random(20261206)
    store = Store(root / "store")
    packages = []
    for number in range(projects):
        name = f"bench-s3-{number:04d}"
        module = name.replace("-", "_")
        wheel = build_wheel(root / "wheels", name, "1.0",
                            files={f"{module}/data.bin": rng.randbytes(rng.randint(20, 200) << 10)})
        with zipfile.ZipFile(wheel) as archive:
            metadata = archive.read(f"{module}-1.0.dist-info/METADATA")
        data = wheel.read_bytes()
        packages.append(LockedPackage(
            name=name, version=Version("1.0"), targets=("host",),
            index="https://bench.example/simple/",
            wheels=(LockedFile(filename=wheel.name, url=f"https://bench.example/{wheel.name}",
                               size=len(data), sha256=put(store, data),
                               upload_time=datetime(2026, 1, 1, tzinfo=UTC),
                               metadata_sha256=put(store, metadata)),),
            sdist=None, requires_python=None, why={"host": ("bench",)}, build_only=False,
            yanked=None))
        wheel.unlink()
    lockfile = root / "lockfiles" / "pylock.bench.toml"
    lockfile.parent.mkdir(parents=True)
    Lockfile(set_name="bench", requirements=tuple(p.name for p in packages), targets=(HOST,),
             packages=tuple(packages), input_hash="bench").write(lockfile)
    (root / "mirror.yaml").write_text("name: bench\n")
    return lockfile, store


def timed(step: Callable[[], Any]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def run_stages(kind: str, lockfile: Path, store: Store | S3Store, server: S3Server,
               work: Path, counter: Counter) -> list[tuple[str, float, int]]:
    """index, publish (first, no-op), bundle: (step, seconds, bytes through the runner)."""
    rows = []
    index = work / f"{kind}-index"

    def step(name: str, action: Callable[[], Any]) -> None:
        before = counter.moved()
        seconds = timed(action)
        rows.append((f"{kind}: {name}", seconds, counter.moved() - before))

    step("index", lambda: build_index([lockfile], store, index, title="bench"))
    remote = store if isinstance(store, S3Store) else None
    dest = S3Destination(kind="s3", bucket=server.new_bucket(public=False), prefix="pypi",
                         endpoint_url=server.endpoint_url, directory_keys=False)
    client = counter.attach(make_client(dest))
    step("publish, first", lambda: S3Publisher(dest, client=client).run(
        SourceTree.open(index, store=remote)))
    step("publish, no-op", lambda: S3Publisher(dest, client=client).run(
        SourceTree.open(index, store=remote)))
    before = counter.moved()
    start = time.perf_counter()
    result = build_bundle(index, lockfile_dir=lockfile.parent, mirror_yaml=work / "mirror.yaml",
                          out_dir=work / f"{kind}-dist", name="bench", source_date_epoch=0,
                          tool=False, store=remote)
    seconds = time.perf_counter() - start
    moved = counter.moved() - before
    # the local store's bundle reads its files from disk: those bytes pass through too
    rows.append((f"{kind}: bundle ({format_size(result.size)} written)", seconds,
                 moved if remote is not None else result.size))
    return rows


def aws_sync(server: S3Server, tree: Path) -> list[tuple[str, float, int]]:
    aws = shutil.which("aws") or str(BIN / "aws")
    env = {**os.environ, **server.env()}
    target = f"s3://{server.new_bucket(public=False)}/pypi"
    argv = [aws, "s3", "sync", "--only-show-errors", str(tree), target,
            "--endpoint-url", server.endpoint_url]
    size = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    first = timed(lambda: subprocess.run(argv, env=env, check=True))
    noop = timed(lambda: subprocess.run(argv, env=env, check=True))
    return [("aws s3 sync local dist-index, first", first, size),
            ("aws s3 sync local dist-index, no-op", noop, 0)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=300)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lm-bench-s3-"))
    server = start_moto(work)
    os.environ.update(server.env())  # boto3's chain, as in CI
    try:
        lockfile, local = build_mirror(work, args.projects)
        files = [p for p in (local.root / "sha256").rglob("*") if p.is_file()]
        print(f"mirror: {args.projects} projects, {len(files)} store files, "
              f"{format_size(sum(p.stat().st_size for p in files))}")
        bucket = server.new_bucket(public=False)
        setup = server.client()
        for path in files:  # what fetch would have put there
            setup.upload_file(str(path), bucket, f"store/{path.relative_to(local.root)}")
        counter = Counter()
        s3 = S3Store(f"s3://{bucket}/store",
                     counter.attach(make_client(S3Destination(
                         kind="s3", bucket=bucket, endpoint_url=server.endpoint_url))),
                     work / "staging")
        rows = run_stages("local", lockfile, local, server, work, Counter())
        rows += run_stages("s3", lockfile, s3, server, work, counter)
        rows += aws_sync(server, work / "local-index")
        print(f"{'step':<48} {'seconds':>8} {'through the runner':>20}")
        for name, seconds, moved in rows:
            print(f"{name:<48} {seconds:>8.2f} {format_size(moved):>20}")
        same = [p.read_bytes() for p in sorted((work / "local-dist").iterdir())] == \
            [p.read_bytes() for p in sorted((work / "s3-dist").iterdir())]
        print(f"same bundle bytes from both stores: {same}")
    finally:
        server.process.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
