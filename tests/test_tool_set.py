"""Issue 15: lockmirror's own wheels as a locked set, and the far side without lockmirror.

* The tool set (``lockfiles/pylock.lockmirror-tool.toml``) is locked for every
  target of mirror.yaml whose Python lockmirror supports, never for the build
  machine (the lockfile is the same whichever Python locks it); the committed one (from PyPI, for the bundled mirror.yaml) carries
  cp311 x86_64 and cp312 aarch64 wheels for glibc 2.28, checked by tag.
* A fixture mirror whose source serves lockmirror's dependencies (repacked from
  this environment, so no package index is needed) is locked, fetched, indexed
  and bundled with ``LOCKMIRROR_TOOL_WHEELS=index``; the bundle's README.txt
  names what its wheels cover, and its own commands install lockmirror into a
  fresh venv with ``pip install --no-index --find-links tool/``.
* A far side with no Python for lockmirror follows README.txt's by-hand
  commands (sha256sum, tar, ``ssh-keygen -Y verify``) on a signed bundle.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pytest
from fixtureindex import FixtureIndex, build_wheel
from helpers import subprocess_env
from packaging.tags import platform_tags
from packaging.utils import parse_wheel_filename
from test_bundle import TOOL_CACHE, make_inputs

from lockmirror import pipeline
from lockmirror.config import LoadedConfig, load_config, parse_config
from lockmirror.errors import IntegrityError, StaleLockError
from lockmirror.formats import signing
from lockmirror.formats.bundle_format import BundleInfo
from lockmirror.formats.lockfile import Lockfile
from lockmirror.formats.manifest import Entry
from lockmirror.formats.store import Store
from lockmirror.stages.bundle import BundleResult, build_bundle
from lockmirror.stages.bundle_readme import readme_text
from lockmirror.stages.lock import stale_sets
from lockmirror.stages.tool_set import (
    DEFAULT_TOOL_HOST,
    DEFAULT_TOOL_TARGET,
    TOOL_SET,
    choose_tool_wheels,
    collect_tool_wheels,
    targets_without_tool,
    tool_loaded,
    tool_targets,
)
from lockmirror.stages.toolwheels import runtime_requirements

REPO = Path(__file__).resolve().parents[1]
HOST_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
HOST_PLATFORM = next(t for t in platform_tags() if not t.startswith("linux_"))


def readme_commands(readme: str, start: str, end: str | None) -> str:
    """The shell lines (indented five spaces, with their continuations) of
    README.txt between the line starting ``start`` and the one starting ``end``."""
    lines = readme.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    last = next((i for i, line in enumerate(lines) if i > first and end is not None
                 and line.startswith(end)), len(lines))
    return "\n".join(line for line in lines[first:last] if line.startswith("     ")) + "\n"


# --------------------------------------------------------------------------
# Which targets, which wheels
# --------------------------------------------------------------------------


def mirror_yaml(targets: str, sets: str = "  a:\n    requirements: [six]\n") -> str:
    return ("version: 1\nsources:\n  - name: pypi\n    url: https://pypi.org/simple/\n"
            f"targets:\n{targets}sets:\n{sets}")


def test_tool_targets_are_the_supported_ones_of_mirror_yaml() -> None:
    config = parse_config(mirror_yaml(
        "  old:\n    python: '3.10'\n    platforms: [manylinux_2_28_x86_64]\n"
        "  arm:\n    python: '3.12'\n    platforms: [manylinux_2_28_aarch64]\n"
        "  arm-musl:\n    python: '3.12'\n    platforms: [musllinux_1_2_aarch64]\n"
        "  mac:\n    python: '3.13'\n    platforms: [macosx_11_0_arm64]\n"
        "  win:\n    python: '3.12'\n    platforms: [win_amd64]\n",
        "  a:\n    requirements: [six]\n    targets: [old, arm, mac, win]\n"
        "  b:\n    requirements: [six]\n    targets: [arm-musl]\n"))
    targets = tool_targets(config)
    # 3.10 is older than lockmirror's Requires-Python; lockmirror does not run on Windows;
    # a musllinux target a marker cannot tell from the manylinux one is left out; this
    # machine is no listed target, and is not added
    assert list(targets) == ["arm", "mac"]
    # what bundle names as left out: the ones lockmirror cannot run on, not the musl twin
    assert targets_without_tool(config) == ["old", "win"]


def test_the_tool_set_depends_on_mirror_yaml_not_on_the_python_that_locks(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by an outside tester: with targets py311 x86_64 and win py312, `lock` on 3.11
    wrote 57 packages for 1 target, on 3.12 58 packages for 2 (a `build-machine` target
    of the locking Python); `lock --check` then failed and `doit bundle` re-locked the
    committed file on every other runner. The running Python as a target, and another
    Python beside it, give mirror.yaml's targets and nothing more."""
    from lockmirror.stages.lock_inputs import input_hash

    other = "3.13" if HOST_PYTHON == "3.12" else "3.12"
    here = f"  here:\n    python: '{HOST_PYTHON}'\n    platforms: [{HOST_PLATFORM}]\n"
    there = f"  there:\n    python: '{other}'\n    platforms: [{HOST_PLATFORM}]\n"
    win = "  win:\n    python: '3.12'\n    platforms: [win_amd64]\n"
    assert list(tool_targets(parse_config(mirror_yaml(here + win)))) == ["here"]
    assert list(tool_targets(parse_config(mirror_yaml(there + win)))) == ["there"]
    assert list(tool_targets(parse_config(mirror_yaml(here + there)))) == ["here", "there"]
    # the tool set's lock inputs (what its lockfile records and `lock --check` compares)
    # are those of a mirror.yaml naming the same targets, whatever Python runs
    (tmp_path / "mirror.yaml").write_text(mirror_yaml(there + win))
    (tmp_path / "same.yaml").write_text(mirror_yaml(there))
    tool = tool_loaded(load_config(tmp_path / "mirror.yaml", environ={})).config
    assert list(tool.targets) == ["there"]
    assert input_hash(tool_loaded(load_config(tmp_path / "mirror.yaml", environ={})), TOOL_SET) \
        == input_hash(tool_loaded(load_config(tmp_path / "same.yaml", environ={})), TOOL_SET)
    # no target lockmirror runs on: a fixed far-side host (CPython 3.11, manylinux_2_28),
    # never the locking machine's Python, which made the lockfile the machine's
    old = "  old:\n    python: '3.10'\n    platforms: [manylinux_2_28_x86_64]\n"
    config = parse_config(mirror_yaml(old + win))
    assert tool_targets(config) == {DEFAULT_TOOL_HOST: DEFAULT_TOOL_TARGET}
    assert DEFAULT_TOOL_TARGET.python == "3.11"
    assert DEFAULT_TOOL_TARGET.platforms == ["manylinux_2_28_x86_64"]


def test_bundle_names_where_its_tool_installs_and_which_targets_it_leaves_out(
        tmp_path: Path) -> None:
    """Found by an outside tester: a mirror with a Python 3.9 target learnt only
    from README.txt, across the gap, that its far side could not install the tool."""
    result = BundleResult(
        parts=(tmp_path / "b.tar",), checksums=tmp_path / "b.tar.sha256", sha256=("0" * 64,),
        content_id="0" * 16, kind="full", base_manifest_sha256=None, size=1, members=1,
        index_files_carried=0, index_files_total=0, signed=False, source_date_epoch=0,
        epoch_source="", tool_wheels=3, changed=True,
        tool_python="CPython 3.13 (manylinux_2_28_x86_64)", tool_left_out=("py39",))
    assert result.tool_note() == (
        "tool/ installs lockmirror on CPython 3.13 (manylinux_2_28_x86_64); not on py39 (a "
        "Python or platform lockmirror does not run on): there the far side checks and unpacks "
        "the bundle by hand, as its README.txt says")
    assert dataclasses.replace(result, tool_python=None).tool_note() is None


def test_readme_install_stops_at_once_on_a_python_tool_has_no_wheels_for(
        tmp_path: Path) -> None:
    """Found by an outside tester: on a far side's Python 3.12, pip said "No matching
    distribution found for pyyaml>=6", which reads as a broken bundle. The pasted
    command now says which Python it is and which tool/ covers, before it unpacks."""
    other = "3.99" if HOST_PYTHON != "3.99" else "3.98"
    info = BundleInfo(name="m", kind="full", index_manifest_sha256="0" * 64,
                      base_manifest_sha256=None, lockmirror_version="0",
                      tool_python=f"CPython {other} (manylinux_2_28_x86_64)", files={})
    steps = readme_commands(readme_text(info).decode(), "2. Install lockmirror", "3. Import")
    env = subprocess_env(offline=True, venv_first=True)  # python3: this interpreter
    done = run_pasted(steps, tmp_path, env)
    assert done.returncode == 1
    machine = os.uname().machine
    assert done.stdout.strip() == (f"tool/ holds no wheels for Python {sys.version.split()[0]} "
                                   f"on {machine} (only {other} x86_64): check and unpack by "
                                   "hand (below)")
    assert list(tmp_path.iterdir()) == []  # nothing unpacked, no venv made
    # the right Python on another machine stops too (found by an outside tester: 3.12 on
    # x86_64 passed a version-only check where tool/ had 3.12 for aarch64 only)
    elsewhere = "aarch64" if machine != "aarch64" else "x86_64"
    info = dataclasses.replace(info, tool_python=f"CPython {HOST_PYTHON} (manylinux_2_28_"
                                                 f"{elsewhere})")
    steps = readme_commands(readme_text(info).decode(), "2. Install lockmirror", "3. Import")
    done = run_pasted(steps, tmp_path, env)
    assert done.returncode == 1 and "holds no wheels" in done.stdout
    assert list(tmp_path.iterdir()) == []
    # a target naming a patch release covers its minor version (found by a reviewer)
    covered = dataclasses.replace(info, tool_python=f"CPython {HOST_PYTHON}.4 (x); PyPy {other}")
    steps = readme_commands(readme_text(covered).decode(), "2. Install lockmirror", "3. Import")
    done = run_pasted(steps, tmp_path, env)  # passes the check; stops at the missing bundle
    assert "holds no wheels" not in done.stdout and done.returncode != 0


def test_the_python_check_reads_every_machine_a_part_names() -> None:
    """Found by a reviewer: universal2 beside another machine was not expanded, so
    an arm64 Mac that tool/ covers was refused."""
    from lockmirror.stages.bundle_readme import _python_check

    line = _python_check("CPython 3.12 (manylinux_2_28_aarch64, macosx_11_0_universal2)")
    assert '"3.12 aarch64|3.12 arm64|3.12 x86_64"' in line


def test_committed_tool_set_carries_cp311_x86_64_and_cp312_aarch64_wheels() -> None:
    """The bundled mirror.yaml's targets, checked by wheel tag: what a far side
    with CPython 3.11 on x86_64 or 3.12 on aarch64, glibc 2.28 (RHEL 8) or
    newer, needs to install lockmirror from tool/."""
    path = REPO / "lockfiles" / f"pylock.{TOOL_SET}.toml"
    lockfile = Lockfile.read(path)
    assert [(t.name, t.python, t.platforms) for t in lockfile.targets] == [
        ("linux-x86_64-py311", "3.11", ("manylinux_2_28_x86_64",)),
        ("linux-aarch64-py312", "3.12", ("manylinux_2_28_aarch64",))]
    chosen = choose_tool_wheels(lockfile, where=str(path))
    by_name: dict[str, list[str]] = {}
    for filename in chosen:
        name, _, _, tags = parse_wheel_filename(filename)
        by_name.setdefault(name, []).extend(str(tag) for tag in tags)
    native = {name for name, tags in by_name.items() if not all(t.endswith("-any") for t in tags)}
    assert {"pydantic-core", "cryptography", "pyyaml", "uv", "cffi"} <= native
    for name in native:
        tags = by_name[name]
        assert any(re.fullmatch(r"cp3(11|\d)-(cp311|abi3|none)-manylinux_2_(1[4-9]|2[0-8])_x86_64"
                                r"|py3-none-manylinux_2_(1[4-9]|2[0-8])_x86_64", t)
                   for t in tags), (name, tags)
        assert any(re.fullmatch(r"cp3(12|\d\d?)-(cp312|abi3|none)-manylinux_2_(1[4-9]|2[0-8])"
                                r"_aarch64|py3-none-manylinux_2_(1[4-9]|2[0-8])_aarch64", t)
                   for t in tags), (name, tags)
    required = {re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0] for r in lockfile.requirements}
    assert {name.replace("_", "-") for name in required} <= set(by_name)


def tool_scope_of(loaded: LoadedConfig, pyproject: Path, scratch: Path) -> LoadedConfig:
    """The tool set as `lock` derives it (:func:`tool_loaded`), with the requirements
    of ``pyproject`` read as from an editable install of it (its targets are
    mirror.yaml's, whichever machine runs the tests)."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    info = scratch / f"lockmirror-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: lockmirror\n"
                                   f"Version: {project['version']}\n", encoding="utf-8")
    (info / "direct_url.json").write_text(json.dumps(
        {"url": pyproject.parent.as_uri(), "dir_info": {"editable": True}}), encoding="utf-8")
    requirements = sorted(runtime_requirements(metadata.PathDistribution(info)), key=str.lower)
    tool = tool_loaded(loaded).config
    spec = tool.sets[TOOL_SET].model_copy(update={"requirements": requirements})
    return LoadedConfig(tool.model_copy(update={"sets": {TOOL_SET: spec}}),
                        loaded.path, loaded.text)


def test_committed_lockfiles_are_current_for_mirror_yaml_and_pyproject(tmp_path: Path) -> None:
    """The committed lockfiles' input hashes, offline: the sets against mirror.yaml,
    lockmirror's own set against pyproject.toml's dependencies. A dependency added,
    dropped or bounded otherwise without `doit lock` fails here, not first in a CI
    job's `lock --check` (which asks the sources) or in a bundle's tool/."""
    loaded = load_config(REPO / "mirror.yaml", environ={})
    assert stale_sets(loaded) == {}
    assert stale_sets(tool_scope_of(loaded, REPO / "pyproject.toml", tmp_path)) == {}
    # the same check on a copy of pyproject.toml with one dependency changed
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert '"resolvelib>=1.1",' in text
    edited = tmp_path / "edited" / "pyproject.toml"
    edited.parent.mkdir()
    edited.write_text(text.replace('"resolvelib>=1.1",', '"resolvelib>=1.2",'),
                      encoding="utf-8")
    stale = stale_sets(tool_scope_of(loaded, edited, tmp_path / "edited"))
    assert "(changed: the set's requirements)" in stale[TOOL_SET]


# --------------------------------------------------------------------------
# A fixture mirror, locked, fetched, indexed and bundled with its tool set
# --------------------------------------------------------------------------


@dataclass
class ToolProject:
    root: Path
    bundle: Path
    readme: str
    chosen: dict[str, str]  # filename -> sha256 of the tool set's wheels
    public_key: Path  # the bundle is signed with its private half


@pytest.fixture(scope="module")
def tool_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToolProject]:
    """lockmirror's dependencies (this environment's, repacked) served by a fixture
    index; a project whose one set needs ``six``, locked to bundle with the tool set."""
    root = tmp_path_factory.mktemp("tool-project")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOCKMIRROR_TOOL_WHEELS", "installed")
        repacked = root / "repacked"  # the dependencies' wheels (the first is lockmirror's)
        repacked.mkdir()
        for wheel in collect_tool_wheels(TOOL_CACHE).wheels[1:]:
            (repacked / wheel.filename).write_bytes(wheel.data)
        server = FixtureIndex(repacked)
        try:
            patch.setenv("LOCKMIRROR_TOOL_WHEELS", "index")
            patch.setenv("SOURCE_DATE_EPOCH", "0")
            public_key = signing.generate_keypair(root / "ops.key")
            patch.setenv("LOCKMIRROR_SIGNING_KEY", str(root / "ops.key"))
            patch.delenv("LOCKMIRROR_CACHE", raising=False)
            patch.delenv("LOCKMIRROR_STORE", raising=False)
            (root / "mirror.yaml").write_text(
                f"version: 1\nname: tooled\nsources:\n  - name: fixture\n    url: {server.url}\n"
                f"targets:\n  host:\n    python: '{HOST_PYTHON}'\n"
                f"    platforms: [{HOST_PLATFORM}]\n"
                f"  old:\n    python: '3.10'\n    platforms: [{HOST_PLATFORM}]\n"
                "sets:\n  core:\n    requirements: [six]\n")
            loaded = load_config(root / "mirror.yaml")
            locked = pipeline.lock(loaded)
            assert [r.set_name for r in locked] == ["core", TOOL_SET]
            tool_lockfile = Lockfile.read(root / "lockfiles" / f"pylock.{TOOL_SET}.toml")
            assert [t.name for t in tool_lockfile.targets] == ["host"]  # mirror.yaml's only
            pipeline.fetch(loaded)  # every file checked against its sha256
            pipeline.index(loaded)
            result = pipeline.bundle(loaded)
            # the build side says which target's far side cannot install the tool
            assert result.tool_left_out == ("old",)
            assert "; not on old (a Python or platform" in (result.tool_note() or "")
        finally:
            server.stop()
    lockfile = Lockfile.read(root / "lockfiles" / f"pylock.{TOOL_SET}.toml")
    chosen = {name: f.sha256 for name, f in choose_tool_wheels(lockfile, where="t").items()}
    with tarfile.open(result.path) as tar:
        readme_member = next(m for m in tar.getmembers() if m.name.endswith("/README.txt"))
        readme = tar.extractfile(readme_member).read().decode()  # type: ignore[union-attr]
    yield ToolProject(root, result.path, readme, chosen, public_key)


def test_the_tool_set_is_locked_like_any_set(tool_project: ToolProject,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKMIRROR_TOOL_WHEELS", "index")
    loaded = load_config(tool_project.root / "mirror.yaml")
    assert stale_sets(tool_loaded(loaded)) == {}  # `lock --check` sees it current
    text = (tool_project.root / "lockfiles" / f"pylock.{TOOL_SET}.toml").read_text()
    assert f'set = "{TOOL_SET}"' in text and '"pydantic>=2.5"' in text
    # not part of the mirror: the index serves mirror.yaml's sets only
    assert not (tool_project.root / "dist-index" / "simple" / "pydantic").exists()
    assert sorted(p.name for p in (tool_project.root / "dist-index" / "lockfiles").iterdir()) \
        == ["pylock.core.toml"]
    store = Store(tool_project.root / ".store")
    assert all(store.has(sha) for sha in tool_project.chosen.values())


def test_doit_locks_fetches_and_bundles_the_tool_set_too(tool_project: ToolProject,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from lockmirror import doit_tasks

    monkeypatch.setenv("LOCKMIRROR_TOOL_WHEELS", "index")
    monkeypatch.delenv("LOCKMIRROR_CACHE", raising=False)
    monkeypatch.delenv("LOCKMIRROR_STORE", raising=False)
    project = doit_tasks.Project(tool_project.root / "mirror.yaml")
    lock = {task["name"]: task for task in doit_tasks.lock_tasks(project)}
    assert sorted(lock) == [".orphans", "core", TOOL_SET]
    assert all(check() for check in lock[TOOL_SET]["uptodate"])  # no network when current
    assert all(check() for check in lock[".orphans"]["uptodate"])  # the tool set's is no orphan
    tool_lockfile = str(tool_project.root / "lockfiles" / f"pylock.{TOOL_SET}.toml")
    fetch = doit_tasks.fetch_task(project)
    assert tool_lockfile in fetch["file_dep"] and tool_lockfile in \
        doit_tasks.bundle_task(project)["file_dep"]
    assert fetch["uptodate"][0]()
    wheel = Store(tool_project.root / ".store").path(sorted(tool_project.chosen.values())[0])
    moved = wheel.with_name(wheel.name + ".aside")
    wheel.rename(moved)
    try:
        assert not fetch["uptodate"][0]()  # a tool wheel missing from the store: fetch runs
    finally:
        moved.rename(wheel)


def test_bundle_carries_the_chosen_wheels_and_says_what_they_cover(
        tool_project: ToolProject) -> None:
    with tarfile.open(tool_project.bundle) as tar:
        tool = sorted(m.name.split("/", 2)[2] for m in tar.getmembers() if "/tool/" in m.name)
    own = [name for name in tool if name.startswith("lockmirror-")]
    assert len(own) == 1 and sorted(set(tool) - set(own)) == sorted(tool_project.chosen)
    assert f"CPython {HOST_PYTHON} ({HOST_PLATFORM})" in tool_project.readme
    assert ('PIP_CONFIG_FILE=/dev/null "$here/lockmirror-venv/bin/pip" --isolated install'
            in tool_project.readme)
    assert '--no-index --find-links "$bundle/tool/" lockmirror' in tool_project.readme


def test_bundle_declares_the_tool_wheels_and_audit_checks_them(
        tool_project: ToolProject, monkeypatch: pytest.MonkeyPatch) -> None:
    """tool/ is what the far side runs first: the bundle's tool.cdx.json declares its
    wheels (hashes included) and `lockmirror audit` checks lockmirror's own set; both
    left it out, so a security review from the SBOM never saw that code."""
    from lockmirror.stages.audit import audit_mirror

    with tarfile.open(tool_project.bundle) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/tool.cdx.json"))
        document = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
    files = {part["name"]: part["hashes"][0]["content"]
             for release in document["components"] for part in release["components"]}
    with tarfile.open(tool_project.bundle) as tar:
        carried = {m.name.rsplit("/", 1)[1]: hashlib.sha256(
            tar.extractfile(m).read()).hexdigest()  # type: ignore[union-attr]
            for m in tar.getmembers() if "/tool/" in m.name and m.isfile()}
    assert files == carried  # every wheel tool/ carries, lockmirror's own included
    assert {name: files[name] for name in tool_project.chosen} == tool_project.chosen
    assert {"pydantic", "lockmirror"} <= {release["name"] for release in document["components"]}
    assert "tool.cdx.json" in tool_project.readme
    monkeypatch.setenv("LOCKMIRROR_TOOL_WHEELS", "index")
    loaded = load_config(tool_project.root / "mirror.yaml")
    report = audit_mirror(loaded, now=datetime(2026, 12, 7, tzinfo=UTC), offline=True)
    assert report.sets == ("core", TOOL_SET)
    assert not any("is not in" in note for note in report.notes)


def test_du_counts_the_tool_set_and_what_the_build_keeps_on_disk(
        tool_project: ToolProject, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an outside tester: du said 31.4 MiB total beside a 108M store and
    106-108 MiB bundles; lockmirror's own set (in the store, in every full bundle)
    was not counted, nor the bundles, yet the README sizes a runner's disk with du."""
    from lockmirror.cli import main
    from lockmirror.fsutil import format_size

    monkeypatch.setenv("LOCKMIRROR_TOOL_WHEELS", "index")
    root = tool_project.root
    locked = {name: Lockfile.read(root / "lockfiles" / f"pylock.{name}.toml")
              for name in ("core", TOOL_SET)}
    sizes = {name: {f.sha256: f.size for p in lf.packages for f in p.files}
             for name, lf in locked.items()}
    core = sum(sizes["core"].values())
    tool_only = sum(size for sha, size in sizes[TOOL_SET].items() if sha not in sizes["core"])
    assert main(["du", "--config", str(root / "mirror.yaml")]) == 0
    out = capsys.readouterr().out
    # size, file count, what the line is (up to its colon): ``usage_line``'s columns
    lines = {line[26:].split(":")[0]: line[:10].split()
             for line in out.splitlines() if line.startswith(" ")}
    assert lines["total served by the index (each file once)"] == format_size(core).split()
    assert lines[TOOL_SET] == format_size(tool_only).split()
    assert lines["total locked"] == format_size(core + tool_only).split()
    # measured: the store holds every locked file; the index adds its pages only
    # (hard links); each bundle is a copy of its own
    assert "on this disk now" in out
    def files(top: str) -> dict[tuple[int, int], int]:
        found = (f.stat() for f in (root / top).rglob("*") if f.is_file())
        return {(st.st_dev, st.st_ino): st.st_size for st in found}

    store, index, bundles, cache = (files(top) for top in (".store", "dist-index", "dist",
                                                            ".cache"))
    index_own = sum(size for inode, size in index.items() if inode not in store)
    assert sum(store.values()) >= core + tool_only
    assert lines["store .store"] == format_size(sum(store.values())).split()
    assert lines["index dist-index"] == format_size(index_own).split()
    assert index_own < sum(index.values()) - core  # artifacts and metadata not counted again
    assert lines["bundles dist"] == format_size(sum(bundles.values())).split()
    assert lines["total on this disk"] == format_size(
        sum(store.values()) + index_own + sum(bundles.values()) + sum(cache.values())).split()


def far_side_with(tool_project: ToolProject, directory: Path, bundle: Path | None = None) -> Path:
    """``directory`` as README.txt expects it: the bundle and the signer's public key."""
    directory.mkdir(parents=True)
    shutil.copy(bundle or tool_project.bundle, directory / tool_project.bundle.name)
    shutil.copy(tool_project.public_key, directory / "signer.pub")
    return directory


def run_pasted(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``script`` as an operator pastes it into an interactive shell: no ``-e``."""
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def test_readme_commands_install_lockmirror_from_tool_in_a_fresh_venv(
        tool_project: ToolProject, tmp_path: Path) -> None:
    far = far_side_with(tool_project, tmp_path / "far")
    # no index, proxies on a closed port; python3: this interpreter (3.11)
    env = subprocess_env(offline=True, venv_first=True)
    # a wheelhouse pip's settings name (common on a far side) holds a newer release of a
    # tool dependency that nothing checked: pip took it, and the line said "checked"
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    name = parse_wheel_filename(sorted(tool_project.chosen)[0])[0]
    build_wheel(wheelhouse, name, "99.0")
    env["PIP_FIND_LINKS"] = str(wheelhouse)
    steps = readme_commands(tool_project.readme, "2. Install lockmirror", "3. Import")
    assert steps.lstrip().startswith("( set -e;")  # one command: the first failure stops it
    # the signature is checked before pip runs anything from the bundle
    assert steps.index("ssh-keygen -Y verify") < steps.index("pip\" --isolated install")
    done = run_pasted(steps, far, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'Good "lockmirror-bundle" signature for signer' in done.stdout + done.stderr
    assert "checked (its signature checked against signer.pub) and installed:" in done.stdout
    assert not list((far / "lockmirror-venv").rglob("*-99.0.dist-info"))
    assert not list(far.glob("unpacked.*"))  # installed: the unpacked copy goes
    # pasted again (a newer bundle's tool): a fresh venv, where pip said "Requirement
    # already satisfied" and kept the old code (found by an outside tester)
    installed = next((far / "lockmirror-venv").rglob("lockmirror/__init__.py"))
    installed.write_text(installed.read_text() + "# THE OLD TOOL\n")
    done = run_pasted(steps, far, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# THE OLD TOOL" not in next(
        (far / "lockmirror-venv").rglob("lockmirror/__init__.py")).read_text()
    lockmirror = far / "lockmirror-venv" / "bin" / "lockmirror"
    import_line = readme_commands(tool_project.readme, "3. Import", "4. Serve").strip()
    assert import_line.startswith("lockmirror-venv/bin/lockmirror import ")
    done = subprocess.run([str(lockmirror), "import", str(tool_project.bundle), "--into",
                           str(far / "srv" / "mirror"), "--pubkey", str(far / "signer.pub")],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0 and "every file verified" in done.stdout, done.stderr


def _rewritten(bundle: Path, out: Path, change: str, *, other_key: Path | None = None) -> Path:
    """``bundle`` as a carrier could rewrite it (its .sha256 made again too):

    * ``altered``: a byte of lockmirror's wheel in tool/ changed;
    * ``added``: one more wheel in tool/;
    * ``resummed``: the wheel altered and its SHA256SUMS line made to match;
    * ``stripped``: the wheel altered, SHA256SUMS and bundle.json made to match,
      the signature dropped;
    * ``resigned``: as ``stripped``, then signed with ``other_key``;
    * ``swapped-sums``: the wheel altered, SHA256SUMS replaced by README.txt's bytes
      (a member bundle.json pins too);
    * ``dir-in-tool``: a project directory added to tool/ (its wheels untouched).
    """
    with tarfile.open(bundle) as source:
        members = [(m, source.extractfile(m).read() if m.isfile() else None)  # type: ignore[union-attr]
                   for m in source.getmembers()]
    top = members[0][0].name.split("/")[0]
    data = {m.name: d for m, d in members}
    wheel = next(n for n in data if re.search(r"/tool/lockmirror-[^/]*\.whl$", n))
    if change not in ("added", "dir-in-tool"):
        blob = data[wheel]
        assert blob is not None
        data[wheel] = blob[:-1] + bytes([blob[-1] ^ 1])
    rel = wheel[len(top) + 1:]
    if change == "swapped-sums":  # the bytes of a member bundle.json pins, wheel unlisted
        data[f"{top}/SHA256SUMS"] = data[f"{top}/README.txt"]
    if change in ("resummed", "stripped", "resigned"):
        sums = data[f"{top}/SHA256SUMS"]
        assert sums is not None and data[wheel] is not None
        lines = [f"{hashlib.sha256(data[wheel]).hexdigest()}  {rel}"  # type: ignore[arg-type]
                 if line.endswith(f"  {rel}") else line for line in sums.decode().splitlines()]
        data[f"{top}/SHA256SUMS"] = ("\n".join(lines) + "\n").encode()
    if change in ("stripped", "resigned"):
        info_bytes = data[f"{top}/bundle.json"]
        assert info_bytes is not None
        info = BundleInfo.loads(info_bytes, where="bundle.json")
        files = dict(info.files)
        for name in (rel, "SHA256SUMS"):
            blob = data[f"{top}/{name}"]
            assert blob is not None
            files[name] = Entry(hashlib.sha256(blob).hexdigest(), len(blob))
        data[f"{top}/bundle.json"] = dataclasses.replace(info, files=files).dumps()
        data.pop(f"{top}/bundle.json.sig", None)
        if change == "resigned":
            assert other_key is not None
            data[f"{top}/bundle.json.sig"] = signing.sign(
                data[f"{top}/bundle.json"], signing.load_private_key(other_key)).encode()  # type: ignore[arg-type]
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as target:
        for member, _ in members:
            if member.name not in data:
                continue
            blob = data[member.name]
            if blob is not None:
                member.size = len(blob)
            target.addfile(member, io.BytesIO(blob) if blob is not None else None)
            if change == "dir-in-tool" and member.isdir() and member.name.endswith("/tool"):
                # a directory pip would take for a project and build, running its backend
                folder = tarfile.TarInfo(member.name + "/lockmirror-999.tar.gz")
                folder.type, folder.mode = tarfile.DIRTYPE, 0o111  # hidden from a non-root find
                target.addfile(folder)
                project = tarfile.TarInfo(folder.name + "/pyproject.toml")
                project.size = 4
                target.addfile(project, io.BytesIO(b"[x]\n"))
            if change == "added" and member.isdir() and member.name.endswith("/tool"):
                extra = tarfile.TarInfo(member.name + "/lockmirror-99.0-py3-none-any.whl")
                extra.size = 4
                target.addfile(extra, io.BytesIO(b"evil"))
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    out.with_name(out.name + ".sha256").write_text(f"{digest}  {out.name}\n")
    return out


@pytest.mark.parametrize(("change", "says"), [
    ("altered", "FAILED"),  # sha256sum names the wheel
    ("added", "lockmirror-99.0-py3-none-any.whl"),  # diff names the stranger
    ("resummed", "SHA256SUMS is not the list bundle.json pins"),
    ("stripped", "Couldn't read signature file"),  # signer.pub is there: it must be signed
    ("resigned", "Could not verify signature"),
    # SHA256SUMS replaced by another member bundle.json pins (a package's METADATA can
    # say anything): only SHA256SUMS's own entry vouches for it
    ("swapped-sums", "SHA256SUMS is not the list bundle.json pins"),
    ("dir-in-tool", "not a regular file in the bundle"),
])
def test_readme_commands_refuse_a_carriers_tool_wheel_before_pip_runs(
        tool_project: ToolProject, tmp_path: Path, change: str, says: str) -> None:
    """The carrier swaps or adds a wheel in tool/, and makes what it can match
    (SHA256SUMS, bundle.json, a signature of its own, the .sha256): pasted as an
    operator would, README.txt's step 2 stops before pip runs or the venv exists."""
    other = tmp_path / "other.key"
    signing.generate_keypair(other)
    bundle = _rewritten(tool_project.bundle, tmp_path / tool_project.bundle.name, change,
                        other_key=other)
    far = far_side_with(tool_project, tmp_path / "far", bundle)
    steps = readme_commands(tool_project.readme, "2. Install lockmirror", "3. Import")
    done = run_pasted(steps, far, subprocess_env(offline=True, venv_first=True))
    assert done.returncode != 0
    assert not (far / "lockmirror-venv").exists()
    assert says in done.stdout + done.stderr
    # the carrier's unpacked wheels are not left in the operator's directory (found by
    # an outside tester: only a run that installed removed them)
    assert sorted(p.name for p in far.iterdir()) == sorted(
        [bundle.name, "signer.pub", "allowed_signers"])


def test_readme_commands_run_nothing_the_bundle_smuggles_beside_the_checked_files(
        tool_project: ToolProject, tmp_path: Path) -> None:
    """A member a name filter lets through (``bundle.json.x``, a symbolic link to its
    own directory) carrying ``logging.py``, which ``python3 -m venv`` would import
    from the directory it runs in: it never runs, and what pip installs is checked."""
    far = tmp_path / "far"
    marker = tmp_path / "ran"
    with tarfile.open(tool_project.bundle) as source:
        members = [(m, source.extractfile(m).read() if m.isfile() else None)  # type: ignore[union-attr]
                   for m in source.getmembers()]
    top = members[0][0].name.split("/")[0]
    hostile = tmp_path / tool_project.bundle.name
    payload = f"open({str(marker)!r}, 'w').write('ran')\n".encode()
    with tarfile.open(hostile, "w", format=tarfile.GNU_FORMAT) as out:
        for member, data in members:
            out.addfile(member, io.BytesIO(data) if data is not None else None)
        link = tarfile.TarInfo(f"{top}/bundle.json.x")
        link.type, link.linkname = tarfile.SYMTYPE, "."
        out.addfile(link)
        for name in (f"{top}/bundle.json.x/logging.py", f"{top}/logging.py"):
            module = tarfile.TarInfo(name)
            module.size = len(payload)
            out.addfile(module, io.BytesIO(payload))
    far_side_with(tool_project, far, hostile)
    steps = readme_commands(tool_project.readme, "2. Install lockmirror", "3. Import")
    done = run_pasted(steps, far, subprocess_env(offline=True, venv_first=True))
    assert not marker.exists(), done.stdout + done.stderr
    assert done.returncode != 0 and "not a regular file in the bundle" in done.stdout
    assert not (far / "lockmirror-venv").exists()
    assert not list(far.glob("unpacked.*"))  # the smuggled members are not left behind


def test_readme_commands_take_a_project_named_tool_and_a_directory_named_tool(
        tool_project: ToolProject, tmp_path: Path) -> None:
    """Honest cases a path pattern could trip: a mirror with a project named
    ``tool`` (index/simple/tool/ must not be unpacked as if it were tool/), and an
    operator working under a directory named ``tool``."""
    with tarfile.open(tool_project.bundle) as source:
        members = [(m, source.extractfile(m).read() if m.isfile() else None)  # type: ignore[union-attr]
                   for m in source.getmembers()]
    top = members[0][0].name.split("/")[0]
    named = tmp_path / tool_project.bundle.name
    with tarfile.open(named, "w", format=tarfile.GNU_FORMAT) as out:
        for member, data in members:
            out.addfile(member, io.BytesIO(data) if data is not None else None)
        page = tarfile.TarInfo(f"{top}/index/simple/tool/index.html")
        page.size = 5
        out.addfile(page, io.BytesIO(b"<a/>\n"))
    far = far_side_with(tool_project, tmp_path / "tool" / "far", named)
    steps = readme_commands(tool_project.readme, "2. Install lockmirror", "3. Import")
    done = run_pasted(steps, far, subprocess_env(offline=True, venv_first=True))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "checked (its signature checked against signer.pub) and installed" in done.stdout


def test_readme_commands_stop_on_a_signed_bundle_whose_key_is_not_named_signer_pub(
        tool_project: ToolProject, tmp_path: Path) -> None:
    """The key kept as keygen named it: the check cannot be skipped by a name."""
    far = far_side_with(tool_project, tmp_path / "far")
    (far / "signer.pub").rename(far / "ops.key.pub")
    steps = readme_commands(tool_project.readme, "2. Install lockmirror", "3. Import")
    env = subprocess_env(offline=True, venv_first=True)
    done = run_pasted(steps, far, env)
    assert done.returncode != 0 and not (far / "lockmirror-venv").exists()
    assert "a signed bundle: put the signer's public key beside it as signer.pub" in done.stdout
    assert not list(far.glob("unpacked.*"))  # the stopped run removed what it unpacked
    (far / "ops.key.pub").rename(far / "signer.pub")
    assert run_pasted(steps, far, env).returncode == 0


def test_a_store_file_that_changed_fails_the_bundle(tool_project: ToolProject, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "copy"
    shutil.copytree(tool_project.root, project, ignore=shutil.ignore_patterns("dist"),
                    copy_function=shutil.copy)  # copies: the original store stays intact
    filename, sha = sorted(tool_project.chosen.items())[0]
    path = Store(project / ".store").path(sha)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    monkeypatch.setenv("LOCKMIRROR_TOOL_WHEELS", "index")
    with pytest.raises(IntegrityError, match=f"{re.escape(filename)} in the store is not the "
                                             "locked file"):
        pipeline.bundle(load_config(project / "mirror.yaml"), source_date_epoch=0)
    assert not (project / "dist").exists()


def test_a_missing_or_stale_tool_lockfile_says_run_lock(tool_project: ToolProject,
                                                        tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "copy"
    shutil.copytree(tool_project.root, project, ignore=shutil.ignore_patterns("dist", ".store"))
    monkeypatch.setenv("LOCKMIRROR_TOOL_WHEELS", "index")
    lockfile = project / "lockfiles" / f"pylock.{TOOL_SET}.toml"
    lockfile.write_text(lockfile.read_text().replace("input-hash = \"sha256:",
                                                     "input-hash = \"sha256:0"))
    with pytest.raises(StaleLockError, match="lockmirror's own set") as caught:
        pipeline.bundle(load_config(project / "mirror.yaml"), source_date_epoch=0)
    assert "lockmirror lock" in str(caught.value)
    lockfile.unlink()
    with pytest.raises(StaleLockError, match="lockmirror lock"):
        pipeline.bundle(load_config(project / "mirror.yaml"), source_date_epoch=0)


# --------------------------------------------------------------------------
# No lockmirror on the far side: sha256sum, tar, ssh-keygen -Y verify
# --------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs OpenSSH's ssh-keygen")
def test_readme_checks_and_unpacks_a_signed_bundle_without_lockmirror(tmp_path: Path) -> None:
    inputs = make_inputs(tmp_path / "build")
    public = signing.generate_keypair(tmp_path / "ops.key")
    result = build_bundle(inputs["index_dir"], lockfile_dir=inputs["lockfile_dir"],
                          mirror_yaml=inputs["mirror_yaml"], out_dir=tmp_path / "dist",
                          name="demo", source_date_epoch=0, tool=False,
                          key=tmp_path / "ops.key")
    with tarfile.open(result.path) as tar:
        readme = tar.extractfile(f"{result.path.stem}/README.txt").read().decode()  # type: ignore[union-attr]
    steps = readme_commands(readme, "Without lockmirror", None)
    assert "ssh-keygen -Y verify" in steps and "sha256sum -c" in steps

    def far_side() -> Path:
        far = tmp_path / f"far-{len(list(tmp_path.glob('far-*')))}"
        far.mkdir()
        for path in (result.path, result.checksums):
            shutil.copy(path, far)
        shutil.copy(public, far / "signer.pub")
        return far

    env = {"PATH": os.environ["PATH"], "LC_ALL": "C"}
    far = far_side()
    done = run_pasted(steps, far, env)  # pasted whole, as an operator would
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'Good "lockmirror-bundle" signature for signer' in done.stdout + done.stderr
    (unpacked,) = [p / result.path.stem / "index" for p in far.glob("unpacked.*")]
    assert unpacked.is_dir()  # kept, without the check's lists beside it
    assert done.stdout.rstrip().endswith(
        f"checked (its signature checked against signer.pub): index/ is the mirror: {unpacked}")
    assert (unpacked / "manifest.json").read_bytes() == \
        (inputs["index_dir"] / "manifest.json").read_bytes()

    # another key's public half: the signature check fails, and the command stops there
    far = far_side()
    other = signing.generate_keypair(tmp_path / "other.key")
    shutil.copy(other, far / "signer.pub")
    done = run_pasted(steps, far, env)
    assert done.returncode != 0 and "Good" not in done.stdout + done.stderr
    assert "checked (" not in done.stdout
    # a failed check leaves nothing unpacked (found by an outside tester: the
    # unchecked tree stayed in the operator's directory)
    assert not list(far.glob("unpacked.*"))

    # a member changed after extraction: bundle.json's list catches it
    check = "cat SHA256SUMS | sha256sum -c --strict --quiet -"
    assert check in steps
    far = far_side()
    done = run_pasted(steps.replace(check, f"echo x >> index/index.html; {check}"), far, env)
    assert done.returncode != 0 and "index/index.html: FAILED" in done.stdout
    assert not list(far.glob("unpacked.*"))

    # a file no list names (a page a static server would serve): diff names it
    far = far_side()
    done = run_pasted(steps.replace(check, f"{check}; touch index/extra.html"), far, env)
    assert done.returncode != 0 and "> index/extra.html" in done.stdout
    assert not list(far.glob("unpacked.*"))

    # a listed file as a symbolic link to bytes outside the bundle (the same bytes now:
    # the copy a static server serves would follow the link later)
    far = far_side()
    outside = tmp_path / "outside.html"
    linked = _with_member_linked(result.path, far / result.path.name, "index/index.html",
                                 outside)
    (far / result.checksums.name).write_text(
        f"{hashlib.sha256(linked.read_bytes()).hexdigest()}  {linked.name}\n")
    done = run_pasted(steps, far, env)
    assert done.returncode != 0 and "not a regular file in the bundle" in done.stdout
    # the link is removed with the unpacked copy, never what it points to
    assert not list(far.glob("unpacked.*")) and outside.is_file()

    # the carrier's own key beside a symbolic link standing for the bundle directory,
    # the bundle re-signed with it: the key is read from the operator's directory
    far = far_side()
    evil = _symlinked_top(result.path, far / result.path.name, tmp_path / "other.key", other)
    (far / result.checksums.name).write_text(
        f"{hashlib.sha256(evil.read_bytes()).hexdigest()}  {evil.name}\n")
    done = run_pasted(steps, far, env)
    assert done.returncode != 0 and "Good" not in done.stdout + done.stderr
    assert "checked (" not in done.stdout
    assert not list(far.glob("unpacked.*"))


def _with_member_linked(bundle: Path, out: Path, rel: str, target: Path) -> Path:
    """``bundle`` with member ``rel`` a symbolic link to ``target``, which gets
    the member's bytes (the signed lists still match through the link)."""
    with tarfile.open(bundle) as source, tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as dest:
        for member in source.getmembers():
            data = source.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name.endswith("/" + rel):
                assert data is not None
                target.write_bytes(data)
                link = tarfile.TarInfo(member.name)
                link.type, link.linkname = tarfile.SYMTYPE, str(target)
                dest.addfile(link)
                continue
            dest.addfile(member, io.BytesIO(data) if data is not None else None)
    return out


def _symlinked_top(bundle: Path, out: Path, key: Path, public: Path) -> Path:
    """``bundle``'s members moved under ``a/b/``, its top directory a symbolic
    link to there, a top-level ``signer.pub`` holding ``public`` and bundle.json
    signed with ``key`` (what a carrier with a key of its own can build)."""
    with tarfile.open(bundle) as source:
        members = [(m, source.extractfile(m).read() if m.isfile() else None)  # type: ignore[union-attr]
                   for m in source.getmembers()]
    top = members[0][0].name.split("/")[0]
    info = next(b for m, b in members if m.name == f"{top}/bundle.json")
    assert info is not None
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as target:
        for member, blob in members:
            if member.name == f"{top}/bundle.json.sig":
                blob = signing.sign(info, signing.load_private_key(key)).encode()
                member.size = len(blob)
            member.name = "a/b" + member.name[len(top):]
            target.addfile(member, io.BytesIO(blob) if blob is not None else None)
        link = tarfile.TarInfo(top)
        link.type, link.linkname = tarfile.SYMTYPE, "a/b"
        target.addfile(link)
        planted = public.read_bytes()
        key_member = tarfile.TarInfo("signer.pub")
        key_member.size = len(planted)
        target.addfile(key_member, io.BytesIO(planted))
    return out


# --------------------------------------------------------------------------
# The real thing: the bundled mirror.yaml's tool set from PyPI (opt-in)
# --------------------------------------------------------------------------


@pytest.mark.network
def test_bundled_mirror_tool_set_from_pypi_installs_on_cp311(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The committed tool lockfile is current for the bundled mirror.yaml, its
    wheels come from PyPI verified, hold cp311 x86_64 and cp312 aarch64 wheels,
    and install lockmirror into a fresh CPython 3.11 venv with no index."""
    from importlib import metadata

    from lockmirror.stages.fetch import fetch_config
    from lockmirror.stages.tool_set import locked_tool_wheels
    from lockmirror.stages.toolwheels import own_wheel

    monkeypatch.setenv("LOCKMIRROR_TOOL_WHEELS", "index")
    monkeypatch.delenv("LOCKMIRROR_STORE", raising=False)
    shutil.copy(REPO / "mirror.yaml", tmp_path / "mirror.yaml")
    (tmp_path / "lockfiles").mkdir()
    shutil.copy(REPO / "lockfiles" / f"pylock.{TOOL_SET}.toml", tmp_path / "lockfiles")
    tool = tool_loaded(load_config(tmp_path / "mirror.yaml"))
    assert stale_sets(tool) == {}, "run `lockmirror lock --set lockmirror-tool` and commit"
    fetch_config(tool)  # from PyPI, each file against its locked sha256
    wheels = locked_tool_wheels(tmp_path / "lockfiles", tool.store_dir)
    names = [w.filename for w in wheels.wheels]
    assert any(re.search(r"^pydantic_core-.*-cp311-.*x86_64", n) for n in names)
    assert any(re.search(r"^pydantic_core-.*-cp312-.*aarch64", n) for n in names)
    assert wheels.python == ("CPython 3.11 (manylinux_2_28_x86_64); "
                             "CPython 3.12 (manylinux_2_28_aarch64)")
    (tmp_path / "tool").mkdir()
    for wheel in (*wheels.wheels, own_wheel(metadata.distribution("lockmirror"))):
        (tmp_path / "tool" / wheel.filename).write_bytes(wheel.data)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--no-index",
                           "--find-links", str(tmp_path / "tool"), "lockmirror"],
                          env=subprocess_env(offline=True), capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([str(venv / "bin" / "lockmirror"), "verify", "--help"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_source_without_lockmirrors_dependencies_is_not_called_a_wrong_url(
        tmp_path: Path, fixture_index: FixtureIndex, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A mirror.yaml whose one source is the user's own small index (as the file://
    refusal advises: the tree served over http on loopback): the sets locked from it, then
    lockmirror's own set failed with "no source has a project named 'boto3': ... so the
    URL looks wrong", at a line of mirror.yaml no such set is on (an outside re-tester).
    It says which set it is and where its dependencies come from."""
    import helpers

    from lockmirror.cli import main

    monkeypatch.setenv("LOCKMIRROR_TOOL_WHEELS", "index")
    (tmp_path / "mirror.yaml").write_text(helpers.mirror_yaml(
        fixture_index.url, {"core": ["beta==1.0"]},
        extra=f"paths:\n  cache: {tmp_path / 'cache'}\n"))
    monkeypatch.chdir(tmp_path)
    assert main(["lock"]) == 1
    captured = capsys.readouterr()
    # the set that locked is said to be written (it was written, and nothing said so)
    assert "pylock.core.toml" in captured.out, captured.out
    err = captured.err.splitlines()[-1].strip()
    assert "1 of 2 sets did not lock" in captured.err, captured.err
    assert err.startswith("mirror.yaml: lockmirror's own set (the bundle's tool/), target "), err
    assert "which lockmirror itself needs" in err and "URL looks wrong" not in err
    assert "LOCKMIRROR_TOOL_WHEELS=installed" in err
    assert (tmp_path / "lockfiles" / "pylock.core.toml").is_file()  # the set itself locked
