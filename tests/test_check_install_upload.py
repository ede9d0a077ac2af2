"""check-install --index-url against an upload repository lockmirror published to.

A real pypiserver on 127.0.0.1 serves only its simple pages and packages: no
lockfiles/, constraints/ or manifest.json beside its /simple/. check-install says
so once and installs each set's requirements from it, pinned by the local
dist-index's constraints (what should be there).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtureindex import Catalogue
from servers import UploadServer

from lockmirror.cli import main
from lockmirror.errors import LockmirrorError
from lockmirror.stages.check_install import verify_closure

pytest_plugins = ["servers"]  # open_pypiserver, index_tree: a built dist-index/

NOTE = ("serves no lockfiles/ or constraints/ (an upload repository such as pypiserver or "
        "Nexus?): checking the sets' requirements against its pages")
NO_LOCKFILE = "the index serves no lockfiles/ (an upload repository?)"


def test_an_upload_repository_is_checked_against_its_pages(
        open_pypiserver: UploadServer, index_tree: Path, catalogue: Catalogue,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by an outside tester: "0 passed, 4 failed" without any install (the
    repository lacks lockfiles/ and constraints/, as every upload repository does),
    and a hint to import a bundle into it."""
    monkeypatch.setenv("TWINE_USERNAME", open_pypiserver.username)
    monkeypatch.setenv("TWINE_PASSWORD", open_pypiserver.password)
    assert main(["publish", "--to", open_pypiserver.url, "--from", str(index_tree)]) == 0
    capsys.readouterr()
    url = open_pypiserver.simple_url
    assert main(["check-install", str(index_tree), "--index-url", url,
                 "--installer", "uv", "--installer", "pip 26.3"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count(NOTE) == 1
    assert f"the index at {url} {NOTE}" in captured.err
    out = captured.out
    for set_name in ("core", "extra"):
        for step in ("uv pip compile (given)", "uv 0.13.9 install (given)",
                     "pip 26.3 install (given)"):
            assert f"set '{set_name}', target 'host': {step}: ok" in out
        for step in ("uv 0.13.9 install -r lockfile (given)",
                     "pip 26.3 install -r lockfile (given)"):
            assert f"set '{set_name}', target 'host': {step}: skipped ({NO_LOCKFILE}" in out
    assert "set 'core', target 'arm': uv pip compile (given): ok" in out
    assert (f"set 'core', target 'arm': uv install --dry-run -r lockfile (given): skipped "
            f"({NO_LOCKFILE}") in out
    assert "check-install: 7 passed, 0 failed, 6 skipped" in out
    assert f"closure verified from {url}" in out

    assert open_pypiserver.packages is not None
    for lost in (catalogue.find("speedup", "1.2"), catalogue.find("native", "1.0", tag="aarch64")):
        (open_pypiserver.packages / lost.filename).unlink()  # lost from the repository
    assert main(["check-install", str(index_tree), "--index-url", url,
                 "--installer", "uv"]) == 1
    captured = capsys.readouterr()
    assert "check-install: 0 passed, 5 failed, 4 skipped" in captured.out
    failed = [line.strip() for line in captured.err.splitlines() if " failed: " in line]
    for head in ("set 'core', target 'host': uv pip compile (given)",
                 "set 'core', target 'host': uv 0.13.9 install (given)",
                 "set 'extra', target 'host': uv pip compile (given)",
                 "set 'extra', target 'host': uv 0.13.9 install (given)"):
        line = next(line for line in failed if line.startswith(head))
        assert "cannot install speedup" in line and "speedup==1.2" in line
    line = next(line for line in failed if line.startswith("set 'core', target 'arm'"))
    assert "native==1.0" in line  # its one aarch64 wheel is gone
    assert "publish the index to it again (`lockmirror publish`)" in captured.err
    assert "bundle" not in captured.err


def test_an_upload_repository_without_a_local_index_names_what_to_give(
        open_pypiserver: UploadServer, tmp_path: Path) -> None:
    """No lockfiles here and none there: the error's hint names the upload repository
    case, and to give the dist-index published to it."""
    with pytest.raises(LockmirrorError) as caught:
        verify_closure(tmp_path / "dist-index", index_url=open_pypiserver.simple_url,
                       install=False)
    assert caught.value.hint is not None
    assert "an upload repository" in caught.value.hint
    assert "the dist-index published to it" in caught.value.hint
