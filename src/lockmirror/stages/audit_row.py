"""One finding of the audit on one release (:mod:`lockmirror.stages.audit` makes them;
:mod:`~lockmirror.stages.audit_recorded` and :mod:`~lockmirror.stages.audit_render` read them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from packaging.version import Version

# quarantined: a finding on a release the mirror no longer serves and no lock pins
# (only an earlier lock revision retention keeps names it): handled, failing nothing
RowLevel = Literal["deny", "warn", "quarantined", "waived"]
LEVEL_ORDER = {"deny": 0, "warn": 1, "quarantined": 2, "waived": 3}


@dataclass(frozen=True)
class AuditRow:
    """One finding on one release, for every set where it holds."""

    package: str  # normalized name
    version: str
    rule: str
    level: RowLevel
    message: str
    sets: tuple[str, ...]
    advisory: str = ""
    aliases: tuple[str, ...] = ()
    fixed_in: tuple[str, ...] = ()
    url: str = ""
    exception: str = ""  # the label of the exception that waived it
    source: str = ""
    # a row about several releases (vulnerabilities not checked): each "name==version"
    releases: tuple[str, ...] = ()

    @property
    def release(self) -> str:
        """``name==version``; ``-`` for a row about no one release."""
        return f"{self.package}=={self.version}" if self.version else self.package or "-"

    def sort_key(self) -> tuple[Any, ...]:
        return (LEVEL_ORDER[self.level], self.package,
                Version(self.version) if self.version else Version("0"), self.rule,
                self.advisory, self.message)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "package": self.package, "version": self.version, "rule": self.rule,
            "level": self.level, "message": self.message, "sets": list(self.sets),
        }
        if self.advisory:
            data.update(advisory=self.advisory, aliases=list(self.aliases),
                        fixed_in=list(self.fixed_in), url=self.url, source=self.source)
        if self.exception:
            data["exception"] = self.exception
        if self.releases:
            data["releases"] = list(self.releases)
        return data
