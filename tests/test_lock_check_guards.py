"""``lock --check`` against the project pages: the comparisons a mutation run found unguarded.

``tests/test_lock_check.py`` swaps a file's URL, sha256, size, name or
version; here the other fields a pull request could edit while the page stays
as it was: the PEP 658 metadata hash, the URL alone (same host, same hash),
and a size when the page states none (an HTML page: the size comes from the
JSON API, as at lock time).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from fixtureindex import Catalogue, FixtureIndex
from packaging.version import Version
from test_lock_check import MIRROR, check, edit, lockfile_of, write_locked

from lockmirror.config import load_config
from lockmirror.formats.lockfile import LockedFile, LockedPackage, Lockfile
from lockmirror.net.index_client import IndexClient
from lockmirror.stages.lock import lock_sets
from lockmirror.stages.lock_check import page_mismatches


@pytest.fixture
def locked(tmp_path: Path, fixture_index: FixtureIndex) -> Path:
    """mirror.yaml of a freshly locked set (as in ``tests/test_lock_check.py``)."""
    return write_locked(tmp_path, fixture_index.url)


def refused_metadata_hash(config: Path, sha256: str,
                          capsys: pytest.CaptureFixture[str]) -> tuple[LockedFile, str]:
    """beta's first file given the metadata hash ``sha256``: the check fails (exit 1);
    the file as edited and what the check said."""
    def swap(package: LockedPackage, file: LockedFile) -> tuple[LockedPackage, LockedFile]:
        return package, dataclasses.replace(file, metadata_sha256=sha256)

    swapped = edit(config, "beta", swap)
    status, out = check(config, capsys)
    assert status == 1, out
    return swapped, out


def test_an_edited_metadata_hash_fails(locked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    swapped, out = refused_metadata_hash(locked, "e" * 64, capsys)
    assert (f"{lockfile_of(locked)}: beta 1.0: {swapped.filename}: metadata sha256 {'e' * 64} "
            "in the lockfile, ") in out


def test_a_url_moved_on_the_sources_host_fails_even_with_the_same_hash(
        locked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def move(package: LockedPackage, file: LockedFile) -> tuple[LockedPackage, LockedFile]:
        return package, dataclasses.replace(file, url=file.url.replace("/files/", "/other/"))

    moved = edit(locked, "beta", move)
    status, out = check(locked, capsys)
    assert status == 1, out
    assert f"beta 1.0: {moved.filename}: URL {moved.url} in the lockfile, " in out


def test_a_size_the_page_leaves_out_is_checked_against_the_index(
        locked: Path, fixture_index: FixtureIndex, capsys: pytest.CaptureFixture[str]) -> None:
    fixture_index.html_only = True  # PEP 503 pages state no size
    status, out = check(locked, capsys)
    assert status == 0, out

    def grow(package: LockedPackage, file: LockedFile) -> tuple[LockedPackage, LockedFile]:
        return package, dataclasses.replace(file, size=file.size + 1)

    grown = edit(locked, "beta", grow)
    status, out = check(locked, capsys)
    assert status == 1, out
    assert (f"beta 1.0: {grown.filename}: size {grown.size} in the lockfile, the index states "
            f"size {grown.size - 1}") in out


def test_a_version_the_page_lacks_lists_the_latest_it_has(
        locked: Path, fixture_index: FixtureIndex, capsys: pytest.CaptureFixture[str]) -> None:
    def bump(package: LockedPackage, file: LockedFile) -> tuple[LockedPackage, LockedFile]:
        name = file.filename.replace("-1.0", "-9.9", 1)
        return (dataclasses.replace(package, version=Version("9.9")),
                dataclasses.replace(file, filename=name, url=file.url.replace(file.filename,
                                                                              name)))

    edit(locked, "beta", bump)
    listed = sorted({Version(f.version) for f in fixture_index.files.values()
                     if f.normalized == "beta"})
    status, out = check(locked, capsys)
    assert status == 1, out
    assert (f"beta 9.9: version 9.9 is not on the project page (latest listed: "
            f"{', '.join(str(v) for v in listed[-5:])})") in out


def test_every_file_of_an_entry_is_checked_after_one_the_page_lacks(
        tmp_path: Path, fixture_index: FixtureIndex, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "mirror.yaml"  # two targets: native is locked with two wheels
    locked.write_text(MIRROR.format(url=fixture_index.url, cache=tmp_path / "cache").replace(
        "targets:\n", 'targets:\n  win:\n    python: "3.11"\n    platforms: [win_amd64]\n', 1))
    lock_sets(load_config(locked))
    path = lockfile_of(locked)
    lock = Lockfile.read(path)
    package = next(p for p in lock.packages if len(p.files) > 1)
    first, second = package.files[:2]
    renamed = first.filename.replace("-1.0-", "-1.0-1-", 1)  # a build tag: another file
    edited = {first: dataclasses.replace(first, filename=renamed,
                                         url=first.url.replace(first.filename, renamed)),
              second: dataclasses.replace(second, sha256="e" * 64)}
    package = dataclasses.replace(
        package, wheels=tuple(edited.get(w, w) for w in package.wheels),
        sdist=edited.get(package.sdist, package.sdist) if package.sdist else None)
    dataclasses.replace(lock, packages=tuple(package if p.name == package.name else p
                                             for p in lock.packages)).write(path)
    status, out = check(locked, capsys)
    assert status == 1, out
    assert f"{renamed}: not listed on the project page" in out
    assert f"{second.filename}: sha256 {'e' * 64} in the lockfile" in out


def test_an_entry_from_another_source_than_the_page_is_named(
        tmp_path: Path, fixture_index: FixtureIndex, catalogue: Catalogue,
        make_index: Callable[..., FixtureIndex]) -> None:
    """Locked from one source, the project now comes from another (a higher priority):
    the page's source is named beside the lockfile's."""
    second = make_index(catalogue.root, upload_times=catalogue.upload_times)
    config = write_locked(tmp_path, second.url)
    config.write_text(config.read_text().replace(
        "sources:\n", f"sources:\n  - name: first\n    url: {fixture_index.url}\n"
                      "    priority: 1\n", 1))
    loaded = load_config(config)
    with IndexClient(loaded.config.sources_by_priority(),
                     cache_dir=loaded.cache_dir / "http") as client:
        lines = page_mismatches([(lockfile_of(config), Lockfile.read(lockfile_of(config)))],
                                client)
    assert (f"{lockfile_of(config)}: beta 1.0: the lockfile says index {second.url}, but the "
            f"project now comes from source 'first' ({fixture_index.url})") in lines


@pytest.mark.parametrize(("change", "says"), [
    (lambda text: "\ufeff" + text, "not TOML 1.0, which installers read: "),
    (lambda text: text + '\n[tool.review]\nnote = """a\r\nb"""\n',
     "installers read other values from it than lockmirror"),
], ids=["byte-order mark", "carriage return in a multi-line string"])
def test_a_lockfile_installers_read_differently_fails(
        locked: Path, capsys: pytest.CaptureFixture[str], change: Callable[[str], str],
        says: str) -> None:
    """lockmirror's parser (rtoml) takes what pip's (tomllib) refuses or reads
    otherwise; lock --check holds the committed file to what installers read."""
    path = lockfile_of(locked)
    path.write_bytes(change(path.read_text(encoding="utf-8")).encode("utf-8"))
    status, out = check(locked, capsys)
    assert status == 1, out
    assert f"{path}: {says}" in out


def test_a_marker_edited_by_hand_fails_the_check(tmp_path: Path, fixture_index: FixtureIndex,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``diff`` and the index read an entry's targets; installers read its marker. A
    marker widened onto another target (or narrowed off its own) makes the far side
    install what no reviewer saw: the check compares the two, with no network."""
    from test_lock import ARM, X86, write_mirror

    from lockmirror import cli

    config = write_mirror(tmp_path, fixture_index, "  core:\n    requirements: ['beta==1.0']\n")
    lock_sets(load_config(config))
    path = tmp_path / "lockfiles" / "pylock.core.toml"
    locked = Lockfile.read(path)
    alphas = {p.targets: p for p in locked.packages if p.name == "alpha"}
    assert set(alphas) == {(X86,), (ARM,)}  # one version per target

    def rewrite(marker: dict[tuple[str, ...], str | None], extra: tuple[LockedPackage, ...] = ()
                ) -> str:
        packages = tuple(dataclasses.replace(p, marker=marker[p.targets])
                         if p.name == "alpha" and p.targets in marker else p
                         for p in locked.packages) + extra
        dataclasses.replace(locked, packages=packages).write(path)
        assert cli.main(["lock", "--check", "--config", str(config)]) == 1
        return capsys.readouterr().err

    before = tmp_path / "before"
    before.mkdir()
    (before / path.name).write_bytes(path.read_bytes())
    said = rewrite({(X86,): 'sys_platform == "linux"'})
    assert (f"alpha {alphas[(X86,)].version}: its marker is true on target {ARM}, which it is "
            "not locked for") in said
    # the reviewer's diff shows it too (its per-target view reads the targets, not markers)
    cli.main(["diff", "--config", str(config), str(before), str(path.parent)])
    shown = capsys.readouterr().out
    assert "no changes" not in shown and "ALARM: 1 " in shown
    assert f"! set core: alpha {alphas[(X86,)].version}: its marker is true on target {ARM}" \
        in shown
    said = rewrite({(ARM,): f'({alphas[(ARM,)].marker}) and python_version < "3"'})
    assert (f"alpha {alphas[(ARM,)].version}: its marker is false on every Python of target "
            f"{ARM}, which it is locked for") in said
    said = rewrite({(X86,): 'extra == "x"'})  # no lockfile marker names an extra
    assert f"alpha {alphas[(X86,)].version}: its marker cannot be evaluated" in said
    # a second entry with no marker (installers: everywhere) that no target lists
    said = rewrite({}, (dataclasses.replace(alphas[(X86,)], targets=(), marker=None),))
    assert f"alpha {alphas[(X86,)].version}: locked for no target" in said
    assert f"alpha {alphas[(X86,)].version}: a second entry of this release" in said


def test_a_metadata_hash_a_page_does_not_state_is_checked_against_the_wheel(
        tmp_path: Path, fixture_index: FixtureIndex, capsys: pytest.CaptureFixture[str]) -> None:
    """A source without PEP 658 hashes (a Nexus-style index): the lockfile's metadata
    hash is the only one. Pointed at another wheel's metadata (a file the store has),
    fetch would take that file and the index serve it; the check reads the wheel's."""
    fixture_index.no_metadata = True
    config = write_locked(tmp_path, fixture_index.url)
    locked = Lockfile.read(lockfile_of(config))
    other = next(f.metadata_sha256 for p in locked.packages if p.name != "beta"
                 for f in p.wheels if f.metadata_sha256)
    status, out = check(config, capsys)
    assert status == 0, out

    forged, out = refused_metadata_hash(config, other, capsys)
    assert (f"beta 1.0: {forged.filename}: metadata sha256 {other} in the lockfile, the "
            "wheel's METADATA has ") in out


def test_a_target_with_marker_overrides_passes_its_own_check(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    """``markers:`` overrides are part of a target's marker: read back from the
    lockfile, they must not make lock's own entries look edited."""
    from lockmirror.stages.lock_merge import entry_problems

    config = tmp_path / "mirror.yaml"
    config.write_text(f"""\
version: 1
sources: [{{name: fixture, url: "{fixture_index.url}"}}]
targets:
  kernel515: {{python: "3.11", platforms: [manylinux_2_28_x86_64],
              markers: {{platform_release: "5.15.0"}}}}
  arm: {{python: "3.12", platforms: [manylinux_2_28_aarch64]}}
sets:
  core: {{requirements: ["beta==1.0"]}}
paths: {{cache: {tmp_path / "cache"}}}
""")
    (result,) = lock_sets(load_config(config))
    assert any(p.targets == ("kernel515",) and "platform_release" in (p.marker or "")
               for p in result.lockfile.packages)  # an entry for that target alone
    assert entry_problems(result.lockfile) == []


def test_default_groups_edited_by_hand_fail_the_check(
        tmp_path: Path, fixture_index: FixtureIndex, capsys: pytest.CaptureFixture[str]) -> None:
    """Installers take the default groups; lock writes ["runtime"] when the set has
    build groups. A build group added there installs build-only entries everywhere."""
    from test_lock import write_mirror

    from lockmirror import cli

    config = write_mirror(tmp_path, fixture_index, "  core:\n    requirements: [sdistonly]\n")
    lock_sets(load_config(config))
    path = tmp_path / "lockfiles" / "pylock.core.toml"
    text = path.read_text()
    assert 'default-groups = [\n    "runtime",\n]' in text, text[:600]
    group = Lockfile.read(path).build_groups[0]
    path.write_text(text.replace('default-groups = [\n    "runtime",\n]',
                                 f'default-groups = [\n    "runtime",\n    "{group}",\n]'))
    assert cli.main(["lock", "--check", "--config", str(config)]) == 1
    assert "default-groups ['runtime', " in capsys.readouterr().err


def test_a_build_only_entry_made_a_default_install_by_hand_fails_the_check(
        tmp_path: Path, fixture_index: FixtureIndex, capsys: pytest.CaptureFixture[str]) -> None:
    """A build tool's build-group marker removed (or swapped for the runtime group's):
    installing the set would install it. The entry check says so, with no network;
    a lock never writes it (a build tool needed at run time is not build-only)."""
    from test_lock import write_mirror

    from lockmirror import cli

    config = write_mirror(tmp_path, fixture_index, "  core:\n    requirements: [sdistonly]\n")
    lock_sets(load_config(config))
    path = tmp_path / "lockfiles" / "pylock.core.toml"
    locked = Lockfile.read(path)
    tool = next(p for p in locked.packages if p.build_only)
    assert cli.main(["lock", "--check", "--config", str(config)]) == 0
    capsys.readouterr()
    for marker in (None, '"runtime" in dependency_groups'):
        dataclasses.replace(locked, packages=tuple(
            dataclasses.replace(p, marker=marker) if p is tool else p
            for p in locked.packages)).write(path)
        assert cli.main(["lock", "--check", "--config", str(config)]) == 1
        assert (f"{tool.name} {tool.version}: locked only to build sdists, yet its marker lets "
                "installers take it by default") in capsys.readouterr().err
