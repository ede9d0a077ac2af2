"""Older and newer lockmirrors on the two sides of an air gap (an outside tester's report).

Bundle formats move (``lockmirror-bundle/1`` had no lock time, /2 records it) and so
does an imported mirror's state (``.lockmirror/``). Whatever one version meets of
another's, it says what it is and what to do, and it never drops what it does not
know. The bundles here are real ones, written by the bundle stage; an older or newer
lockmirror's output is made from them as that version would have written it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import tree_bytes
from test_audit import mirror  # noqa: F401 - the build side: lockfile, store, index
from test_bundle import bundle, write_tree
from test_import import WHEEL, repack
from test_import_guards import _forged
from test_refresh_bundle import bundle as cli_bundle

from lockmirror.cli import main
from lockmirror.config import LoadedConfig
from lockmirror.errors import BundleError, BundleFormatError
from lockmirror.stages.bundle import BundleResult
from lockmirror.stages.importer import import_bundle

NEW = 1_700_000_000
REFUSED = "refusing the whole bundle; nothing was changed"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lockmirror", *args],
                          capture_output=True, text=True, check=False)


@pytest.fixture
def far(tmp_path: Path) -> Path:
    """A mirror imported from a bundle dated NEW."""
    root = tmp_path / "srv" / "far"
    root.parent.mkdir()
    assert import_bundle([bundle(tmp_path / "held", tmp_path / "out-held",
                                 source_date_epoch=NEW).path], root).changed
    return root


@pytest.fixture
def newer(tmp_path: Path) -> BundleResult:
    """Another index, dated after the mirror's bundle: an import would swap it in."""
    return bundle(tmp_path / "newer", tmp_path / "out-newer", source_date_epoch=NEW + 1)


# --------------------------------------------------------------------------
# .lockmirror/: what a newer lockmirror recorded is not dropped
# --------------------------------------------------------------------------


def test_an_import_refuses_a_mirror_holding_state_it_does_not_know(
        far: Path, newer: BundleResult, tmp_path: Path) -> None:
    """A newer lockmirror's record in ``.lockmirror/`` (its own protection, as ``signer``
    and ``bundle-time`` once were to an older tool) was deleted by the swap and the
    import exited 0: now the import is refused in one line naming the entries, before
    anything changes (the no-op import of what the mirror holds too)."""
    (far / ".lockmirror" / "future-record").write_text("v9 something\n")
    (far / ".lockmirror" / "pins").mkdir()
    before = tree_bytes(far)
    for offered in (newer.path, tmp_path / "out-held" / next(
            p.name for p in (tmp_path / "out-held").glob("*.tar"))):
        with pytest.raises(BundleError) as caught:
            import_bundle([offered], far)
        assert caught.value.where == str(far)
        assert caught.value.message == (
            ".lockmirror/ holds future-record, pins, which this lockmirror does not know "
            "(written by a newer lockmirror?)")
        assert caught.value.hint == (
            "install lockmirror from the newest full bundle's tool/ (README.txt in it says "
            f"how) and import with that; {REFUSED}")
        assert tree_bytes(far) == before
    done = _cli("import", str(newer.path), "--into", str(far))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "future-record" in done.stderr and done.stderr.rstrip().endswith(f"{REFUSED})")
    assert tree_bytes(far) == before
    # the operator's way through: the newer tool, or (knowing what it is) remove it
    (far / ".lockmirror" / "future-record").unlink()
    (far / ".lockmirror" / "pins").rmdir()
    assert import_bundle([newer.path], far).changed


def test_what_this_lockmirror_writes_there_itself_is_known(
        far: Path, newer: BundleResult) -> None:
    """Every state file an import, a refresh or a directory publish writes, and the
    temporary file an interrupted atomic write of one leaves, does not stop an import."""
    state = far / ".lockmirror"
    assert {p.name for p in state.iterdir()} >= {"bundle-time", "manifest.sha256"}
    (state / "receipt.json").write_text("{}\n")  # a directory publish's
    (state / "lock").write_text("")
    (state / ".signer.k2j4h5g6.tmp").write_text("SHA256:half")  # a write killed midway
    (state / ".quarantine.json.zz9_x0y1.tmp").write_text("{")
    result = import_bundle([newer.path], far)
    assert result.changed and WHEEL in tree_bytes(far)
    assert not (state / "receipt.json").exists()  # a new tree: only the import's state


def test_a_symlinked_or_missing_state_directory_is_not_listed(
        far: Path, newer: BundleResult, tmp_path: Path) -> None:
    """No ``.lockmirror/`` (a mirror an early lockmirror imported) takes a bundle; a
    symlinked one is not followed to list another directory's files."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "someone-elses-file").write_text("x")
    state = far / ".lockmirror"
    for path in state.iterdir():
        path.unlink()
    state.rmdir()
    state.symlink_to(elsewhere, target_is_directory=True)
    assert import_bundle([newer.path], far).changed
    assert (elsewhere / "someone-elses-file").exists()


# --------------------------------------------------------------------------
# lockmirror-bundle/1: written by a lockmirror that recorded no lock time
# --------------------------------------------------------------------------


def _format_1(bundle_path: Path, target: Path) -> Path:
    """The bundle at ``bundle_path`` as a lockmirror before format /2 wrote it: no
    ``mtime``, at ``target``."""
    return repack(bundle_path, target, _forged(
        lambda info: replace(info, mtime=None, format_read=None)))


def test_a_format_1_bundle_onto_a_dated_mirror_says_its_format_is_why(
        far: Path, newer: BundleResult, tmp_path: Path) -> None:
    """Format /1 records no lock time whatever the lockfiles' commits: the refusal said to
    commit them or set SOURCE_DATE_EPOCH (an outside tester had). It names the format and
    says to bundle it again with a lockmirror writing /2; --allow-older stays the other
    way."""
    old = _format_1(newer.path, tmp_path / "v1" / "old.tar")
    before = tree_bytes(far)
    with pytest.raises(BundleError) as caught:
        import_bundle([old], far)
    held = (far / ".lockmirror" / "bundle-time").read_text().split()[1]
    assert caught.value.message.endswith(
        ": its lock time is unknown (its bundle.json is of format lockmirror-bundle/1, which "
        f"records none), and the bundle {held} the mirror holds is dated 2023-11-14 22:13:20 "
        "UTC; refusing it, nothing was changed")
    assert caught.value.hint == (
        "bundle it again with a lockmirror that writes lockmirror-bundle/2, as this one does, "
        "or, to take it as it is, import it with --allow-older")
    assert "SOURCE_DATE_EPOCH" not in str(caught.value)
    assert tree_bytes(far) == before
    said: list[str] = []
    assert import_bundle([old], far, allow_older=True, progress=said.append).changed
    assert "of format lockmirror-bundle/1, which records none" in said[0]


# --------------------------------------------------------------------------
# A format after lockmirror-bundle/2: a newer lockmirror's bundle
# --------------------------------------------------------------------------


def test_a_bundle_of_a_newer_format_says_so_and_how_to_read_it(
        far: Path, newer: BundleResult, tmp_path: Path) -> None:
    """``lockmirror-bundle/3`` was refused as "not a lockmirror bundle.json: format is
    'lockmirror-bundle/3', expected 'lockmirror-bundle/2'" (/1 reads too), with no
    remedy. It is a newer lockmirror's: the line says so, which formats this one reads,
    where to get the tool that reads it, and that nothing was changed."""
    future = repack(newer.path, tmp_path / "v3" / "future.tar", _forged(
        lambda info: replace(info, format_read="lockmirror-bundle/3")))
    before = tree_bytes(far)
    with pytest.raises(BundleFormatError) as caught:
        import_bundle([future], far)
    assert caught.value.message == (
        "made by a newer lockmirror (format lockmirror-bundle/3; this one reads "
        "lockmirror-bundle/1 and lockmirror-bundle/2)")
    assert caught.value.where is not None and caught.value.where.endswith("/bundle.json")
    assert caught.value.hint == (
        "install lockmirror from that bundle's tool/ (a delta's: the newest full bundle's), "
        "as the README's 'Across the air gap' says, and read it with that; refusing the "
        "whole bundle; nothing was changed")
    done = _cli("import", str(future), "--into", str(far))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "made by a newer lockmirror" in done.stderr and "expected" not in done.stderr
    assert tree_bytes(far) == before
    # what is no lockmirror format at all is still said to be none
    odd = repack(newer.path, tmp_path / "odd" / "odd.tar", _forged(
        lambda info: replace(info, format_read="lockmirror-bundle/2b")))
    with pytest.raises(BundleFormatError, match="not a lockmirror bundle.json: format is "
                       "'lockmirror-bundle/2b', expected 'lockmirror-bundle/1' or "
                       "'lockmirror-bundle/2'"):
        import_bundle([odd], far)


# --------------------------------------------------------------------------
# A delta onto a /1 bundle: the far side may still run the lockmirror that wrote it
# --------------------------------------------------------------------------


def _older_base(base: Path, delta: str) -> str:
    return (f"the base bundle {base.name} was written by an older lockmirror (format "
            f"lockmirror-bundle/1); a far side still on that lockmirror refuses this delta "
            f"(lockmirror-bundle/2), so it needs this lockmirror first: {delta}")


def test_a_delta_onto_a_format_1_bundle_says_the_far_side_needs_this_tool_first(
        newer: BundleResult, tmp_path: Path) -> None:
    """``bundle --since`` a /1 bundle wrote a /2 delta with no tool/ in silence, which
    the far side's older lockmirror then refused. The stage's notes say so; a base of
    format /2, a manifest.json or a mirror directory says nothing."""
    old = _format_1(newer.path, tmp_path / "v1" / "old.tar")
    v2 = tmp_path / "v2"
    shutil.copytree(tmp_path / "newer", v2)
    (v2 / "dist-index" / "simple" / "index.html").write_bytes(b"<a href='gamma/'>gamma</a>\n")
    write_tree(v2 / "dist-index", {})  # manifest.json again
    delta = bundle(v2, tmp_path / "out-delta", since=old)
    assert delta.kind == "delta" and delta.tool_wheels == 0
    assert delta.notes == (_older_base(old, "from a full bundle's tool/ (this delta carries "
                                            "none; --tool adds it)"),)
    for since in (newer.path, tmp_path / "newer" / "dist-index",
                  tmp_path / "newer" / "dist-index" / "manifest.json"):
        assert bundle(v2, tmp_path / "out-other", since=since).notes == ()


def test_a_delta_onto_a_mirror_an_older_lockmirror_imported_says_so_too(
        far: Path, newer: BundleResult, tmp_path: Path) -> None:
    """``bundle --since DIR``, DIR a mirror a lockmirror from before format /2 imported,
    wrote the /2 delta in silence, which that lockmirror refuses ("format is
    'lockmirror-bundle/2', expected 'lockmirror-bundle/1'"). Its ``.lockmirror/`` as
    that lockmirror left it (bundle-manifest.sha256, bundle-name, mirror.yaml: no
    bundle-time, no manifest.sha256) gets the note, by the directory or its
    manifest.json; a mirror this lockmirror imported gets none."""
    assert bundle(tmp_path / "newer", tmp_path / "out-this", since=far).notes == ()
    for record in ("bundle-time", "manifest.sha256"):
        (far / ".lockmirror" / record).unlink()
    note = (f"the base mirror {far} was imported by an older lockmirror (its .lockmirror/ "
            "records no bundle-time); a far side still on that lockmirror may refuse this "
            "delta (lockmirror-bundle/2; one from before that format does), so it needs "
            "this lockmirror first: ")
    for since in (far, far / "manifest.json"):
        delta = bundle(tmp_path / "newer", tmp_path / f"out-{since.name}", since=since)
        assert delta.kind == "delta" and delta.notes == (
            note + "from a full bundle's tool/ (this delta carries none; --tool adds it)",)
    with_tool = bundle(tmp_path / "newer", tmp_path / "out-tool", since=far, tool=True)
    assert with_tool.notes == (note + "this delta carries it in tool/",)


def test_both_front_doors_print_the_delta_note(
        mirror: LoadedConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    """``lockmirror bundle --since`` prints the stage's notes (the pipeline no longer
    replaces them with retention's); ``doit bundle`` prints the same ``notes`` (it makes
    no delta: doit_tasks._bundle)."""
    full = cli_bundle(mirror, tmp_path / "dist-f", "2024-10-10T12:00:00Z")
    old = _format_1(full, tmp_path / "v1" / "old.tar")
    capsys.readouterr()
    assert main(["bundle", "--config", str(mirror.path), "--out", str(tmp_path / "dist-d"),
                 "--since", str(old), "--source-date-epoch", "1700000000",
                 "--now", "2024-10-10T12:00:00Z"]) == 0
    err = capsys.readouterr().err
    assert f"bundle: {_older_base(old, 'from a full bundle')}" in err
    assert "this delta carries none; --tool adds it)" in err


# --------------------------------------------------------------------------
# verify of a mirror an older lockmirror imported: manifest.json itself unchecked
# --------------------------------------------------------------------------


def test_verify_says_when_manifest_json_itself_could_not_be_checked(far: Path) -> None:
    """With no ``.lockmirror/manifest.sha256`` (nor the bundle's manifest to fall back
    on) verify held the tree to ``manifest.json`` and said "every file matches" as if
    the manifest were checked too. The line now says it was not, what that misses and
    how the record starts; with a record, or the bundle's manifest to hold it to, the
    line is as before."""
    plain = f"verify: {far}: every file matches manifest.json\n"
    done = _cli("verify", str(far))
    assert done.returncode == 0 and done.stdout == plain, done.stderr
    (far / ".lockmirror" / "manifest.sha256").unlink()  # held to the bundle's manifest
    assert _cli("verify", str(far)).stdout == plain
    (far / ".lockmirror" / "bundle-manifest.sha256").unlink()  # as an older tool left it
    done = _cli("verify", str(far))
    assert done.returncode == 0 and done.stdout == (
        f"verify: {far}: every file matches manifest.json; manifest.json itself not checked: "
        "no .lockmirror/manifest.sha256 (an older lockmirror imported this mirror); import "
        "its bundle again to start the record\n")
    (far / ".lockmirror" / "bundle-manifest.sha256").write_text("0" * 64 + "\n")
    (far / ".lockmirror" / "quarantine.json").write_text("{}\n")  # an older tool's refresh
    assert "manifest.json itself not checked" in _cli("verify", str(far)).stdout
