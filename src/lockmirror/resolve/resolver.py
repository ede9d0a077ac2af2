"""Resolution for one target: a thin resolvelib provider over the index client.

pip's engine (resolvelib) does the backtracking; this module only answers
its questions for a *target*, never the host: markers are evaluated with
:meth:`Target.evaluate`, Requires-Python with :meth:`Target.allows_python`,
wheels are filtered by :meth:`Target.wheel_rank`. Behaviour lives in the
:class:`~lockmirror.resolve.candidates.Candidate` and :class:`~lockmirror.resolve.candidates.Req`
classes and the :class:`~lockmirror.resolve.candidates.CandidateFactory`
(:mod:`lockmirror.resolve.candidates`), as in pip's provider.

Cost: each project page and each metadata file is fetched once per process
(the :class:`~lockmirror.net.index_client.IndexClient` memoizes them, and every
target and set shares one client); pages of newly seen dependencies are
prefetched concurrently as soon as they are known.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version
from resolvelib import AbstractProvider, BaseReporter, Resolver
from resolvelib.resolvers import RequirementInformation, ResolutionImpossible, ResolutionTooDeep

from ..errors import ResolutionError
from ..spelling import did_you_mean, nearest
from ..targets import Target
from .candidates import (
    Candidate,
    CandidateFactory,
    Refusal,
    Req,
    TargetContext,
    requirement_to_reqs,
)
from .explain import explain_gave_up, explain_impossible
from .sdist_metadata import SdistBuildError

# --------------------------------------------------------------------------
# The provider
# --------------------------------------------------------------------------


class TargetProvider(AbstractProvider[Req, Candidate, str]):
    """resolvelib's questions, answered for one target."""

    def __init__(self, factory: CandidateFactory) -> None:
        self.factory = factory
        self.ctx = factory.ctx
        self._satisfied: dict[tuple[str, Version], bool] = {}

    def identify(self, requirement_or_candidate: Req | Candidate) -> str:
        return requirement_or_candidate.identifier

    def get_preference(self, identifier: str, resolutions: Mapping[str, Candidate],
                       candidates: Mapping[str, Iterator[Candidate]],
                       information: Mapping[str, Iterator[Any]],
                       backtrack_causes: Sequence[Any]) -> Any:
        infos = list(information[identifier])
        pinned = any(info.requirement.is_pin for info in infos)
        # a conflict's requirements and their requirers (pip's rule): trying them
        # first re-checks the conflict at once instead of re-pinning, release by
        # release, every unrelated project pinned since
        causes = {c.requirement.name for c in backtrack_causes}
        causes |= {c.parent.name for c in backtrack_causes if c.parent is not None}
        name = identifier.split("[")[0]
        # Backtrack causes first, then pins, then those with the most constraints.
        return (name not in causes, not pinned, -len(infos), identifier)

    def find_matches(self, identifier: str, requirements: Mapping[str, Iterator[Req]],
                     incompatibilities: Mapping[str, Iterator[Candidate]]
                     ) -> Callable[[], Iterator[Candidate]]:
        """The candidates, lazily: a release is built (its files parsed and
        ranked) only when resolvelib reaches it, newest first (the previous
        lockfile's version first)."""
        reqs = list(requirements[identifier])
        bad = {c.version for c in incompatibilities[identifier]}
        if not reqs:
            return lambda: iter(())
        factory = self.factory
        name, extras = reqs[0].name, reqs[0].extras
        pinned = any(r.is_pin for r in reqs)
        matching = factory.matching(name, reqs)
        allow_pre = factory.prereleases_allowed(name, reqs, matching)
        preferred = self.ctx.preferred.get(name)
        if preferred in matching:
            matching.remove(preferred)
            matching.insert(0, preferred)
        order = [v for v in matching if v not in bad and (allow_pre or not v.is_prerelease)]

        def candidates() -> Iterator[Candidate]:
            first = True
            for version in order:
                base = factory.candidate(name, version)
                if base is None or not self._allowed(base, pinned) or not factory.prepared(base):
                    continue
                if first and base.best.is_wheel:  # resolvelib will want it next: ask early
                    self.ctx.client.prefetch_metadata([base.best])
                first = False
                yield factory.with_extras(base, extras) if extras else base

        return candidates

    def _allowed(self, base: Candidate, pinned: bool) -> bool:
        """Not yanked (unless pinned, PEP 592) and allowed by the policy hook
        (else recorded in ``ctx.excluded``)."""
        if base.yanked and not pinned:
            return False
        if self.ctx.candidate_filter is not None:
            refusal = self.ctx.candidate_filter(base, pinned)
            if refusal is not None:
                self.ctx.excluded[(base.name, str(base.version))] = refusal
                return False
        return True

    def is_satisfied_by(self, requirement: Req, candidate: Candidate) -> bool:
        # asked for every pin in every round: memoized per (requirement text, version);
        # the text (its hash kept by str) fixes the specifier
        key = (requirement.text, candidate.version)
        found = self._satisfied.get(key)
        if found is None:
            found = self._satisfied[key] = requirement.specifier.contains(
                candidate.version, prereleases=True)
        return found

    def get_dependencies(self, candidate: Candidate) -> list[Req]:
        return self.factory.dependencies(candidate)


# --------------------------------------------------------------------------
# Entry
# --------------------------------------------------------------------------


# resolvelib's rounds before it gives up (ResolutionTooDeep): each pins one release
# or backtracks once; a set whose conflict needs more is reported with that conflict.
MAX_ROUNDS = 20000


class ConflictReporter(BaseReporter[Req, Candidate, str]):
    """Keeps the conflict resolvelib met last, to name it if resolution gives up."""

    def __init__(self) -> None:
        self.last_conflict: list[RequirementInformation[Req, Candidate]] = []

    def resolving_conflicts(self, causes: Collection[RequirementInformation[Req, Candidate]]
                            ) -> None:
        self.last_conflict = list(causes)


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
    excluded: dict[tuple[str, str], Refusal]
    skipped: dict[tuple[str, str], SdistBuildError]  # (name, version) -> its failed build


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
    reporter = ConflictReporter()
    resolver: Resolver[Req, Candidate, str] = Resolver(TargetProvider(factory), reporter)
    try:
        result = resolver.resolve(roots, max_rounds=MAX_ROUNDS)
    except ResolutionImpossible as exc:
        raise explain_impossible(exc.causes, factory, root_label) from None
    except ResolutionTooDeep:
        raise explain_gave_up(reporter.last_conflict, factory, root_label, MAX_ROUNDS,
                              all_pinned=all(root.is_pin for root in roots)) from None

    chosen: dict[NormalizedName, Candidate] = {}
    for candidate in result.mapping.values():
        if not candidate.extras:
            chosen[candidate.name] = candidate
    if ctx.check_extras:
        _refuse_unknown_extras(roots, chosen, factory, root_label)
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
    return Resolution(target, chosen, dict(parents), conditions, dict(edges), dict(ctx.excluded),
                      dict(ctx.skipped))


def _refuse_unknown_extras(roots: Sequence[Req], chosen: Mapping[NormalizedName, Candidate],
                           factory: CandidateFactory, root_label: str) -> None:
    """Raise ResolutionError for an extra the set asks for that the chosen release
    does not provide (``idna[securty]``, ``celery[reddis]``): pip warns and installs
    without it, but a mirror locked so lacks what the extra pulls in. A release
    whose metadata declares no extra at all is taken as it is (older metadata
    need not list them). Extras a dependency asks for are not checked."""
    for root in roots:
        if not root.extras or root.name not in chosen:
            continue
        candidate = chosen[root.name]
        declared: dict[str, str] = {canonicalize_name(e): e
                                    for e in factory.metadata(candidate).provides_extra}
        written: dict[str, str] = {canonicalize_name(e): e for e in Requirement(root.text).extras}
        unknown = sorted(written[e] for e in root.extras - declared.keys())
        if not declared or not unknown:
            continue
        words = ", ".join(f"'{e}'" for e in unknown)
        close = nearest(canonicalize_name(unknown[0]), declared)
        raise ResolutionError(
            f"'{root.text}': {candidate.name} {candidate.version} has no "
            f"extra{'s' if len(unknown) > 1 else ''} {words}; it has: "
            f"{', '.join(sorted(declared.values()))}"
            + did_you_mean(declared[close] if close else None),
            where=f"{root_label} on target {factory.ctx.target.name}")


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
