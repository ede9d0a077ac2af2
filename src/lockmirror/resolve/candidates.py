"""What the resolver chooses between, for one target: requirements, candidates
and the factory that makes them.

A :class:`Req` is one requirement (with extras) as the resolver sees it; a
:class:`Candidate` is one release of a project (with extras) whose files
install on the target; the :class:`CandidateFactory` builds candidates from the
index client's pages (filtered by the policy hook, the target's wheel tags and
Requires-Python) and their dependencies from core metadata (PEP 658 file,
wheel, or the sdist's backend), as pip's factory does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from ..errors import LockmirrorError, ResolutionError
from ..formats.core_metadata import CoreMetadata, parse_metadata, refuse_mislabelled
from ..net.index_client import DistFile, IndexClient
from ..targets import Target, Truth
from .marker_extras import without_extra
from .sdist_metadata import SdistBuildError, SdistMetadataSource

# Core metadata parsed once per wheel, whichever target asks: the client memoizes the
# bytes, so the same object comes back and its hash is computed once.
_parsed_metadata = functools.lru_cache(maxsize=4096)(parse_metadata)



@dataclass(frozen=True)
class Refusal:
    """Why a policy hook excludes a release: its words, and the ids of the rules
    that refused it (those a ``policy.exceptions`` entry's ``rules:`` names, e.g.
    ``min_age_days``; empty when the hook knows no rule)."""

    reason: str
    rules: tuple[str, ...] = ()


# A policy hook: (candidate, pinned) -> None when allowed, else why it is
# excluded. Supplied by the lock stage from the policy engine.
CandidateFilter = Callable[["Candidate", bool], Refusal | None]


# Failed sdist metadata builds of one project for one target, one after another,
# after which the lock stops and says what to do (scipy has no wheel for an old
# macOS and each of its sdists is a 30-60 MB download and a failing build).
SDIST_FAILURES_IN_A_ROW = 3


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
    """Everything the provider needs to know about one resolution.

    ``excluded``: (name, version) -> why the policy hook refused the release;
    ``skipped``: (name, version) -> the failed sdist build for which a
    candidate was passed over; both filled while resolving. ``check_extras``:
    the requirements resolved are the set's own, and an extra of theirs the
    chosen release does not provide is refused (False for an sdist's build
    requirements, which are a dependency's). ``note`` hears each sdist whose
    metadata is prepared and each one skipped."""

    target: Target
    client: IndexClient
    sdists: SdistMetadataSource
    prereleases: bool = False
    prefer_sdists: bool = False
    allow_sdists: bool = True
    preferred: Mapping[NormalizedName, Version] = field(default_factory=dict)
    candidate_filter: CandidateFilter | None = None
    excluded: dict[tuple[str, str], Refusal] = field(default_factory=dict)
    skipped: dict[tuple[str, str], SdistBuildError] = field(default_factory=dict)
    check_extras: bool = True
    note: Callable[[str], None] | None = None  # says, as it goes, which sdist is built and how
    # name -> the versions whose sdist builds failed one after another (none prepared since)
    failed_in_a_row: dict[NormalizedName, list[str]] = field(default_factory=dict)


class CandidateFactory:
    """Builds and caches candidates; knows files, tags and metadata.

    Lazy: a release's files are made, checked and ranked only when the
    resolver looks at that release (:meth:`candidate`); the ranking of a
    wheel for the target is the target's, cached per file name."""

    def __init__(self, ctx: TargetContext) -> None:
        self.ctx = ctx
        self._built: dict[tuple[NormalizedName, Version], Candidate | None] = {}
        self._extras: dict[tuple[NormalizedName, Version, frozenset[str]], Candidate] = {}
        self._admitted: dict[tuple[NormalizedName, str], frozenset[Version]] = {}

    def versions(self, name: NormalizedName) -> tuple[Version, ...]:
        """Every release of ``name`` (file names checked), newest first."""
        return self.ctx.client.project(name).releases

    def candidate(self, name: NormalizedName, version: Version) -> Candidate | None:
        """The release as a candidate for the target; None when no file of it
        installs there (Requires-Python, tags, sdists denied). Memoized."""
        key = (name, version)
        if key not in self._built:
            self._built[key] = self._build(name, version)
        return self._built[key]

    def base_candidates(self, name: NormalizedName) -> list[Candidate]:
        """Every release usable on the target, newest first, ignoring pins/policy."""
        return [c for v in self.versions(name) if (c := self.candidate(name, v)) is not None]

    def _build(self, name: NormalizedName, version: Version) -> Candidate | None:
        files = self.ctx.client.project(name).files_of(version)
        target = self.ctx.target
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
            return None
        yanked = all(f.yanked for f in files)
        reason = next((f.yanked_reason for f in files if f.yanked_reason), None)
        requires_python = next((f.requires_python for f in usable if f.requires_python), None)
        return Candidate(name, version, frozenset(), tuple(usable), requires_python, yanked,
                         reason)

    def matching(self, name: NormalizedName, reqs: Sequence[Req]) -> list[Version]:
        """The releases every requirement's specifier admits (pre-releases
        included), newest first; each specifier's answer memoized."""
        versions = self.versions(name)
        admitted: set[Version] | None = None
        for req in reqs:
            key = (name, str(req.specifier))
            found = self._admitted.get(key)
            if found is None:
                found = self._admitted[key] = frozenset(
                    req.specifier.filter(versions, prereleases=True))
            admitted = set(found) if admitted is None else admitted & found
        return [v for v in versions if admitted is None or v in admitted]

    def prereleases_allowed(self, name: NormalizedName, reqs: Sequence[Req],
                            matching: Sequence[Version]) -> bool:
        """PEP 440's rule: pre-releases when the set allows them, a requirement
        names one or pins, or no final release in ``matching`` installs on the
        target (yanked ones do not count)."""
        if self.ctx.prereleases or any(r.is_pin for r in reqs):
            return True
        if any(s.prereleases for r in reqs for s in r.specifier):
            return True
        for version in matching:
            if not version.is_prerelease:
                candidate = self.candidate(name, version)
                if candidate is not None and not candidate.yanked:
                    return False
        return True

    def prepared(self, candidate: Candidate) -> bool:
        """Whether the candidate's metadata can be had. A wheel's is read when its
        dependencies are asked for; an sdist's is prepared now, and when its
        build fails the candidate is recorded in ``ctx.skipped`` and passed
        over (as pip passes over a link whose build fails), saying so to
        ``ctx.note``. Raises ResolutionError when that is the
        :data:`SDIST_FAILURES_IN_A_ROW`-th failed build of the project in a
        row for the target (:func:`sdists_keep_failing`): each can be a large
        download and a long build, and the next is unlikely to fare better."""
        if not candidate.is_sdist_only:
            return True
        key = (candidate.name, str(candidate.version))
        if key in self.ctx.skipped:
            return False
        target = self.ctx.target.name
        if not self.ctx.sdists.known(candidate.best):
            self._note(f"preparing the metadata of {candidate.best.filename} for target "
                       f"'{target}' (no wheel of {candidate.name} {candidate.version} for it)")
        try:
            self.ctx.sdists.metadata(candidate.best)
        except SdistBuildError as error:
            self.ctx.skipped[key] = error
            self._note(f"skipped {candidate.name} {candidate.version} on {target}: "
                       f"{error.message}")
            failed = self.ctx.failed_in_a_row.setdefault(candidate.name, [])
            failed.append(str(candidate.version))
            if len(failed) >= SDIST_FAILURES_IN_A_ROW:
                raise sdists_keep_failing(self, candidate.name, failed, error)
            return False
        self.ctx.failed_in_a_row.pop(candidate.name, None)
        return True

    def newest_with_wheel(self, name: NormalizedName) -> Version | None:
        """The newest release of ``name`` with a wheel for the target (any Requires-Python
        the target allows), or None. In memory: the pages are already read."""
        for version in self.versions(name):
            candidate = self.candidate(name, version)
            if candidate is not None and any(f.is_wheel for f in candidate.files):
                return version
        return None

    def _note(self, text: str) -> None:
        if self.ctx.note is not None:
            self.ctx.note(text)

    def with_extras(self, base: Candidate, extras: frozenset[str]) -> Candidate:
        key = (base.name, base.version, extras)
        if key not in self._extras:
            self._extras[key] = Candidate(base.name, base.version, extras, base.files,
                                          base.requires_python, base.yanked, base.yanked_reason)
        return self._extras[key]

    def requirer_of(self, candidate: Candidate) -> Candidate | None:
        """A candidate whose dependencies (read so far) ask for ``candidate``'s
        project at a version it is, in the order they were built; None when only
        the set's own requirements can have asked for it. For explaining a
        failure: O(candidates built x their dependencies)."""
        built = [c for c in self._built.values() if c is not None]
        for known in [*built, *self._extras.values()]:
            for dep in known.dependencies or ():
                if (known is not candidate and dep.name == candidate.name
                        and dep.specifier.contains(candidate.version, prereleases=True)):
                    return known
        return None

    def metadata(self, candidate: Candidate) -> CoreMetadata:
        """The core metadata of the candidate's best file. Raises MetadataError when
        it names another project or version than the file's name (an sdist's is
        checked by :class:`SdistMetadataSource`), as for metadata that does not read."""
        file = candidate.best
        if not file.is_wheel:
            return self.ctx.sdists.metadata(file)
        found = _parsed_metadata(self.ctx.client.metadata(file))
        refuse_mislabelled(found, file.filename, candidate.name, candidate.version,
                           read_from="METADATA")
        return found

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


def sdists_keep_failing(factory: CandidateFactory, name: NormalizedName, versions: Sequence[str],
                        last: SdistBuildError) -> ResolutionError:
    """The error that stops a lock whose builds of ``name``'s sdists (``versions``,
    newest first) failed one after another for the factory's target."""
    target = factory.ctx.target.name
    wheel = factory.newest_with_wheel(name)
    pin = (f"pin {name}=={wheel} (its newest release with a wheel for '{target}') or older"
           if wheel is not None else f"pin {name} to a release that builds here")
    no_wheel, newer_tag = _platform_advice(factory, name)
    return ResolutionError(
        f"gave up on {name} for target '{target}': the metadata builds of its sdists "
        f"{', '.join(versions)} failed one after another (the last: {last.message})",
        hint=f"{no_wheel}{pin} in mirror.yaml, {newer_tag}or lock wheels only (policy "
             "'sdists: deny'" + (", without 'prefer_sdists'" if factory.ctx.prefer_sdists
                                 else "") + ")")


def _platform_advice(factory: CandidateFactory, name: NormalizedName) -> tuple[str, str]:
    """What the target's platform tags have to do with it: (``NAME has no wheel for
    macosx arm64 in any release: `` when none of ``name``'s wheels is of the target's
    platform families, ``give the target a newer platform tag ... (TAGS), `` when some
    are of a newer one); each empty otherwise. Reads ``name``'s whole page again (the
    lock's keeps only the targets' tags); no advice when that fails."""
    from ..platform_tags import newer_platforms, platform_family

    try:
        page = factory.ctx.client.unfiltered_project(name)
    except LockmirrorError:
        return "", ""
    platforms = factory.ctx.target.platforms
    newer = newer_platforms(platforms, {tag.platform for file in page.files
                                        if file.is_wheel for tag in file.tags})
    if newer is None:
        families = sorted({platform_family(tag)[0] for tag in platforms})
        return f"{name} has no wheel for {' or '.join(families)} in any release: ", ""
    if newer:
        return "", f"give the target a newer platform tag that {name}'s wheels name " \
            f"({', '.join(newer)}), "
    return "", ""
