"""An output directory the user names that is a file, or lies under one, is one line
naming that path as given (``fsutil.check_output_dir``), from every command that
writes into a directory.

Found by an outside tester: ``index --out afile/sub`` said ``.../afile/.sub.lockmirror:
cannot build the index: Not a directory`` (an internal path), ``sbom -o afile``
``afile/cli.cdx.json: Not a directory``, ``lockfile ... -o afile``
``afile/pylock.cli.toml: Not a directory``; ``check-install --work-dir afile`` said
``afile: File exists``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtureindex import FixtureIndex
from helpers import mirror_yaml, tree_digests

from lockmirror.cli import main

# command (without its output path) -> (what the error calls the output, the hint)
WRITERS = {
    ("index", "--out"): ("the index output", "point --out (paths.index) at a directory"),
    ("index", "lockfiles/pylock.core.toml", "--store", ".store", "--out"):
        ("the index output", "point --out (paths.index) at a directory"),
    ("sbom", "-o"): ("the SBOM output", "point -o at a directory"),
    ("lockfile", "dist-index", "--base-url", "http://mirror.lan/", "-o"):
        ("the lockfile output", "point -o at a directory"),
    ("bundle", "--no-tool", "--out"):
        ("the bundle output", "point --out (paths.dist) at a directory"),
    ("import", "BUNDLE", "--into"): ("the import destination", "point --into at a directory"),
    ("check-install", "dist-index", "--file", "--no-install", "--work-dir"):
        ("the check-install work directory", "point --work-dir (paths.cache) at a directory"),
}


def test_an_output_directory_that_is_a_file_or_under_one_is_named_as_given(
        tmp_path: Path, fixture_index: FixtureIndex, reproducible_build: None,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mirror.yaml").write_text(mirror_yaml(fixture_index.url, {"core": ["beta==1.0"]}))
    for stage in ("lock", "fetch", "index"):
        assert main([stage]) == 0, stage
    assert main(["bundle", "--no-tool", "--out", "dist"]) == 0
    bundle = str(next((tmp_path / "dist").glob("*.tar")))
    (tmp_path / "afile").write_text("not a directory")
    before = tree_digests(tmp_path), sorted(tmp_path.rglob("*"))
    capsys.readouterr()
    said = {}
    for command, (what, hint) in WRITERS.items():
        argv = [bundle if word == "BUNDLE" else word for word in command]
        for given, fault in (("afile", f"{what} is a file, not a directory"),
                             ("afile/sub", f"{what} lies under afile, a file, not a directory")):
            assert main([*argv, given]) == 1, (command, given)
            err = capsys.readouterr().err.splitlines()
            said[command[0], given] = err[-1]
            assert err[-1] == f"lockmirror: error: {given}: {fault} ({hint})"
    # nothing written (no file, no directory) beside the file or anywhere else
    assert (tree_digests(tmp_path), sorted(tmp_path.rglob("*"))) == before
    assert len(said) == 2 * len({command[0] for command in WRITERS})


@pytest.mark.parametrize("command", [("diff", "-o"), ("keygen",)])
def test_an_output_file_under_a_file_names_that_file(
        command: tuple[str, ...], tmp_path: Path, fixture_index: FixtureIndex,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A file output under a path that is a file said ``cannot write: File exists``
    (``diff -o``), ``afile: cannot write the key: File exists`` (``keygen``): it names
    the file in the way now, nothing written. ``advisories -o`` writes through the same
    ``atomic_write``; it needs advisory sources to get that far."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mirror.yaml").write_text(mirror_yaml(fixture_index.url, {"core": ["beta==1.0"]}))
    assert main(["lock"]) == 0
    (tmp_path / "afile").write_text("not a directory")
    before = tree_digests(tmp_path), sorted(tmp_path.rglob("*"))
    capsys.readouterr()
    argv = [*command, "afile/sub/out"]
    if command[0] == "diff":
        argv += ["lockfiles/pylock.core.toml", "lockfiles/pylock.core.toml"]
    assert main(argv) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("lockmirror: error: afile/sub/out: "), line
    assert line.endswith("afile is a file, not a directory"), line
    assert (tree_digests(tmp_path), sorted(tmp_path.rglob("*"))) == before
