"""The quarantine list: the committed file of releases kept out of the index.

A format module (no network, no index writing): ``audit --quarantine``
(:mod:`lockmirror.stages.quarantine`) writes it, the index stage reads it through
:func:`quarantined`, the one place that loads it. The format (sorted,
stable: the same list gives the same bytes)::

    {"format": "lockmirror-quarantine/1",
     "releases": [{"name": "urllib3", "version": "2.0.4",
                   "since": "2024-10-10T12:00:00Z",
                   "reasons": ["PYSEC-2023-192 (CVE-2023-43804, ...): ..."]}]}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from ..errors import LockmirrorError, NotFoundError
from ..fsutil import atomic_write
from ..timeutil import as_utc
from .bounded import load_json

FORMAT = "lockmirror-quarantine/1"
Key = tuple[NormalizedName, Version]


@dataclass(frozen=True)
class QuarantinedRelease:
    name: NormalizedName
    version: Version
    since: datetime
    reasons: tuple[str, ...]

    @property
    def key(self) -> Key:
        return (self.name, self.version)

    @property
    def release(self) -> str:
        return f"{self.name}=={self.version}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": str(self.version),
                "since": self.since.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "reasons": list(self.reasons)}


@dataclass(frozen=True)
class QuarantineList:
    """The committed list of quarantined releases."""

    releases: Mapping[Key, QuarantinedRelease] = field(default_factory=dict)

    @property
    def keys(self) -> frozenset[Key]:
        """What the index stage must leave out: (normalized name, version)."""
        return frozenset(self.releases)

    def dumps(self) -> str:
        ordered = [self.releases[k] for k in sorted(self.releases)]
        return json.dumps({"format": FORMAT, "releases": [r.to_json() for r in ordered]},
                          indent=1, sort_keys=True) + "\n"

    @classmethod
    def loads(cls, text: str, *, where: str) -> QuarantineList:
        data = load_json(text, where=where)  # InputError (exit 2) if malformed or too deep
        try:
            if data.get("format") != FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
            releases = {}
            for i, entry in enumerate(data["releases"]):
                try:
                    release = QuarantinedRelease(
                        name=canonicalize_name(str(entry["name"])),
                        version=Version(str(entry["version"])),
                        since=as_utc(datetime.fromisoformat(str(entry["since"]))),
                        reasons=tuple(str(r) for r in entry.get("reasons", ())))
                except (KeyError, TypeError, ValueError, InvalidVersion) as exc:
                    raise ValueError(f"releases[{i}]: {exc}") from None
                releases[release.key] = release
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LockmirrorError(f"not a lockmirror quarantine list: {exc}", where=where,
                                  hint="fix or delete the file; `lockmirror audit "
                                       "--quarantine` writes it") from None
        return cls(releases)

    @classmethod
    def read(cls, path: Path) -> QuarantineList:
        """The list at ``path``; an absent file is an empty list."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        return cls.loads(text, where=str(path))

    def write(self, path: Path) -> bool:
        return atomic_write(path, self.dumps(), only_if_changed=True)

    def with_added(self, found: Mapping[tuple[str, str], Iterable[str]], *,
                   now: datetime) -> tuple[QuarantineList, list[QuarantinedRelease]]:
        """This list plus ``found`` ((name, version) -> reasons); also returns
        the releases that were not quarantined before. An entry already
        present keeps its ``since`` and gains new reasons."""
        releases = dict(self.releases)
        added = []
        for (name, version), reasons in sorted(found.items()):
            key = (canonicalize_name(name), Version(version))
            old = releases.get(key)
            if old is None:
                entry = QuarantinedRelease(key[0], key[1], as_utc(now),
                                           tuple(sorted(set(reasons))))
                added.append(entry)
            else:
                entry = QuarantinedRelease(key[0], key[1], old.since,
                                           tuple(sorted(set(old.reasons) | set(reasons))))
            releases[key] = entry
        return QuarantineList(releases), added


def quarantined(path: Path | None, *, required: bool = False) -> frozenset[Key]:
    """The releases the list at ``path`` keeps out of the index (empty when
    ``path`` is None or absent). ``required``: an absent file is an error
    (a mistyped ``--quarantine`` must not publish what it keeps out).
    Raises LockmirrorError for a malformed list."""
    if path is None:
        return frozenset()
    if required and not path.exists():
        raise NotFoundError("the quarantine list does not exist", where=str(path))
    return QuarantineList.read(path).keys


def release_of(filename: str) -> Key | None:
    """(name, version) of a wheel or sdist filename (a ``.metadata`` file
    belongs to its wheel); None for anything else."""
    filename = filename.removesuffix(".metadata")
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
            return name, version
        if filename.endswith((".tar.gz", ".zip")):
            return parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return None


def removed_releases(before: Iterable[str], after: Iterable[str]) -> tuple[str, ...]:
    """"name version" of each release whose artifacts are among a tree's paths
    ``before`` and no longer among ``after``, sorted (what a new manifest takes out)."""
    return tuple(sorted(releases_of(before) - releases_of(after)))


def releases_of(paths: Iterable[str]) -> set[str]:
    """"name version" of the releases whose artifacts (``files/<project>/<file>``,
    not ``.metadata``) are among a tree's ``paths``; stray files are skipped."""
    found = set()
    for path in paths:
        parts = path.split("/")
        if len(parts) == 3 and parts[0] == "files" and not parts[2].endswith(".metadata"):
            release = release_of(parts[2])
            if release is not None:
                found.add(f"{parts[1]} {release[1]}")
    return found
