"""Across the gap: bundle on one side; on the other, install lockmirror from the
bundle's own wheels with no index, import, serve, and pip install from the mirror.

The build side is the real index stage over the fixture catalogue
(``servers.index_tree``). The bundle carries lockmirror's wheel and its
dependencies' wheels; the dependency wheels are repacked from this
environment's installed distributions (``LOCKMIRROR_TOOL_WHEELS=installed``,
set by conftest.py), so the suite needs no package index.

The far side runs with proxies pointing at a closed port, so anything that
tried the network there would fail; only the client installing from the
served mirror on 127.0.0.1 talks HTTP.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests
from helpers import subprocess_env
from index_mirror import pip_install
from servers import ServerProcess, free_port, index_tree  # noqa: F401 - fixture
from test_bundle import TOOL_CACHE

from lockmirror.formats.manifest import Manifest, scan_tree
from lockmirror.stages.bundle import build_bundle


def run(argv: list[str], env: dict[str, str], cwd: Path | None = None,
        timeout: float = 180) -> str:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, f"{argv}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_bundle_crosses_the_gap_and_serves_pip(index_tree: Path, tmp_path: Path) -> None:  # noqa: F811
    # -- build side ----------------------------------------------------------
    lockfiles = index_tree.parent / "lockfiles"
    mirror_yaml = tmp_path / "mirror.yaml"
    mirror_yaml.write_text("version: 1\nname: fixture\n")
    result = build_bundle(index_tree, lockfile_dir=lockfiles, mirror_yaml=mirror_yaml,
                          out_dir=tmp_path / "dist", name="fixture", source_date_epoch=0,
                          cache_dir=TOOL_CACHE)
    assert result.tool_wheels > 10
    carried = tmp_path / "media"  # what crosses: the tar and its .sha256, nothing else
    carried.mkdir()
    for path in (result.path, result.checksums):
        (carried / path.name).write_bytes(path.read_bytes())
    bundle = carried / result.path.name

    # -- far side: install the tool from the bundle, no index -----------------
    env = subprocess_env(offline=True)
    unpacked = tmp_path / "far" / "unpacked"
    unpacked.mkdir(parents=True)
    # as README.txt says: take the tool's wheels out with tar, then pip --no-index
    run(["tar", "xf", str(bundle), "--wildcards", "*/tool/*"], env, cwd=unpacked)
    tool = unpacked / f"lockmirror-fixture-{result.content_id}" / "tool"
    venv = tmp_path / "far" / "venv"
    run([sys.executable, "-m", "venv", str(venv)], env)
    run([str(venv / "bin" / "pip"), "install", "--quiet", "--no-index", "--find-links",
         str(tool), "lockmirror"], env, timeout=300)
    lockmirror = str(venv / "bin" / "lockmirror")
    out = run([lockmirror, "import", str(bundle), "--into", str(tmp_path / "far" / "mirror")],
              env, cwd=tmp_path / "far")
    assert "every file verified" in out
    mirror = tmp_path / "far" / "mirror"
    assert scan_tree(mirror) == Manifest.read(index_tree / "manifest.json")
    run([lockmirror, "verify", str(mirror)], env)

    # -- far side: serve it, and install from it with pip --------------------
    port = free_port()
    server = ServerProcess("serve", [lockmirror, "serve", str(mirror), "--port", str(port),
                                     "--quiet"], tmp_path / "far", env=env)
    try:
        server.wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/health",
                                               timeout=2, proxies={"http": ""}).ok)
        # beta pulls alpha and foo-bar-baz; sdistonly is built from its sdist with
        # the mirror's own fixture-backend; yanky skips the yanked 1.1
        installed = pip_install(f"http://127.0.0.1:{port}/simple/",
                                ["beta", "yanky", "sdistonly"], tmp_path / "client")
    finally:
        server.stop()
    assert installed == ("alpha==1.1 beta==1.0 foo-bar-baz==1.0 sdistonly==1.0 "
                         "speedup==1.2 yanky==1.0")


def test_delta_against_the_same_index_carries_no_index_file(
        index_tree: Path, tmp_path: Path) -> None:  # noqa: F811
    """Issue 15: ``bundle --since`` against an identical mirror carried every
    page of the real index stage's tree (186 of the bundled mirror's 429 files)."""
    mirror_yaml = tmp_path / "mirror.yaml"
    mirror_yaml.write_text("version: 1\nname: fixture\n")
    result = build_bundle(index_tree, lockfile_dir=index_tree.parent / "lockfiles",
                          mirror_yaml=mirror_yaml, out_dir=tmp_path / "dist", name="fixture",
                          since=index_tree, source_date_epoch=0)
    pages = [p for p in Manifest.read(index_tree / "manifest.json").files
             if not p.startswith("files/")]
    assert len(pages) > 10 and result.index_files_total > len(pages)
    assert result.kind == "delta" and result.index_files_carried == 0
