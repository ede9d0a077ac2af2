"""Far sides on old Pythons and old pips (found by an outside tester).

* a CPython 3.7-or-older target takes the ``cp36m``-style wheels its Python
  installs (it locked their sdists, as if the ABI were ``cp36``);
* the index writes ``requirements/<set>-<target>.txt``, the set's locked
  closure with the sha256 of every file, so a pip that reads no lockfile
  installs with ``--require-hashes`` and refuses a file altered on the mirror.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fixtureindex import FixtureIndex, build_sdist, build_wheel

from lockmirror.config import load_config
from lockmirror.errors import ConfigError
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
    target = Target("t", "3.6", abi="cp36", platforms=("manylinux_2_17_x86_64",))
    assert target.wheel_rank("x-1.0-cp36-cp36-manylinux_2_17_x86_64.whl") is not None
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
    mirror.write_text(f"""\
version: 1
name: test
sources:
  - name: fixture
    url: {index.url}
targets:
  py36: {{python: "3.6", platforms: [manylinux_2_17_x86_64]}}
  py37: {{python: "3.7", platforms: [manylinux_2_17_x86_64]}}
  py38: {{python: "3.8", platforms: [manylinux_2_17_x86_64]}}
sets:
  cext:
    requirements: [markupsafe==2.0.1]
paths:
  cache: {tmp_path / "cache"}
""")
    [result] = lock_sets(load_config(mirror))
    [package] = result.lockfile.packages
    assert package.targets == ("py36", "py37", "py38")
    wheels = sorted(f.filename.split("-")[3] for f in package.wheels)
    assert wheels == ["cp36m", "cp37m", "cp38"]


def _fingerprints(tmp_path: Path, target: str) -> tuple[str, dict[str, str]]:
    mirror = tmp_path / "mirror.yaml"
    mirror.write_text(f"""\
version: 1
name: test
sources:
  - name: fixture
    url: https://fixture.example/simple/
targets:
  old: {target}
sets:
  s:
    requirements: [markupsafe]
""")
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


def test_a_wrong_abi_on_an_old_python_is_told_the_one_it_reports(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\(use cp36m, abi3 or none, or leave abi out\)"):
        _fingerprints(tmp_path, '{python: "3.6", platforms: [manylinux_2_17_x86_64], '
                                'abi: cp37m}')
