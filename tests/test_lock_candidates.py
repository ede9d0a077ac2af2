"""Which releases are candidates: file names checked against their project, failed
sdist builds passed over (and recorded), PEP 440's pre-release rule, and the
reason given when nothing installs. On the fixture index, hermetic."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtureindex import FixtureIndex, build_sdist, build_wheel
from packaging.utils import canonicalize_name
from test_lock import ARM, X86, lock, versions, write_mirror

from lockmirror.config import load_config
from lockmirror.errors import ResolutionError
from lockmirror.formats.lockfile import Lockfile
from lockmirror.net.simple_page import parse_json_page
from lockmirror.resolve.candidates import Refusal
from lockmirror.stages.lock import lock_sets

MISNAMED = "oddname-2.0-dev-9429.tar.gz"


def misnamed_project(tmp_path: Path, index: FixtureIndex) -> None:
    """oddname 1.0 (a wheel) and a 2011-style sdist whose name packaging reads as
    project ``oddname-2-0-dev``, version 9429 (PyPI's selenium has one)."""
    files = tmp_path / "files"
    index.add_file(build_wheel(files, "oddname", "1.0"))
    sdist = build_sdist(files, "oddname", "2.0.dev0")
    index.add_file(sdist.rename(sdist.with_name(MISNAMED)))


def test_a_file_named_for_another_project_is_ignored(tmp_path: Path,
                                                     fixture_index: FixtureIndex) -> None:
    misnamed_project(tmp_path, fixture_index)
    locked = lock(tmp_path, fixture_index, "  o:\n    requirements: [oddname]\n")["o"]
    assert versions(locked, X86)["oddname"] == "1.0"
    assert MISNAMED not in locked.dumps()


def test_a_page_keeps_the_misnamed_file_but_no_release_from_it() -> None:
    entry = {"hashes": {"sha256": "ab" * 32}, "requires-python": None}
    data = ('{"meta": {"api-version": "1.1"}, "name": "selenium", "files": ['
            + ", ".join(
                f'{{"filename": "{name}", "url": "../../f/{name}", "hashes": '
                f'{{"sha256": "{entry["hashes"]["sha256"]}"}}}}'
                for name in ("selenium-2.0-dev-9429.tar.gz", "selenium-4.1.0.tar.gz",
                             "selenium-4.1.0-py3-none-any.whl", "Selenium-4.0.0.zip",
                             "not-a-distribution.txt"))
            + "]}").encode()
    page = parse_json_page(data, "https://index.example/simple/selenium/",
                           canonicalize_name("selenium"), "main")
    assert [str(v) for v in page.releases] == ["4.1.0", "4.0.0"]
    assert [f.filename for f in page.files_of(page.releases[0])] == [
        "selenium-4.1.0.tar.gz", "selenium-4.1.0-py3-none-any.whl"]
    assert page.files_of(page.releases[0])[1].url == (
        "https://index.example/f/selenium-4.1.0-py3-none-any.whl")
    assert len(page.files) == 5  # every file is still listed, in page order


def broken_build(tmp_path: Path, index: FixtureIndex) -> None:
    """brokenbuild 1.0 (a wheel) and 2.0 (an sdist whose PEP 517 backend is missing:
    its metadata can only come from that backend)."""
    files = tmp_path / "files"
    index.add_file(build_wheel(files, "brokenbuild", "1.0"))
    index.add_file(build_sdist(files, "brokenbuild", "2.0", metadata_version="2.1",
                               build_backend="no_such_backend_module"))


def test_a_failed_sdist_build_skips_the_candidate_and_is_recorded(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    broken_build(tmp_path, fixture_index)
    loaded = load_config(write_mirror(tmp_path, fixture_index,
                                      "  b:\n    requirements: [brokenbuild]\n"))
    [result] = lock_sets(loaded)
    assert versions(result.lockfile, X86)["brokenbuild"] == "1.0"
    assert versions(result.lockfile, ARM)["brokenbuild"] == "1.0"
    records = result.lockfile.skipped_builds
    assert [(r["target"], r["package"], r["version"]) for r in records] == [
        (ARM, "brokenbuild", "2.0"), (X86, "brokenbuild", "2.0")]
    assert all(r["reason"] == "brokenbuild-2.0.tar.gz: its PEP 517 backend failed"
               for r in records)
    # the lock's output says so, and the record survives a round trip of the file
    assert any(w.startswith(f"skipped brokenbuild 2.0 on {X86}: preparing the metadata of "
                          "brokenbuild-2.0.tar.gz failed: Backend 'no_such_backend_module' is "
                          "not available")
               for w in result.warnings), result.warnings
    assert Lockfile.read(result.path).skipped_builds == records
    assert "[[tool.lockmirror.skipped-builds]]" in result.path.read_text()
    # the failure is remembered by the sdist's sha256: the next lock does not build again
    fixture_index.reset_counts()
    result.path.unlink()
    [again] = lock_sets(loaded)
    assert again.lockfile.skipped_builds == records
    assert not [r.path for r in fixture_index.requests if "fixture-backend" in r.path]


def test_the_lock_fails_only_when_no_candidate_is_left(tmp_path: Path,
                                                      fixture_index: FixtureIndex) -> None:
    broken_build(tmp_path, fixture_index)
    with pytest.raises(ResolutionError) as info:
        lock(tmp_path, fixture_index, "  b:\n    requirements: ['brokenbuild>=2']\n")
    text = str(info.value)
    assert "no candidate of brokenbuild" in text
    assert "preparing the metadata of brokenbuild-2.0.tar.gz failed" in text


def test_a_project_with_only_prereleases_locks_without_a_flag(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    files = tmp_path / "files"
    for version in ("0.5b1", "0.66b2"):
        fixture_index.add_file(build_wheel(files, "preonly", version))
    locked = lock(tmp_path, fixture_index, "  p:\n    requirements: [preonly]\n")["p"]
    assert versions(locked, X86)["preonly"] == "0.66b2"


def test_a_prerelease_stays_out_while_a_final_release_satisfies(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    # gamma has 1.0 and 2.0b1; ">=1.0" names no pre-release and 1.0 satisfies it
    sets = ("  plain:\n    requirements: ['gamma>=1.0']\n"
            "  above:\n    requirements: ['gamma>1.0']\n")
    locks = lock(tmp_path, fixture_index, sets)
    assert versions(locks["plain"], X86)["gamma"] == "1.0"
    assert versions(locks["above"], X86)["gamma"] == "2.0b1"  # no final release satisfies


def test_nothing_installs_says_requires_python(tmp_path: Path,
                                               fixture_index: FixtureIndex) -> None:
    with pytest.raises(ResolutionError) as info:
        lock(tmp_path, fixture_index, "  a:\n    requirements: ['alpha==2.0']\n")
    text = str(info.value)
    assert X86 in text
    assert "alpha 2.0" in text and "Requires-Python >=3.12 excludes Python 3.11" in text


def test_nothing_installs_says_no_tag_matches(tmp_path: Path,
                                              fixture_index: FixtureIndex) -> None:
    with pytest.raises(ResolutionError) as info:
        lock(tmp_path, fixture_index, "  o:\n    requirements: [only311]\n")
    text = str(info.value)
    assert ARM in text and "no wheel of it matches the target's tags" in text
    # the wheels other targets use are named, though the lock's pages drop them
    assert "cp311 on manylinux_2_17_aarch64, manylinux_2_17_x86_64" in text


def test_nothing_installs_on_the_only_target_still_names_what_exists(
        tmp_path: Path, fixture_index: FixtureIndex) -> None:
    """No target keeps a file of only311, so the lock's pages hold none: the reason
    is still the tags, not "the project has no releases"."""
    path = tmp_path / "mirror.yaml"
    path.write_text(write_mirror(tmp_path, fixture_index, "  o:\n    requirements: "
                                 "['only311==1.0']\n").read_text().replace(
        f'  {X86}:\n    python: "3.11"\n    platforms: [manylinux_2_28_x86_64]\n', ""))
    with pytest.raises(ResolutionError) as info:
        lock_sets(load_config(path))
    text = str(info.value)
    assert X86 not in text and "no file of only311 1.0 installs on" in text, text
    assert "no wheel of it matches the target's tags" in text
    assert "cp311 on manylinux_2_17_aarch64, manylinux_2_17_x86_64" in text


def test_a_prerelease_left_out_is_named_with_the_switch(tmp_path: Path,
                                                       fixture_index: FixtureIndex) -> None:
    def deny_gamma_1(set_name: str):  # type: ignore[no-untyped-def]
        return lambda c, pinned: Refusal("denied here") if str(c.version) == "1.0" else None

    loaded = load_config(write_mirror(tmp_path, fixture_index, "  g:\n    requirements: [gamma]\n"))
    with pytest.raises(ResolutionError) as info:
        lock_sets(loaded, candidate_filter_for=deny_gamma_1)
    text = str(info.value)
    assert "excluded by policy: 1.0: denied here" in text
    assert "pre-releases (2.0b1) are left out" in text and "'prereleases: true'" in text
