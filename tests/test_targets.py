"""Targets: wheel tags and marker environments of installers that are not this machine."""

from __future__ import annotations

import platform
import sys

import pytest
from packaging import tags
from packaging.markers import Marker

from lockmirror.config_schema import TargetConfig
from lockmirror.targets import Target, Truth, expand_platform


def target(python: str, *platforms: str, **fields: object) -> Target:
    spec = TargetConfig.model_validate({"python": python, "platforms": list(platforms), **fields})
    return spec.target("t")


def _host_is_glibc_x86_64_cpython() -> bool:
    return (sys.implementation.name == "cpython" and sys.platform == "linux"
            and platform.machine() == "x86_64" and platform.libc_ver()[0] == "glibc")


@pytest.mark.skipif(not _host_is_glibc_x86_64_cpython(), reason="needs CPython on glibc x86_64")
def test_a_target_like_this_machine_has_exactly_its_tags() -> None:
    glibc_minor = platform.libc_ver()[1].split(".")[1]
    wanted = {f"manylinux_2_{glibc_minor}_x86_64", "linux_x86_64"}
    # listed in the order this machine's installer prefers them (packaging >= 24
    # puts linux_<arch> first), so the comparison is about expansion, not taste
    platforms = [p for p in tags.platform_tags() if p in wanted]
    assert set(platforms) == wanted
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert list(target(python, *platforms).tags) == list(tags.sys_tags())


def test_manylinux_expands_down_to_the_oldest_with_legacy_aliases() -> None:
    x86 = expand_platform("manylinux_2_28_x86_64")
    assert x86[0] == "manylinux_2_28_x86_64" and x86[-1] == "manylinux1_x86_64"
    assert x86.index("manylinux2014_x86_64") == x86.index("manylinux_2_17_x86_64") + 1
    assert x86.index("manylinux2010_x86_64") == x86.index("manylinux_2_12_x86_64") + 1
    assert len(x86) == (28 - 5 + 1) + 3
    arm = expand_platform("manylinux_2_28_aarch64")
    assert arm[-2:] == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]
    assert expand_platform("manylinux2014_x86_64")[:2] == ["manylinux_2_17_x86_64",
                                                           "manylinux2014_x86_64"]
    assert "manylinux_2_28_x86_64" not in expand_platform("manylinux2014_x86_64")
    # a manylinux target never accepts musllinux wheels, and the other way round
    assert not any(p.startswith("musllinux") for p in x86)


def test_musllinux_and_macos_expansion() -> None:
    assert expand_platform("musllinux_1_2_aarch64") == [
        "musllinux_1_2_aarch64", "musllinux_1_1_aarch64", "musllinux_1_0_aarch64"]
    mac = expand_platform("macosx_11_0_arm64")
    assert mac[:2] == ["macosx_11_0_arm64", "macosx_11_0_universal2"]
    assert "macosx_10_9_x86_64" not in mac  # arm64 cannot run x86_64-only wheels natively
    intel = expand_platform("macosx_10_12_x86_64")
    assert intel[0] == "macosx_10_12_x86_64"
    assert {"macosx_10_9_x86_64", "macosx_10_9_intel", "macosx_10_12_universal2"} <= set(intel)
    assert "macosx_10_13_x86_64" not in intel
    assert expand_platform("win_amd64") == ["win_amd64"]


def test_wheel_rank_follows_the_target() -> None:
    linux = target("3.12", "manylinux_2_28_aarch64")
    assert linux.wheel_rank("native-1.0-cp312-cp312-manylinux_2_28_aarch64.whl") is not None
    assert linux.wheel_rank("native-1.0-cp311-cp311-manylinux_2_17_x86_64.whl") is None
    assert linux.wheel_rank("only311-1.0-cp311-cp311-manylinux_2_17_aarch64.whl") is None
    best = linux.wheel_rank("x-1.0-cp312-cp312-manylinux_2_28_aarch64.whl")
    pure = linux.wheel_rank("x-1.0-py3-none-any.whl")
    assert best is not None and pure is not None and best < pure


@pytest.mark.parametrize(("platforms", "expected"), [
    (("manylinux_2_17_x86_64",), {"sys_platform": "linux", "platform_system": "Linux",
                                  "os_name": "posix", "platform_machine": "x86_64"}),
    (("musllinux_1_2_aarch64",), {"sys_platform": "linux", "platform_system": "Linux",
                                  "os_name": "posix", "platform_machine": "aarch64"}),
    (("macosx_11_0_arm64",), {"sys_platform": "darwin", "platform_system": "Darwin",
                              "os_name": "posix", "platform_machine": "arm64"}),
    (("macosx_10_9_x86_64",), {"sys_platform": "darwin", "platform_machine": "x86_64"}),
    (("win_amd64",), {"sys_platform": "win32", "platform_system": "Windows",
                      "os_name": "nt", "platform_machine": "AMD64"}),
    (("win32",), {"sys_platform": "win32", "platform_machine": "x86"}),
])
def test_marker_environment_comes_from_the_platform(platforms: tuple[str, ...],
                                                    expected: dict[str, str]) -> None:
    environment = target("3.12", *platforms).environment()
    assert {key: environment[key] for key in expected} == expected
    assert environment["python_version"] == "3.12"
    assert environment["implementation_name"] == "cpython"
    assert environment["platform_python_implementation"] == "CPython"


def test_markers_are_evaluated_for_the_target_not_the_host() -> None:
    windows = target("3.11", "win_amd64")
    linux_arm = target("3.12", "manylinux_2_28_aarch64")
    assert windows.evaluate(Marker('sys_platform == "win32"')) is Truth.ALWAYS
    assert linux_arm.evaluate(Marker('sys_platform == "win32"')) is Truth.NEVER
    assert linux_arm.evaluate(Marker('platform_machine == "aarch64"')) is Truth.ALWAYS
    assert windows.evaluate(Marker('python_version < "3.12"')) is Truth.ALWAYS
    assert linux_arm.evaluate(Marker('python_version < "3.12"')) is Truth.NEVER
    fast = Marker('extra == "fast"')
    assert windows.evaluate(fast) is Truth.NEVER
    assert windows.evaluate(fast, extras=("", "fast")) is Truth.ALWAYS


def test_python_full_version_marker_on_a_minor_target_is_sometimes() -> None:
    minor = target("3.11", "manylinux_2_28_x86_64")
    marker = Marker('python_full_version >= "3.11.4"')
    assert minor.evaluate(marker) is Truth.SOMETIMES
    assert bool(Truth.SOMETIMES) and not bool(Truth.NEVER)
    assert target("3.11.2", "manylinux_2_28_x86_64").evaluate(marker) is Truth.NEVER
    assert target("3.11.4", "manylinux_2_28_x86_64").evaluate(marker) is Truth.ALWAYS
    # a boundary past the assumed horizon still splits the range
    assert minor.evaluate(Marker('python_full_version < "3.11.57"')) is Truth.SOMETIMES
    assert minor.allows_python(">=3.11.4") is Truth.SOMETIMES
    assert minor.allows_python(">=3.12") is Truth.NEVER
    assert minor.allows_python(">=3.8") is Truth.ALWAYS


def test_marker_overrides_replace_derived_values() -> None:
    pinned = target("3.11", "manylinux_2_28_x86_64",
                    markers={"python_full_version": "3.11.9", "platform_release": "5.15.0"})
    assert pinned.environment()["platform_release"] == "5.15.0"
    assert pinned.evaluate(Marker('python_full_version >= "3.11.4"')) is Truth.ALWAYS
    assert pinned.evaluate(Marker('platform_release >= "5"')) is Truth.ALWAYS
    assert 'platform_release == "5.15.0"' in pinned.environment_marker()
    # an override that contradicts the platform wins too: the user said so
    odd = target("3.12", "manylinux_2_28_x86_64", markers={"platform_machine": "amd64"})
    assert odd.evaluate(Marker('platform_machine == "amd64"')) is Truth.ALWAYS


def test_environment_marker_selects_the_target() -> None:
    linux = target("3.11", "manylinux_2_28_x86_64")
    marker = Marker(linux.environment_marker())
    assert marker.evaluate(linux.environment("3.11.7"))
    assert not marker.evaluate(target("3.12", "manylinux_2_28_x86_64").environment())
    assert not marker.evaluate(target("3.11", "manylinux_2_28_aarch64").environment())


def test_unknown_marker_override_is_a_config_error() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="'platfrom_machine' is not a PEP 508 marker name"):
        TargetConfig.model_validate({"python": "3.11", "platforms": ["win_amd64"],
                                     "markers": {"platfrom_machine": "AMD64"}})


# -- issue 14: what a lockfile marker can tell apart; extras evaluated away -----------


def test_overlapping_targets_are_those_markers_cannot_tell_apart() -> None:
    def target(python: str, platform: str) -> Target:
        return Target(name=f"{python}-{platform}", python=python, platforms=(platform,))

    glibc17 = target("3.11", "manylinux_2_17_x86_64")
    glibc28 = target("3.11", "manylinux_2_28_x86_64")
    assert glibc17.overlaps(glibc28)
    assert glibc28.environment_marker() == glibc17.environment_marker()
    assert glibc17.overlaps(target("3.11", "musllinux_1_2_x86_64"))
    assert glibc17.overlaps(target("3.11.9", "manylinux_2_17_x86_64"))  # 3.11.9 is a 3.11
    assert not target("3.11.4", "manylinux_2_17_x86_64").overlaps(
        target("3.11.9", "manylinux_2_17_x86_64"))
    assert not glibc17.overlaps(target("3.11", "manylinux_2_17_aarch64"))
    assert not glibc17.overlaps(target("3.12", "manylinux_2_17_x86_64"))


def test_extras_are_evaluated_out_of_dependency_markers() -> None:
    from lockmirror.resolve.marker_extras import without_extra

    marker = Marker('python_full_version < "3.11.3" and (extra == "a" or extra == "b")')
    assert without_extra(marker, ("a",)) == 'python_full_version < "3.11.3"'
    either = Marker('(python_full_version < "3.11.3" and extra == "a") or '
                    '(python_full_version >= "3.11.8" and extra == "b")')
    assert without_extra(either, ("b",)) == 'python_full_version >= "3.11.8"'
    both = without_extra(either, ("a", "b"))
    assert both is not None and "extra" not in both
    assert Marker(both).evaluate({"python_full_version": "3.11.9", "python_version": "3.11"})
    assert without_extra(Marker('extra == "a" or sys_platform == "linux"'), ("a",)) is None


def test_a_target_named_in_messages_shows_an_abi_it_sets() -> None:
    """Found by an outside tester: "no wheel for target t (cp3.13, ...)" hid the
    free-threaded cp313t ABI, the very reason no wheel fitted."""
    assert Target("t", "3.13", abi="cp313t", platforms=("manylinux_2_28_x86_64",)).describe() \
        == "t (cp3.13 cp313t, manylinux_2_28_x86_64)"
    assert Target("t", "3.13", platforms=("manylinux_2_28_x86_64",)).describe() \
        == "t (cp3.13, manylinux_2_28_x86_64)"
