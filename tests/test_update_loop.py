"""The update loop (issue 22): ``outdated``, ``lock --upgrade-vulnerable``, ``bump``.

Hermetic: a fixture index on 127.0.0.1 serves a small universe named like the
real projects of the frozen PyPA advisory subset (``tests/data/advisories``,
used as an ``osv-offline`` source), so ``idna 3.6`` has the real
PYSEC-2024-60, fixed in 3.7. The set is locked first with the index's old
files and no policy; then newer releases appear upstream (``add_file``) and
the update loop runs against them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fixtureindex import FixtureIndex, build_wheel

from lockmirror.cli import main
from lockmirror.config import LoadedConfig, load_config
from lockmirror.formats.lockfile import Lockfile
from lockmirror.stages.diff import LockfileSide, diff_lockfiles, read_file
from lockmirror.stages.lock import lock_sets
from lockmirror.stages.lock_vulnerable import upgrade_vulnerable
from lockmirror.stages.outdated import outdated_sets

ADVISORIES = Path(__file__).parent / "data" / "advisories"
NOW = datetime(2024, 10, 10, 12, 0, tzinfo=UTC)
OLD = datetime(2024, 1, 1, tzinfo=UTC)
LATER = datetime(2024, 6, 1, tzinfo=UTC)

# (name, version, requires_dist) served from the start, and locked
INITIAL = [
    ("requests", "2.31.0", ("urllib3<3,>=1.21.1", "idna<4,>=2.5")),
    ("urllib3", "2.0.7", ()),
    ("idna", "3.6", ()),
    ("pinny", "1.0", ()),
    ("fresh", "1.0", ()),
    ("yanky", "1.0", ()),
]
# released upstream after the lock: (name, version, upload time, yank reason, Requires-Python)
NEWER: list[tuple[str, str, datetime, str | None, str | None]] = [
    ("urllib3", "2.2.3", LATER, None, None),
    ("urllib3", "3.0.0", LATER, None, None),
    ("idna", "3.7", LATER, None, None),
    ("idna", "3.8", LATER, None, None),
    ("pinny", "2.0", LATER, None, None),
    ("fresh", "1.1", NOW - timedelta(days=3), None, None),
    ("fresh", "1.2", NOW - timedelta(days=1), None, ">=3.12"),
    ("yanky", "1.1", LATER, "broken build", None),
]
REQUIREMENTS = ["requests", "pinny==1.0", "fresh", "yanky"]


def mirror_text(index: FixtureIndex, tmp: Path, requirements: list[str],
                vulnerabilities: str = "deny") -> str:
    listed = "".join(f"      - {r}\n" for r in requirements)
    return textwrap.dedent(f"""\
        version: 1
        name: loop
        sources:
          - name: fixture
            url: {index.url}
        targets:
          linux:
            python: "3.11"
            platforms: [manylinux_2_17_x86_64]
        sets:
          main:
            requirements:
        """) + listed + textwrap.dedent(f"""\
        policy:
          min_age_days: 7
          yanked: deny
          vulnerabilities: {vulnerabilities}
          advisory_sources:
            - {{kind: osv-offline, path: "{ADVISORIES / 'vulns'}"}}
        paths:
          cache: {tmp / "cache"}
        """)


@pytest.fixture
def universe(tmp_path: Path, make_index: Callable[..., FixtureIndex]) -> FixtureIndex:
    files = tmp_path / "files"
    files.mkdir()
    for name, version, requires in INITIAL:
        build_wheel(files, name, version, requires_dist=requires)
    return make_index(files, upload_times={}, yanked={})


def release_newer(index: FixtureIndex, tmp: Path) -> None:
    out = tmp / "newer"
    out.mkdir(exist_ok=True)
    for name, version, uploaded, yanked, python in NEWER:
        declared = [("License-Expression", "MIT")] if (name, version) == ("urllib3", "2.2.3") \
            else []
        index.add_file(build_wheel(out, name, version, requires_python=python,
                                   extra_metadata=declared),
                       upload_time=uploaded,
                       yanked_reason=yanked)


def locked_mirror(tmp: Path, index: FixtureIndex, requirements: list[str] = REQUIREMENTS,
                  vulnerabilities: str = "deny") -> LoadedConfig:
    """mirror.yaml in ``tmp``, its set locked (no policy) before the newer releases."""
    (tmp / "mirror.yaml").write_text(mirror_text(index, tmp, requirements, vulnerabilities))
    loaded = load_config(tmp / "mirror.yaml")
    lock_sets(loaded, now=NOW, candidate_filter_for=lambda name: None)
    release_newer(index, tmp)
    return loaded


def line_of(loaded: LoadedConfig, text: str) -> int:
    return next(i for i, line in enumerate(loaded.text.splitlines(), 1) if text in line)


# --------------------------------------------------------------------------
# outdated
# --------------------------------------------------------------------------


def test_outdated_lists_every_kind_of_reason(tmp_path: Path, universe: FixtureIndex) -> None:
    loaded = locked_mirror(tmp_path, universe)
    universe.reset_counts()
    report = outdated_sets(loaded, now=NOW)
    rows = {row.package: row for row in report.rows}
    summary = {name: (str(r.locked), str(r.allowed), str(r.newest), r.status)
               for name, r in rows.items()}
    assert summary == {
        "fresh": ("1.0", "1.0", "1.2", "held"),
        "idna": ("3.6", "3.8", "3.8", "vulnerable"),
        "pinny": ("1.0", "1.0", "2.0", "held"),
        "requests": ("2.31.0", "2.31.0", "2.31.0", "current"),
        "urllib3": ("2.0.7", "2.2.3", "3.0.0", "outdated"),
        "yanky": ("1.0", "1.0", "1.1", "held"),
    }
    reasons = {name: [(r.kind, r.text) for r in row.reasons] for name, row in rows.items()}
    pin_line = line_of(loaded, "pinny==1.0")
    assert reasons["pinny"] == [("pinned", f"pinned in mirror.yaml line {pin_line} "
                                           "(`pinny==1.0`)")]
    assert reasons["fresh"] == [  # one line per distinct obstacle, newest first
        ("no-file", "1.2 requires Python >=3.12; target linux has Python 3.11"),
        ("min-age", "1.2 is 1 days old, allowed from 2024-10-16 (min_age_days: 7)"),
        ("min-age", "1.1 is 3 days old, allowed from 2024-10-14 (min_age_days: 7)")]
    assert reasons["urllib3"] == [("constraint", "3.0.0 excluded by `urllib3<3,>=1.21.1` "
                                                 "from requests 2.31.0")]
    assert reasons["yanky"] == [("yanked", "1.1 is yanked: broken build")]
    [advisory] = rows["idna"].advisories
    assert (advisory.id, advisory.aliases, advisory.level, advisory.fixed_in) == (
        "PYSEC-2024-60", ("CVE-2024-3651",), "deny", "3.7")
    assert str(rows["idna"].fix) == "3.7"
    assert rows["idna"].targets == ("linux",)
    assert report.exit_code == 1
    # project pages only: no distribution file, no metadata file was asked for
    assert universe.count(prefix="/files/") == 0
    assert universe.count(prefix="/simple/") == len(INITIAL)


def test_outdated_gives_the_reasons_of_the_newest_release_not_of_older_excluded_ones(
        tmp_path: Path, universe: FixtureIndex) -> None:
    # found by an outside tester: under `urllib3>=1.26.5,<2` the listing gave the newest
    # release's exclusion, then an older excluded one's exclusion and yank
    loaded = locked_mirror(tmp_path, universe, ["requests", "urllib3<2.1"])
    for version, yanked in (("2.0.9", None), ("2.1.0", "broken")):
        universe.add_file(build_wheel(tmp_path / "newer", "urllib3", version),
                          upload_time=LATER, yanked_reason=yanked)
    (row,) = [r for r in outdated_sets(loaded, now=NOW).rows if r.package == "urllib3"]
    assert (str(row.allowed), str(row.newest)) == ("2.0.9", "3.0.0")
    line = line_of(loaded, "urllib3<2.1")
    assert [r.text for r in row.reasons] == [
        f"3.0.0 excluded by `urllib3<2.1` in mirror.yaml line {line}",
        "3.0.0 excluded by `urllib3<3,>=1.21.1` from requests 2.31.0"]


def test_outdated_says_how_to_take_a_release_that_leaves_out_early_patch_releases(
        tmp_path: Path, universe: FixtureIndex) -> None:
    """cryptography's `!=3.9.0,!=3.9.1`: a target "3.11" stands for every 3.11.x,
    so a release leaving out 3.11.0 and 3.11.1 is held back; the reason says
    how to take it."""
    loaded = locked_mirror(tmp_path, universe)
    universe.add_file(build_wheel(tmp_path / "newer", "pinny", "3.0",
                                  requires_python=">=3.9,!=3.11.0,!=3.11.1"),
                      upload_time=LATER, yanked_reason=None)
    (row,) = [r for r in outdated_sets(loaded, now=NOW).rows if r.package == "pinny"]
    assert [r.text for r in row.reasons if r.kind == "no-file"] == [
        "3.0 requires Python >=3.9,!=3.11.0,!=3.11.1; target linux has Python 3.11 (it leaves "
        "out some 3.11.x releases, and a target stands for all of them: name the lowest one "
        'your machines run, e.g. python: "3.11.2", to take it)']
    # 3.0 and 2.0 are both held by the pin: its line is said once
    assert [r.kind for r in row.reasons].count("pinned") == 1


def test_outdated_cli_formats_and_exit_status(tmp_path: Path, universe: FixtureIndex,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    loaded = locked_mirror(tmp_path, universe)
    config = str(loaded.path)
    assert main(["outdated", "-c", config, "--now", "2024-10-10T12:00:00Z",
                 "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["exit_code"] == 1
    assert {p["package"]: p["status"] for p in data["packages"]}["idna"] == "vulnerable"
    assert main(["outdated", "-c", config, "--now", "2024-10-10", "--format", "markdown"]) == 1
    markdown = capsys.readouterr().out
    assert markdown.startswith("### lockmirror outdated: 6 locked packages in 1 set: "
                               "1 can move, 3 held back, 1 with advisories")
    assert "| main | idna | 3.6 | 3.8 | 3.8 | vulnerable | PYSEC-2024-60 (CVE-2024-3651)" \
        in markdown
    assert main(["outdated", "-c", config, "--now", "2024-10-10"]) == 1
    text = capsys.readouterr().out
    assert "main: urllib3 2.0.7 -> allowed 2.2.3, newest 3.0.0 [outdated; linux]" in text
    assert main(["outdated", "-c", config, "--set", "nope"]) == 2
    assert "no set named 'nope'" in capsys.readouterr().err
    loaded.lockfile_path("main").unlink()
    assert main(["outdated", "-c", config]) == 1
    assert "set 'main' has no lockfile (run `lockmirror lock` first)" in capsys.readouterr().err


def test_outdated_passes_when_only_held_back(tmp_path: Path, universe: FixtureIndex,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 0 when nothing can move: what is held back is listed with its reason."""
    loaded = locked_mirror(tmp_path, universe, ["pinny==1.0", "fresh", "yanky"])
    assert main(["outdated", "-c", str(loaded.path), "--now", "2024-10-10T12:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("3 locked packages in 1 set: 0 can move, 3 held back, "
                        "0 with advisories\n")


# --------------------------------------------------------------------------
# lock --upgrade-vulnerable
# --------------------------------------------------------------------------


def read_file_side(path: Path, text: str) -> LockfileSide:
    path.write_text(text)
    return read_file(path)


def entries(path: Path) -> dict[str, str]:
    return {p.name: str(p.version) for p in Lockfile.read(path).packages}


def test_upgrade_vulnerable_moves_only_the_vulnerable_package_to_its_lowest_fix(
        tmp_path: Path, universe: FixtureIndex, capsys: pytest.CaptureFixture[str]) -> None:
    loaded = locked_mirror(tmp_path, universe)
    path = loaded.lockfile_path("main")
    before_text = path.read_text()
    before = entries(path)
    assert main(["lock", "--config", str(loaded.path), "--upgrade-vulnerable"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("set 'main': idna 3.6 -> 3.7 (PYSEC-2024-60)\n")
    after = entries(path)
    # 3.7, not the newest 3.8; urllib3 2.2.3 and the rest are allowed but stay
    assert {k: (before[k], after[k]) for k in before if before[k] != after[k]} == {
        "idna": ("3.6", "3.7")}
    assert before.keys() == after.keys()
    diff = diff_lockfiles(read_file_side(tmp_path / "before.toml", before_text),
                          read_file(path))
    [set_diff] = diff.sets
    changes = [(c.name, c.change) for t in set_diff.targets for c in t.packages]
    assert changes == [("idna", "upgraded")]
    # nothing vulnerable any more: a second run writes nothing and says so
    written = path.stat().st_mtime_ns
    assert main(["lock", "--config", str(loaded.path), "--upgrade-vulnerable"]) == 0
    assert capsys.readouterr().out == ("no locked release has a deny-level advisory: "
                                       "nothing to move, nothing written\n")
    assert path.stat().st_mtime_ns == written


def test_lock_warns_when_no_advisory_source_could_check_what_it_locked(
        tmp_path: Path, universe: FixtureIndex, capsys: pytest.CaptureFixture[str]) -> None:
    """`vulnerabilities: deny` and nothing that can tell: lock still writes (it
    cannot know), but says the releases went unchecked; it said nothing."""
    loaded = locked_mirror(tmp_path, universe)
    capsys.readouterr()
    assert main(["lock", "--config", str(loaded.path)]) == 0
    assert "not checked" not in capsys.readouterr().err  # the offline database answers
    text = loaded.path.read_text()
    sources = text[text.index("  advisory_sources:"):text.index("paths:")]
    loaded.path.write_text(text.replace(sources, ""))
    assert main(["lock", "--config", str(loaded.path)]) == 0
    assert ("  policy warning: vulnerabilities were not checked: no advisory source is "
            "configured (policy.advisory_sources)\n") in capsys.readouterr().err
    loaded.path.write_text(text.replace(sources, "").replace("vulnerabilities: deny",
                                                             "vulnerabilities: warn"))
    assert main(["lock", "--config", str(loaded.path)]) == 0
    assert "not checked" not in capsys.readouterr().err  # no source and only warn: not asked


def test_nothing_to_move_is_not_called_clean_when_advisories_were_not_checked(
        tmp_path: Path, universe: FixtureIndex, capsys: pytest.CaptureFixture[str]) -> None:
    """No advisory source can tell: upgrade-vulnerable and outdated say the
    releases were not checked, instead of "no locked release has an advisory"."""
    loaded = locked_mirror(tmp_path, universe)
    text = loaded.path.read_text()
    sources = text[text.index("  advisory_sources:"):text.index("paths:")]
    loaded.path.write_text(text.replace(sources, ""))  # vulnerabilities: deny, no source
    assert main(["lock", "--config", str(loaded.path), "--upgrade-vulnerable"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ("no checked release has a deny-level advisory: nothing to move, "
                            "nothing written\n")
    assert captured.err == (  # the policy changed since the lock: that is said too
        "lockmirror: warning: vulnerabilities were not checked: no advisory source is "
        "configured (policy.advisory_sources)\nlockmirror: warning: lockfiles/pylock.main.toml "
        "was locked from other inputs (changed: the policy): `lockmirror lock --check` fails "
        "for set 'main'; run `lockmirror lock --set main`\n")
    main(["outdated", "--config", str(loaded.path)])
    out = capsys.readouterr().out
    assert ("note: vulnerabilities were not checked: no advisory source is configured "
            "(policy.advisory_sources)\n") in out
    assert out.rstrip().endswith("with advisories (some not checked: see the notes)")


def test_upgrade_vulnerable_skips_a_fix_the_policy_does_not_allow_yet(
        tmp_path: Path, universe: FixtureIndex) -> None:
    """3.7 is the lowest fixed version but only a day old (min_age_days: 7): 3.8 it is."""
    loaded = locked_mirror(tmp_path, universe)
    universe.set_upload_time("idna-3.7-py3-none-any.whl", NOW - timedelta(days=1))
    upgrade = upgrade_vulnerable(loaded, now=NOW)
    [release] = upgrade.found
    assert (release.package, str(release.locked), str(release.target)) == ("idna", "3.6", "3.8")
    assert [(s, p, str(o), [str(v) for v in n]) for s, p, o, n in upgrade.moves()] == [
        ("main", "idna", "3.6", ["3.8"])]
    assert entries(loaded.lockfile_path("main"))["urllib3"] == "2.0.7"


def test_upgrade_vulnerable_refuses_a_pinned_vulnerable_release(
        tmp_path: Path, universe: FixtureIndex, capsys: pytest.CaptureFixture[str]) -> None:
    loaded = locked_mirror(tmp_path, universe, ["requests", "idna==3.6"])
    before = loaded.lockfile_path("main").read_bytes()
    assert main(["lock", "--config", str(loaded.path), "--upgrade-vulnerable"]) == 1
    err = capsys.readouterr().err
    line = line_of(loaded, "idna==3.6")
    assert (f"mirror.yaml:{line}: `idna==3.6` pins idna 3.6, which has PYSEC-2024-60; "
            "pin idna==3.7") in err
    assert "Traceback" not in err
    assert loaded.lockfile_path("main").read_bytes() == before


# --------------------------------------------------------------------------
# bump, in a real git repository
# --------------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def repo(tmp_path: Path, universe: FixtureIndex, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository holding mirror.yaml and its lockfile, on main; then newer releases."""
    for key, value in {"GIT_AUTHOR_NAME": "bot", "GIT_AUTHOR_EMAIL": "bot@example.invalid",
                       "GIT_COMMITTER_NAME": "bot",
                       "GIT_COMMITTER_EMAIL": "bot@example.invalid"}.items():
        monkeypatch.setenv(key, value)
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "--quiet", "--initial-branch=main")
    (root / ".gitignore").write_text("cache/\nnewer/\n")
    locked_mirror(root, universe)
    git(root, "add", ".")
    git(root, "commit", "--quiet", "-m", "lock")
    return root


def test_bump_security_commits_on_a_branch_and_writes_the_pr(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    title, body = tmp_path / "title.txt", tmp_path / "body.md"
    args = ["bump", "-c", str(repo / "mirror.yaml"), "--security", "--now", NOW.isoformat(),
            "--write-pr-title", str(title), "--write-pr-body", str(body)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert git(repo, "branch", "--show-current").strip() == "lockmirror/bump-security"
    assert git(repo, "rev-parse", "HEAD~1").strip() == git(repo, "rev-parse", "main").strip()
    assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == [
        "lockfiles/pylock.main.toml"]
    message = git(repo, "log", "-1", "--format=%B")
    assert message.startswith("lockmirror: fix PYSEC-2024-60 (idna)\n\nmain: idna 3.6 -> 3.7\n")
    assert "Fixes:\nPYSEC-2024-60 (idna 3.6)" in message
    assert out.startswith("lockmirror/bump-security: ")
    assert title.read_text() == "lockmirror: fix PYSEC-2024-60 (idna)\n"
    text = body.read_text()
    assert "### Advisories fixed\n\n- **PYSEC-2024-60** (CVE-2024-3651): idna 3.6 -> 3.7: " \
        in text
    # lockmirror diff --format markdown of the move, and what is still behind
    assert "| upgraded | `idna` | 3.6 → 3.7 | main: requests → idna |" in text
    assert "working tree" not in text and "lockmirror/bump-security" in text  # the PR's sides
    base = git(repo, "rev-parse", "main").strip()
    assert f"### lockmirror diff: `main ({base[:12]})` → `lockmirror/bump-security (" in text
    assert "### lockmirror outdated: 6 locked packages in 1 set: 2 can move, 3 held back, " \
           "0 with advisories" in text
    assert "| main | pinny | 1.0 | 1.0 | 2.0 | held | pinned in mirror.yaml line 14" in text
    assert git(repo, "status", "--porcelain", "--", "lockfiles") == ""


def test_bump_without_work_writes_nothing(repo: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    title, body = tmp_path / "title.txt", tmp_path / "body.md"
    args = ["bump", "-c", str(repo / "mirror.yaml"), "--now", NOW.isoformat(),
            "--write-pr-title", str(title), "--write-pr-body", str(body)]
    assert main(args[:3] + ["--security"] + args[3:]) == 0  # idna moves on its branch
    capsys.readouterr()
    title.unlink()
    body.unlink()
    assert main(args[:3] + ["--security"] + args[3:]) == 0  # on that branch: nothing left
    assert capsys.readouterr().out == ("nothing to bump: no locked release has a deny-level "
                                       "advisory; nothing written\n")
    assert not title.exists() and not body.exists()
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "2"


def test_bump_moves_every_pin_to_the_newest_allowed(repo: Path, tmp_path: Path,
                                                     universe: FixtureIndex,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    body = tmp_path / "body.md"
    assert main(["bump", "-c", str(repo / "mirror.yaml"), "--now", NOW.isoformat(),
                 "--write-pr-body", str(body)]) == 0
    assert git(repo, "branch", "--show-current").strip() == "lockmirror/bump"
    assert git(repo, "log", "-1", "--format=%s").strip() == \
        "lockmirror: fix PYSEC-2024-60 (idna, urllib3)"
    assert capsys.readouterr().out.splitlines()[1:] == [
        "  main: idna 3.6 -> 3.8", "  main: urllib3 2.0.7 -> 2.2.3"]
    text = body.read_text()
    assert "held back" in text
    # with no store at all (the bump job starts from a fresh clone), the moves' licenses
    # come from the index's PEP 658 files, never from a wheel (found by an outside tester:
    # every bump said "licenses not compared ...: run lockmirror fetch first")
    assert "licenses not compared" not in text
    assert not (repo / ".store").exists()
    assert "license: urllib3 2.0.7 -\\> 2.2.3: license changed: unknown -\\> MIT" in text
    assert not [r.path for r in universe.requests if r.path.endswith(".whl")]


def test_bump_reads_licenses_out_of_wheels_where_the_index_serves_no_pep658_files(
        repo: Path, tmp_path: Path, universe: FixtureIndex) -> None:
    # found by an outside tester: an index that advertises no PEP 658 files (lock read
    # METADATA out of the wheels and recorded its hash) and an empty store gave "licenses
    # not compared ...: run lockmirror fetch first" in every bump body
    universe.no_metadata = True
    universe.reset_counts()
    shutil.rmtree(repo / "cache")  # a fresh clone: no HTTP cache, no store
    body = tmp_path / "body.md"
    assert main(["bump", "-c", str(repo / "mirror.yaml"), "--security", "--now",
                 NOW.isoformat(), "--write-pr-body", str(body)]) == 0
    assert main(["bump", "-c", str(repo / "mirror.yaml"), "--now", NOW.isoformat(),
                 "--write-pr-body", str(body)]) == 0
    text = body.read_text()
    assert "licenses not compared" not in text
    assert "license: urllib3 2.0.7 -\\> 2.2.3: license changed: unknown -\\> MIT" in text
    assert not [r.path for r in universe.requests if r.path.endswith(".metadata")]
    assert not [r.path for r in universe.requests  # the zip directory by ranges, never whole
                if r.path.endswith(".whl") and r.range is None]


def test_bump_commits_and_says_licenses_not_compared_when_a_wheel_cannot_be_read(
        repo: Path, tmp_path: Path, universe: FixtureIndex) -> None:
    # found by a reviewer: reading METADATA out of a wheel for the body's diff (the index
    # serves no PEP 658 files) raised on a failed read, after the bump's commit, so the
    # bump failed with its branch already committed
    universe.no_metadata = True
    shutil.rmtree(repo / "cache")  # a fresh clone: no HTTP cache, no store
    universe.fail_next(1000, 404, path_prefix="/files/urllib3/urllib3-2.0.7")  # only the diff
    body = tmp_path / "body.md"
    assert main(["bump", "-c", str(repo / "mirror.yaml"), "--now", NOW.isoformat(),
                 "--write-pr-body", str(body)]) == 0
    assert git(repo, "branch", "--show-current").strip() == "lockmirror/bump"
    assert "licenses not compared for 1 release move (urllib3 2.0.7 -\\> 2.2.3)" in \
        body.read_text()
    assert [r.path for r in universe.requests if r.path.startswith("/files/urllib3/urllib3-2.0.7")]


def two_sets_after_a_policy_change(tmp_path: Path, universe: FixtureIndex,
                                   monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository (on main) whose sets main and extra were locked, then
    ``vulnerabilities: deny`` came in: both are locked from other inputs."""
    for key in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(key, "bot@example.invalid" if key.endswith("EMAIL") else "bot")
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "--quiet", "--initial-branch=main")
    (root / ".gitignore").write_text("cache/\nnewer/\n")
    two_sets = mirror_text(universe, root, ["requests"], "ignore").replace(
        "policy:\n", "  extra:\n    requirements:\n      - fresh\n      - yanky\npolicy:\n")
    (root / "mirror.yaml").write_text(two_sets)
    lock_sets(load_config(root / "mirror.yaml"), now=NOW, candidate_filter_for=lambda n: None)
    release_newer(universe, root)
    git(root, "add", ".")
    git(root, "commit", "--quiet", "-m", "lock")
    (root / "mirror.yaml").write_text(two_sets.replace("vulnerabilities: ignore",
                                                       "vulnerabilities: deny"))
    git(root, "commit", "--quiet", "-am", "deny vulnerable releases")
    return root


def test_bump_after_a_policy_change_locks_the_other_stale_sets_again_with_pins_kept(
        tmp_path: Path, universe: FixtureIndex, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # found by an outside tester: after `vulnerabilities: deny` came in, `bump --security`
    # committed the vulnerable set's lockfile alone; on its branch `lock --check` failed for
    # the other sets ("locked from other inputs (changed: the policy)"): the PR's CI was red
    root = two_sets_after_a_policy_change(tmp_path, universe, monkeypatch)
    config, body = str(root / "mirror.yaml"), tmp_path / "body.md"
    stale = ("lockfiles/pylock.extra.toml was locked from other inputs (changed: the "
             "policy): `lockmirror lock --check` fails for set 'extra'; run `lockmirror lock "
             "--set extra`")
    assert main(["lock", "--config", config, "--upgrade-vulnerable"]) == 0  # main only
    assert capsys.readouterr().err == f"lockmirror: warning: {stale}\n"
    git(root, "checkout", "--quiet", "--", "lockfiles")
    # --set main: the other set is not the bump's to lock, so it is named
    assert main(["bump", "-c", config, "--security", "--set", "main", "--now", NOW.isoformat(),
                 "--branch", "only-main", "--write-pr-body", str(body)]) == 0
    assert f"lockmirror: warning: {stale}\n" in capsys.readouterr().err
    assert f"> [!WARNING]\n> {stale}\n" in body.read_text()
    git(root, "checkout", "--quiet", "main")
    assert main(["bump", "-c", config, "--security", "--now", NOW.isoformat(),
                 "--write-pr-body", str(body)]) == 0
    assert "lock --check` fails" not in capsys.readouterr().err
    assert git(root, "show", "--name-only", "--format=", "HEAD").split() == [
        "lockfiles/pylock.extra.toml", "lockfiles/pylock.main.toml"]
    assert "Locked again, pins kept (locked from other inputs): extra" in git(
        root, "log", "-1", "--format=%B")
    assert "Also locked again with their pins kept, as `lockmirror lock` would (they were " \
        "locked from other inputs): `extra`." in body.read_text()
    assert entries(root / "lockfiles" / "pylock.extra.toml") == {"fresh": "1.0", "yanky": "1.0"}
    assert main(["lock", "--config", config, "--check"]) == 0


def test_a_lockfile_of_another_set_that_does_not_read_is_named_not_fatal(
        tmp_path: Path, universe: FixtureIndex, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # found by a reviewer: the stale-set lines asked every set at once, and a lockfile
    # that does not read (merge-conflict markers) made that raise: `lock
    # --upgrade-vulnerable --set main` printed "(written)" then exited 2, and `bump --set
    # main` failed after its lock had changed the lockfiles (the next bump then refused)
    root = two_sets_after_a_policy_change(tmp_path, universe, monkeypatch)
    extra = root / "lockfiles" / "pylock.extra.toml"
    extra.write_text("<<<<<<< HEAD\n" + extra.read_text())
    git(root, "commit", "--quiet", "-am", "a merge gone wrong")
    config, body = str(root / "mirror.yaml"), tmp_path / "body.md"
    broken = ("lockfiles/pylock.extra.toml does not read: not valid TOML: key with no "
              "value, expected `=` at line 1 column 9 (resolve the merge conflict in it, or "
              "`git checkout` it, or delete it to lock the set afresh); then run `lockmirror "
              "lock --set extra`")
    assert main(["lock", "--config", config, "--upgrade-vulnerable", "--set", "main"]) == 0
    captured = capsys.readouterr()
    assert "pylock.main.toml: 3 packages for 1 target (written)" in captured.out
    assert captured.err == f"lockmirror: warning: {broken}\n"
    git(root, "checkout", "--quiet", "--", "lockfiles")
    # bump: the diff in its body reads every set's lockfile, so it refuses before it moves
    head = git(root, "rev-parse", "HEAD")
    assert main(["bump", "-c", config, "--security", "--set", "main", "--now", NOW.isoformat(),
                 "--branch", "only-main", "--write-pr-body", str(body)]) == 2
    assert capsys.readouterr().err == (
        f"lockmirror: error: {extra}: not valid TOML: key with no value, expected `=` at line "
        "1 column 9 (resolve the merge conflict in it, or `git checkout` it, or delete it to "
        "lock the set afresh)\n")
    assert git(root, "status", "--porcelain", "--", "lockfiles") == ""
    assert git(root, "rev-parse", "HEAD") == head
    assert not body.exists()


def test_bump_says_when_rebuilding_its_branch_drops_a_commit(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    git(repo, "checkout", "--quiet", "-b", "lockmirror/bump-security")
    (repo / "notes.txt").write_text("a fix made by hand on the bump branch\n")
    git(repo, "add", "notes.txt")
    git(repo, "commit", "--quiet", "-m", "by hand")
    tip = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "--quiet", "main")
    assert main(["bump", "-c", str(repo / "mirror.yaml"), "--security", "--now",
                 NOW.isoformat()]) == 0
    assert capsys.readouterr().err == (
        f"lockmirror: warning: branch lockmirror/bump-security is rebuilt from HEAD, dropping "
        f"1 commit HEAD does not have (tip {tip[:12]}; `git branch lockmirror/bump-security-old "
        f"{tip[:12]}` keeps them)\n")
    assert git(repo, "rev-parse", "HEAD~1").strip() == git(repo, "rev-parse", "main").strip()


def test_bump_refuses_uncommitted_lockfiles(repo: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    lockfile = repo / "lockfiles" / "pylock.main.toml"
    lockfile.write_text(lockfile.read_text() + "\n")
    assert main(["bump", "-c", str(repo / "mirror.yaml"), "--now", NOW.isoformat()]) == 1
    assert "lockfiles has uncommitted changes" in capsys.readouterr().err
    assert git(repo, "branch", "--show-current").strip() == "main"


# --------------------------------------------------------------------------
# advisories across the gap: the snapshot the far side audits with
# --------------------------------------------------------------------------


def test_advisory_snapshot_lets_the_far_side_audit_offline(
        tmp_path: Path, universe: FixtureIndex, capsys: pytest.CaptureFixture[str]) -> None:
    build = tmp_path / "build"
    build.mkdir()
    loaded = locked_mirror(build, universe)
    snapshot, again = tmp_path / "advisories.json", tmp_path / "again.json"
    for out in (snapshot, again):
        assert main(["advisories", "-c", str(loaded.path), "-o", str(out),
                     "--now", "2024-10-10T12:00:00Z"]) == 0
    assert capsys.readouterr().out.startswith(f"{snapshot}: 1 advisories on 6 locked releases")
    assert snapshot.read_bytes() == again.read_bytes()  # same answers, same bytes
    data = json.loads(snapshot.read_text())
    assert data["taken"] == "2024-10-10T12:00:00Z"
    assert data["releases"]["idna"] == ["3.6"]
    [advisory] = data["advisories"]
    assert (advisory["id"], advisory["aliases"], advisory["fixed"], advisory["affects"]) == (
        "PYSEC-2024-60", ["CVE-2024-3651"], ["3.7"], {"idna": ["3.6"]})
    assert advisory["source"].startswith("osv-offline:")

    # the far side: no advisory source, no network; the lockfile as imported
    far = tmp_path / "far"
    far.mkdir()
    text = loaded.text.split("  advisory_sources:\n")[0] + "paths:\n  cache: cache\n"
    (far / "mirror.yaml").write_text(text)
    lockfile = far / "pylock.main.toml"
    lockfile.write_bytes(loaded.lockfile_path("main").read_bytes())
    audit = ["audit", "-c", str(far / "mirror.yaml"), "--offline", "--lockfile", str(lockfile),
             "--now", "2024-10-11", "--format", "json"]
    # a shell glob gives --lockfile several paths: each is a lockfile to audit (the
    # second was "unrecognized arguments", though --help says "e.g. lockfiles/*.toml")
    assert main([*audit[:6], str(far / "pylock.gone.toml"), *audit[6:]]) == 1
    assert "pylock.gone.toml" in capsys.readouterr().err
    # without the snapshot the far side knows nothing, and says so (vulnerabilities: deny)
    assert main(audit) == 1
    [unchecked] = json.loads(capsys.readouterr().out)["findings"]
    assert unchecked["message"].startswith("vulnerabilities were not checked")
    assert main([*audit, "--advisories", str(snapshot)]) == 1
    [finding] = json.loads(capsys.readouterr().out)["findings"]
    assert (finding["advisory"], finding["level"], finding["fixed_in"]) == (
        "PYSEC-2024-60", "deny", ["3.7"])
    assert finding["source"].startswith("osv-offline:")

    # a release the snapshot was not asked about is not called clean
    assert main(["lock", "--config", str(loaded.path), "--upgrade-vulnerable"]) == 0
    lockfile.write_bytes(loaded.lockfile_path("main").read_bytes())
    capsys.readouterr()
    assert main([*audit, "--advisories", str(snapshot)]) == 1
    assert "the advisory snapshot does not cover idna==3.7" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "lockmirror-quarantine/1", "releases": []}')
    assert main([*audit, "--advisories", str(bad)]) == 2
    assert "not a lockmirror-advisories/1 advisory snapshot" in capsys.readouterr().err


def test_two_clones_of_a_mirror_give_the_same_advisory_snapshot(
        tmp_path: Path, universe: FixtureIndex, capsys: pytest.CaptureFixture[str]) -> None:
    """An offline OSV source is named by its path as mirror.yaml states it: the snapshot
    (and so the bundle carrying it) must not record where the repository was cloned."""
    build = tmp_path / "build"
    build.mkdir()
    loaded = locked_mirror(build, universe)
    text = loaded.text.replace(f'path: "{ADVISORIES / "vulns"}"', "path: osv/")
    assert "path: osv/" in text
    snapshots = []
    for clone in ("clean", "mm"):
        repo = tmp_path / clone
        shutil.copytree(ADVISORIES / "vulns", repo / "osv")
        (repo / "lockfiles").mkdir()
        shutil.copy(loaded.lockfile_path("main"), repo / "lockfiles")
        (repo / "mirror.yaml").write_text(text)
        out = repo / "advisories.json"
        assert main(["advisories", "-c", str(repo / "mirror.yaml"), "-o", str(out),
                     "--now", "2024-10-10T12:00:00Z"]) == 0
        snapshots.append(out.read_bytes())
    capsys.readouterr()
    assert snapshots[0] == snapshots[1]
    data = json.loads(snapshots[0])
    assert data["sources"] == ["osv-offline:osv/"]
    assert [a["source"] for a in data["advisories"]] == ["osv-offline:osv/"]



def test_the_snapshot_covers_what_audit_checks_on_the_build_side(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an outside tester: `lockmirror advisories -o a.json` then `lockmirror
    audit --offline --advisories a.json` failed with "the advisory snapshot does not
    cover ..." for releases audit checks beyond the sets' current lockfiles: the
    previous lock, which retention keeps serving (and lockmirror's own set)."""
    config = str(repo / "mirror.yaml")
    assert main(["lock", "--config", config, "--upgrade-vulnerable"]) == 0  # idna 3.6 -> 3.7
    git(repo, "commit", "--quiet", "-am", "upgrade")
    snapshot = tmp_path / "advisories.json"
    assert main(["advisories", "-c", config, "-o", str(snapshot),
                 "--now", "2024-10-10T12:00:00Z"]) == 0
    assert json.loads(snapshot.read_text())["releases"]["idna"] == ["3.6", "3.7"]
    capsys.readouterr()
    assert main(["audit", "-c", config, "--offline", "--advisories", str(snapshot),
                 "--now", "2024-10-11", "--format", "json"]) == 1
    out = capsys.readouterr()
    assert "does not cover" not in out.err
    [finding] = json.loads(out.out)["findings"]  # the previous lock's idna, still served
    assert (finding["package"], finding["version"], finding["advisory"]) == (
        "idna", "3.6", "PYSEC-2024-60")
