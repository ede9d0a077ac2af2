"""Issue 14: what the far side installs with accepts what lockmirror makes.

* the index pages carry core metadata under its PEP 714 name only, so the pips
  long-term distributions ship install from them, over ``file://`` and over a
  real ``lockmirror serve`` process (pip 23.0.1 of Debian 12 crashed on both);
* the lockfiles in an imported bundle install with uv and pip with no network
  but the mirror (they named the upstream files);
* ``lockmirror lockfile --base-url`` gives uv a lockfile it reads over HTTP;
* ``doit verify``'s dry run catches a lockfile no installer accepts.

The old pips come from the package index once, with this interpreter's pip,
and are kept in ``.cache/installers``; a test needing one skips, saying why,
only when it cannot be had.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from fixtureindex import Catalogue
from helpers import subprocess_env
from index_mirror import FixtureMirror, make_built_mirror
from servers import BIN, LAN_HOST, ServerProcess, free_port
from test_bundle import TOOL_CACHE

from lockmirror.errors import LockmirrorError
from lockmirror.formats.mirror_lockfile import RelocationError, relocate_lockfile
from lockmirror.formats.pages import IndexFile, Release, project_html, project_json
from lockmirror.stages.bundle import build_bundle
from lockmirror.stages.check_install import VerifyReport, verify_closure
from lockmirror.stages.importer import import_bundle
from lockmirror.stages.installers import (
    NEWEST_PIP,
    UV,
    InstallerUnavailable,
    ensure_installer,
    find_installers,
    prune_installers,
)
from lockmirror.stages.verify import verify_mirror

REPO = Path(__file__).resolve().parents[1]
INSTALLER_CACHE = REPO / ".cache" / "installers"  # = $LOCKMIRROR_INSTALLER_CACHE (conftest)
OLD_PIPS = ["pip 23.0.1", "pip 22.0.2", "pip 21.2.3"]  # Debian 12, Ubuntu 22.04, RHEL 9


def skip_if_unavailable(report: VerifyReport) -> None:
    """Skip (saying why) when an installer of the matrix could not be fetched."""
    for check in report.checks:
        if check.skipped and "unavailable" in check.skipped:
            pytest.skip(check.skipped)


def installer(name: str) -> Path:
    try:
        return ensure_installer(find_installers([name])[0], INSTALLER_CACHE)
    except InstallerUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def mirror(catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> FixtureMirror:
    return make_built_mirror(catalogue, tmp_path_factory.mktemp("far-side"))


# --------------------------------------------------------------------------
# Index pages
# --------------------------------------------------------------------------


def test_pages_name_core_metadata_as_pep_714_says() -> None:
    release = Release("a", "1.0", None, None, (
        IndexFile("a-1.0-py3-none-any.whl", 10, "ab" * 32, None, "cd" * 32),))
    html = project_html("a", [release])
    assert f'data-core-metadata="sha256={"cd" * 32}"' in html
    assert "dist-info-metadata" not in html  # pips 22.3-23.1 read it and fail
    data = project_json("a", [release])
    assert f'"core-metadata":{{"sha256":"{"cd" * 32}"}}' in data
    assert "dist-info-metadata" not in data  # a dict where pips 22.3-23.1 want a string


def test_old_pips_install_over_file_url(mirror: FixtureMirror) -> None:
    report = verify_closure(mirror.out, sets=["core"], targets=["host"], transports=["file://"],
                            installers=OLD_PIPS, installer_cache=INSTALLER_CACHE)
    skip_if_unavailable(report)
    assert report.ok, [c.describe() for c in report.failures]
    ran = {c.step for c in report.passed}
    assert {f"{name} install (file://)" for name in OLD_PIPS} <= ran


def test_old_pips_install_over_lockmirror_serve(mirror: FixtureMirror, tmp_path: Path) -> None:
    port = free_port()
    server = ServerProcess("serve", [str(BIN / "lockmirror"), "serve", str(mirror.out),
                                     "--port", str(port), "--quiet"], tmp_path)
    try:
        url = f"http://127.0.0.1:{port}/simple/"
        server.wait_until(lambda: requests.get(url, timeout=5).ok)
        report = verify_closure(mirror.out, sets=["core"], targets=["host"], index_url=url,
                                installers=OLD_PIPS, installer_cache=INSTALLER_CACHE)
    finally:
        server.stop()
    skip_if_unavailable(report)
    assert report.ok, [c.describe() for c in report.failures]
    ran = {c.step for c in report.passed}
    assert {f"{name} install (given)" for name in OLD_PIPS} <= ran


def test_every_installer_installs_from_a_mirror_on_plain_http_at_a_lan_name(
        mirror: FixtureMirror) -> None:
    """Found by an outside tester: `check-install --index-url http://NAME:PORT/simple/`
    failed every pip run (pip ignored the mirror: "not a trusted or secure host"; uv
    passed) and then told the user to import the bundle again. pip is now given
    --trusted-host for such a host, which it hands on to the pip that installs
    sdistonly's build requirement."""
    from lockmirror.stages.serve import MirrorServer

    with MirrorServer(mirror.out, "127.0.0.1", 0) as server:
        report = verify_closure(mirror.out, sets=["core"], targets=["host"],
                                index_url=f"http://{LAN_HOST}:{server.port}/simple/",
                                installers=[*OLD_PIPS, "pip 26.3", "uv"],
                                installer_cache=INSTALLER_CACHE)
    skip_if_unavailable(report)
    assert report.ok, [c.describe() for c in report.failures]
    ran = {c.step for c in report.passed}
    assert {f"{name} install (given)" for name in [*OLD_PIPS, NEWEST_PIP.name, UV.name]} <= ran
    assert "pip 26.3 install -r lockfile (given)" in ran


# --------------------------------------------------------------------------
# Lockfiles behind the gap
# --------------------------------------------------------------------------


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def fresh_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def installed(python: Path) -> set[str]:
    listed = run([str(python), str(installer("pip 26.3") / "pip"), "list", "--format=freeze"],
                 subprocess_env(offline=True))
    return {line.lower() for line in listed.stdout.split()}


def test_lockfile_from_an_imported_bundle_installs_with_the_network_cut(
        mirror: FixtureMirror, tmp_path: Path) -> None:
    mirror_yaml = tmp_path / "mirror.yaml"
    mirror_yaml.write_text("version: 1\nname: fixture\n")
    bundle = build_bundle(mirror.out, lockfile_dir=mirror.root / "lockfiles",
                          mirror_yaml=mirror_yaml, out_dir=tmp_path / "dist", name="fixture",
                          source_date_epoch=0, cache_dir=TOOL_CACHE)
    far = tmp_path / "far" / "mirror"
    far.parent.mkdir()
    import_bundle([bundle.path], far)
    assert verify_mirror(far).ok  # the manifest lists the relocated bytes
    lockfile = far / "lockfiles" / "pylock.extra.toml"

    env = subprocess_env(offline=True)  # proxies on a closed port, no pip or uv configuration
    uv = str(ensure_uv())
    python = fresh_venv(tmp_path / "uv-venv")
    done = run([uv, "pip", "install", "--python", str(python), "--no-config", "--cache-dir",
                str(tmp_path / "uv-cache"), "-r", str(lockfile)], env)
    assert done.returncode == 0, done.stderr
    assert {"speedup==1.2", "yanky==1.0"} <= installed(python)

    python = fresh_venv(tmp_path / "pip-venv")
    pip = installer(NEWEST_PIP.name)
    done = run([str(python), str(pip / "pip"), "install", "--isolated", "--no-cache-dir",
                "-r", str(lockfile)], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert {"speedup==1.2", "yanky==1.0"} <= installed(python)
    assert "fixture.example" not in lockfile.read_text()  # the upstream host is out of reach


def ensure_uv() -> Path:
    try:
        return ensure_installer(UV, INSTALLER_CACHE)
    except InstallerUnavailable as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("given", ["", "simple/", "simple"])
def test_base_url_lockfile_for_uv_over_http(mirror: FixtureMirror, tmp_path: Path,
                                            given: str) -> None:
    """--base-url names the mirror's root, or its index URL (found by an outside
    tester: .../simple/, the URL users are given, wrote .../simple/files/ URLs,
    which uv then failed to fetch with a 404)."""
    from lockmirror.cli import main

    port = free_port()
    root = f"http://127.0.0.1:{port}/"
    assert main(["lockfile", str(mirror.out), "--base-url", root + given,
                 "-o", str(tmp_path)]) == 0
    text = (tmp_path / "pylock.core.toml").read_text()
    assert f'url = "{root}files/sdistonly/sdistonly-1.0.tar.gz"' in text
    assert f'index = "{root}simple/"' in text and "fixture.example" not in text
    server = ServerProcess("serve", [str(BIN / "lockmirror"), "serve", str(mirror.out),
                                     "--port", str(port), "--quiet"], tmp_path)
    try:
        server.wait_until(lambda: requests.get(root + "simple/", timeout=5).ok)
        python = fresh_venv(tmp_path / "venv")
        done = run([str(ensure_uv()), "pip", "install", "--python", str(python), "--no-config",
                    "--cache-dir", str(tmp_path / "uv-cache"), "--default-index",
                    root + "simple/", "-r", str(tmp_path / "pylock.core.toml")],
                   subprocess_env(offline=True, NO_PROXY="127.0.0.1", no_proxy="127.0.0.1"))
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert {"beta==1.0", "sdistonly==1.0", "native==1.0"} <= installed(python)


def test_base_url_is_checked(mirror: FixtureMirror, capsys: pytest.CaptureFixture[str]) -> None:
    from lockmirror.cli import main

    assert main(["lockfile", str(mirror.out), "--base-url", "https://u:secret@m/",
                 "--set", "core"]) == 2
    err = capsys.readouterr().err
    assert "carries credentials" in err and "secret" not in err
    # a host part that does not parse is one line too, without the password
    assert main(["lockfile", str(mirror.out), "--base-url", "https://u:secret@[m/",
                 "--set", "core"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not parse" in err and "secret" not in err
    assert main(["lockfile", str(mirror.out), "--base-url", "https://m/"]) == 2
    assert "2 sets to print" in capsys.readouterr().err


def test_the_mirror_root_a_base_url_names() -> None:
    from lockmirror.formats.mirror_lockfile import mirror_root

    assert mirror_root("https://m/simple/") == "https://m/"
    assert mirror_root("https://m/pypi/simple") == "https://m/pypi/"
    assert mirror_root("file:///srv/mirror/simple/") == "file:///srv/mirror/"
    for unchanged in ("https://m/", "https://m/pypi/", "https://m/not-simple/"):
        assert mirror_root(unchanged) == unchanged  # as before: the root itself
    assert mirror_root("https://m/pypi") == "https://m/pypi/"
    with pytest.raises(RelocationError, match="carries credentials"):
        mirror_root("https://u:p@m/simple/")


def test_relocation_is_pure_and_idempotent(mirror: FixtureMirror) -> None:
    original = mirror.lockfiles[0].read_bytes()
    relative = relocate_lockfile(original)
    assert relocate_lockfile(original) == relative
    assert relocate_lockfile(relative) == relative
    absolute = relocate_lockfile(relative, base_url="https://mirror.internal")
    assert relocate_lockfile(original, base_url="https://mirror.internal/") == absolute
    assert relocate_lockfile(absolute) == relative
    assert b'path = "../files/' in relative and b"url = " not in relative
    with pytest.raises(RelocationError, match="not a TOML lockfile"):
        relocate_lockfile(b"[[packages]\n", where="x.toml")
    with pytest.raises(RelocationError, match="'demo' has a file entry that is not a table"):
        relocate_lockfile(b'lock-version = "1.0"\n[[packages]]\nname = "demo"\n'
                          b'wheels = ["demo-1.0-py3-none-any.whl"]\n', where="x.toml")


# --------------------------------------------------------------------------
# What verify runs, and what it keeps
# --------------------------------------------------------------------------


def test_dry_run_catches_a_lockfile_installers_refuse(mirror: FixtureMirror,
                                                      tmp_path: Path) -> None:
    broken = tmp_path / "dist-index"
    shutil.copytree(mirror.out, broken)
    lockfile = broken / "lockfiles" / "pylock.core.toml"
    text = lockfile.read_text()
    # two active entries for alpha on arm (what issue 14 saw lockmirror write)
    # (the copy's TOML writer may quote the marker either way)
    text = "\n".join(line for line in text.splitlines()
                     if not re.match(r"""marker = ['"]python_version == \\?"3\.1""", line))
    lockfile.write_text(text + "\n")
    report = verify_closure(broken, sets=["core"], targets=["arm"], transports=["file://"])
    failed = {c.step: c.detail for c in report.failures}
    step = "uv install --dry-run -r lockfile (file://)"
    assert list(failed) == [step]
    assert "Multiple active package entries" in failed[step]


def test_a_lockfile_installing_more_than_the_closure_fails(mirror: FixtureMirror,
                                                          tmp_path: Path) -> None:
    broken = tmp_path / "dist-index"
    shutil.copytree(mirror.out, broken)
    lockfile = broken / "lockfiles" / "pylock.extra.toml"
    core = (broken / "lockfiles" / "pylock.core.toml").read_text()
    # foo-bar-baz's entry from core, without core's group marker: nothing in extra needs it
    start = core.index('[[packages]]\nname = "foo-bar-baz"')
    entry = core[start:core.index("[[packages]]", start + 1)]
    entry = "\n".join(line for line in entry.splitlines() if not line.startswith("marker ="))
    lockfile.write_text(lockfile.read_text() + "\n" + entry)
    report = verify_closure(broken, sets=["extra"], transports=["file://"],
                            installers=["pip 26.3", "uv"])
    skip_if_unavailable(report)
    failed = {c.step: c.detail for c in report.failures}
    assert sorted(failed) == ["pip 26.3 install -r lockfile (file://)",
                              "uv 0.13.9 install -r lockfile (file://)"]
    for detail in failed.values():
        assert detail.startswith("installs foo-bar-baz==1.0 beyond the set's runtime closure")


def test_work_dir_keeps_only_the_installer_copies(mirror: FixtureMirror,
                                                  tmp_path: Path) -> None:
    work = tmp_path / "verify"
    (work / "venv-0" / "lib").mkdir(parents=True)  # what the old layout left behind
    (work / "venv-0" / "lib" / "big").write_bytes(b"x" * 3072)
    (work / "uv-cache").mkdir()
    (work / "installers" / "pip-1.0").mkdir(parents=True)  # no longer in the matrix
    (work / "installers" / "notes.txt").write_text("not an installer copy: kept\n")
    shutil.copytree(installer("pip 26.3"), work / "installers" / "pip-26.3")
    said: list[str] = []
    report = verify_closure(mirror.out, sets=["extra"], transports=["file://"],
                            installers=["pip 26.3"], work_dir=work,
                            installer_cache=work / "installers", progress=said.append)
    assert report.ok, [c.describe() for c in report.failures]
    # and says so, once, with what it freed
    assert said[0] == ("removed what earlier runs left and no run needs: venv-0, uv-cache, "
                       "installers/pip-1.0 (3.0 KiB freed)")
    assert sorted(p.name for p in work.iterdir()) == ["installers"]
    assert sorted(p.name for p in (work / "installers").iterdir()) == ["notes.txt", "pip-26.3"]
    assert prune_installers(work / "installers", []) == [work / "installers" / "pip-26.3"]


def test_a_copy_that_cannot_be_put_in_place_is_one_error_and_no_leftover(
        tmp_path: Path) -> None:
    cache = tmp_path / "installers"
    cache.mkdir()
    (cache / "pip-26.3").write_text("in the way: not a directory\n")  # os.replace refuses
    installer("pip 26.3")  # skips when the index cannot give pip 26.3
    with pytest.raises(InstallerUnavailable, match="cannot fetch pip 26.3"):
        ensure_installer(NEWEST_PIP, cache)
    assert sorted(p.name for p in cache.iterdir()) == ["pip-26.3"]  # no staging copy


# --------------------------------------------------------------------------
# Issue 15: operator commands that do what they say, in far-side words
# --------------------------------------------------------------------------


def small_bundle(tmp_path: Path) -> Path:
    from test_bundle import bundle

    return bundle(tmp_path / "build", tmp_path / "dist").path  # type: ignore[attr-defined]


def test_import_creates_the_missing_parents_of_into(tmp_path: Path) -> None:
    path = small_bundle(tmp_path)
    into = tmp_path / "srv" / "pypi" / "mirror"  # neither srv nor pypi exists
    result = import_bundle([path], into)
    assert result.changed and verify_mirror(into).ok


def test_a_refused_import_leaves_no_parents_it_created(tmp_path: Path) -> None:
    path = small_bundle(tmp_path)
    damaged = tmp_path / "damaged" / path.name
    damaged.parent.mkdir()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    (damaged.parent / (path.name + ".sha256")).write_bytes(
        (path.parent / (path.name + ".sha256")).read_bytes())
    with pytest.raises(LockmirrorError):
        import_bundle([damaged], tmp_path / "srv" / "mirror")
    assert not (tmp_path / "srv").exists()


def test_import_names_a_parent_that_is_a_file(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from lockmirror.cli import main

    path = small_bundle(tmp_path)
    (tmp_path / "srv").write_text("not a directory\n")
    assert main(["import", str(path), "--into", str(tmp_path / "srv" / "mirror")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert (f"{tmp_path / 'srv' / 'mirror'}: the import destination lies under "
            f"{tmp_path / 'srv'}, a file, not a directory") in err


def test_serve_of_a_directory_that_is_no_mirror_says_how_to_import(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lockmirror.cli import main

    assert main(["serve", str(tmp_path / "nonexistent")]) == 1
    err = capsys.readouterr().err
    assert "no such directory" in err and "lockmirror import BUNDLE.tar --into" in err
    assert "doit" not in err
    assert main(["verify", str(tmp_path)]) == 1  # a directory, but no manifest.json
    err = capsys.readouterr().err
    assert "is not a mirror (no manifest.json)" in err and "doit" not in err


@pytest.mark.parametrize(("host", "port", "said", "not_said"), [
    ("203.0.113.7", 0, "--host 203.0.113.7 is not an address of this machine", "--port"),
    ("no-such-host.invalid", 0, "is not a name or address this machine can resolve", "--port"),
    ("127.0.0.1", 70000, "--port 70000 is not a port number", "--host"),
])
def test_serve_blames_the_option_at_fault(mirror: FixtureMirror, host: str, port: int, said: str,
                                          not_said: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from lockmirror.cli import main

    assert main(["serve", str(mirror.out), "--host", host, "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert said in err and not_said not in err and "Traceback" not in err


def test_serve_on_a_taken_port_says_choose_another_port(mirror: FixtureMirror) -> None:
    from lockmirror.stages.serve import MirrorServer

    with MirrorServer(mirror.out, "127.0.0.1", 0) as running:
        with pytest.raises(LockmirrorError) as caught:
            MirrorServer(mirror.out, "127.0.0.1", running.port)
    assert caught.value.hint is not None and "choose another --port" in caught.value.hint
