"""The set's own requirements against what they name, at lock: an extra the
chosen release does not provide, a specifier set that excludes its own pin.
On a fixture index, hermetic."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fixtureindex import FixtureIndex, build_backend_wheel, build_sdist, build_wheel
from test_lock import X86, package, versions, write_mirror

from lockmirror.config import load_config
from lockmirror.errors import ResolutionError
from lockmirror.formats.lockfile import Lockfile
from lockmirror.stages.lock import lock_sets


def extras_index(files: Path, make_index: Callable[..., FixtureIndex]) -> FixtureIndex:
    """idna 3.4 with extras security and socks (each pulling in a project), plain 1.0
    declaring no extra at all, and asks 1.0 wanting ``idna[securty]``."""
    build_wheel(files, "idna", "3.4", provides_extra=["security", "socks"],
                requires_dist=['cryptography; extra == "security"',
                               'pysocks; extra == "socks"'])
    build_wheel(files, "cryptography", "41.0")
    build_wheel(files, "pysocks", "1.7")
    build_wheel(files, "plain", "1.0")
    build_wheel(files, "asks", "1.0", requires_dist=["idna[securty]==3.4"])
    return make_index(files)


def lock_one(tmp_path: Path, index: FixtureIndex, *requirements: str) -> Lockfile:
    sets = (f"  web:\n    targets: [{X86}]\n    requirements:\n"
            + "".join(f"      - {r}\n" for r in requirements))
    [result] = lock_sets(load_config(write_mirror(tmp_path, index, sets)))
    return result.lockfile


@pytest.mark.parametrize(("requirement", "message"), [
    ("idna[securty]==3.4", "'idna[securty]==3.4': idna 3.4 has no extra 'securty'; it has: "
                           "security, socks; did you mean 'security'?"),
    ("idna[SOCK]", "'idna[SOCK]': idna 3.4 has no extra 'SOCK'; it has: security, socks; "
                   "did you mean 'socks'?"),
    ("idna[socks,Bogus_Name]", "'idna[Bogus_Name,socks]': idna 3.4 has no extra 'Bogus_Name'; "
                               "it has: security, socks"),
    ("idna[x,y]", "'idna[x,y]': idna 3.4 has no extras 'x', 'y'; it has: security, socks"),
])
def test_an_extra_the_release_does_not_provide_is_refused(
        tmp_path: Path, make_index: Callable[..., FixtureIndex], requirement: str,
        message: str) -> None:
    index = extras_index(tmp_path / "files", make_index)
    with pytest.raises(ResolutionError) as caught:
        lock_one(tmp_path, index, "plain", requirement)
    # placed at the line of the requirement it is about (the second)
    assert str(caught.value) == f"mirror.yaml:18: set 'web', target '{X86}': {message}"


def test_extras_that_exist_or_cannot_be_checked_lock(
        tmp_path: Path, make_index: Callable[..., FixtureIndex]) -> None:
    index = extras_index(tmp_path / "files", make_index)
    # plain declares no extra at all: nothing to check against, taken as it is;
    # asks' own requirement on idna[securty] is a dependency's: not checked either
    locked = versions(lock_one(tmp_path, index, "idna[Security]", "plain[anything]", "asks"),
                      X86)
    assert locked == {"idna": "3.4", "cryptography": "41.0", "plain": "1.0", "asks": "1.0"}



def test_an_unknown_extra_among_build_requirements_is_not_refused(
        tmp_path: Path, make_index: Callable[..., FixtureIndex]) -> None:
    files = tmp_path / "files"
    build_backend_wheel(files)
    build_sdist(files, "needsbuild", "1.0", build_requires=("fixture-backend", "idna[securty]"))
    index = extras_index(files, make_index)
    # a build requirement is the sdist's, not the set's own: locked as before
    lockfile = lock_one(tmp_path, index, "needsbuild")
    assert lockfile.build_groups == ("build-needsbuild",)
    assert package(lockfile, "idna", "3.4").build_only


@pytest.mark.parametrize(("requirements", "message"), [
    (["plain", "idna==3.4,<3"],
     "'idna<3,==3.4' contradicts itself: no version can satisfy both ==3.4 and <3 "
     "(keep either the pin or the range)"),
    (["plain", "idna==3.4,>=3,!=3.4,<3.1"],
     "'idna!=3.4,<3.1,==3.4,>=3' contradicts itself: no version can satisfy ==3.4 and !=3.4 "
     "and <3.1 (keep either the pin or the range)"),
    (["plain", "strict"],  # a dependency's: named with its requirer
     "'idna!=3.4,==3.4' (required by strict 1.0) contradicts itself: no version can satisfy "
     "both ==3.4 and !=3.4 (keep either the pin or the range)"),
    (["plain", "idna==3.9,<4"],  # no such release: not a contradiction
     "no version of idna matches 'idna<4,==3.9' (nearest existing versions: 3.4)"),
])
def test_a_requirement_that_excludes_its_own_pin_is_named_a_contradiction(
        tmp_path: Path, make_index: Callable[..., FixtureIndex], requirements: list[str],
        message: str) -> None:
    build_wheel(tmp_path / "files", "strict", "1.0", requires_dist=["idna==3.4,!=3.4"])
    index = extras_index(tmp_path / "files", make_index)
    with pytest.raises(ResolutionError) as caught:
        lock_one(tmp_path, index, *requirements)
    assert str(caught.value) == f"mirror.yaml:18: set 'web', target '{X86}': {message}"
