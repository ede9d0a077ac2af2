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

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version
from resolvelib import AbstractProvider, BaseReporter, Resolver
from resolvelib.resolvers import ResolutionImpossible, ResolutionTooDeep

from .core_metadata import CoreMetadata, parse_metadata
from .errors import LockmirrorError, ResolutionError
from .index_client import DistFile, IndexClient
from .marker_extras import without_extra
from .resolve_explain import explain_impossible
from .sdist_metadata import SdistMetadataSource
from .targets import Target, Truth

# A policy hook: (candidate, pinned) -> None when allowed, else the reason it
# is excluded. Supplied by the lock stage from the policy engine.
CandidateFilter = Callable[["Candidate", bool], str | None]


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
                if target.allows_python(file.requires_python) is not Truth.ALWAYS:
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
            return parse_metadata(self.ctx.client.metadata(file))
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
            self.ctx.client.prefetch_metadata([c.best for c in found[:2] if c.best.is_wheel])
        return [self.factory.with_extras(c, extras) if extras else c for c in found]

    def is_satisfied_by(self, requirement: Req, candidate: Candidate) -> bool:
        return requirement.specifier.contains(candidate.version, prereleases=True)

    def get_dependencies(self, candidate: Candidate) -> list[Req]:
        return self.factory.dependencies(candidate)


# --------------------------------------------------------------------------
# Entry
# --------------------------------------------------------------------------


# An edge into a package: (its requirer, None for a root; the edge's marker condition)
_Edge = tuple[NormalizedName | None, str | None]


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
        raise explain_impossible(exc, factory, root_label) from None
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
    incoming: dict[NormalizedName, list[_Edge]] = defaultdict(list)
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
    incoming: Mapping[NormalizedName, list[_Edge]],
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
