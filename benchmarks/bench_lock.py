"""Lock the bundled sets for both targets: lockmirror vs uv vs pip, cold and warm.

    .venv/bin/python benchmarks/bench_lock.py [--rounds 1]

Needs the network (the real index in mirror.yaml). For each tool:

- lockmirror: `doit lock` in a scratch copy of the repository (dodo.py and
  mirror.yaml, no lockfiles), one process for every set and target;
- uv: `uv pip compile` once per set and target (--python-platform,
  --python-version), the sum of the runs;
- pip: `pip install --dry-run --report - --only-binary :all: --platform ...
  --python-version ... --ignore-installed`, once per set and target (pip
  refuses sdists in this mode, so a set that needs one fails: reported).

Cold = empty caches for each tool; warm = the same again with the caches the
cold run left (lockfiles removed, so everything is re-resolved). Then the
no-op `doit lock` with current lockfiles, which must touch no network.
Prints the times and the ratios; the goals are lockmirror <= uv (sum) cold
and warm, and the no-op under 0.3 s.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from lockmirror.config import load_config  # noqa: E402
from lockmirror.stages.check_install import uv_platform  # noqa: E402

BIN = Path(sys.executable).parent


LAST_ERROR: list[str] = []


def run(cmd: list[str], cwd: Path | None = None,
        env: dict[str, str] | None = None) -> tuple[float, bool]:
    started = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    LAST_ERROR[:] = errors[-1:]
    return time.perf_counter() - started, result.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="warm rounds (median)")
    args = parser.parse_args()
    loaded = load_config(ROOT / "mirror.yaml")
    config = loaded.config
    index = config.sources_by_priority()[0].url
    jobs = [(s, t) for s in config.sets for t in config.set_targets(s)]
    from uv import find_uv_bin

    uv = find_uv_bin()
    with tempfile.TemporaryDirectory(prefix="bench-lock-") as tmp_name:
        tmp = Path(tmp_name)
        repo = tmp / "repo"
        repo.mkdir()
        shutil.copy(ROOT / "dodo.py", repo / "dodo.py")
        shutil.copy(ROOT / "mirror.yaml", repo / "mirror.yaml")
        for set_name in config.sets:
            requirements = config.sets[set_name].requirements
            (tmp / f"{set_name}.in").write_text("\n".join(requirements) + "\n")

        def lockmirror_run() -> float:
            shutil.rmtree(repo / "lockfiles", ignore_errors=True)
            for db in repo.glob(".doit.db*"):
                db.unlink()
            seconds, ok = run([str(BIN / "doit"), "lock"], cwd=repo)
            if not ok:
                raise SystemExit("doit lock failed")
            return seconds

        def uv_run(cache: Path) -> float:
            total = 0.0
            for set_name, target_name in jobs:
                target = config.targets[target_name]
                platform = uv_platform(target.platforms).python_platform
                seconds, ok = run([uv, "pip", "compile", str(tmp / f"{set_name}.in"), "--no-config",
                                   "--quiet", "--python-version", target.python,
                                   "--python-platform", platform,
                                   "--index-url", index, "--cache-dir", str(cache),
                                   "-o", str(tmp / f"uv-{set_name}-{target_name}.txt")])
                if not ok:
                    raise SystemExit(f"uv failed for {set_name} on {target_name}")
                total += seconds
            return total

        def pip_run(cache: Path) -> tuple[float, list[str]]:
            total, failed = 0.0, []
            for set_name, target_name in jobs:
                target = config.targets[target_name]
                cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report",
                       str(tmp / "report.json"), "--ignore-installed", "--only-binary", ":all:",
                       "--python-version", target.python, "--index-url", index,
                       "--cache-dir", str(cache), "--disable-pip-version-check",
                       "-r", str(tmp / f"{set_name}.in")]
                for platform in target.platforms:
                    cmd += ["--platform", platform]
                seconds, ok = run(cmd)
                total += seconds
                if not ok:
                    failed.append(f"{set_name}/{target_name}: {' '.join(LAST_ERROR)}")
            return total, failed

        results: dict[str, dict[str, float]] = {}
        env_cache = repo / ".cache"
        print(f"{len(config.sets)} sets x targets = {len(jobs)} resolutions against {index}")
        shutil.rmtree(env_cache, ignore_errors=True)
        results["lockmirror"] = {"cold": lockmirror_run()}
        results["lockmirror"]["warm"] = statistics.median(
            lockmirror_run() for _ in range(args.rounds))
        uv_cache = tmp / "uv-cache"
        results["uv"] = {"cold": uv_run(uv_cache)}
        results["uv"]["warm"] = statistics.median(uv_run(uv_cache) for _ in range(args.rounds))
        pip_cache = tmp / "pip-cache"
        cold, failed = pip_run(pip_cache)
        warm, _ = pip_run(pip_cache)
        results["pip"] = {"cold": cold, "warm": warm}

        run([str(BIN / "doit"), "lock"], cwd=repo)  # warm the OS caches once
        noop = []
        for _ in range(7):
            seconds, ok = run([str(BIN / "doit"), "lock"], cwd=repo)
            noop.append(seconds)

    report(results, failed, noop)
    return 0


def report(results: dict[str, dict[str, float]], failed: list[str], noop: list[float]) -> None:
    """Print the table, the ratios and the no-op figure."""
    print(f"\n{'tool':<28}{'cold s':>10}{'warm s':>10}")
    for tool, label in (("lockmirror", "lockmirror (doit lock)"), ("uv", "uv pip compile (sum)"),
                        ("pip", "pip --dry-run --report")):
        print(f"{label:<28}{results[tool]['cold']:>10.2f}{results[tool]['warm']:>10.2f}")
    if failed:
        print("pip failed (its --platform admits no older manylinux wheel, and --only-binary "
              "refuses sdists):\n  " + "\n  ".join(failed))
    for phase in ("cold", "warm"):
        ratio = results["uv"][phase] / results["lockmirror"][phase]
        pip_ratio = results["pip"][phase] / results["lockmirror"][phase]
        verdict = "meets" if ratio >= 1 else "MISSES"
        print(f"{phase}: lockmirror is {ratio:.2f}x uv's speed ({verdict} goal >= 1.0), "
              f"{pip_ratio:.2f}x pip's")
    best = min(noop)
    print(f"no-op doit lock: best {best:.3f} s, median {statistics.median(noop):.3f} s "
          f"({'meets' if best < 0.3 else 'MISSES'} goal < 0.3 s)")


if __name__ == "__main__":
    raise SystemExit(main())
