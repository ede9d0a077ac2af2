"""The bundled sets locked against the real PyPI, compared with uv (opt-in).

Run with ``pytest -m network tests/test_lock_network.py``. For each set and
target, lockmirror's pins are compared package by package with
``uv pip compile --python-platform ... --python-version ...`` run in the same
test. Known, explained differences are listed in EXPLAINED.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from lockmirror.config import load_config
from lockmirror.formats.lockfile import Lockfile
from lockmirror.stages.check_install import uv_platform
from lockmirror.stages.lock import lock_sets

ROOT = Path(__file__).resolve().parent.parent

# (set, target, package) -> why lockmirror and uv legitimately differ.
EXPLAINED: dict[tuple[str, str, str], str] = {}


def uv_compile(requirements: list[str], python: str, platform: str, tmp: Path) -> dict[str, str]:
    from uv import find_uv_bin

    tmp.mkdir(parents=True, exist_ok=True)
    req = tmp / "requirements.in"
    req.write_text("\n".join(requirements) + "\n")
    out = subprocess.run(
        [find_uv_bin(), "pip", "compile", str(req), "--no-config", "--no-header",
         "--no-annotate", "--python-version", python, "--python-platform", uv_platform([platform]).python_platform,
         "--index-url", "https://pypi.org/simple/", "--cache-dir", str(tmp / "uv-cache")],
        capture_output=True, text=True, check=True, timeout=600).stdout
    pins = {}
    for line in out.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "==" in line:
            name, version = line.split(";")[0].split("==")
            pins[str(canonicalize_name(name.strip()))] = version.strip()
    return pins


@pytest.mark.network
def test_bundled_sets_match_uv(tmp_path: Path) -> None:
    work = tmp_path / "repo"
    work.mkdir()
    shutil.copy(ROOT / "mirror.yaml", work / "mirror.yaml")
    loaded = load_config(work / "mirror.yaml")
    results = lock_sets(loaded)
    differences = []
    for result in results:
        lockfile = Lockfile.read(result.path)
        spec = loaded.config.sets[result.set_name]
        for target in lockfile.targets:
            ours = {str(p.name): str(p.version) for p in lockfile.packages_for(target.name)
                    if not p.build_only}
            theirs = uv_compile(list(spec.requirements), target.python, target.platforms[0],
                                tmp_path / f"{result.set_name}-{target.name}")
            for name in sorted(set(ours) | set(theirs)):
                if ours.get(name) != theirs.get(name):
                    key = (result.set_name, target.name, name)
                    if key not in EXPLAINED:
                        differences.append(f"{key}: lockmirror {ours.get(name)} uv {theirs.get(name)}")
    assert not differences, "\n".join(differences)
