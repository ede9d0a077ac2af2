"""The index stage: PEP 503/691/658/700 conformance, incrementality, determinism.

The fixture mirror (tests/index_mirror.py) puts catalogue files in a store and
writes lockfiles by hand; pip and uv then install from the built tree over
``file://`` (over HTTP: test_serve.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fixtureindex import Catalogue
from helpers import dead_pid, tree_bytes
from index_mirror import (
    SETS,
    FixtureMirror,
    build_lockfile,
    copy_mirror,
    make_built_mirror,
    pins,
    pip_install,
    uv_compile,
)
from packaging.utils import canonicalize_name
from packaging.version import Version

from lockmirror.errors import InputError, IntegrityError, LockmirrorError, NotFoundError
from lockmirror.formats.lockfile import LockedFile, Lockfile
from lockmirror.formats.manifest import Manifest, check_tree
from lockmirror.formats.mirror_lockfile import relocate_lockfile
from lockmirror.formats.store import Store
from lockmirror.stages import index_fs
from lockmirror.stages.index import IndexResult, build_index, state_dir_for

UPLOAD_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")


@pytest.fixture(scope="module")
def mirror(catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> FixtureMirror:
    return make_built_mirror(catalogue, tmp_path_factory.mktemp("mirror"))


@pytest.fixture
def own_mirror(mirror: FixtureMirror, tmp_path: Path) -> FixtureMirror:
    """A copy of the fixture mirror's inputs this test may change."""
    return copy_mirror(mirror, tmp_path / "own")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """rel path -> (mtime_ns, inode) for every file below root."""
    found = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            stat = path.stat()
            found[path.relative_to(root).as_posix()] = (stat.st_mtime_ns, stat.st_ino)
    return found


class Anchors(HTMLParser):
    """Every <a> of a page: (attributes, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self.meta: dict[str, str | None] = {}
        self._open: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open = dict(attrs)
        if tag == "meta":
            data = dict(attrs)
            self.meta[str(data.get("name"))] = data.get("content")

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self.anchors.append((self._open, data))
            self._open = None


def parse_page(path: Path) -> Anchors:
    parser = Anchors()
    parser.feed(path.read_text())
    return parser


def locked_releases() -> dict[str, set[str]]:
    """project -> versions the fixture lockfiles lock."""
    found: dict[str, set[str]] = {}
    for _, _, entries in SETS.values():
        for project, version, *_ in entries:
            found.setdefault(canonicalize_name(project), set()).add(version)
    return found


# --------------------------------------------------------------------------
# Conformance
# --------------------------------------------------------------------------


def test_manifest_lists_every_file_with_its_hash(mirror: FixtureMirror) -> None:
    manifest = Manifest.read(mirror.out / "manifest.json")
    report = check_tree(mirror.out, manifest, hash_files=True)
    assert report.ok, report
    assert "manifest.json" not in manifest.files
    assert {"index.html", "simple/index.html", "simple/index.json",
            "lockfiles/pylock.core.toml", "constraints/core-arm.txt"} <= set(manifest.files)
    # nothing of lockmirror's own state inside the tree
    assert not [rel for rel in manifest.files if rel.split("/")[-1].startswith(".")]
    assert state_dir_for(mirror.out).is_dir()


def test_root_pages_list_normalized_projects(mirror: FixtureMirror) -> None:
    expected = sorted(locked_releases())
    root = parse_page(mirror.out / "simple" / "index.html")
    assert [text for _, text in root.anchors] == expected
    assert [attrs["href"] for attrs, _ in root.anchors] == [f"{p}/" for p in expected]
    assert "foo-bar-baz" in expected
    data = json.loads((mirror.out / "simple" / "index.json").read_text())
    assert data["meta"] == {"api-version": "1.1"}
    assert [p["name"] for p in data["projects"]] == expected


def test_pep503_project_pages(mirror: FixtureMirror) -> None:
    catalogue = mirror.catalogue
    for project, versions in locked_releases().items():
        page_path = mirror.out / "simple" / project / "index.html"
        page = parse_page(page_path)
        raw = page_path.read_text()
        assert page.meta.get("pypi:repository-version") == "1.1"
        assert page.anchors, project
        seen_versions = set()
        for attrs, text in page.anchors:
            href = str(attrs["href"])
            url, _, fragment = href.partition("#")
            assert not urllib.parse.urlsplit(url).scheme and not url.startswith("/"), href
            target = (page_path.parent / urllib.parse.unquote(url)).resolve()
            assert target == (mirror.out / "files" / project / text).resolve()
            assert fragment == f"sha256={sha256_of(target)}"
            item = catalogue.file(text)
            seen_versions.add(item.version)
            assert attrs.get("data-requires-python") == item.requires_python
            if item.requires_python:
                escaped = item.requires_python.replace(">", "&gt;").replace("<", "&lt;")
                assert f'data-requires-python="{escaped}"' in raw
            assert attrs.get("data-yanked") == item.yanked_reason
            if item.is_wheel:
                metadata = target.with_name(target.name + ".metadata")
                assert attrs["data-core-metadata"] == f"sha256={sha256_of(metadata)}"
                assert "data-dist-info-metadata" not in attrs  # PEP 714; pips 22.3-23.1 break
            else:
                assert "data-core-metadata" not in attrs
        assert seen_versions == versions


def test_pep691_and_pep700_json(mirror: FixtureMirror) -> None:
    catalogue = mirror.catalogue
    for project, versions in locked_releases().items():
        page_path = mirror.out / "simple" / project / "index.json"
        data = json.loads(page_path.read_text())
        assert data["meta"] == {"api-version": "1.1"}
        assert data["name"] == project
        assert data["versions"] == sorted(versions, key=Version)
        html_files = [text for _, text in parse_page(page_path.with_name("index.html")).anchors]
        assert [f["filename"] for f in data["files"]] == html_files
        for entry in data["files"]:
            item = catalogue.file(entry["filename"])
            target = (page_path.parent / urllib.parse.unquote(entry["url"])).resolve()
            assert not urllib.parse.urlsplit(entry["url"]).scheme
            assert entry["hashes"] == {"sha256": sha256_of(target)} == {"sha256": item.sha256}
            assert entry["size"] == target.stat().st_size == item.size
            assert UPLOAD_TIME.match(entry["upload-time"]), entry["upload-time"]
            assert entry["upload-time"] == item.upload_time.strftime("%Y-%m-%dT%H:%M:%SZ")
            assert entry.get("requires-python") == item.requires_python
            assert entry["yanked"] == (item.yanked_reason or True if item.yanked else False)
            if item.is_wheel:
                metadata_hash = sha256_of(target.with_name(target.name + ".metadata"))
                assert entry["core-metadata"] == {"sha256": metadata_hash}
                assert "dist-info-metadata" not in entry  # PEP 714; pips 22.3-23.1 break
            else:
                assert "core-metadata" not in entry and "dist-info-metadata" not in entry


def test_pep658_metadata_files_are_the_wheels_metadata(mirror: FixtureMirror) -> None:
    wheels = [f for f in mirror.catalogue
              if (mirror.out / "files" / f.normalized / f.filename).exists() and f.is_wheel]
    assert len(wheels) >= 8
    for item in wheels:
        metadata = mirror.out / "files" / item.normalized / (item.filename + ".metadata")
        assert metadata.read_bytes() == item.metadata
        assert sha256_of(metadata) == item.metadata_sha256


def test_files_are_hard_links_into_the_store(mirror: FixtureMirror) -> None:
    for item in mirror.catalogue:
        placed = mirror.out / "files" / item.normalized / item.filename
        if placed.exists():
            assert placed.stat().st_ino == mirror.store.path(item.sha256).stat().st_ino
            assert placed.stat().st_mode & 0o444 == 0o444


def test_constraints_and_lockfiles(mirror: FixtureMirror) -> None:
    for path in mirror.lockfiles:
        copy = (mirror.out / "lockfiles" / path.name).read_bytes()  # issue 14: files -> mirror
        assert copy == relocate_lockfile(path.read_bytes())
    lines = (mirror.out / "constraints" / "core-host.txt").read_text().splitlines()
    pins = [line for line in lines if not line.startswith("#")]
    assert "alpha==1.1" in pins and "alpha==2.0" not in pins
    assert "native==1.0" in pins and "fixture-backend==1.0" in pins
    arm = (mirror.out / "constraints" / "core-arm.txt").read_text()
    assert "alpha==2.0" in arm.splitlines()
    assert (mirror.out / "constraints" / "extra-host.txt").is_file()
    assert not (mirror.out / "constraints" / "extra-arm.txt").exists()


# --------------------------------------------------------------------------
# Real installers over file://
# --------------------------------------------------------------------------


def test_uv_respects_requires_python(mirror: FixtureMirror, tmp_path: Path) -> None:
    url = (mirror.out / "simple").as_uri() + "/"
    assert pins(uv_compile(url, "alpha\n", "3.11", tmp_path)) == {"alpha==1.1"}
    assert pins(uv_compile(url, "alpha\n", "3.12", tmp_path)) == {"alpha==2.0"}


def test_uv_skips_yanked_unless_pinned(mirror: FixtureMirror, tmp_path: Path) -> None:
    url = (mirror.out / "simple").as_uri() + "/"
    assert pins(uv_compile(url, "yanky\n", "3.11", tmp_path)) == {"yanky==1.0"}
    output = uv_compile(url, "yanky==1.1\n", "3.11", tmp_path)
    assert pins(output) == {"yanky==1.1"}
    assert "broken build, use 1.0" in output


def test_pip_installs_over_file_url(mirror: FixtureMirror, tmp_path: Path) -> None:
    url = (mirror.out / "simple").as_uri() + "/"
    # beta pulls alpha (not 2.0: Requires-Python) and foo-bar-baz; yanky skips the
    # yanked 1.1; sdistonly is built from its sdist with the mirror's fixture-backend
    installed = pip_install(url, ["beta", "yanky", "sdistonly"], tmp_path / "venv")
    assert installed == ("alpha==1.1 beta==1.0 foo-bar-baz==1.0 sdistonly==1.0 "
                         "speedup==1.2 yanky==1.0")


# --------------------------------------------------------------------------
# Incrementality and determinism
# --------------------------------------------------------------------------


def build(mirror: FixtureMirror, **kwargs: object) -> IndexResult:
    return build_index(mirror.lockfiles, mirror.store, mirror.out, title="Fixture mirror",
                       **kwargs)  # type: ignore[arg-type]


def rewrite_lockfile(mirror: FixtureMirror, lock: Lockfile) -> None:
    lock.write(mirror.root / "lockfiles" / f"pylock.{lock.set_name}.toml")


def test_noop_run_writes_nothing(own_mirror: FixtureMirror) -> None:
    first = build(own_mirror)
    assert not first.noop and first.linked > 0
    before = tree_state(own_mirror.out)
    state = tree_state(state_dir_for(own_mirror.out))
    again = build(own_mirror)
    assert again.noop and not again.changed
    assert (again.projects, again.files, again.total_size) == (
        first.projects, first.files, first.total_size)
    assert tree_state(own_mirror.out) == before
    assert tree_state(state_dir_for(own_mirror.out)) == state
    # without the shortcut: every file compared, still nothing written
    full = build(own_mirror, full=True)
    assert not full.noop and full.written == () and full.removed == ()
    assert tree_state(own_mirror.out) == before
    # without any state at all (e.g. a fresh CI checkout over an old tree)
    shutil.rmtree(state_dir_for(own_mirror.out))
    fresh_state = build(own_mirror)
    assert fresh_state.written == () and fresh_state.removed == ()
    assert tree_state(own_mirror.out) == before


def test_the_index_without_mirror_yaml_loads_no_config_schema(own_mirror: FixtureMirror
                                                              ) -> None:
    """``lockmirror index LOCKFILES --store --out`` (the benchmark's command) stays
    light: the retention size budget, which needs mirror.yaml, is imported with it
    only (its import made every run 0.05 s slower: pydantic and the schema)."""
    code = ("import sys; from lockmirror.cli import main; "
            f"main(['index', *{[str(p) for p in own_mirror.lockfiles]!r}, "
            f"'--store', {str(own_mirror.store.root)!r}, '--out', {str(own_mirror.out)!r}, "
            "'--quiet']); "
            "print(sorted({'pydantic', 'lockmirror.config_schema'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n", done.stdout


def test_copies_laid_out_by_another_writer_are_written_again(
        own_mirror: FixtureMirror, mirror: FixtureMirror,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An index whose lockfile copies an earlier writer laid out (lockmirror
    before rtoml, or another rtoml version) gets them written again on the
    next run, although no lockfile changed: the copies depend on their writer."""
    from lockmirror.stages import index as index_stage
    from lockmirror.stages import index_sets

    real = index_sets.relocate_document
    with monkeypatch.context() as patch:
        for module in (index_stage, index_sets):  # the run's key, the set's record
            patch.setattr(module, "COPY_FORMAT", "an earlier writer")
        patch.setattr(index_sets, "relocate_document",
                      lambda *args, **kwargs: b"# laid out otherwise\n" + real(*args, **kwargs))
        build(own_mirror)
    copy = own_mirror.out / "lockfiles" / "pylock.core.toml"
    assert copy.read_bytes().startswith(b"# laid out otherwise")
    upgraded = build(own_mirror)
    assert not upgraded.noop
    assert sorted(upgraded.written) == ["lockfiles/pylock.core.toml",
                                        "lockfiles/pylock.extra.toml"]
    assert tree_bytes(own_mirror.out) == tree_bytes(mirror.out)  # manifest.json included


def test_changed_pin_rewrites_only_that_project(own_mirror: FixtureMirror,
                                                tmp_path: Path) -> None:
    build(own_mirror)
    before = tree_state(own_mirror.out)
    manifest_before = (own_mirror.out / "manifest.json").read_bytes()
    extra = build_lockfile(own_mirror.catalogue, "extra")
    speedup_10 = own_mirror.catalogue.find("speedup", "1.0")
    packages = tuple(
        replace(p, version=Version("1.0"), wheels=(replace(p.wheels[0], filename=speedup_10.filename,
                                                           sha256=speedup_10.sha256,
                                                           size=speedup_10.size,
                                                           metadata_sha256=speedup_10.metadata_sha256),))
        if p.name == "speedup" else p for p in extra.packages)
    rewrite_lockfile(own_mirror, replace(extra, packages=packages))

    result = build(own_mirror)
    new_file = f"files/speedup/{speedup_10.filename}"
    assert set(result.written) == {
        new_file, new_file + ".metadata",
        "simple/speedup/index.html", "simple/speedup/index.json",
        "index.html", "landing.json", "lockfiles/pylock.extra.toml", "constraints/extra-host.txt",
        "requirements/extra-host.txt",
    }
    after = tree_state(own_mirror.out)
    changed = {rel for rel in after if before.get(rel) != after[rel]}
    assert changed == set(result.written) | {"manifest.json"}
    assert (own_mirror.out / "manifest.json").read_bytes() != manifest_before
    assert result.removed == ()  # core still needs speedup 1.2
    versions = json.loads((own_mirror.out / "simple/speedup/index.json").read_text())["versions"]
    assert versions == ["1.0", "1.2"]
    assert check_tree(own_mirror.out, Manifest.read(own_mirror.out / "manifest.json")).ok
    # the incremental result is exactly what a build from nothing gives
    assert tree_bytes(own_mirror.out) == tree_bytes(full_copy(own_mirror, tmp_path / "full"))


def full_copy(mirror: FixtureMirror, root: Path) -> Path:
    out = root / "dist-index"
    build_index(mirror.lockfiles, mirror.store, out, title="Fixture mirror")
    return out


def test_removed_releases_are_reported_and_gone(own_mirror: FixtureMirror,
                                                tmp_path: Path) -> None:
    build(own_mirror)
    extra = build_lockfile(own_mirror.catalogue, "extra")
    rewrite_lockfile(own_mirror, replace(
        extra, packages=tuple(p for p in extra.packages if p.name != "yanky")))
    core = build_lockfile(own_mirror.catalogue, "core")
    rewrite_lockfile(own_mirror, replace(
        core, packages=tuple(p for p in core.packages if p.name != "native")))

    result = build(own_mirror)
    assert result.removed_releases == ("native 1.0", "yanky 1.0")
    yanky_10 = own_mirror.catalogue.find("yanky", "1.0").filename
    assert f"files/yanky/{yanky_10}" in result.removed
    assert f"files/yanky/{yanky_10}.metadata" in result.removed
    assert {"simple/native/index.html", "simple/native/index.json"} <= set(result.removed)
    for rel in result.removed:
        assert not (own_mirror.out / rel).exists()
    assert not (own_mirror.out / "files" / "native").exists()
    assert not (own_mirror.out / "simple" / "native").exists()
    root_names = [text for _, text in parse_page(own_mirror.out / "simple/index.html").anchors]
    assert "native" not in root_names
    yanky = json.loads((own_mirror.out / "simple/yanky/index.json").read_text())
    assert yanky["versions"] == ["1.1"]
    manifest = Manifest.read(own_mirror.out / "manifest.json")
    assert check_tree(own_mirror.out, manifest).ok
    assert tree_bytes(own_mirror.out) == tree_bytes(full_copy(own_mirror, tmp_path / "full"))


def test_removal_found_without_state(own_mirror: FixtureMirror) -> None:
    build(own_mirror)
    shutil.rmtree(state_dir_for(own_mirror.out))
    extra = build_lockfile(own_mirror.catalogue, "extra")
    rewrite_lockfile(own_mirror, replace(
        extra, packages=tuple(p for p in extra.packages if p.name != "yanky")))
    result = build(own_mirror)
    assert result.removed_releases == ("yanky 1.0",)
    assert check_tree(own_mirror.out, Manifest.read(own_mirror.out / "manifest.json")).ok


def test_output_is_the_same_whatever_the_order(mirror: FixtureMirror, tmp_path: Path) -> None:
    # a second store filled in the opposite order, lockfiles handed over reversed
    store = Store(tmp_path / "store")
    originals = sorted((mirror.root / "store").rglob("*"), reverse=True)
    for path in originals:
        if path.is_file():
            target = store.root / path.relative_to(mirror.root / "store")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    out = tmp_path / "elsewhere" / "dist-index"
    build_index(list(reversed(mirror.lockfiles)), store, out, title="Fixture mirror")
    assert tree_bytes(out) == tree_bytes(mirror.out)


# --------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------


def test_missing_store_file_is_named_and_nothing_is_published(own_mirror: FixtureMirror) -> None:
    beta = own_mirror.catalogue.find("beta", "1.0")
    own_mirror.store.path(beta.sha256).unlink()
    with pytest.raises(NotFoundError, match=re.escape(beta.filename)) as error:
        build(own_mirror)
    assert "run `lockmirror fetch --set core`" in str(error.value)
    assert not own_mirror.out.exists()
    assert not list(own_mirror.root.glob(".dist-index.staging-*"))


def test_empty_metadata_file_in_the_store_counts_as_missing(own_mirror: FixtureMirror) -> None:
    # a PEP 658 file has no size in the lockfile: one a crash left empty is not the file
    beta = own_mirror.catalogue.find("beta", "1.0")
    assert beta.metadata_sha256
    own_mirror.store.path(beta.metadata_sha256).write_bytes(b"")
    with pytest.raises(NotFoundError, match=re.escape(f"{beta.filename}.metadata")):
        build(own_mirror)
    assert not own_mirror.out.exists()


def test_missing_store_file_leaves_the_previous_tree(own_mirror: FixtureMirror) -> None:
    build(own_mirror)
    before = tree_bytes(own_mirror.out)
    extra = build_lockfile(own_mirror.catalogue, "extra")
    gamma = own_mirror.catalogue.find("gamma", "1.0")
    wheel = LockedFile(filename=gamma.filename, url="https://fixture.example/x", size=gamma.size,
                       sha256="0" * 64, metadata_sha256=None)
    rewrite_lockfile(own_mirror, replace(extra, packages=(
        *extra.packages, replace(extra.packages[0], name=canonicalize_name("gamma"),
                                 version=Version("1.0"), wheels=(wheel,), yanked=None))))
    with pytest.raises(NotFoundError, match="not in the store"):
        build(own_mirror)
    assert tree_bytes(own_mirror.out) == before


def test_files_missing_from_the_store_name_the_sets_that_lock_them(
        own_mirror: FixtureMirror) -> None:
    """In a CI matrix each set's own job fetches its files into the store: the hint
    names the fetch of the sets that lock what is missing."""
    def missing(*releases: tuple[str, str]) -> str | None:
        for name, version in releases:
            own_mirror.store.path(own_mirror.catalogue.find(name, version).sha256).unlink()
        with pytest.raises(NotFoundError, match="not in the store") as caught:
            build(own_mirror)
        return caught.value.hint

    assert missing(("beta", "1.0")) == "locked by set core: run `lockmirror fetch --set core`"
    assert missing(("yanky", "1.0")) == ("locked by sets core, extra: run `lockmirror fetch "
                                         "--set core,extra`")  # beta still missing
    assert not own_mirror.out.exists()


@pytest.mark.parametrize("fresh", [True, False])
def test_full_disk_is_one_line_and_leaves_no_half_tree(own_mirror: FixtureMirror,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       fresh: bool) -> None:
    import errno

    if not fresh:
        build(own_mirror)
        before = tree_bytes(own_mirror.out)
        _swap_speedup(own_mirror, "1.0")

    real_link, linked = os.link, []

    def full(source: object, destination: object, **kwargs: object) -> None:
        # an update fills the disk after its first new file (which must not stay)
        if not fresh and not linked:
            linked.append(destination)
            return real_link(source, destination, **kwargs)  # type: ignore[arg-type]
        # as link(2) fails: the source is the first file name, the new link the second
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(source), None,
                      str(destination))

    monkeypatch.setattr(os, "link", full)
    with pytest.raises(LockmirrorError, match="cannot build the index: No space left") as error:
        build(own_mirror)
    assert "\n" not in str(error.value) and "free some space" in str(error.value)
    # names the file it could not write, not the store file it links from
    where = str(error.value).split(": cannot build")[0]
    assert "/files/" in where and str(own_mirror.store.root) not in where
    assert ".tmp" not in where  # the file being written, not its temporary name
    assert not list(own_mirror.root.glob(".dist-index.staging-*"))
    if fresh:
        assert not own_mirror.out.exists()
    else:  # the previous tree and its manifest are untouched
        assert tree_bytes(own_mirror.out) == before


def test_refuses_a_directory_that_is_not_an_index(own_mirror: FixtureMirror) -> None:
    own_mirror.out.mkdir()
    (own_mirror.out / "precious.txt").write_text("keep me")
    with pytest.raises(LockmirrorError, match="not a lockmirror index"):
        build(own_mirror)
    assert (own_mirror.out / "precious.txt").read_text() == "keep me"


def test_two_sets_disagreeing_about_a_file(own_mirror: FixtureMirror) -> None:
    extra = build_lockfile(own_mirror.catalogue, "extra")
    packages = tuple(replace(p, wheels=tuple(replace(w, sha256="f" * 64) for w in p.wheels))
                     if p.name == "speedup" else p for p in extra.packages)
    rewrite_lockfile(own_mirror, replace(extra, packages=packages))
    with pytest.raises(IntegrityError, match="speedup-1.2-py3-none-any.whl is locked with"):
        build(own_mirror)
    # a revision retention keeps is named as one (found by an outside tester: "in set
    # 'core' and ... in set 'core'" left the reader to guess where the other hash was)
    kept = own_mirror.root / "kept" / "pylock.extra.toml"
    kept.parent.mkdir()
    kept.write_bytes((own_mirror.root / "lockfiles" / "pylock.extra.toml").read_bytes())
    rewrite_lockfile(own_mirror, extra)
    note = "kept for the previous lock (extra@1a2b3c4d), until the next lock"
    with pytest.raises(IntegrityError, match=re.escape(
            f"... in set 'extra' ({note}) (re-lock both sets from the same index)")):
        build(own_mirror, retained={kept: note})


def test_a_release_two_kept_revisions_name_is_labelled_by_the_newer(
        own_mirror: FixtureMirror) -> None:
    """Found by an outside tester: the landing page named whichever revision sorted
    first by commit hash ("kept for an earlier lock (...), until 2026-12-10") where
    the previous lock keeps the release longer. Revisions come newest first."""
    extra = build_lockfile(own_mirror.catalogue, "extra")
    kept_dir = own_mirror.root / "kept"
    kept_dir.mkdir()
    previous, older = (kept_dir / "pylock.extra@ffffffff.toml",
                       kept_dir / "pylock.extra@aaaaaaaa.toml")  # the older sorts first
    extra.write(previous)
    replace(extra, input_hash="older").write(older)
    rewrite_lockfile(own_mirror, replace(extra, packages=tuple(
        p for p in extra.packages if p.name != "yanky")))
    notes = {previous: "kept for the previous lock (extra@ffffffff), until the next lock "
                       "or 2026-12-20, whichever is later",
             older: "kept for an earlier lock (extra@aaaaaaaa), until 2026-12-10"}
    build(own_mirror, retained=notes)
    landing = json.loads((own_mirror.out / "landing.json").read_text())
    (summary,) = [s for s in landing["sets"] if s["name"] == "extra"]
    assert {(p["name"], p["version"]): p.get("kept_for") for p in summary["packages"]} == {
        ("speedup", "1.2"): None, ("yanky", "1.0"): notes[previous]}
    assert notes[previous] in (own_mirror.out / "index.html").read_text()


def test_store_size_mismatch(own_mirror: FixtureMirror) -> None:
    beta = own_mirror.catalogue.find("beta", "1.0")
    path = own_mirror.store.path(beta.sha256)
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(IntegrityError, match="beta-1.0-py3-none-any.whl") as error:
        build(own_mirror)
    assert "no longer has the sha256 it is named by" in str(error.value)
    assert "doit fetch" in str(error.value)


def test_a_size_edited_in_the_lockfile_is_blamed_on_the_lockfile(
        own_mirror: FixtureMirror) -> None:
    """The store file still has the sha256 it is named by: the lockfile is what is
    wrong, and removing the store file would not help."""
    for path in own_mirror.lockfiles:  # every set that locks beta
        lock = build_lockfile(own_mirror.catalogue, path.name.split(".")[1])
        packages = tuple(replace(p, wheels=tuple(replace(w, size=w.size + 1) for w in p.wheels))
                         if p.name == "beta" else p for p in lock.packages)
        rewrite_lockfile(own_mirror, replace(lock, packages=packages))
    with pytest.raises(IntegrityError, match="the lockfile says .* bytes for "
                       "files/beta/beta-1.0-py3-none-any.whl") as error:
        build(own_mirror)
    assert "doit lock" in str(error.value) and "doit fetch" not in str(error.value)


def test_full_hashes_the_store_files_it_links(own_mirror: FixtureMirror) -> None:
    """Disk rot (same size, other bytes) passes a normal run, which trusts the
    store's names; --full reads every store file and names the damaged one."""
    build(own_mirror)
    manifest = (own_mirror.out / "manifest.json").read_bytes()
    beta = own_mirror.catalogue.find("beta", "1.0")
    path = own_mirror.store.path(beta.sha256)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))  # in place: the tree's hard link sees it too
    assert build(own_mirror).noop
    with pytest.raises(IntegrityError, match="files/beta/beta-1.0-py3-none-any.whl no "
                       "longer has the sha256") as error:
        build(own_mirror, full=True)
    assert "index --full" in str(error.value)
    assert (own_mirror.out / "manifest.json").read_bytes() == manifest
    path.unlink()  # the way out the hint gives: fetch again (here: the good bytes), --full
    own_mirror.store.write(beta.sha256, beta.path.read_bytes())
    assert "files/beta/beta-1.0-py3-none-any.whl" in build(own_mirror, full=True).written
    assert sha256_of(own_mirror.out / "files/beta/beta-1.0-py3-none-any.whl") == beta.sha256


@pytest.mark.parametrize(("edit", "says"), [
    (("sha256 = \"{sha256}\"", "sha256 = \"zz\""), "sha256 'zz' is not 64 hex digits"),
    (("size = {size}\n", "size = -1\n"), "size -1 is not a byte count"),
], ids=["sha256", "size"])
def test_a_malformed_file_entry_is_an_input_error(own_mirror: FixtureMirror,
                                                   edit: tuple[str, str], says: str) -> None:
    """A lockfile edited by hand into nonsense is malformed input (exit 2), named as such."""
    beta = own_mirror.catalogue.find("beta", "1.0")
    for path in own_mirror.lockfiles:
        text = path.read_text()
        old = edit[0].format(sha256=beta.sha256, size=beta.size)
        if old in text:
            path.write_text(text.replace(old, edit[1]))
            break
    else:
        raise AssertionError("no lockfile locks beta 1.0")
    with pytest.raises(InputError, match=says):
        build(own_mirror)


def test_unsafe_file_name_is_refused(own_mirror: FixtureMirror) -> None:
    text = (own_mirror.root / "lockfiles" / "pylock.extra.toml").read_text()
    name = own_mirror.catalogue.find("yanky", "1.0").filename
    (own_mirror.root / "lockfiles" / "pylock.extra.toml").write_text(
        text.replace(f'name = "{name}"', 'name = "../../escape.whl"'))
    with pytest.raises(LockmirrorError, match="unsafe file name|Invalid wheel filename"):
        build(own_mirror)
    assert not list(own_mirror.root.parent.rglob("escape.whl"))


@pytest.fixture
def other_filesystem() -> Iterator[Path]:
    base = Path("/dev/shm")
    if not base.is_dir() or not os.access(base, os.W_OK):
        pytest.skip("needs /dev/shm (a second file system) to see the copy fallback")
    path = Path(__import__("tempfile").mkdtemp(dir=base, prefix="lockmirror-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_copies_when_the_store_is_on_another_file_system(
        mirror: FixtureMirror, other_filesystem: Path, tmp_path: Path) -> None:
    if os.stat(other_filesystem).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is on the same file system here")
    moved = copy_mirror(mirror, other_filesystem / "mirror")
    out = tmp_path / "dist-index"
    first = build_index(moved.lockfiles, moved.store, out, title="Fixture mirror")
    assert first.copied > 0 and first.linked == 0
    assert tree_bytes(out) == tree_bytes(mirror.out)
    before = tree_state(out)
    again = build_index(moved.lockfiles, moved.store, out, title="Fixture mirror", full=True)
    assert again.written == () and tree_state(out) == before


def test_manifest_encoding_is_plain_sorted_json(mirror: FixtureMirror) -> None:
    from lockmirror.formats.manifest import FORMAT, entries_to_json

    manifest = Manifest.read(mirror.out / "manifest.json")
    expected = json.dumps({"format": FORMAT, "files": entries_to_json(manifest.files)},
                          indent=1, sort_keys=True) + "\n"
    assert (mirror.out / "manifest.json").read_text() == expected == manifest.dumps()


def test_a_set_no_longer_built_is_taken_out(own_mirror: FixtureMirror, tmp_path: Path) -> None:
    build(own_mirror)
    core_only = [p for p in own_mirror.lockfiles if "core" in p.name]
    result = build_index(core_only, own_mirror.store, own_mirror.out, title="Fixture mirror")
    assert {"lockfiles/pylock.extra.toml", "constraints/extra-host.txt",
            "requirements/extra-host.txt"} <= set(result.removed)
    assert result.removed_releases == ("yanky 1.0",)  # speedup 1.2 is still in core
    landing = (own_mirror.out / "index.html").read_text()
    assert 'id="set-extra"' not in landing and 'id="set-core"' in landing
    assert check_tree(own_mirror.out, Manifest.read(own_mirror.out / "manifest.json")).ok
    fresh = tmp_path / "fresh" / "dist-index"
    build_index(core_only, own_mirror.store, fresh, title="Fixture mirror")
    assert tree_bytes(own_mirror.out) == tree_bytes(fresh)


def test_index_command(own_mirror: FixtureMirror, capsys: pytest.CaptureFixture[str]) -> None:
    from lockmirror.cli import main

    args = ["index", *map(str, own_mirror.lockfiles), "--store", str(own_mirror.store.root),
            "--out", str(own_mirror.out), "--title", "Fixture mirror"]
    assert main(args) == 0
    assert "8 projects, 12 files" in capsys.readouterr().out
    assert main(args) == 0
    assert "up to date" in capsys.readouterr().out
    own_mirror.store.path(own_mirror.catalogue.find("beta", "1.0").sha256).unlink()
    assert main([*args, "--full"]) == 1
    assert "not in the store" in capsys.readouterr().err


def test_a_state_of_another_version_is_said_and_the_tree_is_built_as_fresh(
        own_mirror: FixtureMirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """After an upgrade every page is rendered again: a long run that says why (it said
    nothing); a missing state or --full is no upgrade and says nothing. The note says
    every page and file was compared: after "0 files written" it said "rebuilt every
    page" (found by an outside tester)."""
    from lockmirror.cli import main

    args = ["index", *map(str, own_mirror.lockfiles), "--store", str(own_mirror.store.root),
            "--out", str(own_mirror.out), "--title", "Fixture mirror"]
    said = "index: compared every page and file: the index state is another lockmirror version's"
    state = state_dir_for(own_mirror.out) / "state.json"

    def older_state() -> None:
        data = json.loads(state.read_text())
        state.write_text(json.dumps({**data, "format": "lockmirror-index/4;state/2"}))

    assert main(args) == 0 and said not in capsys.readouterr().err
    older_state()
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert err.splitlines() == [said]
    assert "; 0 files written" in out, out  # compared, none differed: the note says so
    assert tree_bytes(own_mirror.out) == tree_bytes(full_copy(own_mirror, tmp_path / "fresh"))
    assert main(args) == 0 and capsys.readouterr().err == ""  # the state is this version's
    older_state()
    assert main([*args, "--full"]) == 0 and capsys.readouterr().err == ""
    shutil.rmtree(state_dir_for(own_mirror.out))
    assert main(args) == 0 and capsys.readouterr().err == ""


def test_files_deleted_by_hand_are_put_back(own_mirror: FixtureMirror) -> None:
    build(own_mirror)
    beta = own_mirror.catalogue.find("beta", "1.0").filename
    gone = [f"files/beta/{beta}", "simple/beta/index.json", "constraints/extra-host.txt"]
    for rel in gone:
        (own_mirror.out / rel).unlink()
    (own_mirror.out / "files" / "beta" / "stray.txt").write_text("not from a lockfile")
    result = build(own_mirror)
    assert not result.noop
    assert set(result.written) == set(gone)
    assert result.removed == ("files/beta/stray.txt",) and result.removed_releases == ()
    assert check_tree(own_mirror.out, Manifest.read(own_mirror.out / "manifest.json")).ok
    assert build(own_mirror).noop


def test_quarantined_releases_are_left_out(own_mirror: FixtureMirror, tmp_path: Path) -> None:
    build(own_mirror)
    quarantined = {(canonicalize_name("yanky"), Version("1.0")),
                   (canonicalize_name("native"), Version("1.0"))}
    # audit --quarantine lists them and runs this stage, the one writer of the tree
    result = build(own_mirror, exclude=quarantined)
    yanky_10 = own_mirror.catalogue.find("yanky", "1.0").filename
    assert f"files/yanky/{yanky_10}" in result.removed
    assert "simple/native/index.html" in result.removed
    assert not (own_mirror.out / "files" / "yanky" / yanky_10).exists()
    assert not (own_mirror.out / "simple" / "native").exists()
    assert json.loads((own_mirror.out / "simple/yanky/index.json").read_text())["versions"] == [
        "1.1"]
    assert "native" not in (own_mirror.out / "simple/index.html").read_text()
    assert "yanky==1.0" in (own_mirror.out / "constraints/extra-host.txt").read_text()
    landing = (own_mirror.out / "index.html").read_text()
    assert "quarantined" in landing
    # every link on the landing page leads somewhere: native's page is gone, so is its link
    links = set(re.findall(r'href="([^"#:]+)"', landing))
    assert "simple/yanky/" in links and "simple/native/" not in links
    assert [link for link in links if not (own_mirror.out / link).exists()] == []
    assert check_tree(own_mirror.out, Manifest.read(own_mirror.out / "manifest.json")).ok
    assert build(own_mirror, exclude=quarantined).noop
    fresh = tmp_path / "fresh" / "dist-index"
    build_index(own_mirror.lockfiles, own_mirror.store, fresh, title="Fixture mirror",
                exclude=quarantined)
    assert tree_bytes(own_mirror.out) == tree_bytes(fresh)
    # taken off the list: back in the index
    back = build(own_mirror)
    assert f"files/yanky/{yanky_10}" in back.written
    assert (own_mirror.out / "simple" / "native" / "index.html").is_file()
    assert tree_bytes(own_mirror.out) == tree_bytes(full_copy(own_mirror, tmp_path / "b"))


def test_the_landing_page_counts_what_is_served(own_mirror: FixtureMirror) -> None:
    """Found by an outside tester: a project's row counted the files of its
    quarantined release (``2 files 216.5 KiB``) while the header's count left them
    out. A row's files and size, and its set's size, are what the mirror serves;
    the release itself stays listed, marked quarantined."""
    from lockmirror.fsutil import format_size

    build(own_mirror, exclude={(canonicalize_name("yanky"), Version("1.0"))})
    page = (own_mirror.out / "index.html").read_text()
    extra = page.split('<section id="set-extra">', 1)[1]

    def counts(project: str) -> list[str]:
        row = next(r for r in re.findall(r"<tr>.*?</tr>", extra, flags=re.S)
                   if f">{project}<" in r)
        return re.findall(r'<td class="num">([^<]*)</td>', row)

    assert "1.0" + '<span class="tag yanked">quarantined</span>' in extra
    assert counts("yanky") == ["0", "0 B"]
    locked = Lockfile.read(own_mirror.root / "lockfiles" / "pylock.extra.toml")
    speedup = next(p for p in locked.packages if p.name == "speedup")
    served = sum(f.size for f in speedup.files)
    assert counts("speedup") == [str(len(speedup.files)), format_size(served)]
    assert f"<dt>size</dt><dd>{format_size(served)}</dd>" in extra
    # the header counts the same files: those under files/, .metadata files aside
    artifacts = [p for p in (own_mirror.out / "files").glob("*/*")
                 if not p.name.endswith(".metadata")]
    assert f"{len(artifacts)} files, " in page


# --------------------------------------------------------------------------
# The same bytes as the index stage before it was made plain (golden listing),
# and incremental without parsing what did not change
# --------------------------------------------------------------------------


def test_tree_matches_the_golden_listing(catalogue: Catalogue, tmp_path: Path) -> None:
    """Every file of the fixture mirror's index, byte for byte (by sha256), as
    tests/data/index_golden.json records it. After a deliberate change to what
    the index writes, regenerate that file with `.venv/bin/python tests/index_golden.py`
    and review its diff."""
    from index_golden import GOLDEN, PYTHON, build_trees

    golden = json.loads(GOLDEN.read_text())
    if golden["python"] != PYTHON:
        pytest.skip(f"the golden listing was made with Python {golden['python']}")
    assert build_trees(tmp_path) == golden["trees"]


def _swap_speedup(mirror: FixtureMirror, version: str) -> None:
    """Lock speedup ``version`` in the extra set."""
    extra = build_lockfile(mirror.catalogue, "extra")
    item = mirror.catalogue.find("speedup", version)
    packages = tuple(
        replace(p, version=Version(version), wheels=(replace(
            p.wheels[0], filename=item.filename, sha256=item.sha256, size=item.size,
            metadata_sha256=item.metadata_sha256),))
        if p.name == "speedup" else p for p in extra.packages)
    rewrite_lockfile(mirror, replace(extra, packages=packages))


def test_manifest_over_several_runs(own_mirror: FixtureMirror,
                                                              tmp_path: Path) -> None:
    # unchanged projects keep their manifest entries from the previous manifest;
    # a change and its undoing each give what a build from nothing gives
    build(own_mirror)
    original = tree_bytes(own_mirror.out)
    _swap_speedup(own_mirror, "1.0")
    build(own_mirror)
    assert tree_bytes(own_mirror.out) == tree_bytes(full_copy(own_mirror, tmp_path / "a"))
    rewrite_lockfile(own_mirror, build_lockfile(own_mirror.catalogue, "extra"))
    build(own_mirror)
    assert tree_bytes(own_mirror.out) == original


def _break_last_version(path: Path) -> None:
    """Make the version of the last package block of lockfile ``path`` invalid."""
    text = path.read_text()
    block = text.rfind("\n[[packages]]\n")
    version = text.index('\nversion = "', block)
    path.write_text(text[:version] + '\nversion = "not a version!"'
                    + text[text.index("\n", version + 1):])


def test_invalid_lockfile_on_update_is_one_line_and_keeps_the_tree(
        own_mirror: FixtureMirror) -> None:
    build(own_mirror)
    before = tree_bytes(own_mirror.out)
    path = own_mirror.root / "lockfiles" / "pylock.extra.toml"
    _break_last_version(path)
    with pytest.raises(LockmirrorError, match="not a valid PEP 751 lockfile") as error:
        build(own_mirror)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert tree_bytes(own_mirror.out) == before


def test_invalid_lockfile_on_first_build_leaves_no_tree(own_mirror: FixtureMirror) -> None:
    _break_last_version(own_mirror.root / "lockfiles" / "pylock.core.toml")
    with pytest.raises(LockmirrorError, match="not a valid PEP 751 lockfile"):
        build(own_mirror)
    assert not own_mirror.out.exists()
    assert not list(own_mirror.root.glob(".dist-index.staging-*"))


def test_only_changed_lockfiles_are_parsed(own_mirror: FixtureMirror, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from lockmirror.stages import index_sets

    parsed: list[str] = []
    parse = index_sets.parse_set

    def recorded(item: Any, url_rule: Any = None) -> Any:
        parsed.append(item.path.name)
        return parse(item, url_rule)

    monkeypatch.setattr(index_sets, "parse_set", recorded)
    build(own_mirror)
    assert sorted(parsed) == ["pylock.core.toml", "pylock.extra.toml"]
    parsed.clear()
    _swap_speedup(own_mirror, "1.0")
    result = build(own_mirror)
    assert parsed == ["pylock.extra.toml"]  # core's rows are those of the last run
    assert "simple/speedup/index.html" in result.written
    assert tree_bytes(own_mirror.out) == tree_bytes(full_copy(own_mirror, tmp_path / "a"))
    parsed.clear()
    full = build(own_mirror, full=True)  # trusts nothing: parses everything, writes nothing
    assert sorted(parsed) == ["pylock.core.toml", "pylock.extra.toml"]
    assert full.written == () and full.removed == ()


def test_metadata_hash_that_is_not_a_hash_is_refused(own_mirror: FixtureMirror) -> None:
    # the metadata sha256 names a store file: a path in its place must not be followed
    path = own_mirror.root / "lockfiles" / "pylock.extra.toml"
    text = path.read_text()
    digest = own_mirror.catalogue.find("yanky", "1.0").metadata_sha256
    assert digest in text
    path.write_text(text.replace(digest, "ab/../../../../../../etc/passwd", 1))
    with pytest.raises(LockmirrorError, match="invalid metadata sha256"):
        build(own_mirror)
    assert not own_mirror.out.exists()


def test_the_url_rule_checks_what_it_parses_and_again_when_the_sources_change(
        own_mirror: FixtureMirror) -> None:
    """The index stage checks the file URLs of each lockfile it parses; rows kept
    from a run under other sources are not trusted (issue 19's URL rule)."""
    from lockmirror.config_schema import SourceConfig
    from lockmirror.errors import UrlPolicyError
    from lockmirror.formats.url_policy import UrlRule

    fixture = UrlRule((SourceConfig(name="fixture", url="https://fixture.example/simple/"),))
    build(own_mirror, url_rule=fixture)
    before = tree_bytes(own_mirror.out)
    assert build(own_mirror, url_rule=fixture).noop
    # the same lockfiles, but mirror.yaml now declares another file host
    elsewhere = UrlRule((SourceConfig(name="fixture", url="https://fixture.example/simple/",
                                      files_url=["https://files.elsewhere.example/"]),))
    with pytest.raises(UrlPolicyError, match="fixture.example/files/"):
        build(own_mirror, url_rule=elsewhere)
    assert tree_bytes(own_mirror.out) == before  # nothing written
    assert build(own_mirror, url_rule=fixture).noop


def test_verify_during_an_index_build_says_one_is_running(
        own_mirror: FixtureMirror, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an outside tester: verify of an index an index run was updating listed
    the run's new files as unexpected and said to run index again. While a build holds
    the index's lock (the one build_index takes), verify says so in one line and exits
    1, listing nothing; once the build ended, it verifies."""
    from lockmirror.cli import main
    from lockmirror.fsutil import one_at_a_time

    build(own_mirror)
    with one_at_a_time(state_dir_for(own_mirror.out), "an index build, as build_index"):
        (own_mirror.out / "files" / "new-1.0.tar.gz").write_bytes(b"the run's new file")
        capsys.readouterr()
        assert main(["verify", str(own_mirror.out)]) == 1
        out, err = capsys.readouterr()
        (own_mirror.out / "files" / "new-1.0.tar.gz").unlink()  # the run's, as it ends
    assert out == ""
    assert err == (f"lockmirror: error: an index build is running on {own_mirror.out}; "
                   "verify again when it ends\n")
    assert main(["verify", str(own_mirror.out)]) == 0


def test_verify_of_a_damaged_index_says_to_run_index_again(
        own_mirror: FixtureMirror, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an outside tester: after an index run killed half-way, verify sent the
    operator to re-import a bundle; the way out is an index run (a plain one after an
    interrupted run, whose inputs differ from the saved state's; --full for a file
    changed by hand, which a no-op run's stats do not see)."""
    from lockmirror.cli import main

    build(own_mirror)
    (own_mirror.out / "index.html").write_text("half written")
    assert main(["verify", str(own_mirror.out)]) == 1
    assert "verify: to repair a built index: run `lockmirror index` again" in \
        capsys.readouterr().out
    build(own_mirror, full=True)
    assert main(["verify", str(own_mirror.out)]) == 0


def test_a_second_build_at_once_is_told_and_changes_nothing(own_mirror: FixtureMirror) -> None:
    from lockmirror.fsutil import one_at_a_time

    build(own_mirror)
    before = tree_bytes(own_mirror.out)
    with one_at_a_time(state_dir_for(own_mirror.out), "the first build"):
        with pytest.raises(LockmirrorError, match="another lockmirror index is building"):
            build(own_mirror, full=True)
    assert tree_bytes(own_mirror.out) == before
    assert build(own_mirror).noop  # the lock goes with the first build
    # the same index by another name (found by an outside tester: a second state and a
    # second lock beside the link, two builds of one tree at once)
    link = own_mirror.out.with_name("link")
    link.symlink_to(own_mirror.out)
    assert state_dir_for(link) == state_dir_for(own_mirror.out)
    with one_at_a_time(state_dir_for(own_mirror.out), "the first build"):
        with pytest.raises(LockmirrorError, match="another lockmirror index is building"):
            build_index(own_mirror.lockfiles, own_mirror.store, link, full=True)
    assert build_index(own_mirror.lockfiles, own_mirror.store, link,
                       title="Fixture mirror").noop  # the state the real name left


def test_a_failure_after_the_manifest_keeps_the_files_it_names(
        own_mirror: FixtureMirror, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new files go again after a failure only while nothing names them yet: once
    the manifest is written (Ctrl-C while removing), they stay, and every manifest
    entry still resolves."""
    build(own_mirror)
    _swap_speedup(own_mirror, "1.0")

    def interrupted(root: Path, removed: list[str]) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(index_fs, "remove_files", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build(own_mirror)
    monkeypatch.undo()
    manifest = Manifest.read(own_mirror.out / "manifest.json")
    assert not [rel for rel in manifest.files if not (own_mirror.out / rel).exists()]


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """In this process, a write past ``limit`` bytes of a file fails (EFBIG), as a
    full disk fails it: a real failure, made without root."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the error, not the signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def tree_dirs(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_dir())


def _drop_two_projects(mirror: FixtureMirror) -> Lockfile:
    """Lock core without beta and foo-bar-baz; the whole core lock (which adds them)."""
    core = build_lockfile(mirror.catalogue, "core")
    rewrite_lockfile(mirror, replace(core, packages=tuple(
        p for p in core.packages if p.name not in {"beta", "foo-bar-baz"})))
    return core


def test_an_update_that_fails_leaves_the_previous_tree_as_it_was(
        own_mirror: FixtureMirror, tmp_path: Path) -> None:
    """Found by an outside tester: an update that failed half-way (a full disk) had
    rewritten pages, lockfile and constraints in place and left the new projects' files,
    so verify failed (4 altered, 8 unexpected). Pages that replace files are renamed into
    place only once everything is written: until then a failure leaves every old file
    and takes out every new one, directories included. Here the largest file the update
    writes (after it replaced pages) is one byte too large for this process."""
    core = _drop_two_projects(own_mirror)
    build(own_mirror)
    before, dirs = tree_bytes(own_mirror.out), tree_dirs(own_mirror.out)
    rewrite_lockfile(own_mirror, core)  # two new projects
    _swap_speedup(own_mirror, "1.0")  # and a changed one
    wanted = tree_bytes(full_copy(own_mirror, tmp_path / "wanted"))
    sizes = sorted(len(data) for rel, data in wanted.items()
                   if before.get(rel) != data and not rel.startswith("files/"))
    assert len(sizes) > 5 and sizes[-1] > sizes[-2]
    with file_size_limit(sizes[-2]), pytest.raises(LockmirrorError, match="File too large"):
        build(own_mirror)
    assert tree_bytes(own_mirror.out) == before  # no temporary file either
    assert tree_dirs(own_mirror.out) == dirs
    assert check_tree(own_mirror.out, Manifest.read(own_mirror.out / "manifest.json")).ok
    result = build(own_mirror)
    assert "simple/beta/index.html" in result.written
    assert tree_bytes(own_mirror.out) == wanted


@pytest.mark.parametrize("free_kib", [16, 40])
def test_a_full_disk_leaves_the_previous_tree_as_it_was(own_mirror: FixtureMirror,
                                                         tmp_path: Path, free_kib: int) -> None:
    """The outside tester's own case: the index on a 2 MB tmpfs filled up to a few KiB,
    an update adding two projects (copies: the store is on another file system); before
    the fix 16 KiB free left their empty directories, 40 KiB altered pages. Needs root
    (mount); skipped where mounting is not allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs",
                                            str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not allowed here")
    try:
        out = disk / "idx"
        core = _drop_two_projects(own_mirror)
        build_index(own_mirror.lockfiles, own_mirror.store, out, title="Fixture mirror")
        before, dirs = tree_bytes(out), tree_dirs(out)
        rewrite_lockfile(own_mirror, core)
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "filler").write_bytes(b"\0" * (free - free_kib * 1024))
        with pytest.raises(LockmirrorError, match="No space left on device"):
            build_index(own_mirror.lockfiles, own_mirror.store, out, title="Fixture mirror")
        assert tree_bytes(out) == before
        assert tree_dirs(out) == dirs
        (disk / "filler").unlink()
        build_index(own_mirror.lockfiles, own_mirror.store, out, title="Fixture mirror")
        assert check_tree(out, Manifest.read(out / "manifest.json")).ok
        assert "simple/beta/index.html" in tree_bytes(out)
    finally:
        subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_an_update_into_a_read_only_directory_leaves_the_previous_tree(
        own_mirror: FixtureMirror) -> None:
    """The outside tester's other case: a directory of the index chmod 555 (here the
    top one, where the landing page is replaced after the project pages were)."""
    core = _drop_two_projects(own_mirror)
    build(own_mirror)
    before, dirs = tree_bytes(own_mirror.out), tree_dirs(own_mirror.out)
    rewrite_lockfile(own_mirror, core)
    own_mirror.out.chmod(0o555)
    try:
        with pytest.raises(LockmirrorError, match="Permission denied"):
            build(own_mirror)
    finally:
        own_mirror.out.chmod(0o755)
    assert tree_bytes(own_mirror.out) == before
    assert tree_dirs(own_mirror.out) == dirs
    build(own_mirror)
    assert check_tree(own_mirror.out, Manifest.read(own_mirror.out / "manifest.json")).ok


def test_a_killed_runs_temporary_files_are_leftovers_and_go_with_the_next_run(
        own_mirror: FixtureMirror) -> None:
    """An update killed (kill -9) before its renames leaves its temporary files: verify
    names them leftovers, not unexpected files, and the next run removes them; those
    of a run still going (its pid alive) are left alone."""
    build(own_mirror)
    gone, running = dead_pid(), os.getppid()  # the run's own pid's go too: not os.getpid()
    killed = own_mirror.out / "simple" / f".index.html.index-{gone}.tmp"
    live = own_mirror.out / "simple" / f".index.json.index-{running}.tmp"
    killed.write_text("half a page")
    live.write_text("a page")
    report = check_tree(own_mirror.out, Manifest.read(own_mirror.out / "manifest.json"))
    assert report.ok and report.temporary == (f"simple/.index.html.index-{gone}.tmp",
                                              f"simple/.index.json.index-{running}.tmp")
    result = build(own_mirror)
    assert not killed.exists() and live.exists()
    assert not result.noop and result.removed == () and result.written == ()


def served_modes(root: Path) -> tuple[set[int], set[int]]:
    """The permission bits of every file and of every directory below ``root`` (itself too)."""
    found = [root, *root.rglob("*")]
    return ({p.stat().st_mode & 0o777 for p in found if p.is_file()},
            {p.stat().st_mode & 0o777 for p in found if p.is_dir()})


def test_the_index_is_readable_by_a_web_server_whatever_the_umask(
        own_mirror: FixtureMirror, tmp_path: Path) -> None:
    """Found by an outside tester: under umask 077 the pages, index.html and the
    directories were 0600/0700 (manifest.json alone 0644), so a web server running as
    another user could not read the index it is meant to serve."""
    out = tmp_path / "dist-index"
    old = os.umask(0o077)
    try:
        build_index(own_mirror.lockfiles, own_mirror.store, out, title="Fixture mirror")
        assert served_modes(out) == ({0o644}, {0o755})  # store files keep the store's 0644
        # updated in place: a project's pages and directory made again
        project = sorted((out / "simple").iterdir())[0]
        shutil.rmtree(project)
        (out / "index.html").unlink()
        again = build_index(own_mirror.lockfiles, own_mirror.store, out, title="Fixture mirror")
        assert again.written and project.is_dir()
        assert served_modes(out) == ({0o644}, {0o755})
    finally:
        os.umask(old)


def test_a_tree_compared_file_by_file_is_made_served_and_the_store_is_not_touched(
        own_mirror: FixtureMirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an outside tester: an index an older lockmirror built under umask 077
    kept its 0600 pages and 0700 directories when this version rebuilt it (every page
    and file compared), so a web server running as another user still could not read
    it. A run that compares every file (another version's state, --full) makes the
    pages and directories it keeps served; a hard link is never chmod'ed through (the
    store's files, a page linked elsewhere: written anew)."""
    from lockmirror.cli import main

    args = ["index", *map(str, own_mirror.lockfiles), "--store", str(own_mirror.store.root),
            "--out", str(own_mirror.out), "--title", "Fixture mirror"]
    state = state_dir_for(own_mirror.out) / "state.json"
    outside = tmp_path / "outside.html"
    for full in (False, True):
        assert main(args) == 0
        found = [own_mirror.out, *own_mirror.out.rglob("*")]
        pages = [p for p in found if p.is_file() and p.stat().st_nlink == 1]
        for path in [p for p in found if p.is_dir()] + pages:  # an older version's, umask 077
            path.chmod(0o700 if path.is_dir() else 0o600)
        outside.unlink(missing_ok=True)
        os.link(own_mirror.out / "simple" / "index.html", outside)  # a page linked elsewhere
        data = json.loads(state.read_text())
        state.write_text(json.dumps({**data, "format": "lockmirror-index/4;state/2"}))
        store_modes = {p: p.stat().st_mode for p in own_mirror.store.root.rglob("*")}
        capsys.readouterr()
        assert main([*args, "--full"] if full else args) == 0
        assert "; 1 file written" in capsys.readouterr().out  # the linked page, anew
        assert served_modes(own_mirror.out) == ({0o644}, {0o755})
        assert outside.stat().st_mode & 0o777 == 0o600  # not chmod'ed through the link
        assert {p: p.stat().st_mode for p in own_mirror.store.root.rglob("*")} == store_modes
