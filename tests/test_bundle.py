"""The bundle stage: reproducible bytes, layout, deltas, volumes, signatures.

Trees here are a few small files with a manifest from ``scan_tree``. Bundles
that carry lockmirror's own wheels take the dependency wheels from
``.cache/tests`` in the repository, repacked from the installed distributions
(``LOCKMIRROR_TOOL_WHEELS=installed``, set by conftest.py): no package index.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from helpers import git, subprocess_env

from lockmirror.errors import BundleError, LockmirrorError
from lockmirror.formats import signing
from lockmirror.formats.bundle_format import BundleInfo, parse_size
from lockmirror.formats.bundle_reader import locate_bundle, read_head
from lockmirror.formats.manifest import Manifest, scan_tree
from lockmirror.stages.bundle import BundleResult, build_bundle
from lockmirror.timeutil import resolve_source_date_epoch

REPO = Path(__file__).resolve().parents[1]
TOOL_CACHE = REPO / ".cache" / "tests"
EPOCH = 1_700_000_000


def write_tree(root: Path, files: dict[str, bytes]) -> Manifest:
    """A mirror tree with these files and its manifest.json."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    manifest = scan_tree(root)
    manifest.write(root / "manifest.json")
    return manifest


def base_files() -> dict[str, bytes]:
    return {
        "index.html": b"<html>mirror</html>\n",
        "simple/index.html": b"<a href='alpha/'>alpha</a>\n",
        "simple/alpha/index.html": b"<a href='../../files/alpha/alpha-1.0-py3-none-any.whl'>\n",
        "files/alpha/alpha-1.0-py3-none-any.whl": os.urandom(300_000),
        "files/alpha/alpha-1.0-py3-none-any.whl.metadata": b"Name: alpha\nVersion: 1.0\n",
        "files/beta/beta-2.0.tar.gz": os.urandom(50_000),
        "lockfiles/pylock.core.toml": b"lock-version = '1.0'\n",
    }


def make_inputs(root: Path, files: dict[str, bytes] | None = None) -> dict[str, Path]:
    """index tree, lockfiles and mirror.yaml below ``root``."""
    write_tree(root / "dist-index", base_files() if files is None else files)
    (root / "lockfiles").mkdir(parents=True, exist_ok=True)
    (root / "lockfiles" / "pylock.core.toml").write_bytes(b"lock-version = '1.0'\n")
    (root / "mirror.yaml").write_text("version: 1\nname: demo\n")
    return {"index_dir": root / "dist-index", "lockfile_dir": root / "lockfiles",
            "mirror_yaml": root / "mirror.yaml"}


def bundle(root: Path, out: Path, **kwargs: object) -> BundleResult:
    inputs = make_inputs(root) if not (root / "dist-index").exists() else {
        "index_dir": root / "dist-index", "lockfile_dir": root / "lockfiles",
        "mirror_yaml": root / "mirror.yaml"}
    options: dict[str, object] = {"name": "demo", "source_date_epoch": EPOCH, "tool": False}
    options.update(kwargs)
    return build_bundle(inputs["index_dir"], lockfile_dir=inputs["lockfile_dir"],
                        mirror_yaml=inputs["mirror_yaml"], out_dir=out, **options)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------
# Reproducibility
# --------------------------------------------------------------------------


def test_same_inputs_give_the_same_bytes_in_other_directories_at_other_times(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two checkouts of the same commit, different paths, file times and
    modes, built from different working directories (with lockmirror's own
    wheels): the tarballs are identical, and the mtime is the commit's."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = tmp_path / "one" / "checkout"
    files = base_files()
    make_inputs(first, files)
    git(first, "init", "-q")
    git(first, "add", ".")
    git(first, "commit", "-q", "-m", "mirror", date="2024-01-02T03:04:05Z")
    second = tmp_path / "elsewhere" / "deeper" / "copy"
    second.parent.mkdir(parents=True)
    subprocess.run(["git", "clone", "-q", str(first), str(second)], check=True)
    for path in second.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            path.chmod(0o600)
            os.utime(path, (123456789, 123456789))

    results = []
    for root in (first, second):
        monkeypatch.chdir(root.parent)
        results.append(build_bundle(
            root / "dist-index", lockfile_dir=root / "lockfiles", mirror_yaml=root / "mirror.yaml",
            out_dir=root / "dist", name="demo", tool=True, cache_dir=TOOL_CACHE))
    one, two = results
    with tarfile.open(one.path) as tar:  # the far side's instructions name the Python
        readme = tar.extractfile(f"lockmirror-demo-{one.content_id}/README.txt").read()  # type: ignore[union-attr]
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert f"Requires-Python {pyproject['project']['requires-python']})" in readme.decode()
    assert one.epoch_source == "git log (lockfiles)"
    assert one.source_date_epoch == 1704164645  # 2024-01-02T03:04:05Z
    assert one.path.name == two.path.name
    assert sha256(one.path) == sha256(two.path) == one.sha256[0] == two.sha256[0]
    assert one.tool_wheels > 10


def test_tar_headers_carry_no_time_owner_or_host(tmp_path: Path) -> None:
    result = bundle(tmp_path / "in", tmp_path / "out")
    raw = result.path.read_bytes()
    assert len(raw) % tarfile.RECORDSIZE == 0
    with tarfile.open(result.path) as tar:
        members = tar.getmembers()
    assert members[0].isdir() and members[1].name.endswith("/bundle.json")
    top = members[0].name
    assert top == f"lockmirror-demo-{result.content_id}"
    rest = [m.name for m in members[2:]]
    assert rest == sorted(rest)
    for member in members:
        assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
        assert member.mtime == EPOCH
        assert member.mode == (0o755 if member.isdir() else 0o644)
        assert member.isdir() or member.isfile()
        assert not member.pax_headers
    # GNU/ustar headers only: no pax extended header blocks ('x'/'g' typeflags)
    offset = 0
    while offset < len(raw) and raw[offset:offset + 512] != bytes(512):
        header = tarfile.TarInfo.frombuf(raw[offset:offset + 512], "utf-8", "surrogateescape")
        assert header.type not in (tarfile.XHDTYPE, tarfile.XGLTYPE)
        # user and group name fields (where tar would put "root") are empty
        assert raw[offset + 265:offset + 329] == bytes(64)
        offset += 512 + -(-header.size // 512) * 512


def test_layout_checksums_and_readme_work_by_hand(tmp_path: Path) -> None:
    result = bundle(tmp_path / "in", tmp_path / "out")
    done = subprocess.run(["sha256sum", "-c", result.checksums.name], cwd=result.path.parent,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["tar", "xf", str(result.path), "-C", str(unpacked)], check=True)
    top = unpacked / f"lockmirror-demo-{result.content_id}"
    done = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=top, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = {line.split("  ", 1)[1] for line in (top / "SHA256SUMS").read_text().splitlines()}
    assert {"mirror.yaml", "lockfiles/pylock.core.toml", "index/manifest.json",
            "README.txt", "index/files/beta/beta-2.0.tar.gz"} <= listed
    info = BundleInfo.loads((top / "bundle.json").read_bytes(), where="bundle.json")
    assert info.content_id == result.content_id and info.kind == "full"
    assert set(info.files) == listed | {"SHA256SUMS"}
    assert info.index_manifest_sha256 == sha256(top / "index" / "manifest.json")
    assert (top / "index" / "manifest.json").read_bytes() == \
        (tmp_path / "in" / "dist-index" / "manifest.json").read_bytes()
    readme = " ".join((top / "README.txt").read_text().split())
    assert "lockmirror import" in readme
    # the hashes guard the files only from a requirements file the mirror did not serve
    # (an outside tester: step 4 read it over http from the mirror it checks)
    assert "Give them /srv/mirror/requirements/SET-TARGET.txt from this machine" in readme
    assert "--require-hashes -r SET-TARGET.txt" in readme
    assert ("refuses a file altered on the mirror alone, not a mirror (or a network path) "
            "that alters the requirements file too") in readme


def test_an_identical_bundle_is_recognised_without_rewriting(tmp_path: Path) -> None:
    first = bundle(tmp_path / "in", tmp_path / "out")
    stamp = first.path.stat().st_mtime_ns
    again = bundle(tmp_path / "in", tmp_path / "out")
    assert first.changed and not again.changed
    assert again.sha256 == first.sha256 and first.path.stat().st_mtime_ns == stamp
    later = bundle(tmp_path / "in", tmp_path / "out", source_date_epoch=EPOCH + 1)
    assert later.changed and later.sha256 != first.sha256
    # other timestamps are other bytes, so another id: one name never stands for two
    # tars (a later commit of the lockfiles wrote a second tar under the first's name)
    assert later.content_id != first.content_id and later.path != first.path
    assert first.path.exists() and sha256(first.path) == first.sha256[0]


def test_bundle_json_of_either_format_reads_back_as_written() -> None:
    """/2 records the members' mtime (part of the id); /1, written before it, still
    reads, and its id is what it was."""
    info = BundleInfo(name="demo", kind="full", index_manifest_sha256="0" * 64,
                      base_manifest_sha256=None, lockmirror_version="0.1", tool_python=None,
                      files={})
    old = info.dumps()
    assert b'"format": "lockmirror-bundle/1"' in old and b"mtime" not in old
    assert BundleInfo.loads(old, where="x") == info
    new = dataclasses.replace(info, mtime=5)
    assert b'"format": "lockmirror-bundle/2"' in new.dumps() and b'"mtime": 5' in new.dumps()
    assert BundleInfo.loads(new.dumps(), where="x") == new
    assert new.content_id != info.content_id
    # a /1 that carries an mtime (written for a few hours before /2) reads back whole
    between = new.dumps().replace(b"lockmirror-bundle/2", b"lockmirror-bundle/1")
    assert BundleInfo.loads(between, where="x").dumps() == between


def test_source_date_epoch_from_environment(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "42")
    assert resolve_source_date_epoch(None, tmp_path) == (42, "SOURCE_DATE_EPOCH")
    assert resolve_source_date_epoch(7, tmp_path) == (7, "argument")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(LockmirrorError, match="SOURCE_DATE_EPOCH"):
        resolve_source_date_epoch(None, tmp_path)
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert resolve_source_date_epoch(None, tmp_path)[0] == 0  # not a git checkout


@pytest.mark.parametrize("change", ["modified", "added", "deleted", "staged"])
def test_lockfiles_with_uncommitted_changes_give_no_date(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    """Found by an outside tester: the last commit's time dated lockfiles it does not
    hold, so a later bundle of edited lockfiles carried an earlier one's date. doit's
    up-to-date stamp follows (a commit of those changes makes the bundle again)."""
    from lockmirror.timeutil import mtime_stamp

    uncommitted = (0, "none (no SOURCE_DATE_EPOCH, lockfiles have uncommitted changes: "
                      "commit them to date the bundle)")
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    lockfiles = make_inputs(tmp_path)["lockfile_dir"]
    (lockfiles / "pylock.extra.toml").write_text("lock-version = '1.0'\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "lock", date="2024-01-02T03:04:05Z")
    (tmp_path / "mirror.yaml").write_text("version: 1\nname: edited\n")  # not a lockfile
    assert resolve_source_date_epoch(None, lockfiles) == (1704164645, "git log (lockfiles)")
    assert mtime_stamp(lockfiles) == "1704164645"
    lockfile = lockfiles / "pylock.core.toml"
    if change == "modified":
        lockfile.write_text("lock-version = '1.0'\n# edited\n")
    elif change == "added":
        (lockfiles / "pylock.new.toml").write_text("lock-version = '1.0'\n")
    elif change == "deleted":
        lockfile.unlink()
    else:
        lockfile.write_text("lock-version = '1.0'\n# edited\n")
        git(tmp_path, "add", ".")
    assert resolve_source_date_epoch(None, lockfiles) == uncommitted
    assert mtime_stamp(lockfiles) == "0"
    result = bundle(tmp_path, tmp_path / "out", source_date_epoch=None)
    assert (result.source_date_epoch, result.epoch_source) == uncommitted  # the output line's
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "42")  # given: it wins, as before
    assert resolve_source_date_epoch(None, lockfiles) == (42, "SOURCE_DATE_EPOCH")


# --------------------------------------------------------------------------
# Tool wheels
# --------------------------------------------------------------------------


def test_own_wheel_is_deterministic_and_installable_metadata() -> None:
    from importlib import metadata

    from lockmirror.stages.toolwheels import own_wheel

    dist = metadata.distribution("lockmirror")
    one = own_wheel(dist)
    two = own_wheel(dist)
    assert one == two and one.filename == "lockmirror-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(io.BytesIO(one.data)) as archive:
        names = archive.namelist()
        assert names[-1] == "lockmirror-0.1.0.dist-info/RECORD"
        assert "lockmirror/stages/bundle.py" in names and "lockmirror/py.typed" in names
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
        entry_points = archive.read("lockmirror-0.1.0.dist-info/entry_points.txt").decode()
        assert "lockmirror = lockmirror.cli:run" in entry_points


def _pip_install(wheel: Path, venv: Path) -> Path:
    """``wheel`` installed by this interpreter's pip into a new venv at ``venv``; its
    site-packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                           "install", "--no-deps", "--no-index", str(wheel)],
                          env=subprocess_env(installers=True), capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    [site] = (venv / "lib").glob("python3*/site-packages")
    return site


def test_a_repacked_wheels_scripts_install_executable(tmp_path: Path) -> None:
    """A script a wheel installs into bin/ (uv's ``uv``) stays executable through the
    repack of ``LOCKMIRROR_TOOL_WHEELS=installed``: pip sets the executable bit only for
    an entry whose mode says regular file (0o100755), and the far side's
    ``lockmirror-venv/bin/uv`` was -rw-r--r-- (found by an outside tester)."""
    from importlib import metadata

    from lockmirror.stages.toolwheels import repack_installed

    script = b"#!/bin/sh\necho repacked tool runs\n"
    files = {"demo/__init__.py": b"", "demo-1.0.data/scripts/demo-tool": script,
             "demo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
             "demo-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\n"
                                         b"Root-Is-Purelib: true\nTag: py3-none-any\n"}
    original = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(original, "w") as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100755 if name.endswith("demo-tool") else 0o100644) << 16
            archive.writestr(info, data)
        archive.writestr("demo-1.0.dist-info/RECORD",
                         "".join(f"{name},,\n" for name in [*files, "demo-1.0.dist-info/RECORD"]))
    site = _pip_install(original, tmp_path / "first")
    assert os.access(tmp_path / "first" / "bin" / "demo-tool", os.X_OK)

    repacked = repack_installed(metadata.PathDistribution(site / "demo-1.0.dist-info"),
                                tmp_path / "repacked")
    _pip_install(repacked, tmp_path / "far")
    tool = tmp_path / "far" / "bin" / "demo-tool"
    assert os.access(tool, os.X_OK), oct(tool.stat().st_mode)
    ran = subprocess.run([str(tool)], capture_output=True, text=True, check=False)
    assert ran.stdout == "repacked tool runs\n", ran
    with zipfile.ZipFile(repacked) as archive:  # regular files, as wheels' RECORDs expect
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
    assert modes["demo-1.0.data/scripts/demo-tool"] == 0o100755
    assert modes["demo/__init__.py"] == modes["demo-1.0.dist-info/RECORD"] == 0o100644


# --------------------------------------------------------------------------
# Inputs that are wrong
# --------------------------------------------------------------------------


def _rot(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only the hash tells
    path.write_bytes(bytes(data))


def test_index_file_of_another_size_fails_and_leaves_nothing(tmp_path: Path) -> None:
    """Every index file's size is checked against manifest.json, small or big:
    a file that changed size in the build tree fails here, naming it, and
    nothing is left in the output."""
    inputs = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    for rel in ("files/alpha/alpha-1.0-py3-none-any.whl", "simple/alpha/index.html"):
        path = inputs["index_dir"] / rel
        original = path.read_bytes()
        path.write_bytes(original + b"\n")
        for split in (None, 64 * 1024):
            with pytest.raises(LockmirrorError, match="differs from manifest.json") as caught:
                bundle(tmp_path / "in", out, split=split)
            assert rel in str(caught.value)
            assert list(out.iterdir()) == []
        path.write_bytes(original)


def test_index_file_altered_at_the_same_size_is_refused_by_the_import(tmp_path: Path) -> None:
    """The bundle does not re-hash index files (their sha256 was checked when
    they were fetched, and the store names them by it); bytes altered at the
    same size travel, and the import, which hashes every member against
    bundle.json, refuses the whole bundle naming the file (README, "Threat
    model": "bundle sizes")."""
    from lockmirror.stages.importer import import_bundle

    inputs = make_inputs(tmp_path / "in")
    _rot(inputs["index_dir"] / "files/alpha/alpha-1.0-py3-none-any.whl")
    result = bundle(tmp_path / "in", tmp_path / "out")
    mirror = tmp_path / "far" / "mirror"
    mirror.parent.mkdir()
    with pytest.raises(BundleError, match="does not match bundle.json") as caught:
        import_bundle([result.path], mirror)
    assert "index/files/alpha/alpha-1.0-py3-none-any.whl" in str(caught.value)
    assert list(mirror.parent.iterdir()) == []


def test_missing_index_file_and_missing_manifest(tmp_path: Path) -> None:
    inputs = make_inputs(tmp_path / "in")
    (inputs["index_dir"] / "files/beta/beta-2.0.tar.gz").unlink()
    with pytest.raises(LockmirrorError, match="listed in manifest.json but missing"):
        bundle(tmp_path / "in", tmp_path / "out")
    (inputs["index_dir"] / "manifest.json").unlink()
    with pytest.raises(LockmirrorError, match="manifest.json: missing"):
        bundle(tmp_path / "in", tmp_path / "out")


def test_output_that_cannot_be_written_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """A full disk, simulated with RLIMIT_FSIZE: no traceback, no temporary file left."""
    import resource
    import signal

    make_inputs(tmp_path / "in")
    script = ("import sys; from pathlib import Path; from lockmirror.stages.bundle import build_bundle\n"
              "from lockmirror.errors import LockmirrorError\n"
              "root = Path(sys.argv[1])\n"
              "try:\n"
              "    build_bundle(root / 'dist-index', lockfile_dir=root / 'lockfiles',\n"
              "                 mirror_yaml=root / 'mirror.yaml', out_dir=root / 'out',\n"
              "                 name='demo', source_date_epoch=0, tool=False)\n"
              "except LockmirrorError as error:\n"
              "    sys.exit(str(error))\n")

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "in")],
                          preexec_fn=small_files, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "cannot write the bundle: File too large" in done.stderr
    assert list((tmp_path / "in" / "out").iterdir()) == []


def test_an_output_that_is_a_file_is_named(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_text("not a directory")
    with pytest.raises(LockmirrorError, match="the bundle output is a file, not a directory"
                       ) as error:
        bundle(tmp_path / "in", out)
    assert error.value.where == str(out)
    assert out.read_text() == "not a directory"


@pytest.mark.parametrize(("text", "expected"), [
    ("700M", 700 * 2**20), ("4G", 4 * 2**30), ("4095M", 4095 * 2**20), ("650MB", 650 * 10**6),
    ("1.5GiB", int(1.5 * 2**30)), ("123456", 123456), (2048, 2048),
])
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "12Q", "100"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(LockmirrorError):
        parse_size(text)


# --------------------------------------------------------------------------
# Volumes
# --------------------------------------------------------------------------


def test_split_volumes_are_slices_of_the_same_tar(tmp_path: Path) -> None:
    whole = bundle(tmp_path / "in", tmp_path / "whole")
    split = bundle(tmp_path / "in", tmp_path / "split", split="100K")
    assert len(split.parts) == -(-whole.size // (100 * 1024)) >= 3
    assert [p.name for p in split.parts] == [f"{whole.path.name}.{i:03d}"
                                             for i in range(1, len(split.parts) + 1)]
    joined = b"".join(p.read_bytes() for p in split.parts)
    assert joined == whole.path.read_bytes()
    assert all(p.stat().st_size == 100 * 1024 for p in split.parts[:-1])
    assert list(split.sha256) == [sha256(p) for p in split.parts]
    done = subprocess.run(["sha256sum", "-c", split.checksums.name], cwd=split.path.parent,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.count(": OK") == len(split.parts)
    head = read_head(locate_bundle([split.parts[-1]]))  # the others are found beside it
    assert head.info.content_id == whole.content_id


def test_rebuilding_with_other_volumes_removes_the_old_ones(tmp_path: Path) -> None:
    split = bundle(tmp_path / "in", tmp_path / "out", split="100K")
    whole = bundle(tmp_path / "in", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        whole.path.name, whole.checksums.name]
    again = bundle(tmp_path / "in", tmp_path / "out", split="100K")
    assert again.changed and again.sha256 == split.sha256
    assert not whole.path.exists()


def test_missing_volume_is_named(tmp_path: Path) -> None:
    split = bundle(tmp_path / "in", tmp_path / "split", split="100K")
    split.parts[1].unlink()
    with pytest.raises(BundleError, match=rf"{split.parts[1].name} is missing"):
        locate_bundle(list(split.parts[:1]) + list(split.parts[2:]))


# --------------------------------------------------------------------------
# Deltas
# --------------------------------------------------------------------------


def _new_files(old_index: Path) -> dict[str, bytes]:
    """base_files() with the old tree's random artifacts, one new wheel and one changed page."""
    files = base_files()
    for rel in ("files/alpha/alpha-1.0-py3-none-any.whl", "files/beta/beta-2.0.tar.gz"):
        files[rel] = (old_index / rel).read_bytes()
    files["files/gamma/gamma-3.0-py3-none-any.whl"] = os.urandom(20_000)
    files["simple/index.html"] += b"<a href='gamma/'>gamma</a>\n"
    return files


def carried_names(result: BundleResult) -> set[str]:
    with tarfile.open(result.path) as tar:
        return {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()}


def test_delta_carries_only_new_and_changed_files(tmp_path: Path) -> None:
    """Issue 15: pages the far side holds unchanged stay home like artifacts do."""
    old = make_inputs(tmp_path / "old")
    full = bundle(tmp_path / "old", tmp_path / "out")
    make_inputs(tmp_path / "new", _new_files(old["index_dir"]))
    base_sha = sha256(old["index_dir"] / "manifest.json")
    for since in (old["index_dir"] / "manifest.json", old["index_dir"], full.path):
        delta = bundle(tmp_path / "new", tmp_path / "delta", since=since)
        assert delta.kind == "delta" and delta.base_manifest_sha256 == base_sha
        assert delta.path.name.endswith(".delta.tar")
        index = {n for n in carried_names(delta) if n.startswith("index/")}
        assert index == {"index/files/gamma/gamma-3.0-py3-none-any.whl",
                         "index/simple/index.html", "index/manifest.json"}
        assert not any(n.startswith("tool/") for n in carried_names(delta))
        assert delta.index_files_carried == 2 and delta.index_files_total == 8


def test_delta_against_an_identical_mirror_carries_no_index_file(tmp_path: Path) -> None:
    inputs = make_inputs(tmp_path / "in")
    delta = bundle(tmp_path / "in", tmp_path / "out", since=inputs["index_dir"])
    assert delta.index_files_carried == 0 and delta.index_files_total == 7
    assert {n for n in carried_names(delta) if n.startswith("index/")} == {"index/manifest.json"}


def test_a_delta_without_unchanged_pages_imports_to_the_new_tree(tmp_path: Path) -> None:
    """The far side takes what the delta leaves out from its current mirror."""
    from lockmirror.stages.importer import import_bundle

    old = make_inputs(tmp_path / "old")
    full = bundle(tmp_path / "old", tmp_path / "out")
    new = make_inputs(tmp_path / "new", _new_files(old["index_dir"]))
    delta = bundle(tmp_path / "new", tmp_path / "delta", since=full.path)
    mirror = tmp_path / "far" / "mirror"
    mirror.parent.mkdir()
    import_bundle([full.path], mirror)
    result = import_bundle([delta.path], mirror)
    assert result.extracted == 2 and result.linked == 6  # gamma and the changed page
    assert scan_tree(mirror) == Manifest.read(new["index_dir"] / "manifest.json")


# --------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------


def test_signed_bundle_verifies_with_openssh(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "signer"
    public = signing.generate_keypair(key, comment="release@example")
    result = bundle(tmp_path / "in", tmp_path / "out", key=key)
    again = bundle(tmp_path / "in", tmp_path / "out2", key=key)
    assert result.signed and result.sha256 == again.sha256  # Ed25519 is deterministic
    with tarfile.open(result.path) as tar:
        members = tar.getmembers()
        assert members[2].name.endswith("/bundle.json.sig")
        info_bytes = tar.extractfile(members[1]).read()  # type: ignore[union-attr]
        sig_text = tar.extractfile(members[2]).read().decode()  # type: ignore[union-attr]
    signer = signing.verify(info_bytes, sig_text, signing.load_public_key(public), where="t")
    assert signer.fingerprint == signing.fingerprint(signing.load_public_key(key))
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen not installed")
    (tmp_path / "allowed").write_text(f"release@example {public.read_text()}")
    (tmp_path / "bundle.json.sig").write_text(sig_text)
    done = subprocess.run(
        ["ssh-keygen", "-Y", "verify", "-f", str(tmp_path / "allowed"), "-I", "release@example",
         "-n", signing.NAMESPACE, "-s", str(tmp_path / "bundle.json.sig")],
        input=info_bytes, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr


def test_signature_made_by_ssh_keygen_verifies(tmp_path: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen not installed")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
                   check=True)
    (tmp_path / "data").write_bytes(b"payload\n")
    subprocess.run(["ssh-keygen", "-Y", "sign", "-f", str(tmp_path / "k"), "-n",
                    signing.NAMESPACE, str(tmp_path / "data")], check=True, capture_output=True)
    text = (tmp_path / "data.sig").read_text()
    trusted = signing.load_public_key(tmp_path / "k.pub")
    signing.verify(b"payload\n", text, trusted, where="data.sig")
    with pytest.raises(BundleError, match="does not match the signed data"):
        signing.verify(b"payload!\n", text, trusted, where="data.sig")
    with pytest.raises(BundleError, match="namespace"):
        signing.verify(b"payload\n", text, trusted, where="data.sig", namespace="other")


def test_keys_in_pem_form_and_wrong_kinds(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    (tmp_path / "k.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (tmp_path / "k.pub.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    signature = signing.sign(b"x", signing.load_private_key(tmp_path / "k.pem"))
    signing.verify(b"x", signature, signing.load_public_key(tmp_path / "k.pub.pem"), where="t")
    signing.verify(b"x", signature, signing.load_public_key(tmp_path / "k.pem"), where="t")
    other = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.pem").write_bytes(other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(LockmirrorError, match="only Ed25519"):
        signing.load_private_key(tmp_path / "ec.pem")
    (tmp_path / "junk").write_text("hello\n")
    with pytest.raises(LockmirrorError, match="not an OpenSSH or PEM"):
        signing.load_public_key(tmp_path / "junk")
    with pytest.raises(LockmirrorError, match="refusing to overwrite"):
        signing.generate_keypair(tmp_path / "k.pem")


def test_encrypted_pem_key_needs_the_passphrase_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    (tmp_path / "k.pem").write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret")))
    monkeypatch.delenv(signing.PASSPHRASE_ENV, raising=False)
    with pytest.raises(LockmirrorError, match=signing.PASSPHRASE_ENV):
        signing.load_private_key(tmp_path / "k.pem")
    monkeypatch.setenv(signing.PASSPHRASE_ENV, "wrong")
    with pytest.raises(LockmirrorError, match="wrong passphrase"):
        signing.load_private_key(tmp_path / "k.pem")
    monkeypatch.setenv(signing.PASSPHRASE_ENV, "s3cret")
    assert signing.load_private_key(tmp_path / "k.pem")

    public = signing.generate_keypair(tmp_path / "new" / "key")  # encrypted: passphrase set
    assert (tmp_path / "new" / "key").stat().st_mode & 0o777 == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "new" / "key").read_bytes()
    key = signing.load_private_key(tmp_path / "new" / "key")
    signing.verify(b"m", signing.sign(b"m", key), signing.load_public_key(public), where="t")
    monkeypatch.delenv(signing.PASSPHRASE_ENV)
    with pytest.raises(LockmirrorError, match=signing.PASSPHRASE_ENV):
        signing.load_private_key(tmp_path / "new" / "key")


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def make_project(root: Path) -> None:
    """A mirror.yaml project with inputs at its default paths."""
    make_inputs(root)
    (root / "mirror.yaml").write_text(
        "version: 1\nname: demo\nsources:\n  - name: pypi\n    url: https://example.invalid/simple/\n"
        "targets:\n  t:\n    python: '3.11'\n    platforms: [manylinux_2_28_x86_64]\n"
        "sets:\n  core:\n    requirements: [alpha==1.0]\n")
    # the CLI checks the URLs of the lockfiles it carries, so they must be lockfiles
    from lockmirror.formats.lockfile import Lockfile
    from lockmirror.formats.mirror_lockfile import relocate_lockfile

    lockfile = root / "lockfiles" / "pylock.core.toml"
    Lockfile(set_name="core", requirements=("alpha==1.0",), targets=(), packages=(),
             input_hash="sha256:" + "0" * 64).write(lockfile)
    # the index was built from it (the CLI checks): its copy of the lockfile is relocated
    write_tree(root / "dist-index", {"lockfiles/pylock.core.toml":
                                     relocate_lockfile(lockfile.read_bytes())})


def test_cli_bundle_reads_mirror_yaml(tmp_path: Path) -> None:
    make_project(tmp_path)
    env = subprocess_env(SOURCE_DATE_EPOCH=str(EPOCH))
    done = subprocess.run([sys.executable, "-m", "lockmirror", "bundle", "--no-tool",
                           "--split", "200K"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "full bundle" in done.stdout and "unsigned" in done.stdout
    assert max(p.name for p in (tmp_path / "dist").iterdir()).endswith(".tar.sha256")
    done = subprocess.run([sys.executable, "-m", "lockmirror", "bundle", "--split", "1 apple"],
                          cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("lockmirror: error: not a size") and "Traceback" not in \
        done.stderr


def test_doit_and_cli_share_one_tool_wheel_cache_and_give_the_same_bytes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`lockmirror bundle` and `doit bundle` (its action) fill and reuse the same
    ``.cache/tool-wheels/<key>/``: the dependency wheels are fetched once."""
    from lockmirror import doit_tasks

    make_project(tmp_path)
    monkeypatch.delenv("LOCKMIRROR_CACHE", raising=False)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    done = subprocess.run([sys.executable, "-m", "lockmirror", "bundle"], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "full bundle" in done.stdout and "dependency wheels" in done.stderr
    written = {p.name: sha256(p) for p in (tmp_path / "dist").iterdir()}
    cached = sorted((tmp_path / ".cache").rglob("pins.txt"))
    assert [p.parent.parent for p in cached] == [tmp_path / ".cache" / "tool-wheels"]

    monkeypatch.chdir(tmp_path)
    doit_tasks._bundle(doit_tasks.Project(tmp_path / "mirror.yaml"))
    assert "(unchanged)" in capsys.readouterr().out  # the same bytes: nothing rewritten
    assert {p.name: sha256(p) for p in (tmp_path / "dist").iterdir()} == written
    assert sorted((tmp_path / ".cache").rglob("pins.txt")) == cached


def test_bundle_json_roundtrip_and_refusals() -> None:
    from lockmirror.formats.manifest import Entry

    info = BundleInfo(name="demo", kind="delta", index_manifest_sha256="a" * 64,
                      base_manifest_sha256="b" * 64, lockmirror_version="0.1.0",
                      tool_python=None, files={"index/x": Entry("c" * 64, 3)})
    assert BundleInfo.loads(info.dumps(), where="t") == info
    bad = info.dumps().replace(b'"index/x"', b'"../x"')
    with pytest.raises(BundleError, match="unsafe path"):
        BundleInfo.loads(bad, where="t")
    with pytest.raises(BundleError, match="not a lockmirror bundle.json"):
        BundleInfo.loads(io.BytesIO(b"{}").read(), where="t")


def test_a_killed_writers_temporary_volume_goes_with_the_next_bundle(tmp_path: Path) -> None:
    """kill -9 leaves a temporary volume as large as a bundle; the next bundle of
    the mirror removes it (a refresh bundle's too: every writer takes the same
    lock). While one writer works in the directory, a second is told so."""
    from lockmirror.fsutil import one_at_a_time

    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".lockmirror-demo-0123456789abcdef.tar.x3lzam_j.tmp"
    stale.write_bytes(b"x" * 1000)
    refreshing = out / ".lockmirror-demo-0123456789abcdef.advisories.tar.q1w2e3r4.tmp"
    refreshing.write_bytes(b"y")
    result = bundle(tmp_path / "in", out)
    assert not stale.exists() and not refreshing.exists()
    with one_at_a_time(out, "the first writer"):
        with pytest.raises(LockmirrorError, match="another lockmirror bundle is being written"):
            bundle(tmp_path / "in", out)
    assert sha256(result.path) == result.sha256[0]
