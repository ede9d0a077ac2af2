"""Publishing into a directory: a pypiserver package directory (flat) or a web root (tree)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import dead_pid, left_by_killed_run
from servers import UploadServer, pip_install
from test_publish_s3 import tree_with_a_fifo

from lockmirror.cli import main
from lockmirror.config_schema import DirectoryDestination
from lockmirror.errors import IntegrityError, PublishError
from lockmirror.formats.manifest import Entry, Manifest, check_tree, scan_tree
from lockmirror.fsutil import CHUNK, sha256_bytes
from lockmirror.publish import publish

pytest_plugins = ["servers"]  # the server fixtures, shared by every publish test


def artifacts(tree: Path) -> list[str]:
    return sorted(path.rsplit("/", 1)[-1] for path in Manifest.read(tree / "manifest.json").files
                  if path.startswith("files/") and not path.endswith(".metadata"))


def flat(path: Path) -> DirectoryDestination:
    return DirectoryDestination(kind="directory", path=str(path))


def test_flat_into_pypiserver_then_pip_installs_and_noop_hashes_nothing(
        pypiserver: UploadServer, index_tree: Path, tmp_path: Path) -> None:
    assert pypiserver.packages is not None
    result = publish(index_tree, flat(pypiserver.packages))
    assert len(result.uploaded) == len(artifacts(index_tree))
    assert sorted(p.name for p in pypiserver.packages.iterdir() if not p.name.startswith(".")) \
        == artifacts(index_tree)
    credentials = f"{pypiserver.username}:{pypiserver.password}@"
    pip_install(tmp_path / "site", ["beta", "native"],
                index_url=pypiserver.simple_url.replace("http://", f"http://{credentials}"))
    assert (tmp_path / "site" / "beta").is_dir()

    mtimes = {p.name: p.stat().st_mtime_ns for p in pypiserver.packages.iterdir()}
    again = publish(index_tree, flat(pypiserver.packages))
    assert again.summary() == f"0 uploaded (0 B), {len(artifacts(index_tree))} already present"
    assert {p.name: p.stat().st_mtime_ns for p in pypiserver.packages.iterdir()} == mtimes


def test_tree_layout_is_a_static_index_pip_can_use(index_tree: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    web_root = tmp_path / "www"
    monkeypatch.chdir(tmp_path)  # no mirror.yaml here: the far side
    assert main(["publish", "--to", str(web_root), "--layout", "tree", "--from",
                 str(index_tree), "-q"]) == 0
    assert "0 already present" in capsys.readouterr().out
    report = check_tree(web_root, Manifest.read(web_root / "manifest.json"))
    assert report.ok and report.temporary == ()  # its state in .lockmirror/ is not unexpected
    assert sorted(p.name for p in (web_root / ".lockmirror").iterdir()) == ["lock", "receipt.json"]
    assert (web_root / "manifest.json").read_bytes() == (index_tree / "manifest.json").read_bytes()
    pip_install(tmp_path / "site", ["beta"], index_url=(web_root / "simple").as_uri() + "/")
    assert (tmp_path / "site" / "alpha").is_dir()


def test_identical_files_without_a_receipt_are_hashed_and_kept(index_tree: Path,
                                                               tmp_path: Path) -> None:
    target = tmp_path / "packages"
    target.mkdir()
    wheel = index_tree / "files" / "beta" / "beta-1.0-py3-none-any.whl"
    shutil.copyfile(wheel, target / wheel.name)
    os.utime(target / wheel.name, ns=(1, 1))
    result = publish(index_tree, flat(target))
    assert f"files/beta/{wheel.name}" in {item.source for item in result.plan.present}
    assert (target / wheel.name).stat().st_mtime_ns == 1


def without_an_artifact(index_tree: Path, into: Path) -> tuple[Path, str]:
    """A copy of ``index_tree`` lacking one artifact (its manifest rewritten): the
    index after a release was dropped. Returns the copy and the artifact's path."""
    shutil.copytree(index_tree, into)
    dropped = next(path for path in sorted(Manifest.read(into / "manifest.json").files)
                   if path.startswith("files/alpha/") and path.endswith(".whl"))
    (into / dropped).unlink()
    scan_tree(into).write(into / "manifest.json")
    return into, dropped


def test_prune_removes_what_the_index_dropped(index_tree: Path, tmp_path: Path) -> None:
    target = tmp_path / "www"
    tree = DirectoryDestination(kind="directory", path=str(target), layout="tree")
    smaller, dropped = without_an_artifact(index_tree, tmp_path / "smaller")
    publish(index_tree, tree)
    kept = publish(smaller, tree)
    assert kept.plan.stale == (dropped,) and kept.deleted == ()
    pruned = publish(smaller, tree, prune=True)
    assert pruned.deleted == (dropped,) and not (target / dropped).exists()
    packages = tmp_path / "packages"
    publish(index_tree, flat(packages))
    name = dropped.rsplit("/", 1)[-1]
    assert publish(smaller, flat(packages), prune=True).deleted == (name,)


def test_prune_leaves_files_lockmirror_did_not_write(index_tree: Path, tmp_path: Path) -> None:
    """A file put there by hand is not lockmirror's: --prune leaves it and the plan
    names it apart (found by an outside tester: prune deleted a foreign wheel)."""
    target = tmp_path / "www"
    tree = DirectoryDestination(kind="directory", path=str(target), layout="tree")
    publish(index_tree, tree)
    (target / "files" / "old").mkdir()
    (target / "files" / "old" / "old-0.1.tar.gz").write_bytes(b"old")
    pruned = publish(index_tree, tree, prune=True)
    assert pruned.deleted == () and pruned.plan.foreign == ("files/old/old-0.1.tar.gz",)
    assert (target / "files" / "old" / "old-0.1.tar.gz").is_file()
    packages = tmp_path / "packages"
    packages.mkdir()
    (packages / "stranger-1.0.tar.gz").write_bytes(b"x")
    (packages / "README.txt").write_text("not an artifact: never pruned")
    (packages / ".hidden-1.0.tar.gz").write_bytes(b"hidden, not a temporary file: never pruned")
    result = publish(index_tree, flat(packages), prune=True)
    assert result.deleted == () and result.plan.foreign == ("stranger-1.0.tar.gz",)
    again = publish(index_tree, flat(packages), prune=True)  # still not ours the next time
    assert again.deleted == () and again.plan.foreign == ("stranger-1.0.tar.gz",)
    assert all((packages / name).is_file()
               for name in ("stranger-1.0.tar.gz", "README.txt", ".hidden-1.0.tar.gz"))


def test_a_corrupt_source_file_in_a_flat_publish_names_no_pages(index_tree: Path,
                                                                  tmp_path: Path) -> None:
    """A flat directory has no pages: the hint says the file was not copied and those
    copied before it are served (it said "the destination's pages were left")."""
    source = tmp_path / "tree"
    shutil.copytree(index_tree, source)
    wheel = source / "files" / "speedup" / "speedup-1.2-py3-none-any.whl"
    size = wheel.stat().st_size
    wheel.unlink()  # a hard link into the store: replace, never write through it
    wheel.write_bytes(bytes(size))
    with pytest.raises(IntegrityError, match="speedup-1.2-py3-none-any.whl: does not match") \
            as caught:
        publish(source, flat(tmp_path / "packages"))
    assert str(caught.value).endswith("(rebuild or re-import the index; it was not copied, "
                                      "and a flat directory has no pages: the files copied "
                                      "before it are served)")
    assert not (tmp_path / "packages" / wheel.name).exists()


def test_a_corrupt_source_file_stops_before_the_pages(index_tree: Path, tmp_path: Path) -> None:
    source = tmp_path / "tree"
    shutil.copytree(index_tree, source)
    wheel = source / "files" / "speedup" / "speedup-1.2-py3-none-any.whl"
    data = wheel.read_bytes()
    wheel.unlink()  # a hard link into the store: replace, never write through it
    wheel.write_bytes(bytes(len(data)))
    target = tmp_path / "www"
    with pytest.raises(IntegrityError, match="speedup-1.2-py3-none-any.whl: does not match") \
            as caught:
        publish(source, DirectoryDestination(kind="directory", path=str(target), layout="tree"))
    assert str(caught.value).endswith("(rebuild or re-import the index; the destination's "
                                      "pages were left as they were)")
    assert not (target / "simple").exists() and not (target / "manifest.json").exists()
    assert not (target / "files" / "speedup").exists() or not any(
        (target / "files" / "speedup").iterdir())
    assert not [p for p in target.rglob("*.tmp")]
    # the receipt kept what was copied: a good tree completes the rest
    again = publish(index_tree, DirectoryDestination(kind="directory", path=str(target),
                                                     layout="tree"))
    assert "files/alpha/alpha-1.1-py3-none-any.whl" in {i.path for i in again.plan.present}
    assert check_tree(target, Manifest.read(target / "manifest.json")).missing == ()


def publish_config(tmp_path: Path, index_tree: Path, destinations: str) -> Path:
    """mirror.yaml publishing ``index_tree`` to ``destinations`` (the lines of its
    ``publish:`` section, indented by two)."""
    config = tmp_path / "mirror.yaml"
    config.write_text(f"""\
version: 1
sources: [{{name: pypi, url: "https://pypi.org/simple/"}}]
targets: {{host: {{python: "3.11", platforms: [manylinux_2_28_x86_64]}}}}
sets: {{core: {{requirements: [beta]}}}}
paths: {{index: "{index_tree}"}}
publish:
{destinations}""")
    return config


def test_cli_publishes_to_every_configured_destination_or_one(
        index_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = publish_config(tmp_path, index_tree, """\
  web: {kind: directory, path: www, layout: tree}
  pypiserver-dir: {kind: directory, path: packages}
""")
    assert main(["publish", "--config", str(config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "publish pypiserver-dir" in out and "publish web" in out and "dry run" in out
    assert not (tmp_path / "www").exists()
    assert main(["publish", "--config", str(config)]) == 0
    assert (tmp_path / "www" / "manifest.json").is_file()  # relative to mirror.yaml
    assert len(list((tmp_path / "packages").glob("*.whl"))) == len(
        [a for a in artifacts(index_tree) if a.endswith(".whl")])
    capsys.readouterr()
    assert main(["publish", "--config", str(config), "--to", "web"]) == 0
    assert "publish web" in capsys.readouterr().out
    assert main(["publish", "--config", str(config), "--to", "nope"]) == 2  # bad input
    assert "no publish destination named 'nope' (defined: pypiserver-dir, web)" in \
        capsys.readouterr().err


def test_every_destination_is_tried_when_one_fails(
        index_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`lockmirror publish` (every destination): one destination failing is said in
    its one line, the ones after it are still published, a last line names the
    failed ones and the exit status is 1 (found by an outside tester: the later
    destinations were silently never tried)."""
    config = publish_config(tmp_path, index_tree, """\
  a-web: {kind: directory, path: www, layout: tree}
  b-broken: {kind: directory, path: not-a-directory}
  c-packages: {kind: directory, path: packages}
  d-broken: {kind: directory, path: also-not-a-directory}
""")
    for name in ("not-a-directory", "also-not-a-directory"):
        (tmp_path / name).write_text("a file")
    assert main(["publish", "--config", str(config), "-q"]) == 1
    captured = capsys.readouterr()
    assert [line.split(" (")[0] for line in captured.out.splitlines()] == [
        "publish a-web", "publish c-packages"]
    assert captured.err.splitlines() == [
        f"lockmirror: error: {tmp_path / 'not-a-directory'}: is not a directory",
        f"lockmirror: error: {tmp_path / 'also-not-a-directory'}: is not a directory",
        "lockmirror: error: publish failed for 2 of 4 destinations: b-broken, d-broken "
        "(the others were published; see the errors above)"]
    assert (tmp_path / "www" / "manifest.json").is_file()
    assert len(list((tmp_path / "packages").glob("*.whl"))) == len(
        [a for a in artifacts(index_tree) if a.endswith(".whl")])
    # one destination named: its error is the command's, as before
    assert main(["publish", "--config", str(config), "--to", "b-broken", "-q"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"lockmirror: error: {tmp_path / 'not-a-directory'}: is not a directory"]


def test_prune_and_verify_handle_what_a_killed_publish_left(
        index_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A publish SIGKILLed mid-copy leaves a temporary file: verify names it apart
    and passes, ``--prune`` removes it, and a stranger's hidden file stays."""
    # an empty file that is a FIFO: the copy opens its temporary file, then blocks
    source = tree_with_a_fifo(index_tree, tmp_path / "tree")
    web_root = tmp_path / "www"
    child = subprocess.Popen([sys.executable, "-m", "lockmirror", "publish", "--to",
                              str(web_root), "--layout", "tree", "--from", str(source), "-q"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):  # wait (at most ~60 s) for the blocked copy's temporary file
            leftovers = list((web_root / "files" / "zzz").glob(".*.tmp")) \
                if (web_root / "files" / "zzz").is_dir() else []
            if leftovers or child.poll() is not None:
                break
            time.sleep(0.1)
    finally:
        child.kill()
        child.wait()
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".zzz-0.1.tar.gz.")

    assert main(["publish", "--to", str(web_root), "--layout", "tree", "--from",
                 str(index_tree), "-q"]) == 0  # complete, no --prune: the leftover stays
    leftover = leftovers[0].relative_to(web_root).as_posix()
    report = check_tree(web_root, Manifest.read(web_root / "manifest.json"))
    assert report.ok and report.temporary == (leftover,)
    capsys.readouterr()
    assert main(["verify", str(web_root)]) == 0
    assert f"leftover: {web_root / leftover} (an interrupted write" in capsys.readouterr().out
    # an interrupted publish's new file: the way out named is this tree's (found by an
    # outside tester: verify told to re-import a bundle or rebuild an index)
    (web_root / "files" / "new.whl").write_bytes(b"n")
    assert main(["verify", str(web_root)]) == 1
    assert "verify: to repair a published directory: publish to it again" in \
        capsys.readouterr().out
    (web_root / "files" / "new.whl").unlink()
    (web_root / ".notes.tmp").write_text("a stranger's hidden file: not ours")

    pruned = publish(index_tree, DirectoryDestination(kind="directory", path=str(web_root),
                                                      layout="tree"), prune=True)
    assert leftover in pruned.deleted
    assert not (web_root / "files" / "zzz").exists()
    assert (web_root / ".notes.tmp").is_file()
    report = check_tree(web_root, Manifest.read(web_root / "manifest.json"))
    assert report.temporary == () and report.unexpected == (".notes.tmp",)  # not ours: named


def test_prune_removes_leftover_temporary_files_in_a_flat_directory(index_tree: Path,
                                                                    tmp_path: Path) -> None:
    packages = tmp_path / "packages"
    publish(index_tree, flat(packages))
    wheel = artifacts(index_tree)[0]
    (packages / f".{wheel}.a1b2c3d4.tmp").write_bytes(b"half a wheel")
    (packages / ".lockmirror" / ".receipt.json.zz9_x0y1.tmp").write_text("{")
    (packages / ".bashrc.a1b2c3d4.tmp").write_text("not an artifact's: never pruned")
    kept = publish(index_tree, flat(packages))
    assert kept.deleted == () and f".{wheel}.a1b2c3d4.tmp" in kept.plan.stale
    pruned = publish(index_tree, flat(packages), prune=True)
    assert sorted(pruned.deleted) == sorted([".lockmirror/.receipt.json.zz9_x0y1.tmp",
                                             f".{wheel}.a1b2c3d4.tmp"])
    assert (packages / ".bashrc.a1b2c3d4.tmp").is_file()
    assert (packages / ".lockmirror" / "receipt.json").is_file()


def test_a_destination_that_is_a_file_is_refused_in_one_line(index_tree: Path,
                                                             tmp_path: Path) -> None:
    target = tmp_path / "packages"
    target.write_bytes(b"a file, not a directory")
    with pytest.raises(PublishError) as caught:
        publish(index_tree, flat(target))
    assert str(caught.value) == f"{target}: is not a directory"
    assert target.read_bytes() == b"a file, not a directory"


def test_a_file_where_the_tree_needs_a_directory_is_named(index_tree: Path,
                                                          tmp_path: Path) -> None:
    web_root = tmp_path / "www"
    web_root.mkdir()
    (web_root / "simple").write_bytes(b"in the way")
    tree = DirectoryDestination(kind="directory", path=str(web_root), layout="tree")
    with pytest.raises(PublishError) as caught:
        publish(index_tree, tree)
    assert re.fullmatch(re.escape(str(web_root / "simple")) + r"/\S+: cannot read \(Not a directory\)",
                        str(caught.value)), str(caught.value)
    assert (web_root / "simple").read_bytes() == b"in the way"


def test_a_file_of_another_size_is_copied_again_and_the_rest_still_planned(
        index_tree: Path, tmp_path: Path) -> None:
    packages = tmp_path / "packages"
    publish(index_tree, flat(packages))
    first = artifacts(index_tree)[0]  # planned first: the others come after it
    good = (packages / first).read_bytes()
    (packages / first).unlink()
    (packages / first).write_bytes(good[:-1])  # a cut copy: another size, hashing not needed
    result = publish(index_tree, flat(packages))
    assert result.plan.destination == str(packages)
    assert result.uploaded == (first,)
    assert len(result.plan.present) == len(artifacts(index_tree)) - 1
    assert (packages / first).read_bytes() == good


def test_a_file_larger_than_one_read_is_copied_whole(index_tree: Path, tmp_path: Path) -> None:
    source = tmp_path / "tree"
    shutil.copytree(index_tree, source)
    data = bytes(range(256)) * (5 * CHUNK // 2 // 256 + 1)  # two and a half reads
    manifest = Manifest.read(source / "manifest.json")
    manifest.files["files/big/big-1.0.tar.gz"] = Entry(sha256=sha256_bytes(data), size=len(data))
    manifest.write(source / "manifest.json")
    (source / "files" / "big").mkdir()
    (source / "files" / "big" / "big-1.0.tar.gz").write_bytes(data)
    packages = tmp_path / "packages"
    result = publish(source, flat(packages))
    assert "big-1.0.tar.gz" in result.uploaded
    assert (packages / "big-1.0.tar.gz").read_bytes() == data


def test_prune_in_a_tree_keeps_hidden_files_and_directories(index_tree: Path,
                                                           tmp_path: Path) -> None:
    web_root = tmp_path / "www"
    tree = DirectoryDestination(kind="directory", path=str(web_root), layout="tree")
    publish(index_tree, tree)
    theirs = [".htaccess", ".git/config", ".well-known/security.txt",
              "files/.cache/entry", "files/.keep"]
    for name in theirs:
        (web_root / name).parent.mkdir(parents=True, exist_ok=True)
        (web_root / name).write_text("the web server's, not lockmirror's")
    pruned = publish(index_tree, tree, prune=True)
    assert pruned.plan.stale == () and pruned.deleted == ()
    assert all((web_root / name).is_file() for name in theirs)


def test_a_directory_in_an_artifacts_place_is_named_and_nothing_else_changes(
        index_tree: Path, tmp_path: Path) -> None:
    packages = tmp_path / "packages"
    first = artifacts(index_tree)[0]
    (packages / first).mkdir(parents=True)
    with pytest.raises(PublishError) as caught:
        publish(index_tree, flat(packages))
    assert re.fullmatch(re.escape(f"{packages / first}: cannot write (") + r"[A-Z][a-z ]+\)",
                        str(caught.value)), str(caught.value)
    assert (packages / first).is_dir() and not list(packages.glob("*.tmp"))


def test_a_dry_run_counts_what_it_would_delete_and_keep_apart(
        capsys: pytest.CaptureFixture[str]) -> None:
    """--drop-sets without --prune deletes the dropped set's files and keeps the
    other stale ones: the dry run says both numbers, as the real run does."""
    from lockmirror.commands.publish import _print_plan
    from lockmirror.publish.tree import Plan, PublishResult

    plan = Plan("www", upload=(), present=(), stale=("a", "b", "c"), delete=("a",))
    _print_plan("www", PublishResult("www", plan, dry_run=True))
    out = capsys.readouterr().out
    assert "  stale, would delete: 1\n" in out
    assert "  stale, would keep (no --prune): 2\n" in out


def test_a_flat_directory_counts_its_wheels_as_files(index_tree: Path, tmp_path: Path) -> None:
    events: list[str] = []
    publish(index_tree, flat(tmp_path / "packages"), progress=lambda e: events.append(e.message))
    assert any(m.startswith("copying ") and m.split(" (")[0].endswith("files") for m in events)
    assert not any("document" in m for m in events), events


def test_prune_names_what_it_deletes_in_the_plan_and_the_run(
        index_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Deletions are never silent: the dry run lists them (the first ten without -v),
    the run says which it deleted (found by an outside tester: only a count)."""
    from lockmirror.commands.publish import _print_plan
    from lockmirror.publish.tree import Plan, PublishResult

    monkeypatch.chdir(tmp_path)
    smaller, dropped = without_an_artifact(index_tree, tmp_path / "smaller")
    name = dropped.rsplit("/", 1)[-1]
    packages = tmp_path / "packages"
    assert main(["publish", "--to", str(packages), "--from", str(index_tree), "-q"]) == 0
    (packages / "theirs-1.0-py3-none-any.whl").write_bytes(b"a wheel copied in by hand")
    base = ["publish", "--to", str(packages), "--from", str(smaller), "--prune"]
    capsys.readouterr()
    assert main([*base, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"  stale, would delete: 1\n    {name}\n" in out
    assert "  not lockmirror's: left in place: 1 (theirs-1.0-py3-none-any.whl)\n" in out
    assert main(base) == 0
    out = capsys.readouterr().out
    assert f"publish {packages}: deleted 1: {name}\n" in out
    assert "not lockmirror's: left in place: 1 (theirs-1.0-py3-none-any.whl)" in out
    assert (packages / "theirs-1.0-py3-none-any.whl").is_file()

    many = tuple(f"f{i:02}.whl" for i in range(13))
    _print_plan("www", PublishResult("www", Plan("www", (), (), stale=many, delete=many),
                                     dry_run=True))
    out = capsys.readouterr().out
    assert "    f09.whl\n    and 3 more (-v names every one)\n" in out and "f10" not in out
    _print_plan("www", PublishResult("www", Plan("www", (), (), stale=many, delete=many),
                                     dry_run=True), verbose=True)
    assert "    f12.whl\n" in capsys.readouterr().out


def test_publish_from_a_bundle_says_what_it_checked_of_the_signature_as_import_does(
        index_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``publish --from BUNDLE`` words the signature as ``import`` does: not checked
    without --pubkey, verified with it; another key's or an unsigned bundle is refused
    with import's words, nothing published (found by an outside tester: a signed
    bundle published with nothing said of its unchecked signature)."""
    from lockmirror.formats import signing
    from lockmirror.stages.bundle import build_bundle

    public = signing.generate_keypair(tmp_path / "keys" / "release")
    other = signing.generate_keypair(tmp_path / "keys" / "intruder")
    mirror_yaml = tmp_path / "build" / "mirror.yaml"
    mirror_yaml.parent.mkdir()
    mirror_yaml.write_text("version: 1\n")

    def built(out: str, key: Path | None) -> Path:
        return build_bundle(index_tree, lockfile_dir=index_tree.parent / "lockfiles",
                            mirror_yaml=mirror_yaml, out_dir=tmp_path / out, name="fixture",
                            tool=False, key=key).path

    signed, unsigned = built("signed", tmp_path / "keys" / "release"), built("unsigned", None)
    monkeypatch.chdir(tmp_path)  # no mirror.yaml here: the far side
    count = len(artifacts(index_tree))

    def published(bundle: Path, *pubkey: str) -> str:
        packages = tmp_path / "packages" / f"{bundle.parent.name}{len(pubkey)}"
        assert main(["publish", "--to", str(packages), "--from", str(bundle), "-q",
                     *pubkey]) == 0
        assert len(list(packages.iterdir())) == count + 1  # and .lockmirror/
        return capsys.readouterr().out

    fingerprint = signing.fingerprint(signing.load_public_key(public))
    assert "every file verified; carries a signature, NOT checked: who made it is unknown " \
           "(give --pubkey)" in published(signed)
    assert f"every file verified; signature by {fingerprint} verified" in \
        published(signed, "--pubkey", str(public))
    assert "every file verified; unsigned" in published(unsigned)

    refused = {(signed, other): "signed by key SHA256:.*, not by the trusted key",
               (unsigned, public): "bundle is not signed, but a public key was given"}
    for (bundle, key), words in refused.items():
        packages = tmp_path / "refused"
        assert main(["publish", "--to", str(packages), "--from", str(bundle), "-q",
                     "--pubkey", str(key)]) == 1
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.splitlines()) == 1
        assert re.search(words, captured.err) and not packages.exists()


def test_verify_of_a_directory_publish_without_a_manifest_says_what_it_is(
        index_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A flat publish has no manifest.json: verify says it is one and how to compare it
    with its index, not 'import a bundle into it' (found by an outside tester); a tree
    publish whose manifest is missing (interrupted) is told to publish again."""
    monkeypatch.chdir(tmp_path)  # no mirror.yaml here: the far side
    packages = tmp_path / "packages"
    publish(index_tree, flat(packages))
    assert main(["verify", str(packages)]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"lockmirror: error: {packages}: is a flat directory publish (artifacts only, as "
        "pypiserver serves them): it has no manifest.json, which verify checks a tree against "
        f"(compare it with its index: lockmirror publish --from DIST-INDEX-OR-BUNDLE --to "
        f"{packages} --dry-run ('upload total: 0': every file is there as published; a file "
        "missing or changed since the publish is counted to upload); a --layout tree publish "
        "verifies)\n")
    # what the hint says to run: a dry run against the index, 0 to upload, then 1
    assert main(["publish", "--from", str(index_tree), "--to", str(packages), "--dry-run"]) == 0
    assert "  upload total: 0 (0 B)" in capsys.readouterr().out.splitlines()
    next(packages.glob("*.whl")).unlink()
    assert main(["publish", "--from", str(index_tree), "--to", str(packages), "--dry-run"]) == 0
    assert "  upload total: 1 (" in capsys.readouterr().out

    web_root = tmp_path / "www"
    publish(index_tree, DirectoryDestination(kind="directory", path=str(web_root),
                                             layout="tree"))
    (web_root / "manifest.json").unlink()
    assert main(["verify", str(web_root)]) == 1
    err = capsys.readouterr().err
    assert "is a directory publish (tree layout) without its manifest.json" in err
    assert "(publish to it again, then verify it)" in err and "import" not in err

    # a receipt that does not read says so, not "a flat directory publish"
    (web_root / ".lockmirror/receipt.json").write_text("{not json", encoding="utf-8")
    assert main(["verify", str(web_root)]) == 1
    err = capsys.readouterr().err
    assert "is a directory publish whose receipt (.lockmirror/receipt.json) does not read" in err
    assert "flat" not in err and len(err.splitlines()) == 1


def test_a_hand_placed_wheel_of_the_same_name_is_a_conflict_not_overwritten(
        index_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A wheel lockmirror did not put there, with other bytes under an index file's
    name, is refused as the upload API refuses it: named with both sha256s, left as it
    is, the other files copied, no page (found by an outside tester: it was overwritten
    silently, "1 uploaded, 19 already present"). A flat directory has no pages to leave:
    its hint says the file there is served as it is (it said "the pages were left")."""
    name = "beta-1.0-py3-none-any.whl"
    ours = Manifest.read(index_tree / "manifest.json").files[f"files/beta/{name}"].sha256
    for layout, path in (("flat", name), ("tree", f"files/beta/{name}")):
        root = tmp_path / layout
        (root / path).parent.mkdir(parents=True)
        (root / path).write_bytes(b"a hand-made wheel")
        dest = DirectoryDestination(kind="directory", path=str(root),
                                    layout="tree" if layout == "tree" else "flat")
        with pytest.raises(PublishError) as caught:
            publish(index_tree, dest)
        text = str(caught.value)
        assert text.startswith(f"{root}: 1 file not published (") and "\n" not in text
        assert f"{path}: the destination holds other bytes under this name (sha256 " \
               f"{sha256_bytes(b'a hand-made wheel')}; the index has sha256 {ours})" in text
        assert "remove it from the destination if it is not needed" in text
        assert text.endswith("a flat directory has no pages: the file there is served as it "
                             "is)" if layout == "flat" else "the pages were left as they were)")
        assert (root / path).read_bytes() == b"a hand-made wheel"
        assert (root / ("alpha-1.1-py3-none-any.whl" if layout == "flat"
                        else "files/alpha/alpha-1.1-py3-none-any.whl")).is_file()
        if layout == "tree":
            assert not (root / "simple").exists()  # no page links the conflicting file
        assert main(["publish", "--to", str(root), "--from", str(index_tree), "--dry-run",
                     "--layout", layout]) == 1
        assert f"  CONFLICT: {path}: the destination holds other bytes" in capsys.readouterr().out


def test_the_next_publish_of_a_bundle_removes_what_a_killed_one_left(
        index_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``publish --from BUNDLE`` imports the bundle into ``$TMPDIR/lockmirror-publish-*``;
    one killed by ``kill -9`` left it there for good, "to delete by hand" (the whole
    mirror, each time: found by an outside tester). The next publish of a bundle removes
    it, saying so, and its own; a living publish's directory stays."""
    import tempfile

    from lockmirror.stages.bundle import build_bundle

    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    mirror_yaml = tmp_path / "build" / "mirror.yaml"
    mirror_yaml.parent.mkdir()
    mirror_yaml.write_text("version: 1\n")
    bundle = build_bundle(index_tree, lockfile_dir=index_tree.parent / "lockfiles",
                          mirror_yaml=mirror_yaml, out_dir=tmp_path / "dist", name="fixture",
                          tool=False).path
    killed = left_by_killed_run(root, f"lockmirror-publish-{dead_pid()}-k1ll3d_x")
    living = left_by_killed_run(root, f"lockmirror-publish-{os.getppid()}-al1ve")
    monkeypatch.chdir(tmp_path)  # no mirror.yaml here: the far side
    assert main(["publish", "--to", str(tmp_path / "packages"), "--from", str(bundle)]) == 0
    captured = capsys.readouterr()
    assert f"removed what killed publishes left: {killed}" in captured.out + captured.err
    assert sorted(root.iterdir()) == [living]
