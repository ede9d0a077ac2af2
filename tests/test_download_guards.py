"""The download's checks against servers that answer a resumed download wrongly.

A kept partial is continued with a Range request; a server may answer with
other bytes than asked (a 206 for another range) or refuse (416). Either way
the kept bytes are dropped and the file is fetched once more from byte 0:
never a file stitched from two answers. Each test fails when its check in
``Downloader._transfer`` is removed (found by ``doit mutation``).
"""

from __future__ import annotations

import resource
import signal
from pathlib import Path

import pytest
from fixtureindex import Catalogue, FixtureIndex
from test_fetch import file_path, make_lockfile

from lockmirror.errors import IntegrityError, LockmirrorError, NetworkError, NotFoundError
from lockmirror.formats.store import Store
from lockmirror.fsutil import sha256_file
from lockmirror.stages.fetch import fetch


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


@pytest.mark.parametrize("labelled", [True, False], ids=["other-range", "no-content-range"])
def test_a_206_for_another_range_is_not_appended_but_fetched_again(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store, labelled: bool) -> None:
    fixture_index.wrong_range = "labelled" if labelled else "unlabelled"
    entry = catalogue.find("native", "1.0", wheel=False)  # an sdist: one file, no .metadata
    lock = make_lockfile(fixture_index, "core", [entry.filename])
    path = file_path(fixture_index, entry.filename)
    half = entry.size // 2
    store.partial_path(entry.sha256).write_bytes(entry.path.read_bytes()[:half])
    summary = fetch([lock], store)
    assert [r.range for r in fixture_index.requests if r.path == path] == [f"bytes={half}-", None]
    assert (summary.downloaded, summary.resumed_bytes) == (1, 0)
    assert sha256_file(store.path(entry.sha256)) == entry.sha256


def test_a_416_drops_the_kept_bytes_and_fetches_again(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    entry = catalogue.find("native", "1.0", wheel=False)
    lock = make_lockfile(fixture_index, "core", [entry.filename])
    path = file_path(fixture_index, entry.filename)
    half = entry.size // 2
    store.partial_path(entry.sha256).write_bytes(entry.path.read_bytes()[:half])
    fixture_index.fail_next(1, 416, path_prefix=path)
    summary = fetch([lock], store)
    records = [r for r in fixture_index.requests if r.path == path]
    assert [(r.range, r.status) for r in records] == [(f"bytes={half}-", 416), (None, 200)]
    assert (summary.downloaded, summary.resumed_bytes) == (1, 0)
    assert sha256_file(store.path(entry.sha256)) == entry.sha256


def test_a_one_byte_wrong_partial_is_continued_then_fetched_afresh(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    """Any kept prefix counts as kept, one byte too: when the continued file does not
    verify, one fresh download decides (not an integrity error)."""
    entry = catalogue.find("native", "1.0", wheel=False)
    lock = make_lockfile(fixture_index, "core", [entry.filename])
    path = file_path(fixture_index, entry.filename)
    wrong = bytes([entry.path.read_bytes()[0] ^ 0xFF])
    store.partial_path(entry.sha256).write_bytes(wrong)
    summary = fetch([lock], store)
    assert [r.range for r in fixture_index.requests if r.path == path] == ["bytes=1-", None]
    assert summary.downloaded == 1
    assert sha256_file(store.path(entry.sha256)) == entry.sha256


def test_a_failed_write_frees_the_partial_at_once(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    """A write the file system refuses half-way (EFBIG here, from RLIMIT_FSIZE; ENOSPC
    alike) is one line naming the partial, which is removed: nothing half-written stays."""
    entry = catalogue.find("native", "1.0", wheel=False)
    lock = make_lockfile(fixture_index, "core", [entry.filename])
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (entry.size // 2, hard))
    try:
        with pytest.raises(LockmirrorError, match="cannot write to the store: File too large"
                           ) as caught:
            fetch([lock], store)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert str(store.partial_path(entry.sha256)) in str(caught.value)
    assert not store.has(entry.sha256)
    assert list(store.temp_dir().iterdir()) == []


def test_a_complete_partial_is_named_without_a_request(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    """Killed after the last byte, before the rename: the partial is checked and named."""
    entry = catalogue.find("native", "1.0", wheel=False)
    lock = make_lockfile(fixture_index, "core", [entry.filename])
    store.partial_path(entry.sha256).write_bytes(entry.path.read_bytes())
    summary = fetch([lock], store)
    assert fixture_index.requests == []
    assert (summary.downloaded, summary.resumed_bytes) == (1, entry.size)
    assert sha256_file(store.path(entry.sha256)) == entry.sha256


def test_a_complete_but_wrong_partial_is_fetched_afresh(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    entry = catalogue.find("native", "1.0", wheel=False)
    lock = make_lockfile(fixture_index, "core", [entry.filename])
    store.partial_path(entry.sha256).write_bytes(b"x" * entry.size)
    assert fetch([lock], store).downloaded == 1
    assert [r.range for r in fixture_index.requests] == [None]
    assert sha256_file(store.path(entry.sha256)) == entry.sha256


def test_a_resumed_download_that_never_verifies_is_one_error(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    """No attempt left for the fresh download: the error says the resumed file did not
    verify, and the wrong bytes are gone."""
    entry = catalogue.find("native", "1.0", wheel=False)
    lock = make_lockfile(fixture_index, "core", [entry.filename])
    store.partial_path(entry.sha256).write_bytes(b"x" * (entry.size // 2))
    with pytest.raises(IntegrityError, match=r"a resumed download of .* did not verify "
                                             rf"\(expected sha256 {entry.sha256}, got "):
        fetch([lock], store, retries=0)
    assert not store.has(entry.sha256)
    assert list(store.temp_dir().iterdir()) == []


def test_a_206_for_another_range_with_no_attempt_left_is_one_error(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    fixture_index.wrong_range = "labelled"
    entry = catalogue.find("native", "1.0", wheel=False)
    url = fixture_index.base_url + file_path(fixture_index, entry.filename)
    lock = make_lockfile(fixture_index, "core", [entry.filename])
    store.partial_path(entry.sha256).write_bytes(entry.path.read_bytes()[: entry.size // 2])
    with pytest.raises(NetworkError, match=f"cannot fetch {url}: the server answers Range "
                                           "requests with other ranges"):
        fetch([lock], store, retries=0)
    assert not store.has(entry.sha256)
    assert list(store.temp_dir().iterdir()) == []  # the kept bytes were dropped


def test_a_server_that_ignores_range_is_read_whole_in_the_same_request(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    entry = catalogue.find("native", "1.0", wheel=False)
    lock = make_lockfile(fixture_index, "core", [entry.filename])
    half = entry.size // 2
    store.partial_path(entry.sha256).write_bytes(entry.path.read_bytes()[:half])
    fixture_index.no_range = True
    assert fetch([lock], store).downloaded == 1
    path = file_path(fixture_index, entry.filename)
    records = [r for r in fixture_index.requests if r.path == path]
    assert [(r.range, r.status) for r in records] == [(f"bytes={half}-", 200)]
    assert sha256_file(store.path(entry.sha256)) == entry.sha256


def test_a_416_with_no_attempt_left_is_one_error(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    entry = catalogue.find("native", "1.0", wheel=False)
    lock = make_lockfile(fixture_index, "core", [entry.filename])
    store.partial_path(entry.sha256).write_bytes(entry.path.read_bytes()[: entry.size // 2])
    fixture_index.fail_next(1, 416, path_prefix=file_path(fixture_index, entry.filename))
    with pytest.raises(NetworkError, match=r"the server refuses to resume \(HTTP 416\)"):
        fetch([lock], store, retries=0)
    assert list(store.temp_dir().iterdir()) == []


def test_a_partial_longer_than_the_locked_size_is_emptied_first(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    entry = catalogue.find("native", "1.0", wheel=False)
    lock = make_lockfile(fixture_index, "core", [entry.filename])
    store.partial_path(entry.sha256).write_bytes(entry.path.read_bytes() + b"tail")
    assert fetch([lock], store).downloaded == 1
    assert [r.range for r in fixture_index.requests] == [None]
    assert sha256_file(store.path(entry.sha256)) == entry.sha256


def test_a_404_on_a_resume_is_not_a_refused_range(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    """Only a 416 drops the kept bytes and tries again; a deleted file fails at once."""
    entry = catalogue.find("native", "1.0", wheel=False)
    lock = make_lockfile(fixture_index, "core", [entry.filename])
    store.partial_path(entry.sha256).write_bytes(entry.path.read_bytes()[: entry.size // 2])
    path = file_path(fixture_index, entry.filename)
    fixture_index.fail_next(5, 404, path_prefix=path)
    with pytest.raises(NotFoundError, match="the upstream no longer has this locked file"):
        fetch([lock], store)
    assert len([r for r in fixture_index.requests if r.path == path]) == 1
