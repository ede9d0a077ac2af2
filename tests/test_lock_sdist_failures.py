"""Sdists whose metadata cannot be prepared: the backend's own error kept in the
message, each build and failure said as it goes, and a project whose builds keep
failing for a target stopped after a few. On the fixture index, hermetic (the
sdists are built here)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fixtureindex import FixtureIndex, build_wheel
from fixtureindex.fixture_backend import core_metadata, write_sdist
from helpers import mirror_yaml
from test_lock import ARM, X86, lock, write_mirror

from lockmirror.commands.lock import LockLine
from lockmirror.config import load_config
from lockmirror.errors import ResolutionError
from lockmirror.stages.lock import lock_sets
from lockmirror.stages.lock_watch import LockProgress

# an in-tree backend that fails as a setup.py does: chatter, then a traceback
FAILING_BACKEND = '''\
def get_requires_for_build_wheel(config_settings=None):
    print("running egg_info")
    print("writing {name}.egg-info/PKG-INFO")
    raise AttributeError("cython_sources")
'''


# a backend that fails as meson-python does: its error, then where its log was
LOGGING_BACKEND = '''\
def get_requires_for_build_wheel(config_settings=None):
    print('ERROR: Dependency "cairo" not found (tried pkg-config and cmake)')
    print("A full log can be found at /gone/.mesonpy-x/meson-logs/meson-log.txt")
    raise SystemExit(1)
'''


def failing_sdist(out_dir: Path, name: str, version: str, backend: str = FAILING_BACKEND
                  ) -> Path:
    """An sdist whose metadata only its backend knows (Metadata-Version 2.1), and
    whose backend fails in ``get_requires_for_build_wheel`` after printing."""
    pyproject = ('[build-system]\nrequires = []\nbuild-backend = "failing_backend"\n'
                 'backend-path = ["."]\n')
    files = {"PKG-INFO": core_metadata(name, version, metadata_version="2.1").encode(),
             "pyproject.toml": pyproject.encode(),
             "failing_backend.py": backend.format(name=name).encode()}
    return out_dir / write_sdist(out_dir, name, version, files)


def lock_fails(tmp_path: Path, fixture_index: FixtureIndex, requirement: str) -> str:
    """The error of locking a set of ``requirement`` alone, which must fail."""
    with pytest.raises(ResolutionError) as info:
        lock(tmp_path, fixture_index, f"  n:\n    requirements: [{requirement}]\n")
    return str(info.value)


def test_a_failed_build_keeps_the_backends_own_error(tmp_path: Path,
                                                    fixture_index: FixtureIndex) -> None:
    fixture_index.add_file(failing_sdist(tmp_path / "files", "nobuild", "5.4.1"))
    with pytest.raises(ResolutionError) as info:
        lock(tmp_path, fixture_index, "  n:\n    requirements: [nobuild]\n")
    text = str(info.value)
    assert ("no candidate of nobuild for 'nobuild' is left: preparing the metadata of "
            "nobuild-5.4.1.tar.gz failed: Backend subprocess exited when trying to invoke "
            "get_requires_for_build_wheel: ") in text, text
    assert text.count("AttributeError: cython_sources") == 1, text  # the build's last line
    assert "failed for" not in text and "File \"" not in text and "\n" not in text, text
    assert f"target '{X86}'" in text or f"target '{ARM}'" in text, text  # the first to fail


def test_a_failed_build_names_no_log_it_removed_and_says_when_it_is_remembered(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    """The build's directory is gone when its error is read: a pointer to a log in it
    sent an outside re-tester to a file that did not exist. The next lock does not run
    the backend again, and says that the failure is remembered and how to retry."""
    fixture_index.add_file(failing_sdist(tmp_path / "files", "nocairo", "1.29.0",
                                         LOGGING_BACKEND))
    texts = [lock_fails(tmp_path, fixture_index, "nocairo") for _run in range(2)]
    assert 'Dependency "cairo" not found' in texts[0], texts[0]
    assert all("full log" not in text for text in texts), texts
    assert "remembered from an earlier run: delete " not in texts[0], texts[0]
    assert "remembered from an earlier run: delete " in texts[1], texts[1]
    assert f"{tmp_path}" in texts[1].split("remembered from an earlier run: delete ")[1]


# a backend killed by a signal: Ctrl-C reaches the backend's process group too
KILLED_BACKEND = '''\
import os, signal
def get_requires_for_build_wheel(config_settings=None):
    os.kill(os.getpid(), signal.SIGKILL)
'''


def test_a_backend_killed_by_a_signal_is_not_remembered_as_the_sdists_failure(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    """A build stopped by Ctrl-C (or the OOM killer) says nothing of the sdist: it
    was remembered as a failure, and every later lock passed the sdist over."""
    fixture_index.add_file(failing_sdist(tmp_path / "files", "stopped", "1.0",
                                         KILLED_BACKEND))
    texts = [lock_fails(tmp_path, fixture_index, "stopped") for _run in range(2)]
    assert "preparing the metadata of stopped-1.0.tar.gz failed" in texts[0], texts[0]
    assert all("remembered from an earlier run" not in text for text in texts), texts
    assert not list(tmp_path.rglob("*.failed.json"))


def test_sdist_builds_that_keep_failing_stop_the_lock_after_three_saying_so(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    files = tmp_path / "files"
    fixture_index.add_file(build_wheel(files, "manybroken", "1.0"))
    for version in ("2.0", "3.0", "4.0", "5.0"):  # the newest four: sdists that do not build
        fixture_index.add_file(failing_sdist(files, "manybroken", version))
    loaded = load_config(write_mirror(tmp_path, fixture_index,
                                      "  m:\n    requirements: [manybroken]\n"))
    events: list[LockProgress] = []
    with pytest.raises(ResolutionError) as info:
        lock_sets(loaded, progress=events.append, jobs=1)
    text = str(info.value)
    assert "gave up on manybroken for target '" in text, text
    assert "sdists 5.0, 4.0, 3.0 failed one after another" in text, text
    assert "AttributeError: cython_sources" in text, text
    assert "pin manybroken==1.0 (its newest release with a wheel for '" in text, text
    # its one wheel is pure: no platform tag would bring another (the hint said one would)
    assert "newer platform tag" not in text and "no wheel for" not in text, text
    assert "sdists: deny" in text, text
    # three builds, not four: the fourth sdist is never even downloaded
    downloaded = {r.path.rsplit("/", 1)[-1] for r in fixture_index.requests}
    assert {"manybroken-5.0.tar.gz", "manybroken-3.0.tar.gz"} <= downloaded, downloaded
    assert "manybroken-2.0.tar.gz" not in downloaded, downloaded
    # said as it went, each a line of its own on the live line's stream
    stream = io.StringIO()
    line = LockLine(stream, interval=3600.0)
    for event in events:
        line(event)
    said = stream.getvalue().splitlines()
    target = next(e.target for e in events if e.note)
    assert (f"lock: set 'm': preparing the metadata of manybroken-5.0.tar.gz for target "
            f"'{target}' (no wheel of manybroken 5.0 for it)") in said, said
    assert any(text.startswith(f"lock: set 'm': skipped manybroken 4.0 on {target}: preparing "
                               "the metadata of manybroken-4.0.tar.gz failed: ")
               for text in said), said


@pytest.mark.parametrize(("wheel_tag", "says", "not_said"), [
    ("cp311-cp311-manylinux_2_34_x86_64", "give the target a newer platform tag that "
     "platbroken's wheels name (manylinux_2_34_x86_64), ", "no wheel for"),
    ("cp311-cp311-win_amd64", "platbroken has no wheel for manylinux x86_64 in any release: "
     "pin platbroken to a release that builds here", "newer platform tag"),
], ids=["newer-tag", "no-wheel-for-the-platform"])
def test_a_project_whose_sdists_keep_failing_is_told_a_newer_tag_only_when_a_wheel_has_one(
        tmp_path: Path, fixture_index: FixtureIndex, wheel_tag: str, says: str,
        not_said: str) -> None:
    """pycairo for macOS targets: no macOS wheel at all, yet the hint said to give the
    target a newer platform tag. A newer tag is named only when a wheel has it."""
    files = tmp_path / "files"
    fixture_index.add_file(build_wheel(files, "platbroken", "1.0", tag=wheel_tag))
    for version in ("2.0", "3.0", "4.0"):
        fixture_index.add_file(failing_sdist(files, "platbroken", version))
    path = tmp_path / "mirror.yaml"
    path.write_text(mirror_yaml(fixture_index.url, {"p": ["platbroken"]},
                                targets={"x86": ("3.11", "manylinux_2_28_x86_64")}))
    with pytest.raises(ResolutionError) as info:
        lock_sets(load_config(path), jobs=1)
    text = str(info.value)
    assert "gave up on platbroken for target 'x86'" in text, text
    assert says in text and not_said not in text, text
