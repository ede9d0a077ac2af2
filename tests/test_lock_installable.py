"""Issue 14: lockfiles every PEP 751 installer accepts, with build requirements
out of the runtime install, and no ``extra`` in any marker.

The judges are the installers themselves: packaging's ``Pylock.select`` (the
PEP 751 selection pip uses), and real ``uv pip install -r`` / ``pip install -r``
of the lockfile and ``pip install`` from the built mirror.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from fixtureindex import FixtureIndex
from helpers import subprocess_env
from packaging.pylock import Pylock, PylockSelectError
from packaging.version import Version
from test_lock import ARM, X86, lock, package, write_mirror

from lockmirror.config import load_config
from lockmirror.errors import ConfigError, LockmirrorError
from lockmirror.formats.lockfile import LockedPackage, Lockfile
from lockmirror.stages.lock import lock_sets
from lockmirror.targets import Target

try:
    import tomllib
except ImportError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]

HOST_IS_X86_311 = (sys.version_info[:2] == (3, 11) and sys.platform == "linux"
                   and os.uname().machine == "x86_64")
needs_host = pytest.mark.skipif(not HOST_IS_X86_311, reason="needs a cp311 x86_64 Linux host")

BUILD_SET = "  s:\n    requirements: [sdistonly, 'buildtool==1.0', newtool]\n"


def select(lockfile: Lockfile, target: str, full_version: str,
           groups: list[str] | None = None) -> dict[str, str]:
    """What a PEP 751 installer on ``target`` (Python ``full_version``) picks: name -> version.

    Raises PylockSelectError where an installer refuses the file.
    """
    spec = next(t for t in lockfile.targets if t.name == target)
    model = Target(spec.name, spec.python, spec.implementation, spec.platforms)
    pylock = Pylock.from_dict(tomllib.loads(lockfile.dumps()))
    chosen = pylock.select(environment=model.environment(full_version),  # type: ignore[arg-type]
                           tags=list(model.tags), dependency_groups=groups)
    return {str(p.name): str(p.version) for p, _ in chosen}


def test_no_lockfile_marker_names_an_extra(tmp_path: Path, fixture_index: FixtureIndex) -> None:
    lockfile = lock(tmp_path, fixture_index, "  e:\n    requirements: ['extrasy[a]']\n")["e"]
    assert all("extra" not in (p.marker or "") for p in lockfile.packages)
    leaky = package(lockfile, "leaky")
    assert leaky.targets == (X86,) and 'python_full_version < "3.11.3"' in (leaky.marker or "")
    assert "leaky" in select(lockfile, X86, "3.11.2")
    assert "leaky" not in select(lockfile, X86, "3.11.5")
    assert select(lockfile, ARM, "3.12.1") == {"extrasy": "1.0"}


def test_a_runtime_pin_and_a_build_requirement_at_other_versions(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    lockfile = lock(tmp_path, fixture_index, BUILD_SET)["s"]
    assert {str(p.version) for p in lockfile.packages if p.name == "buildtool"} == {"1.0", "2.0"}
    assert set(lockfile.build_groups) == {"build-newtool", "build-sdistonly"}
    for target, full in ((X86, "3.11.0"), (X86, "3.11.9"), (ARM, "3.12.3")):
        runtime = select(lockfile, target, full)  # the default group: the set, nothing else
        assert runtime == {"buildtool": "1.0", "newtool": "1.0", "sdistonly": "1.0",
                           "speedup": "1.2"}
        # each build group alone is the isolated environment that sdist builds in
        assert select(lockfile, target, full, ["build-newtool"]) == {
            "buildtool": "2.0", "fixture-backend": "1.0"}
        assert select(lockfile, target, full, ["build-sdistonly"]) == {"fixture-backend": "1.0"}
    assert package(lockfile, "buildtool", "2.0").build_only
    assert not package(lockfile, "buildtool", "1.0").build_only
    # selecting the runtime and a build environment together is a real conflict
    with pytest.raises(PylockSelectError, match="buildtool"):
        select(lockfile, X86, "3.11.0", ["runtime", "build-newtool"])


def test_a_set_without_sdists_has_no_groups(tmp_path: Path, fixture_index: FixtureIndex) -> None:
    lockfile = lock(tmp_path, fixture_index, "  w:\n    requirements: ['beta[fast]']\n")["w"]
    assert lockfile.build_groups == ()
    assert "dependency-groups" not in lockfile.dumps()
    assert all(p.marker is None or "dependency_groups" not in p.marker for p in lockfile.packages)


def test_the_final_guard_refuses_two_active_entries() -> None:
    from lockmirror.stages.lock_merge import check_one_entry_per_name

    target = Target("t", "3.11", platforms=("manylinux_2_17_x86_64",))
    marker = target.environment_marker()

    def entry(version: str, entry_marker: str | None) -> LockedPackage:
        return LockedPackage(name="soupsieve", version=Version(version),  # type: ignore[arg-type]
                             targets=("t",), index="", marker=entry_marker)

    from lockmirror.formats.lockfile import LockedTarget

    locked = LockedTarget("t", "3.11", "cp", ("manylinux_2_17_x86_64",), marker)
    # "3.11" and "3.11.9" both hold on 3.11.9: the overlap case of the issue
    lockfile = Lockfile("s", ("soupsieve",), (locked,), (
        entry("2.10", marker),
        entry("4.1.4", f"{marker} and python_full_version == '3.11.9'"),
    ), "sha256:0")
    with pytest.raises(LockmirrorError, match=r"2 active entries of soupsieve .*3\.11\.9"):
        check_one_entry_per_name(lockfile, {"t": target})
    fine = Lockfile("s", ("soupsieve",), (locked,), (
        entry("2.10", f"{marker} and python_full_version < '3.11.9'"),
        entry("4.1.4", f"{marker} and python_full_version >= '3.11.9'"),
    ), "sha256:0")
    check_one_entry_per_name(fine, {"t": target})


TARGETS_YAML = """\
version: 1
sources:
  - name: pypi
    url: https://pypi.org/simple/
targets:
{targets}
sets:
  s:
    requirements: [numpy]
"""


@pytest.mark.parametrize(("first", "second"), [
    ('{python: "3.11", platforms: [manylinux_2_17_x86_64]}',      # glibc levels
     '{python: "3.11", platforms: [manylinux_2_28_x86_64]}'),
    ('{python: "3.11", platforms: [manylinux_2_28_x86_64]}',      # glibc vs musl
     '{python: "3.11", platforms: [musllinux_1_2_x86_64]}'),
    ('{python: "3.11", platforms: [manylinux_2_28_x86_64]}',      # 3.11.9 is a 3.11
     '{python: "3.11.9", platforms: [manylinux_2_28_x86_64]}'),
])
def test_targets_markers_cannot_tell_apart_are_refused(first: str, second: str) -> None:
    from lockmirror.config import parse_config

    text = TARGETS_YAML.format(targets=f"  one: {first}\n  two: {second}")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "mirror.yaml")
    message = str(info.value)
    assert "set 's'" in message and "'one' and 'two'" in message
    assert "separate sets" in message and "merge" in message
    # in separate sets they are fine
    parse_config(text.replace("requirements: [numpy]", "requirements: [numpy]\n    targets: [one]")
                 + "  t:\n    requirements: [numpy]\n    targets: [two]\n", "mirror.yaml")


@pytest.mark.parametrize("second", [
    '{python: "3.11.4", platforms: [manylinux_2_28_x86_64]}',   # two patch releases
    '{python: "3.12", platforms: [manylinux_2_28_x86_64]}',
    '{python: "3.11.9", platforms: [manylinux_2_28_aarch64]}',
    '{python: "3.11.9", platforms: [win_amd64]}',
])
def test_targets_markers_tell_apart_are_accepted(second: str) -> None:
    from lockmirror.config import parse_config

    first = '{python: "3.11.9", platforms: [manylinux_2_28_x86_64]}'
    parse_config(TARGETS_YAML.format(targets=f"  one: {first}\n  two: {second}"), "mirror.yaml")


# --------------------------------------------------------------------------
# Real installers
# --------------------------------------------------------------------------


def _installed(python: Path) -> dict[str, str]:
    listed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "list",
                             "--format=json", "--disable-pip-version-check"],
                            capture_output=True, text=True, check=True)
    return {p["name"].lower(): p["version"] for p in json.loads(listed.stdout)}


def _install(installer: str, python: Path, args: list[str], tmp_path: Path) -> None:
    from uv import find_uv_bin

    if installer == "uv":
        cmd = [find_uv_bin(), "pip", "install", "--python", str(python), "--no-config",
               "--cache-dir", str(tmp_path / "uvcache"), *args]
    else:  # the test environment's pip (>= 26.1 reads pylock.toml) installs into the venv
        cmd = [sys.executable, "-m", "pip", "--python", str(python), "install", "--isolated",
               "--no-cache-dir", "--disable-pip-version-check", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=subprocess_env(installers=True),
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _fresh_venv(path: Path) -> Path:
    venv.create(path, with_pip=False)
    return path / "bin" / "python"


@needs_host
@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_build_only_packages_stay_out_of_the_runtime_install(
        tmp_path: Path, fixture_index: FixtureIndex, installer: str) -> None:
    lockfile = lock(tmp_path, fixture_index, "  l:\n    requirements: [sdistonly]\n")["l"]
    assert package(lockfile, "fixture-backend").build_only  # locked, and mirrored
    path = tmp_path / "pylock.l.toml"
    path.write_text(lockfile.dumps())
    python = _fresh_venv(tmp_path / "venv")
    # --index-url: where the sdist's isolated build finds its backend
    _install(installer, python, ["-r", str(path), "--index-url", fixture_index.url], tmp_path)
    assert _installed(python) == {"sdistonly": "1.0", "speedup": "1.2"}


@needs_host
@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_installers_accept_a_runtime_pin_beside_its_build_version(
        tmp_path: Path, fixture_index: FixtureIndex, installer: str) -> None:
    lockfile = lock(tmp_path, fixture_index, BUILD_SET)["s"]
    path = tmp_path / "pylock.s.toml"
    path.write_text(lockfile.dumps())
    python = _fresh_venv(tmp_path / "venv")
    index = ["--index-url", fixture_index.url]
    _install(installer, python, ["-r", str(path), *index], tmp_path)
    assert _installed(python) == {"buildtool": "1.0", "newtool": "1.0", "sdistonly": "1.0",
                                  "speedup": "1.2"}
    # a build group alone is accepted too, and is that sdist's build environment
    build_python = _fresh_venv(tmp_path / "build-venv")
    group = (["-r", str(path), "--group", "build-newtool"] if installer == "uv"
             else ["--group", f"{path}:build-newtool"])
    _install(installer, build_python, [*group, *index], tmp_path)
    assert _installed(build_python) == {"buildtool": "2.0", "fixture-backend": "1.0"}


@needs_host
def test_a_setup_requires_sdist_installs_offline_from_the_mirror(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    from lockmirror.stages.fetch import fetch_config
    from lockmirror.stages.index import build_index

    path = write_mirror(tmp_path, fixture_index, "  s:\n    requirements: [setupreq]\n")
    loaded = load_config(path)
    lockfile = lock_sets(loaded)[0].lockfile
    fetch_config(loaded)
    out = tmp_path / "dist-index"
    build_index([loaded.lockfile_path("s")], loaded.store_dir, out)
    python = _fresh_venv(tmp_path / "venv")
    # the mirror's own pages, over file://: no other index is reachable for the build
    _install("pip", python, ["--index-url", (out / "simple").as_uri() + "/", "setupreq"],
             tmp_path)
    assert _installed(python) == {"setupreq": "1.0"}
    helper = package(lockfile, "setuphelper")
    assert helper.build_only and helper.targets == (X86,)  # asked on this host only
    assert ARM in lockfile.backend_not_asked and "setupreq 1.0" in lockfile.backend_not_asked[ARM]
    assert X86 not in lockfile.backend_not_asked
    written = Lockfile.read(loaded.lockfile_path("s"))  # both survive the TOML round trip
    assert written.backend_not_asked == lockfile.backend_not_asked
    assert written.build_groups == ("build-setupreq",) and written.packages == lockfile.packages


@needs_host
def test_the_mirror_of_a_build_needing_another_version_verifies(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    """The constraints of the built index pin the runtime version, not both."""
    from lockmirror.stages.check_install import verify_closure
    from lockmirror.stages.fetch import fetch_config
    from lockmirror.stages.index import build_index

    loaded = load_config(write_mirror(tmp_path, fixture_index, BUILD_SET))
    lock_sets(loaded)
    fetch_config(loaded)
    out = tmp_path / "dist-index"
    build_index([loaded.lockfile_path("s")], loaded.store_dir, out)
    pins = (out / "constraints" / f"s-{X86}.txt").read_text().split()
    assert "buildtool==1.0" in pins and "buildtool==2.0" not in pins
    assert "fixture-backend==1.0" in pins  # a build-only pin with one version stays
    # both versions are mirrored
    assert {p.name for p in (out / "files" / "buildtool").glob("*.whl")} == {
        "buildtool-1.0-py3-none-any.whl", "buildtool-2.0-py3-none-any.whl"}
    report = verify_closure(out, targets=[X86])
    assert report.ok, [c.describe() for c in report.failures]


def test_uv_lock_with_the_landing_pages_project_snippet(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    """Found by an outside tester: a uv project configured with the landing page's
    snippet could not ``uv lock`` click (Windows-only colorama, never mirrored):
    uv resolves for every platform. The snippet now limits it to the mirror's
    targets, and uv locks from the mirror alone (``marked`` needs ``windep`` on
    Windows only)."""
    import html
    import re

    from uv import find_uv_bin

    from lockmirror.formats.landing_page import EXAMPLE_URL
    from lockmirror.stages.fetch import fetch_config
    from lockmirror.stages.index import build_index

    loaded = load_config(write_mirror(tmp_path, fixture_index, "  m:\n    requirements: [marked]\n"))
    lock_sets(loaded)
    fetch_config(loaded)
    out = tmp_path / "dist-index"
    build_index([loaded.lockfile_path("m")], loaded.store_dir, out)
    assert not (out / "files" / "windep").exists()
    snippets = [html.unescape(text) for text in re.findall(
        r"<pre data-mirror-config[^>]*>(.*?)</pre>", (out / "index.html").read_text(), re.S)]
    snippet = next(s for s in snippets if "[[tool.uv.index]]" in s)
    snippet = snippet.replace(EXAMPLE_URL, (out / "simple").as_uri() + "/")
    env = {**subprocess_env(offline=True), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}

    def uv_lock(project: Path, config: str) -> subprocess.CompletedProcess[str]:
        project.mkdir()
        (project / "pyproject.toml").write_text(
            '[project]\nname = "app"\nversion = "1.0"\nrequires-python = ">=3.11"\n'
            f'dependencies = ["marked"]\n\n{config}')
        return subprocess.run([find_uv_bin(), "lock", "--cache-dir", str(tmp_path / "uvcache")],
                              cwd=project, capture_output=True, text=True, timeout=300,
                              env=env, check=False)

    done = uv_lock(tmp_path / "app", snippet)
    assert done.returncode == 0, done.stdout + done.stderr
    locked = tomllib.loads((tmp_path / "app" / "uv.lock").read_text())
    assert {p["name"] for p in locked["package"]} >= {"marked", "linuxdep", "armdep", "olddep"}
    # without the environments uv asks the mirror for windep, which it does not carry
    done = uv_lock(tmp_path / "plain", snippet.split("[tool.uv]")[0])
    assert done.returncode != 0 and "windep" in done.stderr
