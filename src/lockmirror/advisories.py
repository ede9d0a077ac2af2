"""Known vulnerabilities: where they come from and which releases they hit.

Three kinds of source, listed by the user under ``policy.advisory_sources``:

``pypi-json``
    The index's JSON API, ``<url>/<name>/<version>/json`` (default
    ``https://pypi.org/pypi/``): its ``vulnerabilities`` list (PyPI takes it
    from OSV) names the advisories affecting that release. One request per
    release.
``osv-api``
    The OSV API (default ``https://api.osv.dev/``): ``POST /v1/querybatch``
    for many releases in one request (up to 1000), then
    ``GET /v1/vulns/<id>`` once per advisory for its details.
``osv-offline``
    A directory or a ``.zip`` of OSV records, YAML or JSON, as OSV
    (``PyPI/all.zip``) and the PyPA advisory database (``vulns/<project>/
    PYSEC-*.yaml``) publish them. No network: this is what audits on the far
    side of an air gap.

OSV records are evaluated here, not trusted to a server: a release is
affected when it is listed in ``affected[].versions`` or falls in an
``ECOSYSTEM`` range (``introduced`` / ``fixed`` / ``last_affected`` /
``limit`` events, compared as PEP 440 versions). Withdrawn records are
skipped.
"""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import requests
import yaml
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from .bounded import load_json
from .config import AdvisorySourceConfig
from .errors import ConfigError, LockmirrorError, NetworkError
from .http import check_response, get, make_session, network_error, redact_url

DEFAULT_PYPI_JSON_URL = "https://pypi.org/pypi/"
DEFAULT_OSV_API_URL = "https://api.osv.dev/"
OSV_BATCH_LIMIT = 1000  # queries per /v1/querybatch request (the API's limit)
TIMEOUT = (10.0, 60.0)  # (connect, read) when the session has no default

Release = tuple[NormalizedName, Version]

try:  # libyaml parses the large `versions` lists several times faster
    _YamlLoader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _YamlLoader = yaml.SafeLoader


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


def _summary(record: Mapping[str, Any]) -> str:
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
    or below it ends one. Events whose version does not parse are skipped
    (the ``versions`` list still applies).
    """
    parsed: list[tuple[Version, int, str]] = []
    for event in events:
        for kind in ("introduced", "fixed", "last_affected", "limit"):
            if kind in event:
                text = str(event[kind])
                point = Version("0") if text == "0" else _version(text)
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
            summary=_summary(data),
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


# --------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------


class AdvisorySource(Protocol):
    """Where advisories come from. ``prefetch`` lets a source batch."""

    label: str

    def prefetch(self, releases: Iterable[Release]) -> None: ...

    def advisories_for(self, name: NormalizedName, version: Version) -> list[Advisory]: ...


class OsvOfflineSource:
    """OSV records in a directory tree or a zip (YAML or JSON).

    Cost: the first lookup reads and parses every record once (the 87-record
    PyPA subset in tests takes ~0.1 s with libyaml); later lookups are
    dictionary reads plus range evaluation.
    """

    SUFFIXES = (".yaml", ".yml", ".json")

    def __init__(self, path: Path, *, label: str | None = None) -> None:
        self.path = path
        self.label = label or f"osv-offline:{path}"
        self._by_project: dict[NormalizedName, list[OsvRecord]] | None = None

    def _load(self) -> dict[NormalizedName, list[OsvRecord]]:
        if self._by_project is None:
            by_project: dict[NormalizedName, list[OsvRecord]] = {}
            for where, raw in self._documents():
                record = OsvRecord.from_data(_decode(raw, where), where=where)
                for name in record.affected:
                    by_project.setdefault(name, []).append(record)
            for records in by_project.values():
                records.sort(key=lambda r: r.id)
            self._by_project = by_project
        return self._by_project

    def _documents(self) -> Iterable[tuple[str, bytes]]:
        if self.path.is_dir():
            for file in sorted(self.path.rglob("*")):
                if file.suffix in self.SUFFIXES and file.is_file():
                    yield str(file), file.read_bytes()
        elif self.path.is_file() and zipfile.is_zipfile(self.path):
            with zipfile.ZipFile(self.path) as archive:
                for member in sorted(archive.namelist()):
                    if PurePosixPath(member).suffix in self.SUFFIXES:
                        yield f"{self.path}!{member}", archive.read(member)
        else:
            raise LockmirrorError("OSV database not found: not a directory or a zip file",
                                  where=str(self.path),
                                  hint="point policy.advisory_sources[].path at a directory "
                                       "or .zip of OSV records")

    def prefetch(self, releases: Iterable[Release]) -> None:
        self._load()

    def advisories_for(self, name: NormalizedName, version: Version) -> list[Advisory]:
        return [r.advisory(name, self.label) for r in self._load().get(name, ())
                if r.affects(name, version)]

    @property
    def record_count(self) -> int:
        return len({r.id for records in self._load().values() for r in records})


def _decode(raw: bytes, where: str) -> Any:
    try:
        if where.endswith(".json"):
            return load_json(raw, where=where, error=LockmirrorError)
        return yaml.load(io.BytesIO(raw), Loader=_YamlLoader)
    except (ValueError, RecursionError, yaml.YAMLError) as exc:
        raise LockmirrorError(f"cannot parse OSV record: {str(exc).splitlines()[0]}",
                              where=where) from None


class PypiJsonSource:
    """``<url>/<name>/<version>/json``'s ``vulnerabilities``: one GET per release."""

    def __init__(self, url: str, session: requests.Session, *, label: str | None = None) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.session = session
        self.label = label or f"pypi-json:{self.url}"
        self._cache: dict[Release, list[Advisory]] = {}

    def prefetch(self, releases: Iterable[Release]) -> None:
        for name, version in releases:
            self.advisories_for(name, version)

    def advisories_for(self, name: NormalizedName, version: Version) -> list[Advisory]:
        key = (name, version)
        if key not in self._cache:
            url = f"{self.url}{name}/{version}/json"
            data = _get_json(self.session, url, missing_ok=True)
            found = []
            for vuln in (data or {}).get("vulnerabilities") or ():
                if vuln.get("withdrawn"):
                    continue
                found.append(Advisory(
                    id=str(vuln.get("id", "")),
                    aliases=tuple(sorted(str(a) for a in vuln.get("aliases") or ())),
                    summary=_summary(vuln),
                    fixed=tuple(str(v) for v in vuln.get("fixed_in") or ()),
                    url=str(vuln.get("link") or ""),
                    source=self.label,
                ))
            self._cache[key] = sorted(found, key=lambda a: a.id)
        return self._cache[key]


class OsvApiSource:
    """The OSV API: querybatch for ids, then one GET per advisory for details.

    Cost: ``prefetch`` of N releases is ceil(N / 1000) POSTs plus one GET per
    distinct advisory; a lookup not prefetched is one POST.
    """

    def __init__(self, url: str, session: requests.Session, *, label: str | None = None) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.session = session
        self.label = label or f"osv-api:{self.url}"
        self._ids: dict[Release, list[str]] = {}
        self._records: dict[str, OsvRecord] = {}

    def prefetch(self, releases: Iterable[Release]) -> None:
        wanted = sorted({r for r in releases if r not in self._ids})
        for start in range(0, len(wanted), OSV_BATCH_LIMIT):
            self._query(wanted[start:start + OSV_BATCH_LIMIT])

    def _query(self, releases: Sequence[Release]) -> None:
        pending = {i: {"package": {"name": name, "ecosystem": "PyPI"}, "version": str(version)}
                   for i, (name, version) in enumerate(releases)}
        ids: dict[int, list[str]] = {i: [] for i in pending}
        while pending:  # a result with next_page_token has more ids
            order = sorted(pending)
            data = _post_json(self.session, f"{self.url}v1/querybatch",
                              {"queries": [pending[i] for i in order]})
            results = data.get("results") if isinstance(data, dict) else None
            if not isinstance(results, list) or len(results) != len(order):
                raise NetworkError("unexpected answer from the OSV API querybatch",
                                   where=f"{self.url}v1/querybatch")
            following = {}
            for i, result in zip(order, results, strict=True):
                ids[i] += [str(v["id"]) for v in (result or {}).get("vulns") or ()]
                token = (result or {}).get("next_page_token")
                if token:
                    following[i] = {**pending[i], "page_token": token}
            pending = following
        for i, release in enumerate(releases):
            self._ids[release] = sorted(set(ids[i]))

    def _record(self, ident: str) -> OsvRecord:
        if ident not in self._records:
            url = f"{self.url}v1/vulns/{ident}"
            self._records[ident] = OsvRecord.from_data(_get_json(self.session, url), where=url)
        return self._records[ident]

    def advisories_for(self, name: NormalizedName, version: Version) -> list[Advisory]:
        if (name, version) not in self._ids:
            self._query([(name, version)])
        found = []
        for ident in self._ids[(name, version)]:
            record = self._record(ident)
            if not record.withdrawn:
                found.append(record.advisory(name, self.label))
        return found


def _get_json(session: requests.Session, url: str, *, missing_ok: bool = False) -> Any:
    response = get(session, url, headers={"Accept": "application/json"},
                   allow=(404,) if missing_ok else ())
    if response.status_code == 404:
        return None
    return _json_body(response, url)


def _post_json(session: requests.Session, url: str, body: Any) -> Any:
    try:
        response = session.post(url, json=body, timeout=getattr(session, "default_timeout", None)
                                or TIMEOUT)
    except requests.RequestException as error:
        raise network_error(error, url) from None
    return _json_body(check_response(response, url=url, not_found=NetworkError), url)


def _json_body(response: requests.Response, url: str) -> Any:
    try:
        return response.json()
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's limit
        raise NetworkError(f"{redact_url(url)}: the advisory source answered with something "
                           "that is not JSON") from None


# --------------------------------------------------------------------------
# Several sources as one
# --------------------------------------------------------------------------


class AdvisoryDB:
    """Every configured source, merged: an advisory reported by several
    sources (same id or a shared alias) appears once, from the first source
    that reported it; its aliases and fixed versions are united."""

    def __init__(self, sources: Sequence[AdvisorySource]) -> None:
        self.sources = list(sources)
        # the lock stage resolves targets in threads; the sources' caches are
        # plain dicts, and one lookup at a time also keeps requests unduplicated
        self._lock = threading.Lock()

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.sources]

    def prefetch(self, releases: Iterable[Release]) -> None:
        wanted = list(releases)
        with self._lock:
            for source in self.sources:
                source.prefetch(wanted)

    def advisories_for(self, name: str, version: Version) -> list[Advisory]:
        """Advisories affecting the release, sorted by id."""
        key = canonicalize_name(name)
        with self._lock:
            found = [a for source in self.sources for a in source.advisories_for(key, version)]
        merged: list[Advisory] = []
        for advisory in found:
            for i, known in enumerate(merged):
                if set(known.ids) & set(advisory.ids):
                    merged[i] = _merge(known, advisory)
                    break
            else:
                merged.append(advisory)
        return sorted(merged, key=lambda a: a.id)


def _merge(first: Advisory, other: Advisory) -> Advisory:
    aliases = sorted((set(first.ids) | set(other.ids)) - {first.id})
    fixed = tuple(dict.fromkeys((*first.fixed, *other.fixed)))
    return Advisory(first.id, tuple(aliases), first.summary, fixed, first.url or other.url,
                    first.source)


def open_advisory_db(configs: Sequence[AdvisorySourceConfig], *, base_dir: Path,
                     session: requests.Session | None = None) -> AdvisoryDB:
    """Build the sources ``policy.advisory_sources`` lists.

    Relative ``path`` values start at ``base_dir`` (the directory of
    mirror.yaml). ``session`` is used by the network sources; nothing is
    fetched until a lookup. Raises ConfigError for a source missing what
    it needs.
    """
    sources: list[AdvisorySource] = []
    for i, cfg in enumerate(configs):
        if cfg.kind == "osv-offline":
            if not cfg.path:
                problem = f"policy.advisory_sources[{i}]: an osv-offline source needs 'path'"
                raise ConfigError([problem])
            path = Path(cfg.path)
            sources.append(OsvOfflineSource(path if path.is_absolute() else base_dir / path))
            continue
        if session is None:
            session = make_session()
        http = session
        if cfg.kind == "pypi-json":
            sources.append(PypiJsonSource(cfg.url or DEFAULT_PYPI_JSON_URL, http))
        else:
            sources.append(OsvApiSource(cfg.url or DEFAULT_OSV_API_URL, http))
    return AdvisoryDB(sources)
