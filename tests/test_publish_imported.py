"""Publishing from an imported mirror (the far side's ``publish --from /srv/mirror``):
held to the manifest its last import wrote, as ``lockmirror verify`` holds it."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from helpers import mirror_yaml
from servers import S3Server, UploadServer

from lockmirror.cli import main
from lockmirror.formats.manifest import Entry, Manifest
from lockmirror.stages.bundle import build_bundle
from lockmirror.stages.importer import import_bundle

pytest_plugins = ["servers"]  # the server fixtures, shared by every publish test


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def imported(index_tree: Path, tmp_path: Path) -> Path:
    """``index_tree`` bundled and imported into ``srv/mirror``, as on the far side."""
    mirror_yaml = tmp_path / "build" / "mirror.yaml"
    mirror_yaml.parent.mkdir()
    mirror_yaml.write_text("version: 1\n")
    bundle = build_bundle(index_tree, lockfile_dir=index_tree.parent / "lockfiles",
                          mirror_yaml=mirror_yaml, out_dir=tmp_path / "out", name="fixture",
                          tool=False).path
    mirror = tmp_path / "srv" / "mirror"
    assert import_bundle([bundle], mirror).changed
    assert (mirror / ".lockmirror/manifest.sha256").read_text() == \
        f"{sha256_of(mirror / 'manifest.json')}\n"
    return mirror


def tamper(mirror: Path) -> tuple[str, str]:
    """Alter a wheel (same size) and rewrite its manifest entry to match, as a
    tamperer who knows the format does; the sha256s of manifest.json before and after."""
    before = sha256_of(mirror / "manifest.json")
    manifest = Manifest.read(mirror / "manifest.json")
    wheel = next(rel for rel in sorted(manifest.files) if rel.endswith(".whl"))
    data = bytearray((mirror / wheel).read_bytes())
    data[len(data) // 2] ^= 0x01
    (mirror / wheel).write_bytes(bytes(data))
    manifest.files[wheel] = Entry(hashlib.sha256(data).hexdigest(), len(data))
    manifest.write(mirror / "manifest.json")
    return before, sha256_of(mirror / "manifest.json")


def test_publish_from_an_edited_imported_mirror_is_refused_as_verify_refuses_it(
        imported: Path, index_tree: Path, tmp_path: Path, pypiserver: UploadServer,
        aws_env: S3Server, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A wheel and its manifest entry edited by hand in an imported mirror: verify
    refused the mirror, but publish --from it sent the altered wheel on to every kind
    of destination (found by review). Publish now refuses in verify's one line, naming
    both sha256s and the mirror, before it sends anything, its dry run too; a mirror
    as imported, or without the record (a near-side dist-index), publishes as before."""
    monkeypatch.chdir(tmp_path)  # no mirror.yaml here: the far side
    assert main(["publish", "--from", str(imported), "--to", str(tmp_path / "good"),
                 "--layout", "tree", "-q"]) == 0
    assert not (index_tree / ".lockmirror").exists()  # the near side's index: no record
    assert main(["publish", "--from", str(index_tree), "--to", str(tmp_path / "near"),
                 "--layout", "tree", "-q"]) == 0
    capsys.readouterr()

    recorded, edited = tamper(imported)
    assert main(["verify", str(imported)]) == 1
    [refusal] = capsys.readouterr().err.splitlines()
    assert f"{imported}: manifest.json has sha256 {edited}, not the {recorded} the last " \
           "import recorded (.lockmirror/manifest.sha256)" in refusal

    monkeypatch.setenv("TWINE_USERNAME", pypiserver.username)
    monkeypatch.setenv("TWINE_PASSWORD", pypiserver.password)
    bucket = aws_env.new_bucket()
    web_root = tmp_path / "www"
    for to in ([str(web_root), "--layout", "tree"], [str(tmp_path / "packages")],
               [pypiserver.url], [f"s3://{bucket}/pypi", "--endpoint-url", aws_env.endpoint_url]):
        for dry_run in ([], ["--dry-run"]):
            assert main(["publish", "--from", str(imported), "--to", *to, *dry_run]) == 1, to
            out, err = capsys.readouterr()
            assert out == "" and err.splitlines() == [refusal], to
    assert not web_root.exists() and not (tmp_path / "packages").exists()
    assert pypiserver.packages is not None and list(pypiserver.packages.iterdir()) == []
    assert aws_env.keys(bucket) == {}


@pytest.mark.parametrize("deleted", [".lockmirror/manifest.sha256", ".lockmirror"])
def test_publish_from_an_imported_mirror_without_its_record_says_it_was_not_checked(
        imported: Path, tmp_path: Path, deleted: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An imported mirror whose record of manifest.json is gone (the record alone, or
    the whole .lockmirror/; quarantine.json as a refresh bundle leaves it, so the
    bundle's pin does not hold either): verify says manifest.json itself was not
    checked, and publish --from it said nothing of it (found by review). It says
    verify's words now, its dry run too, -q or not; a mirror with its record does not."""
    monkeypatch.chdir(tmp_path)  # no mirror.yaml here: the far side
    target = str(tmp_path / "packages")
    assert main(["publish", "--from", str(imported), "--to", target]) == 0
    assert "not checked" not in capsys.readouterr().out
    (imported / ".lockmirror/quarantine.json").write_text("{}\n")
    if deleted == ".lockmirror":
        shutil.rmtree(imported / deleted)
    else:
        (imported / deleted).unlink()

    assert main(["verify", str(imported)]) == 0
    [verified] = capsys.readouterr().out.splitlines()
    unchecked = verified.split("every file matches manifest.json; ", 1)[1]
    older = ("manifest.json itself not checked: no .lockmirror/manifest.sha256 (an older "
             "lockmirror imported this mirror); import its bundle again to start the record")
    gone = ("manifest.json itself not checked (no .lockmirror/, as in a copy of a built "
            "index): compare its sha256 with the build's, as publish.yml does, or on a far "
            "side import a bundle into it")
    assert unchecked == (gone if deleted == ".lockmirror" else older), unchecked
    for options in (["--dry-run"], ["-q"]):
        assert main(["publish", "--from", str(imported), "--to", target, *options]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0] == f"publish {imported}: {unchecked}", options


def test_a_copy_of_a_built_index_is_not_said_to_be_an_older_import(
        index_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``cp -r dist-index elsewhere``: no index state beside it, no ``.lockmirror/`` in
    it. verify and publish --from said an older lockmirror imported it and to import
    its bundle again (found by an outside tester); they say what it may be now, and
    advice that fits a copy and a mirror whose records were deleted alike, in one line
    short enough to read (it was ~600 characters: found by an outside re-tester)."""
    monkeypatch.chdir(tmp_path)
    copy = tmp_path / "elsewhere" / "dist-index"
    shutil.copytree(index_tree, copy)
    says = ("manifest.json itself not checked (no .lockmirror/, as in a copy of a built "
            "index): compare its sha256 with the build's, as publish.yml does, or on a far "
            "side import a bundle into it")
    assert len(says) < 200
    assert main(["verify", str(copy)]) == 0
    assert capsys.readouterr().out == f"verify: {copy}: every file matches manifest.json; {says}\n"
    assert main(["publish", "--from", str(copy), "--to", str(tmp_path / "packages")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"publish {copy}: {says}"
    assert "older lockmirror" not in "\n".join(out)
    assert main(["verify", str(index_tree)]) == 0  # where it was built: nothing to add
    assert capsys.readouterr().out == f"verify: {index_tree}: every file matches manifest.json\n"
    # verify checks a mirror, not the config: a broken mirror.yaml where it runs is no project
    (tmp_path / "mirror.yaml").write_text("version: [\n")
    assert main(["verify", str(copy)]) == 0
    assert capsys.readouterr().out == f"verify: {copy}: every file matches manifest.json; {says}\n"


def test_publishing_the_projects_own_index_copy_says_how_its_manifest_is_checked(
        index_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What a CI publish job holds: the project's dist-index/ downloaded as an artifact,
    without the index state beside it. `publish --to DEST` (and `--from` it) told the
    operator to import a bundle into the build-side index (found by an outside tester);
    it says the manifest is held to its sha256 where that is checked, and how; so does
    `lockmirror verify dist-index`, the workflows' check of it."""
    project = tmp_path / "project"
    shutil.copytree(index_tree, project / "dist-index")
    (project / "mirror.yaml").write_text(mirror_yaml("http://127.0.0.1:9/simple/",
                                                     {"core": ["alpha"]}), encoding="utf-8")
    monkeypatch.chdir(project)
    says = ("manifest.json itself not checked (the project's index without its index state, "
            "as a CI job holds it): compare its sha256 with the build's, as publish.yml does")
    for source in ([], ["--from", "dist-index"]):
        assert main(["publish", *source, "--to", str(tmp_path / "packages")]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].endswith(f": {says}"), out[0]
        assert "import" not in out[0]
    # verify says it as publish does (it said a copy or a far-side mirror, import a bundle)
    assert main(["verify", "dist-index"]) == 0
    assert capsys.readouterr().out == f"verify: dist-index: every file matches manifest.json; {says}\n"
    monkeypatch.chdir(tmp_path)
    assert main(["verify", "--config", str(project / "mirror.yaml"),
                 str(project / "dist-index")]) == 0
    assert capsys.readouterr().out.endswith(f"; {says}\n")
