"""The fetch stage against the real fixture index server on 127.0.0.1.

Small-file behaviour uses the standard catalogue; resuming and flat memory
use one large (~300 MB) wheel served by its own fixture server, fetched by
``lockmirror fetch`` running as a subprocess.
"""

from __future__ import annotations

import http.server
import io
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from fixtureindex import Catalogue, FixtureIndex
from helpers import QuietHandler, serving, subprocess_env
from packaging.utils import canonicalize_name
from packaging.version import Version

from lockmirror.commands.fetch import PlainProgress
from lockmirror.errors import IntegrityError, LockmirrorError, NetworkError, NotFoundError
from lockmirror.formats.lockfile import LockedFile, LockedPackage, LockedTarget, Lockfile
from lockmirror.formats.store import FetchItem, Store
from lockmirror.fsutil import sha256_bytes, sha256_file
from lockmirror.net.http import make_session, source_auth
from lockmirror.stages.fetch import FetchSummary, fetch
from lockmirror.stages.fetch_plan import metadata_url, missing, plan

TARGET = LockedTarget(name="linux-py311", python="3.11", implementation="cp",
                      platforms=("manylinux_2_17_x86_64",),
                      marker='sys_platform == "linux" and python_version == "3.11"')
BIG_SIZE = 300 << 20


def make_lockfile(index: FixtureIndex, set_name: str, filenames: Sequence[str]) -> Lockfile:
    """A lockfile naming ``filenames`` as the fixture server serves them now."""
    served = index.files
    releases: dict[tuple[str, str], list[LockedFile]] = {}
    for filename in filenames:
        entry = served[filename]
        url = f"{index.base_url}/files/{entry.normalized}/{filename}"
        releases.setdefault((entry.normalized, entry.version), []).append(LockedFile(
            filename=filename, url=url, size=entry.size, sha256=entry.sha256,
            upload_time=entry.upload_time, metadata_sha256=entry.metadata_sha256))
    packages = tuple(
        LockedPackage(
            name=canonicalize_name(name), version=Version(version), targets=(TARGET.name,),
            index=index.url, wheels=tuple(f for f in files if f.is_wheel),
            sdist=next((f for f in files if not f.is_wheel), None),
            why={TARGET.name: (set_name,)})
        for (name, version), files in sorted(releases.items()))
    return Lockfile(set_name=set_name, requirements=(), targets=(TARGET,), packages=packages,
                    input_hash="0" * 64)


def file_path(index: FixtureIndex, filename: str) -> str:
    return f"/files/{index.files[filename].normalized}/{filename}"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


class Recorder:
    """A FetchProgress that keeps what it was told (and can run a hook per chunk)."""

    def __init__(self, on_advance: object = None) -> None:
        self.begun: tuple[int, int] | None = None
        self.metadata = 0
        self.advanced = 0
        self.done: list[tuple[FetchItem, bool]] = []
        self.summary: FetchSummary | None = None
        self.on_advance = on_advance

    def begin(self, files: int, total_bytes: int, metadata: int = 0) -> None:
        self.begun = (files, total_bytes)
        self.metadata = metadata

    def advance(self, nbytes: int) -> None:
        self.advanced += nbytes
        if callable(self.on_advance):
            self.on_advance()

    def file_done(self, item: FetchItem, downloaded: bool) -> None:
        self.done.append((item, downloaded))

    def tick(self) -> None:
        pass

    def end(self, summary: FetchSummary) -> None:
        self.summary = summary


# -- planning ------------------------------------------------------------------


def test_plan_lists_each_file_once_with_every_set_and_the_wheel_metadata(
        fixture_index: FixtureIndex, catalogue: Catalogue) -> None:
    wheel = catalogue.find("alpha", "1.1", wheel=True).filename
    sdist = catalogue.find("alpha", "1.1", wheel=False).filename
    core = make_lockfile(fixture_index, "core", [wheel, sdist])
    misp = make_lockfile(fixture_index, "misp", [wheel])
    items = plan([core, misp])
    by_name = {item.filename: item for item in items}
    assert sorted(by_name) == sorted([wheel, wheel + ".metadata", sdist])
    assert by_name[wheel].needed_by == ("core", "misp")
    assert by_name[sdist].needed_by == ("core",)
    meta = by_name[wheel + ".metadata"]
    assert meta.is_metadata and meta.size is None
    assert meta.url == by_name[wheel].url + ".metadata"
    assert meta.sha256 == catalogue.file(wheel).metadata_sha256
    assert metadata_url("https://h/x.whl#sha256=ab") == "https://h/x.whl.metadata"


# -- the happy path, and re-runs ----------------------------------------------------


def test_fetch_stores_every_file_once_and_a_rerun_downloads_nothing(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    names = [catalogue.find("alpha", "1.1", wheel=True).filename,
             catalogue.find("alpha", "1.1", wheel=False).filename,
             catalogue.find("beta", "1.0").filename]
    core = make_lockfile(fixture_index, "core", names)
    misp = make_lockfile(fixture_index, "misp", names[:1])
    recorder = Recorder()
    summary = fetch([core, misp], store, progress=recorder, max_workers=4)

    items = plan([core, misp])
    assert summary.files == len(items) == 5  # 3 files + 2 metadata
    # the artifacts are downloaded; each wheel's metadata is read out of the verified wheel
    assert (summary.downloaded, summary.derived, summary.present) == (3, 2, 0)
    assert not [r for r in fixture_index.requests if r.path.endswith(".metadata")]
    for item in items:
        assert store.has(item.sha256, item.size)
        assert sha256_file(store.path(item.sha256)) == item.sha256
        assert store.path(item.sha256).stat().st_mode & 0o777 == 0o644  # servable once linked
    for name in names:
        assert fixture_index.count(file_path(fixture_index, name)) == 1  # shared file: once
    total = sum(catalogue.file(n).size for n in names)
    # announced as the summary counts them: 3 to download + 2 metadata files = 5
    assert (recorder.begun, recorder.metadata) == ((3, total), 2)
    assert len(recorder.done) == summary.files
    assert recorder.advanced == total  # known-size bytes only
    assert summary.downloaded_bytes == total
    assert list(store.temp_dir().iterdir()) == []  # no partial left behind

    fixture_index.reset_counts()
    again = fetch([core, misp], store)
    assert (again.downloaded, again.present, again.downloaded_bytes) == (0, 5, 0)
    assert fixture_index.requests == []
    assert missing(items, store) == []


def test_a_file_url_is_never_read_even_past_the_front_doors_check(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    """The front doors refuse a lockfile naming file:// (test_url_policy); the
    download itself has no file:// reader either: one NetworkError, nothing stored."""
    entry = catalogue.find("native", "1.0", wheel=False)
    lock = make_lockfile(fixture_index, "core", [entry.filename])
    local = replace(lock, packages=tuple(
        replace(p, sdist=replace(p.sdist, url=entry.path.as_uri())) if p.sdist else p
        for p in lock.packages))
    with pytest.raises(NetworkError, match=f"cannot fetch {entry.path.as_uri()}: "):
        fetch([local], store)
    assert not store.has(entry.sha256)
    assert fixture_index.requests == []


def test_what_a_crash_can_leave_in_the_store_is_fetched_again(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    wheel = catalogue.find("alpha", "1.0").filename
    lock = make_lockfile(fixture_index, "core", [wheel])
    fetch([lock], store)
    items = plan([lock])
    # A file renamed before the disk had its bytes comes back short or empty.
    for item in items:
        store.path(item.sha256).write_bytes(b"")
    assert missing(items, store) == items
    again = fetch([lock], store, durable=True)
    assert (again.downloaded, again.derived) == (1, 1)
    for item in items:
        assert sha256_file(store.path(item.sha256)) == item.sha256


# -- refusing what does not verify -------------------------------------------------


def test_altered_bytes_are_refused_even_with_http_200(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    wheel = catalogue.find("alpha", "1.0").filename
    lock = make_lockfile(fixture_index, "core", [wheel])
    fixture_index.alter(wheel)
    with pytest.raises(IntegrityError) as caught:
        fetch([lock], store, retries=1, backoff=0.01)
    message = str(caught.value)
    expected = catalogue.file(wheel).sha256
    assert lock.packages[0].wheels[0].url in message
    assert f"expected sha256 {expected}" in message
    actual = message.split("got sha256 ")[1].split()[0]
    assert len(actual) == 64 and actual != expected
    assert "needed by set core" in message
    assert not store.has(expected)
    assert list(store.temp_dir().iterdir()) == []
    assert fixture_index.count(file_path(fixture_index, wheel)) == 1  # refused, not retried


def test_metadata_comes_from_the_verified_wheel_not_an_altered_upstream_file(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    wheel = catalogue.find("beta", "1.0").filename
    lock = make_lockfile(fixture_index, "core", [wheel])
    fixture_index.alter(wheel + ".metadata", b"Metadata-Version: 2.1\nName: evil\n")
    summary = fetch([lock], store, backoff=0.01)
    assert summary.derived == 1
    metadata = store.path(catalogue.file(wheel).metadata_sha256).read_bytes()
    assert metadata == catalogue.file(wheel).metadata and b"evil" not in metadata
    assert fixture_index.count(file_path(fixture_index, wheel) + ".metadata") == 0


def test_metadata_matching_neither_wheel_nor_upstream_is_refused(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    import dataclasses

    wheel = catalogue.find("beta", "1.0").filename
    lock = make_lockfile(fixture_index, "core", [wheel])
    evil = b"Metadata-Version: 2.1\nName: evil\n"
    # a lockfile that promises other metadata than the wheel carries: the wheel's
    # own METADATA does not match, so the upstream file is tried, and refused too
    package = lock.packages[0]
    claimed = dataclasses.replace(package.wheels[0], metadata_sha256=sha256_bytes(evil + b"x"))
    lock = dataclasses.replace(lock, packages=(dataclasses.replace(package, wheels=(claimed,)),))
    fixture_index.alter(wheel + ".metadata", evil)
    with pytest.raises(IntegrityError, match=r"\.whl\.metadata"):
        fetch([lock], store, backoff=0.01)
    assert store.has(catalogue.file(wheel).sha256)  # the wheel itself verified and stayed
    assert not store.has(claimed.metadata_sha256 or "")


def test_a_longer_body_is_refused_without_reading_it_all(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    entry = catalogue.find("native", "1.0", wheel=False)
    lock = make_lockfile(fixture_index, "core", [entry.filename])
    fixture_index.alter(entry.filename, entry.path.read_bytes() + b"\0" * (3 << 20))
    with pytest.raises(IntegrityError, match=r"got more bytes \(stopped after \d+, whose"):
        fetch([lock], store)
    assert not store.has(entry.sha256)
    assert list(store.temp_dir().iterdir()) == []


def with_size(lock: Lockfile, size: int) -> Lockfile:
    """``lock`` with its first wheel's size edited by hand (its sha256 left alone)."""
    package = lock.packages[0]
    edited = replace(package.wheels[0], size=size)
    return replace(lock, packages=(replace(package, wheels=(edited,)),))


def test_a_hand_edited_size_is_named_as_the_lockfiles_fault_before_and_after_a_download(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    """A lockfile whose size is wrong but whose sha256 is right: the lockfile is what
    is wrong, and fetch says so in one line naming the file and both sizes; nothing is
    stored. When the store already holds the file, without a download (found by an
    outside tester: fetch downloaded it again and blamed the upstream's bytes)."""
    entry = catalogue.find("alpha", "1.0", wheel=True)
    edited = with_size(make_lockfile(fixture_index, "core", [entry.filename]), 12345)
    said = (f"{edited.packages[0].wheels[0].url}: the lockfile's size is wrong: the lockfile "
            f"of set core says 12345 bytes for {entry.filename}, but the file with its "
            f"sha256 has {entry.size} (as the upstream served it); refused, nothing was "
            "stored (a hand edit? re-create the lockfile with `lockmirror lock` or `doit lock`)")
    with pytest.raises(IntegrityError) as caught:
        fetch([edited], store, backoff=0.01)
    assert str(caught.value) == said
    assert not store.has(entry.sha256) and list(store.temp_dir().iterdir()) == []
    assert fixture_index.count(file_path(fixture_index, entry.filename)) == 1  # not retried

    fetch([make_lockfile(fixture_index, "core", [entry.filename])], store)  # the right size
    fixture_index.reset_counts()
    with pytest.raises(IntegrityError) as caught:
        fetch([edited], store, backoff=0.01)
    assert str(caught.value) == said.replace("as the upstream served it", "as the store holds it")
    assert fixture_index.requests == []  # said before any download
    assert sha256_file(store.path(entry.sha256)) == entry.sha256  # the store's file stays


def test_truncated_body_is_refused_then_resumed_with_a_range_request(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    wheel = catalogue.find("native", "1.0", wheel=False).filename  # an sdist: no .metadata
    entry = catalogue.file(wheel)
    lock = make_lockfile(fixture_index, "core", [wheel])
    fixture_index.truncate = True

    def heal() -> None:  # the first (half) body has been sent; the next one is whole
        fixture_index.truncate = False

    summary = fetch([lock], store, progress=Recorder(on_advance=heal), backoff=0.01)
    assert sha256_file(store.path(entry.sha256)) == entry.sha256
    records = [r for r in fixture_index.requests if r.path == file_path(fixture_index, wheel)]
    assert [r.range for r in records] == [None, f"bytes={entry.size // 2}-"]
    assert records[1].status == 206
    assert summary.resumed_bytes == entry.size // 2


def test_server_errors_and_429_are_retried(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    sdist = catalogue.find("sdistonly", "1.0").filename  # one file, no .metadata
    lock = make_lockfile(fixture_index, "core", [sdist])
    path = file_path(fixture_index, sdist)
    fixture_index.fail_next(1, 500, path_prefix=path)
    fixture_index.fail_next(1, 429, path_prefix=path, retry_after="0")
    summary = fetch([lock], store, backoff=0.01)
    assert summary.downloaded == 1
    assert [r.status for r in fixture_index.requests if r.path == path] == [500, 429, 200]
    assert store.has(catalogue.file(sdist).sha256)


def test_server_errors_that_persist_fail_with_the_url(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    wheel = catalogue.find("gamma", "1.0").filename
    lock = make_lockfile(fixture_index, "core", [wheel])
    fixture_index.fail_next(10, 503, path_prefix=file_path(fixture_index, wheel))
    with pytest.raises(NetworkError, match="HTTP 503.* after 2 retries") as caught:
        fetch([lock], store, retries=2, backoff=0.01)
    assert wheel in str(caught.value)
    assert not store.has(catalogue.file(wheel).sha256)


def test_a_kept_partial_is_continued_restarted_or_dropped_as_the_server_allows(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    entry = catalogue.find("native", "1.0", wheel=False)  # an sdist: one file, no .metadata
    lock = make_lockfile(fixture_index, "core", [entry.filename])
    path = file_path(fixture_index, entry.filename)
    partial = store.partial_path(entry.sha256)
    half = entry.path.read_bytes()[: entry.size // 2]

    # A server that ignores Range: the whole file again, the prefix replaced.
    partial.write_bytes(half)
    fixture_index.no_range = True
    summary = fetch([lock], store)
    assert (summary.resumed_bytes, summary.downloaded_bytes) == (0, entry.size)
    assert sha256_file(store.path(entry.sha256)) == entry.sha256
    store.path(entry.sha256).unlink()

    # A kept prefix that is wrong (say, from a file since replaced upstream):
    # the continued download does not verify, one fresh download does.
    fixture_index.reset()
    partial.write_bytes(b"x" * len(half))
    summary = fetch([lock], store)
    assert [r.range for r in fixture_index.requests if r.path == path] == [
        f"bytes={len(half)}-", None]
    assert summary.downloaded == 1
    assert sha256_file(store.path(entry.sha256)) == entry.sha256
    assert not partial.exists()


def test_two_runs_sharing_a_store_download_each_file_once(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    names = [catalogue.find("alpha", "1.0").filename, catalogue.find("gamma", "1.0").filename]
    lock = make_lockfile(fixture_index, "core", names)
    fixture_index.stall = 0.3  # both runs are mid-download at the same time
    results: list[FetchSummary] = []
    runs = [threading.Thread(target=lambda: results.append(fetch([lock], Store(store.root))))
            for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert len(results) == 2
    for name in names:
        assert fixture_index.count(file_path(fixture_index, name)) == 1
    assert sum(r.downloaded for r in results) == 2  # each artifact once, by one of the runs
    assert sum(r.downloaded + r.derived + r.present for r in results) == 8
    # a file the other run finished counts as present with its bytes ("0 B" before;
    # found by an outside tester): each artifact is downloaded by one run and present
    # for the other
    assert sum(r.present_bytes for r in results) == sum(
        item.size or 0 for item in plan([lock]) if not item.is_metadata)
    assert all(store.has(item.sha256, item.size) for item in plan([lock]))
    assert list(store.temp_dir().iterdir()) == []


# -- clear errors -------------------------------------------------------------------


def test_a_file_deleted_upstream_names_the_sets_that_need_it(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    gone = catalogue.find("speedup", "1.0").filename
    kept = catalogue.find("speedup", "1.2").filename
    core = make_lockfile(fixture_index, "core", [gone, kept])
    misp = make_lockfile(fixture_index, "misp", [gone])
    shuffle = make_lockfile(fixture_index, "shuffle", [kept])
    fixture_index.remove_file(gone)
    with pytest.raises(NotFoundError) as caught:
        fetch([core, misp, shuffle], store, backoff=0.01)
    message = str(caught.value)
    assert "the upstream no longer has this locked" in message and "HTTP 404" in message
    assert "needed by sets core, misp" in message and "shuffle" not in message
    assert f"/files/speedup/{gone}" in message
    # The other files still arrived; nothing of the deleted one is anywhere.
    assert store.has(catalogue.file(kept).sha256)
    assert not store.has(catalogue.file(gone).sha256)
    assert list(store.temp_dir().iterdir()) == []


def test_credentials_come_from_the_source_environment_variables(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    from lockmirror.config import parse_config

    wheel = catalogue.find("alpha", "1.0").filename
    lock = make_lockfile(fixture_index, "core", [wheel])
    fixture_index.require_basic_auth("reader", "s3cret-pw")
    with pytest.raises(NetworkError, match="HTTP 401.*no credentials") as caught:
        fetch([lock], store)
    assert "username_env" in str(caught.value)

    config = parse_config(f"""
version: 1
sources:
  - {{name: private, url: "{fixture_index.url}", username_env: IDX_USER, password_env: IDX_PW}}
targets:
  linux: {{python: "3.11", platforms: [manylinux_2_17_x86_64]}}
sets:
  core: {{requirements: [alpha]}}
""")
    with pytest.raises(LockmirrorError, match="IDX_PW is not set") as unset:
        source_auth(config.sources, {"IDX_USER": "reader"})
    # named by the source (found by an outside tester: an index into the sources sorted
    # by priority named the wrong position)
    assert unset.value.where == "mirror.yaml: source 'private', password_env"
    wrong = source_auth(config.sources, {"IDX_USER": "reader", "IDX_PW": "nope"})
    assert list(wrong) == [f"{fixture_index.base_url}/"]
    with pytest.raises(NetworkError, match="credentials sent were refused") as refused:
        fetch([lock], store, auth=wrong)
    assert "nope" not in str(refused.value)
    right = source_auth(config.sources, {"IDX_USER": "reader", "IDX_PW": "s3cret-pw"})
    assert fetch([lock], store, auth=right).downloaded == 1  # the wheel; its metadata from it
    assert fixture_index.requests[-1].authorized


def test_unreachable_host_is_a_network_error(
        catalogue: Catalogue, fixture_index: FixtureIndex, store: Store) -> None:
    wheel = catalogue.find("alpha", "1.0").filename
    lock = make_lockfile(fixture_index, "core", [wheel])
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = replace(lock, packages=tuple(
        replace(p, wheels=tuple(
            replace(w, url=w.url.replace(f":{fixture_index.port}/", f":{port}/"))
            for w in p.wheels)) for p in lock.packages))
    with pytest.raises(NetworkError, match=f"cannot fetch http://127.0.0.1:{port}/.* after 1 retry"):
        fetch([dead], store, retries=1, backoff=0.01)
    assert list(store.temp_dir().iterdir()) == []


def test_not_enough_free_space_fails_before_any_download(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    wheel = catalogue.find("alpha", "1.0").filename
    lock = make_lockfile(fixture_index, "core", [wheel])
    huge = replace(lock, packages=tuple(
        replace(p, wheels=tuple(replace(w, size=1 << 60) for w in p.wheels))
        for p in lock.packages))
    with pytest.raises(LockmirrorError, match="not enough free space for the store") as caught:
        fetch([huge], store)
    assert fixture_index.requests == []
    # the margin is said: "need 48.2 MiB ... 70.0 MiB free" refused without it looked wrong
    assert " need 1073741824.0 GiB plus the 64.0 MiB fetch keeps free, the disk has " in \
        str(caught.value)


def test_a_full_disk_is_one_clear_error_and_leaves_nothing(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    entry = catalogue.find("native", "1.0", wheel=False)
    lock = make_lockfile(fixture_index, "core", [entry.filename])
    # Writes to /dev/full fail with ENOSPC: the kernel's own "disk full".
    store.partial_path(entry.sha256).symlink_to("/dev/full")
    with pytest.raises(LockmirrorError, match="the disk holding the store is full") as caught:
        fetch([lock], store)
    assert str(store.root) in str(caught.value)
    assert not store.has(entry.sha256)
    assert list(store.temp_dir().iterdir()) == []


def test_fetch_config_reads_every_set_and_is_current_afterwards(
        fixture_index: FixtureIndex, catalogue: Catalogue, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from lockmirror.config import load_config
    from lockmirror.errors import StaleLockError
    from lockmirror.stages.fetch import fetch_config
    from lockmirror.stages.fetch_plan import is_current

    config = tmp_path / "mirror.yaml"
    config.write_text(f"""version: 1
sources: [{{name: fixture, url: "{fixture_index.url}"}}]
targets: {{linux: {{python: "3.11", platforms: [manylinux_2_17_x86_64]}}}}
sets: {{core: {{requirements: [alpha]}}, misp: {{requirements: [gamma]}}}}
""")
    monkeypatch.setenv("LOCKMIRROR_STORE", str(tmp_path / "shared-store"))
    loaded = load_config(config)
    assert not is_current(loaded)
    with pytest.raises(StaleLockError, match="pylock.core.toml: lockfile is missing"):
        fetch_config(loaded)
    assert fixture_index.requests == []

    for set_name, project in (("core", "alpha"), ("misp", "gamma")):
        make_lockfile(fixture_index, set_name, [catalogue.find(project, "1.0").filename]).write(
            loaded.lockfile_path(set_name))
    summary = fetch_config(loaded)
    assert (summary.files, summary.downloaded, summary.derived) == (4, 2, 2)
    assert is_current(loaded)
    assert Store(tmp_path / "shared-store").has(catalogue.find("gamma", "1.0").sha256)


def test_rich_progress_shows_files_and_bytes(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    from lockmirror.commands.fetch import RichProgress

    names = [catalogue.find("alpha", "1.0").filename, catalogue.find("gamma", "1.0").filename]
    stream = io.StringIO()
    fetch([make_lockfile(fixture_index, "core", names)], store, progress=RichProgress(stream))
    text = stream.getvalue()
    assert "fetch 4/4" in text and "KiB" in text  # files done, bytes in IEC units
    assert "kB" not in text and "MB" not in text


def test_plain_progress_prints_periodic_lines(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    from lockmirror.commands.fetch import PlainProgress

    names = [catalogue.find("alpha", "1.0").filename, catalogue.find("gamma", "1.0").filename]
    stream = io.StringIO()
    fetch([make_lockfile(fixture_index, "core", names)], store,
          progress=PlainProgress(stream, interval=0.0), max_workers=1)
    lines = stream.getvalue().splitlines()
    total = sum(catalogue.file(n).size for n in names)
    # the same split as the summary: 2 downloaded + 2 read from their wheels = 4
    assert lines[0] == (f"fetch: 4 files to fetch: 2 to download ({total / 1024:.1f} KiB), "
                        "2 wheel metadata files (read from their wheels, downloaded where "
                        "that fails)")
    assert lines[-1].startswith(f"fetch: 4/4 files, {total / 1024:.1f} KiB/{total / 1024:.1f} KiB")


# -- large files: resume after a kill, flat memory (lockmirror fetch as a subprocess) ----


@pytest.fixture(scope="module")
def big_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FixtureIndex]:
    """One ~300 MB wheel of incompressible bytes, written in chunks, served alone."""
    root = tmp_path_factory.mktemp("big")
    wheel = root / "bigwheel-1.0-py3-none-any.whl"
    noise = random.Random(20240101)
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("bigwheel-1.0.dist-info/METADATA",
                         "Metadata-Version: 2.1\nName: bigwheel\nVersion: 1.0\n")
        archive.writestr("bigwheel-1.0.dist-info/WHEEL",
                         "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        with archive.open("bigwheel/blob.bin", "w", force_zip64=True) as blob:
            for _ in range(BIG_SIZE >> 22):
                blob.write(noise.randbytes(4 << 20))
        archive.writestr("bigwheel-1.0.dist-info/RECORD", "")
    server = FixtureIndex(root)
    yield server
    server.stop()
    wheel.unlink()  # do not leave 300 MB in the temp dir


def write_mirror(directory: Path, index: FixtureIndex, lockfiles: Sequence[Lockfile]) -> Path:
    set_lines = "".join(f"  {lock.set_name}: {{requirements: [bigwheel]}}\n" for lock in lockfiles)
    config = directory / "mirror.yaml"
    config.write_text(f"""version: 1
sources:
  - {{name: fixture, url: "{index.url}"}}
targets:
  {TARGET.name}: {{python: "3.11", platforms: [manylinux_2_17_x86_64]}}
sets:
{set_lines}""")
    for lock in lockfiles:
        lock.write(directory / "lockfiles" / f"pylock.{lock.set_name}.toml")
    return config


# `lockmirror fetch` through the CLI's entry point. At exit the child reports
# the peak RSS of its own address space: VmHWM, not getrusage, whose
# ru_maxrss would include the pytest process the child was forked from
# (which holds the big file's bytes for the fixture server).
DRIVER = """
import sys
from lockmirror.cli import main
code = main(["fetch", *sys.argv[1:]])
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print("peak-rss-kib", line.split()[1], file=sys.stderr)
sys.exit(code)
"""


def start_fetch(config: Path, store_dir: Path) -> subprocess.Popen[str]:
    env = subprocess_env(LOCKMIRROR_STORE=str(store_dir))
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, "--config", str(config), "--progress", "plain"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen[str]) -> tuple[int, int, str]:
    """(exit code, peak RSS in bytes of the child's own address space, its output)."""
    output, _ = process.communicate(timeout=120)
    peak = [int(line.split()[1]) * 1024 for line in output.splitlines()
            if line.startswith("peak-rss-kib ")]
    assert peak, output
    return process.returncode, peak[0], output


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_interrupted_download_resumes_with_a_range_request(
        big_index: FixtureIndex, tmp_path: Path, stop: signal.Signals) -> None:
    big_index.reset()
    entry = next(iter(big_index.files.values()))
    config = write_mirror(tmp_path, big_index, [make_lockfile(big_index, "core", [entry.filename])])
    store = Store(tmp_path / "store")
    partial = store.partial_path(entry.sha256)

    first = start_fetch(config, store.root)
    deadline = time.monotonic() + 30
    while not (partial.exists() and partial.stat().st_size >= entry.size // 3):
        assert first.poll() is None, "the download finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.001)
    first.send_signal(stop)
    said, _ = first.communicate(timeout=60)
    if stop == signal.SIGINT:  # Ctrl-C: one line that says what stays and how to go on
        assert first.returncode == 130 and "Traceback" not in said
        assert ("lockmirror: interrupted: what finished is kept and nothing half-written is "
                "in place; run the command again to go on") in said.splitlines()
    kept = partial.stat().st_size
    assert 0 < kept < entry.size
    assert not store.has(entry.sha256)

    big_index.reset_counts()
    code, _, output = finish(start_fetch(config, store.root))
    assert code == 0, output
    assert sha256_file(store.path(entry.sha256)) == entry.sha256
    file_requests = [r for r in big_index.requests if r.path.endswith(".whl")]
    assert [(r.range, r.status) for r in file_requests] == [(f"bytes={kept}-", 206)]
    assert "resumed" in output
    assert not partial.exists()
    store.path(entry.sha256).unlink()  # do not leave 300 MB in the temp dir


def test_memory_stays_flat_on_a_large_file(big_index: FixtureIndex, tmp_path: Path) -> None:
    big_index.reset()
    entry = next(iter(big_index.files.values()))
    config = write_mirror(tmp_path, big_index, [make_lockfile(big_index, "core", [entry.filename])])
    store = Store(tmp_path / "store")
    code, peak_rss, output = finish(start_fetch(config, store.root))
    assert code == 0, output
    assert store.has(entry.sha256, entry.size)
    assert entry.size > 300 << 20
    # The interpreter with requests, pydantic and rich loaded is ~40 MB;
    # holding the file in memory would add 300 MB.
    assert peak_rss < 100 << 20, f"peak RSS {peak_rss >> 20} MiB for a {entry.size >> 20} MiB file"
    store.path(entry.sha256).unlink()


class _StallingHandler(QuietHandler):
    """Sends the headers of a ``size``-byte file, its first 100 bytes, then nothing
    until the test releases it (bounded)."""

    server: _StallingServer

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body[:100])
        self.wfile.flush()
        self.server.release.wait(10)
        self.close_connection = True


class _StallingServer(http.server.ThreadingHTTPServer):
    def __init__(self, body: bytes) -> None:
        super().__init__(("127.0.0.1", 0), _StallingHandler)
        self.body = body
        self.release = threading.Event()


@pytest.mark.parametrize(("retries", "said"), [(0, "after 0 retries"), (1, "after 1 retry")])
def test_a_stall_counts_the_bytes_received_before_it(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store, retries: int,
        said: str) -> None:
    wheel = catalogue.find("alpha", "1.0").filename
    lock = make_lockfile(fixture_index, "core", [wheel])
    server = _StallingServer(b"x" * fixture_index.files[wheel].size)
    with serving(server) as base:
        url = f"{base}/files/alpha/{wheel}"
        stalled = replace(lock, packages=tuple(
            replace(p, wheels=tuple(replace(w, url=url) for w in p.wheels))
            for p in lock.packages))
        try:
            with make_session(timeout=(2, 0.3), retries=0) as session, \
                    pytest.raises(NetworkError) as caught:
                fetch([stalled], store, session=session, retries=retries)
        finally:
            server.release.set()
    message = str(caught.value)
    assert "did not answer within 0.3 s" in message and url in message
    assert f"(100 bytes received, {said})" in message
    assert caught.value.hint == "a re-run resumes from the bytes received"


def test_plain_progress_prints_while_a_server_sends_nothing(
        fixture_index: FixtureIndex, catalogue: Catalogue, store: Store) -> None:
    wheel = catalogue.find("alpha", "1.0").filename
    lock = make_lockfile(fixture_index, "core", [wheel])
    fixture_index.stall = 2.5  # every answer waits this long before its first byte
    out = io.StringIO()
    summary = fetch([lock], store, progress=PlainProgress(out, interval=0.2), retries=0)
    assert summary.downloaded == 1
    # a line from before any byte came: the stage ticked the progress while it waited
    assert any(line.startswith("fetch: 0/2 files, 0 B/") for line in out.getvalue().splitlines())
