"""``dist/`` keeps the newest N bundles of a mirror (issue 15: every change used
to leave another bundle there for good).

The order of writing is set with ``os.utime`` on each bundle's ``.sha256``
listing (what the pruning ranks by), never by waiting.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import subprocess_env
from test_bundle import EPOCH, base_files, bundle, make_inputs, make_project, write_tree

from lockmirror.stages.bundle import BundleResult

OTHER_MIRROR = "lockmirror-other-0123456789abcdef.tar"


def versions(tmp_path: Path, count: int) -> list[Path]:
    """``count`` input trees that differ in one page, hence in content id."""
    roots = []
    for number in range(count):
        files = base_files()
        files["index.html"] = f"<html>mirror {number}</html>\n".encode()
        make_inputs(tmp_path / f"v{number}", files)
        roots.append(tmp_path / f"v{number}")
    return roots


def age(result: BundleResult, seconds_ago: int) -> None:
    """Date a bundle's completion (its listing's mtime) back by ``seconds_ago``."""
    stamp = time.time() - seconds_ago
    os.utime(result.checksums, (stamp, stamp))


def files_of(result: BundleResult) -> set[str]:
    return {p.name for p in result.checksums.parent.iterdir()
            if p.name.startswith(result.path.name.split(".tar")[0])}


def test_the_newest_bundles_stay_and_older_ones_go_whole(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    roots = versions(tmp_path, 4)
    oldest = bundle(roots[0], out, split=100_000)  # its volumes go with it
    second = bundle(roots[1], out, since=roots[0] / "dist-index")  # a delta counts too
    age(oldest, 30)
    age(second, 20)
    (out / OTHER_MIRROR).write_bytes(b"another mirror's bundle")
    (out / "notes.txt").write_text("not a bundle")
    doomed = files_of(oldest)
    assert len(doomed) == 5  # four volumes and the listing
    freed = sum((out / name).stat().st_size for name in doomed)

    third = bundle(roots[2], out, keep=3)
    assert third.removed.bundles == () and len(list(out.glob("*.sha256"))) == 3
    age(third, 10)
    fourth = bundle(roots[3], out, keep=3)
    assert fourth.removed.bundles == (oldest.checksums.name.removesuffix(".sha256"),)
    assert {p.name for p in fourth.removed.files} == doomed
    assert fourth.removed.files[0].name.endswith(".sha256")  # the listing goes first
    assert fourth.removed.size == freed
    assert {p.name for p in out.iterdir()} == {
        OTHER_MIRROR, "notes.txt", *files_of(second), *files_of(third), *files_of(fourth)}


def test_a_bundle_found_current_counts_as_the_newest(tmp_path: Path) -> None:
    """Rebuilding an older bundle (a revert) keeps it and prunes around it."""
    out = tmp_path / "dist"
    roots = versions(tmp_path, 3)
    first, second, third = (bundle(root, out) for root in roots)
    for result, seconds in ((first, 30), (second, 20), (third, 10)):
        age(result, seconds)
    again = bundle(roots[0], out, keep=2)
    assert not again.changed
    assert set(again.removed.bundles) == {second.path.name}
    assert {p.name for p in out.iterdir()} == files_of(first) | files_of(third)
    again = bundle(roots[0], out, keep=1)
    assert {p.name for p in out.iterdir()} == files_of(first)


def test_keep_zero_keeps_every_bundle(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    for root in versions(tmp_path, 3):
        assert bundle(root, out, keep=0).removed.files == ()
    assert len(list(out.glob("*.tar"))) == 3


def test_cli_takes_keep_from_mirror_yaml_or_the_option_and_says_what_it_removed(
        tmp_path: Path) -> None:
    make_project(tmp_path)
    with (tmp_path / "mirror.yaml").open("a") as handle:
        handle.write("bundle:\n  keep: 1\n")
    env = subprocess_env(SOURCE_DATE_EPOCH=str(EPOCH))
    dist = tmp_path / "dist"

    def cli(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "lockmirror", "bundle", "--no-tool", *args],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def change_the_index(text: str) -> None:
        write_tree(tmp_path / "dist-index", {"index.html": text.encode()})

    assert "removed" not in cli()
    first = {p.name: p.stat().st_size for p in dist.iterdir()}
    for name in first:  # written before the next one, whatever the clock's resolution
        os.utime(dist / name, (time.time() - 60, time.time() - 60))
    change_the_index("<html>second</html>\n")
    assert "removed" not in cli("--keep", "2")  # the option wins over mirror.yaml
    assert len(list(dist.glob("*.tar"))) == 2
    for path in dist.iterdir():
        if path.name not in first:
            os.utime(path, (time.time() - 30, time.time() - 30))
    change_the_index("<html>third</html>\n")
    out = cli()  # mirror.yaml: keep 1
    assert len(list(dist.glob("*.tar"))) == 1
    removed = next(line for line in out.splitlines() if "removed" in line)
    assert removed.startswith("bundle: removed 2 older bundles (4 files, ")
    assert next(iter(first)).removesuffix(".sha256") in removed  # names them

    done = subprocess.run([sys.executable, "-m", "lockmirror", "bundle", "--keep", "-1"],
                          cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "not a whole number" in done.stderr


def test_keep_in_mirror_yaml_is_checked(tmp_path: Path) -> None:
    make_project(tmp_path)
    with (tmp_path / "mirror.yaml").open("a") as handle:
        handle.write("bundle:\n  keep: -2\n")
    done = subprocess.run([sys.executable, "-m", "lockmirror", "validate"], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "keep" in done.stderr and "Traceback" not in done.stderr


def test_doit_bundle_prunes_to_bundle_keep_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from lockmirror import doit_tasks

    make_project(tmp_path)
    with (tmp_path / "mirror.yaml").open("a") as handle:
        handle.write("bundle:\n  keep: 1\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    monkeypatch.delenv("LOCKMIRROR_CACHE", raising=False)
    first = bundle(tmp_path, tmp_path / "dist")  # what an earlier run left
    write_tree(tmp_path / "dist-index", {"index.html": b"<html>next</html>\n"})
    doit_tasks._bundle(doit_tasks.Project(tmp_path / "mirror.yaml"))
    out = capsys.readouterr().out
    assert "bundle: removed 1 older bundle (2 files, " in out and first.path.name in out
    assert not first.path.exists() and not first.checksums.exists()


def test_a_delta_never_removes_the_bundle_it_was_made_against(tmp_path: Path) -> None:
    """With keep 1 the delta removed its own base, the only full bundle it applies onto
    (found by an outside tester)."""
    roots = versions(tmp_path, 3)
    out = tmp_path / "out"
    full = bundle(roots[0], out)
    age(full, 100)
    delta = bundle(roots[1], out, since=full.path, keep=1)
    assert full.path.exists() and delta.path.exists() and not delta.removed.files
    # the same when the base is given as the mirror it was made from (a directory)
    again = bundle(roots[2], out, since=roots[0] / "dist-index", keep=1)
    assert full.path.exists() and again.path.exists()
    assert delta.path.name in {p.name for p in again.removed.files}  # not a base: it goes
