"""Bundle and import throughput on real wheels, against the tools a user would otherwise use.

    .venv/bin/python benchmarks/bench_bundle.py [--runs 5] [--cache DIR] [--keep]
        [--skip import] [--skip compression]

1. Downloads numpy, pandas, cryptography and lxml wheels for four platforms
   and two Pythons (a few hundred MB) into ``--cache`` once, with
   ``pip download --only-binary :all: --platform ...``; later runs are offline.
2. Lays them out as a mirror tree (``files/<project>/<wheel>`` plus a
   manifest.json) in a scratch directory on the same filesystem.
3. Bundling: ``build_bundle`` (without lockmirror's own wheels, so both sides
   archive the same bytes; it checks every index file's size against the
   manifest and hashes the output once, for its ``.sha256``) against
   ``tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf``;
   as the baseline doing the same work, that ``tar -cf`` then ``sha256sum``
   of the tar; and, re-hashing every file too, ``sha256sum -c`` of the
   tree's files first.
4. Import with verification: ``import_bundle`` (outer .sha256, every member's
   sha256, staging + swap) against ``tar xf`` followed by ``sha256sum -c`` of
   the bundle's own SHA256SUMS; and, as the equally careful baseline, with
   ``sha256sum -c`` of the outer ``.sha256`` first.
5. Compression: gzip -6, zstd -3 and zstd -19 of the bundle, size and time.

Each contender runs ``--runs`` times after one warm-up, interleaved in a
rotating order, on warm page caches (dropping caches needs root); the median is reported. Goals:
bundling >= 0.8x tar's throughput, verified import >= 2x faster than
``tar xf`` + ``sha256sum -c``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lockmirror.formats.manifest import scan_tree
from lockmirror.stages.bundle import BundleResult, build_bundle
from lockmirror.stages.importer import import_bundle

REPO = Path(__file__).resolve().parents[1]
PINS = ["numpy==1.26.4", "pandas==2.2.2", "cryptography==42.0.8", "lxml==5.2.2"]
PLATFORMS = ["manylinux2014_x86_64", "manylinux2014_aarch64", "win_amd64", "macosx_11_0_arm64"]
PYTHONS = ["3.11", "3.12"]
EPOCH = 1_700_000_000


def download(cache: Path) -> list[Path]:
    """The benchmark's wheels, fetched once per (platform, Python)."""
    cache.mkdir(parents=True, exist_ok=True)
    for platform in PLATFORMS:
        for python in PYTHONS:
            marker = cache / f".done-{platform}-{python}"
            if marker.exists():
                continue
            print(f"downloading wheels for {platform} / Python {python} ...", flush=True)
            for pin in PINS:  # one at a time: a pin without a wheel here is skipped
                subprocess.run(
                    [sys.executable, "-m", "pip", "download", "--quiet",
                     "--disable-pip-version-check", "--only-binary", ":all:", "--no-deps",
                     "--platform", platform, "--python-version", python, "--dest", str(cache),
                     pin], check=False, stderr=subprocess.DEVNULL)
            marker.touch()
    return sorted(cache.glob("*.whl"))


def make_tree(wheels: list[Path], root: Path) -> None:
    """A mirror tree of these wheels (hard links: no copy) with its manifest."""
    for wheel in wheels:
        project = wheel.name.split("-", 1)[0].lower().replace("_", "-")
        target = root / "files" / project / wheel.name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(wheel, target)
        except OSError:
            shutil.copyfile(wheel, target)
    for project in sorted({p.parent.name for p in (root / "files").glob("*/*.whl")}):
        page = root / "simple" / project / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text("".join(f'<a href="../../files/{project}/{w.name}">{w.name}</a>\n'
                                for w in sorted((root / "files" / project).iterdir())))
    scan_tree(root).write(root / "manifest.json")


def cpu_seconds() -> float:
    """User + system time of this process (all threads) and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(action: Callable[[], object], reset: Callable[[], None]) -> tuple[float, float]:
    """Wall and CPU seconds of one run, started with nothing left to write
    back from earlier runs (os.sync, untimed), so no run pays for another's."""
    reset()
    os.sync()
    cpu = cpu_seconds()
    start = time.perf_counter()
    action()
    return time.perf_counter() - start, cpu_seconds() - cpu


def compare(name: str, ours: Callable[[], object], theirs: dict[str, Callable[[], object]],
            reset: Callable[[], None], runs: int, size: int) -> dict[str, float]:
    """Median wall time per contender; CPU time printed too (it does not
    depend on what else the machine is doing, wall time does)."""
    contenders = {"lockmirror": ours, **theirs}
    for action in contenders.values():  # warm-up: page cache, imports
        timed(action, reset)
    walls: dict[str, list[float]] = {label: [] for label in contenders}
    cpus: dict[str, list[float]] = {label: [] for label in contenders}
    order = list(contenders.items())
    for run in range(runs):
        # rotate, so that no contender always follows the same one (write-back,
        # caches): the same conditions for all, on average
        for label, action in order[run % len(order):] + order[:run % len(order)]:
            wall, cpu = timed(action, reset)
            walls[label].append(wall)
            cpus[label].append(cpu)
    medians = {label: statistics.median(values) for label, values in walls.items()}
    print(f"\n{name} ({size / 1e6:.0f} MB, median of {runs}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores):")
    for label, median in medians.items():
        print(f"  {label:<46} {median:7.3f} s wall {size / median / 1e6:6.0f} MB/s   "
              f"{statistics.median(cpus[label]):6.3f} s CPU")
    return medians


def run_shell(command: str, cwd: Path | None = None) -> None:
    subprocess.run(command, shell=True, check=True, cwd=cwd)


def bench_import(result: BundleResult, scratch: Path, runs: int) -> dict[str, float]:
    """Verified import of the bundle against tar xf + sha256sum -c; median seconds."""
    bundle_path = result.path
    top = f"lockmirror-bench-{result.content_id}"
    into = scratch / "far" / "mirror"
    extracted = scratch / "far-tar"

    def reset_import() -> None:
        shutil.rmtree(into.parent, ignore_errors=True)
        shutil.rmtree(extracted, ignore_errors=True)
        into.parent.mkdir()
        extracted.mkdir()

    return compare(
        "import with verification", lambda: import_bundle([bundle_path], into), {
            "tar xf + sha256sum -c SHA256SUMS": lambda: run_shell(
                f"tar xf {bundle_path} -C {extracted} && cd {extracted}/{top} && "
                "sha256sum -c --quiet SHA256SUMS"),
            "sha256sum -c .sha256 + tar xf + sha256sum -c": lambda: run_shell(
                f"cd {bundle_path.parent} && sha256sum -c --quiet {result.checksums.name} "
                f"&& tar xf {bundle_path} -C {extracted} && cd {extracted}/{top} && "
                "sha256sum -c --quiet SHA256SUMS"),
        }, reset_import, runs, result.size)


def bench_compression(result: BundleResult, scratch: Path) -> None:
    """Size and time of gzip and zstd over the bundle (would it pay to compress?)."""
    bundle_path = result.path
    print("\ncompression of the bundle (would it pay to compress?):")
    for label, command in (("gzip -6", ["gzip", "-6", "-c"]),
                           ("zstd -3 (1 thread)", ["zstd", "-3", "-q", "-c", "-T1"]),
                           ("zstd -19 (2 threads)", ["zstd", "-19", "-q", "-c", "-T2"])):
        if shutil.which(command[0]) is None:
            print(f"  {label:<22} not installed")
            continue
        start = time.perf_counter()
        with open(bundle_path, "rb") as source, open(scratch / "compressed", "wb") as sink:
            subprocess.run([*command, "-"], stdin=source, stdout=sink, check=True)
        elapsed = time.perf_counter() - start
        packed = (scratch / "compressed").stat().st_size
        print(f"  {label:<22} {packed / result.size * 100:6.2f} % of the size "
              f"(saves {(result.size - packed) / 1e6:6.1f} MB) in {elapsed:6.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "bench-wheels")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--skip", action="append", default=[], choices=["import", "compression"],
                        help="leave out a part (zstd -19 alone takes a minute or two)")
    args = parser.parse_args()

    wheels = download(args.cache)
    scratch = Path(tempfile.mkdtemp(prefix="bench-bundle-", dir=REPO / ".cache"))
    try:
        tree = scratch / "dist-index"
        make_tree(wheels, tree)
        (scratch / "lockfiles").mkdir()
        (scratch / "lockfiles" / "pylock.bench.toml").write_text("lock-version = '1.0'\n")
        (scratch / "mirror.yaml").write_text("version: 1\nname: bench\n")
        size = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
        print(f"{len(wheels)} wheels, {size / 1e6:.0f} MB, machine: {os.cpu_count()} cores")

        out = scratch / "dist"
        tar_out = scratch / "tar-out"

        def reset_bundle() -> None:
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(tar_out, ignore_errors=True)
            out.mkdir()
            tar_out.mkdir()

        def ours_bundle() -> object:
            return build_bundle(tree, lockfile_dir=scratch / "lockfiles",
                                mirror_yaml=scratch / "mirror.yaml", out_dir=out, name="bench",
                                source_date_epoch=EPOCH, tool=False)

        (scratch / "tree.sums").write_text("".join(
            f"{entry.sha256}  dist-index/{rel}\n"
            for rel, entry in sorted(scan_tree(tree).files.items())))
        tar_cf = (f"tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner "
                  f"-cf {tar_out}/tree.tar dist-index")
        hashed = f"{tar_cf} && sha256sum {tar_out}/tree.tar > {tar_out}/tree.tar.sha256"
        bundling = compare("bundle", ours_bundle, {
            "tar --sort=name ... -cf": lambda: run_shell(tar_cf, cwd=scratch),
            "tar -cf + sha256sum": lambda: run_shell(hashed, cwd=scratch),
            "sha256sum -c + tar -cf + sha256sum": lambda: run_shell(
                f"sha256sum -c --quiet tree.sums && {hashed}", cwd=scratch)},
            reset_bundle, args.runs, size)

        tar_time = bundling["tar --sort=name ... -cf"]
        result = build_bundle(tree, lockfile_dir=scratch / "lockfiles",
                              mirror_yaml=scratch / "mirror.yaml", out_dir=scratch / "carried",
                              name="bench", source_date_epoch=EPOCH, tool=False)
        importing = {} if "import" in args.skip else bench_import(result, scratch, args.runs)
        if "compression" not in args.skip:
            bench_compression(result, scratch)
        print("\nratios:")
        print(f"  bundling throughput vs tar -cf:            "
              f"{tar_time / bundling['lockmirror']:.2f}x   (goal >= 0.8x)")
        for label in ("tar -cf + sha256sum", "sha256sum -c + tar -cf + sha256sum"):
            print(f"  vs {label + ':':<39} {bundling[label] / bundling['lockmirror']:.2f}x")
        for label, median in importing.items():
            if label != "lockmirror":
                print(f"  import speed-up vs {label + ':':<45} "
                      f"{median / importing['lockmirror']:.2f}x   (goal >= 2x)")
    finally:
        if args.keep:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
