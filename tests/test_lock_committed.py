"""The committed lockfile a lock starts from, and the names the commands look up.

A lock keeps the committed pins unless they must move, so a lockfile that is
there but does not read (merge-conflict markers left in it, a hand edit that
is not TOML, TOML that is not a lockfile) is refused with its parse error,
exit 2 and nothing written, by ``lock``, ``doit lock`` and ``lock --check``
alike; a missing one still locks afresh (``--check``: stale, exit 1). A set,
target or package name mirror.yaml or the lock does not have is bad input too
(exit 2, as README's exit statuses say), not "something to do" (exit 1).
Found by an outside tester: the lock rewrote a conflicted lockfile with every
pin moved to the newest, and said "written".
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fixtureindex import FixtureIndex
from helpers import git, mirror_yaml
from test_doit_tasks import run_doit

from lockmirror.cli import main

SETS = {"web": ["beta"], "util": ["speedup"]}



def conflicted(text: str) -> str:
    """``text`` as a merge that conflicted over all of it (two input hashes)."""
    return f"<<<<<<< HEAD\n{text}=======\n{text}>>>>>>> feature\n"


def conflicted_pins(text: str) -> str:
    """``text`` as a merge of two locks of the same inputs that conflicted over the
    packages only: the one input-hash line is shared, and current."""
    head, _, rest = text.partition("[[packages]]")
    packages, _, tail = rest.partition("[tool.lockmirror]")
    block = f"[[packages]]{packages}"
    return (f"{head}<<<<<<< HEAD\n{block}=======\n{block}>>>>>>> feature\n"
            f"[tool.lockmirror]{tail}")


# how a lockfile is broken, what the refusal says, and where
Broken = tuple[Callable[[str], str], str, str]
BROKEN = pytest.mark.parametrize("broken", [
    (conflicted, "not valid TOML", "line 1 column"),
    (conflicted_pins, "not valid TOML", " at line "),
    (lambda text: "garbage = [ unclosed\n", "not valid TOML", "line 1 column 21"),
    (lambda text: 'lock-version = "1.0"\ncreated-by = "someone"\n',
     "not a valid PEP 751 lockfile", ""),
    (lambda text: "", "not a valid PEP 751 lockfile", ""),
    (lambda text: "[foo]\n", "not a valid PEP 751 lockfile", "")],
    ids=["conflict", "conflict-in-packages", "unclosed-array", "not-a-lockfile", "empty",
         "a-table"])


@pytest.fixture
def project(tmp_path: Path, fixture_index: FixtureIndex, own_paths: None,
            monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory whose mirror.yaml (sets web, util) is locked; the working directory."""
    (tmp_path / "mirror.yaml").write_text(mirror_yaml(fixture_index.url, SETS))
    monkeypatch.chdir(tmp_path)
    assert main(["lock"]) == 0
    return tmp_path


def break_lockfile(project: Path, broken: Broken) -> tuple[Path, str]:
    """The web set's lockfile rewritten as ``broken`` makes it: its path, its text now."""
    path = project / "lockfiles" / "pylock.web.toml"
    text = broken[0](path.read_text())
    path.write_text(text)
    return path, text


def refusal(err: str, path: Path, broken: Broken) -> str:
    """The one line of ``err``, checked to name ``path``, the parse error and the way out."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"lockmirror: error: {path}: {broken[1]}"), err
    assert broken[2] in lines[0], err
    assert "git checkout" in lines[0] and "delete it to lock the set afresh" in lines[0], err
    # the merge conflict is named only when git's markers are in the file
    markers = any(line.startswith(("<<<<<<< ", ">>>>>>> "))
                  for line in path.read_text().splitlines())
    assert ("resolve the merge conflict" in lines[0]) is markers, err
    return lines[0]


@BROKEN
def test_lock_refuses_a_committed_lockfile_that_does_not_read(
        project: Path, broken: Broken,
        capsys: pytest.CaptureFixture[str]) -> None:
    path, text = break_lockfile(project, broken)
    capsys.readouterr()
    for args in (["lock"], ["lock", "--set", "web"], ["lock", "--upgrade"],
                 ["lock", "--upgrade", "beta"]):
        assert main(args) == 2, args
        out, err = capsys.readouterr()
        refusal(err, path, broken)
        assert "written" not in out and path.read_text() == text, args


@BROKEN
def test_doit_lock_refuses_it_too(project: Path, broken: Broken,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    path, text = break_lockfile(project, broken)
    capsys.readouterr()
    assert run_doit("lock") != 0
    err = capsys.readouterr().err
    assert f"lockmirror: error: {path}: {broken[1]}" in err and "git checkout" in err, err
    assert path.read_text() == text


@BROKEN
def test_lock_check_gives_the_parse_error_as_bad_input(
        project: Path, broken: Broken,
        capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = break_lockfile(project, broken)
    capsys.readouterr()
    assert main(["lock", "--check"]) == 2
    assert "stale" not in refusal(capsys.readouterr().err, path, broken)


def test_a_missing_lockfile_is_stale_and_locks_afresh(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = project / "lockfiles" / "pylock.web.toml"
    path.unlink()
    capsys.readouterr()
    assert main(["lock", "--check"]) == 1
    assert f"set 'web': {path} is missing" in capsys.readouterr().err
    assert main(["lock"]) == 0
    assert f"{path}: " in capsys.readouterr().out and path.is_file()
    assert main(["lock", "--check"]) == 0


@pytest.mark.parametrize("args", [
    ["outdated", "--set", "nosuch"], ["audit", "--set", "nosuch"],
    ["lock", "--set", "nosuch"], ["lock", "--check", "--set", "nosuch"],
    ["lock", "--set", "web,nosuch"], ["fetch", "--set", "nosuch"],
    ["bump", "--set", "nosuch"], ["lock", "--upgrade-vulnerable", "--set", "nosuch"],
    ["sbom", "--set", "nosuch"]])
def test_an_unknown_set_is_bad_input(project: Path, args: list[str],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    git(project, "init", "-q")  # bump works in a clone
    git(project, "add", ".")
    git(project, "commit", "-qm", "locked")
    capsys.readouterr()
    assert main(args) == 2, args
    assert capsys.readouterr().err == ("lockmirror: error: mirror.yaml: no set named 'nosuch' "
                                       "(sets in mirror.yaml: web, util)\n"), args


def test_an_unknown_package_or_target_is_bad_input(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (project / "lockfiles" / "pylock.web.toml").read_bytes()
    capsys.readouterr()
    assert main(["lock", "--upgrade", "nosuchpkg"]) == 2
    assert "--upgrade: no set locks a package named 'nosuchpkg'" in capsys.readouterr().err
    assert main(["fetch", "--target", "windows"]) == 2
    assert "no target named 'windows'" in capsys.readouterr().err
    assert (project / "lockfiles" / "pylock.web.toml").read_bytes() == before
    # check-install of an index tree looks the names up in its lockfiles
    assert main(["fetch", "--progress", "none"]) == 0 and main(["index"]) == 0
    capsys.readouterr()
    for option, name in (("--set", "sets"), ("--target", "targets")):
        assert main(["check-install", "dist-index", option, "nosuch", "--no-install"]) == 2
        assert f"no {option[2:]} 'nosuch' in the index ({name}: " in capsys.readouterr().err
