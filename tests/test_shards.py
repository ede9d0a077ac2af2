"""The pipeline split into shards: one job per set for fetch (and lock --check,
check-install), one gather job for the index and publish.

Fetch shards run as real ``lockmirror fetch`` processes against the fixture
index server; publish refusals against a directory and moto's S3 server.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fixtureindex import Catalogue, FixtureIndex
from helpers import subprocess_env, tree_bytes
from index_mirror import ARM, build_lockfile, make_fixture_mirror
from servers import S3Server
from test_fetch import make_lockfile

from lockmirror.cli import main
from lockmirror.config_schema import DirectoryDestination, S3Destination
from lockmirror.errors import PublishError
from lockmirror.formats.mirror_lockfile import set_of_lockfile_copy
from lockmirror.formats.store import Store
from lockmirror.publish import publish
from lockmirror.publish.directory import DirectoryPublisher
from lockmirror.publish.tree import SourceTree
from lockmirror.stages.index import build_index
from lockmirror.stages.shard import for_targets

pytest_plugins = ["servers"]

# core and misp share alpha 1.0; each has a project of its own
SETS = {"core": [("alpha", "1.0"), ("beta", "1.0")], "misp": [("alpha", "1.0"), ("gamma", "1.0")]}


def write_sharded_mirror(root: Path, index: FixtureIndex, catalogue: Catalogue) -> Path:
    config = root / "mirror.yaml"
    config.write_text(f"""version: 1
sources: [{{name: fixture, url: "{index.url}"}}]
targets: {{linux-py311: {{python: "3.11", platforms: [manylinux_2_17_x86_64]}}}}
sets: {{core: {{requirements: [beta]}}, misp: {{requirements: [gamma]}}}}
""")
    for name, releases in SETS.items():
        filenames = [catalogue.find(project, version).filename for project, version in releases]
        make_lockfile(index, name, filenames).write(root / "lockfiles" / f"pylock.{name}.toml")
    return config


def fetch_process(config: Path, store: Path, *options: str) -> subprocess.Popen[str]:
    env = subprocess_env(LOCKMIRROR_STORE=str(store))
    return subprocess.Popen([sys.executable, "-m", "lockmirror", "fetch", "--config", str(config),
                             "--progress", "none", *options], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finished(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out


def store_files(root: Path) -> dict[str, bytes]:
    """Every file of a store by its path; no partial download left in its tmp/."""
    assert not list(root.glob("tmp/*"))
    return {rel: data for rel, data in tree_bytes(root).items() if rel.startswith("sha256/")}


def test_two_set_shards_in_two_processes_give_the_store_of_one_fetch(
        fixture_index: FixtureIndex, catalogue: Catalogue, tmp_path: Path) -> None:
    config = write_sharded_mirror(tmp_path, fixture_index, catalogue)
    shared, whole = tmp_path / "shared-store", tmp_path / "whole-store"
    shards = [fetch_process(config, shared, "--set", name) for name in SETS]  # at once
    outputs = [finished(shard) for shard in shards]
    finished(fetch_process(config, whole))

    assert store_files(shared) == store_files(whole)
    # alpha's wheel and metadata, beta's and gamma's: 6 files, each named by its sha256
    assert len(store_files(whole)) == 6
    assert all(f"store: {shared}" in out for out in outputs)
    again = finished(fetch_process(config, shared))  # the gather job's completeness check
    assert "fetch: 6 files: 0 downloaded (0 B), 6 already present" in again, again


def test_a_set_shard_fetches_only_its_set(fixture_index: FixtureIndex, catalogue: Catalogue,
                                          tmp_path: Path) -> None:
    config = write_sharded_mirror(tmp_path, fixture_index, catalogue)
    finished(fetch_process(config, tmp_path / "store", "--set", "core"))
    store = Store(tmp_path / "store")
    assert store.has(catalogue.find("beta", "1.0").sha256)
    assert store.has(catalogue.find("alpha", "1.0").sha256)
    assert not store.has(catalogue.find("gamma", "1.0").sha256)


def test_unknown_set_or_target_is_one_line_and_fetches_nothing(
        fixture_index: FixtureIndex, catalogue: Catalogue, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_sharded_mirror(tmp_path, fixture_index, catalogue)
    monkeypatch.setenv("LOCKMIRROR_STORE", str(tmp_path / "store"))
    assert main(["fetch", "--config", str(config), "--set", "nope"]) == 2
    assert main(["fetch", "--config", str(config), "--target", "windows"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("lockmirror: error: mirror.yaml: no set named 'nope' (sets in "
                             "mirror.yaml: core, misp)")
    assert "no target named 'windows' (targets in mirror.yaml: linux-py311)" in err[1]
    assert fixture_index.requests == [] and not (tmp_path / "store" / "sha256").exists()


def test_set_and_target_take_comma_separated_names_as_doit_does(
        fixture_index: FixtureIndex, catalogue: Catalogue, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``lockmirror fetch --set core,misp`` is both sets (the form `doit fetch` takes
    and the README writes); found by an outside tester ("no set named 'core,misp'")."""
    config = write_sharded_mirror(tmp_path, fixture_index, catalogue)
    monkeypatch.setenv("LOCKMIRROR_STORE", str(tmp_path / "store"))
    assert main(["fetch", "--config", str(config), "--progress", "none",
                 "--set", "core,misp", "--target", "linux-py311"]) == 0, capsys.readouterr()
    finished(fetch_process(config, tmp_path / "whole-store"))
    assert store_files(tmp_path / "store") == store_files(tmp_path / "whole-store")
    # every command with --set / --target parses them alike, repeated or joined
    from lockmirror import doit_tasks
    from lockmirror.cli import build_parser

    for command in ("lock", "fetch", "check-install", "audit", "outdated", "bump",
                    "lockfile", "advisories"):
        required = {"lockfile": ["--base-url", "u"], "advisories": ["-o", "f"]}
        args = build_parser(command).parse_args(
            [command, "--set", "core,misp", "--set", "extra", *required.get(command, [])])
        assert args.sets == ["core", "misp", "extra"], command
    args = build_parser("lock").parse_args(["lock", "--target", "a,b", "--target", "c"])
    assert args.targets == ["a", "b", "c"]
    # the same rule as doit's: spaces stripped, an empty name between commas dropped
    assert build_parser("fetch").parse_args(["fetch", "--set", " core, misp,"]).sets == [
        "core", "misp"]
    assert doit_tasks._names([" core, misp,", "extra"]) == ["core", "misp", "extra"]
    with pytest.raises(SystemExit):
        build_parser("fetch").parse_args(["fetch", "--set", ","])
    assert "--set ',': no name" in capsys.readouterr().err


def test_lock_target_without_a_shard_dir_points_to_the_shard_form(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "mirror.yaml"
    config.write_text("""version: 1
sources: [{name: fixture, url: "http://127.0.0.1:9/simple/"}]
targets: {linux: {python: "3.11", platforms: [manylinux_2_17_x86_64]}}
sets: {core: {requirements: [beta]}}
""")
    assert main(["lock", "--config", str(config), "--target", "linux"]) == 1
    err = capsys.readouterr().err
    assert "lock --target writes one target's shard of a set's lockfile, so it needs " \
        "--shard-dir DIR" in err and "then lockmirror lock --from-shards DIR" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "lockfiles").exists()


def test_a_target_shard_keeps_the_files_that_install_on_it(catalogue: Catalogue) -> None:
    core = build_lockfile(catalogue, "core")  # host (x86_64, this Python) and arm (aarch64)
    [arm] = for_targets([core], ["arm"])
    names = {(p.name, str(p.version)) for p in arm.packages}
    assert ("alpha", "2.0") in names and ("alpha", "1.1") not in names  # 1.1 is host's only
    native = next(p for p in arm.packages if p.name == "native")
    assert native.wheels and all("aarch64" in w.filename for w in native.wheels)
    assert all(ARM.name in p.targets for p in arm.packages)
    both = for_targets([core], ["arm", "host"])
    assert {f.sha256 for _, f in both[0].iter_files()} == {f.sha256 for _, f in core.iter_files()}
    assert for_targets([core], None) == [core]


def test_sets_json_is_a_job_matrix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "mirror.yaml"
    config.write_text("""version: 1
sources: [{name: fixture, url: "http://127.0.0.1:9/simple/"}]
targets:
  linux: {python: "3.11", platforms: [manylinux_2_17_x86_64]}
  arm: {python: "3.12", platforms: [manylinux_2_28_aarch64]}
sets: {core: {requirements: [beta]}, misp: {requirements: [gamma], targets: [arm]}}
""")
    assert main(["sets", "--config", str(config), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # one line: it goes into $GITHUB_OUTPUT
    assert json.loads(out) == {
        "set": ["core", "misp"],
        "include": [
            {"set": "core", "targets": ["linux", "arm"], "lockfile": "lockfiles/pylock.core.toml"},
            {"set": "misp", "targets": ["arm"], "lockfile": "lockfiles/pylock.misp.toml"}]}


# --------------------------------------------------------------------------
# publish: only the whole index, or a refusal naming the sets it would drop
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trees(catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The whole index (core, extra) and the index a shard of core alone would build."""
    root = tmp_path_factory.mktemp("shard-trees")
    mirror = make_fixture_mirror(catalogue, root)
    whole, core = root / "whole", root / "core-only"
    build_index(mirror.lockfiles, mirror.store, whole)
    build_index([p for p in mirror.lockfiles if "core" in p.name], mirror.store, core)
    return {"whole": whole, "core": core}


def snapshot(root: Path) -> dict[str, bytes]:
    return {rel: data for rel, data in tree_bytes(root).items()
            if ".lockmirror" not in rel.split("/")}


def web_root(path: Path) -> DirectoryDestination:
    return DirectoryDestination(kind="directory", path=str(path), layout="tree")


def refused_dropping_extra(tree: Path, destination: DirectoryDestination, dest: Path) -> None:
    """Publishing ``tree`` (the core shard) to ``destination`` (at ``dest``, which holds
    the whole index) is refused, with --prune or not, and touches nothing."""
    before = snapshot(dest)
    for prune in (False, True):
        with pytest.raises(PublishError) as refused:
            publish(tree, destination, prune=prune)
        assert str(refused.value) == (
            f"{dest}: refused: this index lacks 1 set the destination holds ('extra'); "
            "publishing it would drop them (publish the whole index from one job; to drop a "
            "set on purpose, use --drop-sets extra)")
    assert snapshot(dest) == before  # no page, no file, no manifest touched


def test_a_shard_index_is_refused_where_the_whole_index_is_published(
        trees: dict[str, Path], tmp_path: Path) -> None:
    dest = tmp_path / "www"
    publish(trees["whole"], web_root(dest))
    refused_dropping_extra(trees["core"], web_root(dest), dest)


def test_drop_sets_drops_on_purpose_and_prune_keeps_what_the_kept_sets_link(
        trees: dict[str, Path], tmp_path: Path) -> None:
    dest = tmp_path / "www"
    publish(trees["whole"], web_root(dest))
    publish(trees["core"], web_root(dest), prune=True, drop_sets=["extra"])
    assert snapshot(dest) == snapshot(trees["core"]) | {"manifest.json":
                                                        (trees["core"] / "manifest.json")
                                                        .read_bytes()}
    assert not (dest / "lockfiles" / "pylock.extra.toml").exists()
    assert list((dest / "files" / "speedup").glob("*.whl"))  # extra's, but core's too: kept
    assert not list((dest / "files" / "yanky").glob("yanky-1.0*"))  # extra's alone: pruned


def test_a_shard_publish_racing_the_whole_index_is_refused_under_the_lock(
        trees: dict[str, Path], tmp_path: Path) -> None:
    dest = tmp_path / "www"
    shard = DirectoryPublisher(web_root(dest), dest)
    tree = SourceTree.open(trees["core"])
    early = shard.plan(tree)  # an empty destination: nothing to drop yet
    publish(trees["whole"], web_root(dest))  # the gather job publishes meanwhile
    before = snapshot(dest)
    with pytest.raises(PublishError, match="lacks 1 set the destination holds"):
        shard.apply(tree, early)  # re-planned under the lock: refused there
    assert snapshot(dest) == before


def test_the_cli_refusal_is_one_line_and_drop_sets_takes_a_list(
        trees: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    dest = str(tmp_path / "www")
    base = ["publish", "--to", dest, "--layout", "tree", "-q"]
    assert main([*base, "--from", str(trees["whole"])]) == 0
    capsys.readouterr()
    assert main([*base, "--from", str(trees["core"]), "--prune"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "'extra'" in err and "--drop-sets extra" in err
    assert main([*base, "--from", str(trees["core"]), "--drop-sets", "extra,other"]) == 0


def flat_dir(path: Path) -> DirectoryDestination:
    return DirectoryDestination(kind="directory", path=str(path), layout="flat")


def test_a_flat_directory_refuses_a_shard_index_as_a_tree_does(
        trees: dict[str, Path], tmp_path: Path) -> None:
    """A flat directory has no lockfile copies: its receipt records the sets published
    (by name), and the same refusal keeps --prune from deleting another set's
    wheels (found by an outside tester: numpy, pandas, ... deleted, exit 0)."""
    dest = tmp_path / "packages"
    publish(trees["whole"], flat_dir(dest))
    receipt = json.loads((dest / ".lockmirror" / "receipt.json").read_text())
    assert receipt["sets"] == ["core", "extra"]
    refused_dropping_extra(trees["core"], flat_dir(dest), dest)
    result = publish(trees["core"], flat_dir(dest), prune=True, drop_sets=["extra"])
    assert any(name.startswith("yanky-1.0") for name in result.deleted)
    assert sorted(json.loads((dest / ".lockmirror" / "receipt.json").read_text())["sets"]) \
        == ["core"]
    assert publish(trees["core"], flat_dir(dest), prune=True).deleted == ()


def test_a_flat_receipt_without_sets_refuses_prune_until_the_whole_index_is_published(
        trees: dict[str, Path], tmp_path: Path) -> None:
    """An older lockmirror's receipt lists files only: whether a stale one is a set
    this index lacks cannot be told, so --prune is refused (nothing deleted) until a
    publish records the sets; a partial index publish does not record them."""
    dest = tmp_path / "packages"
    publish(trees["whole"], flat_dir(dest))
    path = dest / ".lockmirror" / "receipt.json"
    old = json.loads(path.read_text())
    del old["sets"]
    path.write_text(json.dumps(old))
    before = snapshot(dest)
    with pytest.raises(PublishError, match=r"refused: --prune would delete \d+ published "
                                           r"files? \(.*yanky-1\.0.*\), and the receipt "
                                           r"\(an older lockmirror's\)") as refused:
        publish(trees["core"], flat_dir(dest), prune=True)
    assert "delete those files by hand" in (refused.value.hint or "")
    publish(trees["core"], flat_dir(dest))  # no --prune: kept, and the sets still unknown
    assert "sets" not in json.loads(path.read_text())
    with pytest.raises(PublishError, match="does not say which sets were published"):
        publish(trees["core"], flat_dir(dest), prune=True, drop_sets=["extra"])
    assert snapshot(dest) == before
    publish(trees["whole"], flat_dir(dest))  # the whole index: the receipt says its sets
    assert sorted(json.loads(path.read_text())["sets"]) == ["core", "extra"]
    with pytest.raises(PublishError, match="lacks 1 set the destination holds"):
        publish(trees["core"], flat_dir(dest), prune=True)


def test_s3_refuses_a_shard_index_and_keeps_every_key(
        aws_env: S3Server, trees: dict[str, Path]) -> None:
    bucket = aws_env.new_bucket()
    dest = S3Destination(kind="s3", bucket=bucket, prefix="pypi",
                         endpoint_url=aws_env.endpoint_url)
    publish(trees["whole"], dest)
    keys = sorted(aws_env.keys(bucket))
    with pytest.raises(PublishError, match=r"lacks 1 set the destination holds \('extra'\)"):
        publish(trees["core"], dest, prune=True)
    assert sorted(aws_env.keys(bucket)) == keys
    result = publish(trees["core"], dest, prune=True, drop_sets=["extra"])
    assert result.deleted and all("pylock.core" not in key for key in result.deleted)
    assert "pypi/lockfiles/pylock.extra.toml" not in aws_env.keys(bucket)


def test_lockfile_copy_names() -> None:
    assert set_of_lockfile_copy("lockfiles/pylock.core.toml") == "core"
    assert set_of_lockfile_copy("lockfiles/pylock.my.set.toml") == "my.set"
    for other in ("lockfiles/x/pylock.core.toml", "simple/pylock.core.toml",
                  "lockfiles/pylock..toml", "lockfiles/core.toml"):
        assert set_of_lockfile_copy(other) is None



def test_doit_fetch_takes_the_shard_params(fixture_index: FixtureIndex, catalogue: Catalogue,
                                           tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from lockmirror import doit_tasks

    config = write_sharded_mirror(tmp_path, fixture_index, catalogue)
    shutil.copy(Path(__file__).parent.parent / "dodo.py", tmp_path / "dodo.py")
    monkeypatch.setenv("LOCKMIRROR_STORE", str(tmp_path / "store"))
    env = subprocess_env(LOCKMIRROR_STORE=str(tmp_path / "store"))
    ran = subprocess.run([sys.executable, "-m", "doit", "-s", "fetch", "--set", "misp",
                          "--target", "linux-py311"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr  # -s: without its lock task_dep
    assert "fetch: 4 files: 2 downloaded" in ran.stdout
    store = Store(tmp_path / "store")
    assert store.has(catalogue.find("gamma", "1.0").sha256)
    assert not store.has(catalogue.find("beta", "1.0").sha256)
    project = doit_tasks.Project(config)
    fetch = doit_tasks.fetch_task(project)
    assert [p["name"] for p in fetch["params"]] == ["sets", "target_names"]
    assert not fetch["uptodate"][0]()  # the whole store is not complete: `doit fetch` runs
    assert fetch["actions"][0]() is None
    assert fetch["uptodate"][0]()


def test_doit_publish_refuses_a_shard_index_unless_drop_sets_names_the_set(
        trees: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lockmirror import doit_tasks

    www = tmp_path / "www"
    config = tmp_path / "mirror.yaml"
    config.write_text(f"""version: 1
sources: [{{name: fixture, url: "http://127.0.0.1:9/simple/"}}]
targets: {{linux: {{python: "3.11", platforms: [manylinux_2_17_x86_64]}}}}
sets: {{core: {{requirements: [beta]}}}}
paths: {{index: "{trees['core']}"}}
publish: {{www: {{kind: directory, path: "{www}", layout: tree}}}}
""")
    publish(trees["whole"], web_root(www))
    every, task = doit_tasks.publish_tasks(doit_tasks.Project(config))
    assert (every["basename"], task["basename"]) == ("publish", "publish:www")
    assert [p["long"] for p in task["params"]] == ["drop-sets"]
    failed = task["actions"][0]()
    assert failed is not None and "--drop-sets extra" in failed.message
    assert (www / "lockfiles" / "pylock.extra.toml").exists()
    assert task["actions"][0](drop_sets=["extra"]) is None
    assert not (www / "lockfiles" / "pylock.extra.toml").exists()
    assert "publish www: " in capsys.readouterr().out
