"""Known vulnerabilities: where they come from and which releases they hit.

Three kinds of source, listed by the user under ``policy.advisory_sources``:

``pypi-json``
    The index's JSON API, ``<url>/<name>/<version>/json`` (default
    ``https://pypi.org/pypi/``): its ``vulnerabilities`` list (PyPI takes it
    from OSV) names the advisories affecting that release. One request per
    release. Where the index answers 404 there (some mirrors and proxies
    serve only the project endpoint), ``<url>/<name>/json`` once per project:
    it covers the latest release only, so older releases are reported as
    not checked (:meth:`AdvisoryDB.unchecked`), never as clean.
``osv-api``
    The OSV API (default ``https://api.osv.dev/``): ``POST /v1/querybatch``
    for many releases in one request (up to 1000), then
    ``GET /v1/vulns/<id>`` once per advisory for its details.
``osv-offline``
    A directory or a ``.zip`` of OSV records, YAML or JSON, as OSV
    (``PyPI/all.zip``) and the PyPA advisory database (``vulns/<project>/
    PYSEC-*.yaml``) publish them. No network: this is what audits on the far
    side of an air gap.

OSV records are evaluated here, not trusted to a server (the record model and
the range evaluation: :mod:`lockmirror.net.osv`); sources are merged into one
:class:`AdvisoryDB`.
"""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import requests
import yaml
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from ..config_schema import AdvisorySourceConfig
from ..errors import ConfigError, LockmirrorError, NetworkError
from ..formats.bounded import load_json
from ..net.http import check_response, get, make_session, network_error
from ..net.osv import Advisory, OsvRecord, short_summary
from ..redaction import redact_url

DEFAULT_PYPI_JSON_URL = "https://pypi.org/pypi/"
DEFAULT_OSV_API_URL = "https://api.osv.dev/"
NO_SOURCE = "no advisory source is configured (policy.advisory_sources)"
OSV_BATCH_LIMIT = 1000  # queries per /v1/querybatch request (the API's limit)
TIMEOUT = (10.0, 60.0)  # (connect, read) when the session has no default

Release = tuple[NormalizedName, Version]

try:  # libyaml parses the large `versions` lists several times faster
    _YamlLoader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _YamlLoader = yaml.SafeLoader


# --------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------


class AdvisorySource(Protocol):
    """Where advisories come from. ``prefetch`` lets a source batch."""

    label: str

    def prefetch(self, releases: Iterable[Release]) -> None: ...

    def advisories_for(self, name: NormalizedName, version: Version) -> list[Advisory]: ...

    def unchecked(self, name: NormalizedName, version: Version) -> str | None:
        """After a lookup: why the source could not tell whether the release is
        affected (its answer of no advisories means nothing), or None."""
        ...


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

    def unchecked(self, name: NormalizedName, version: Version) -> str | None:
        return None  # a database without a record for the release: none is known

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
    """The index's JSON API: ``<url><name>/<version>/json``'s ``vulnerabilities``.

    One GET per release. An index that answers 404 there (some mirrors and
    proxies serve only the project endpoint) is asked ``<url><name>/json``
    once per project: its ``vulnerabilities`` are those of the latest release
    only, so an older release stays *unchecked* (:meth:`unchecked` says why)
    instead of passing as clean.
    """

    def __init__(self, url: str, session: requests.Session, *, label: str | None = None) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.session = session
        self.label = label or f"pypi-json:{self.url}"
        self._cache: dict[Release, list[Advisory]] = {}
        self._unchecked: dict[Release, str] = {}
        self._projects: dict[NormalizedName, Any] = {}

    def prefetch(self, releases: Iterable[Release]) -> None:
        for name, version in releases:
            self.advisories_for(name, version)

    def advisories_for(self, name: NormalizedName, version: Version) -> list[Advisory]:
        key = (name, version)
        if key not in self._cache:
            data = _get_json(self.session, f"{self.url}{name}/{version}/json", missing_ok=True)
            if data is None:
                data = self._from_project(name, version)
            if data is not None and not _lists_vulnerabilities(data):
                # an answer that says nothing about advisories is no "clean"
                self._unchecked[key] = (f"{self.label} answers JSON without a list of "
                                        "vulnerabilities")
                data = None
            self._cache[key] = self._advisories(data) if data is not None else []
        return self._cache[key]

    def unchecked(self, name: NormalizedName, version: Version) -> str | None:
        """Why this source could not say whether the release is affected, or None."""
        return self._unchecked.get((name, version))

    def _from_project(self, name: NormalizedName, version: Version) -> Any:
        """The project endpoint's answer when it describes ``version``, else None
        (and the release is recorded as unchecked)."""
        if name not in self._projects:
            self._projects[name] = _get_json(self.session, f"{self.url}{name}/json",
                                             missing_ok=True)
        data = self._projects[name]
        info = data.get("info") if isinstance(data, dict) else None
        latest = info.get("version") if isinstance(info, dict) else None
        if latest is not None and _same_version(latest, version):
            return data
        self._unchecked[(name, version)] = (
            f"{self.label} answers no JSON for single releases, and its project JSON covers "
            "only the latest release" if latest is not None
            else f"{self.label} has no JSON for the project")
        return None

    def _advisories(self, data: Any) -> list[Advisory]:
        found = []
        for vuln in data["vulnerabilities"]:
            if vuln.get("withdrawn"):
                continue
            found.append(Advisory(
                id=str(vuln.get("id", "")),
                aliases=tuple(sorted(str(a) for a in vuln.get("aliases") or ())),
                summary=short_summary(vuln),
                fixed=tuple(str(v) for v in vuln.get("fixed_in") or ()),
                url=str(vuln.get("link") or ""),
                source=self.label,
            ))
        return sorted(found, key=lambda a: a.id)


def _lists_vulnerabilities(data: Any) -> bool:
    """Whether a JSON API answer carries a ``vulnerabilities`` list (PyPI's
    always does, empty when none is known; a proxy's may leave it out)."""
    found = data.get("vulnerabilities") if isinstance(data, dict) else None
    return isinstance(found, list) and all(isinstance(vuln, dict) for vuln in found)


def _same_version(text: str, version: Version) -> bool:
    try:
        return Version(str(text)) == version
    except InvalidVersion:
        return False


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


    def unchecked(self, name: NormalizedName, version: Version) -> str | None:
        return None  # the API answers for any release, known or not


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

    def unchecked(self, name: str, version: Version) -> str | None:
        """After :meth:`advisories_for`: why no source could tell whether the
        release is affected (each source's reason), or None when one could."""
        key = canonicalize_name(name)
        if not self.sources:
            return NO_SOURCE
        with self._lock:
            reasons = [source.unchecked(key, version) for source in self.sources]
        if any(reason is None for reason in reasons):
            return None
        return "; ".join(str(reason) for reason in reasons)

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


def not_checked_notes(advisories: AdvisoryDB | None, releases: Collection[tuple[str, Version]]
                      ) -> tuple[str, ...]:
    """One note per reason naming the ``releases`` (looked up already) whose
    advisories no source could tell: never to be reported as clean."""
    found: dict[str, list[str]] = {}
    for name, version in releases:
        reason = advisories.unchecked(name, version) if advisories is not None else NO_SOURCE
        if reason is not None:
            found.setdefault(reason, []).append(f"{name}=={version}")
    return tuple(not_checked_text(names, len(releases), reason)
                 for reason, names in sorted(found.items()))


def not_checked_text(releases: Sequence[str], total: int, reason: str) -> str:
    """``vulnerabilities were not checked for 2 of 6 releases (a==1, b==2): why``."""
    from ..fsutil import first_of

    names = sorted(releases)
    if len(names) == total:
        return f"vulnerabilities were not checked: {reason}"
    return (f"vulnerabilities were not checked for {len(names)} of {total} releases "
            f"({first_of(names, 5)}): {reason}")


def _merge(first: Advisory, other: Advisory) -> Advisory:
    aliases = sorted((set(first.ids) | set(other.ids)) - {first.id})
    fixed = tuple(dict.fromkeys((*first.fixed, *other.fixed)))
    return Advisory(first.id, tuple(aliases), first.summary, fixed, first.url or other.url,
                    first.source)


def open_advisory_db(configs: Sequence[AdvisorySourceConfig], *, base_dir: Path,
                     session: requests.Session | None = None) -> AdvisoryDB:
    """Build the sources ``policy.advisory_sources`` lists.

    Relative ``path`` values start at ``base_dir`` (the directory of
    mirror.yaml); an ``osv-offline`` source's label names the path as
    mirror.yaml states it, never the absolute path it resolves to.
    ``session`` is used by the network sources; nothing is fetched until a
    lookup. Raises ConfigError for a source missing what it needs.
    """
    sources: list[AdvisorySource] = []
    for i, cfg in enumerate(configs):
        if cfg.kind == "osv-offline":
            if not cfg.path:
                problem = f"policy.advisory_sources[{i}]: an osv-offline source needs 'path'"
                raise ConfigError([problem])
            path = Path(cfg.path)
            # labelled as mirror.yaml states the path: the label reaches snapshots and
            # bundles, which must not change with where the repository is cloned
            sources.append(OsvOfflineSource(path if path.is_absolute() else base_dir / path,
                                            label=f"osv-offline:{cfg.path}"))
            continue
        if session is None:
            session = make_session()
        http = session
        if cfg.kind == "pypi-json":
            sources.append(PypiJsonSource(cfg.url or DEFAULT_PYPI_JSON_URL, http))
        else:
            sources.append(OsvApiSource(cfg.url or DEFAULT_OSV_API_URL, http))
    return AdvisoryDB(sources)
