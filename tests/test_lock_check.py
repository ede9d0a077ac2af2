"""``lock --check`` proves the lockfile, not only its inputs (issue 19, point 2).

A set is locked against the fixture index, then its lockfile is edited by
hand the way a pull request could: ``lock --check`` must name the entry and
say what differs (a swapped URL, sha256, size, file name or version), reading
project pages only; ``--resolve`` must find any edit at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fixtureindex import FixtureIndex

from lockmirror import cli
from lockmirror.config import load_config
from lockmirror.formats.lockfile import LockedFile, LockedPackage, Lockfile
from lockmirror.stages.lock import lock_sets

MIRROR = """\
version: 1
name: test
sources:
  - name: fixture
    url: {url}
targets:
  x86:
    python: "3.11"
    platforms: [manylinux_2_28_x86_64]
sets:
  main:
    requirements: [beta, native]
paths:
  cache: {cache}
"""


def write_locked(tmp_path: Path, url: str) -> Path:
    """:data:`MIRROR` on the index at ``url``, written to tmp_path and locked; its
    lockfile is lockfiles/pylock.main.toml."""
    config = tmp_path / "mirror.yaml"
    config.write_text(MIRROR.format(url=url, cache=tmp_path / "cache"))
    lock_sets(load_config(config))
    return config


@pytest.fixture
def locked(tmp_path: Path, fixture_index: FixtureIndex) -> Path:
    """mirror.yaml of a freshly locked set; its lockfile is lockfiles/pylock.main.toml."""
    return write_locked(tmp_path, fixture_index.url)


def lockfile_of(config: Path) -> Path:
    return config.parent / "lockfiles" / "pylock.main.toml"


def edit(config: Path, name: str,
         change: Callable[[LockedPackage, LockedFile], tuple[LockedPackage, LockedFile]]
         ) -> LockedFile:
    """Rewrite the first file of package ``name``; returns the file as edited."""
    path = lockfile_of(config)
    lock = Lockfile.read(path)
    packages = []
    edited = None
    for package in lock.packages:
        if package.name == name and edited is None:
            first = package.files[0]
            package, edited = change(package, first)
            wheels = tuple(edited if w == first else w for w in package.wheels)
            sdist = edited if package.sdist == first else package.sdist
            package = dataclasses.replace(package, wheels=wheels, sdist=sdist)
        packages.append(package)
    assert edited is not None
    dataclasses.replace(lock, packages=tuple(packages)).write(path)
    return edited


def check(config: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    status = cli.main(["lock", "--check", "--config", str(config), *extra])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_a_fresh_lock_passes_reading_pages_only(
        locked: Path, fixture_index: FixtureIndex, capsys: pytest.CaptureFixture[str]) -> None:
    fixture_index.reset_counts()
    status, out = check(locked, capsys)
    assert status == 0, out
    assert "lockfiles current: main" in out and "match their sources' project pages" in out
    paths = {r.path for r in fixture_index.requests}
    assert any(p.startswith("/simple/") for p in paths)
    assert not any(p.startswith("/files/") for p in paths)  # no distribution downloaded


def test_a_swapped_url_hash_and_size_on_another_host_fail_naming_the_entry(
        locked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def swap(package: LockedPackage, file: LockedFile) -> tuple[LockedPackage, LockedFile]:
        return package, dataclasses.replace(
            file, url=f"https://evil.example.com/{file.filename}", sha256="e" * 64,
            size=file.size + 44)

    swapped = edit(locked, "beta", swap)
    status, out = check(locked, capsys)
    assert status == 2
    assert f"package beta 1.0: https://evil.example.com/{swapped.filename}" in out
    assert "not under a file location of its source" in out
    # the URL rule refuses it first; the project page would have too
    from lockmirror.net.index_client import IndexClient
    from lockmirror.stages.lock_check import page_mismatches

    loaded = load_config(locked)
    with IndexClient(loaded.config.sources, cache_dir=loaded.cache_dir / "http") as client:
        lines = page_mismatches([(lockfile_of(locked), Lockfile.read(lockfile_of(locked)))],
                                client)
    head = f"{lockfile_of(locked)}: beta 1.0: {swapped.filename}: "
    assert [line.split(" in the lockfile")[0] for line in lines] == [
        f"{head}sha256 {'e' * 64}", f"{head}URL {swapped.url}", f"{head}size {swapped.size}"]


def test_a_swapped_hash_and_size_on_the_sources_host_fail_against_the_page(
        locked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def swap(package: LockedPackage, file: LockedFile) -> tuple[LockedPackage, LockedFile]:
        return package, dataclasses.replace(file, sha256="e" * 64, size=file.size + 44)

    swapped = edit(locked, "beta", swap)
    status, out = check(locked, capsys)
    assert status == 1, out
    head = f"{lockfile_of(locked)}: beta 1.0: {swapped.filename}: "
    assert f"{head}sha256 {'e' * 64} in the lockfile, " in out
    assert f"{head}size {swapped.size} in the lockfile, {swapped.size - 44} on the project page" \
        in out


def test_a_file_name_the_page_does_not_list_fails(
        locked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def rename(package: LockedPackage, file: LockedFile) -> tuple[LockedPackage, LockedFile]:
        name = file.filename.replace("py3-none-any", "py2.py3-none-any")
        return package, dataclasses.replace(file, filename=name,
                                            url=file.url.replace(file.filename, name))

    renamed = edit(locked, "beta", rename)
    status, out = check(locked, capsys)
    assert status == 1, out
    assert f"beta 1.0: {renamed.filename}: not listed on the project page" in out


def test_a_version_the_page_does_not_list_fails(
        locked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from packaging.version import Version

    def bump(package: LockedPackage, file: LockedFile) -> tuple[LockedPackage, LockedFile]:
        # PEP 751 ties a file name's version to its entry's: both move
        name = file.filename.replace("-1.0-", "-9.9-")
        return (dataclasses.replace(package, version=Version("9.9")),
                dataclasses.replace(file, filename=name, url=file.url.replace(file.filename,
                                                                              name)))

    edit(locked, "beta", bump)
    status, out = check(locked, capsys)
    assert status == 1, out
    assert f"{lockfile_of(locked)}: beta 9.9: version 9.9 is not on the project page" in out


def test_resolve_passes_on_a_fresh_lock_and_names_a_hand_edit(
        locked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = lockfile_of(locked).read_bytes()
    status, out = check(locked, capsys, "--resolve")
    assert status == 0, out
    assert "re-resolved: identical" in out
    assert lockfile_of(locked).read_bytes() == before  # nothing written

    def drop_dependencies(package: LockedPackage,
                          file: LockedFile) -> tuple[LockedPackage, LockedFile]:
        return dataclasses.replace(package, dependencies=()), file

    edit(locked, "beta", drop_dependencies)
    status, out = check(locked, capsys)  # every file still matches its page
    assert status == 0, out
    status, out = check(locked, capsys, "--resolve")
    assert status == 1
    assert f"{lockfile_of(locked)}: beta 1.0: dependencies () in the lockfile, `lock` writes (" \
        in out
    edited = lockfile_of(locked).read_bytes()
    assert edited != before  # the check wrote nothing back

    lockfile_of(locked).write_bytes(before.replace(b"Do not edit", b"Please edit"))
    status, out = check(locked, capsys, "--resolve")
    assert status == 1 and "line 1 differs from what `lock` writes" in out


def test_resolve_needs_check(locked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["lock", "--resolve", "--config", str(locked)]) == 1
    assert "--resolve goes with --check" in capsys.readouterr().err


def test_check_parses_each_lockfile_once(locked: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The URL rule and the PEP 751 model share one parse of the lockfile (it was four:
    rule and model, all twice since the check re-entered itself to open its client)."""
    from lockmirror.formats import lockfile

    parsed: list[str] = []
    real = lockfile.load_toml

    def counting(text: str, *, where: str, **kwargs: Any) -> dict[str, Any]:
        parsed.append(where)
        return real(text, where=where, **kwargs)

    monkeypatch.setattr(lockfile, "load_toml", counting)
    status, out = check(locked, capsys)
    assert status == 0, out
    assert parsed.count(str(lockfile_of(locked))) == 1, parsed


def test_resolve_compares_what_lock_writes_not_its_memory(
        tmp_path: Path, make_index: Callable[..., FixtureIndex],
        capsys: pytest.CaptureFixture[str]) -> None:
    """An index gives Requires-Python as '>=3.8,<4.0'; the lockfile holds it
    normalized. A fresh lock compared as written is identical (compared from
    memory it gave a false line per such release, burying the real one)."""
    from fixtureindex import build_wheel

    files = tmp_path / "files"
    files.mkdir()
    build_wheel(files, "ordered", "1.0", requires_python=">=3.8,<4.0")
    index = make_index(files, upload_times={}, yanked={})
    config = tmp_path / "mirror.yaml"
    config.write_text(MIRROR.format(url=index.url, cache=tmp_path / "cache")
                      .replace("[beta, native]", "[ordered]"))
    lock_sets(load_config(config))
    assert 'requires-python = "<4.0,>=3.8"' in lockfile_of(config).read_text()
    status, out = check(config, capsys, "--resolve")
    assert status == 0, out
    assert "re-resolved: identical" in out
    # another difference (a comment edited): only it is named, no requires_python line
    path = lockfile_of(config)
    path.write_text(path.read_text().replace("Do not edit", "Please edit"))
    status, out = check(config, capsys, "--resolve")
    assert status == 1 and "line 1 differs from what `lock` writes" in out
    assert "requires_python" not in out
