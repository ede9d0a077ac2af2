"""`lockmirror gc` / `doit gc`: what no current lockfile needs goes, with the bytes freed;
what one needs never does."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fixtureindex import FixtureIndex
from helpers import dead_pid, git, left_by_killed_run, subprocess_env, tree_bytes
from test_lock import write_mirror

from lockmirror import pipeline
from lockmirror.config import load_config
from lockmirror.errors import StaleLockError
from lockmirror.formats.lockfile import Lockfile
from lockmirror.formats.store import Store
from lockmirror.fsutil import format_size, plural
from lockmirror.stages.fetch_plan import plan

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path, fixture_index: FixtureIndex, own_paths: None) -> Path:
    """A mirror whose set moved from alpha to gamma: alpha's files are garbage."""
    path = write_mirror(tmp_path, fixture_index, "  q:\n    requirements: [alpha]\n",
                        extra=f"  store: {tmp_path / 'store'}\n")
    pipeline.lock(load_config(path))
    pipeline.fetch(load_config(path))
    path.write_text(path.read_text().replace("[alpha]", "[gamma]"))
    pipeline.lock(load_config(path))
    pipeline.fetch(load_config(path))
    return path


def test_gc_removes_only_what_no_lockfile_needs_and_says_what_it_freed(
        project: Path) -> None:
    loaded = load_config(project)
    store = Store(loaded.store_dir)
    needed = plan([Lockfile.read(loaded.lockfile_path("q"))])
    garbage = [p for p in (store.root / "sha256").rglob("*") if p.is_file()
               and p.parent.name + p.name not in {i.sha256 for i in needed}]
    assert garbage  # alpha's wheel(s), sdist, metadata
    # a partial of garbage (goes), one a lockfile needs (kept), one a fetch holds (kept)
    (store.temp_dir() / f"{'a' * 64}.partial").write_bytes(b"x" * 100)
    (store.temp_dir() / f"{needed[0].sha256}.partial").write_bytes(b"y" * 10)
    held = store.temp_dir() / f"{'b' * 64}.partial"
    held.write_bytes(b"z" * 10)
    # a store write killed before its rename (found by an outside tester: nothing ever
    # removed these); one from a write in progress, fresh, stays
    killed = store.root / "sha256" / "ab" / f".{'c' * 62}.x1y2z3w4.tmp"
    killed.parent.mkdir(exist_ok=True)
    killed.write_bytes(b"k" * 7)
    os.utime(killed, (0, 0))
    writing = killed.with_name(f".{'d' * 62}.a1b2c3d4.tmp")
    writing.write_bytes(b"w")
    cache = loaded.cache_dir
    # lock's cached METADATA (http/blobs/<2>/<wheel sha256>.METADATA, as the lock left
    # it): alpha's goes, gamma's stays
    blobs = [p for p in (cache / "http" / "blobs").rglob("*") if p.is_file()]
    stale_blobs = [p for p in blobs if p.name.split(".")[0] not in {i.sha256 for i in needed}]
    assert stale_blobs and len(stale_blobs) < len(blobs)
    (cache / "verify" / "venv-3" / "lib").mkdir(parents=True)  # an old check-install's
    (cache / "verify" / "venv-3" / "lib" / "f").write_bytes(b"v" * 5)
    from lockmirror.stages.toolwheels import current_cache_keys

    tools = cache / "tool-wheels"
    for key in ("0123456789abcdef", *current_cache_keys()):  # another lockmirror's, ours
        (tools / key).mkdir(parents=True)
        (tools / key / "pins.txt").write_bytes(b"t" * 3)
    expected = sum(p.stat().st_size for p in garbage + stale_blobs) + 100 + 5 + 3 + 7

    fd = os.open(held, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a running fetch holds
        before = tree_bytes(tmp := project.parent)
        dry = pipeline.gc(loaded, dry_run=True)
        assert tree_bytes(tmp) == before  # a dry run removes nothing
        assert dry.freed == expected and dry.describe().startswith("would remove ")
        done = pipeline.gc(loaded)
    finally:
        os.close(fd)
    removed = len(garbage) + len(stale_blobs) + 4
    assert not killed.exists() and writing.exists()
    assert done.freed == expected and len(done.removed) == removed
    assert done.describe() == (f"removed {removed} items ({format_size(expected)} "
                               f"freed); {len(needed)} store files a lockfile needs kept")
    assert not any(p.exists() for p in garbage + stale_blobs)
    assert all(p.exists() for p in blobs if p not in stale_blobs)
    assert all(store.has(item.sha256, item.size) for item in needed)  # never what is needed
    assert sorted(p.name for p in store.temp_dir().iterdir()) == sorted(
        [f"{needed[0].sha256}.partial", held.name])
    assert not (cache / "verify" / "venv-3").exists()
    assert sorted(p.name for p in tools.iterdir()) == sorted(current_cache_keys())
    assert [r.path for r in pipeline.gc(loaded).removed] == [held]  # released: it goes now
    assert pipeline.gc(loaded).removed == ()  # idempotent
    assert not pipeline.fetch(loaded).downloaded  # the store still has all it needs


def test_gc_refuses_without_every_lockfile_and_spares_a_shared_store(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load_config(project)
    store_before = tree_bytes(loaded.store_dir)
    lockfile = loaded.lockfile_path("q")
    moved = lockfile.with_suffix(".away")
    lockfile.rename(moved)
    with pytest.raises(StaleLockError, match="set 'q' has no lockfile"):
        pipeline.gc(loaded)
    assert tree_bytes(loaded.store_dir) == store_before
    moved.rename(lockfile)

    monkeypatch.setenv("LOCKMIRROR_STORE", str(loaded.store_dir))
    result = pipeline.gc(load_config(project))
    assert tree_bytes(loaded.store_dir) == store_before
    assert any("$LOCKMIRROR_STORE" in note for note in result.skipped)
    assert pipeline.gc(load_config(project), shared_store=True, dry_run=True).removed
    monkeypatch.delenv("LOCKMIRROR_STORE")
    # a store mirror.yaml names outside the repository is the other way to share one
    # (gc listed another mirror's files in it; found by an outside tester)
    outside = project.parent.parent / f"{project.parent.name}-shared"
    loaded.store_dir.rename(outside)
    project.write_text(project.read_text().replace(str(loaded.store_dir), str(outside)))
    result = pipeline.gc(load_config(project))
    assert tree_bytes(outside) == store_before
    assert any("(paths.store, outside this repository) may be shared" in note
               for note in result.skipped)


def test_gc_command_and_doit_task(project: Path) -> None:
    env = subprocess_env()  # own_paths (through project) dropped $LOCKMIRROR_STORE/_CACHE
    store_before = tree_bytes(load_config(project).store_dir)
    dry = subprocess.run([sys.executable, "-m", "lockmirror", "gc", "--dry-run", "--config",
                          str(project)], capture_output=True, text=True, env=env, check=False)
    assert dry.returncode == 0, dry.stderr
    assert "  store file: " in dry.stdout and "gc: would remove " in dry.stdout
    assert tree_bytes(load_config(project).store_dir) == store_before

    shutil.copyfile(ROOT / "dodo.py", project.parent / "dodo.py")
    done = subprocess.run([str(Path(sys.executable).parent / "doit"), "gc"],
                          cwd=project.parent, capture_output=True, text=True, env=env,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^gc: removed \d+ items \(.* freed\); \d+ store files a lockfile "
                     "needs kept$", done.stdout, re.MULTILINE), done.stdout
    assert tree_bytes(load_config(project).store_dir) != store_before


def test_du_and_gc_name_locked_files_deleted_from_the_store(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A locked file removed from the store by hand: du counts and names it with the
    fetch that brings it back (still rc 0: a report), gc does not count it as kept."""
    from lockmirror.cli import main

    loaded = load_config(project)
    store = Store(loaded.store_dir)
    needed = plan([Lockfile.read(loaded.lockfile_path("q"))])
    wheel = next(item for item in needed if item.filename.endswith(".whl"))
    store.path(wheel.sha256).unlink()
    capsys.readouterr()
    assert main(["du", "--config", str(project)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == (
        f"{format_size(wheel.size or 0):>10}       1 file   missing from the store (as "
        f"locked): {wheel.filename}; locked by set q: run `lockmirror fetch --set q`"), out
    assert main(["gc", "--dry-run", "--config", str(project)]) == 0
    summary = capsys.readouterr().out.splitlines()[-1]
    assert summary.endswith(f"; {plural(len(needed) - 1, 'store file')} a lockfile needs "
                            "kept; 1 more missing from the store (1 locked file; "
                            "`lockmirror du` names it)"), summary
    # more than du names (alpha's files too): counted, the rest elided
    project.write_text(project.read_text().replace("[gamma]", "[alpha, gamma]"))
    pipeline.lock(load_config(project))
    shutil.rmtree(store.root / "sha256")
    assert main(["du", "--config", str(project)]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    items = plan([Lockfile.read(loaded.lockfile_path("q"))])
    count = sum(1 for item in items if not item.is_metadata)
    assert count == 3 and len(items) - count == 3  # three wheels, three metadata files
    assert ("3 files  missing from the store (as locked), with 3 wheel metadata files: "
            in last), last
    assert last.count(", ") == 4 and ", ...; locked by set q:" in last, last
    pipeline.fetch(load_config(project))
    assert main(["du", "--config", str(project)]) == 0
    assert "missing" not in capsys.readouterr().out


def test_du_and_gc_counts_of_a_partly_fetched_store_add_up(
        tmp_path: Path, fixture_index: FixtureIndex, own_paths: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    """One set of two fetched: du said "3 files total" then "2 files missing" (the
    missing count held wheels' metadata files, the totals do not) and its store line
    said "every locked file"; gc called metadata files "locked files". Each count now
    says what it counts, and present + missing give the totals."""
    from lockmirror.cli import main

    path = write_mirror(tmp_path, fixture_index, "  a:\n    requirements: [alpha]\n"
                        "  b:\n    requirements: [gamma]\n",
                        extra=f"  store: {tmp_path / 'store'}\n")
    pipeline.lock(load_config(path))
    pipeline.fetch(load_config(path), sets=["a"])
    capsys.readouterr()
    assert main(["du", "--config", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    total = next(line for line in lines if "total served by the index" in line)
    assert total.split()[2:4] == ["3", "files"]  # alpha 1.1, alpha 2.0, gamma 1.0
    store_line = next(line for line in lines if " store store: " in line)
    assert "every locked file" not in store_line
    assert ("store store: 2 of the 3 locked files (the rest missing: below), their "
            "wheels' metadata and any file gc would remove") in store_line
    assert lines[-1].split()[2:4] == ["1", "file"], lines[-1]  # 2 there + 1 missing = 3
    assert "missing from the store (as locked), with 1 wheel metadata file: " in lines[-1]
    assert main(["gc", "--dry-run", "--config", str(path)]) == 0
    summary = capsys.readouterr().out.splitlines()[-1]
    assert summary.endswith("; 4 store files a lockfile needs kept; 2 more missing from the "
                            "store (1 locked file and 1 wheel metadata file; `lockmirror du` "
                            "names them)"), summary  # store files both: 4 + 2 = what is needed


def test_gc_keeps_what_retained_lock_revisions_need(project: Path) -> None:
    """With the lockfiles in git, the previous lock (retention's default window) keeps
    its files; a window of one revision lets them go."""
    loaded = load_config(project)
    path = loaded.lockfile_path("q")
    gamma = path.read_bytes()
    project.write_text(project.read_text().replace("[gamma]", "[alpha]"))
    pipeline.lock(load_config(project))  # alpha's lock, committed first
    git(project.parent, "init", "-q")
    git(project.parent, "add", "lockfiles")
    git(project.parent, "commit", "-qm", "alpha")
    path.write_bytes(gamma)
    project.write_text(project.read_text().replace("[alpha]", "[gamma]"))
    git(project.parent, "commit", "-qam", "gamma")
    loaded = load_config(project)
    store_before = tree_bytes(loaded.store_dir)
    result = pipeline.gc(loaded)
    assert not [r for r in result.removed if r.kind == "store file"]
    assert tree_bytes(loaded.store_dir) == store_before
    assert any(note.startswith("kept what q@") and "(the previous lock)" in note
               for note in result.skipped)
    project.write_text(project.read_text() + "retention: {lock_revisions: 1}\n")
    result = pipeline.gc(load_config(project))
    assert [r for r in result.removed if r.kind == "store file"]


def test_gc_leaves_a_running_check_installs_work_alone(project: Path) -> None:
    """check-install holds its work directory's lock while it runs; gc took the run's
    requirement files away mid-run, which then failed with "re-run doit fetch" (found
    by an outside tester)."""
    from lockmirror.fsutil import one_at_a_time

    loaded = load_config(project)
    verify = loaded.cache_dir / "verify"
    (verify / "run" / "venv").mkdir(parents=True)
    (verify / "run" / "requirements-q.txt").write_text("gamma\n")
    with one_at_a_time(verify, "a check-install is running"):  # as verify_closure holds it
        result = pipeline.gc(loaded)
        assert (verify / "run" / "requirements-q.txt").exists()
        assert f"a check-install is running in {verify}: its work left alone" in result.skipped
    assert verify / "run" in [r.path for r in pipeline.gc(loaded).removed]  # ended: it goes


def test_gc_lists_and_removes_what_killed_check_install_runs_left(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A run outside a project works in $TMPDIR/lockmirror-verify-<pid>-*; after `kill -9`
    70M stayed there and `lockmirror gc --dry-run` did not list it (found by an outside
    tester). A run that lives (its pid, or its lock held) is left alone."""
    import tempfile

    from lockmirror.cli import main
    from lockmirror.fsutil import locked_unless_held

    root = tmp_path / "tmp"
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    killed = left_by_killed_run(root, f"lockmirror-verify-{dead_pid()}-k1ll3d_x")
    unnamed = left_by_killed_run(root, "lockmirror-verify-a1b2c3d4")  # before runs had pids
    living = left_by_killed_run(root, f"lockmirror-verify-{os.getppid()}-al1ve")
    held = left_by_killed_run(root, "lockmirror-verify-e5f6g7h8")
    with locked_unless_held(held) as free:
        assert free
        assert main(["gc", "--dry-run", "--config", str(project)]) == 0
        listed = capsys.readouterr().out
        assert f"  killed check-install run: {killed} (" in listed
        assert f"  killed check-install run: {unnamed} (" in listed
        assert "gc: 2 x killed check-install run (" in listed
        assert killed.exists() and str(living) not in listed and str(held) not in listed
        assert main(["gc", "--config", str(project)]) == 0
    assert sorted(root.iterdir()) == sorted([held, living])


def test_gc_on_the_far_side_collects_what_killed_check_install_runs_left(
        tmp_path: Path) -> None:
    """An imported mirror has no mirror.yaml: `lockmirror gc --dry-run` there stopped at
    `mirror.yaml: no such file`, while the README sends a killed check-install's
    leftovers to gc (found by an outside tester)."""
    root, far = tmp_path / "tmp", tmp_path / "srv" / "mirror"
    far.mkdir(parents=True)
    killed = left_by_killed_run(root, f"lockmirror-verify-{dead_pid()}-k1ll3d_x")
    living = left_by_killed_run(root, f"lockmirror-verify-{os.getpid()}-al1ve")
    # what a killed `publish --from BUNDLE` left (it went only by hand before)
    publish = left_by_killed_run(root, f"lockmirror-publish-{dead_pid()}-k1ll3d_y")
    env = subprocess_env(TMPDIR=str(root))

    def gc(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lockmirror", "gc", *options], cwd=far,
                              capture_output=True, text=True, env=env, check=False)

    dry = gc("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"  killed check-install run: {killed} (" in dry.stdout
    assert f"  killed publish: {publish} (" in dry.stdout
    assert f"gc: no mirror.yaml in {far}: only what killed check-install runs" in dry.stdout
    assert re.search(r"^gc: would remove 2 items \(.* would be freed\)$", dry.stdout,
                     re.MULTILINE), dry.stdout
    assert killed.exists() and str(living) not in dry.stdout
    shared = gc("--shared-store")
    assert shared.returncode == 2 and "--shared-store: no mirror.yaml in" in shared.stderr
    assert len(shared.stderr.splitlines()) <= 2 and killed.exists()
    assert gc().returncode == 0
    assert sorted(root.iterdir()) == [living]
    named = gc("--config", "mirror.yaml")  # a mirror.yaml named must be there
    assert named.returncode == 2 and "mirror.yaml: no such file" in named.stderr


def test_gc_is_not_stopped_by_a_run_directory_named_with_no_possible_pid(
        tmp_path: Path) -> None:
    """Any local user could `mkdir /tmp/lockmirror-verify-99999999999999999999-x`, and
    every other user's check-install, publish and gc then ended in a traceback (os.kill's
    OverflowError; found by a security review). Another user's entry is not looked into;
    this user's own named with a number no pid can be is no live run's."""
    root, far = tmp_path / "tmp", tmp_path / "srv" / "mirror"
    far.mkdir(parents=True)
    theirs = root / "lockmirror-verify-99999999999999999999-x"
    theirs.mkdir(parents=True)
    if os.geteuid() == 0:
        os.chown(theirs, 65534, 65534)  # nobody's
    beyond = left_by_killed_run(root, "lockmirror-verify-4294967296-k1ll3d_x")  # > pid_t
    unnamed = left_by_killed_run(root, "lockmirror-publish-99999999999999999999-x")

    def gc(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lockmirror", "gc", *options], cwd=far,
                              capture_output=True, text=True, check=False,
                              env=subprocess_env(TMPDIR=str(root)))

    dry = gc("--dry-run")
    assert dry.returncode == 0 and dry.stderr == "", dry.stderr
    assert f"  killed check-install run: {beyond} (" in dry.stdout
    assert str(theirs) not in dry.stdout and str(unnamed) not in dry.stdout
    assert gc().returncode == 0
    assert sorted(root.iterdir()) == [unnamed, theirs]
