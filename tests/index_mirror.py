"""A fixture mirror for the index, serve and verify tests: catalogue files in a
store and hand-written lockfiles, without the lock or fetch stages.

Sets (the host target matches the machine running the tests: CPython of this
interpreter's minor version on x86_64 Linux):

* ``core`` on ``host`` (cp3.11) and ``arm`` (cp3.12 aarch64): ``beta`` (pulls
  ``alpha`` and ``foo-bar-baz``), ``yanky==1.1`` (yanked), ``sdistonly`` (an
  sdist only, built with the ``fixture-backend`` build-only package),
  ``native`` (platform wheels). ``alpha`` is 1.1 on host and 2.0 (Requires-Python
  >=3.12) on arm, so both versions are in the mirror.
* ``extra`` on ``host``: ``yanky==1.0`` and ``speedup`` (also in core).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from fixtureindex import Catalogue, CatalogueFile
from helpers import subprocess_env
from packaging.utils import canonicalize_name
from packaging.version import Version

from lockmirror.formats.lockfile import (
    RUNTIME_GROUP,
    LockedFile,
    LockedPackage,
    LockedTarget,
    Lockfile,
)
from lockmirror.formats.store import Store
from lockmirror.fsutil import sha256_bytes

HOST_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
HOST = LockedTarget("host", HOST_PYTHON, "cp", ("manylinux_2_28_x86_64",),
                    f"python_version == '{HOST_PYTHON}' and sys_platform == 'linux' and "
                    "platform_machine == 'x86_64'")
ARM = LockedTarget("arm", "3.12", "cp", ("manylinux_2_28_aarch64",),
                   "python_version == '3.12' and sys_platform == 'linux' and "
                   "platform_machine == 'aarch64'")
SOURCE = "https://user:secret-token@fixture.example/simple/"
# sets with an sdist: the dependency group of its build requirements (as lock.py names it)
BUILD_GROUPS = {"core": "build-sdistonly"}

# set -> (requirements, targets, [(project, version, targets, build_only, file filter)])
SETS: dict[str, tuple[tuple[str, ...], tuple[LockedTarget, ...],
                      list[tuple[str, str, tuple[str, ...], bool, str | None]]]] = {
    "core": (
        ("beta", "yanky==1.1", "sdistonly", "native"),
        (HOST, ARM),
        [
            ("alpha", "1.1", ("host",), False, None),
            ("alpha", "2.0", ("arm",), False, None),
            ("beta", "1.0", ("host", "arm"), False, None),
            ("foo-bar-baz", "1.0", ("host", "arm"), False, None),
            ("yanky", "1.1", ("host", "arm"), False, None),
            ("sdistonly", "1.0", ("host", "arm"), False, None),
            ("speedup", "1.2", ("host", "arm"), False, None),
            ("fixture-backend", "1.0", ("host", "arm"), True, None),
            ("native", "1.0", ("host",), False, "manylinux_2_17_x86_64"),
            ("native", "1.0", ("arm",), False, "manylinux_2_28_aarch64"),
        ],
    ),
    "extra": (
        ("yanky==1.0", "speedup"),
        (HOST,),
        [
            ("yanky", "1.0", ("host",), False, None),
            ("speedup", "1.2", ("host",), False, None),
        ],
    ),
}


@dataclass
class FixtureMirror:
    root: Path
    store: Store
    lockfiles: list[Path]
    catalogue: Catalogue

    @property
    def out(self) -> Path:
        return self.root / "dist-index"


def locked_file(item: CatalogueFile) -> LockedFile:
    return LockedFile(filename=item.filename, url=f"https://fixture.example/files/{item.filename}",
                      size=item.size, sha256=item.sha256, upload_time=item.upload_time,
                      metadata_sha256=item.metadata_sha256 if item.is_wheel else None)


def store_file(store: Store, data: bytes) -> str:
    digest = sha256_bytes(data)
    path = store.path(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o644)
    return digest


def build_lockfile(catalogue: Catalogue, set_name: str) -> Lockfile:
    requirements, targets, entries = SETS[set_name]
    packages = []
    merged: dict[tuple[str, str], dict[str, object]] = {}
    for project, version, package_targets, build_only, tag in entries:
        files = [f for f in catalogue.project(project) if f.version == version
                 and (tag is None or not f.is_wheel or tag in f.filename)]
        if tag is not None:
            files = [f for f in files if f.is_wheel]
        entry = merged.setdefault((project, version), {"targets": [], "files": [],
                                                       "build_only": build_only})
        entry["targets"] += list(package_targets)  # type: ignore[operator]
        entry["files"] += files  # type: ignore[operator]
    for (project, version), entry in sorted(merged.items()):
        files: list[CatalogueFile] = entry["files"]  # type: ignore[assignment]
        first = files[0]
        target_names = tuple(t.name for t in targets if t.name in entry["targets"])  # type: ignore[operator]
        # as lock.py marks them: an entry for some targets only is active on those alone
        # (PEP 751 installers refuse two active entries of one name), and in a set with
        # an sdist each entry names its dependency group (build-only ones stay out of
        # the default install)
        group = (BUILD_GROUPS.get(set_name, "") if entry["build_only"] else RUNTIME_GROUP) \
            if set_name in BUILD_GROUPS else None
        clause = f"'{group}' in dependency_groups" if group else None
        if len(target_names) == len(targets):
            marker = clause
        else:
            marker = " or ".join(
                f"({t.marker})" if clause is None else f"({t.marker} and ({clause}))"
                for t in targets if t.name in target_names)
        packages.append(LockedPackage(
            name=first.normalized, version=Version(version), targets=target_names,
            index=SOURCE,
            wheels=tuple(locked_file(f) for f in files if f.is_wheel),
            sdist=next((locked_file(f) for f in files if not f.is_wheel), None),
            requires_python=first.requires_python, marker=marker,
            why={t: (set_name,) for t in target_names},
            build_only=bool(entry["build_only"]), groups=(group,) if group else (),
            yanked=first.yanked_reason))
    build_groups = (BUILD_GROUPS[set_name],) if set_name in BUILD_GROUPS else ()
    return Lockfile(set_name=set_name, requirements=requirements, targets=targets,
                    packages=tuple(packages), input_hash=f"{set_name}-input-hash",
                    build_groups=build_groups)


def make_fixture_mirror(catalogue: Catalogue, root: Path) -> FixtureMirror:
    """Store every catalogue file (and each wheel's metadata) and write the lockfiles."""
    store = Store(root / "store")
    for item in catalogue:
        assert store_file(store, item.path.read_bytes()) == item.sha256
        if item.is_wheel:
            store_file(store, item.metadata)
    lockfiles = []
    for set_name in SETS:
        path = root / "lockfiles" / f"pylock.{set_name}.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        build_lockfile(catalogue, set_name).write(path)
        lockfiles.append(path)
    return FixtureMirror(root=root, store=store, lockfiles=lockfiles, catalogue=catalogue)


def make_built_mirror(catalogue: Catalogue, root: Path) -> FixtureMirror:
    """:func:`make_fixture_mirror` with its index built into ``root/dist-index``."""
    from lockmirror.stages.index import build_index

    mirror = make_fixture_mirror(catalogue, root)
    build_index(mirror.lockfiles, mirror.store, mirror.out, title="Fixture mirror")
    return mirror


def copy_mirror(mirror: FixtureMirror, root: Path) -> FixtureMirror:
    """An independent copy (store, lockfiles) a test may change."""
    shutil.copytree(mirror.root / "store", root / "store")
    shutil.copytree(mirror.root / "lockfiles", root / "lockfiles")
    return FixtureMirror(root=root, store=Store(root / "store"),
                         lockfiles=[root / "lockfiles" / p.name for p in mirror.lockfiles],
                         catalogue=mirror.catalogue)


# --------------------------------------------------------------------------
# Real clients
# --------------------------------------------------------------------------


def uv_compile(index_url: str, requirements: str, python: str, tmp_path: Path) -> str:
    from uv import find_uv_bin

    source = tmp_path / "requirements.in"
    source.write_text(requirements)
    done = subprocess.run(
        [find_uv_bin(), "pip", "compile", str(source), "--python-version", python,
         "--python-platform", "x86_64-manylinux_2_28", "--default-index", index_url,
         "--no-config", "--cache-dir", str(tmp_path / "uv-cache"), "--no-header",
         "--python", sys.executable],
        env=subprocess_env(installers=True), capture_output=True, text=True,
        timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def pins(output: str) -> set[str]:
    return {line.strip() for line in output.splitlines() if "==" in line
            and not line.lstrip().startswith("#") and not line.startswith("warning")}


def pip_install(index_url: str, requirements: list[str], venv: Path) -> str:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--isolated", "--no-cache-dir", "--index-url", index_url,
         "--disable-pip-version-check", *requirements],
        env=subprocess_env(installers=True), capture_output=True, text=True,
        timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "list",
         "--format=json", "--disable-pip-version-check"],
        capture_output=True, text=True, check=True)
    return " ".join(sorted(f"{canonicalize_name(p['name'])}=={p['version']}"
                           for p in json.loads(listed.stdout)))
