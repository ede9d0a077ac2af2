"""Closure verification with real uv and pip, from nothing but the built index."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fixtureindex import Catalogue
from helpers import serving
from index_mirror import FixtureMirror, make_built_mirror
from servers import free_port
from test_far_side import INSTALLER_CACHE, skip_if_unavailable

from lockmirror.errors import LockmirrorError, ResolutionError, UnreachableError
from lockmirror.stages.check_install import (
    VerifyReport,
    explain_pip,
    explain_pip_check,
    explain_uv,
    uv_platform,
    verify_closure,
)
from lockmirror.stages.installers import NEWEST_PIP, UV


@pytest.fixture(scope="module")
def mirror(catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> FixtureMirror:
    return make_built_mirror(catalogue, tmp_path_factory.mktemp("verify-mirror"))


@pytest.fixture(scope="module")
def report(mirror: FixtureMirror) -> VerifyReport:
    # newest pip and uv here; the old pips of the matrix: test_far_side.py
    return verify_closure(mirror.out, installers=["pip 26.3", "uv"],
                          installer_cache=INSTALLER_CACHE)


def steps(report: VerifyReport) -> dict[tuple[str, str, str], str]:
    return {(c.set_name, c.target, c.step): "skipped" if c.skipped else "ok" if c.ok else "failed"
            for c in report.checks}


def test_every_set_and_target_is_proven(report: VerifyReport, mirror: FixtureMirror) -> None:
    skip_if_unavailable(report)
    assert report.index_urls[0] == (mirror.out / "simple").as_uri() + "/"
    assert report.index_urls[1].startswith("http://127.0.0.1:")
    expected = {
        ("core", "arm", "uv pip compile (file://)"): "ok",
        ("core", "arm", "uv pip compile (http)"): "ok",
        ("core", "arm", "installs"): "skipped",  # not this machine
        ("core", "arm", "uv install --dry-run -r lockfile (file://)"): "ok",
    }
    for set_name in ("core", "extra"):
        for transport in ("file://", "http"):
            expected[(set_name, "host", f"uv pip compile ({transport})")] = "ok"
            for installer in (NEWEST_PIP, UV):
                expected[(set_name, "host", f"{installer.name} install ({transport})")] = "ok"
            lockfile = "lockfile --base-url" if transport == "http" else "lockfile"
            # core's build-only backend sits in its build group, so installing the
            # lockfile installs the runtime closure alone (a leak fails: test_far_side)
            for step in (f"pip 26.3 install -r lockfile ({transport})",
                         f"uv 0.13.9 install -r {lockfile} ({transport})"):
                expected[(set_name, "host", step)] = "ok"
    assert steps(report) == expected
    assert report.failures == ()
    skipped = next(c for c in report.checks if c.skipped)
    assert "needs Python 3.12" in skipped.describe()
    assert report.summary() == f"{len(expected) - 1} passed, 0 failed, 1 skipped"


def test_a_file_removed_from_the_mirror_is_named(mirror: FixtureMirror, tmp_path: Path) -> None:
    broken = tmp_path / "dist-index"
    shutil.copytree(mirror.out, broken)
    speedup = mirror.catalogue.find("speedup", "1.2")
    (broken / "files" / "speedup" / speedup.filename).unlink()

    result = verify_closure(broken, sets=["core"], targets=["host"], transports=["file://"],
                            installers=["pip 26.3"], installer_cache=INSTALLER_CACHE)
    skip_if_unavailable(result)
    assert not result.ok
    failures = {c.step: c for c in result.failures}
    assert set(failures) == {"uv pip compile (file://)", "pip 26.3 install (file://)",
                             "pip 26.3 install -r lockfile (file://)"}
    for check in failures.values():
        assert (check.set_name, check.target) == ("core", "host")
        assert check.requirement == "speedup==1.2"
        assert speedup.filename in check.detail
    with pytest.raises(ResolutionError) as error:
        result.raise_for_failures()
    message = str(error.value)
    assert ("set 'core', target 'host': pip 26.3 install (file://) failed: cannot install "
            "speedup==1.2") in message
    assert ("set 'core', target 'host': uv pip compile (file://) failed: cannot install "
            "speedup==1.2") in message


def test_a_project_missing_from_the_pages_is_named(mirror: FixtureMirror, tmp_path: Path) -> None:
    broken = tmp_path / "dist-index"
    shutil.copytree(mirror.out, broken)
    shutil.rmtree(broken / "simple" / "foo-bar-baz")

    result = verify_closure(broken, sets=["core"], install=False, transports=["file://"])
    failed = sorted((c.target, c.requirement) for c in result.failures)
    assert failed == [("arm", "foo-bar-baz"), ("host", "foo-bar-baz")]
    assert all("not found in the package registry" in c.detail for c in result.failures)


def test_over_lockmirror_serve_only(mirror: FixtureMirror) -> None:
    result = verify_closure(mirror.out, sets=["extra"], transports=["http"],
                            installers=["uv"], installer_cache=INSTALLER_CACHE)
    assert result.ok, [c.describe() for c in result.failures]
    assert [u[:17] for u in result.index_urls] == ["http://127.0.0.1:"]
    assert steps(result)[("extra", "host", "uv 0.13.9 install (http)")] == "ok"


def test_unknown_set_or_target(mirror: FixtureMirror) -> None:
    with pytest.raises(LockmirrorError, match="no set 'nope' in the index"):
        verify_closure(mirror.out, sets=["nope"])
    with pytest.raises(LockmirrorError, match="no target 'nope' in the index"):
        verify_closure(mirror.out, targets=["nope"])


def test_not_an_index(tmp_path: Path) -> None:
    with pytest.raises(LockmirrorError, match="holds no lockfiles"):
        verify_closure(tmp_path)


def test_check_install_command(mirror: FixtureMirror, capsys: pytest.CaptureFixture[str],
                               tmp_path: Path) -> None:
    from lockmirror.cli import main

    assert main(["check-install", str(mirror.out), "--set", "extra", "--no-install",
                 "--file"]) == 0
    out = capsys.readouterr().out
    assert "set 'extra', target 'host': uv pip compile (file://): ok" in out
    assert "set 'extra', target 'host': installs: skipped (not requested)" in out
    assert "check-install: 1 passed, 0 failed, 1 skipped" in out
    assert "closure verified" in out
    assert "; 1 of the steps skipped (above): not everything was installed" in out
    broken = tmp_path / "dist-index"
    shutil.copytree(mirror.out, broken)
    shutil.rmtree(broken / "simple" / "yanky")
    assert main(["check-install", str(broken), "--set", "extra", "--no-install", "--file"]) == 1
    assert "cannot install yanky" in capsys.readouterr().err


@pytest.mark.parametrize(("platforms", "expected", "env"), [
    (("manylinux_2_28_x86_64",), "x86_64-manylinux_2_28", ()),
    (("manylinux_2_28_aarch64",), "aarch64-manylinux_2_28", ()),
    (("manylinux_2_17_x86_64",), "x86_64-manylinux_2_17", ()),
    (("manylinux2014_aarch64",), "aarch64-manylinux_2_17", ()),
    (("manylinux_2_30_x86_64",), "x86_64-manylinux_2_28", ()),
    (("manylinux_2_39_x86_64",), "x86_64-manylinux_2_39", ()),
    (("musllinux_1_2_x86_64",), "x86_64-unknown-linux-musl", ()),
    (("linux_aarch64",), "aarch64-unknown-linux-gnu", ()),
    (("macosx_11_0_arm64",), "aarch64-apple-darwin", (("MACOSX_DEPLOYMENT_TARGET", "11.0"),)),
    (("macosx_10_9_x86_64",), "x86_64-apple-darwin", (("MACOSX_DEPLOYMENT_TARGET", "10.9"),)),
    (("win_amd64",), "x86_64-pc-windows-msvc", ()),
    (("win32",), "i686-pc-windows-msvc", ()),
    (("manylinux_2_28_ppc64le", "linux_x86_64"), "x86_64-unknown-linux-gnu", ()),
])
def test_uv_platforms(platforms: tuple[str, ...], expected: str,
                      env: tuple[tuple[str, str], ...]) -> None:
    mapped = uv_platform(platforms)
    assert (mapped.python_platform, mapped.environment) == (expected, env)


def test_uv_platform_approximations_are_noted() -> None:
    assert uv_platform(["manylinux_2_30_x86_64"]).note is not None
    assert uv_platform(["manylinux_2_28_x86_64"]).note is None
    with pytest.raises(LockmirrorError, match="no uv --python-platform"):
        uv_platform(["manylinux_2_28_s390x"])


# What uv and pip printed in real failures (uv 0.13, pip 26), to pin the readers.
@pytest.mark.parametrize(("output", "requirement"), [
    (("error: failed to open file `/m/files/speedup/speedup-1.2-py3-none-any.whl`: "
     "No such file or directory (os error 2)"), "speedup==1.2"),
    (("error: No solution found when resolving dependencies\n  cause: Because speedup was not "
     "found in the package registry and you require speedup==1.2, we can conclude that your "
     "requirements are unsatisfiable."), "speedup"),
    (("  × No solution found when resolving dependencies:\n  ╰─▶ Because there is no version "
     "of alpha==3.0 and you require alpha==3.0, we can conclude that your requirements are "
     "unsatisfiable."), "alpha==3.0"),
    (("error: No solution found when resolving dependencies\n  cause: Because only alpha<=2.0 "
     "is available and you require alpha>=3, we can conclude that your requirements are "
     "unsatisfiable."), "alpha>=3"),
])
def test_reading_uv_errors(output: str, requirement: str) -> None:
    assert explain_uv(output)[0] == requirement


@pytest.mark.parametrize(("output", "requirement"), [
    (("ERROR: HTTP error 404 while getting http://127.0.0.1:9/files/speedup/"
     "speedup-1.2-py3-none-any.whl#sha256=ab (from http://127.0.0.1:9/simple/speedup/)"),
     "speedup==1.2"),
    (("ERROR: Could not find a version that satisfies the requirement alpha>=3 (from versions: "
     "1.1)\nERROR: No matching distribution found for alpha>=3"), "alpha>=3"),
    (("ERROR: Cannot install -r r.txt (line 3) because these package versions have conflicting "
     "dependencies.\n\nThe conflict is caused by:\n    sdistonly 1.0 depends on speedup>=1.0\n"
     "    The user requested (constraint) speedup==1.2\n\nAdditionally, some packages in these "
     "conflicts have no matching distributions available for your environment:\n    speedup\n"
     "\nTo fix this you could try to:\n"), "speedup"),
])
def test_reading_pip_errors(output: str, requirement: str) -> None:
    assert explain_pip(output)[0] == requirement


def test_reading_pip_check() -> None:
    assert explain_pip_check("beta 1.0 requires alpha, which is not installed.\n")[0] == "alpha"
    assert explain_pip_check(
        "beta 1.0 has requirement alpha>=1.0, but you have alpha 0.9.\n")[0] == "alpha>=1.0"


def test_a_deployed_mirror_nobody_answers_for_is_one_line_naming_it(
        mirror: FixtureMirror, tmp_path: Path) -> None:
    """--index-url at an address where nothing listens: one error naming it, before
    any installer runs (each gave its own guess: "no distribution in the index",
    "re-run doit fetch")."""
    url = f"http://127.0.0.1:{free_port()}/simple/"
    with pytest.raises(UnreachableError) as caught:
        verify_closure(mirror.out, sets=["core"], targets=["host"], index_url=url,
                       installers=["pip 26.3"], installer_cache=INSTALLER_CACHE,
                       work_dir=tmp_path / "work")
    assert str(caught.value).startswith(f"cannot fetch {url}")
    assert "the connection was refused" in str(caught.value)
    assert not (tmp_path / "work").exists()  # refused before the run made its work directory


def test_a_deployed_mirror_is_checked_with_its_own_lockfiles(mirror: FixtureMirror,
                                                             tmp_path: Path) -> None:
    """--index-url: the lockfile installs read the deployed mirror's lockfiles (beside
    its simple/), not the local tree's, so a file missing there fails them too."""
    from lockmirror.stages.serve import MirrorServer

    deployed = tmp_path / "deployed"
    shutil.copytree(mirror.out, deployed)
    speedup = mirror.catalogue.find("speedup", "1.2")
    (deployed / "files" / "speedup" / speedup.filename).unlink()
    with MirrorServer(deployed, "127.0.0.1", 0) as server:
        result = verify_closure(mirror.out, sets=["core"], targets=["host"],
                                index_url=server.simple_url, installers=["pip 26.3"],
                                installer_cache=INSTALLER_CACHE)
    skip_if_unavailable(result)
    failed = {c.step for c in result.failures}
    assert "pip 26.3 install -r lockfile (given)" in failed


def _deployed(mirror: FixtureMirror, tmp_path: Path, *remove: str) -> Path:
    """A copy of the mirror as deployed elsewhere, ``remove`` (paths in it) deleted."""
    deployed = tmp_path / "deployed"
    shutil.copytree(mirror.out, deployed)
    for relative in remove:
        (deployed / relative).unlink()
    return deployed


def test_a_deployed_mirror_lacking_its_lockfile_and_constraints_fails_naming_them(
        mirror: FixtureMirror, tmp_path: Path) -> None:
    """Found by an outside tester: with the deployed mirror's lockfile and constraints
    deleted, uv passed, reading the local directory's copies instead."""
    from lockmirror.stages.serve import MirrorServer

    deployed = _deployed(mirror, tmp_path, "lockfiles/pylock.extra.toml",
                         "constraints/extra-host.txt")
    with MirrorServer(deployed, "127.0.0.1", 0) as server:
        result = verify_closure(mirror.out, sets=["extra"], targets=["host"],
                                index_url=server.simple_url, installers=["uv"],
                                installer_cache=INSTALLER_CACHE)
    root = server.simple_url.removesuffix("simple/")
    assert {c.step: c.detail for c in result.failures} == {
        "read constraints/extra-host.txt (given)":
            f"the deployed mirror has no constraints/extra-host.txt "
            f"({root}constraints/extra-host.txt: not found)",
        "read lockfiles/pylock.extra.toml (given)":
            f"the deployed mirror has no lockfiles/pylock.extra.toml "
            f"({root}lockfiles/pylock.extra.toml: not found)",
    }
    assert result.passed == ()  # nothing installed from the local copies instead
    with pytest.raises(ResolutionError, match=f"failed for {server.simple_url}"):
        result.raise_for_failures()


def test_a_deployed_lockfile_that_differs_from_the_directory_fails(
        mirror: FixtureMirror, tmp_path: Path) -> None:
    from lockmirror.stages.serve import MirrorServer

    deployed = _deployed(mirror, tmp_path)
    lockfile = deployed / "lockfiles" / "pylock.extra.toml"
    lockfile.write_bytes(b"# an older build\n" + lockfile.read_bytes())
    with MirrorServer(deployed, "127.0.0.1", 0) as server:
        result = verify_closure(mirror.out, sets=["extra"], targets=["host"],
                                index_url=server.simple_url, install=False)
    root = server.simple_url.removesuffix("simple/")
    assert [(c.step, c.detail) for c in result.failures] == [
        ("read lockfiles/pylock.extra.toml (given)",
         f"{root}lockfiles/pylock.extra.toml differs from "
         f"{mirror.out / 'lockfiles' / 'pylock.extra.toml'}")]


def test_a_deployed_mirror_alone_is_read_for_its_lockfiles(
        mirror: FixtureMirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No local directory: the sets, lockfiles and constraints come from the deployed
    mirror (its manifest.json), not a near-side "build the index with doit index"."""
    from lockmirror.cli import main
    from lockmirror.stages.serve import MirrorServer

    nowhere = tmp_path / "dist-index"
    with MirrorServer(_deployed(mirror, tmp_path), "127.0.0.1", 0) as server:
        assert main(["check-install", str(nowhere), "--index-url", server.simple_url,
                     "--set", "extra", "--installer", "uv"]) == 0
    out = capsys.readouterr().out
    assert "set 'extra', target 'host': uv 0.13.9 install -r lockfile --base-url (given): ok" \
        in out
    assert f"closure verified from {server.simple_url}" in out

    deployed = tmp_path / "deployed"
    (deployed / "lockfiles" / "pylock.core.toml").unlink()
    with MirrorServer(deployed, "127.0.0.1", 0) as server, \
            pytest.raises(LockmirrorError) as caught:
        verify_closure(nowhere, index_url=server.simple_url, install=False)
    root = server.simple_url.removesuffix("simple/")
    assert str(caught.value) == (f"the deployed mirror has no lockfiles/pylock.core.toml "
                                 f"({root}lockfiles/pylock.core.toml: not found)")


def test_credentials_in_the_index_url_are_refused_before_anything_runs(
        mirror: FixtureMirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an outside tester: installs ran first, then exit 2 blaming --base-url
    (an option check-install does not have)."""
    from lockmirror.cli import main
    from lockmirror.stages.serve import MirrorServer

    with MirrorServer(mirror.out, "127.0.0.1", 0) as server:
        url = server.simple_url.replace("http://", "http://alice:s3cretPW@")
        assert main(["check-install", str(mirror.out), "--index-url", url,
                     "--work-dir", str(tmp_path / "work")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"lockmirror: error: --index-url: {server.simple_url}: the "
                                   "URL carries credentials")
    assert "s3cretPW" not in captured.err and "alice" not in captured.err
    assert not (tmp_path / "work").exists()


def test_a_query_in_the_index_url_is_kept_and_not_printed(
        mirror: FixtureMirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lockmirror.cli import main
    from lockmirror.stages.serve import MirrorServer

    with MirrorServer(mirror.out, "127.0.0.1", 0) as server:
        given = server.simple_url.removesuffix("/") + "?token=s3cretTOKEN"
        # uv only: pip appends project names after the query (".../simple/?token=x/extra/")
        assert main(["check-install", str(mirror.out), "--index-url", given, "--set", "extra",
                     "--installer", "uv"]) == 0
    captured = capsys.readouterr()
    assert f"closure verified from {server.simple_url}\n" in captured.out
    assert "uv 0.13.9 install -r lockfile --base-url (given): ok" in captured.out
    assert "s3cretTOKEN" not in captured.out + captured.err

    from lockmirror.stages.deployed_mirror import parse_index_url

    parsed = parse_index_url(given)
    assert parsed.simple == server.simple_url + "?token=s3cretTOKEN"  # the slash on the path
    assert parsed.url("lockfiles/x") == server.url.rstrip("/") + "/lockfiles/x?token=s3cretTOKEN"

    unreachable = f"http://127.0.0.1:{free_port()}/simple/?token=s3cretTOKEN"
    with pytest.raises(UnreachableError) as caught:
        verify_closure(mirror.out, sets=["extra"], index_url=unreachable, install=False)
    assert "s3cretTOKEN" not in str(caught.value)


class _QuietStaticHandler(SimpleHTTPRequestHandler):
    """``python -m http.server``, without its request log."""

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _served(directory: Path, server: str) -> Iterator[str]:
    """``directory`` served on 127.0.0.1 by ``lockmirror serve`` or a plain static
    server; yields its simple index URL."""
    from lockmirror.stages.serve import MirrorServer

    if server == "lockmirror serve":
        with MirrorServer(directory, "127.0.0.1", 0) as served:
            yield served.simple_url
        return
    handler = partial(_QuietStaticHandler, directory=str(directory))
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), handler)) as base:
        yield f"{base}/simple/"


@pytest.mark.parametrize("server", ["lockmirror serve", "http.server"])
def test_a_deployed_mirror_is_dry_run_for_a_target_this_machine_is_not(
        mirror: FixtureMirror, tmp_path: Path, server: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Found by an outside tester: with --index-url, the dry run of another machine's
    target read the downloaded lockfile copy as it is, whose ../files/ paths pointed
    into the run's empty directory, and failed blaming the mirror; the host's lockfile
    install read a --base-url copy and passed."""
    from lockmirror.cli import main

    with _served(_deployed(mirror, tmp_path), server) as url:
        assert main(["check-install", str(mirror.out), "--index-url", url, "--set", "core",
                     "--installer", "uv"]) == 0
    out = capsys.readouterr().out
    assert ("set 'core', target 'arm': uv install --dry-run -r lockfile --base-url (given): ok"
            in out)
    files = next(line for line in out.splitlines() if "read the files" in line)
    assert files.startswith("set 'core', target 'arm': read the files the lockfile installs "
                            "(given): ok (")
    assert files.endswith(" s; 7 files)")
    assert "set 'core', target 'host': uv 0.13.9 install -r lockfile --base-url (given): ok" \
        in out
    assert f"closure verified from {url}" in out


def test_a_deployed_mirror_lacking_a_file_only_another_target_needs_fails_naming_it(
        mirror: FixtureMirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """uv's dry run of a lockfile whose files are URLs reads none of them, so the
    deployed mirror is asked for each file the other target installs: the one it
    lacks (the aarch64 wheel) fails that target alone, naming its URL."""
    from lockmirror.cli import main

    wheel = mirror.catalogue.find("native", "1.0", tag="aarch64")
    relative = f"files/native/{wheel.filename}"
    with _served(_deployed(mirror, tmp_path, relative), "http.server") as url:
        assert main(["check-install", str(mirror.out), "--index-url", url, "--set", "core",
                     "--installer", "uv"]) == 1
    captured = capsys.readouterr()
    root = url.removesuffix("simple/")
    assert ("set 'core', target 'arm': uv install --dry-run -r lockfile --base-url (given): ok"
            in captured.out)
    assert "check-install: 5 passed, 1 failed, 1 skipped" in captured.out
    assert (f"set 'core', target 'arm': read the files the lockfile installs (given) failed "
            f"(the deployed mirror has no {relative} ({root}{relative}: not found))"
            in captured.err)
    assert "the deployed mirror lacks what these requirements need" in captured.err

    given = (tmp_path / "deployed" / "simple").as_uri() + "/"  # the same, read as files
    result = verify_closure(mirror.out, sets=["core"], targets=["arm"], index_url=given,
                            install=False)
    root = given.removesuffix("simple/")
    failed = {c.step: c.detail for c in result.failures}  # uv's compile reads a file: wheel
    assert failed["read the files the lockfile installs (given)"] == (
        f"the deployed mirror has no {relative} ({root}{relative}: not found)")



def test_a_deployed_mirror_whose_lockfiles_are_not_known_is_not_dry_run(
        mirror: FixtureMirror, tmp_path: Path) -> None:
    """An index URL not ending in /simple/: the dry run is skipped, as the lockfile
    installs are, rather than read the local directory's files as the mirror's."""
    deployed = _deployed(mirror, tmp_path)
    (deployed / "simple").rename(deployed / "pypi")  # its pages link ../../files/
    handler = partial(_QuietStaticHandler, directory=str(deployed))
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), handler)) as base:
        result = verify_closure(mirror.out, sets=["core"], targets=["arm"],
                                index_url=f"{base}/pypi/", install=False)
    found = {c.step: c.skipped or ("ok" if c.ok else c.detail) for c in result.checks}
    assert found["uv pip compile (given)"] == "ok"
    assert found["uv install --dry-run -r lockfile (given)"] == (
        "the index URL does not end in /simple/, so where its lockfiles are is not known")
