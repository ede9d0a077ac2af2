"""An advisory snapshot: what the advisory sources said about the mirror's releases, on one day.

The far side of an air gap cannot ask PyPI or OSV. A snapshot carries across
what the build side's sources (every kind: PyPI JSON, OSV API, offline OSV)
reported for each locked release, with the sources' labels and the time it
was taken, so ``lockmirror audit --offline --advisories advisories.json``
judges the imported lockfiles there with no network. It is a few kilobytes
where an OSV database is a hundred megabytes.

The format (sorted, stable: the same answers give the same bytes)::

    {"format": "lockmirror-advisories/1",
     "taken": "2024-10-10T12:00:00Z",
     "sources": ["osv-offline:..."],
     "releases": {"idna": ["3.6"], ...},          # every release asked about
     "unchecked": {"six": {"1.16.0": "why"}},    # of those, the ones no source could tell
     "advisories": [{"id": "PYSEC-2024-60", "aliases": ["CVE-2024-3651"],
                     "summary": "...", "fixed": ["3.7"], "url": "...",
                     "source": "osv-offline:...", "affects": {"idna": ["3.6"]}}]}

A snapshot answers only for the releases it lists (``releases``); asked
about another, :class:`SnapshotSource` raises rather than call it clean. A
release no source could tell about when it was taken (``unchecked``, e.g. an
index whose JSON API covers only the latest release) stays not checked on
the far side too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from ..errors import InputError, LockmirrorError
from ..formats.bounded import load_json
from ..net.osv import Advisory
from ..timeutil import as_utc
from .advisories import AdvisoryDB, AdvisorySource, OsvOfflineSource, Release

FORMAT = "lockmirror-advisories/1"
MAX_SNAPSHOT_BYTES = 64 << 20


@dataclass(frozen=True)
class SnapshotAdvisory:
    advisory: Advisory
    affects: Mapping[NormalizedName, tuple[Version, ...]]

    def to_json(self) -> dict[str, Any]:
        a = self.advisory
        return {"id": a.id, "aliases": list(a.aliases), "summary": a.summary,
                "fixed": list(a.fixed), "url": a.url, "source": a.source,
                "affects": {name: [str(v) for v in sorted(versions)]
                            for name, versions in sorted(self.affects.items())}}


@dataclass(frozen=True)
class Snapshot:
    taken: datetime
    sources: tuple[str, ...]
    releases: frozenset[Release]
    advisories: tuple[SnapshotAdvisory, ...]  # sorted by id
    unchecked: Mapping[Release, str] = field(default_factory=dict)  # release -> why
    # False for a snapshot written before ``unchecked`` was: it cannot say
    records_unchecked: bool = True

    def dumps(self) -> str:
        by_name: dict[str, list[Version]] = {}
        for name, version in self.releases:
            by_name.setdefault(name, []).append(version)
        data = {"format": FORMAT, "taken": self.taken.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "sources": list(self.sources),
                "releases": {n: [str(v) for v in sorted(vs)] for n, vs in sorted(by_name.items())},
                "advisories": [a.to_json() for a in self.advisories]}
        missed: dict[str, dict[str, str]] = {}
        for (name, version), why in sorted(self.unchecked.items()):
            missed.setdefault(name, {})[str(version)] = why
        data["unchecked"] = missed  # always: its absence marks an older snapshot
        return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def read(cls, path: Path) -> Snapshot:
        """Parse ``path``; InputError (exit 2) naming it when it is not a snapshot."""
        try:
            with path.open("rb") as handle:
                raw = handle.read(MAX_SNAPSHOT_BYTES + 1)
        except OSError as exc:
            raise LockmirrorError(f"cannot read advisory snapshot: {exc.strerror}",
                                  where=str(path)) from None
        return cls.loads(raw, where=str(path))

    @classmethod
    def loads(cls, raw: bytes, *, where: str) -> Snapshot:
        """Parse the bytes of a snapshot (e.g. a bundle member); InputError naming ``where``."""
        if len(raw) > MAX_SNAPSHOT_BYTES:
            raise InputError("advisory snapshot larger than 64 MiB", where=where)
        data = load_json(raw, where=where)
        try:
            return _parse(data)
        except (KeyError, TypeError, ValueError, InvalidVersion) as exc:
            raise InputError(f"not a {FORMAT} advisory snapshot ({exc.__class__.__name__}: "
                             f"{exc})", where=where) from None


def _parse(data: Any) -> Snapshot:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"format is not {FORMAT}")
    releases = frozenset((canonicalize_name(str(name)), Version(str(v)))
                         for name, versions in dict(data["releases"]).items()
                         for v in list(versions))
    advisories = []
    for item in list(data["advisories"]):
        advisory = Advisory(str(item["id"]), tuple(str(a) for a in item["aliases"]),
                            str(item["summary"]), tuple(str(f) for f in item["fixed"]),
                            str(item["url"]), str(item["source"]))
        affects = {canonicalize_name(str(n)): tuple(Version(str(v)) for v in list(vs))
                   for n, vs in dict(item["affects"]).items()}
        advisories.append(SnapshotAdvisory(advisory, affects))
    taken = as_utc(datetime.fromisoformat(str(data["taken"]).replace("Z", "+00:00")))
    unchecked = {(canonicalize_name(str(name)), Version(str(v))): str(why)
                 for name, versions in dict(data.get("unchecked", {})).items()
                 for v, why in dict(versions).items()}
    return Snapshot(taken, tuple(str(s) for s in data["sources"]), releases,
                    tuple(sorted(advisories, key=lambda a: a.advisory.id)), unchecked,
                    records_unchecked="unchecked" in data)


def take_snapshot(db: AdvisoryDB, releases: Iterable[Release], *, taken: datetime) -> Snapshot:
    """Ask ``db`` about every release (one prefetch) and keep its answers.

    Raises what the sources raise (NetworkError when one cannot be reached)."""
    wanted = sorted(set(releases))
    db.prefetch(wanted)
    found: dict[str, tuple[Advisory, dict[NormalizedName, set[Version]]]] = {}
    for name, version in wanted:
        for advisory in db.advisories_for(name, version):
            known, affects = found.setdefault(advisory.id, (advisory, {}))
            if known != advisory:  # one advisory met again: unite what it says
                fixed = tuple(dict.fromkeys((*known.fixed, *advisory.fixed)))
                aliases = tuple(sorted(set(known.aliases) | set(advisory.aliases)))
                found[advisory.id] = (Advisory(known.id, aliases, known.summary, fixed,
                                               known.url, known.source), affects)
            affects.setdefault(name, set()).add(version)
    advisories = tuple(SnapshotAdvisory(advisory, {n: tuple(sorted(vs))
                                                   for n, vs in affects.items()})
                       for _, (advisory, affects) in sorted(found.items()))
    unchecked = {(name, version): why for name, version in wanted
                 if (why := db.unchecked(name, version)) is not None}
    return Snapshot(as_utc(taken), tuple(db.labels), frozenset(wanted), advisories, unchecked)


class SnapshotSource:
    """An :class:`~lockmirror.resolve.advisories.AdvisorySource` answering from a snapshot."""

    def __init__(self, snapshot: Snapshot, *, where: str) -> None:
        self.snapshot = snapshot
        self.where = where
        self.label = f"snapshot:{where} (taken {snapshot.taken:%Y-%m-%d %H:%M} UTC)"

    def prefetch(self, releases: Iterable[Release]) -> None:
        pass

    def advisories_for(self, name: NormalizedName, version: Version) -> list[Advisory]:
        if (name, version) not in self.snapshot.releases:
            raise LockmirrorError(f"the advisory snapshot does not cover {name}=={version}",
                                  where=self.where,
                                  hint="import a refresh bundle made after these lockfiles "
                                       "(a delta carries no snapshot), or the next full bundle")
        return [a.advisory for a in self.snapshot.advisories
                if version in a.affects.get(name, ())]

    def unchecked(self, name: NormalizedName, version: Version) -> str | None:
        """Why the snapshot's sources could not tell about the release when it was
        taken, or None (a release it does not cover is an error in advisories_for)."""
        why = self.snapshot.unchecked.get((name, version))
        return None if why is None else f"not checked when the snapshot was taken: {why}"


def offline_source(path: Path) -> AdvisorySource:
    """An advisory snapshot (a ``.json`` file in this format), else an OSV database
    (a directory or ``.zip`` of OSV records)."""
    if path.is_file() and path.suffix == ".json":
        return SnapshotSource(Snapshot.read(path), where=str(path))
    return OsvOfflineSource(path)
