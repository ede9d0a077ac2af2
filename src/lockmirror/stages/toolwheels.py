"""lockmirror's own wheel and its dependencies' wheels, for the far side of a gap.

A bundle carries them so an operator can install the tool with
``pip install --no-index --find-links tool/ lockmirror`` and no network.

* The dependency wheels are, by default, a locked set like any other
  (:mod:`lockmirror.stages.tool_set`): lockmirror's runtime requirements
  resolved by the lock stage into ``lockfiles/pylock.lockmirror-tool.toml``
  for every target of mirror.yaml whose Python lockmirror supports (never
  the build machine), fetched into the store by the fetch stage (sha256
  verified), and taken from the store by the bundle: one wheel per package
  and target, so the far side's Python and platform pick their own.
  With ``LOCKMIRROR_TOOL_WHEELS=installed`` there is no tool set: the
  installed distributions themselves are repacked (their RECORD lists every
  file) once per dependency set into ``<cache>/tool-wheels/<key>/`` (the one
  place, :func:`tool_wheel_cache`, for ``doit bundle`` and ``lockmirror
  bundle`` alike): for build machines with no index and for the test suite,
  which must not depend on the package index; they fit this machine only.
* lockmirror's own wheel is packed from the running installation (package
  files plus the installed metadata) rather than rebuilt by a PEP 517
  backend: the result is what runs here, byte-for-byte the same whenever and
  wherever it is packed, and needs neither the network nor a particular
  setuptools (an isolated build would fetch the newest setuptools and change
  the bundle's bytes with every setuptools release).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import stat
import sys
import sysconfig
import tempfile
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..errors import LockmirrorError
from ..fsutil import sha256_bytes

PROJECT = "lockmirror"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can carry
_REPACK = 2  # how repack_installed packs; 2: entries are regular files (bin/ scripts executable)


@dataclass(frozen=True)
class ToolWheel:
    """One wheel for the bundle's ``tool/``: its file name, bytes and their sha256
    (hashed once, where the bytes were read or made)."""

    filename: str
    data: bytes
    sha256: str

    @classmethod
    def of(cls, filename: str, data: bytes) -> ToolWheel:
        return cls(filename, data, sha256_bytes(data))


@dataclass(frozen=True)
class ToolWheels:
    """Wheels to carry, and the interpreter they were chosen for."""

    wheels: tuple[ToolWheel, ...]
    python: str


def python_tag() -> str:
    """E.g. ``cpython-3.11-linux-x86_64``: what the dependency wheels fit."""
    return (f"{sys.implementation.name}-{sys.version_info.major}.{sys.version_info.minor}-"
            f"{sysconfig.get_platform()}")


def tool_fingerprint() -> str:
    """What the tool set's lock depends on beyond mirror.yaml, cheaply (no
    pydantic): lockmirror's requirements and ``Requires-Python`` (not this
    machine: the tool set's targets are mirror.yaml's). For caches keyed on
    the lock's inputs."""
    dist = metadata.distribution(PROJECT)
    return json.dumps([runtime_requirements(dist), dist.metadata["Requires-Python"]])


def tool_wheel_cache(cache_dir: Path | None) -> Path:
    """Where the dependency wheels are kept below a project's cache directory
    (``paths.cache`` of mirror.yaml, or ``$LOCKMIRROR_CACHE``); without one,
    below ``~/.cache/lockmirror``. Both front doors reach it through here."""
    return (cache_dir or Path.home() / ".cache" / "lockmirror") / "tool-wheels"


def tool_source() -> str:
    """Where the dependency wheels come from, ``$LOCKMIRROR_TOOL_WHEELS``:
    ``index`` (the default: the locked tool set, :mod:`lockmirror.stages.tool_set`)
    or ``installed`` (repacked from this installation). LockmirrorError otherwise."""
    source = os.environ.get("LOCKMIRROR_TOOL_WHEELS", "index")
    if source not in {"index", "installed"}:
        raise LockmirrorError(f"LOCKMIRROR_TOOL_WHEELS is {source!r}",
                              hint="use 'index' (the locked tool set, the default) or "
                                   "'installed' (repack this installation's wheels)")
    return source


def installed_dependency_wheels(dist: metadata.Distribution, cache_dir: Path | None,
                                progress: Callable[[str], None] | None = None) -> ToolWheels:
    """This installation's dependencies of ``dist`` repacked as wheels (for this
    Python only), once per dependency set into :func:`tool_wheel_cache`, and
    read from there."""
    pins = dependency_pins(runtime_requirements(dist))
    return ToolWheels(tuple(ToolWheel.of(path.name, path.read_bytes()) for path in
                            _cached_dependency_wheels(pins, cache_dir, progress)), python_tag())


def dependency_pins(requirements: list[str]) -> list[str]:
    """``name==version`` of every installed distribution these requirements
    need here (markers evaluated for this interpreter, extras followed), sorted."""
    seen: dict[str, str] = {}
    todo = [Requirement(text) for text in requirements]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        requirement = todo.pop()
        extras = frozenset(requirement.extras)
        key = canonicalize_name(requirement.name)
        if (key, extras) in done:
            continue
        done.add((key, extras))
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise LockmirrorError(f"{requirement.name} is required by lockmirror but not "
                                  "installed", hint="pip install it (or reinstall lockmirror)"
                                  ) from None
        seen[key] = dist.version
        for text in dist.requires or []:
            child = Requirement(text)
            if child.marker is None or any(child.marker.evaluate({"extra": extra})
                                           for extra in extras | {""}):
                todo.append(child)
    return sorted(f"{name}=={version}" for name, version in seen.items())


def dependency_cache_key(pins: list[str]) -> str:
    """The name of the :func:`tool_wheel_cache` directory of one repacked dependency set
    (:data:`_REPACK` in it: wheels a fixed repack makes are not taken from an older one's
    directory, which ``gc`` then removes)."""
    key_text = json.dumps({"python": python_tag(), "pins": pins, "source": "installed",
                           "repack": _REPACK}, sort_keys=True)
    return hashlib.sha256(key_text.encode()).hexdigest()[:16]


def current_cache_keys() -> set[str]:
    """The cache key this lockmirror's repacked dependency wheels use; what ``gc``
    keeps. Raises LockmirrorError when a dependency is not installed."""
    pins = dependency_pins(runtime_requirements(metadata.distribution(PROJECT)))
    return {dependency_cache_key(pins)}


def _cached_dependency_wheels(pins: list[str], cache_dir: Path | None,
                              progress: Callable[[str], None] | None) -> list[Path]:
    """This installation's distributions of ``pins`` repacked as wheels, once
    per pinned set and Python, into :func:`tool_wheel_cache` of ``cache_dir``."""
    key = dependency_cache_key(pins)
    target = tool_wheel_cache(cache_dir) / key
    if not target.is_dir():
        if progress:
            progress(f"repacking {len(pins)} installed dependency wheels for {python_tag()} "
                     f"into {target}")
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=target.parent))
        try:
            for pin in pins:
                repack_installed(metadata.distribution(pin.split("==")[0]), scratch)
            (scratch / "pins.txt").write_text("\n".join(pins) + "\n", encoding="utf-8")
            os.replace(scratch, target)  # a half-filled directory never gets the key's name
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    wheels = sorted(target.glob("*.whl"))
    if len(wheels) != len(pins):
        raise LockmirrorError(f"expected {len(pins)} wheels, found {len(wheels)}",
                              where=str(target), hint="delete this directory and rebuild")
    return wheels


def _source_project(dist: metadata.Distribution) -> tuple[Path, dict[str, Any]] | None:
    """The pyproject.toml of an editable (or local directory) install and its
    ``[project]`` table, if it is one."""
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    parsed = urlparse(json.loads(text).get("url", ""))
    pyproject = Path(unquote(parsed.path)) / "pyproject.toml"
    if parsed.scheme != "file" or not pyproject.is_file():
        return None
    return pyproject, tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})


def runtime_requirements(dist: metadata.Distribution) -> list[str]:
    """lockmirror's own dependencies (no extras).

    For an editable or local-directory install these come from pyproject.toml:
    the installed metadata records them as they were at install time and
    goes stale when a dependency is added. Raises LockmirrorError if the
    version changed too (then the install itself is out of date).
    """
    installed = [str(req) for req in map(Requirement, dist.requires or [])
                 if req.marker is None or "extra" not in str(req.marker)]
    source = _source_project(dist)
    if source is None:
        return installed
    pyproject, project = source
    dynamic = project.get("dynamic", [])
    if "version" not in dynamic and project.get("version") != dist.version:
        raise LockmirrorError(
            f"the installed lockmirror is {dist.version}, pyproject.toml says "
            f"{project.get('version')}", where=str(pyproject),
            hint=f"pip install -e {pyproject.parent}")
    if "dependencies" in dynamic:
        return installed
    return [str(Requirement(text)) for text in project.get("dependencies", [])]


def _entry_points(dist: metadata.Distribution) -> str | None:
    """entry_points.txt; for an editable install rebuilt from pyproject.toml,
    whose [project.scripts] may have changed since it was installed."""
    source = _source_project(dist)
    if source is None or {"scripts", "gui-scripts", "entry-points"} & set(
            source[1].get("dynamic", [])):
        return dist.read_text("entry_points.txt")
    project = source[1]
    groups = {"console_scripts": project.get("scripts", {}),
              "gui_scripts": project.get("gui-scripts", {}),
              **project.get("entry-points", {})}
    text = "".join(f"[{group}]\n" + "".join(f"{name} = {target}\n"
                                            for name, target in sorted(items.items())) + "\n"
                   for group, items in sorted(groups.items()) if items)
    return text or None


def _metadata_with(text: str, requirements: list[str]) -> str:
    """The METADATA text with its unconditional Requires-Dist lines replaced."""
    head, blank, body = text.partition("\n\n")
    lines: list[str] = []
    placed = False
    for line in head.splitlines():
        if line.startswith("Requires-Dist:") and "extra ==" not in line:
            if not placed:
                lines.extend(f"Requires-Dist: {r}" for r in requirements)
                placed = True
            continue
        lines.append(line)
    if not placed:
        lines.extend(f"Requires-Dist: {r}" for r in requirements)
    return "\n".join(lines) + ("\n" + blank + body if blank else "\n")


def repack_installed(dist: metadata.Distribution, out_dir: Path) -> Path:
    """Zip an installed distribution back into the wheel it came from.

    The files are the ones its RECORD lists, under the tags its WHEEL file
    names; scripts installed outside site-packages go back under
    ``<name>.data/scripts/`` (console scripts are left out: installers
    write them anew from entry_points.txt). Deterministic, like
    :func:`own_wheel`. Raises LockmirrorError for an editable install.
    """
    wheel_text = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel_text.splitlines()
            if line.startswith("Tag:")]
    files = dist.files or []
    info_dir = next((f.parts[0] for f in files if f.parts[0].endswith(".dist-info")), None)
    if not tags or info_dir is None:
        raise LockmirrorError(f"{dist.metadata['Name']} is not installed from a wheel",
                              hint="reinstall it with pip, or use LOCKMIRROR_TOOL_WHEELS=index")
    stem = info_dir.removesuffix(".dist-info")
    console = {line.split("=")[0].strip() for line in (dist.read_text("entry_points.txt")
                                                         or "").splitlines() if "=" in line}
    entries: dict[str, bytes] = {}
    for file in files:
        rel = file.as_posix()
        if "__pycache__" in file.parts or rel.endswith((".pyc", ".pyo")):
            continue
        if rel.startswith(f"{info_dir}/") and file.name in {
                "RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}:
            continue
        path = Path(str(dist.locate_file(file)))
        if rel.startswith("../"):
            if path.parent.name != "bin" or file.name in console:
                continue  # console scripts are regenerated; other data is not carried
            rel = f"{stem}.data/scripts/{file.name}"
        if not path.is_file():
            raise LockmirrorError(f"a file of {dist.metadata['Name']} is missing", where=str(path),
                                  hint="reinstall it")
        entries[rel] = path.read_bytes()
    parts = [tag.split("-") for tag in tags]
    compressed = "-".join(".".join(dict.fromkeys(p[i] for p in parts)) for i in range(3))
    wheel = out_dir / f"{stem}-{compressed}.whl"
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel.write_bytes(_wheel_bytes(entries, info_dir, executable_prefix=f"{stem}.data/scripts/"))
    return wheel


def own_wheel(dist: metadata.Distribution) -> ToolWheel:
    """The running lockmirror package and its metadata zipped into a pure wheel,
    in memory.

    Deterministic: sorted entries, fixed dates and modes, so the same sources
    give the same bytes. ``__pycache__`` and hidden files are left out.
    """
    import lockmirror  # the package as it runs, editable or installed

    package_dir = Path(lockmirror.__file__).parent
    version = dist.version
    dist_info = f"{PROJECT}-{version}.dist-info"
    entries: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(package_dir):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith((".pyc", ".pyo")):
                continue
            path = Path(dirpath) / name
            entries[f"{PROJECT}/{path.relative_to(package_dir).as_posix()}"] = path.read_bytes()
    metadata_text = dist.read_text("METADATA")
    if not metadata_text:
        raise LockmirrorError("the installed lockmirror has no METADATA",
                              hint="reinstall lockmirror")
    entries[f"{dist_info}/METADATA"] = _metadata_with(
        metadata_text, runtime_requirements(dist)).encode()
    entries[f"{dist_info}/WHEEL"] = (
        "Wheel-Version: 1.0\n"
        f"Generator: lockmirror ({version})\n"
        "Root-Is-Purelib: true\n"
        "Tag: py3-none-any\n").encode()
    for extra in ("entry_points.txt", "top_level.txt"):
        text = _entry_points(dist) if extra == "entry_points.txt" else dist.read_text(extra)
        if text:
            entries[f"{dist_info}/{extra}"] = text.encode()
    return ToolWheel.of(f"{PROJECT}-{version}-py3-none-any.whl",
                        _wheel_bytes(entries, dist_info))


def _wheel_bytes(entries: dict[str, bytes], info_dir: str, *,
                 executable_prefix: str | None = None) -> bytes:
    """``entries`` plus a RECORD as a deterministic wheel: sorted, fixed dates
    and modes (regular files, 0o644, and 0o755 below ``executable_prefix``),
    RECORD last (as installers expect)."""
    entries = dict(entries)
    record_lines = []
    for name, data in sorted(entries.items()):
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record_lines.append(f"{name},sha256={digest},{len(data)}")
    record_lines.append(f"{info_dir}/RECORD,,")
    entries[f"{info_dir}/RECORD"] = ("\n".join(record_lines) + "\n").encode()
    wheel = io.BytesIO()
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in [*sorted(n for n in entries if n != f"{info_dir}/RECORD"),
                     f"{info_dir}/RECORD"]:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            executable = executable_prefix is not None and name.startswith(executable_prefix)
            # the file type too: pip sets the executable bit only for a regular file's mode
            info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[name])
    return wheel.getvalue()
