"""The mirror's policy, applied to one release at a time.

:class:`PolicyEngine` answers one question for the lock stage (and for
audit): may this release of this project be in the mirror, now? It is pure:
the time is a parameter (``now``), advisories come from a handed-in
:class:`~lockmirror.resolve.advisories.AdvisoryDB`, and nothing reads the clock or
the network except through those.

Rules (the keys of ``policy:`` in ``mirror.yaml``):

``min_age_days``
    A release whose earliest file was uploaded less than N days before
    ``now`` is too new: never chosen for an unpinned requirement, and an
    error for an exact pin (like uv's ``--exclude-newer``, a release that
    may still be pulled as malicious stays out). A release whose index
    gives no upload time counts as too new (fail closed).
``yanked``
    Yanked releases are never chosen for unpinned requirements (PEP 592).
    ``deny``: an exact pin to one is an error; ``warn``: allowed, with a
    finding.
``vulnerabilities``
    A release affected by a known advisory: ``deny`` excludes it (error for
    a pin), ``warn`` allows it with a finding, ``ignore`` skips the lookup.
``sdists``
    ``deny``: sdists are not locked (wheels only), see
    :attr:`Decision.sdists_allowed`.

An exception (``policy.exceptions`` or ``sets.<set>.policy.exceptions``)
waives rules for matching releases: ``package``, ``version`` (a version, a
specifier such as ``<2``, or ``*``), ``reason`` (required), ``expires`` (a
date: from that day on it no longer applies, and its presence is an error
that names it) and ``rules`` (rule names above, or advisory ids/aliases such
as ``PYSEC-2023-212``; empty means every rule).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from ..config import WAIVABLE_RULES
from ..config_schema import MirrorConfig, PolicyConfig
from ..errors import PolicyError
from ..formats.licenses import DeclaredLicense, license_refusal
from ..timeutil import as_utc
from .policy_exceptions import ExceptionRule, ExceptionUse, exception_labels

if TYPE_CHECKING:
    from ..net.osv import Advisory
    from .advisories import AdvisoryDB

Rule = Literal["min_age_days", "yanked", "vulnerabilities", "sdists", "licenses", "exceptions"]
Level = Literal["deny", "warn"]


# --------------------------------------------------------------------------
# Findings and decisions
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One rule's verdict on one release (deny or warn), possibly waived."""

    rule: Rule
    level: Level
    package: NormalizedName
    version: Version | None
    message: str
    advisory: Advisory | None = None
    waived_by: ExceptionUse | None = None

    @property
    def blocking(self) -> bool:
        """A deny that no exception waived."""
        return self.level == "deny" and self.waived_by is None

    @property
    def release(self) -> str:
        return f"{self.package}=={self.version}" if self.version is not None else self.package

    def as_record(self) -> dict[str, str]:
        """The lockfile's ``[tool.lockmirror] policy-findings`` entry (a warning the lock
        allowed; the SBOM's ``lockmirror:policy-finding``)."""
        record = {"release": self.release, "rule": self.rule, "message": self.message}
        if self.advisory is not None:
            record["advisory"] = self.advisory.id
        return record


@dataclass(frozen=True)
class Decision:
    """What the policy says about one release."""

    name: NormalizedName
    version: Version
    findings: tuple[Finding, ...] = ()
    sdists_allowed: bool = True

    @property
    def allowed(self) -> bool:
        return not any(f.blocking for f in self.findings)

    @property
    def reasons(self) -> tuple[str, ...]:
        """One line per unwaived deny: why the release is excluded."""
        return tuple(f.message for f in self.findings if f.blocking)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.level == "warn" and f.waived_by is None)

    @property
    def exceptions_used(self) -> tuple[ExceptionUse, ...]:
        return tuple(f.waived_by for f in self.findings if f.waived_by is not None)

    def error(self, *, where: str | None = None) -> PolicyError:
        """The error for an exact pin to a release the policy excludes."""
        return PolicyError(f"{self.name}=={self.version} is pinned but "
                           + "; ".join(self.reasons), where=where,
                           hint="pin another version, or add a policy exception with a reason")


# --------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------


class PolicyEngine:
    """Apply one set's policy at one moment.

    ``now`` is the lock (or audit) time; ``advisories`` may be None when the
    policy ignores vulnerabilities or no source is configured. Exceptions
    that expired by ``now`` never waive anything; unless ``allow_expired``,
    their mere presence raises :class:`PolicyError` here, naming each one
    (the lock stage wants that; audit reports them as findings instead).

    Decisions are memoized per (name, version, pinned); the cost of a
    decision is one advisory lookup (see the source's cost).
    """

    def __init__(self, policy: PolicyConfig, *, now: datetime,
                 advisories: AdvisoryDB | None = None,
                 exception_labels: Sequence[str] | None = None,
                 where: str = "mirror.yaml", allow_expired: bool = False) -> None:
        self.policy = policy
        self.now = as_utc(now)
        self.advisories = advisories
        self.where = where
        labels = list(exception_labels or ())
        labels += [f"policy.exceptions[{i}]" for i in range(len(labels), len(policy.exceptions))]
        self._exceptions = [ExceptionRule.parse(label, spec)
                            for label, spec in zip(labels, policy.exceptions, strict=False)]
        today = self.now.date()
        self._expired = [e for e in self._exceptions if e.expired(today)]
        self._active = [e for e in self._exceptions if not e.expired(today)]
        self._memo: dict[tuple[object, ...], Decision] = {}
        if self._expired and not allow_expired:
            raise PolicyError("\n".join(self.expired_messages()))

    @classmethod
    def for_set(cls, config: MirrorConfig, set_name: str, *, now: datetime,
                advisories: AdvisoryDB | None = None, where: str = "mirror.yaml",
                allow_expired: bool = False) -> PolicyEngine:
        """The engine for one set: global policy, the set's overrides, labels."""
        return cls(config.policy_for(set_name), now=now, advisories=advisories,
                   exception_labels=exception_labels(config, set_name), where=where,
                   allow_expired=allow_expired)

    # -- exceptions --------------------------------------------------------

    def expired_messages(self) -> list[str]:
        """``mirror.yaml: policy.exceptions[2]: exception for foo==1.0 expired on ...``"""
        return [f"{self.where}: {e.label}: {e.expired_message}" for e in self._expired]

    def expired_findings(self, locked: Iterable[tuple[NormalizedName, Version]] | None = None
                         ) -> list[Finding]:
        """A deny finding per expired exception; given ``locked`` releases, only for
        those that match one of them."""
        if not self._expired:
            return []
        releases = None if locked is None else list(locked)
        return [Finding("exceptions", "deny", e.name, e.exact, message)
                for e, message in zip(self._expired, self.expired_messages(), strict=True)
                if releases is None or any(e.matches(*release) for release in releases)]

    def not_checked(self, releases: Sequence[tuple[str, Version]]) -> tuple[str, ...]:
        """Warnings naming the ``releases`` (looked up already) no advisory source
        could tell about: a source answering only for the latest release, or none
        configured under ``vulnerabilities: deny``; never passed as checked in
        silence. Nothing when vulnerabilities are ignored, or merely warned about
        with no source configured (nobody asked)."""
        from .advisories import not_checked_notes

        if self.policy.vulnerabilities == "ignore" or (
                self.advisories is None and self.policy.vulnerabilities != "deny"):
            return ()
        return not_checked_notes(self.advisories, releases)

    def _waiver(self, name: NormalizedName, version: Version, rule: str,
                advisory: Advisory | None = None) -> ExceptionUse | None:
        for exc in self._active:
            if exc.matches(name, version) and exc.waives(rule, advisory):
                return ExceptionUse(exc.label, exc.spec, f"{name}=={version}", rule,
                                    advisory.id if advisory is not None else "")
        return None

    def _finding(self, rule: Rule, level: Level, name: NormalizedName, version: Version,
                 message: str, advisory: Advisory | None = None) -> Finding:
        waiver = self._waiver(name, version, rule, advisory)
        return Finding(rule, level, name, version, message, advisory, waiver)

    # -- rules -------------------------------------------------------------

    def min_age_finding(self, name: NormalizedName, version: Version,
                        upload_times: Iterable[datetime | None]) -> Finding | None:
        """Too new for ``min_age_days`` (deny), or None."""
        days = self.policy.min_age_days
        if not days:
            return None
        known = [as_utc(t) for t in upload_times if t is not None]
        if not known:
            return self._finding(
                "min_age_days", "deny", name, version,
                f"{name}=={version} has no upload time on its index, so its age "
                f"(min_age_days: {days}) cannot be checked")
        first = min(known)
        if first > self.now - timedelta(days=days):
            age = self.now - first
            return self._finding(
                "min_age_days", "deny", name, version,
                f"{name}=={version} was uploaded {first:%Y-%m-%d %H:%M} UTC, "
                f"{_days(age)} before {self.now:%Y-%m-%d %H:%M} UTC "
                f"(min_age_days: {days})")
        return None

    def yanked_finding(self, name: NormalizedName, version: Version,
                       yanked: str | bool | None, *, pinned: bool) -> Finding | None:
        """Yanked (``yanked`` is the reason, ``""``/True without one)."""
        if yanked is None or yanked is False:
            return None
        reason = yanked if isinstance(yanked, str) and yanked else "no reason given"
        level: Level = "warn" if pinned and self.policy.yanked == "warn" else "deny"
        note = "" if pinned else " (yanked releases are only used when pinned with ==)"
        return self._finding("yanked", level, name, version,
                             f"{name}=={version} is yanked: {reason}{note}")

    def vulnerability_findings(self, name: NormalizedName, version: Version) -> list[Finding]:
        """One finding per advisory affecting the release (none if ignored)."""
        if self.policy.vulnerabilities == "ignore" or self.advisories is None:
            return []
        level: Level = "deny" if self.policy.vulnerabilities == "deny" else "warn"
        findings = []
        for advisory in self.advisories.advisories_for(name, version):
            findings.append(self._finding("vulnerabilities", level, name, version,
                                          advisory.describe(version), advisory))
        return findings

    def sdists_allowed(self, name: NormalizedName, version: Version) -> bool:
        return (self.policy.sdists == "allow"
                or self._waiver(name, version, "sdists") is not None)

    def sdist_finding(self, name: NormalizedName, version: Version) -> Finding | None:
        """For a release that *is* locked with an sdist (audit)."""
        if self.policy.sdists == "allow":
            return None
        return self._finding("sdists", "deny", name, version,
                             f"{name}=={version} is locked as an sdist (sdists: deny)")

    def license_finding(self, name: NormalizedName, version: Version,
                        declared: DeclaredLicense) -> Finding | None:
        """The license rule (``policy.licenses``) on a release's declared license:
        deny when the allow/deny lists refuse it, the ``unknown`` level when it
        declares none or none in SPDX terms; None when the policy has no
        license rule or the license passes."""
        rule = self.policy.licenses
        if rule is None:
            return None
        if declared.spdx is None:
            if rule.unknown == "allow":
                return None
            said = f"'{declared.text}', not an SPDX expression" if declared.text else "none"
            return self._finding("licenses", rule.unknown, name, version,
                                 f"{name}=={version} declares no SPDX license ({said}; "
                                 f"licenses.unknown: {rule.unknown})")
        refusal = license_refusal(declared, allow=rule.allow, deny=rule.deny)
        if refusal is None:
            return None
        return self._finding("licenses", "deny", name, version, f"{name}=={version}: {refusal}")

    # -- the question the resolver asks --------------------------------------

    def candidate_allowed(self, name: str, version: Version | str,
                          upload_times: Iterable[datetime | None] | Mapping[str, datetime | None],
                          yanked: str | bool | None = None, *, pinned: bool = False) -> Decision:
        """May the lock choose this release?

        ``upload_times``: the upload time of each of the release's files (a
        mapping filename -> time is accepted too); the earliest counts.
        ``yanked``: None when not yanked, else the reason (``""`` or True
        without one). ``pinned``: the requirement is an exact ``==`` pin.

        For an unpinned requirement a refused candidate is simply skipped;
        for a pin, raise ``decision.error()``. Cost: one advisory lookup,
        memoized.
        """
        key_name = canonicalize_name(name)
        key_version = version if isinstance(version, Version) else Version(version)
        times = list(upload_times.values() if isinstance(upload_times, Mapping) else upload_times)
        # the key holds every input: targets resolving in parallel see different files
        earliest = min((t for t in times if t is not None), default=None)
        memo_key = (key_name, key_version, pinned, earliest, None in times, yanked)
        if memo_key in self._memo:
            return self._memo[memo_key]
        findings: list[Finding] = []
        age = self.min_age_finding(key_name, key_version, times)
        if age is not None:
            findings.append(age)
        yank = self.yanked_finding(key_name, key_version, yanked, pinned=pinned)
        if yank is not None:
            findings.append(yank)
        findings += self.vulnerability_findings(key_name, key_version)
        decision = Decision(key_name, key_version, tuple(findings),
                            self.sdists_allowed(key_name, key_version))
        self._memo[memo_key] = decision
        return decision

    def sdist_waiver(self, name: str, version: Version) -> ExceptionUse | None:
        """The exception that lets an sdist of this release be locked under
        ``sdists: deny`` (for the lockfile's exceptions-used), or None."""
        if self.policy.sdists == "allow":
            return None
        return self._waiver(canonicalize_name(name), version, "sdists")


def policy_records(uses: Iterable[ExceptionUse | Finding]) -> tuple[dict[str, str], ...]:
    """Sorted, de-duplicated lockfile records: ``exceptions-used`` of exception
    uses, ``policy-findings`` of findings."""
    records = {tuple(sorted(use.as_record().items())): use.as_record() for use in uses}
    return tuple(records[key] for key in sorted(records))


def _days(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    if days < 1:
        hours = max(delta.total_seconds() / 3600, 0)
        return f"{hours:.0f} hours"
    return f"{days:.1f} days"


__all__ = [
    "WAIVABLE_RULES", "Decision", "ExceptionUse", "Finding", "PolicyEngine",
    "exception_labels", "policy_records",
]
