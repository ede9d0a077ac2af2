"""Build small, valid, installable distributions with the standard library only.

Everything here is deterministic: the same arguments give the same bytes
(fixed zip dates, sorted entries, gzip header without time or name), so the
sha256 of every fixture file is stable across runs and machines.

* :func:`build_wheel` - a wheel with real METADATA, WHEEL and RECORD and an
  importable package named after the project; pip and uv really install it.
* :func:`build_sdist` - an sdist built by the ``fixture-backend`` PEP 517
  backend (or, with ``legacy=True``, a setup.py-only sdist).
* :func:`build_backend_wheel` - the ``fixture-backend`` wheel itself.
* :func:`build_setuptools_wheel` - a stand-in ``setuptools`` wheel, so a legacy
  sdist's implicit build requirement can be locked and even built offline:
  it provides ``setuptools.setup`` and ``setuptools.build_meta:__legacy__``
  on top of the fixture backend's writer.
"""

from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from packaging.utils import canonicalize_name

from . import fixture_backend
from .fixture_backend import core_metadata, default_module, escape_name, pyproject_text

BACKEND_SOURCE = Path(fixture_backend.__file__).read_bytes()
FAKE_SETUPTOOLS_VERSION = "68.0.0"


class DistributionName:
    """What a catalogue file and a served file both read off their project and filename."""

    project: str
    filename: str

    @property
    def normalized(self) -> str:
        return canonicalize_name(self.project)

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")


def _as_bytes(files: Mapping[str, bytes | str]) -> dict[str, bytes]:
    return {path: data.encode() if isinstance(data, str) else data for path, data in files.items()}


def build_wheel(
    out_dir: Path,
    name: str,
    version: str,
    *,
    requires_dist: Sequence[str] = (),
    requires_python: str | None = None,
    tag: str = "py3-none-any",
    metadata_version: str = "2.1",
    extra_metadata: Iterable[tuple[str, str]] = (),
    provides_extra: Sequence[str] = (),
    files: Mapping[str, bytes | str] | None = None,
) -> Path:
    """Write a wheel into ``out_dir`` and return its path.

    ``tag`` may be a compressed tag set (``cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64``).
    ``files`` (archive path -> content) replaces the default package
    ``<escaped name>/__init__.py``, which defines ``__version__``.
    """
    metadata = core_metadata(name, version, metadata_version=metadata_version,
                             requires_dist=requires_dist, requires_python=requires_python,
                             provides_extra=provides_extra, extra_metadata=extra_metadata)
    contents = default_module(name, version) if files is None else _as_bytes(files)
    filename = fixture_backend.write_wheel(out_dir, name, version, metadata, contents, tag)
    return Path(out_dir) / filename


def build_sdist(
    out_dir: Path,
    name: str,
    version: str,
    *,
    requires_dist: Sequence[str] = (),
    requires_python: str | None = None,
    metadata_version: str = "2.2",
    dynamic: Sequence[str] = (),
    build_requires: Sequence[str] = ("fixture-backend",),
    build_backend: str = "fixture_backend",
    legacy: bool = False,
) -> Path:
    """Write a buildable sdist into ``out_dir`` and return its path.

    PKG-INFO lists Requires-Dist and Requires-Python only when they are
    trustworthy, i.e. Metadata-Version >= 2.2 and not named in ``dynamic``;
    older sdists (and ``legacy`` ones) leave them out, as old setuptools did,
    so their dependencies are known only by running the PEP 517
    ``prepare_metadata_for_build_wheel`` hook (or building).

    ``legacy=True`` writes ``setup.py`` and no ``pyproject.toml``: installers
    then build it with ``setuptools.build_meta:__legacy__`` and need
    ``setuptools`` (see :func:`build_setuptools_wheel`).
    """
    static = _metadata_is_static(metadata_version) and not legacy
    pkg_info = core_metadata(
        name, version, metadata_version=metadata_version,
        requires_dist=requires_dist if static and "Requires-Dist" not in dynamic else (),
        requires_python=requires_python if static and "Requires-Python" not in dynamic else None,
        dynamic=dynamic if static else ())
    files: dict[str, bytes] = dict(default_module(name, version))
    files["PKG-INFO"] = pkg_info.encode()
    if legacy:
        files["setup.py"] = _setup_py(name, version, requires_dist, requires_python).encode()
    else:
        files["pyproject.toml"] = pyproject_text(
            name, version, requires_dist=requires_dist, requires_python=requires_python,
            build_requires=build_requires, build_backend=build_backend).encode()
    filename = fixture_backend.write_sdist(out_dir, name, version, files)
    return Path(out_dir) / filename


def _metadata_is_static(metadata_version: str) -> bool:
    major, minor = (int(part) for part in metadata_version.split(".")[:2])
    return (major, minor) >= (2, 2)


def _setup_py(name: str, version: str, requires_dist: Sequence[str],
              requires_python: str | None) -> str:
    return (
        "from setuptools import setup\n\n"
        f"setup(\n    name={name!r},\n    version={version!r},\n"
        f"    packages=[{escape_name(name)!r}],\n"
        f"    install_requires={list(requires_dist)!r},\n"
        + (f"    python_requires={requires_python!r},\n" if requires_python else "")
        + ")\n"
    )


def build_backend_wheel(out_dir: Path, version: str = fixture_backend.BACKEND_VERSION) -> Path:
    """The ``fixture-backend`` wheel: module ``fixture_backend`` (this package's own file)."""
    return build_wheel(out_dir, "fixture-backend", version,
                       files={"fixture_backend.py": BACKEND_SOURCE})


_SETUPTOOLS_INIT = '''\
"""Stand-in setuptools for the lockmirror fixture index: setup() records its arguments."""

__version__ = "{version}"
_captured = {{}}


def setup(**kwargs):
    _captured.clear()
    _captured.update(kwargs)


def find_packages(where=".", exclude=(), include=("*",)):
    import os

    return sorted(d for d in os.listdir(where)
                  if os.path.isfile(os.path.join(where, d, "__init__.py")))
'''

_SETUPTOOLS_BUILD_META = '''\
"""setuptools.build_meta stand-in: runs setup.py, then writes with the fixture writer."""

import os
import runpy

import setuptools
from setuptools import _fixture_writer as writer


def _config():
    runpy.run_path("setup.py", run_name="__main__")
    kwargs = dict(setuptools._captured)
    return {"name": kwargs["name"], "version": kwargs["version"],
            "dependencies": list(kwargs.get("install_requires", [])),
            "requires-python": kwargs.get("python_requires"),
            "optional-dependencies": dict(kwargs.get("extras_require", {}))}


class _Backend:
    def get_requires_for_build_wheel(self, config_settings=None):
        return []

    def get_requires_for_build_sdist(self, config_settings=None):
        return []

    def prepare_metadata_for_build_wheel(self, metadata_directory, config_settings=None):
        config = _config()
        files = writer.dist_info_files(config["name"], config["version"],
                                       writer._metadata_from_config(config))
        for path, data in files.items():
            target = os.path.join(metadata_directory, path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as handle:
                handle.write(data)
        return writer.escape_name(config["name"]) + "-" + config["version"] + ".dist-info"

    def build_wheel(self, wheel_directory, config_settings=None, metadata_directory=None):
        config = _config()
        name, version = config["name"], config["version"]
        return writer.write_wheel(wheel_directory, name, version,
                                  writer._metadata_from_config(config),
                                  writer._module_files(name, version))

    def build_sdist(self, sdist_directory, config_settings=None):
        config = _config()
        name, version = config["name"], config["version"]
        files = dict(writer._module_files(name, version))
        with open("setup.py", "rb") as handle:
            files["setup.py"] = handle.read()
        return writer.write_sdist(sdist_directory, name, version, files)


_backend = _Backend()
__legacy__ = _backend
get_requires_for_build_wheel = _backend.get_requires_for_build_wheel
get_requires_for_build_sdist = _backend.get_requires_for_build_sdist
prepare_metadata_for_build_wheel = _backend.prepare_metadata_for_build_wheel
build_wheel = _backend.build_wheel
build_sdist = _backend.build_sdist
'''


def build_setuptools_wheel(out_dir: Path, version: str = FAKE_SETUPTOOLS_VERSION) -> Path:
    """A stand-in ``setuptools`` wheel able to build the fixture's legacy sdists offline."""
    return build_wheel(out_dir, "setuptools", version, requires_python=">=3.8", files={
        "setuptools/__init__.py": _SETUPTOOLS_INIT.format(version=version),
        "setuptools/build_meta.py": _SETUPTOOLS_BUILD_META,
        "setuptools/_fixture_writer.py": BACKEND_SOURCE,
    })


def read_core_metadata(path: Path) -> tuple[bytes, bool]:
    """(METADATA of a wheel or PKG-INFO of an sdist, is_wheel), as stored in the archive."""
    if path.name.endswith((".whl", ".zip")):
        is_wheel = path.name.endswith(".whl")
        wanted = ".dist-info/METADATA" if is_wheel else "/PKG-INFO"
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.count("/") == 1 and n.endswith(wanted))
            return archive.read(name), is_wheel
    with tarfile.open(path) as archive:
        member = next(m for m in archive.getmembers()
                      if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO"))
        handle = archive.extractfile(member)
        assert handle is not None
        return handle.read(), False
