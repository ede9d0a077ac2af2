"""The license rule (``policy.licenses``) applied while locking.

A release's license is in its core metadata, which the resolver reads only for
the candidates it tries (to learn their dependencies), never for every version
on a page. So the rule is applied after each resolution, on what it chose: a
chosen release the rule refuses (and no exception waives) is excluded and the
set resolved again, which makes the resolver take the next allowed version of
an unpinned dependency. A refused release that a requirement pins with ``==``
leaves the resolver nothing, and it fails as any pin excluded by policy does:
"excluded by policy: foo==1.0: license GPL-3.0-only is denied", placed at the
mirror.yaml line by the lock stage. Metadata comes from the index client
(memoized: the resolver has just read it) or the sdist metadata source; nothing
else is fetched.

One :class:`LicenseGate` per set, shared by its targets' resolutions (thread
safe); the findings on the releases finally chosen give the lockfile its
exceptions-used entries and the lock its warnings.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from packaging.version import Version

if TYPE_CHECKING:
    from ..formats.licenses import DeclaredLicense
    from ..resolve.candidates import Candidate, CandidateFilter, Refusal, TargetContext
    from ..resolve.policy import Finding, PolicyEngine
    from ..resolve.resolver import Resolution

__all__ = ["LicenseGate"]


class LicenseGate:
    """Excludes the releases whose license ``engine`` refuses, for one set."""

    def __init__(self, engine: PolicyEngine) -> None:
        self.engine = engine
        self._refused: dict[tuple[str, Version], Refusal] = {}
        self._findings: dict[tuple[str, Version], Finding | None] = {}
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self.engine.policy.licenses is not None

    def wrap(self, inner: CandidateFilter) -> CandidateFilter:
        """``inner``, and a release found refused earlier is refused again."""

        def allowed(candidate: Candidate, pinned: bool) -> Refusal | None:
            refusal = self._refused.get((candidate.name, candidate.version))
            return refusal if refusal is not None else inner(candidate, pinned)

        return allowed

    def resolve(self, requirements: Sequence[str], ctx: TargetContext, *,
                root_label: str) -> Resolution:
        """:func:`~lockmirror.resolve.resolver.resolve_target`, again without
        each chosen release the license rule refuses, until none is. Raises
        what resolve_target raises (a refused pin: ResolutionError naming the
        license)."""
        from ..resolve.resolver import resolve_target

        excluded: set[tuple[str, Version]] = set()  # each round excludes one more at least
        while True:
            resolution = resolve_target(requirements, ctx, root_label=root_label)
            if not self.active:
                return resolution
            refused = {(c.name, c.version) for c in resolution.candidates.values()
                       if self._refuse(c, ctx)}
            if refused <= excluded:
                return resolution
            excluded |= refused

    def finding(self, name: str, version: Version) -> Finding | None:
        """The license finding on a release a resolution chose (None: it passes,
        or no resolution chose it)."""
        return self._findings.get((name, version))

    def _refuse(self, candidate: Candidate, ctx: TargetContext) -> bool:
        """Judge ``candidate`` (once per release); True when it is refused now."""
        from ..resolve.candidates import Refusal

        key = (candidate.name, candidate.version)
        with self._lock:
            known = key in self._findings
        if not known:
            finding = self.engine.license_finding(candidate.name, candidate.version,
                                                  _declared(candidate, ctx))
            with self._lock:
                self._findings[key] = finding
                if finding is not None and finding.blocking:
                    self._refused[key] = Refusal(finding.message, (finding.rule,))
        return key in self._refused


def _declared(candidate: Candidate, ctx: TargetContext) -> DeclaredLicense:
    """The license the candidate's core metadata declares (read as the resolver reads it)."""
    from ..formats.licenses import declared_license
    from ..resolve.candidates import CandidateFactory

    return declared_license(CandidateFactory(ctx).metadata(candidate))
