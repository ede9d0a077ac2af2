"""The standard synthetic package universe every stage test uses.

=================  ==========================  ==============================================
project            files (version: kinds)      what it exercises
=================  ==========================  ==============================================
alpha              1.0 wheel; 1.1 wheel+sdist; newest needs a newer Python: lock for a 3.11
                   2.0 wheel (Requires-Python  target picks 1.1, for 3.12 picks 2.0
                   >=3.12)
beta               1.0 wheel                   Requires-Dist ``alpha>=1.0``,
                                               ``FOO_bar.baz>=1.0`` (spelled oddly on purpose)
                                               and extra ``fast``: ``speedup>=1.1; extra ==
                                               "fast"``
speedup            1.0 wheel; 1.2 wheel        pulled in by ``beta[fast]``
Foo.Bar_baz        1.0 wheel                   PEP 503 normalization: page ``foo-bar-baz``,
                                               file ``foo_bar_baz-1.0-py3-none-any.whl``
marked             1.0 wheel                   Requires-Dist markers: ``linuxdep;
                                               sys_platform == "linux"``, ``windep;
                                               sys_platform == "win32"``, ``armdep;
                                               platform_machine == "aarch64"``, ``olddep;
                                               python_version < "3.12"``, ``patchdep;
                                               python_full_version >= "3.11.4"``
linuxdep, windep,  1.0 wheel each              the marker targets above
armdep, olddep,
patchdep
yanky              1.0 wheel; 1.1 wheel        1.1 is yanked, reason ``"broken build, use
                   (yanked)                    1.0"``
sdistonly          1.0 sdist only              Metadata-Version 2.2, static ``Requires-Dist:
                                               speedup>=1.0``; build requires fixture-backend
oldmeta            1.0 sdist only              Metadata-Version 2.1: PKG-INFO has no
                                               Requires-Dist; ``alpha>=1.0`` is known only
                                               through the PEP 517 prepare hook
legacy             1.0 sdist only              setup.py only (no pyproject.toml): builds with
                                               setuptools, requires ``speedup``
native             1.0 wheels: cp311           platform wheels; the manylinux x86_64 one has a
                   manylinux_2_17_x86_64 (+    compressed tag set
                   manylinux2014), cp312
                   manylinux_2_28_aarch64,
                   cp311 win_amd64, cp311
                   macosx_11_0_arm64; sdist
only311            1.0 wheels for cp311 only   no file for CPython 3.12 at all
                   (manylinux_2_17_x86_64,
                   manylinux_2_17_aarch64)
left, right        1.0 wheel each              conflict pair: ``left`` needs ``shared<2``,
                                               ``right`` needs ``shared>=2``
shared             1.0 wheel; 2.0 wheel        the project they disagree on
gamma              1.0 wheel; 2.0b1 wheel      the newest version is a pre-release only
vulny              1.0 wheel; 1.1 wheel        1.0 has a known vulnerability
                                               (``PYSEC-2023-0001``, alias
                                               ``GHSA-fix7-ture-0001``), fixed in 1.1
fixture-backend    1.0 wheel                   the PEP 517 backend of the sdists above
setuptools         68.0.0 wheel                stand-in that builds ``legacy`` offline
wheel              0.45.1 wheel                the other half of PEP 517's legacy fallback
=================  ==========================  ==============================================

Upload times: the n-th file in :data:`SPECS` order was uploaded at
``2023-01-02T03:04:05Z`` plus n days (every file, fixed, deterministic).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from packaging.utils import canonicalize_name

from .builder import (
    DistributionName,
    build_backend_wheel,
    build_sdist,
    build_setuptools_wheel,
    build_wheel,
    read_core_metadata,
)

UPLOAD_EPOCH = datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)


@dataclass(frozen=True)
class FileSpec:
    """How to build one catalogue file."""

    name: str
    version: str
    kind: str = "wheel"  # "wheel" | "sdist" | "legacy-sdist" | "backend" | "setuptools"
    tag: str = "py3-none-any"
    requires_dist: tuple[str, ...] = ()
    requires_python: str | None = None
    provides_extra: tuple[str, ...] = ()
    metadata_version: str | None = None
    yanked_reason: str | None = None


NATIVE_X86 = "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"

SPECS: tuple[FileSpec, ...] = (
    FileSpec("alpha", "1.0"),
    FileSpec("alpha", "1.1"),
    FileSpec("alpha", "1.1", kind="sdist"),
    FileSpec("alpha", "2.0", requires_python=">=3.12"),
    FileSpec("beta", "1.0", requires_dist=("alpha>=1.0", "FOO_bar.baz>=1.0",
                                           'speedup>=1.1; extra == "fast"'),
             provides_extra=("fast",)),
    FileSpec("speedup", "1.0"),
    FileSpec("speedup", "1.2"),
    FileSpec("Foo.Bar_baz", "1.0"),
    FileSpec("marked", "1.0", requires_dist=(
        'linuxdep>=1.0; sys_platform == "linux"',
        'windep>=1.0; sys_platform == "win32"',
        'armdep>=1.0; platform_machine == "aarch64"',
        'olddep>=1.0; python_version < "3.12"',
        'patchdep>=1.0; python_full_version >= "3.11.4"',
    )),
    FileSpec("linuxdep", "1.0"),
    FileSpec("windep", "1.0"),
    FileSpec("armdep", "1.0"),
    FileSpec("olddep", "1.0"),
    FileSpec("patchdep", "1.0"),
    FileSpec("yanky", "1.0"),
    FileSpec("yanky", "1.1", yanked_reason="broken build, use 1.0"),
    FileSpec("sdistonly", "1.0", kind="sdist", requires_dist=("speedup>=1.0",),
             metadata_version="2.2"),
    FileSpec("oldmeta", "1.0", kind="sdist", requires_dist=("alpha>=1.0",),
             metadata_version="2.1"),
    FileSpec("legacy", "1.0", kind="legacy-sdist", requires_dist=("speedup",),
             metadata_version="1.0"),
    FileSpec("native", "1.0", tag=NATIVE_X86),
    FileSpec("native", "1.0", tag="cp312-cp312-manylinux_2_28_aarch64"),
    FileSpec("native", "1.0", tag="cp311-cp311-win_amd64"),
    FileSpec("native", "1.0", tag="cp311-cp311-macosx_11_0_arm64"),
    FileSpec("native", "1.0", kind="sdist"),
    FileSpec("only311", "1.0", tag="cp311-cp311-manylinux_2_17_x86_64"),
    FileSpec("only311", "1.0", tag="cp311-cp311-manylinux_2_17_aarch64"),
    FileSpec("left", "1.0", requires_dist=("shared<2",)),
    FileSpec("right", "1.0", requires_dist=("shared>=2",)),
    FileSpec("shared", "1.0"),
    FileSpec("shared", "2.0"),
    FileSpec("gamma", "1.0"),
    FileSpec("gamma", "2.0b1"),
    FileSpec("vulny", "1.0"),
    FileSpec("vulny", "1.1"),
    FileSpec("fixture-backend", "1.0", kind="backend"),
    FileSpec("setuptools", "68.0.0", kind="setuptools", requires_python=">=3.8"),
    # PEP 517's fallback for a project without pyproject.toml is setuptools and wheel
    FileSpec("wheel", "0.45.1", requires_python=">=3.8"),
)

# (project, version) -> vulnerabilities in the PyPI JSON API's format.
VULNERABILITIES: dict[tuple[str, str], list[dict[str, object]]] = {
    ("vulny", "1.0"): [{
        "id": "PYSEC-2023-0001",
        "aliases": ["GHSA-fix7-ture-0001"],
        "summary": "fixture vulnerability in vulny 1.0",
        "details": "Synthetic advisory used by lockmirror's tests.",
        "fixed_in": ["1.1"],
        "link": "https://osv.dev/vulnerability/PYSEC-2023-0001",
        "source": "osv",
        "withdrawn": None,
    }],
}


@dataclass(frozen=True)
class CatalogueFile(DistributionName):
    """One built file and everything a test may want to assert about it."""

    project: str            # the name as written in its metadata
    version: str
    filename: str
    path: Path
    sha256: str
    size: int
    upload_time: datetime
    requires_python: str | None
    yanked_reason: str | None
    metadata: bytes         # METADATA of a wheel, PKG-INFO of an sdist
    requires_dist: tuple[str, ...]

    @property
    def yanked(self) -> bool:
        return self.yanked_reason is not None

    @property
    def metadata_sha256(self) -> str:
        return hashlib.sha256(self.metadata).hexdigest()


@dataclass
class Catalogue:
    """The built universe: ``root`` holds every file, flat."""

    root: Path
    files: list[CatalogueFile]
    vulnerabilities: dict[tuple[str, str], list[dict[str, object]]] = field(default_factory=dict)

    def __iter__(self) -> Iterator[CatalogueFile]:
        return iter(self.files)

    def file(self, filename: str) -> CatalogueFile:
        for item in self.files:
            if item.filename == filename:
                return item
        raise KeyError(filename)

    def project(self, name: str) -> list[CatalogueFile]:
        key = canonicalize_name(name)
        return [item for item in self.files if item.normalized == key]

    def projects(self) -> list[str]:
        return sorted({item.normalized for item in self.files})

    def find(self, name: str, version: str, *, wheel: bool | None = None,
             tag: str | None = None) -> CatalogueFile:
        """The one file of ``name`` ``version`` (narrowed by kind or a tag substring)."""
        found = [f for f in self.project(name) if f.version == version
                 and (wheel is None or f.is_wheel == wheel)
                 and (tag is None or tag in f.filename)]
        if len(found) != 1:
            raise KeyError(f"{name} {version}: {[f.filename for f in found]}")
        return found[0]

    @property
    def upload_times(self) -> dict[str, datetime]:
        return {item.filename: item.upload_time for item in self.files}

    @property
    def yanked(self) -> dict[str, str]:
        return {item.filename: item.yanked_reason for item in self.files
                if item.yanked_reason is not None}


def _build_one(out_dir: Path, spec: FileSpec) -> Path:
    if spec.kind in EXTRA_KINDS:  # builders defined in the blocks at the end of this file
        return EXTRA_KINDS[spec.kind](out_dir, spec)
    if spec.kind == "wheel":
        return build_wheel(out_dir, spec.name, spec.version, tag=spec.tag,
                           requires_dist=spec.requires_dist,
                           requires_python=spec.requires_python,
                           provides_extra=spec.provides_extra,
                           metadata_version=spec.metadata_version or "2.1")
    if spec.kind in ("sdist", "legacy-sdist"):
        return build_sdist(out_dir, spec.name, spec.version, requires_dist=spec.requires_dist,
                           requires_python=spec.requires_python,
                           metadata_version=spec.metadata_version or "2.2",
                           legacy=spec.kind == "legacy-sdist")
    if spec.kind == "backend":
        return build_backend_wheel(out_dir, spec.version)
    if spec.kind == "setuptools":
        return build_setuptools_wheel(out_dir, spec.version)
    raise ValueError(f"unknown kind {spec.kind!r}")


def read_metadata(path: Path) -> bytes:
    """METADATA of a wheel or PKG-INFO of an sdist, as stored in the archive."""
    return read_core_metadata(path)[0]


def build_catalogue(out_dir: Path) -> Catalogue:
    """Build every file of :data:`SPECS` into ``out_dir`` (flat); ~0.1 s, deterministic."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for number, spec in enumerate(SPECS):
        path = _build_one(out_dir, spec)
        data = path.read_bytes()
        files.append(CatalogueFile(
            project=spec.name, version=spec.version, filename=path.name, path=path,
            sha256=hashlib.sha256(data).hexdigest(), size=len(data),
            upload_time=UPLOAD_EPOCH + timedelta(days=number),
            requires_python=spec.requires_python, yanked_reason=spec.yanked_reason,
            metadata=read_metadata(path), requires_dist=spec.requires_dist))
    return Catalogue(root=out_dir, files=files,
                     vulnerabilities={k: list(v) for k, v in VULNERABILITIES.items()})


# ==========================================================================
# Issue 14 (lockfiles every installer accepts): build requirements, extras
# ==========================================================================
#
# =================  ==========================  ==============================================
# setuphelper        1.0 wheel                   what setupreq's backend asks for at build time
# setupreq           1.0 sdist only              build-system requires fixture-backend; its
#                                                get_requires_for_build_wheel reports
#                                                ``setuphelper`` (as setup_requires would), and
#                                                its build imports it
# buildtool          1.0 wheel; 2.0 wheel        a set pins 1.0 at runtime ...
# newtool            1.0 sdist only              ... while this sdist needs ``buildtool>=2`` to
#                                                build: two versions of one name in one file
# extrasy            1.0 wheel                   extras a, b: ``leaky>=1.0; python_full_version
#                                                < "3.11.3" and (extra == "a" or extra == "b")``
# leaky              1.0 wheel                   the dependency behind that marker
# =================  ==========================  ==============================================

# (name, version) -> (build-system requires, what get_requires_for_build_wheel reports)
BUILD_REQUIRES_14: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = {
    ("setupreq", "1.0"): (("fixture-backend",), ("setuphelper",)),
    ("newtool", "1.0"): (("fixture-backend", "buildtool>=2"), ()),
}


def _build_sdist_14(out_dir: Path, spec: FileSpec) -> Path:
    """An sdist of the fixture backend with the build requirements above."""
    from . import fixture_backend

    build_requires, setup_requires = BUILD_REQUIRES_14[(spec.name, spec.version)]
    files = dict(fixture_backend.default_module(spec.name, spec.version))
    files["PKG-INFO"] = fixture_backend.core_metadata(
        spec.name, spec.version, metadata_version="2.2",
        requires_dist=spec.requires_dist).encode()
    files["pyproject.toml"] = fixture_backend.pyproject_text(
        spec.name, spec.version, requires_dist=spec.requires_dist,
        build_requires=build_requires, setup_requires=setup_requires).encode()
    return out_dir / fixture_backend.write_sdist(out_dir, spec.name, spec.version, files)


EXTRA_KINDS = {"sdist-14": _build_sdist_14}

SPECS = SPECS + (
    FileSpec("setuphelper", "1.0"),
    FileSpec("setupreq", "1.0", kind="sdist-14"),
    FileSpec("buildtool", "1.0"),
    FileSpec("buildtool", "2.0"),
    FileSpec("newtool", "1.0", kind="sdist-14"),
    FileSpec("extrasy", "1.0", provides_extra=("a", "b"), requires_dist=(
        'leaky>=1.0; python_full_version < "3.11.3" and (extra == "a" or extra == "b")',)),
    FileSpec("leaky", "1.0"),
)


# ==========================================================================
# Issue 23 (license policy, SBOMs): a license that changes between versions
# ==========================================================================
#
# =================  ==========================  ==============================================
# copyleft           1.0 wheel; 2.0 wheel        ``License-Expression: MIT`` in 1.0,
#                                              ``GPL-3.0-only`` in 2.0 (PEP 639, Metadata 2.4)
# =================  ==========================  ==============================================

LICENSES_23: dict[tuple[str, str], str] = {
    ("copyleft", "1.0"): "MIT",
    ("copyleft", "2.0"): "GPL-3.0-only",
}


def _build_licensed_23(out_dir: Path, spec: FileSpec) -> Path:
    """A wheel whose metadata declares the PEP 639 License-Expression above."""
    return build_wheel(out_dir, spec.name, spec.version, tag=spec.tag, metadata_version="2.4",
                       requires_dist=spec.requires_dist, extra_metadata=(
                           ("License-Expression", LICENSES_23[(spec.name, spec.version)]),))


EXTRA_KINDS["licensed-23"] = _build_licensed_23

SPECS = SPECS + (
    FileSpec("copyleft", "1.0", kind="licensed-23"),
    FileSpec("copyleft", "2.0", kind="licensed-23"),
)
