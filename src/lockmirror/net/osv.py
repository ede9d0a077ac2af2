"""OSV advisories as data: the record model and which releases a record affects.

A release is affected when it is listed in ``affected[].versions`` or falls in an
``ECOSYSTEM`` range (``introduced`` / ``fixed`` / ``last_affected`` / ``limit``
events, compared as PEP 440 versions); withdrawn records affect nothing. Only
``PyPI`` entries count. Where records come from: :mod:`lockmirror.resolve.advisories`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from ..errors import LockmirrorError

# --------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Advisory:
    """One advisory as it applies to one project."""

    id: str
    aliases: tuple[str, ...]
    summary: str
    fixed: tuple[str, ...]  # versions that fix it (all ranges), as written
    url: str
    source: str  # which configured source reported it

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)

    def fixed_after(self, version: Version) -> list[str]:
        """The fixed versions above ``version``, lowest first: the upgrades."""
        above = []
        for text in self.fixed:
            parsed = _version(text)
            if parsed is not None and parsed > version:
                above.append((parsed, text))
        return [text for _, text in sorted(above)]

    def describe(self, version: Version) -> str:
        fixes = self.fixed_after(version)
        aliases = f" ({', '.join(self.aliases)})" if self.aliases else ""
        fix = f"; fixed in {', '.join(fixes)}" if fixes else "; no fixed version"
        return f"{self.id}{aliases}: {self.summary}{fix}"


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def short_summary(record: Mapping[str, Any]) -> str:
    """The record's summary (else details) on one line, at most 120 characters."""
    text = str(record.get("summary") or record.get("details") or "").strip()
    first = " ".join(text.split())
    if len(first) > 120:
        first = first[:117].rstrip() + "..."
    return first or "(no summary)"


# --------------------------------------------------------------------------
# OSV record evaluation
# --------------------------------------------------------------------------


def range_affects(events: Sequence[Mapping[str, Any]], version: Version) -> bool:
    """OSV ECOSYSTEM range evaluation (the schema's algorithm).

    Events are sorted by version ("0" lowest); walking them, ``introduced``
    at or below ``version`` starts an affected span, ``fixed`` at or below it
    ends one, ``last_affected`` strictly below it ends one, and ``limit`` at
    or below it ends one. An ``introduced`` whose version does not parse is
    read as "0" (a malformed record must not hide an advisory); other events
    that do not parse are skipped, which only widens the span (the ``versions``
    list still applies).
    """
    parsed: list[tuple[Version, int, str]] = []
    for event in events:
        for kind in ("introduced", "fixed", "last_affected", "limit"):
            if kind in event:
                text = str(event[kind])
                point = Version("0") if text == "0" else _version(text)
                if point is None and kind == "introduced":
                    point = Version("0")
                if point is not None:
                    parsed.append((point, 0 if kind == "introduced" else 1, kind))
    affected = False
    for point, _, kind in sorted(parsed, key=lambda e: (e[0], e[1])):
        if kind == "introduced":
            if version >= point:
                affected = True
        elif kind == "last_affected":
            if version > point:
                affected = False
        elif version >= point:  # fixed, limit
            affected = False
    return affected


@dataclass(frozen=True)
class AffectedProject:
    """What one OSV record says about one PyPI project."""

    versions: frozenset[Version]  # listed explicitly
    ranges: tuple[tuple[Mapping[str, Any], ...], ...]  # ECOSYSTEM ranges' events
    fixed: tuple[str, ...]  # every `fixed` event, as written

    def affects(self, version: Version) -> bool:
        return version in self.versions or any(range_affects(r, version) for r in self.ranges)


@dataclass(frozen=True)
class OsvRecord:
    """One OSV record, reduced to what evaluation needs, per project."""

    id: str
    aliases: tuple[str, ...]
    summary: str
    url: str
    withdrawn: bool
    affected: Mapping[NormalizedName, AffectedProject]

    @classmethod
    def from_data(cls, data: Any, *, where: str) -> OsvRecord:
        """Parse a decoded OSV document; raise LockmirrorError naming ``where``."""
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise LockmirrorError("not an OSV record (no 'id')", where=where)
        affected: dict[NormalizedName, tuple[set[Version], list[Any], list[str]]] = {}
        for entry in data.get("affected") or ():
            package = entry.get("package") or {}
            ecosystem = str(package.get("ecosystem", ""))
            if ecosystem.split(":", 1)[0] != "PyPI" or not package.get("name"):
                continue
            name = canonicalize_name(str(package["name"]))
            versions, ranges, fixed = affected.setdefault(name, (set(), [], []))
            for text in entry.get("versions") or ():
                parsed = _version(str(text))
                if parsed is not None:
                    versions.add(parsed)
            for rng in entry.get("ranges") or ():
                if rng.get("type") != "ECOSYSTEM":
                    continue  # GIT ranges name commits, SEMVER is not PyPI's
                events = tuple(e for e in rng.get("events") or () if isinstance(e, dict))
                ranges.append(events)
                fixed += [str(e["fixed"]) for e in events if "fixed" in e]
        references = data.get("references") or ()
        url = next((str(r.get("url")) for r in references if r.get("type") == "ADVISORY"),
                   next((str(r.get("url")) for r in references if r.get("url")), ""))
        return cls(
            id=data["id"],
            aliases=tuple(sorted(str(a) for a in data.get("aliases") or ())),
            summary=short_summary(data),
            url=url,
            withdrawn=bool(data.get("withdrawn")),
            affected={name: AffectedProject(frozenset(v), tuple(r), tuple(dict.fromkeys(f)))
                      for name, (v, r, f) in affected.items()},
        )

    def affects(self, name: NormalizedName, version: Version) -> bool:
        project = self.affected.get(name)
        return not self.withdrawn and project is not None and project.affects(version)

    def advisory(self, name: NormalizedName, source: str) -> Advisory:
        fixed = self.affected[name].fixed if name in self.affected else ()
        return Advisory(self.id, self.aliases, self.summary, fixed, self.url, source)
