"""Targets: the installers on the far side, modelled without looking at the host.

A :class:`Target` knows the ordered list of wheel tags it accepts (with
manylinux, musllinux and macOS versions expanded downward the way
installers do) and the PEP 508 marker environment it presents. A target
whose python is ``"3.11"`` stands for *every* 3.11.x, so marker and
requires-python checks answer with a :class:`Truth` that can be
``SOMETIMES``: true for some patch releases only.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Protocol

from packaging.markers import Marker
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags, generic_tags, mac_platforms
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import Version

from .platform_tags import LEGACY_MANYLINUX_GLIBC, LEGACY_MANYLINUX_TAG


class TargetRecord(Protocol):
    """What a lockfile records of a target (:class:`lockmirror.formats.lockfile.LockedTarget`)."""

    @property
    def name(self) -> str: ...

    @property
    def python(self) -> str: ...

    @property
    def implementation(self) -> str: ...

    @property
    def platforms(self) -> tuple[str, ...]: ...

    @property
    def marker(self) -> str: ...

MARKER_NAMES = frozenset({
    "os_name", "sys_platform", "platform_machine", "platform_python_implementation",
    "platform_release", "platform_system", "platform_version", "python_version",
    "python_full_version", "implementation_name", "implementation_version",
})

# one comparison of a target's marker (environment_marker: `name == "value"`, and-ed)
_MARKER_FACT = re.compile(r"""\b(\w+) == ['"]([^'"]*)['"]""")
_PATCH_NAMES = frozenset({"python_full_version", "implementation_version"})  # per patch release

# glibc minors below which no manylinux wheel exists for an architecture.
_MANYLINUX_FLOOR = {"x86_64": 5, "i686": 5}
_MANYLINUX_DEFAULT_FLOOR = 17
# glibc 2.x minor -> the legacy tag that stands for it
_LEGACY_MANYLINUX = {minor: tag for tag, (_, minor) in LEGACY_MANYLINUX_GLIBC.items()}
# The highest patch release lockmirror assumes exists when a target says "3.11".
_PATCH_HORIZON = 40


class Truth(enum.Enum):
    """A marker's value over every Python patch release a target stands for."""

    NEVER = "never"
    SOMETIMES = "sometimes"
    ALWAYS = "always"

    def __bool__(self) -> bool:  # "could it hold on this target?"
        return self is not Truth.NEVER


def expand_platform(platform: str) -> list[str]:
    """Every platform tag an installer for ``platform`` accepts, best first.

    ``manylinux_2_28_x86_64`` gives manylinux_2_28 ... manylinux_2_5 with the
    legacy manylinux2014/2010/1 aliases at their glibc level; musllinux and
    macOS expand the same way; anything else stands for itself.
    """
    match = re.fullmatch(r"manylinux_(\d+)_(\d+)_(.+)", platform)
    legacy = LEGACY_MANYLINUX_TAG.fullmatch(platform)
    if legacy:
        match = None
        (major, minor), arch = LEGACY_MANYLINUX_GLIBC[legacy.group(1)], legacy.group(2)
    elif match:
        major, minor, arch = int(match.group(1)), int(match.group(2)), match.group(3)
    if match or legacy:
        if major != 2:
            return [platform]
        floor = _MANYLINUX_FLOOR.get(arch, _MANYLINUX_DEFAULT_FLOOR)
        tags: list[str] = []
        for glibc_minor in range(minor, floor - 1, -1):
            tags.append(f"manylinux_2_{glibc_minor}_{arch}")
            if glibc_minor in _LEGACY_MANYLINUX:
                tags.append(f"{_LEGACY_MANYLINUX[glibc_minor]}_{arch}")
        return tags
    match = re.fullmatch(r"musllinux_(\d+)_(\d+)_(.+)", platform)
    if match:
        major, minor, arch = int(match.group(1)), int(match.group(2)), match.group(3)
        return [f"musllinux_{major}_{m}_{arch}" for m in range(minor, -1, -1)]
    match = re.fullmatch(r"macosx_(\d+)_(\d+)_(.+)", platform)
    if match:
        version = (int(match.group(1)), int(match.group(2)))
        return list(mac_platforms(version, match.group(3)))
    return [platform]


def default_abi(implementation: str, version: tuple[int, int]) -> str:
    """The ABI tag an interpreter of that implementation (``"cp"``, ``"pp"``) and
    minor version reports when built as distributions build it: CPython 3.7 and
    older add ``m`` (pymalloc; their wheels are ``cp36-cp36m``), as
    ``packaging.tags._cpython_abis`` does; PyPy names its own ABI."""
    major, minor = version
    if implementation == "cp":
        return f"cp{major}{minor}m" if (major, minor) < (3, 8) else f"cp{major}{minor}"
    return f"pypy{major}{minor}_pp73"


def _platform_facts(platforms: Iterable[str]) -> dict[str, str]:
    """sys_platform, platform_system, os_name and platform_machine from tags."""
    first = next(iter(platforms))
    if first.startswith(("manylinux", "musllinux", "linux")):
        arch = re.sub(r"^(manylinux_\d+_\d+|musllinux_\d+_\d+|manylinux\d+|linux)_", "", first)
        return {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                "platform_machine": arch}
    if first.startswith("macosx"):
        arch = re.sub(r"^macosx_\d+_\d+_", "", first)
        arch = {"universal2": "arm64", "intel": "x86_64"}.get(arch, arch)
        return {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix",
                "platform_machine": arch}
    if first.startswith("win"):
        arch = {"win_amd64": "AMD64", "win32": "x86", "win_arm64": "ARM64"}.get(first, first)
        return {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt",
                "platform_machine": arch}
    return {"sys_platform": "", "platform_system": "", "os_name": "posix",
            "platform_machine": ""}


@dataclass(frozen=True)
class Target:
    """One installer environment; built from mirror.yaml by
    :meth:`lockmirror.config_schema.TargetConfig.target`."""

    name: str
    python: str
    implementation: str = "cp"
    platforms: tuple[str, ...] = ("manylinux_2_17_x86_64",)
    abi: str | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)
    # marker text and extras -> Truth: the same Requires-Dist markers recur across
    # releases and candidates, and each evaluation covers every patch release
    _truths: dict[tuple[str, tuple[str, ...]], Truth] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False)
    _ranks: dict[str, int | None] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False)

    @classmethod
    def of_locked(cls, locked: TargetRecord) -> Target:
        """The target a lockfile's target entry records (no mirror.yaml needed); its
        ``markers:`` overrides are the facts of its marker the tags do not give."""
        bare = cls(name=locked.name, python=locked.python, implementation=locked.implementation,
                   platforms=tuple(locked.platforms))
        env = bare.environment()
        overrides = {key: value for key, value in _MARKER_FACT.findall(locked.marker)
                     if key in MARKER_NAMES and key not in _PATCH_NAMES and env[key] != value}
        return replace(bare, overrides=overrides) if overrides else bare

    # -- Python versions -------------------------------------------------

    @property
    def python_minor(self) -> tuple[int, int]:
        major, minor = self.python.split(".")[:2]
        return int(major), int(minor)

    @property
    def fixed_patch(self) -> int | None:
        parts = self.python.split(".")
        return int(parts[2]) if len(parts) == 3 else None

    def patch_versions(self, hints: Iterable[Version] = ()) -> list[str]:
        """Representative full versions: every boundary a marker can draw."""
        if self.fixed_patch is not None:
            return [self.python]
        major, minor = self.python_minor
        top = _PATCH_HORIZON
        for hint in hints:
            if hint.release[:2] == (major, minor) and len(hint.release) > 2:
                top = max(top, hint.release[2] + 1)
        return [f"{major}.{minor}.{patch}" for patch in range(top + 1)]

    # -- tags --------------------------------------------------------------

    @cached_property
    def tags(self) -> tuple[Tag, ...]:
        """Compatible tags, most preferred first (the order installers use)."""
        platforms = [p for platform in self.platforms for p in expand_platform(platform)]
        platforms = list(dict.fromkeys(platforms))
        version = self.python_minor
        abi = self.abi or default_abi(self.implementation, version)
        if self.implementation == "cp":
            interpreter = f"cp{version[0]}{version[1]}"
            found = list(cpython_tags(version, [abi], platforms))
        else:
            interpreter = f"pp{version[0]}{version[1]}"
            found = list(generic_tags(interpreter, [abi], platforms))
        found += list(compatible_tags(version, interpreter, platforms))
        return tuple(dict.fromkeys(found))

    @cached_property
    def _tag_rank(self) -> dict[Tag, int]:
        return {tag: rank for rank, tag in enumerate(self.tags)}

    def wheel_rank(self, filename: str) -> int | None:
        """Lower is better; None when the wheel does not install on this target.
        Memoized per file name (every set and build resolution asks again)."""
        if filename in self._ranks:
            return self._ranks[filename]
        try:
            _, _, _, file_tags = parse_wheel_filename(filename)
        except InvalidWheelFilename:
            file_tags = frozenset()
        ranks = [self._tag_rank[t] for t in file_tags if t in self._tag_rank]
        rank = self._ranks[filename] = min(ranks) if ranks else None
        return rank

    # -- markers -----------------------------------------------------------

    def environment(self, full_version: str | None = None) -> dict[str, str]:
        """The PEP 508 environment for one patch release (default: the lowest)."""
        full = full_version or self.patch_versions()[0]
        major, minor = self.python_minor
        impl_name = {"cp": "cpython", "pp": "pypy"}[self.implementation]
        env = {
            "python_version": f"{major}.{minor}",
            "python_full_version": full,
            "implementation_name": impl_name,
            "implementation_version": full,
            "platform_python_implementation": {"cp": "CPython", "pp": "PyPy"}[self.implementation],
            "platform_release": "",
            "platform_version": "",
            **_platform_facts(self.platforms),
        }
        env.update(self.overrides)
        return env

    def evaluate(self, marker: Marker | None, extras: Iterable[str] = ("",)) -> Truth:
        """Whether ``marker`` holds on this target, over all its patch releases.

        ``extras`` are the extras being installed ("" for none); the marker
        holds when it holds for any one of them.
        """
        if marker is None:
            return Truth.ALWAYS
        key = (str(marker), tuple(extras))
        known = self._truths.get(key)
        if known is None:
            known = self._truths[key] = self._evaluate(marker, key[1])
        return known

    def _evaluate(self, marker: Marker, extras: tuple[str, ...]) -> Truth:
        text = str(marker)
        # only these two names differ between the patch releases: a marker without
        # them has one value for all of them
        if "python_full_version" in text or "implementation_version" in text:
            patches = self.patch_versions(versions_in(text))
        else:
            patches = self.patch_versions()[:1]
        results = set()
        for full in patches:
            env = self.environment(full)
            results.add(any(marker.evaluate({**env, "extra": extra}) for extra in extras))
            if len(results) == 2:
                return Truth.SOMETIMES
        return Truth.ALWAYS if results == {True} else Truth.NEVER

    def allows_python(self, requires_python: SpecifierSet | str | None) -> Truth:
        """Whether a Requires-Python admits this target's Python.

        Memoized per text: a project page repeats the same few strings on
        thousands of files.
        """
        if requires_python is None or str(requires_python).strip() == "":
            return Truth.ALWAYS
        return _allows_python(self.python, str(requires_python))

    def marker_facts(self) -> dict[str, str]:
        """What a PEP 508 marker can tell about this target: the comparisons
        :meth:`environment_marker` joins. Glibc and musl levels, ABI and the
        patch release of a ``"3.11"`` target are not among them."""
        env = self.environment()
        facts = {"python_version": env["python_version"]}
        if self.fixed_patch is not None:
            facts["python_full_version"] = self.python
        for key in ("implementation_name", "sys_platform", "platform_machine"):
            if env[key]:
                facts[key] = env[key]
        for key, value in sorted(self.overrides.items()):
            facts.setdefault(key, value)
        return facts

    def environment_marker(self) -> str:
        """A PEP 508 marker selecting this target (for a lockfile's ``environments``)."""
        return str(Marker(" and ".join(f"{k} == '{v}'" for k, v in self.marker_facts().items())))

    def overlaps(self, other: Target) -> bool:
        """Whether one installer environment could be both targets: every
        fact both markers state agrees (a lockfile entry selected by marker
        cannot then tell which target it is for)."""
        mine, theirs = self.marker_facts(), other.marker_facts()
        return all(mine[key] == theirs[key] for key in mine.keys() & theirs.keys())

    def describe(self) -> str:
        abi = f" {self.abi}" if self.abi else ""  # cp313t: why no plain cp313 wheel fits
        return (f"{self.name} ({self.implementation}{self.python}{abi}, "
                f"{', '.join(self.platforms)})")


@functools.lru_cache(maxsize=4096)
def _allows_python(python: str, requires_python: str) -> Truth:
    try:
        spec = SpecifierSet(requires_python)
    except InvalidSpecifier:
        return Truth.NEVER  # an unreadable Requires-Python installs nowhere (pip skips it too)
    hints = [Version(s.version) for s in spec if re.fullmatch(r"[\d.]+", s.version)]
    probe = Target(name="", python=python)
    results = {spec.contains(v, prereleases=True) for v in probe.patch_versions(hints)}
    if results == {True}:
        return Truth.ALWAYS
    return Truth.NEVER if results == {False} else Truth.SOMETIMES


def versions_in(marker_text: str) -> list[Version]:
    out = []
    for text in re.findall(r"['\"](\d+(?:\.\d+)+)['\"]", marker_text):
        try:
            out.append(Version(text))
        except ValueError:  # pragma: no cover - regex admits only digits and dots
            continue
    return out


def abi_mismatch(abi: str | None, python: object, implementation: object) -> str | None:
    """Why ``abi`` cannot be the ABI of that Python and implementation (None: it can,
    or they are invalid themselves and reported there). A wrong one (cp311 on 3.12)
    matched no compiled wheel, and lock failed naming some unrelated package."""
    match = re.match(r"(cp|pypy)(3\d+)([a-z]*)", abi or "")
    if not match or not isinstance(python, str) or implementation not in ("cp", "pp"):
        return None  # abi3, none, no abi; or the python/implementation is reported already
    family, digits, flags = match.groups()
    version = "".join(python.split(".")[:2])
    own = "cp" if implementation == "cp" else "pypy"
    major, minor = (int(part) for part in python.split(".")[:2])
    usual = default_abi(implementation, (major, minor))
    hint = (f"use {usual}, abi3 or none, or leave abi out" if implementation == "cp"
            else f"use {usual} or none, or leave abi out")
    if family != own:
        kind = "a CPython" if family == "cp" else "a PyPy"
        return (f"'{abi}' is {kind} ABI, and this target's implementation is "
                f"{implementation} ({hint})")
    if digits != version:
        return (f"'{abi}' is an ABI of Python {digits[0]}.{digits[1:]}, not of this target's "
                f"python \"{python}\" ({hint})")
    if family == "cp" and (major, minor) < (3, 8) and "m" not in flags:
        # cp36 matched none of the cp36m wheels 3.6 installs: the lock took sdists only
        return (f"'{abi}' is no ABI of CPython {major}.{minor}: 3.7 and older report "
                f"{usual}, or {usual.removesuffix('m')}dm for a debug build ({hint})")
    if family == "cp" and (major, minor) >= (3, 8) and "m" in flags:
        # 3.8 dropped pymalloc's m: cp38m matches no wheel, and the lock took sdists only
        return (f"'{abi}' is no ABI of CPython {major}.{minor}: 3.8 and newer report "
                f"{usual} (no 'm'), or {usual}d for a debug build ({hint})")
    return None
