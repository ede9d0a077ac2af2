"""``lock --check`` against the project pages: the comparisons a mutation run found unguarded.

``tests/test_lock_check.py`` swaps a file's URL, sha256, size, name or
version; here the other fields a pull request could edit while the page stays
as it was: the PEP 658 metadata hash, the URL alone (same host, same hash),
and a size when the page states none (an HTML page: the size comes from the
JSON API, as at lock time).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from fixtureindex import FixtureIndex
from test_lock_check import MIRROR, check, edit, lockfile_of

from lockmirror.config import load_config
from lockmirror.formats.lockfile import LockedFile, LockedPackage
from lockmirror.stages.lock import lock_sets


@pytest.fixture
def locked(tmp_path: Path, fixture_index: FixtureIndex) -> Path:
    """mirror.yaml of a freshly locked set (as in ``tests/test_lock_check.py``)."""
    config = tmp_path / "mirror.yaml"
    config.write_text(MIRROR.format(url=fixture_index.url, cache=tmp_path / "cache"))
    lock_sets(load_config(config))
    return config


def test_an_edited_metadata_hash_fails(locked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def swap(package: LockedPackage, file: LockedFile) -> tuple[LockedPackage, LockedFile]:
        return package, dataclasses.replace(file, metadata_sha256="e" * 64)

    swapped = edit(locked, "beta", swap)
    status, out = check(locked, capsys)
    assert status == 1, out
    assert (f"{lockfile_of(locked)}: beta 1.0: {swapped.filename}: metadata sha256 {'e' * 64} "
            "in the lockfile, ") in out


def test_a_url_moved_on_the_sources_host_fails_even_with_the_same_hash(
        locked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def move(package: LockedPackage, file: LockedFile) -> tuple[LockedPackage, LockedFile]:
        return package, dataclasses.replace(file, url=file.url.replace("/files/", "/other/"))

    moved = edit(locked, "beta", move)
    status, out = check(locked, capsys)
    assert status == 1, out
    assert f"beta 1.0: {moved.filename}: URL {moved.url} in the lockfile, " in out


def test_a_size_the_page_leaves_out_is_checked_against_the_index(
        locked: Path, fixture_index: FixtureIndex, capsys: pytest.CaptureFixture[str]) -> None:
    fixture_index.html_only = True  # PEP 503 pages state no size
    status, out = check(locked, capsys)
    assert status == 0, out

    def grow(package: LockedPackage, file: LockedFile) -> tuple[LockedPackage, LockedFile]:
        return package, dataclasses.replace(file, size=file.size + 1)

    grown = edit(locked, "beta", grow)
    status, out = check(locked, capsys)
    assert status == 1, out
    assert (f"beta 1.0: {grown.filename}: size {grown.size} in the lockfile, the index states "
            f"size {grown.size - 1}") in out
