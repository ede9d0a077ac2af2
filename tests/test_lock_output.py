"""What a person sees of `lock`: a live line, errors placed at their mirror.yaml line and
printed once, `--upgrade` names checked, `lock --check` naming the input that changed."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fixtureindex import FixtureIndex
from test_lock import ARM, X86, write_mirror

from lockmirror.config import load_config
from lockmirror.errors import LockmirrorError, ResolutionError
from lockmirror.stages.lock import lock_sets, stale_sets

ROOT = Path(__file__).resolve().parents[1]


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_progress_names_set_and_target_and_counts_projects(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    from lockmirror.commands.lock import LockLine
    from lockmirror.stages.lock_watch import LockProgress

    loaded = load_config(write_mirror(tmp_path, fixture_index,
                                      "  p:\n    requirements: ['beta[fast]']\n"))
    events: list[LockProgress] = []
    lock_sets(loaded, progress=events.append)
    finished = [e for e in events if e.finished]
    assert sorted((e.set_name, e.target) for e in finished) == [("p", ARM), ("p", X86)]
    assert [e.done for e in finished] == [1, 2] and {e.total for e in events} == {2}
    assert all(e.projects >= 2 for e in finished)  # beta and alpha at least
    seen = [e.projects for e in events if e.target == X86 and not e.finished]
    assert seen[0] == 0 and seen == sorted(seen)  # announced, then growing

    stream = io.StringIO()  # not a terminal: a line per finished resolution (and at start)
    line = LockLine(stream, interval=3600.0)
    for event in events:
        line(event)
    line.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("lock: resolving set 'p' for target")
    assert f"lock: resolved set 'p' for target '{X86}'" in stream.getvalue()
    assert lines[-1].endswith("(2 of 2 resolutions done)")


def test_a_lock_error_names_set_target_and_line_and_doit_prints_it_once(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    path = write_mirror(tmp_path, fixture_index,
                        "  e:\n    requirements:\n      - beta\n      - alpha==9.9\n")
    with pytest.raises(ResolutionError) as info:
        lock_sets(load_config(path))
    where = f"mirror.yaml:{line_of(path, 'alpha==9.9')}: set 'e', target '"
    assert str(info.value).startswith(where), str(info.value)
    assert "no version of alpha matches 'alpha==9.9'" in str(info.value)

    shutil.copyfile(ROOT / "dodo.py", tmp_path / "dodo.py")
    done = subprocess.run([str(Path(sys.executable).parent / "doit"), "lock"], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert output.count("no version of alpha matches") == 1, output
    assert f"lockmirror: error: {where}" in output and "Traceback" not in output


def test_upgrade_refuses_unknown_names_with_the_nearest_and_pinned_packages(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    path = write_mirror(tmp_path, fixture_index,
                        "  k:\n    requirements:\n      - beta\n      - gamma==1.0\n")
    loaded = load_config(path)
    lock_sets(loaded)
    before = loaded.lockfile_path("k").read_bytes()
    fixture_index.reset_counts()
    with pytest.raises(LockmirrorError, match=r"^--upgrade: no set locks a package named "
                                              r"'alpah'; did you mean 'alpha'\?$"):
        lock_sets(loaded, upgrade=["alpah"])
    with pytest.raises(LockmirrorError) as info:
        lock_sets(loaded, upgrade=["Gamma"])
    assert str(info.value) == (f"mirror.yaml:{line_of(path, 'gamma==1.0')}: Gamma cannot move: "
                               "set 'k' pins it (gamma==1.0) (change the pin in mirror.yaml to "
                               "move it)")
    assert fixture_index.count() == 0  # refused before any request
    assert loaded.lockfile_path("k").read_bytes() == before
    lock_sets(loaded, upgrade=["alpha"])  # locked transitively: a name it knows

    cli = subprocess.run([sys.executable, "-m", "lockmirror", "lock", "--upgrade", "urlib3",
                          "--config", str(path)], capture_output=True, text=True, check=False)
    assert cli.returncode == 2 and "no set locks a package named 'urlib3'" in cli.stderr
    assert "(unchanged)" not in cli.stdout and "Traceback" not in cli.stderr
    # names split at commas, as --set's, each checked; the sets are no list of packages
    cli = subprocess.run([sys.executable, "-m", "lockmirror", "lock", "--upgrade", "beta,nope",
                          "--config", str(path)], capture_output=True, text=True, check=False)
    assert cli.returncode == 2, cli.stderr
    assert cli.stderr == "lockmirror: error: --upgrade: no set locks a package named 'nope'\n"
    # every unknown name at once, and before a pin of another name is looked at
    with pytest.raises(LockmirrorError) as info:
        lock_sets(loaded, upgrade=["gamma", "nope", "alpah"])
    assert str(info.value) == ("--upgrade: no set locks a package named 'nope'; no set locks "
                               "a package named 'alpah'; did you mean 'alpha'?")
    cli = subprocess.run([sys.executable, "-m", "lockmirror", "lock", "--upgrade", "alpha,beta",
                          "--config", str(path)], capture_output=True, text=True, check=False)
    assert cli.returncode == 0, cli.stderr
    assert "upgrade alpha: stays at 1.1, 2.0 in set 'k' (the newest its requirements and the " \
           "policy allow)" in cli.stdout
    assert "upgrade beta: " in cli.stdout, cli.stdout


def test_lock_check_names_the_input_that_changed(
        tmp_path: Path, fixture_index: FixtureIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_mirror(tmp_path, fixture_index, "  q:\n    requirements: [alpha]\n")
    text = path.read_text().replace(f"url: {fixture_index.url}",
                                    f"url: ${{FIXTURE_URL:-{fixture_index.url}}}")
    path.write_text(text)
    lock_sets(load_config(path))
    lockfile = load_config(path).lockfile_path("q")
    assert stale_sets(load_config(path)) == {}

    def why(environ: dict[str, str] | None = None) -> str:
        return stale_sets(load_config(path, environ=environ))["q"]

    path.write_text(text + "policy: {yanked: warn}\n")
    assert why().endswith("was locked from other inputs (changed: the policy)")
    path.write_text(text.replace("[alpha]", "[alpha, gamma]"))
    assert why().endswith("(changed: the set's requirements)")
    path.write_text(text)
    # a token in the source URL is no input: a rotated one leaves the lockfile current
    host = fixture_index.url.split("://", 1)[1]
    for token in ("first", "rotated"):
        assert stale_sets(load_config(path, environ={
            "FIXTURE_URL": f"http://ci:{token}@{host}"})) == {}
    moved = why({"FIXTURE_URL": fixture_index.url + "elsewhere/"})
    assert "changed: source 'fixture' (its URL comes from the environment variable " \
           "FIXTURE_URL" in moved
    # where a source's files may lie is an input (found by an outside tester: a pull
    # request widened files_url with every lock check and the lock diff silent)
    widened = text.replace(f"url: ${{FIXTURE_URL:-{fixture_index.url}}}",
                           f"url: ${{FIXTURE_URL:-{fixture_index.url}}}\n"
                           "    files_url: [https://files.example/]")
    assert widened != text
    path.write_text(widened)
    assert "(changed: source 'fixture'" in why()
    path.write_text(text)
    monkeypatch.setattr("lockmirror.stages.lock_inputs.LOCK_FORMAT", 99)
    assert "changed: lockmirror's lock format (the lockfile's is " in why()
    assert "this lockmirror's 99): the tool version changed" in why()
    monkeypatch.undo()
    recorded = lockfile.read_text()
    digest = recorded.split('input-hash = "sha256:')[1][:64]
    lockfile.write_text(recorded.replace(digest, "0" * 64))
    assert why().endswith("(the lockfile itself: its input-hash was edited (the inputs it "
                          "records match mirror.yaml))")


@pytest.mark.parametrize(("requirements", "named"), [
    ("[beta, no-such-project]", "no-such-project"),  # an unknown project: its line
    ("\n      - beta\n      - left\n      - right", "- left"),  # a conflict: the first side
])
def test_other_lock_errors_are_placed_too(tmp_path: Path, fixture_index: FixtureIndex,
                                          requirements: str, named: str) -> None:
    path = write_mirror(tmp_path, fixture_index, f"  u:\n    requirements: {requirements}\n")
    with pytest.raises(LockmirrorError) as info:
        lock_sets(load_config(path))
    assert str(info.value).startswith(f"mirror.yaml:{line_of(path, named)}: set 'u', target '")
    assert named.lstrip("- ") in str(info.value)
