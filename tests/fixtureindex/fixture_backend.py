"""A tiny but real PEP 517 build backend, and the deterministic wheel writer behind it.

This one file has two lives:

* The test helpers (``builder.py``) import it to write fixture wheels.
* Its own source text is packed, unchanged, into the ``fixture-backend``
  wheel of the fixture catalogue (module ``fixture_backend``), so that pip,
  uv and ``python -m build`` can build the catalogue's sdists offline, behind
  a mirror, in an isolated build environment.

It therefore uses the standard library only and must stay importable on its
own. A project built by this backend is described in ``pyproject.toml`` under
``[tool.fixture-backend]`` (deliberately *not* ``[project]``, so that no
frontend can read static PEP 621 metadata: the sdist's PKG-INFO or the
``prepare_metadata_for_build_wheel`` hook are the only sources of truth)::

    [tool.fixture-backend]
    name = "sdistonly"
    version = "1.0"
    dependencies = ["speedup>=1.0"]
    requires-python = ">=3.8"
    optional-dependencies = {fast = ["speedup>=1.2"]}
    setup-requires = ["setuphelper"]   # reported by get_requires_for_build_wheel

Every file of the project's module directory (the escaped project name) is
packed into the wheel; a module is generated when there is none.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import re
import tarfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

BACKEND_VERSION = "1.0"
# Zip entries and tar members carry this date so the same inputs give the same bytes.
FIXED_DATE_TIME = (2020, 1, 1, 0, 0, 0)
FIXED_MTIME = 1577836800  # 2020-01-01T00:00:00Z


# --------------------------------------------------------------------------
# Names and metadata
# --------------------------------------------------------------------------


def escape_name(name: str) -> str:
    """The distribution name as it appears in wheel/sdist file names (and as the module name)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _with_extra(requirement: str, extra: str) -> str:
    requirement, _, marker = requirement.partition(";")
    marker = marker.strip()
    condition = f'extra == "{extra}"'
    if marker:
        condition = f"({marker}) and {condition}"
    return f"{requirement.strip()}; {condition}"


def core_metadata(
    name: str,
    version: str,
    *,
    metadata_version: str = "2.1",
    summary: str | None = None,
    requires_dist: Iterable[str] = (),
    requires_python: str | None = None,
    provides_extra: Iterable[str] = (),
    dynamic: Iterable[str] = (),
    extra_metadata: Iterable[tuple[str, str]] = (),
) -> str:
    """Core metadata (METADATA / PKG-INFO) as text, fields in a fixed order."""
    lines = [
        f"Metadata-Version: {metadata_version}",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: {summary or f'fixture project {name}'}",
    ]
    lines += [f"Dynamic: {field}" for field in dynamic]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Provides-Extra: {extra}" for extra in provides_extra]
    lines += [f"Requires-Dist: {requirement}" for requirement in requires_dist]
    lines += [f"{key}: {value}" for key, value in extra_metadata]
    return "\n".join(lines) + "\n"


def default_module(name: str, version: str) -> dict[str, bytes]:
    """An importable package named after the project, reporting its version."""
    module = escape_name(name)
    text = (f'"""Fixture project {name}."""\n\n'
            f'PROJECT = "{name}"\n__version__ = "{version}"\n')
    return {f"{module}/__init__.py": text.encode()}


# --------------------------------------------------------------------------
# Writers (deterministic)
# --------------------------------------------------------------------------


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def _expand_tag(tag: str) -> list[str]:
    interpreters, abis, platforms = tag.split("-")
    return [f"{i}-{a}-{p}" for i in interpreters.split(".") for a in abis.split(".")
            for p in platforms.split(".")]


def wheel_filename(name: str, version: str, tag: str = "py3-none-any") -> str:
    return f"{escape_name(name)}-{version}-{tag}.whl"


def dist_info_files(name: str, version: str, metadata_text: str,
                    tag: str = "py3-none-any") -> dict[str, bytes]:
    """METADATA and WHEEL of a wheel's .dist-info directory (RECORD is added by the writer)."""
    dist_info = f"{escape_name(name)}-{version}.dist-info"
    purelib = tag.split("-")[1:] == ["none", "any"]
    wheel = ["Wheel-Version: 1.0", f"Generator: fixture-backend {BACKEND_VERSION}",
             f"Root-Is-Purelib: {'true' if purelib else 'false'}"]
    wheel += [f"Tag: {expanded}" for expanded in _expand_tag(tag)]
    return {
        f"{dist_info}/METADATA": metadata_text.encode(),
        f"{dist_info}/WHEEL": ("\n".join(wheel) + "\n").encode(),
    }


def _zip_entry(path: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(path, date_time=FIXED_DATE_TIME)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def write_wheel(out_dir: str | os.PathLike[str], name: str, version: str, metadata_text: str,
                files: Mapping[str, bytes], tag: str = "py3-none-any") -> str:
    """Write a wheel with a correct RECORD; return its file name. Same inputs, same bytes."""
    filename = wheel_filename(name, version, tag)
    dist_info = f"{escape_name(name)}-{version}.dist-info"
    contents = dict(sorted(files.items()))
    contents.update(dist_info_files(name, version, metadata_text, tag))
    record_path = f"{dist_info}/RECORD"
    record = [f"{path},{_record_hash(data)},{len(data)}" for path, data in contents.items()]
    record.append(f"{record_path},,")
    contents[record_path] = ("\n".join(record) + "\n").encode()
    os.makedirs(out_dir, exist_ok=True)
    target = os.path.join(out_dir, filename)
    tmp = target + ".tmp"
    with zipfile.ZipFile(tmp, "w") as archive:
        for path, data in contents.items():
            archive.writestr(_zip_entry(path), data)
    os.replace(tmp, target)
    return filename


def write_sdist(out_dir: str | os.PathLike[str], name: str, version: str,
                files: Mapping[str, bytes]) -> str:
    """Write ``<escaped>-<version>.tar.gz`` with ``files`` under its top directory."""
    base = f"{escape_name(name)}-{version}"
    filename = f"{base}.tar.gz"
    os.makedirs(out_dir, exist_ok=True)
    target = os.path.join(out_dir, filename)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        directories = sorted({f"{base}/{os.path.dirname(p)}".rstrip("/") for p in files}
                             | {base})
        for directory in directories:
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, FIXED_MTIME
            archive.addfile(info)
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(f"{base}/{path}")
            info.size, info.mode, info.mtime = len(data), 0o644, FIXED_MTIME
            archive.addfile(info, io.BytesIO(data))
    tmp = target + ".tmp"
    # mtime=0 and no file name in the gzip header: deterministic bytes.
    with open(tmp, "wb") as handle, gzip.GzipFile(filename="", mode="wb", fileobj=handle,
                                                  mtime=0) as zipped:
        zipped.write(raw.getvalue())
    os.replace(tmp, target)
    return filename


# --------------------------------------------------------------------------
# PEP 517 hooks: the project is described by [tool.fixture-backend]
# --------------------------------------------------------------------------


def _config() -> dict[str, Any]:
    import tomllib

    with open("pyproject.toml", "rb") as handle:
        data = tomllib.load(handle)
    config = data.get("tool", {}).get("fixture-backend")
    if not isinstance(config, dict) or "name" not in config or "version" not in config:
        raise RuntimeError("pyproject.toml has no [tool.fixture-backend] name and version")
    return config


def _requirements(config: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    requirements = [str(r) for r in config.get("dependencies") or []]
    extras_table: Mapping[str, list[str]] = config.get("optional-dependencies") or {}
    extras = sorted(extras_table)
    for extra in extras:
        requirements += [_with_extra(str(r), extra) for r in extras_table[extra]]
    return requirements, extras


def _metadata_from_config(config: Mapping[str, Any]) -> str:
    requirements, extras = _requirements(config)
    return core_metadata(str(config["name"]), str(config["version"]), metadata_version="2.1",
                         requires_dist=requirements,
                         requires_python=config.get("requires-python"),
                         provides_extra=extras)


def _module_files(name: str, version: str) -> dict[str, bytes]:
    module = escape_name(name)
    found: dict[str, bytes] = {}
    for root, _dirs, names in os.walk(module):
        for file_name in names:
            if file_name.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(root, file_name)
            with open(path, "rb") as handle:
                found[path.replace(os.sep, "/")] = handle.read()
    return found or default_module(name, version)


def get_requires_for_build_wheel(config_settings: object = None) -> list[str]:
    """What the build needs beyond [build-system] requires (setuptools' setup_requires)."""
    return [str(r) for r in _config().get("setup-requires") or []]


def get_requires_for_build_sdist(config_settings: object = None) -> list[str]:
    return []


def prepare_metadata_for_build_wheel(metadata_directory: str,
                                     config_settings: object = None) -> str:
    config = _config()
    name, version = str(config["name"]), str(config["version"])
    files = dist_info_files(name, version, _metadata_from_config(config))
    for path, data in files.items():
        target = os.path.join(metadata_directory, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as handle:
            handle.write(data)
    return f"{escape_name(name)}-{version}.dist-info"


def build_wheel(wheel_directory: str, config_settings: object = None,
                metadata_directory: str | None = None) -> str:
    config = _config()
    for requirement in config.get("setup-requires") or []:  # as setup_requires: import it
        __import__(escape_name(re.split(r"[\s<>=!~;\[]", str(requirement))[0]))
    name, version = str(config["name"]), str(config["version"])
    return write_wheel(wheel_directory, name, version, _metadata_from_config(config),
                       _module_files(name, version))


def build_sdist(sdist_directory: str, config_settings: object = None) -> str:
    config = _config()
    name, version = str(config["name"]), str(config["version"])
    files = dict(_module_files(name, version))
    with open("pyproject.toml", "rb") as handle:
        files["pyproject.toml"] = handle.read()
    requirements, extras = _requirements(config)
    files["PKG-INFO"] = core_metadata(
        name, version, metadata_version="2.2", requires_dist=requirements,
        requires_python=config.get("requires-python"), provides_extra=extras).encode()
    return write_sdist(sdist_directory, name, version, files)


def pyproject_text(name: str, version: str, *, requires_dist: Sequence[str] = (),
                   requires_python: str | None = None,
                   build_requires: Sequence[str] = ("fixture-backend",),
                   build_backend: str = "fixture_backend",
                   setup_requires: Sequence[str] = ()) -> str:
    """The pyproject.toml of a project built by this backend."""
    def array(items: Iterable[str]) -> str:
        return "[" + ", ".join('"' + item.replace('"', '\\"') + '"' for item in items) + "]"

    lines = ["[build-system]", f"requires = {array(build_requires)}",
             f'build-backend = "{build_backend}"', "", "[tool.fixture-backend]",
             f'name = "{name}"', f'version = "{version}"',
             f"dependencies = {array(requires_dist)}"]
    if requires_python:
        lines.append(f'requires-python = "{requires_python}"')
    if setup_requires:
        lines.append(f"setup-requires = {array(setup_requires)}")
    return "\n".join(lines) + "\n"
