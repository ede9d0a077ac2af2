"""The lock split by target (``lock --set S --target T --shard-dir DIR``, then
``lock --from-shards DIR``): the gathered lockfile is the bytes a plain lock
writes, and a gather refuses shards it cannot trust, in one line, writing nothing.

On the fixture index, two targets (x86_64 Python 3.11, aarch64 Python 3.12)
that lock different versions and target-only dependencies, sdists with their
build groups, a set whose policy records an exception and one whose lock
records a warn-level finding.
"""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from fixtureindex import Catalogue, FixtureIndex
from test_lock import ARM, X86, versions, write_mirror

from lockmirror import pipeline
from lockmirror.cli import main
from lockmirror.config import load_config
from lockmirror.errors import LockmirrorError
from lockmirror.formats.lockfile import Lockfile
from lockmirror.stages.lock import lock_sets
from lockmirror.stages.lock_shard import gather_shards, lock_shards, shard_path

# alpha: 1.1 on x86 (3.11), 2.0 on arm; armdep only on arm, olddep only on x86 (markers);
# sdistonly, oldmeta, legacy: sdists, each with its build group
SETS = """\
  mixed:
    requirements: [alpha, marked, native, sdistonly, oldmeta, legacy]
  waived:
    requirements: [speedup==1.2]
    policy:
      min_age_days: 2
      exceptions:
        - {package: speedup, version: '1.2', reason: fast path, rules: [min_age_days]}
  warned:
    requirements: [yanky==1.1]
    policy:
      yanked: warn
"""


def copy_of(tmp: Path, name: str, index: FixtureIndex) -> Path:
    """A mirror.yaml of SETS in its own directory (own lockfiles, own cache)."""
    root = tmp / name
    root.mkdir()
    return write_mirror(root, index, SETS)


def test_gathered_shards_are_the_bytes_of_a_plain_lock(
        tmp_path: Path, fixture_index: FixtureIndex, catalogue: Catalogue) -> None:
    newest = next(t for f, t in catalogue.upload_times.items() if f.startswith("speedup-1.2"))
    now = newest + timedelta(days=1.5)  # speedup 1.2 is too new but for the exception
    plain = load_config(copy_of(tmp_path, "plain", fixture_index))
    results = {r.set_name: r for r in lock_sets(plain, now=now)}

    sharded = load_config(copy_of(tmp_path, "sharded", fixture_index))
    shards = tmp_path / "shards"
    for set_name in ("mixed", "waived", "warned"):
        for target in (X86, ARM):  # one CI job each, each with a cold cache
            shutil.rmtree(tmp_path / "sharded" / "cache", ignore_errors=True)
            [shard] = lock_shards(sharded, [set_name], [target], shards, now=now)
            assert shard.path == shard_path(shards, set_name, target) and shard.written
            # a valid PEP 751 lockfile of that target alone, under a name installers take
            # (pylock.<set>.<target>.toml was refused by uv, read as requirements by pip)
            assert [t.name for t in Lockfile.read(shard.path).targets] == [target]
            assert re.fullmatch(r"pylock\.[^.]+\.toml", shard.path.name), shard.path
    requests = len(fixture_index.requests)
    gathered = {r.set_name: r for r in gather_shards(sharded, None, shards)}
    assert len(fixture_index.requests) == requests  # the gather uses no network

    for set_name, result in results.items():
        assert gathered[set_name].path.read_bytes() == result.path.read_bytes(), set_name
    mixed = results["mixed"].lockfile
    assert mixed.build_groups and {p.name for p in mixed.packages_for(ARM)} != {
        p.name for p in mixed.packages_for(X86)}  # the case the merge must get right
    assert results["waived"].lockfile.exceptions_used  # recorded by both ways
    assert [r["rule"] for r in results["warned"].lockfile.policy_findings] == ["yanked"]
    # the x86 shard alone holds what x86 installs, and no aarch64 file
    x86 = Lockfile.read(shard_path(shards, "mixed", X86))
    assert {p.name for p in x86.packages} == {p.name for p in mixed.packages_for(X86)}
    assert not any("aarch64" in f.filename for _, f in x86.iter_files())


@pytest.fixture
def gathered(tmp_path: Path, fixture_index: FixtureIndex) -> Path:
    """A mirror whose set 'mixed' was locked as two shards and gathered once."""
    config = copy_of(tmp_path, "m", fixture_index)
    for target in (X86, ARM):
        assert main(["lock", "--config", str(config), "--set", "mixed", "--target", target,
                     "--shard-dir", str(tmp_path / "shards")]) == 0
    assert main(["lock", "--config", str(config), "--set", "mixed",
                 "--from-shards", str(tmp_path / "shards")]) == 0
    return config


def test_a_plain_lock_after_the_cli_gather_changes_no_byte(
        gathered: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lockfile = gathered.parent / "lockfiles" / "pylock.mixed.toml"
    before = lockfile.read_bytes()
    capsys.readouterr()
    assert main(["lock", "--config", str(gathered), "--set", "mixed"]) == 0
    assert "pylock.mixed.toml: " in (out := capsys.readouterr().out) and "(unchanged)" in out
    assert lockfile.read_bytes() == before


def refused(config: Path, capsys: pytest.CaptureFixture[str], *args: str,
            set_name: str = "mixed") -> str:
    """Run a gather that must fail: its one line; ``set_name``'s lockfile as it was."""
    lockfile = config.parent / "lockfiles" / f"pylock.{set_name}.toml"
    before = lockfile.read_bytes()
    capsys.readouterr()
    assert main(["lock", "--config", str(config), *args]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert lockfile.read_bytes() == before
    return err


def test_a_missing_shard_is_refused(gathered: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    shard_path(tmp_path / "shards", "mixed", ARM).unlink()
    err = refused(gathered, capsys, "--set", "mixed", "--from-shards", str(tmp_path / "shards"))
    assert f"the shard of set 'mixed' for target '{ARM}' is missing" in err
    assert f"lockmirror lock --set mixed --target {ARM} --shard-dir" in err


def test_a_shard_of_a_target_the_set_lacks_is_refused(gathered: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    shards = tmp_path / "shards"
    shard_path(shards, "mixed", "windows").parent.mkdir()
    shutil.copy(shard_path(shards, "mixed", ARM), shard_path(shards, "mixed", "windows"))
    err = refused(gathered, capsys, "--set", "mixed", "--from-shards", str(shards))
    assert "windows/pylock.mixed.toml: a shard for target 'windows', which set 'mixed' " in err


def test_a_stale_shard_is_refused(gathered: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    text = gathered.read_text()
    gathered.write_text(text.replace("requirements: [alpha,", "requirements: [beta, alpha,"))
    err = refused(gathered, capsys, "--set", "mixed", "--from-shards", str(tmp_path / "shards"))
    assert "stale shard: locked from other inputs than mirror.yaml gives set 'mixed'" in err
    assert f"--shard-dir {tmp_path / 'shards'})" in err  # the directory given, not its target's


def test_shards_that_kept_different_lockfiles_pins_are_refused(
        tmp_path: Path, fixture_index: FixtureIndex, capsys: pytest.CaptureFixture[str]) -> None:
    """Each shard job reads its own clone's committed lockfile for its pins; shards
    made on two commits (the same mirror.yaml, the second `lock --upgrade alpha`)
    would gather into a lockfile of one commit's versions for one target and the
    other's for the other. The gather refuses them, writing nothing."""
    root = tmp_path / "m"
    root.mkdir()
    config = write_mirror(root, fixture_index, "  k:\n    requirements: [beta]\n")
    lockfile = root / "lockfiles" / "pylock.k.toml"
    for name in [f for f in fixture_index.files if f.startswith("alpha-1.1")]:
        fixture_index.remove_file(name)
    assert main(["lock", "--config", str(config)]) == 0  # commit A: alpha 1.0 on x86
    commit_a = lockfile.read_bytes()
    fixture_index.reset()  # alpha 1.1 is back upstream
    assert main(["lock", "--config", str(config), "--upgrade", "alpha"]) == 0  # commit B
    commit_b = lockfile.read_bytes()
    assert commit_a != commit_b
    shards = tmp_path / "shards"
    for commit, target in ((commit_a, X86), (commit_b, ARM)):  # each job its own clone
        lockfile.write_bytes(commit)
        assert main(["lock", "--config", str(config), "--set", "k", "--target", target,
                     "--shard-dir", str(shards)]) == 0
    assert versions(Lockfile.read(shard_path(shards, "k", X86)), X86)["alpha"] == "1.0"
    gather = ("--set", "k", "--from-shards", str(shards))
    err = refused(config, capsys, *gather, set_name="k")
    assert "the shards of set 'k' kept the pins of different lockfiles" in err
    assert str(shard_path(shards, "k", X86)) in err and str(shard_path(shards, "k", ARM)) in err
    assert f"lockmirror lock --set k --target T --shard-dir {shards}` for T in {X86}, " \
           f"{ARM}" in err

    # both made again from commit B: gathered, the bytes commit B holds
    assert main(["lock", "--config", str(config), "--set", "k", "--target", X86,
                 "--shard-dir", str(shards)]) == 0
    lockfile.write_bytes(commit_a)  # the gather job's checkout: the lockfile it rewrites
    assert main(["lock", "--config", str(config), *gather]) == 0
    assert lockfile.read_bytes() == commit_b

    # a shard that does not say what it started from is not trusted
    shard = shard_path(shards, "k", X86)
    shard.write_text(re.sub(r"(?m)^pins-from = .*\n", "", shard.read_text()))
    err = refused(config, capsys, *gather, set_name="k")
    assert f"{shard}: records no pins-from" in err
    assert f"lockmirror lock --set k --target {X86} --shard-dir {shards}" in err

    # one commit, but one shard made with --upgrade (no pins kept): the refusal says so
    # (an outside re-test followed "from one commit" and met the same refusal)
    lockfile.write_bytes(commit_b)
    for target, extra in ((X86, ["--upgrade"]), (ARM, [])):
        assert main(["lock", "--config", str(config), "--set", "k", "--target", target,
                     "--shard-dir", str(shards), *extra]) == 0
    err = refused(config, capsys, *gather, set_name="k")
    assert "(made from different commits or with --upgrade in some and not in others)" in err
    assert "with --upgrade in all or none" in err


def test_a_shard_under_another_name_is_refused(gathered: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    shards = tmp_path / "shards"
    shutil.copy(shard_path(shards, "mixed", X86), shard_path(shards, "mixed", ARM))
    err = refused(gathered, capsys, "--set", "mixed", "--from-shards", str(shards))
    assert f"holds set 'mixed' on target(s) {X86}, not set 'mixed' on target '{ARM}'" in err


def test_damaged_conditions_are_refused(gathered: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    shard = shard_path(tmp_path / "shards", "mixed", X86)
    text = shard.read_text()
    assert 'runtime = ""' in text
    shard.write_text(text.replace('runtime = ""', 'runtime = "python_version >"', 1))
    err = refused(gathered, capsys, "--set", "mixed", "--from-shards", str(tmp_path / "shards"))
    assert "the condition for group 'runtime' is not a marker: 'python_version >'" in err
    shard.write_text(text.replace('runtime = ""', 'nightly = ""', 1))
    err = refused(gathered, capsys, "--set", "mixed", "--from-shards", str(tmp_path / "shards"))
    assert "conditions name group 'nightly', which the shard does not declare" in err


def test_a_shard_cut_short_is_refused_naming_the_command_that_makes_it(
        gathered: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An artifact cut short in transit reads as a damaged lockfile; the hint names
    the shard's own command, not `doit lock` (which makes no shard)."""
    shards = tmp_path / "shards"
    shard = shard_path(shards, "mixed", ARM)
    text = shard.read_text()
    command = f"lock it again: lockmirror lock --set mixed --target {ARM} --shard-dir {shards})"
    for end, message in ((text.index("[tool.lockmirror]"),
                          "lockfile has no [tool.lockmirror] section"),
                         (text.index("[[packages]]"), "not a valid PEP 751 lockfile"),
                         (text.index("[[packages.wheels]]"), "not a valid PEP 751 lockfile"),
                         (text.index("[[packages.wheels]]") + 4, "not valid TOML")):
        shard.write_text(text[:end])
        err = refused(gathered, capsys, "--set", "mixed", "--from-shards", str(shards))
        assert f"{shard}: {message}" in err and err.rstrip().endswith(command), (end, err)
        assert "doit lock" not in err


def test_a_gather_checks_every_shard_before_writing_any_lockfile(
        gathered: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """lockmirror's own set is gathered only when named; named without its shards,
    the gather refuses before it writes the other set's lockfile."""
    monkeypatch.setenv("LOCKMIRROR_TOOL_WHEELS", "index")  # its set is locked, as by default
    (gathered.parent / "lockfiles" / "pylock.mixed.toml").unlink()
    capsys.readouterr()
    assert main(["lock", "--config", str(gathered), "--set", "mixed", "--set",
                 "lockmirror-tool", "--from-shards", str(tmp_path / "shards")]) == 2
    err = capsys.readouterr().err
    assert "the shard of set 'lockmirror-tool' for target" in err and len(err.splitlines()) == 1
    assert not (gathered.parent / "lockfiles" / "pylock.mixed.toml").exists()
    # without --set: mirror.yaml's sets only
    assert main(["lock", "--config", str(gathered), "--from-shards",
                 str(tmp_path / "shards")]) == 2  # 'waived' has no shards here
    assert "the shard of set 'waived'" in capsys.readouterr().err
    assert main(["lock", "--config", str(gathered), "--set", "mixed", "--from-shards",
                 str(tmp_path / "shards")]) == 0
    assert (gathered.parent / "lockfiles" / "pylock.mixed.toml").is_file()
    assert not (gathered.parent / "lockfiles" / "pylock.lockmirror-tool.toml").exists()


def test_shard_options_are_refused_where_they_mean_nothing(
        tmp_path: Path, fixture_index: FixtureIndex, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(copy_of(tmp_path, "m", fixture_index))
    cases = {
        ("--target", X86): "lock --target writes one target's shard of a set's lockfile, so it "
                           "needs --shard-dir DIR (lockmirror lock --set NAME --target NAME "
                           "--shard-dir DIR",
        ("--set", "mixed", "--target", X86, "--check"): "lock --check checks a set's whole "
                                                        "lockfile",
        ("--target", X86, "--shard-dir", "d"): "lock --target shards named sets: add --set NAME",
        ("--set", "mixed", "--shard-dir", "d"): "--shard-dir goes with --target",
        ("--from-shards", "d", "--upgrade"): "--from-shards resolves nothing, so it takes no "
                                             "--upgrade",
        ("--set", "waived", "--target", "nope", "--shard-dir", "d"): "no target named 'nope'",
        ("--set", "waived", "--target", X86, "--shard-dir", str(tmp_path / "m" / "lockfiles")):
            "shards do not go beside the lockfiles",
    }
    for args, message in cases.items():
        assert main(["lock", "--config", config, *args]) != 0
        err = capsys.readouterr().err
        assert message in err and len(err.splitlines()) == 1, (args, err)
    assert not (tmp_path / "m" / "lockfiles").exists() and not Path("d").exists()
    assert fixture_index.requests == []


def test_the_pipeline_refuses_a_target_without_a_shard_dir(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    """Not only the CLI: the stage's one entry refuses ``targets`` without a shard
    directory, instead of locking whole sets into their lockfiles."""
    loaded = load_config(copy_of(tmp_path, "m", fixture_index))
    with pytest.raises(LockmirrorError, match="needs --shard-dir DIR"):
        pipeline.lock(loaded, ["mixed"], targets=[X86])
    with pytest.raises(LockmirrorError, match="resolves nothing, so it takes no --upgrade"):
        pipeline.lock(loaded, ["mixed"], from_shards=tmp_path / "d", upgrade_all=True)
    assert not (tmp_path / "m" / "lockfiles").exists()
    assert fixture_index.requests == []


def test_a_target_the_set_does_not_have_is_refused_before_resolving(
        tmp_path: Path, fixture_index: FixtureIndex, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "m"
    root.mkdir()
    config = write_mirror(root, fixture_index,
                          f"  only-x86:\n    requirements: [alpha]\n    targets: [{X86}]\n")
    assert main(["lock", "--config", str(config), "--set", "only-x86", "--target", ARM,
                 "--shard-dir", str(tmp_path / "shards")]) == 1
    err = capsys.readouterr().err
    assert f"set 'only-x86' does not have target '{ARM}' (targets of set 'only-x86': {X86})" \
        in err
    assert fixture_index.requests == [] and not (tmp_path / "shards").exists()


def test_exceptions_used_are_judged_on_each_targets_files(
        tmp_path: Path, fixture_index: FixtureIndex, catalogue: Catalogue) -> None:
    # native 1.0: the x86_64 wheel was uploaded a day before the aarch64 one. Half a day
    # after the aarch64 upload, min_age_days 1 admits the x86_64 wheel but not the
    # aarch64 one: the arm target locks native only through the exception, so the
    # lockfile records it (judged on the whole lockfile's files it would not be).
    arm_wheel = catalogue.find("native", "1.0", tag="aarch64").filename
    now = catalogue.upload_times[arm_wheel] + timedelta(days=0.5)
    root = tmp_path / "m"
    root.mkdir()
    config = write_mirror(root, fixture_index, """\
  n:
    requirements: [native]
    policy:
      min_age_days: 1
      exceptions:
        - {package: native, version: '1.0', reason: arm build, rules: [min_age_days]}
""")
    [result] = lock_sets(load_config(config), now=now)
    assert {p.name for p in result.lockfile.packages_for(ARM)} == {"native"}
    [used] = Lockfile.read(result.path).exceptions_used
    assert used["release"] == "native==1.0" and used["rule"] == "min_age_days"
