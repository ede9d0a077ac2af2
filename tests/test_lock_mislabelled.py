"""A distribution whose core metadata names another project or version than its file
name (``p_meta-1.0-py3-none-any.whl`` whose METADATA says ``Name: requests``): pip and
uv refuse it, so the lock refuses it where it reads the metadata (a PEP 658 file, a
Range read into the wheel, an sdist's PKG-INFO or its backend's prepared metadata),
in one line, as it does metadata that does not read. On the fixture index, hermetic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fixtureindex import FixtureIndex
from fixtureindex.fixture_backend import (
    core_metadata,
    default_module,
    pyproject_text,
    write_sdist,
    write_wheel,
)
from helpers import subprocess_env
from test_lock import lock, write_mirror

from lockmirror.errors import LockmirrorError

SET = "  n:\n    requirements: [p-meta==1.0]\n"


def mislabelled_wheel(out_dir: Path, name: str = "requests", version: str = "1.0") -> Path:
    """``p_meta-1.0-py3-none-any.whl`` whose METADATA names ``name`` ``version``."""
    return out_dir / write_wheel(out_dir, "p-meta", "1.0", core_metadata(name, version),
                                 default_module("p-meta", "1.0"))


def lock_error(tmp_path: Path, fixture_index: FixtureIndex) -> str:
    with pytest.raises(LockmirrorError) as info:
        lock(tmp_path, fixture_index, SET)
    assert not list((tmp_path / "lockfiles").glob("pylock.*.toml"))
    return str(info.value)


@pytest.mark.parametrize("pep658", [True, False], ids=["pep658-file", "range-read"])
def test_a_wheel_whose_metadata_names_another_project_is_refused(
        tmp_path: Path, fixture_index: FixtureIndex, pep658: bool) -> None:
    fixture_index.add_file(mislabelled_wheel(tmp_path / "files"))
    fixture_index.no_metadata = not pep658
    said = lock_error(tmp_path, fixture_index)
    assert ("p_meta-1.0-py3-none-any.whl: its METADATA names requests 1.0, not p-meta 1.0 "
            "(the file name's); an installer refuses it (lock another release") in said, said
    if not pep658:
        assert fixture_index.range_requests(), "the metadata was not read by Range"


def test_a_wheel_whose_metadata_names_another_version_is_refused(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    fixture_index.add_file(mislabelled_wheel(tmp_path / "files", "P_Meta", "2.0"))
    said = lock_error(tmp_path, fixture_index)
    assert "its METADATA names P_Meta 2.0, not p-meta 1.0 (the file name's)" in said, said


def test_names_are_canonicalized_and_versions_normalized(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    """``P.Meta 1.0.0`` is ``p-meta 1.0``: pip takes it, and so does the lock."""
    fixture_index.add_file(mislabelled_wheel(tmp_path / "files", "P.Meta", "1.0.0"))
    locked = lock(tmp_path, fixture_index, SET)["n"]
    assert {str(p.name) for p in locked.packages} == {"p-meta"}


def test_an_sdist_whose_pkg_info_names_another_project_is_refused(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    files = {"PKG-INFO": core_metadata("requests", "1.0", metadata_version="2.2").encode(),
             "pyproject.toml": pyproject_text("p-meta", "1.0").encode()}
    fixture_index.add_file(tmp_path / "files" / write_sdist(tmp_path / "files", "p-meta",
                                                            "1.0", files))
    said = lock_error(tmp_path, fixture_index)
    assert ("p_meta-1.0.tar.gz: its PKG-INFO names requests 1.0, not p-meta 1.0 (the file "
            "name's); an installer refuses it") in said, said


def test_an_sdist_whose_backend_prepares_another_projects_metadata_is_refused(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    """PKG-INFO (2.1, not to be trusted) says p-meta; the backend says requests."""
    files = {"PKG-INFO": core_metadata("p-meta", "1.0", metadata_version="2.1").encode(),
             "pyproject.toml": pyproject_text("requests", "1.0").encode(),
             **default_module("requests", "1.0")}
    fixture_index.add_file(tmp_path / "files" / write_sdist(tmp_path / "files", "p-meta",
                                                            "1.0", files))
    said = lock_error(tmp_path, fixture_index)
    assert ("p_meta-1.0.tar.gz: its metadata (as its PEP 517 backend prepared it) names "
            "requests 1.0, not p-meta 1.0 (the file name's)") in said, said


def test_the_cli_says_it_in_one_line(tmp_path: Path, fixture_index: FixtureIndex) -> None:
    fixture_index.add_file(mislabelled_wheel(tmp_path / "files"))
    path = write_mirror(tmp_path, fixture_index, SET)
    done = subprocess.run([sys.executable, "-m", "lockmirror", "lock", "--config", str(path)],
                          env=subprocess_env(), capture_output=True, text=True, check=False)
    errors = [line for line in done.stderr.splitlines() if line.startswith("lockmirror: ")]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert len(errors) == 1 and "its METADATA names requests 1.0" in errors[0], done.stderr
