"""The platform tags a target may name, and the nearest valid spelling of a typo.

A target's ``platforms`` are wheel platform tags. A typo (``manylinux_2_28_x86-64``)
would only match no wheel and fail much later as an unrelated sdist build, so
:func:`check_platform` holds each tag against the grammars installers know:

- ``manylinux_X_Y_ARCH`` (PEP 600) and the legacy ``manylinux1_ARCH``,
  ``manylinux2010_ARCH``, ``manylinux2014_ARCH`` (PEP 513/571/599)
- ``musllinux_X_Y_ARCH`` (PEP 656)
- ``macosx_X_Y_ARCH``
- ``win32``, ``win_amd64``, ``win_arm64``
- ``linux_ARCH`` and ``any``

Pure: no network, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .spelling import did_you_mean, nearest

LINUX_ARCHES = ("x86_64", "i686", "aarch64", "armv7l", "ppc64", "ppc64le", "s390x",
                "riscv64", "loongarch64")
MUSLLINUX_ARCHES = ("x86_64", "i686", "aarch64", "armv7l", "ppc64le", "s390x", "riscv64",
                    "loongarch64")
# the glibc version (PEP 600) each legacy manylinux tag stands for
LEGACY_MANYLINUX_GLIBC = {"manylinux1": (2, 5), "manylinux2010": (2, 12),
                          "manylinux2014": (2, 17)}
LEGACY_MANYLINUX_ARCHES = {
    "manylinux1": ("x86_64", "i686"),
    "manylinux2010": ("x86_64", "i686"),
    "manylinux2014": ("x86_64", "i686", "aarch64", "armv7l", "ppc64", "ppc64le", "s390x"),
}
MACOS_ARCHES = ("x86_64", "arm64", "universal2", "universal", "intel", "fat", "fat3", "fat64",
                "i386", "ppc", "ppc64")
PLAIN_LINUX_ARCHES = (*LINUX_ARCHES, "armv6l")
FIXED_TAGS = ("any", "win32", "win_amd64", "win_arm64")
GRAMMARS = ("manylinux_X_Y_ARCH, manylinux1/2010/2014_ARCH, musllinux_X_Y_ARCH, "
            "macosx_X_Y_ARCH, win32, win_amd64, win_arm64, linux_ARCH, any")

_VERSIONED = re.compile(r"(manylinux|musllinux|macosx)_(\d+)_(\d+)_(.+)")
# a legacy manylinux tag: its name (a key of LEGACY_MANYLINUX_GLIBC), then its architecture
LEGACY_MANYLINUX_TAG = re.compile(rf"({'|'.join(LEGACY_MANYLINUX_GLIBC)})_(.+)")
_LINUX = re.compile(r"linux_(.+)")


def platform_problem(tag: str) -> str | None:
    """None when ``tag`` follows a known grammar, else what is wrong with it and
    the nearest valid spelling when one is close (or, for a tag without its
    architecture, the two usual ones)."""
    if _valid(tag):
        return None
    arches = _without_arch(tag)
    hint = (f"; did you mean '{arches[0]}' or '{arches[1]}'?" if arches
            else did_you_mean(nearest_platform(tag)))
    return f"'{tag}' is not a platform tag ({GRAMMARS}){hint}"


def platform_warning(tag: str) -> str | None:
    """What may be unintended in a valid ``tag``: ``linux_ARCH`` matches privately
    built wheels only (PyPI refuses them), so a lock for PyPI takes sdists of most
    binary packages. None for the rest."""
    match = _LINUX.fullmatch(tag)
    if match is None:
        return None
    arch = match.group(1) if match.group(1) in LINUX_ARCHES else "x86_64"
    return (f"'{tag}' matches only privately built wheels: PyPI carries no linux_* wheels, "
            f"so most binary packages lock as sdists; for PyPI wheels use e.g. "
            f"manylinux_2_28_{arch}")


_NO_ARCH = re.compile(rf"(manylinux|musllinux|macosx)_(\d+)_(\d+)"
                      rf"|{'|'.join(LEGACY_MANYLINUX_GLIBC)}")


def _without_arch(tag: str) -> tuple[str, str] | None:
    """The tag with the two usual architectures when ``tag`` lacks its own
    (``manylinux_2_28``, ``manylinux2014``), else None."""
    text = re.sub(r"[-.\s]+", "_", tag.strip().lower()).rstrip("_")
    if not _NO_ARCH.fullmatch(text):
        return None
    second = ("arm64" if text.startswith("macosx")
              else "i686" if text in ("manylinux1", "manylinux2010") else "aarch64")
    return f"{text}_x86_64", f"{text}_{second}"


def _valid(tag: str) -> bool:
    if tag in FIXED_TAGS:
        return True
    match = _VERSIONED.fullmatch(tag)
    if match:
        family, arch = match.group(1), match.group(4)
        return arch in {"manylinux": LINUX_ARCHES, "musllinux": MUSLLINUX_ARCHES,
                        "macosx": MACOS_ARCHES}[family]
    match = LEGACY_MANYLINUX_TAG.fullmatch(tag)
    if match:
        return match.group(2) in LEGACY_MANYLINUX_ARCHES[match.group(1)]
    match = _LINUX.fullmatch(tag)
    return match is not None and match.group(1) in PLAIN_LINUX_ARCHES


def nearest_platform(tag: str) -> str | None:
    """The valid tag a typo most likely meant, or None.

    Separators and case are normalized first (``-`` and ``.`` to ``_``), then
    the architecture (or the whole tag) is matched against the known spellings.
    """
    text = re.sub(r"[-.\s]+", "_", tag.strip().lower())
    if _valid(text):
        return text
    match = _VERSIONED.fullmatch(text)
    if match:
        family, major, minor, arch = match.groups()
        arches = {"manylinux": LINUX_ARCHES, "musllinux": MUSLLINUX_ARCHES,
                  "macosx": MACOS_ARCHES}[family]
        return _with_arch(f"{family}_{int(major)}_{int(minor)}_", arch, arches)
    match = LEGACY_MANYLINUX_TAG.fullmatch(text)
    if match:
        family, arch = match.groups()
        return _with_arch(f"{family}_", arch, LEGACY_MANYLINUX_ARCHES[family])
    match = _LINUX.fullmatch(text)
    if match:
        return _with_arch("linux_", match.group(1), PLAIN_LINUX_ARCHES)
    return nearest(text, FIXED_TAGS, cutoff=0.75)


# other names of one architecture (Debian's, Apple's, Go's)
_ARCH_ALIASES = {"amd64": ("x86_64",), "x64": ("x86_64",), "arm64": ("aarch64", "arm64"),
                 "aarch64": ("aarch64", "arm64"), "i386": ("i686", "i386"), "x86": ("i686",)}


def _with_arch(prefix: str, arch: str, arches: tuple[str, ...]) -> str | None:
    for alias in _ARCH_ALIASES.get(arch, ()):
        if alias in arches:
            return prefix + alias
    squeezed = arch.replace("_", "")
    for known in arches:  # x86-64, x8664, X86_64
        if known.replace("_", "") == squeezed:
            return prefix + known
    close = nearest(arch, arches)
    return prefix + close if close else None


# macOS wheels for both architectures serve either
_MACOS_FAT = ("universal2",)


def platform_family(tag: str) -> tuple[str, tuple[int, int]]:
    """``tag``'s system and architecture (``macosx arm64``, ``manylinux x86_64``;
    a tag without a version, ``win_amd64``, is its own) and its version
    (``(11, 0)``; ``(0, 0)`` for none): wheels of one family differ only by the
    oldest system they need."""
    match = _VERSIONED.fullmatch(tag)
    if match:
        kind, major, minor, arch = match.groups()
        return f"{kind} {arch}", (int(major), int(minor))
    match = LEGACY_MANYLINUX_TAG.fullmatch(tag)
    if match:
        return f"manylinux {match.group(2)}", LEGACY_MANYLINUX_GLIBC[match.group(1)]
    return tag, (0, 0)


def newer_platforms(targets: Iterable[str], wheels: Iterable[str]) -> list[str] | None:
    """Of a project's wheel platform tags ``wheels``, those of a family of the
    target platforms ``targets`` with a newer version (sorted): a tag the target
    could move to for a wheel. Empty when the project's wheels of those families
    are no newer (or one is ``any``); None when it has no wheel of any of them."""
    wanted = dict(map(platform_family, targets))
    wheels = set(wheels)
    if "any" in wheels:
        return []
    newer, found = [], False
    for tag in sorted(wheels):
        family, version = platform_family(tag)
        arches = ([f"macosx {a}" for a in ("arm64", "x86_64")]
                  if family.startswith("macosx ") and tag.endswith(_MACOS_FAT) else [family])
        for each in arches:
            if each in wanted:
                found = True
                if version > wanted[each]:
                    newer.append(tag)
    return sorted(set(newer)) if found else None
