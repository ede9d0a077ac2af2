"""doit's task graph as a run sees it: what each task asks, and how often.

The tasks run in this process through doit itself (``DoitMain`` over the
repository's ``dodo.py``) on a mirror of the fixture index, so the order and
the up-to-date checks are doit's own.
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from doit.cmd_base import ModuleTaskLoader  # type: ignore[import-untyped]
from doit.doit_cmd import DoitMain  # type: ignore[import-untyped]
from fixtureindex import FixtureIndex
from helpers import mirror_yaml

from lockmirror.stages import retention

DODO = Path(__file__).resolve().parent.parent / "dodo.py"


@pytest.fixture
def project(tmp_path: Path, fixture_index: FixtureIndex, reproducible_build: None,
            monkeypatch: pytest.MonkeyPatch) -> Path:
    # reproducible_build: LOCKMIRROR_TOOL_WHEELS=installed, so no tool set to lock
    (tmp_path / "mirror.yaml").write_text(
        mirror_yaml(fixture_index.url, {"core": ["speedup==1.2", "beta==1.0"]}))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_doit(*args: str) -> int:
    """``doit ARGS`` in this directory, over the repository's dodo.py (loaded afresh:
    each run is a new process's worth of state)."""
    return int(DoitMain(ModuleTaskLoader(runpy.run_path(str(DODO)))).run(list(args)))


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[int]:
    """Wrap ``owner.name`` so that each call appends 1 to the list returned (the real
    function still runs)."""
    calls: list[int] = []
    original = getattr(owner, name)

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_retention_is_asked_once_per_run(project: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """fetch's up-to-date check, fetch and index share one answer (git processes per set)."""
    calls = count_calls(monkeypatch, retention, "retained_locks")
    assert run_doit("index") == 0  # lock, fetch, index: each ran
    assert (project / "dist-index" / "manifest.json").is_file()
    assert len(calls) == 1
    calls.clear()
    assert run_doit("index") == 0  # fetch up to date, index's own no-op
    assert len(calls) == 1


def test_fetch_up_to_date_check_and_gc_load_no_http_stack() -> None:
    """A no-op ``doit`` (fetch's up-to-date check) and ``lockmirror gc`` need the
    plan, not the downloads: requests and urllib3 stay unloaded."""
    code = ("import sys, lockmirror.doit_tasks, lockmirror.stages.fetch_plan, "
            "lockmirror.stages.gc, lockmirror.commands.gc, lockmirror.stages.disk_usage; "
            "print(sorted({'requests', 'urllib3'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout == "[]\n"


def test_a_broken_mirror_yaml_still_lists_the_tasks_and_a_task_says_where(
        tmp_path: Path, reproducible_build: None) -> None:
    """doit runs every task creator for every command, and they loaded mirror.yaml:
    one broken field failed ``doit list`` (and help, info, clean) too, so a newcomer
    could not see the tasks. Now the same tasks are listed; running one that needs
    the config says the field and the line, once, with no traceback."""
    def doit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "doit", "-f", str(DODO), "-d", str(tmp_path),
                               *args], capture_output=True, text=True, check=False, timeout=120)

    good = mirror_yaml("http://127.0.0.1:9/simple/", {"core": ["beta==1.0"]})
    (tmp_path / "mirror.yaml").write_text(good)
    listed = doit("list")
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert {"lock", "fetch", "index", "check-install", "bundle", "publish"} <= set(names)
    (tmp_path / "mirror.yaml").write_text(good.replace('python: "3.11"', 'python: "3.11x"'))
    listed = doit("list")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == names
    for args in (["help", "lock"], ["info", "lock"], ["clean", "--dry-run"]):
        done = doit(*args)
        assert "lock" in done.stdout or args[0] == "clean", args
        assert done.returncode in (0, 1) and done.stderr == "", (args, done.stderr)
    for args in (["lock"], ["build"], ["publish"]):
        done = doit(*args)
        assert done.returncode != 0
        assert done.stderr.splitlines() == [
            "lockmirror: error: mirror.yaml:5:24: targets.linux-x86_64-py311.python: '3.11x' "
            "is not a Python version like '3.11' or '3.11.4'"], (args, done.stderr)


def test_a_list_param_takes_comma_separated_names(tmp_path: Path, fixture_index: FixtureIndex,
                                                   reproducible_build: None,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """``doit fetch --set core,extra`` (as the README writes it) is both sets:
    doit hands the value over whole, unsplit."""
    (tmp_path / "mirror.yaml").write_text(
        mirror_yaml(fixture_index.url, {"core": ["beta==1.0"], "extra": ["speedup==1.2"]}))
    monkeypatch.chdir(tmp_path)
    assert run_doit("lock") == 0
    capsys.readouterr()
    assert run_doit("fetch", "--set", "core,extra") == 0
    assert "no set named" not in capsys.readouterr().err
    stored = {p.name for p in (tmp_path / ".store").rglob("*") if p.is_file()}
    assert stored, "nothing fetched"
    from lockmirror.formats.lockfile import Lockfile
    for name in ("core", "extra"):
        locked = Lockfile.read(tmp_path / "lockfiles" / f"pylock.{name}.toml")
        assert {f.sha256[2:] for p in locked.packages for f in p.files} <= stored
    # the store is complete now: a misspelled shard still fails (it passed as up to date)
    capsys.readouterr()
    assert run_doit("fetch", "--set", "cor") != 0
    assert "no set named 'cor'" in capsys.readouterr().err
    assert run_doit("fetch") == 0


def test_doit_lock_warns_of_a_linux_tag_once_per_run(
        tmp_path: Path, fixture_index: FixtureIndex, reproducible_build: None,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The warning is about the target, not the set: each lock task that re-locked a
    set for it said it again."""
    (tmp_path / "mirror.yaml").write_text(mirror_yaml(
        fixture_index.url, {"core": ["beta==1.0"], "extra": ["gamma"], "more": ["beta"]},
        targets={"linux": ("3.11", "linux_x86_64")}))
    monkeypatch.chdir(tmp_path)
    assert run_doit("lock") == 0
    err = capsys.readouterr().err
    assert err.count("'linux_x86_64' matches only privately built wheels") == 1, err
    assert len(list((tmp_path / "lockfiles").glob("pylock.*.toml"))) == 3


def test_doit_publish_tries_every_destination_in_name_order(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`doit publish`: the destinations one after another in name order, in every
    process (doit ran its subtasks in the order of a set, which changed with
    PYTHONHASHSEED), each tried when one before it failed, and a last line
    naming the failed ones (found by an outside tester); `doit publish:<name>`
    publishes one."""
    with (project / "mirror.yaml").open("a") as config:
        config.write("publish:\n"
                     "  c-www: {kind: directory, path: www, layout: tree}\n"
                     "  a-packages: {kind: directory, path: packages}\n"
                     "  b-broken: {kind: directory, path: not-a-directory}\n")
    (project / "not-a-directory").write_text("a file")
    assert run_doit("index") == 0
    capsys.readouterr()
    for seed in ("0", "1", "2", "3"):
        done = subprocess.run([sys.executable, "-m", "doit", "-f", str(DODO), "-d", str(project),
                               "publish"], capture_output=True, text=True, check=False,
                              env={**os.environ, "PYTHONHASHSEED": seed})
        assert done.returncode == 1, done.stderr
        assert [line.split(":")[0] for line in done.stdout.splitlines()
                if line.startswith("publish ")] == ["publish a-packages", "publish c-www"]
        assert done.stderr.splitlines()[-2:] == [
            f"lockmirror: error: {project / 'not-a-directory'}: is not a directory",
            "lockmirror: error: publish failed for 1 of 3 destinations: b-broken (the others "
            "were published; see the errors above)"], done.stderr
    assert (project / "www" / "manifest.json").is_file()
    shutil.rmtree(project / "www")
    assert run_doit("publish:c-www") == 0
    assert (project / "www" / "manifest.json").is_file()
    assert "publish a-packages" not in capsys.readouterr().out


def test_doit_words_an_error_as_the_cli_does_a_hostile_name_escaped(
        capsys: pytest.CaptureFixture[str]) -> None:
    """doit's one print site used its own wording, which left a place quoting a
    hostile name (an escape sequence, a line break) raw on the terminal."""
    from lockmirror import doit_tasks
    from lockmirror.errors import LockmirrorError, error_text

    error = LockmirrorError("not listed", where="index/files/a\x1b[2J\nlockmirror: verified",
                            hint="rebuild")
    failed = doit_tasks._report(error)
    assert capsys.readouterr().err == error_text(error) + "\n"
    assert "\x1b" not in error_text(error) and "\n" not in error_text(error)
    assert str(failed.message).startswith("index/files/a\\x1b[2J\\nlockmirror")


def test_doit_bundle_runs_again_when_the_members_mtime_changes(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tar's members carry the lockfiles' last commit time (or SOURCE_DATE_EPOCH):
    a commit of the lockfiles after `doit bundle` made `lockmirror bundle` write other
    bytes while `doit bundle` stayed up to date (found by an outside tester)."""
    from lockmirror import doit_tasks

    def stamp() -> object:
        task = doit_tasks.bundle_task(doit_tasks.Project(project / "mirror.yaml"))
        return task["uptodate"][0].config

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first = stamp()
    assert stamp() == first
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000001")
    assert stamp() != first and stamp()["mtime"] == "1700000001"  # type: ignore[index]


def test_a_bad_source_date_epoch_is_the_bundle_tasks_to_report(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the tasks read it for doit bundle's stamp and raised there: every doit
    command printed a traceback (found by a reviewer)."""
    from lockmirror import doit_tasks

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "abc")
    task = doit_tasks.bundle_task(doit_tasks.Project(project / "mirror.yaml"))
    assert task["uptodate"][0].config["mtime"] == "invalid"


def test_a_deleted_bundle_is_written_again_and_a_comment_runs_no_installer(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by an outside tester: after `rm dist/*.tar`, `doit` said all was done and
    wrote no bundle (the task named no file it writes: the name holds the content
    id); a comment added to mirror.yaml ran every installer again, although only
    the landing page and its data (mirror.yaml's sha256) changed."""
    from lockmirror import pipeline

    asked = count_calls(monkeypatch, retention, "retained_locks")
    assert run_doit("bundle") == 0
    assert asked == [1]  # fetch, index and bundle share one answer (found by a reviewer)
    [tar] = (project / "dist").glob("*.tar")
    written = tar.read_bytes()
    tar.unlink()
    assert run_doit("bundle") == 0
    assert tar.read_bytes() == written
    installs = count_calls(monkeypatch, pipeline, "check_install")
    landing = (project / "dist-index" / "landing.json").read_bytes()
    with (project / "mirror.yaml").open("a") as handle:
        handle.write("# a comment\n")
    assert run_doit("bundle") == 0
    assert (project / "dist-index" / "landing.json").read_bytes() != landing  # index ran
    assert installs == []


def test_doit_bundle_takes_now_and_the_same_now_gives_the_same_bytes(
        tmp_path: Path, fixture_index: FixtureIndex, reproducible_build: None,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`doit bundle --now WHEN`, as `lockmirror bundle --now WHEN`: the advisory snapshot
    says WHEN, so a bundle written again has the same bytes (a plain run takes the
    advisories at the clock); another --now is not up to date; a bad one is one line."""
    policy = ("policy:\n  advisory_sources:\n"
              f"    - {{kind: pypi-json, url: \"{fixture_index.json_api_url}\"}}\n")
    (tmp_path / "mirror.yaml").write_text(
        mirror_yaml(fixture_index.url, {"core": ["speedup==1.2"]}, extra=policy))
    monkeypatch.chdir(tmp_path)

    def taken(tar: Path) -> str:
        with tarfile.open(tar) as bundle:
            [member] = [m for m in bundle.getmembers() if m.name.endswith("/advisories.json")]
            handle = bundle.extractfile(member)
            assert handle is not None
            return str(json.loads(handle.read())["taken"])

    assert run_doit("bundle", "--now", "2024-10-10T12:00:00Z") == 0
    [tar] = (tmp_path / "dist").glob("*.tar")
    written = tar.read_bytes()
    assert taken(tar) == "2024-10-10T12:00:00Z"
    tar.unlink()
    assert run_doit("bundle", "--now", "2024-10-10T12:00:00Z") == 0
    assert tar.read_bytes() == written  # byte-identical
    assert run_doit("bundle", "--now", "2024-10-11T12:00:00Z") == 0  # not up to date
    [newer] = [p for p in (tmp_path / "dist").glob("*.tar") if p != tar]
    assert taken(newer) == "2024-10-11T12:00:00Z"
    capsys.readouterr()
    assert run_doit("bundle", "--now", "yesterday") != 0
    assert "'yesterday' is not an ISO date or date-time" in capsys.readouterr().err


def test_installs_unchanged_looks_at_what_installers_read(tmp_path: Path) -> None:
    from lockmirror.doit_uptodate import installs_unchanged
    from lockmirror.formats.manifest import Entry, Manifest
    from lockmirror.stages.check_install_work import PASS_RECORD, record_pass
    from lockmirror.stages.installers import NEWEST_PIP

    index, verify = tmp_path / "dist-index", tmp_path / "verify"
    verify.mkdir()

    def build(**changed: Entry) -> Path:
        files = {"index.html": Entry("a" * 64, 1), "landing.json": Entry("b" * 64, 2),
                 "simple/six/index.html": Entry("c" * 64, 3),
                 "files/six/six-1.0-py3-none-any.whl": Entry("d" * 64, 4), **changed}
        Manifest(files).write(index / "manifest.json")
        return index

    from lockmirror.stages.check_install_work import record_before

    # a run missing an installer (its copy could not be fetched) records no whole pass
    record_pass(verify, record_before(verify, build()), True, limited_by=(),
                unavailable=True)
    assert not installs_unchanged(build(), verify)
    # the record is of the index as the run found it, not as it is when the run ends
    found = record_before(verify, build())
    build(**{"simple/six/index.html": Entry("f" * 64, 3)})  # rebuilt during the run
    record_pass(verify, found, True, limited_by=())
    assert not installs_unchanged(index, verify)
    record_pass(verify, record_before(verify, build()), True, limited_by=())
    assert installs_unchanged(build(**{"landing.json": Entry("e" * 64, 5)}), verify)
    assert not installs_unchanged(build(**{"simple/six/index.html": Entry("f" * 64, 3)}),
                                  verify)
    assert not installs_unchanged(build(**{"constraints/core-linux.txt": Entry("f" * 64, 3)}),
                                  verify)
    assert not installs_unchanged(tmp_path / "missing", verify)
    # the installer matrix is part of the pass (was doit's file_dep on installers.py): a
    # pass with another pip proves nothing for today's
    record = verify / PASS_RECORD
    record.write_text(record.read_text().replace(f'"{NEWEST_PIP.version}"', '"1.0"', 1))
    assert not installs_unchanged(build(), verify)
