"""Retention: earlier lock revisions read from git history stay in the window.

A real git repository in a temporary directory, with lockfile revisions
committed at chosen times (GIT_COMMITTER_DATE).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import helpers
import pytest
from fixtureindex import Catalogue, FixtureIndex
from helpers import mirror_yaml, subprocess_env
from packaging.version import Version

from lockmirror.config_schema import SourceConfig
from lockmirror.formats.lockfile import LockedFile, LockedPackage, LockedTarget, Lockfile
from lockmirror.fsutil import format_size, sha256_file
from lockmirror.stages.retention import retained_locks, under_sources

TARGET = LockedTarget("host", "3.11", "cp", ("manylinux_2_28_x86_64",),
                      'python_version == "3.11"')
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def lockfile(version: str) -> Lockfile:
    wheel = LockedFile(filename=f"requests-{version}-py3-none-any.whl",
                       url=f"https://files.example/requests-{version}-py3-none-any.whl",
                       size=10, sha256=f"{int(version.replace('.', '')):064x}")
    package = LockedPackage(name="requests", version=Version(version),  # type: ignore[arg-type]
                            targets=("host",), index="https://pypi.org/simple/", wheels=(wheel,))
    return Lockfile(set_name="core", requirements=("requests",), targets=(TARGET,),
                    packages=(package,), input_hash=version)


def git(repo: Path, *args: str, when: datetime | None = None) -> str:
    return helpers.git(repo, *args, date=when.isoformat() if when is not None else None)


def commit_lock(repo: Path, version: str, when: datetime) -> str:
    path = repo / "lockfiles" / "pylock.core.toml"
    lockfile(version).write(path)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"lock {version}", when=when)
    return git(repo, "rev-parse", "HEAD").strip()


def repository(tmp_path: Path) -> tuple[Path, list[str]]:
    repo = tmp_path / "repo"
    (repo / "lockfiles").mkdir(parents=True)
    git(repo, "init", "-q")
    commits = [commit_lock(repo, v, NOW - timedelta(days=d))
               for v, d in (("2.30.0", 30), ("2.31.0", 10), ("2.32.3", 2))]
    return repo, commits


def versions(retention: object) -> list[str]:
    return [str(p.version) for k in retention.kept for p in k.lockfile.packages]  # type: ignore[attr-defined]


def test_the_previous_lock_is_kept_and_the_third_dropped(tmp_path: Path) -> None:
    repo, commits = repository(tmp_path)
    path = repo / "lockfiles" / "pylock.core.toml"
    retention = retained_locks([("core", path)], lock_revisions=2, days=0, now=NOW)
    assert versions(retention) == ["2.31.0"]
    kept = retention.kept[0]
    assert kept.commit == commits[1] and kept.reason == "the previous lock"
    assert kept.superseded == (NOW - timedelta(days=2)).replace(microsecond=0)
    assert kept.label == f"core@{commits[1][:8]}"
    assert versions(retained_locks([("core", path)], lock_revisions=3, days=0, now=NOW)) == [
        "2.31.0", "2.30.0"]
    assert versions(retained_locks([("core", path)], lock_revisions=1, days=0, now=NOW)) == []


def test_each_revision_is_parsed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by a reviewer: each revision was read as TOML to compare its packages,
    and each one kept read again as a lockfile; the lockfile is now built from the
    first reading. The current lockfile and the three revisions scanned (the third
    one to find it outside the window): one parse each."""
    from lockmirror.formats import bounded
    from lockmirror.formats import lockfile as lockfile_module

    repo, _ = repository(tmp_path)
    path = repo / "lockfiles" / "pylock.core.toml"
    lockfile("2.33.0").write(path)  # uncommitted: 2.32.3 and 2.31.0 are kept
    parsed: list[str] = []
    original = bounded.load_toml

    def counted(text: str, *, where: str, **kwargs: object) -> dict[str, object]:
        parsed.append(where)
        return original(text, where=where, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bounded, "load_toml", counted)
    monkeypatch.setattr(lockfile_module, "load_toml", counted)
    kept = under_sources(retained_locks([("core", path)], lock_revisions=3, days=0, now=NOW),
                         [SourceConfig(name="pypi", url="https://pypi.org/simple/",
                                       files_url=["https://files.example/"])])
    assert [str(p.version) for k in kept.kept for p in k.lockfile.packages] == [
        "2.32.3", "2.31.0"], kept.notes
    assert len(parsed) == len(set(parsed)) == 4, parsed


def test_days_keep_a_revision_superseded_within_the_window(tmp_path: Path) -> None:
    repo, _ = repository(tmp_path)
    path = repo / "lockfiles" / "pylock.core.toml"
    # 2.30.0 was superseded 10 days ago (when 2.31.0 was committed)
    assert versions(retained_locks([("core", path)], lock_revisions=2, days=9, now=NOW)) == [
        "2.31.0"]
    retention = retained_locks([("core", path)], lock_revisions=2, days=11, now=NOW)
    assert versions(retention) == ["2.31.0", "2.30.0"]
    assert retention.kept[1].reason.startswith("superseded 10 days ago, kept until 2026-12-07")


def test_an_uncommitted_lock_makes_the_newest_commit_the_previous_lock(tmp_path: Path) -> None:
    repo, commits = repository(tmp_path)
    path = repo / "lockfiles" / "pylock.core.toml"
    lockfile("2.33.0").write(path)  # locked, not yet committed
    retention = retained_locks([("core", path)], lock_revisions=2, days=0, now=NOW)
    assert versions(retention) == ["2.32.3"] and retention.kept[0].commit == commits[2]


def test_a_lock_committed_once_as_it_is_keeps_nothing_earlier(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "lockfiles").mkdir(parents=True)
    git(repo, "init", "-q")
    commit_lock(repo, "2.32.3", NOW - timedelta(days=1))
    path = repo / "lockfiles" / "pylock.core.toml"
    retention = retained_locks([("core", path)], lock_revisions=2, days=30, now=NOW)
    assert retention.kept == () and retention.notes == ()
    lockfile("2.33.0").write(path)  # locked again, not yet committed: the commit is the previous
    assert versions(retained_locks([("core", path)], lock_revisions=2, days=0, now=NOW)) == [
        "2.32.3"]


def test_a_merged_branch_is_one_lock_revision(tmp_path: Path) -> None:
    """A pull request locked twice and merged: the lock the mirror served before the
    merge is the previous one, not the branch's first commit (never served)."""
    repo, commits = repository(tmp_path)  # main: 2.30.0, 2.31.0, 2.32.3
    git(repo, "checkout", "-q", "-b", "feature")
    commit_lock(repo, "2.33.0", NOW - timedelta(days=1))
    commit_lock(repo, "2.34.0", NOW - timedelta(hours=12))
    git(repo, "checkout", "-q", "-")
    git(repo, "merge", "-q", "--no-ff", "feature", "-m", "merge", when=NOW - timedelta(hours=1))
    path = repo / "lockfiles" / "pylock.core.toml"
    retention = retained_locks([("core", path)], lock_revisions=2, days=0, now=NOW)
    assert versions(retention) == ["2.32.3"] and retention.kept[0].commit == commits[2]
    assert retention.kept[0].superseded == (NOW - timedelta(hours=1)).replace(microsecond=0)


def test_a_relock_that_changes_no_package_is_no_lock_revision(tmp_path: Path) -> None:
    """Found by an outside tester: a policy edit (or a source added) re-locks a set
    whose packages stay as they were, and only the input hash changes; that commit
    took a place in the window and pushed the previous real lock's releases out of
    the index while nothing a machine installs had changed."""
    repo, commits = repository(tmp_path)  # 2.30.0 (30 days ago), 2.31.0 (10), 2.32.3 (2)
    path = repo / "lockfiles" / "pylock.core.toml"
    replace(lockfile("2.32.3"), input_hash="policy edited").write(path)
    git(repo, "commit", "-qam", "policy edit", when=NOW - timedelta(days=1))
    retention = retained_locks([("core", path)], lock_revisions=2, days=0, now=NOW)
    assert versions(retention) == ["2.31.0"] and retention.kept[0].commit == commits[1]
    # superseded when 2.32.3 was locked, not when it was re-locked
    assert retention.kept[0].superseded == (NOW - timedelta(days=2)).replace(microsecond=0)
    assert versions(retained_locks([("core", path)], lock_revisions=3, days=0, now=NOW)) == [
        "2.31.0", "2.30.0"]
    kept = retained_locks([("core", path)], lock_revisions=1, days=3, now=NOW).kept
    assert [k.reason for k in kept] == ["superseded 2 days ago, kept until 2026-12-07 (days: 3)"]
    # re-locked again, not yet committed: still the same lock
    replace(lockfile("2.32.3"), input_hash="source added").write(path)
    retention = retained_locks([("core", path)], lock_revisions=2, days=0, now=NOW)
    assert versions(retention) == ["2.31.0"] and retention.kept[0].commit == commits[1]
    # a revision that does not read is a revision of its own (under_sources says why)
    path.write_text("not = [toml")
    git(repo, "commit", "-qam", "broken", when=NOW - timedelta(hours=1))
    lockfile("2.32.3").write(path)
    retention = retained_locks([("core", path)], lock_revisions=2, days=0, now=NOW)
    assert [k.data for k in retention.kept] == [b"not = [toml"]
    checked = under_sources(retention, [])
    assert checked.kept == () and [n.split(": ")[0] for n in checked.notes] == [
        retention.kept[0].where], checked.notes



def test_a_relock_that_serves_the_same_files_is_no_lock_revision(tmp_path: Path) -> None:
    """Found by an outside tester: a requirement reworded (``why`` records its text)
    with the same releases locked pushed the previous real lock out of the window. A
    revision is a lock of its own only when the files it serves (each package's name,
    version, file names and sha256) differ: not its ``why``, requirements, markers,
    targets or URLs, which change what a target picks, not what the index must hold."""
    repo, commits = repository(tmp_path)  # 2.30.0 (30 days ago), 2.31.0 (10), 2.32.3 (2)
    path = repo / "lockfiles" / "pylock.core.toml"
    locked = lockfile("2.32.3")
    (package,) = locked.packages
    (wheel,) = package.wheels
    reworded = replace(
        locked, requirements=("requests>=2.32",), input_hash="reworded",
        targets=(replace(TARGET, marker='python_version >= "3.11"'),),
        packages=(replace(package, why={"host": ("requests>=2.32 (from set)",)},
                          marker='python_version >= "3.11"', index="https://mirror.example/",
                          wheels=(replace(wheel, url="https://mirror.example/" + wheel.filename,
                                          upload_time=NOW),)),))
    reworded.write(path)
    git(repo, "commit", "-qam", "requirement reworded", when=NOW - timedelta(days=1))
    retention = retained_locks([("core", path)], lock_revisions=2, days=0, now=NOW)
    assert versions(retention) == ["2.31.0"] and retention.kept[0].commit == commits[1]
    # the same file name with other bytes is another lock (diff raises an alarm for it)
    replace(reworded, packages=(replace(package, wheels=(replace(wheel, sha256="f" * 64),)),)
            ).write(path)
    retention = retained_locks([("core", path)], lock_revisions=2, days=0, now=NOW)
    assert versions(retention) == ["2.32.3"], retention


def test_a_deadline_already_past_is_not_said(tmp_path: Path) -> None:
    """Found by an outside tester: "until the next lock or 2026-12-06, whichever is
    later" on 2026-12-07; once superseded + days is past, only the next lock counts."""
    repo, _ = repository(tmp_path)  # 2.31.0 was superseded 2 days ago
    path = repo / "lockfiles" / "pylock.core.toml"
    (kept,) = retained_locks([("core", path)], lock_revisions=2, days=1, now=NOW).kept
    assert kept.until == "the next lock"
    assert kept.note == f"kept for the previous lock ({kept.label}), until the next lock"
    (kept,) = retained_locks([("core", path)], lock_revisions=2, days=3, now=NOW).kept
    assert kept.until == "the next lock or 2026-12-07, whichever is later"


SHALLOW = ("shallow git clone: earlier lock revisions may be missing, so releases retention "
           "should keep may leave the index (check out the full history: fetch-depth: 0)")


def shallow_clone(repo: Path, into: Path) -> Path:
    """``git clone --depth 1`` of ``repo``, as actions/checkout makes by default."""
    subprocess.run(["git", "clone", "-q", "--depth", "1", repo.as_uri(), str(into)],
                   env=subprocess_env(git_identity=True, home=repo), check=True,
                   capture_output=True)
    return into


def test_a_shallow_clone_says_retention_may_miss_earlier_locks(tmp_path: Path) -> None:
    """Found by an outside tester: in a one-commit clone retention found no earlier
    revision and the previous lock's releases left the index without a word."""
    repo = tmp_path / "repo"
    (repo / "lockfiles").mkdir(parents=True)
    git(repo, "init", "-q")
    for version, days in (("2.31.0", 10), ("2.32.3", 2)):
        commit_lock(repo, version, NOW - timedelta(days=days))
    full = repo / "lockfiles" / "pylock.core.toml"
    complete = retained_locks([("core", full)], lock_revisions=2, days=0, now=NOW)
    assert versions(complete) == ["2.31.0"] and complete.notes == ()
    # the window reaching past the first commit of a full history is no reason to warn
    assert retained_locks([("core", full)], lock_revisions=3, days=0, now=NOW).notes == ()

    path = shallow_clone(repo, tmp_path / "clone") / "lockfiles" / "pylock.core.toml"
    retention = retained_locks([("core", path)], lock_revisions=2, days=0, now=NOW)
    assert retention.kept == () and retention.notes == (f"{path}: {SHALLOW}",)
    # a window of the current lock alone needs no history: nothing to say
    assert retained_locks([("core", path)], lock_revisions=1, days=0, now=NOW).notes == ()


def test_without_git_history_only_the_current_lock_is_kept_and_said(tmp_path: Path) -> None:
    path = tmp_path / "pylock.core.toml"
    lockfile("2.32.3").write(path)
    retention = retained_locks([("core", path)], lock_revisions=2, days=30, now=NOW)
    assert retention.kept == ()
    assert retention.notes == (f"{path}: no git history, so only the current lock of set "
                               "'core' is kept (retention needs the lockfiles committed)",)


def test_sets_without_git_history_share_one_note(tmp_path: Path) -> None:
    paths = [(name, tmp_path / f"pylock.{name}.toml") for name in ("core", "misp")]
    for _name, path in paths:
        lockfile("2.32.3").write(path)
    retention = retained_locks(paths, lock_revisions=2, days=30, now=NOW)
    assert retention.notes == (f"{tmp_path}: no git history, so only the current lock of sets "
                               "'core', 'misp' is kept (retention needs the lockfiles "
                               "committed)",)


MIRROR = """\
version: 1
sources:
  - {name: pypi, url: "https://pypi.org/simple/", files_url: ["https://files.example/"]}
targets:
  host: {python: "3.11", platforms: [manylinux_2_28_x86_64]}
sets:
  core: {requirements: [requests]}
retention: {lock_revisions: 2, max_size: "%s", over_size: %s}
"""


def test_du_shows_sets_targets_and_the_retained_revision_and_the_budget(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lockmirror.cli import main

    repo, commits = repository(tmp_path)
    (repo / "mirror.yaml").write_text(MIRROR % ("1GiB", "warn"))
    assert main(["du", "--config", str(repo / "mirror.yaml")]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "      10 B       1 file   core",
        "      10 B       1 file     core / host",
        f"      10 B       1 file     core + core@{commits[1][:8]} (the previous lock)",
        "      20 B       2 files  total served by the index (each file once)",
        "largest releases: requests 2.31.0 10 B, requests 2.32.3 10 B",
        "on this disk now: nothing yet (no store, index, bundles or cache)",
        "      20 B       2 files  missing from the store (as locked): "  # not fetched yet
        "requests-2.31.0-py3-none-any.whl, requests-2.32.3-py3-none-any.whl; locked by set "
        "core: run `lockmirror fetch --set core`",
    ]
    assert err == ""
    (repo / "mirror.yaml").write_text(MIRROR % ("15", "warn"))
    assert main(["du", "--config", str(repo / "mirror.yaml")]) == 0
    assert capsys.readouterr().err == (
        "du: warning: the mirror would hold 20 B, over retention.max_size 15 B (largest "
        "sets: core 10 B; largest releases: requests 2.31.0 10 B, requests 2.32.3 10 B)\n")
    (repo / "mirror.yaml").write_text(MIRROR % ("15", "fail"))
    assert main(["du", "--config", str(repo / "mirror.yaml")]) == 1
    assert capsys.readouterr().err.startswith("du: error: the mirror would hold 20 B")
    # a set added but not locked yet is said, not silently left out of the total
    (repo / "mirror.yaml").write_text((MIRROR % ("1GiB", "warn")).replace(
        "  core: {requirements: [requests]}\n",
        "  core: {requirements: [requests]}\n  extra: {requirements: [idna]}\n"))
    assert main(["du", "--config", str(repo / "mirror.yaml")]) == 0
    assert capsys.readouterr().err == (
        "du: set 'extra' has no lockfile yet, so it is not counted (run `doit lock`)\n")


# -- the whole path: three lock revisions on the fixture index, the index, pip, the far side

# each revision's pins; the first revision's alpha 1.0 is the release the window drops
REVISIONS = ("alpha==1.0, speedup==1.0", "alpha==1.1, speedup==1.0", "alpha==1.1, speedup==1.2")


def lock_revision(repo: Path, url: str, pins: str, when: datetime,
                  extra: str = "") -> str:
    from lockmirror.cli import main

    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    (repo / "mirror.yaml").write_text(mirror_yaml(
        url, {"core": pins.split(", ")}, name="kept",
        targets={"host": (python, "manylinux_2_28_x86_64")}, extra=extra))
    assert main(["lock"]) == 0
    git(repo, "add", "-A", "mirror.yaml", "lockfiles")
    git(repo, "commit", "-qm", f"lock {pins}", when=when)
    return git(repo, "rev-parse", "HEAD").strip()


def released(index_dir: Path) -> set[str]:
    """"name version" of every artifact (wheel or sdist) under ``files/``."""
    from lockmirror.formats.quarantine_list import release_of

    found = set()
    for path in (index_dir / "files").glob("*/*"):
        release = release_of(path.name)
        if release is not None and not path.name.endswith(".metadata"):
            found.add(f"{release[0]} {release[1]}")
    return found


@pytest.fixture
def kept_repo(tmp_path: Path, fixture_index: FixtureIndex, reproducible_build: None,
              monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / ".gitignore").write_text("/.cache/\n/.lockmirror/\n/dist-index/\n/.dist-index*/\n"
                                     "/dist/\n")
    monkeypatch.chdir(repo)
    return repo


def test_the_index_keeps_the_previous_lock_and_the_far_side_drops_the_third(
        kept_repo: Path, fixture_index: FixtureIndex, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from lockmirror.cli import main

    repo, url = kept_repo, fixture_index.url
    lock_revision(repo, url, REVISIONS[0], NOW - timedelta(days=3))
    lock_revision(repo, url, REVISIONS[1], NOW - timedelta(days=2))
    for command in ("fetch", "index", "bundle"):
        assert main([command, "--no-tool"] if command == "bundle" else [command]) == 0, command
    index = repo / "dist-index"
    assert released(index) == {"alpha 1.0", "alpha 1.1", "speedup 1.0"}
    far = tmp_path / "far" / "mirror"
    (first,) = (repo / "dist").glob("*.tar")
    assert main(["import", str(first), "--into", str(far)]) == 0
    capsys.readouterr()

    lock_revision(repo, url, REVISIONS[2], NOW - timedelta(days=1))
    previous = git(repo, "rev-parse", "HEAD~1").strip()
    for command in ("fetch", "index"):
        assert main([command]) == 0, command
    out = capsys.readouterr().out
    assert "removed alpha 1.0" in out
    # the last two revisions' releases stay, the third's go
    assert released(index) == {"alpha 1.1", "speedup 1.0", "speedup 1.2"}
    landing = (index / "index.html").read_text()
    assert (f'1.0<span class="tag">kept for the previous lock (core@{previous[:8]}), until the '
            "next lock</span>") in landing
    # constraints and the mirror's lockfile copy stay those of the current lock
    constraints = (index / "constraints" / "core-host.txt").read_text()
    assert "speedup==1.2" in constraints and "speedup==1.0" not in constraints
    copy = (index / "lockfiles" / "pylock.core.toml").read_text()
    assert "speedup-1.2-py3-none-any.whl" in copy and "speedup-1.0" not in copy
    # the SBOMs declare what the index serves: the retained release too, and why
    sbom = json.loads((index / "sbom" / "mirror.cdx.json").read_text())
    kept = {c["name"] + " " + c["version"]: c for c in sbom["components"]}
    assert set(kept) == {"alpha 1.1", "speedup 1.0", "speedup 1.2"}
    assert {"name": "lockmirror:kept-for", "value": f"kept for the previous lock "
            f"(core@{previous[:8]}), until the next lock"} in kept["speedup 1.0"]["properties"]
    served = sha256_file(next((index / "files" / "speedup").glob("speedup-1.0-*.whl")))
    assert served in json.dumps(kept["speedup 1.0"])
    assert not any(p["name"] == "lockmirror:kept-for" for p in kept["speedup 1.2"]["properties"])
    assert main(["sbom"]) == 0  # the command's document is the index's
    assert capsys.readouterr().out == (index / "sbom" / "mirror.cdx.json").read_text()

    # a machine still on the previous lock installs its pins from the index alone
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
         "--index-url", (index / "simple").as_uri(), "--target", str(tmp_path / "installed"),
         "alpha==1.1", "speedup==1.0"], env=subprocess_env(installers=True),
        capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "installed" / "speedup-1.0.dist-info").is_dir()

    # the next bundle (a delta onto the far side's mirror) removes exactly the dropped release
    assert main(["bundle", "--since", str(far)]) == 0
    assert [line for line in capsys.readouterr().out.splitlines() if "removes" in line] == [
        "  removes alpha 1.0 on the far side (left the lock and the retention window)"]
    (delta,) = (repo / "dist").glob("*.delta.tar")
    readme = tarfile.open(delta).extractfile(f"{delta.name[:-len('.delta.tar')]}/README.txt")
    assert readme is not None and b"retention window: alpha 1.0\n" in readme.read()
    assert main(["import", str(delta), "--into", str(far)]) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if "removed" in line] == [
        "import: removed alpha 1.0 (the bundle's index no longer serves it)"]
    assert released(far) == {"alpha 1.1", "speedup 1.0", "speedup 1.2"}


def test_index_fetch_bundle_and_audit_say_a_shallow_clone_may_cut_retention_short(
        kept_repo: Path, fixture_index: FixtureIndex, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from lockmirror.cli import main

    lock_revision(kept_repo, fixture_index.url, REVISIONS[1], NOW - timedelta(days=2))
    lock_revision(kept_repo, fixture_index.url, REVISIONS[2], NOW - timedelta(days=1))
    clone = shallow_clone(kept_repo, tmp_path / "clone")
    monkeypatch.chdir(clone)
    note = f"{clone / 'lockfiles' / 'pylock.core.toml'}: {SHALLOW}"
    capsys.readouterr()
    for command in (["fetch"], ["index"], ["bundle", "--no-tool"], ["audit"]):
        code = main(command)
        said = capsys.readouterr()
        assert code == 0, (command, said)
        assert note in said.err + said.out, (command, said)
    # what the note warns of: the previous lock's speedup 1.0 is not served
    assert "speedup 1.0" not in released(clone / "dist-index")


def test_audit_checks_the_releases_retention_keeps_serving_and_quarantine_drops_them(
        kept_repo: Path, fixture_index: FixtureIndex,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A release only the previous lock still pins is served like any other, so an
    advisory on it fails the audit (it passed, unmentioned), which says to quarantine
    it (no lock can move it: ``bump --security`` finds nothing), and ``--quarantine``
    takes it out of the index.

    Then, found by an outside tester: the SBOMs still declared it and the landing
    page's row counted its file, and the nightly audit kept failing on it with
    nothing left to do (audit.yml -> bump.yml -> "nothing to bump", for retention's
    days). Now the SBOMs leave it out (naming it quarantined), the row counts what
    is served, and the audit reports it ``quarantined``, which fails nothing."""
    from lockmirror.cli import main

    policy = ("policy:\n  vulnerabilities: deny\n  advisory_sources:\n"
              f"    - {{kind: pypi-json, url: \"{fixture_index.json_api_url}\"}}\n")
    previous = lock_revision(kept_repo, fixture_index.url, REVISIONS[1],
                             NOW - timedelta(days=2), policy)
    lock_revision(kept_repo, fixture_index.url, REVISIONS[2], NOW - timedelta(days=1), policy)
    assert main(["fetch"]) == 0 and main(["index"]) == 0
    assert "speedup 1.0" in released(kept_repo / "dist-index")
    fixture_index.add_vulnerability("speedup", "1.0", "PYSEC-2026-0001", summary="bad")
    capsys.readouterr()
    assert main(["audit", "--format", "json"]) == 1
    assert_kept_release_denied(json.loads(capsys.readouterr().out), previous,
                               "run `lockmirror audit --quarantine` to take them out of the index")
    index = kept_repo / "dist-index"
    sboms = {name: (index / "sbom" / name).read_bytes()
             for name in ("core.cdx.json", "mirror.cdx.json")}
    assert all(b"pkg:pypi/speedup@1.0" in data for data in sboms.values())
    assert main(["audit", "--quarantine"]) == 1  # the report as it was before quarantining
    assert "speedup 1.0" not in released(index)
    assert "speedup 1.2" in released(index)

    capsys.readouterr()
    assert main(["audit", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(r["level"], r["package"], r["version"], r["sets"]) for r in report["findings"]
            if r["package"] == "speedup"] == [
        ("quarantined", "speedup", "1.0", [f"core@{previous[:8]}"])]
    assert report["summary"] == {"deny": 0, "warn": 0, "waived": 0, "quarantined": 1}
    assert (f"quarantined, so out of the index and failing no audit (only earlier lock "
            f"revisions retention keeps name them): speedup==1.0 (core@{previous[:8]})"
            ) in report["notes"]
    assert main(["audit"]) == 0
    assert "0 denied, 0 warnings, 0 waived, 1 quarantined" in capsys.readouterr().out

    for name, before in sboms.items():  # rewritten: the quarantine list is an input
        document = json.loads((index / "sbom" / name).read_bytes())
        assert (index / "sbom" / name).read_bytes() != before
        refs = [c["bom-ref"] for c in document["components"]]
        assert "pkg:pypi/speedup@1.2" in refs and "pkg:pypi/speedup@1.0" not in refs, name
        assert {"name": "lockmirror:quarantined", "value": "speedup==1.0"} in \
            document["metadata"]["properties"]
    assert main(["sbom"]) == 0  # what the command prints is what the index carries
    assert capsys.readouterr().out.encode() == (index / "sbom" / "mirror.cdx.json").read_bytes()
    # the landing page's speedup row: 1.0 listed as quarantined, only 1.2's files counted
    core = (index / "index.html").read_text().split('<section id="set-core">', 1)[1]
    row = next(r for r in re.findall(r"<tr>.*?</tr>", core, flags=re.S) if ">speedup<" in r)
    assert '1.0<span class="tag yanked">quarantined</span>' in row
    served = [p for p in (index / "files" / "speedup").iterdir()
              if not p.name.endswith(".metadata")]
    assert re.findall(r'<td class="num">([^<]*)</td>', row) == [
        str(len(served)), format_size(sum(p.stat().st_size for p in served))]


def test_the_far_side_audits_the_releases_retention_keeps_serving(
        kept_repo: Path, fixture_index: FixtureIndex, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The far side serves what the previous lock still pins (it crossed the gap in the
    bundle), so `audit --mirror` checks it against the carried snapshot as the build
    side does, under the set's level and named by its revision, with the far side's way
    to take it out; it used to audit the current lockfiles only (found by a security
    team: "served and crossing the gap, never checked")."""
    from lockmirror.cli import main
    from lockmirror.stages.audit_quarantine import FAR_SIDE_REMEDY

    policy = ("policy:\n  vulnerabilities: deny\n  advisory_sources:\n"
              f"    - {{kind: pypi-json, url: \"{fixture_index.json_api_url}\"}}\n")
    previous = lock_revision(kept_repo, fixture_index.url, REVISIONS[1],
                             NOW - timedelta(days=2), policy)
    lock_revision(kept_repo, fixture_index.url, REVISIONS[2], NOW - timedelta(days=1), policy)
    fixture_index.add_vulnerability("speedup", "1.0", "PYSEC-2026-0001", summary="bad")
    assert main(["fetch"]) == 0 and main(["index"]) == 0
    assert main(["bundle", "--no-tool"]) == 0
    (bundle,) = (kept_repo / "dist").glob("*.tar")
    far = tmp_path / "far" / "mirror"
    assert main(["import", str(bundle), "--into", str(far)]) == 0
    assert "speedup 1.0" in released(far)  # served on the far side
    capsys.readouterr()
    assert main(["audit", "--mirror", str(far), "--format", "json"]) == 1
    assert_kept_release_denied(json.loads(capsys.readouterr().out), previous, FAR_SIDE_REMEDY)


def test_diff_marks_what_leaves_the_lock_but_stays_in_the_index(
        kept_repo: Path, fixture_index: FixtureIndex,
        capsys: pytest.CaptureFixture[str]) -> None:
    from lockmirror.cli import main

    lock_revision(kept_repo, fixture_index.url, REVISIONS[1], NOW - timedelta(days=2))
    lock_revision(kept_repo, fixture_index.url, REVISIONS[2], NOW - timedelta(days=1))
    capsys.readouterr()
    assert main(["diff", "HEAD~1", "HEAD"]) == 0
    assert ("  kept in the index for the previous lock, until the next lock (retention: "
            "lock_revisions 2, days 0): speedup 1.0") in capsys.readouterr().out.splitlines()
    assert main(["diff", "HEAD~1", "HEAD", "--format", "markdown"]) == 0
    assert ("Kept in the index for the previous lock, until the next lock (retention: "
            "lock\\_revisions 2, days 0): `speedup 1.0`.") in capsys.readouterr().out


def test_diff_does_not_call_kept_for_a_while_what_another_set_still_locks(
        kept_repo: Path, fixture_index: FixtureIndex,
        capsys: pytest.CaptureFixture[str]) -> None:
    """misp moves off speedup 1.0 while core keeps it: the release stays for good,
    so the diff does not say it stays only "until the next lock"."""
    from lockmirror.cli import main

    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for when, misp in ((NOW - timedelta(days=2), "speedup==1.0"),
                       (NOW - timedelta(days=1), "speedup==1.2")):
        (kept_repo / "mirror.yaml").write_text(mirror_yaml(
            fixture_index.url, {"core": ["speedup==1.0"], "misp": [misp]}, name="kept",
            targets={"host": (python, "manylinux_2_28_x86_64")}))
        assert main(["lock"]) == 0
        git(kept_repo, "add", "-A", "mirror.yaml", "lockfiles")
        git(kept_repo, "commit", "-qm", f"lock misp {misp}", when=when)
    capsys.readouterr()
    assert main(["diff", "HEAD~1", "HEAD", "--format", "json"]) == 0
    (misp,) = [s for s in json.loads(capsys.readouterr().out)["sets"] if s["set"] == "misp"]
    assert misp["retained"]["releases"] == []
    # nor does the landing page tag it kept in misp's section (found by an outside tester)
    assert main(["fetch"]) == 0 and main(["index"]) == 0
    landing = json.loads((kept_repo / "dist-index" / "landing.json").read_text())
    tags = {(p["name"], p["version"]): p.get("kept_for")
            for s in landing["sets"] if s["name"] == "misp" for p in s["packages"]}
    assert tags == {("speedup", "1.2"): None}


def test_the_index_checks_the_size_budget(
        kept_repo: Path, fixture_index: FixtureIndex,
        capsys: pytest.CaptureFixture[str]) -> None:
    from lockmirror.cli import main

    budget = "retention: {max_size: '1', over_size: %s}\n"
    lock_revision(kept_repo, fixture_index.url, REVISIONS[1], NOW - timedelta(days=2),
                  budget % "warn")
    lock_revision(kept_repo, fixture_index.url, REVISIONS[2], NOW - timedelta(days=1),
                  budget % "warn")
    assert main(["fetch"]) == 0
    capsys.readouterr()
    assert main(["index"]) == 0
    warning = capsys.readouterr().err.splitlines()
    assert len(warning) == 1 and warning[0].startswith(
        "index: warning: the mirror would hold ")
    assert "over retention.max_size 1 B (largest sets: core " in warning[0]
    assert "largest releases: " in warning[0] and "speedup 1." in warning[0]
    (kept_repo / "mirror.yaml").write_text(
        (kept_repo / "mirror.yaml").read_text().replace("over_size: warn", "over_size: fail"))
    manifest = (kept_repo / "dist-index" / "manifest.json").read_bytes()
    assert main(["index"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "over retention.max_size 1 B" in err
    assert (kept_repo / "dist-index" / "manifest.json").read_bytes() == manifest


def test_an_unreviewed_intermediate_commit_is_never_served_from_another_host(
        kept_repo: Path, fixture_index: FixtureIndex,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an outside tester: a pull request whose first commit adds an entry
    pointing at another host and whose last commit takes it out again diffs as "no
    changes"; merged by fast-forward (or rebase), that first commit is "the previous
    lock", and its wheel was fetched, indexed and bundled."""
    from lockmirror.cli import main

    repo, url = kept_repo, fixture_index.url
    lock_revision(repo, url, REVISIONS[0], NOW - timedelta(days=3))
    lockfile = repo / "lockfiles" / "pylock.core.toml"
    honest = lockfile.read_text()
    # other bytes from another host: a commit that only points the same files (the
    # same sha256) elsewhere is the same lock, and nothing is fetched from it
    evil = re.sub('sha256 = "[0-9a-f]{64}"', f'sha256 = "{"e" * 64}"',
                  honest.replace(f"{url.removesuffix('/simple/')}", "https://evil.example"),
                  count=1)
    assert evil != honest
    lockfile.write_text(evil)
    git(repo, "commit", "-qam", "intermediate", when=NOW - timedelta(days=2))
    lockfile.write_text(honest)
    git(repo, "commit", "-qam", "put back", when=NOW - timedelta(days=1))
    capsys.readouterr()
    for command in ("fetch", "index"):
        assert main([command]) == 0, command
    said = capsys.readouterr()
    assert "not kept for retention" in said.err and "evil.example" in said.err
    # a revision that is TOML but no lockfile is left out too, not a broken index
    # (found by a reviewer)
    lockfile.write_text(honest.replace('version = "', 'version = "not a version ', 1))
    git(repo, "commit", "-qam", "hand edit", when=NOW - timedelta(hours=12))
    lockfile.write_text(honest)
    git(repo, "commit", "-qam", "put back again", when=NOW - timedelta(hours=6))
    capsys.readouterr()
    assert main(["index"]) == 0
    assert "not kept for retention" in capsys.readouterr().err
    # fetch asked no other host (it would have failed: no network reaches it) and no
    # revision is written for fetch and index to read
    assert not list((repo / ".cache" / "retained-locks").rglob("*.toml"))


def test_a_project_moved_to_another_source_keeps_the_previous_lock_working(
        kept_repo: Path, fixture_index: FixtureIndex, catalogue: Catalogue,
        make_index: Callable[..., FixtureIndex], capsys: pytest.CaptureFixture[str]) -> None:
    """A project moved to another source declared today must not stop fetch and
    index serving the previous lock. A revision naming files under no source
    declared today is left out, with a note (found by an outside tester: a pull
    request's intermediate commit, kept by a fast-forward merge, served a wheel
    from any host as "the previous lock"); so after the move is reverted and the
    other source removed, the lock that used it is no longer served."""
    from lockmirror.cli import main

    repo, internal = kept_repo, make_index(catalogue.root)
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"

    def lock(sources: str, pins: str, when: datetime) -> None:
        (repo / "mirror.yaml").write_text(
            f"version: 1\nname: kept\nsources:\n{sources}"
            f'targets:\n  host: {{python: "{python}", platforms: [manylinux_2_28_x86_64]}}\n'
            f"sets:\n  core: {{requirements: [{pins}]}}\n")
        assert main(["lock"]) == 0
        git(repo, "add", "-A", "mirror.yaml", "lockfiles")
        git(repo, "commit", "-qm", f"lock {pins}", when=when)

    public = f"  - {{name: fixture, url: '{fixture_index.url}'}}\n"
    moved = (f"  - {{name: internal, url: '{internal.url}', projects: [speedup]}}\n"
             + public)
    lock(public, "alpha==1.0, speedup==1.0", NOW - timedelta(days=3))
    lock(moved, "alpha==1.1, speedup==1.2", NOW - timedelta(days=2))
    for command in ("fetch", "index"):
        assert main([command]) == 0, command
    assert released(repo / "dist-index") == {"alpha 1.0", "alpha 1.1", "speedup 1.0",
                                             "speedup 1.2"}
    lock(public, "alpha==1.0, speedup==1.0", NOW - timedelta(days=1))  # moved back
    capsys.readouterr()
    for command in ("fetch", "index"):
        assert main([command]) == 0, command
    assert released(repo / "dist-index") == {"alpha 1.0", "speedup 1.0"}
    said = capsys.readouterr()
    assert "pylock.core.toml@" in said.out + said.err
    assert "not kept for retention: package " in said.out + said.err



def test_a_requirement_edit_that_locks_the_same_releases_keeps_the_previous_lock_served(
        kept_repo: Path, fixture_index: FixtureIndex,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an outside tester: a requirement reworded so that it locks the same
    releases changes each package's ``why`` (the requirement text) and the input
    hash, nothing installed; that commit took a place in the window, and the next
    index removed the previous real lock's releases (``du``: ``0 B 0 files core +
    core@<the edit> (the previous lock)``)."""
    from lockmirror.cli import main

    repo, url = kept_repo, fixture_index.url
    previous = lock_revision(repo, url, REVISIONS[0], NOW - timedelta(days=3))
    lock_revision(repo, url, "alpha==1.1, speedup==1.2", NOW - timedelta(days=2))
    for command in ("fetch", "index"):
        assert main([command]) == 0, command
    served = {"alpha 1.0", "alpha 1.1", "speedup 1.0", "speedup 1.2"}
    assert released(repo / "dist-index") == served
    lock_revision(repo, url, "alpha==1.1, speedup>=1.2,<2", NOW - timedelta(days=1))
    lockfile = (repo / "lockfiles" / "pylock.core.toml").read_text()
    assert "speedup>=1.2,<2" in lockfile and "speedup-1.2-" in lockfile  # why moved, not files
    capsys.readouterr()
    assert main(["diff", "HEAD~1", "HEAD"]) == 0
    assert "kept in the index" not in capsys.readouterr().out  # nothing leaves the lock
    for command in ("fetch", "index"):
        assert main([command]) == 0, command
    assert " removed alpha" not in capsys.readouterr().out
    assert released(repo / "dist-index") == served
    assert main(["du"]) == 0
    # the edit is part of the current lock: the previous one is still the first
    (row,) = [line for line in capsys.readouterr().out.splitlines() if "core + " in line]
    assert row.split()[2:] == ["2", "files", "core", "+", f"core@{previous[:8]}", "(the",
                               "previous", "lock)"], row


def assert_kept_release_denied(report: dict[str, Any], previous: str, remedy: str) -> None:
    """The audit report denies speedup 1.0, served only for the ``previous`` lock
    revision, audited as such, with the note ending in ``remedy``."""
    denied = [r for r in report["findings"] if r["level"] == "deny"]
    assert [(r["package"], r["version"], r["advisory"], r["sets"]) for r in denied] == [
        ("speedup", "1.0", "PYSEC-2026-0001", [f"core@{previous[:8]}"])]
    assert (f"also audited: 1 earlier lock revision the mirror still serves (retention): "
            f"core@{previous[:8]}") in report["notes"]
    assert (f"denied and served for earlier lock revisions retention keeps, which no lock or "
            f"`bump` can move: speedup==1.0 (core@{previous[:8]}); {remedy}") in report["notes"]
