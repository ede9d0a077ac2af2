"""The index client's disk cache and its two prefetch pools, on the fixture index."""

from __future__ import annotations

import threading
from pathlib import Path
from urllib.parse import urlsplit

from fixtureindex import FixtureIndex

from lockmirror.config_schema import SourceConfig
from lockmirror.net.disk_cache import DiskCache
from lockmirror.net.index_client import PAGE_ACCEPT, IndexClient
from lockmirror.net.work_table import WorkTable


def source(index: FixtureIndex) -> SourceConfig:
    return SourceConfig.model_validate({"name": "fixture", "url": index.url})


def test_a_page_is_kept_once_with_its_validators_and_revalidated(
        fixture_index: FixtureIndex, tmp_path: Path) -> None:
    with IndexClient([source(fixture_index)], cache_dir=tmp_path, environ={}) as client:
        first = client.project("beta")
    kept = DiskCache(tmp_path).page(f"{fixture_index.url}beta/", PAGE_ACCEPT)
    assert kept is not None and "etag" in kept.headers and kept.body.startswith(b"{")
    assert list((tmp_path / "pages").rglob("*.tmp")) == []  # one atomic file, nothing left
    fixture_index.reset_counts()
    with IndexClient([source(fixture_index)], cache_dir=tmp_path, environ={}) as client:
        again = client.project("beta")
        wheel = again.files[0]
        metadata = client.metadata(wheel)
        assert metadata is not None and client.metadata(wheel) == metadata
        # asked once (the second answer is the first one kept), never the wheel itself
        assert fixture_index.count(urlsplit(wheel.url).path + ".metadata") == 1
        assert fixture_index.count(urlsplit(wheel.url).path) == 0
    [request] = [r for r in fixture_index.requests if r.path == "/simple/beta/"]
    assert request.conditional and request.status == 304
    assert [f.filename for f in again.files] == [f.filename for f in first.files]


def test_a_page_without_validators_is_not_kept(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path)
    assert not cache.keep_page("https://x.example/simple/a/", PAGE_ACCEPT,
                               "https://x.example/simple/a/", {"content-type": "text/html"},
                               b"<html></html>")
    assert cache.page("https://x.example/simple/a/", PAGE_ACCEPT) is None
    assert cache.keep_page("https://x.example/simple/a/", PAGE_ACCEPT,
                           "https://x.example/simple/a/",
                           {"content-type": "text/html", "last-modified": "Sun, 06 Dec 2026"},
                           b"<html></html>")
    kept = cache.page("https://x.example/simple/a/", PAGE_ACCEPT)
    assert kept is not None and kept.validators() == {"If-Modified-Since": "Sun, 06 Dec 2026"}


def test_immutable_bytes_come_from_the_cache(fixture_index: FixtureIndex,
                                              tmp_path: Path) -> None:
    def metadata() -> bytes:
        with IndexClient([source(fixture_index)], cache_dir=tmp_path, environ={}) as client:
            files = client.project("sdistonly").files + client.project("speedup").files
            return b"".join(client.metadata(f) for f in files)

    first = metadata()
    fixture_index.reset_counts()
    assert metadata() == first
    assert sorted(r.path for r in fixture_index.requests) == [
        "/simple/sdistonly/", "/simple/speedup/"]


def test_a_caller_never_waits_behind_queued_prefetches() -> None:
    table: WorkTable[str, int] = WorkTable(workers=1, name="test")
    release = threading.Event()
    ran_on: dict[str, int] = {}

    def slow() -> int:
        release.wait(30)
        return 1

    def quick() -> int:
        ran_on["quick"] = threading.get_ident()
        return 2

    try:
        table.prefetch("slow", slow)      # takes the only worker
        table.prefetch("quick", quick)    # queued behind it
        assert table.get("quick", quick) == 2
        assert ran_on["quick"] == threading.get_ident()  # done here, not queued
    finally:
        release.set()
        table.close()
    assert table.get("slow", slow) == 1
