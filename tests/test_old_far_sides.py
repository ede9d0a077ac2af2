"""Far sides on old Pythons and old pips (found by an outside tester).

* a CPython 3.7-or-older target takes the ``cp36m``-style wheels its Python
  installs (it locked their sdists, as if the ABI were ``cp36``);
* the index writes ``requirements/<set>-<target>.txt``, the set's locked
  closure with the sha256 of every file, so a pip that reads no lockfile
  installs with ``--require-hashes`` and refuses a file altered on the mirror.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fixtureindex import Catalogue, FixtureIndex, build_sdist, build_wheel
from helpers import subprocess_env
from index_mirror import FixtureMirror, make_built_mirror
from test_far_side import INSTALLER_CACHE

from lockmirror.config import load_config
from lockmirror.errors import ConfigError
from lockmirror.formats.lockfile import Lockfile
from lockmirror.formats.manifest import MANIFEST_NAME, Manifest
from lockmirror.fsutil import sha256_bytes
from lockmirror.stages.installers import InstallerUnavailable, ensure_installer, find_installers
from lockmirror.stages.lock import lock_sets
from lockmirror.stages.lock_inputs import input_hash, input_parts
from lockmirror.targets import Target

# -- the ABI of an old CPython --------------------------------------------------

MARKUPSAFE_36 = "MarkupSafe-2.0.1-cp36-cp36m-manylinux_2_5_x86_64.manylinux1_x86_64.whl"
PYYAML_36 = "PyYAML-6.0.1-cp36-cp36m-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"


@pytest.mark.parametrize(("python", "wheel", "fits"), [
    ("3.6", MARKUPSAFE_36, True),
    ("3.6", PYYAML_36, True),
    ("3.6", "x-1.0-cp36-cp36-manylinux_2_17_x86_64.whl", False),  # no pymalloc: not 3.6's
    ("3.7", "x-1.0-cp37-cp37m-manylinux_2_17_x86_64.whl", True),
    ("3.8", "x-1.0-cp38-cp38-manylinux_2_17_x86_64.whl", True),
    ("3.8", "x-1.0-cp38-cp38m-manylinux_2_17_x86_64.whl", False),
    ("3.6", "x-1.0-cp36-abi3-manylinux_2_17_x86_64.whl", True),
])
def test_an_old_cpython_target_takes_the_wheels_its_python_reports(
        python: str, wheel: str, fits: bool) -> None:
    target = Target("t", python, platforms=("manylinux_2_17_x86_64",))
    assert (target.wheel_rank(wheel) is not None) is fits


def test_an_abi_set_by_hand_still_wins() -> None:
    target = Target("t", "3.6", abi="cp36dm", platforms=("manylinux_2_17_x86_64",))
    assert target.wheel_rank("x-1.0-cp36-cp36dm-manylinux_2_17_x86_64.whl") is not None
    assert target.wheel_rank(MARKUPSAFE_36) is None


def test_a_py36_target_locks_the_cp36m_wheels_not_the_sdists(
        tmp_path: Path, make_index: Callable[..., FixtureIndex]) -> None:
    """`lock: set 'cext': preparing the metadata of MarkupSafe-2.0.1.tar.gz for target
    'py36' (no wheel of markupsafe 2.0.1 for it)` while PyPI has its cp36m wheel."""
    files = tmp_path / "files"
    for tag in ("cp36-cp36m-manylinux_2_5_x86_64.manylinux1_x86_64",
                "cp37-cp37m-manylinux_2_5_x86_64.manylinux1_x86_64",
                "cp38-cp38-manylinux_2_5_x86_64.manylinux1_x86_64"):
        build_wheel(files, "markupsafe", "2.0.1", tag=tag)
    # the sdist's build backend is not on the index: preparing its metadata fails
    build_sdist(files, "markupsafe", "2.0.1", build_requires=("no-such-backend",))
    index = make_index(files)
    mirror = tmp_path / "mirror.yaml"
    mirror.write_text(_mirror_yaml(index.url, {
        "py36": '{python: "3.6", platforms: [manylinux_2_17_x86_64]}',
        "py37": '{python: "3.7", platforms: [manylinux_2_17_x86_64]}',
        "py38": '{python: "3.8", platforms: [manylinux_2_17_x86_64]}'},
        "cext", "markupsafe==2.0.1") + f"paths:\n  cache: {tmp_path / 'cache'}\n")
    [result] = lock_sets(load_config(mirror))
    [package] = result.lockfile.packages
    assert package.targets == ("py36", "py37", "py38")
    wheels = sorted(f.filename.split("-")[3] for f in package.wheels)
    assert wheels == ["cp36m", "cp37m", "cp38"]


def _mirror_yaml(url: str, targets: dict[str, str], set_name: str, requirement: str) -> str:
    """mirror.yaml with one source, these targets (name: flow mapping) and one set."""
    lines = "".join(f"  {name}: {spec}\n" for name, spec in targets.items())
    return (f"version: 1\nname: test\nsources:\n  - name: fixture\n    url: {url}\n"
            f"targets:\n{lines}sets:\n  {set_name}:\n    requirements: [{requirement}]\n")


def _fingerprints(tmp_path: Path, target: str) -> tuple[str, dict[str, str]]:
    mirror = tmp_path / "mirror.yaml"
    mirror.write_text(_mirror_yaml("https://fixture.example/simple/", {"old": target},
                                   "s", "markupsafe"))
    loaded = load_config(mirror)
    return input_hash(loaded, "s"), input_parts(loaded, "s")


def test_a_lockfile_locked_for_the_old_default_abi_is_not_current(tmp_path: Path) -> None:
    """A py36 target's lockfile was locked for cp36 (sdists where cp36m wheels exist):
    its fingerprint is now that of `abi: cp36m`, so `lock --check` asks for a new lock;
    a 3.8+ target's fingerprint is unchanged (no lockfile goes stale for nothing)."""
    plain = _fingerprints(tmp_path, '{python: "3.6", platforms: [manylinux_2_17_x86_64]}')
    spelled = _fingerprints(tmp_path, '{python: "3.6", platforms: [manylinux_2_17_x86_64], '
                                      'abi: cp36m}')
    assert plain == spelled
    new = _fingerprints(tmp_path, '{python: "3.11", platforms: [manylinux_2_17_x86_64]}')
    assert new != _fingerprints(tmp_path, '{python: "3.11", platforms: '
                                          '[manylinux_2_17_x86_64], abi: cp311}')


@pytest.mark.parametrize("abi", ["cp37m", "cp36"])
def test_a_wrong_abi_on_an_old_python_is_told_the_one_it_reports(
        tmp_path: Path, abi: str) -> None:
    """`abi: cp36` (no such ABI: 3.6 reports cp36m) validated and locked sdists only."""
    with pytest.raises(ConfigError, match=r"\(use cp36m, abi3 or none, or leave abi out\)"):
        _fingerprints(tmp_path, '{python: "3.6", platforms: [manylinux_2_17_x86_64], '
                                f'abi: {abi}}}')


# -- hash-checked installs with a pip that reads no lockfile ---------------------


@pytest.fixture(scope="module")
def mirror(catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> FixtureMirror:
    return make_built_mirror(catalogue, tmp_path_factory.mktemp("old-far-side"))


def test_the_index_writes_each_targets_closure_with_hashes(mirror: FixtureMirror) -> None:
    text = (mirror.out / "requirements" / "core-host.txt").read_text()
    assert "#   pip install --require-hashes -r requirements/core-host.txt\n" in text
    lockfile = Lockfile.read(mirror.lockfiles[0])
    runtime = [p for p in lockfile.packages_for("host") if not p.build_only]
    expected = "".join(f"{p.name}=={p.version}" + "".join(
        f" \\\n    --hash=sha256:{digest}" for digest in sorted(f.sha256 for f in p.files)) + "\n"
        for p in sorted(runtime, key=lambda p: p.name))
    assert text.split("\n", 4)[4] == expected
    assert "fixture-backend" not in text  # build-only: pip builds the sdist apart
    manifest = Manifest.read(mirror.out / MANIFEST_NAME)
    assert {"requirements/core-host.txt", "requirements/core-arm.txt",
            "requirements/extra-host.txt"} <= set(manifest.installable().files)


def pip_install(pip: Path, index: Path, requirements: Path, venv: Path) -> str:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    done = subprocess.run(
        [str(venv / "bin" / "python"), str(pip / "pip"), "install", "--isolated",
         "--no-cache-dir", "--disable-pip-version-check", "--require-hashes",
         "-r", str(requirements), "--index-url", (index / "simple").as_uri() + "/"],
        env=subprocess_env(offline=True), capture_output=True, text=True, timeout=300,
        check=False)
    return f"exit {done.returncode}\n{done.stdout}{done.stderr}"


def test_an_old_pip_installs_a_set_hash_checked_and_refuses_an_altered_file(
        mirror: FixtureMirror, tmp_path: Path) -> None:
    """pip 21.2.3 (RHEL 9; the pips before 26.1 read no lockfile) installs the set
    with --require-hashes; a wheel swapped on the mirror, its pages' #sha256 changed
    to match, is refused: the hashes come from the lockfile, not the server."""
    try:
        pip = ensure_installer(find_installers(["pip 21.2.3"])[0], INSTALLER_CACHE)
    except InstallerUnavailable as exc:
        pytest.skip(str(exc))
    output = pip_install(pip, mirror.out, mirror.out / "requirements" / "core-host.txt",
                         tmp_path / "venv")
    assert output.startswith("exit 0"), output
    assert "Successfully installed alpha-1.1 beta-1.0 foo-bar-baz-1.0 native-1.0 " \
           "sdistonly-1.0 speedup-1.2 yanky-1.1" in output, output

    altered = tmp_path / "altered"
    shutil.copytree(mirror.out, altered)
    wheel = next((altered / "files" / "speedup").glob("*.whl"))
    before = sha256_bytes(wheel.read_bytes())
    data = wheel.read_bytes()
    wheel.unlink()  # a hard link into the module's store: never written through
    wheel.write_bytes(data + b"\0")
    after = sha256_bytes(wheel.read_bytes())
    for page in (altered / "simple" / "speedup").iterdir():
        text = page.read_text()
        page.unlink()
        page.write_text(text.replace(before, after))
    output = pip_install(pip, altered, altered / "requirements" / "core-host.txt",
                         tmp_path / "venv2")
    assert not output.startswith("exit 0"), output
    assert "DO NOT MATCH THE HASHES" in output and f"Got        {after}" in output, output
