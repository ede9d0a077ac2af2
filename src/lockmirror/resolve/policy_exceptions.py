"""Policy exceptions: which releases and rules ``policy.exceptions`` (and a set's
own ``sets.<set>.policy.exceptions``) waive, where each is written in
``mirror.yaml``, and which have expired or match nothing locked.

An exception has ``package``, ``version`` (a version, a specifier such as
``<2``, or ``*``), ``reason`` (required), ``expires`` (a date: from that day
on it no longer applies, and its presence is an error that names it) and
``rules`` (rule names, or advisory ids/aliases such as ``PYSEC-2023-212``;
empty means every rule). :class:`~lockmirror.resolve.policy.PolicyEngine`
applies them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from ..config_schema import MirrorConfig, PolicyException
from ..errors import PolicyError

if TYPE_CHECKING:
    from ..net.osv import Advisory


@dataclass(frozen=True)
class ExceptionUse:
    """An exception that waived a rule for one release."""

    label: str  # "policy.exceptions[2]" or "sets.core.policy.exceptions[0]"
    exception: PolicyException
    release: str  # "foo==1.0"
    rule: str  # the waived rule
    detail: str = ""  # the advisory id when the rule is "vulnerabilities"

    def as_record(self) -> dict[str, str]:
        """The lockfile's ``[tool.lockmirror] exceptions-used`` entry."""
        record = {
            "exception": self.label,
            "package": self.exception.package,
            "version": self.exception.version,
            "release": self.release,
            "rule": self.rule,
            "reason": self.exception.reason,
        }
        if self.detail:
            record["advisory"] = self.detail
        if self.exception.expires is not None:
            record["expires"] = self.exception.expires.isoformat()
        return record


@dataclass(frozen=True)
class ExceptionRule:
    label: str
    spec: PolicyException
    name: NormalizedName
    exact: Version | None
    specifier: SpecifierSet | None  # None with exact None: every version

    @classmethod
    def parse(cls, label: str, spec: PolicyException) -> ExceptionRule:
        text = spec.version.strip()
        exact: Version | None = None
        specifier: SpecifierSet | None = None
        if text != "*":
            try:
                exact = Version(text)
            except InvalidVersion:
                try:
                    specifier = SpecifierSet(text)
                except InvalidSpecifier:
                    raise PolicyError(f"'{text}' is neither a version nor a specifier",
                                      where=f"{label}.version") from None
        return cls(label, spec, canonicalize_name(spec.package), exact, specifier)

    @property
    def title(self) -> str:
        if self.exact is not None:
            return f"{self.spec.package}=={self.exact}"
        if self.specifier is not None:
            return f"{self.spec.package}{self.specifier}"
        return self.spec.package

    def expired(self, today: date) -> bool:
        return self.spec.expires is not None and today >= self.spec.expires

    @property
    def expired_message(self) -> str:
        return (f"exception for {self.title} expired on {self.spec.expires}; renew it with "
                "a new date and reason, or remove it")

    def matches(self, name: NormalizedName, version: Version) -> bool:
        if name != self.name:
            return False
        if self.exact is not None:
            return version == self.exact
        if self.specifier is not None:
            return self.specifier.contains(version, prereleases=True)
        return True

    def waives(self, rule: str, advisory: Advisory | None = None) -> bool:
        rules = self.spec.rules
        if not rules or rule in rules:
            return True
        if advisory is not None:
            return any(ident in rules for ident in advisory.ids)
        return False


def _label(path: tuple[str | int, ...]) -> str:
    """``policy.exceptions[0]``, as messages name an exception."""
    return ".".join(map(str, path[:-1])) + f"[{path[-1]}]"


def exception_labels(config: MirrorConfig, set_name: str) -> list[str]:
    """Where each exception of ``config.policy_for(set_name)`` is written."""
    return [_label(path) for path, _ in config.exceptions_written([set_name])]


def expired_exceptions(config: MirrorConfig, set_names: Iterable[str], today: date
                       ) -> list[tuple[tuple[str | int, ...], str]]:
    """(YAML path, message) of each exception the sets use that expired by ``today``:
    ``lock`` refuses to run with one, ``validate`` names its line."""
    parsed = [(path, ExceptionRule.parse(_label(path), spec))
              for path, spec in config.exceptions_written(set_names)]
    return [(path, e.expired_message) for path, e in parsed if e.expired(today)]


def unmatched_exceptions(config: MirrorConfig,
                         locked: Mapping[str, Iterable[tuple[str, Version]]]
                         ) -> list[str]:
    """A note for each exception that matches no release any of its sets locks
    (``locked``: set -> its releases), e.g. one a bump left behind: a waiver
    nobody needs is one a later lock could quietly start using."""
    matched: dict[str, bool] = {}
    titles: dict[str, str] = {}
    for set_name, releases in locked.items():
        if set_name not in config.sets:
            continue
        pins = [(canonicalize_name(name), version) for name, version in releases]
        for path, spec in config.exceptions_written([set_name]):
            exc = ExceptionRule.parse(_label(path), spec)
            titles[exc.label] = exc.title
            matched[exc.label] = matched.get(exc.label, False) or any(
                exc.matches(name, version) for name, version in pins)
    return [f"{label}: exception for {titles[label]} matches no locked release; remove it"
            for label, used in matched.items() if not used]
