"""PEP 751 lockfiles (``pylock.<set>.toml``): the contract between stages.

One lockfile per package set covers all of that set's targets. The lock
stage writes it; fetch, index, bundle, publish, audit and diff read it. The
typed model here (:class:`Lockfile`, :class:`LockedPackage`,
:class:`LockedFile`) is what they work with; :meth:`Lockfile.dumps` and
:meth:`Lockfile.loads` go through ``packaging.pylock`` so every file written
or read is validated against PEP 751.

lockmirror's own data lives in ``[tool.lockmirror]`` (the input hash, the
set's requirements, the targets, the exceptions used and the warn-level policy
findings, where a build backend could not be asked)
and in each package's ``[packages.tool.lockmirror]`` (targets, why, PEP 658
metadata hashes).

Build requirements: when a set has sdists, every entry's marker names the
dependency groups it belongs to (PEP 751 ``dependency_groups``): the default
group ``runtime`` is what the set installs; ``build-<sdist>`` is the isolated
environment that sdist builds in. ``pip install -r`` / ``uv pip install -r``
install the runtime group only; each group alone has at most one entry per
name, however its versions differ from the runtime's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from ..errors import InputError, LockmirrorError, StaleLockError
from ..fsutil import atomic_write
from .bounded import load_toml

if TYPE_CHECKING:  # loaded on use: `doit` only reads input hashes, and must start fast
    from packaging.pylock import PackageSdist, PackageWheel, Pylock

_PYTHON_RE = re.compile(r"3\.\d+(\.\d+)?")
_INPUT_HASH_RE = re.compile(rb'^input-hash = "(sha256:[0-9a-f]{64})"$', re.MULTILINE)
_CONFLICT_RE = re.compile(rb"^(?:<{7}|>{7}) ", re.MULTILINE)  # git's conflict markers

LOCK_VERSION = "1.0"
# lockmirror's own: part of every input hash; bump when the same inputs should give
# a different lockfile, so existing lockfiles become stale
LOCK_FORMAT = 3
RUNTIME_GROUP = "runtime"  # the default group: what installing the set installs
CREATED_BY = "lockmirror"


@dataclass(frozen=True, order=True)
class LockedFile:
    """One artifact: where it came from and what its bytes must be."""

    filename: str
    url: str
    size: int
    sha256: str
    upload_time: datetime | None = None
    metadata_sha256: str | None = None  # PEP 658 core metadata (wheels), if the index had it

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")


@dataclass(frozen=True)
class LockedPackage:
    """One release of one project, for the targets listed in ``targets``."""

    name: NormalizedName
    version: Version
    targets: tuple[str, ...]
    index: str
    wheels: tuple[LockedFile, ...] = ()
    sdist: LockedFile | None = None
    marker: str | None = None
    requires_python: str | None = None
    dependencies: tuple[str, ...] = ()  # normalized names
    # target -> the requirements that pulled this in, e.g. "requests==2.31.0 (from set)"
    # or "requests 2.31.0: urllib3<3,>=1.21.1"
    why: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    build_only: bool = False  # present only to build some sdist from source
    groups: tuple[str, ...] = ()  # dependency groups it is in (empty: a set without sdists)
    yanked: str | None = None  # the yank reason ("" when none given) if locked while yanked

    @property
    def files(self) -> tuple[LockedFile, ...]:
        return self.wheels + ((self.sdist,) if self.sdist else ())

    @property
    def key(self) -> tuple[str, Version]:
        return (self.name, self.version)


@dataclass(frozen=True)
class LockedTarget:
    """A target as recorded in the lockfile, so readers need no mirror.yaml."""

    name: str
    python: str
    implementation: str
    platforms: tuple[str, ...]
    marker: str  # the PEP 508 environment marker that selects it


@dataclass(frozen=True)
class Lockfile:
    """A whole ``pylock.<set>.toml``."""

    set_name: str
    requirements: tuple[str, ...]
    targets: tuple[LockedTarget, ...]
    packages: tuple[LockedPackage, ...]
    input_hash: str
    exceptions_used: tuple[Mapping[str, str], ...] = ()
    # the warn-level policy findings the lock allowed, not waived by an exception:
    # {"release", "rule", "message"[, "advisory"]}, sorted (what lock printed as warnings)
    policy_findings: tuple[Mapping[str, str], ...] = ()
    build_groups: tuple[str, ...] = ()  # "build-<sdist>" groups, sorted
    # target -> why the build backends of its sdists could not be asked what they
    # need at build time (their static [build-system] requires are locked anyway)
    backend_not_asked: Mapping[str, str] = field(default_factory=dict)
    # candidates passed over because preparing their metadata failed (an sdist's
    # build): {"target", "package", "version", "reason"}, sorted
    skipped_builds: tuple[Mapping[str, str], ...] = ()
    # the input hash's parts, each hashed alone (lockmirror.stages.lock_inputs), so
    # `lock --check` can name the input that changed
    inputs: Mapping[str, str] = field(default_factory=dict)

    # -- queries -----------------------------------------------------------

    def target(self, name: str) -> LockedTarget:
        for target in self.targets:
            if target.name == name:
                return target
        raise KeyError(name)

    def packages_for(self, target: str) -> list[LockedPackage]:
        """The packages installed on one target, sorted by name."""
        return [p for p in self.packages if target in p.targets]

    def iter_files(self) -> Iterator[tuple[LockedPackage, LockedFile]]:
        for package in self.packages:
            for file in package.files:
                yield package, file

    # -- serialization -----------------------------------------------------

    def to_pylock(self) -> Pylock:
        from packaging.markers import Marker
        from packaging.pylock import Package, PackageSdist, PackageWheel, Pylock
        from packaging.specifiers import SpecifierSet

        packages = []
        for pkg in sorted(self.packages, key=lambda p: (p.name, p.version, p.marker or "")):
            packages.append(Package(
                name=pkg.name,
                version=pkg.version,
                marker=Marker(pkg.marker) if pkg.marker else None,
                requires_python=SpecifierSet(pkg.requires_python) if pkg.requires_python else None,
                dependencies=[{"name": d} for d in sorted(set(pkg.dependencies))] or None,
                index=pkg.index,
                sdist=_to_archive(PackageSdist, pkg.sdist) if pkg.sdist else None,
                wheels=[_to_archive(PackageWheel, w) for w in sorted(pkg.wheels)] or None,
                tool={"lockmirror": _package_tool(pkg)},
            ))
        lock = Pylock(
            lock_version=Version(LOCK_VERSION),
            environments=[Marker(t.marker) for t in self.targets],
            dependency_groups=list(self.build_groups) or None,
            default_groups=[RUNTIME_GROUP] if self.build_groups else None,
            created_by=CREATED_BY,
            packages=packages,
            tool={"lockmirror": self._tool()},
        )
        lock.validate()
        return lock

    def _tool(self) -> dict[str, Any]:
        """The lockfile's ``[tool.lockmirror]``: set, input hash, requirements,
        targets, and the records lock keeps (exceptions used, findings, ...)."""
        tool: dict[str, Any] = {
            "set": self.set_name,
            "input-hash": self.input_hash,
            "requirements": list(self.requirements),
            "targets": {
                t.name: {"python": t.python, "implementation": t.implementation,
                         "platforms": list(t.platforms), "marker": t.marker}
                for t in self.targets
            },
        }
        if self.exceptions_used:
            tool["exceptions-used"] = [dict(sorted(e.items())) for e in self.exceptions_used]
        if self.policy_findings:
            tool["policy-findings"] = [dict(sorted(f.items())) for f in self.policy_findings]
        if self.backend_not_asked:
            tool["backend-not-asked"] = dict(sorted(self.backend_not_asked.items()))
        if self.skipped_builds:
            tool["skipped-builds"] = [dict(sorted(r.items())) for r in self.skipped_builds]
        if self.inputs:
            tool["inputs"] = dict(sorted(self.inputs.items()))
        return tool

    def dumps(self) -> str:
        """The lockfile as TOML text: sorted, stable, validated (PEP 751)."""
        import tomli_w

        data = self.to_pylock().to_dict()
        header = (f"# Generated by lockmirror for the package set '{self.set_name}'. "
                  "Do not edit: run `doit lock`.\n")
        return header + tomli_w.dumps(data)

    @classmethod
    def loads(cls, text: str, *, where: str = "lockfile") -> Lockfile:
        """Parse (with :mod:`lockmirror.formats.bounded`'s limits) and validate; raises
        InputError (exit 2) naming ``where``."""
        return cls.from_toml(load_toml(text, where=where), where=where)

    @classmethod
    def from_toml(cls, data: dict[str, Any], *, where: str = "lockfile") -> Lockfile:
        """:meth:`loads` of a lockfile already parsed with
        :func:`~lockmirror.formats.bounded.load_toml` (``data`` is not changed);
        validates and raises as :meth:`loads` does."""
        from packaging.pylock import Pylock, PylockValidationError

        try:
            pylock = Pylock.from_dict(data)
        except PylockValidationError as exc:
            raise InputError(f"not a valid PEP 751 lockfile: {_one_line(str(exc))}",
                             where=where, hint="re-create it with `doit lock`") from None
        tool = (pylock.tool or {}).get("lockmirror")
        if not isinstance(tool, dict) or "input-hash" not in tool:
            raise InputError("lockfile has no [tool.lockmirror] section", where=where,
                             hint="it was not written by lockmirror; re-create it with `doit lock`")
        try:
            _check_tool_tables(pylock, tool)
            return cls._from_pylock(pylock, tool)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"malformed lockmirror data in the lockfile ({type(exc).__name__}: "
                             f"{_one_line(str(exc))})", where=where,
                             hint="re-create it with `doit lock`") from None

    @classmethod
    def _from_pylock(cls, pylock: Pylock, tool: dict[str, Any]) -> Lockfile:
        targets = tuple(
            LockedTarget(name=name, python=spec["python"], implementation=spec["implementation"],
                         platforms=tuple(spec["platforms"]), marker=spec["marker"])
            for name, spec in tool["targets"].items()
        )
        packages = []
        for pkg in pylock.packages:
            ptool = (pkg.tool or {}).get("lockmirror", {})
            metadata = ptool.get("metadata-sha256", {})
            packages.append(LockedPackage(
                name=canonicalize_name(pkg.name),
                version=pkg.version or Version("0"),
                targets=tuple(ptool.get("targets", [t.name for t in targets])),
                index=pkg.index or "",
                wheels=tuple(_from_archive(w, metadata.get(w.name)) for w in pkg.wheels or ()),
                sdist=_from_archive(pkg.sdist, None) if pkg.sdist else None,
                marker=str(pkg.marker) if pkg.marker else None,
                requires_python=str(pkg.requires_python) if pkg.requires_python else None,
                dependencies=tuple(d["name"] for d in pkg.dependencies or ()),
                why={t: tuple(v) for t, v in ptool.get("why", {}).items()},
                build_only=bool(ptool.get("build-only", False)),
                groups=tuple(ptool.get("groups", ())),
                yanked=ptool.get("yanked"),
            ))
        return cls(
            set_name=tool.get("set", ""),
            requirements=tuple(tool.get("requirements", ())),
            targets=targets,
            packages=tuple(packages),
            input_hash=tool["input-hash"],
            exceptions_used=tuple(tool.get("exceptions-used", ())),
            policy_findings=tuple(tool.get("policy-findings", ())),
            build_groups=tuple(pylock.dependency_groups or ()),
            backend_not_asked=dict(tool.get("backend-not-asked", {})),
            skipped_builds=tuple(tool.get("skipped-builds", ())),
            inputs=dict(tool.get("inputs", {})),
        )

    @classmethod
    def read(cls, path: Path) -> Lockfile:
        """The lockfile at ``path``: :func:`read_document`, then :meth:`from_toml`."""
        return cls.from_toml(read_document(path), where=str(path))

    def write(self, path: Path) -> bool:
        """Write atomically; return False when the file already had these bytes."""
        return atomic_write(path, self.dumps(), only_if_changed=True)


def read_document(path: Path) -> dict[str, Any]:
    """The parsed TOML of the lockfile at ``path`` (one bounded parse, no PEP 751
    validation). Raises StaleLockError (missing), LockmirrorError (unreadable),
    InputError (exit 2: not UTF-8, not TOML)."""
    return load_toml(read_text(path), where=str(path))


def read_text(path: Path) -> str:
    """The text of the lockfile at ``path``, as written (no newline translation),
    as installers and the index read it; errors as :func:`read_document`'s."""
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise StaleLockError("lockfile is missing", where=str(path),
                             hint="run `doit lock`") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read the lockfile: {exc}", where=str(path)) from None
    except OSError as exc:
        raise LockmirrorError(f"cannot read the lockfile: {exc}", where=str(path)) from None


def _check_tool_tables(pylock: Pylock, tool: dict[str, Any]) -> None:
    """Give lockmirror's own tables the shapes its readers rely on, so a
    hand-edited or hostile lockfile fails here, not later in a foreign error.
    Raises ValueError or TypeError naming the key."""
    from packaging.markers import Marker

    _expect(tool["input-hash"], str, "tool.lockmirror.input-hash")
    _expect(tool.get("set", ""), str, "tool.lockmirror.set")
    _expect_strings(tool.get("requirements", []), "tool.lockmirror.requirements")
    for key in ("exceptions-used", "policy-findings", "skipped-builds"):
        for record in _expect(tool.get(key, []), list, f"tool.lockmirror.{key}"):
            if not isinstance(record, dict) or not all(
                    isinstance(v, str) for v in record.values()):
                raise TypeError(f"tool.lockmirror.{key} holds a record that is not a "
                                "table of strings")
    for key, digest in _expect(tool.get("inputs", {}), dict, "tool.lockmirror.inputs").items():
        _expect(digest, str, f"tool.lockmirror.inputs.{key}")
    for name, spec in _expect(tool.get("targets"), dict, "tool.lockmirror.targets").items():
        where = f"tool.lockmirror.targets.{name}"
        _expect(spec, dict, where)
        python = _expect(spec.get("python"), str, f"{where}.python")
        if not _PYTHON_RE.fullmatch(python) or spec.get("implementation") not in ("cp", "pp"):
            raise ValueError(f"{where}: {python!r} {spec.get('implementation')!r} is not a "
                             "Python version and implementation lockmirror writes")
        _expect_strings(spec.get("platforms"), f"{where}.platforms")
        Marker(_expect(spec.get("marker"), str, f"{where}.marker"))
    for package in pylock.packages:
        where = f"packages.{package.name}.tool.lockmirror"
        own = _expect((package.tool or {}).get("lockmirror", {}), dict, where)
        _expect_strings(own.get("targets", []), f"{where}.targets")
        for target, why in _expect(own.get("why", {}), dict, f"{where}.why").items():
            _expect_strings(why, f"{where}.why.{target}")
        for file, digest in _expect(own.get("metadata-sha256", {}), dict, where).items():
            _expect(digest, str, f"{where}.metadata-sha256.{file}")
        _expect(own.get("build-only", False), bool, f"{where}.build-only")
        _expect(own.get("yanked", ""), str, f"{where}.yanked")


def _expect(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind):
        raise TypeError(f"{where} is a {type(value).__name__}, not a {kind.__name__}")
    return value


def _expect_strings(value: Any, where: str) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError(f"{where} is not a list of strings")


def _one_line(message: str) -> str:
    """packaging's marker and specifier errors draw a caret under the text on
    lines of their own: keep the first line and the place after the caret."""
    lines = message.splitlines()
    if len(lines) <= 1:
        return message
    place = lines[-1].strip().lstrip("^").strip()
    return f"{lines[0]} {place}".strip()


def text_digest(text: str) -> str:
    """The sha256 of a lockfile's text with CRLF read as LF (a checkout may have
    either): equal digests, the same lockfile; what ``diff`` tells a hand edit by."""
    return hashlib.sha256(text.replace("\r\n", "\n").encode("utf-8")).hexdigest()


def has_conflict_markers(data: bytes) -> bool:
    """Whether ``data`` holds git's merge-conflict markers at a line's start."""
    return _CONFLICT_RE.search(data) is not None


def read_input_hash(path: Path) -> str | None:
    """The recorded input hash, read cheaply (a line scan, no TOML parse and
    no validation: lockmirror writes the key on a line of its own); None if
    the file or the key is absent, or the file holds git's merge-conflict
    markers (two locks of the same inputs conflict over their pins only, under
    one shared input-hash line: that lockfile is not current)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    found = _INPUT_HASH_RE.findall(data)
    return found[-1].decode() if len(found) == 1 and not has_conflict_markers(data) else None


def _package_tool(pkg: LockedPackage) -> dict[str, Any]:
    """A package's ``[packages.tool.lockmirror]``: its targets, why it is there,
    build-only, groups, yanked, and the PEP 658 metadata sha256 of its wheels."""
    tool: dict[str, Any] = {"targets": list(pkg.targets)}
    if pkg.why:
        tool["why"] = {t: list(v) for t, v in sorted(pkg.why.items())}
    if pkg.build_only:
        tool["build-only"] = True
    if pkg.groups:
        tool["groups"] = list(pkg.groups)
    if pkg.yanked is not None:
        tool["yanked"] = pkg.yanked
    metadata = {f.filename: f.metadata_sha256 for f in pkg.wheels if f.metadata_sha256}
    if metadata:
        tool["metadata-sha256"] = dict(sorted(metadata.items()))
    return tool


def _to_archive(kind: type[PackageWheel | PackageSdist], f: LockedFile) -> Any:
    upload_time = f.upload_time.astimezone(UTC) if f.upload_time else None
    return kind(name=f.filename, url=f.url, size=f.size, upload_time=upload_time,
                hashes={"sha256": f.sha256})


def _from_archive(archive: PackageWheel | PackageSdist, metadata_sha256: str | None) -> LockedFile:
    name = archive.name or (archive.url or "").rsplit("/", 1)[-1]
    return LockedFile(filename=name, url=archive.url or "", size=archive.size or 0,
                      sha256=archive.hashes.get("sha256", ""), upload_time=archive.upload_time,
                      metadata_sha256=metadata_sha256)
