"""``FixtureIndex``: a real HTTP package index on 127.0.0.1 for tests, with failure switches.

Serves a set of distributions (a directory, plus files added at runtime):

=====================================  ==================================================
``GET /simple/<project>/``             PEP 691 JSON (``application/vnd.pypi.simple.v1+json``,
                                       api-version 1.1 with PEP 700 ``versions``, ``size``,
                                       ``upload-time``) or PEP 503 HTML, by ``Accept``;
                                       non-normalized names answer 301 to the normalized page
``GET /simple/``                       the root listing: served, but recorded as a
                                       *violation* (:attr:`FixtureIndex.root_requests`)
``GET /files/<project>/<filename>``    the artifact; ETag, Last-Modified, HTTP Range (206)
``GET /files/.../<filename>.metadata`` PEP 658/714 core metadata of wheels
``GET /pypi/<name>/json``              PyPI-style JSON API: ``info``, ``releases``, ``urls``,
``GET /pypi/<name>/<version>/json``    ``vulnerabilities`` (settable per release)
``POST /v1/querybatch``, ``/v1/query`` OSV-style vulnerability queries over the same data
``GET /v1/vulns/<id>``                 one OSV record
=====================================  ==================================================

Pages and files carry ``ETag`` and ``Last-Modified`` and answer 304 to
``If-None-Match`` / ``If-Modified-Since``. Pages are sent with
``Cache-Control: max-age=600, public`` like PyPI's, so a client that wants
fresh pages must revalidate on its own.

Switches (plain attributes or methods; safe to flip from the test thread
while the server runs): :attr:`html_only`, :attr:`no_metadata`,
:attr:`no_range`, :attr:`wrong_range`, :attr:`relative_urls`, :meth:`fail_next`,
:attr:`stall`, :attr:`truncate`, :meth:`alter`, :meth:`yank`, :meth:`require_basic_auth`,
:meth:`add_file`, :meth:`remove_file`, :meth:`set_upload_time`,
:meth:`set_vulnerabilities`. Every request is recorded
(:attr:`requests`, :meth:`count`, :meth:`conditional_requests`,
:meth:`range_requests`). :meth:`reset` puts switches and counters back.
"""

from __future__ import annotations

import base64
import email.parser
import hashlib
import html
import json
import re
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from .builder import DistributionName, read_core_metadata

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
DEFAULT_UPLOAD_TIME = datetime(2024, 1, 1, tzinfo=UTC)
PAGE_CACHE_CONTROL = "max-age=600, public"
FILE_CACHE_CONTROL = "max-age=365000000, immutable, public"
OSV_MODIFIED = "2023-06-01T00:00:00Z"
_DIST_SUFFIXES = (".whl", ".tar.gz", ".zip")


# --------------------------------------------------------------------------
# What is served
# --------------------------------------------------------------------------


@dataclass
class ServedFile(DistributionName):
    """One distribution as the server knows it."""

    filename: str
    path: Path
    project: str          # display name from the metadata
    version: str
    sha256: str
    md5: str
    blake2b_256: str
    size: int
    upload_time: datetime
    requires_python: str | None
    requires_dist: list[str]
    summary: str
    metadata: bytes | None  # the PEP 658 file (wheels only)
    yanked_reason: str | None = None

    @property
    def python_tag(self) -> str:
        return self.filename[:-4].split("-")[-3] if self.is_wheel else "source"

    @property
    def metadata_sha256(self) -> str | None:
        return hashlib.sha256(self.metadata).hexdigest() if self.metadata is not None else None


def describe_file(path: Path, *, upload_time: datetime | None = None,
                  yanked_reason: str | None = None) -> ServedFile:
    """Hash a distribution and read its core metadata."""
    data = path.read_bytes()
    metadata, is_wheel = read_core_metadata(path)
    headers = email.parser.BytesHeaderParser().parsebytes(metadata)
    # served on the page of the project its file name says, as an index does (a
    # hostile file's metadata may name another)
    named = (parse_wheel_filename(path.name) if is_wheel else parse_sdist_filename(path.name))[0]
    project = str(headers["Name"])
    return ServedFile(
        filename=path.name, path=path,
        project=project if canonicalize_name(project) == named else named,
        version=str(headers["Version"]),
        sha256=hashlib.sha256(data).hexdigest(), md5=hashlib.md5(data).hexdigest(),
        blake2b_256=hashlib.blake2b(data, digest_size=32).hexdigest(), size=len(data),
        upload_time=upload_time or DEFAULT_UPLOAD_TIME,
        requires_python=headers.get("Requires-Python"),
        requires_dist=[str(v) for v in headers.get_all("Requires-Dist") or []],
        summary=str(headers.get("Summary", "")),
        metadata=metadata if is_wheel else None, yanked_reason=yanked_reason)


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it."""

    method: str
    path: str
    query: str
    status: int
    conditional: bool      # carried If-None-Match or If-Modified-Since
    range: str | None      # the Range header
    accept: str | None
    authorized: bool       # carried an Authorization header
    user_agent: str | None = None


@dataclass
class _Failure:
    remaining: int
    status: int
    path_prefix: str | None
    retry_after: str | None


@dataclass
class _State:
    files: dict[str, ServedFile] = field(default_factory=dict)
    changed: dict[str, datetime] = field(default_factory=dict)  # project -> Last-Modified
    vulnerabilities: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    serial: int = 1


def _http_date(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0), usegmt=True)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _version_key(text: str) -> tuple[int, Any]:
    try:
        return (1, Version(text))
    except InvalidVersion:
        return (0, text)


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------


class _QuietServer(ThreadingHTTPServer):
    """The server, minus socketserver's traceback on stderr when a client drops
    its connection (a pooled keep-alive connection closed at the end of a
    test): the tests read stderr, and a dropped connection is no error here."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class FixtureIndex:
    """A threaded index server on 127.0.0.1 (free port); a context manager.

    ``files_dir`` is scanned for ``*.whl``, ``*.tar.gz`` and ``*.zip``;
    ``upload_times`` and ``yanked`` (filename -> reason) and
    ``vulnerabilities`` ((project, version) -> PyPI-JSON vulnerability dicts)
    set the initial state. Starts serving in the constructor.
    """

    def __init__(self, files_dir: Path | None = None, *,
                 upload_times: Mapping[str, datetime] | None = None,
                 yanked: Mapping[str, str] | None = None,
                 vulnerabilities: Mapping[tuple[str, str], list[dict[str, Any]]] | None = None
                 ) -> None:
        self._lock = threading.RLock()
        self._initial_upload_times = dict(upload_times or {})
        self._initial_yanked = dict(yanked or {})
        self._initial_vulnerabilities = {
            (canonicalize_name(p), v): list(vs) for (p, v), vs in (vulnerabilities or {}).items()}
        self._files_dir = files_dir
        self._described: dict[Path, ServedFile] = {}
        self._state = _State()
        self._records: list[RequestRecord] = []
        self._failures: list[_Failure] = []
        self._altered: dict[str, bytes] = {}
        self._auth: str | None = None
        self._stopping = threading.Event()
        self.html_only = False
        self.no_metadata = False
        self.no_range = False
        # "labelled": a Range request gets 206 and the whole file, labelled ``bytes 0-...``;
        # "unlabelled": the same without Content-Range (servers that answer other ranges)
        self.wrong_range: str | None = None
        self.relative_urls = False
        self.stall = 0.0
        self.truncate = False
        self._load_initial_state()
        self._httpd = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"fixture-index-{self.port}", daemon=True)
        self._thread.start()

    # -- lifecycle ---------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The simple index URL to hand to pip, uv or a mirror.yaml source."""
        return f"{self.base_url}/simple/"

    def url_with_auth(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}/simple/"

    @property
    def json_api_url(self) -> str:
        """Prefix of the PyPI-style JSON API: ``<json_api_url><name>/json``."""
        return f"{self.base_url}/pypi/"

    @property
    def osv_url(self) -> str:
        """Base of the OSV-style API: ``POST <osv_url>/v1/querybatch``."""
        return self.base_url

    def stop(self) -> None:
        """Stop serving and release the port (stalled responses are cut short)."""
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # -- state -------------------------------------------------------------

    def _load_initial_state(self) -> None:
        state = _State(vulnerabilities={k: list(v) for k, v in
                                        self._initial_vulnerabilities.items()})
        if self._files_dir is not None:
            for path in sorted(self._files_dir.iterdir()):
                if path.is_file() and path.name.endswith(_DIST_SUFFIXES):
                    served = self._describe(path)
                    served.upload_time = self._initial_upload_times.get(
                        path.name, DEFAULT_UPLOAD_TIME)
                    served.yanked_reason = self._initial_yanked.get(path.name)
                    state.files[path.name] = served
        for served in state.files.values():
            previous = state.changed.get(served.normalized)
            if previous is None or served.upload_time > previous:
                state.changed[served.normalized] = served.upload_time
        self._state = state

    def _describe(self, path: Path) -> ServedFile:
        # Hashing is the slow part of a reset; files on disk do not change under a test.
        key = path.resolve()
        if key not in self._described:
            self._described[key] = describe_file(path)
        cached = self._described[key]
        return ServedFile(**cached.__dict__)

    def reset(self) -> None:
        """Switches off, counters zero, files/yanks/vulnerabilities as constructed."""
        with self._lock:
            self.html_only = self.no_metadata = self.no_range = self.relative_urls = False
            self.truncate = False
            self.wrong_range = None
            self.stall = 0.0
            self._failures.clear()
            self._altered.clear()
            self._auth = None
            self._records.clear()
            self._load_initial_state()

    def _touch(self, project: str) -> None:
        now = datetime.now(UTC).replace(microsecond=0)
        previous = self._state.changed.get(project)
        self._state.changed[project] = (max(now, previous + timedelta(seconds=1))
                                        if previous else now)
        self._state.serial += 1

    def add_file(self, path: Path, *, upload_time: datetime | None = None,
                 yanked_reason: str | None = None) -> ServedFile:
        """Serve another distribution (from anywhere on disk) from now on."""
        served = describe_file(path, upload_time=upload_time, yanked_reason=yanked_reason)
        with self._lock:
            self._state.files[served.filename] = served
            self._touch(served.normalized)
        return served

    def remove_file(self, filename: str) -> None:
        with self._lock:
            served = self._state.files.pop(filename)
            self._touch(served.normalized)

    def yank(self, filename: str, reason: str = "") -> None:
        """Mark a file yanked (PEP 592); an empty reason is served as ``true``."""
        with self._lock:
            served = self._state.files[filename]
            served.yanked_reason = reason
            self._touch(served.normalized)

    def unyank(self, filename: str) -> None:
        with self._lock:
            served = self._state.files[filename]
            served.yanked_reason = None
            self._touch(served.normalized)

    def set_upload_time(self, filename: str, moment: datetime) -> None:
        with self._lock:
            served = self._state.files[filename]
            served.upload_time = moment
            self._touch(served.normalized)

    def set_vulnerabilities(self, project: str, version: str,
                            vulnerabilities: Iterable[Mapping[str, Any]]) -> None:
        """Replace the vulnerabilities of one release (PyPI JSON API format)."""
        with self._lock:
            self._state.vulnerabilities[(canonicalize_name(project), version)] = [
                dict(v) for v in vulnerabilities]

    def add_vulnerability(self, project: str, version: str, vuln_id: str, *,
                          fixed_in: Iterable[str] = (), aliases: Iterable[str] = (),
                          summary: str = "", details: str = "") -> None:
        entry = {"id": vuln_id, "aliases": list(aliases), "summary": summary or vuln_id,
                 "details": details or summary or vuln_id, "fixed_in": list(fixed_in),
                 "link": f"https://osv.dev/vulnerability/{vuln_id}", "source": "osv",
                 "withdrawn": None}
        with self._lock:
            self._state.vulnerabilities.setdefault(
                (canonicalize_name(project), version), []).append(entry)

    def alter(self, filename: str, data: bytes | None = None) -> None:
        """Serve other bytes for ``filename`` (an artifact or ``<wheel>.metadata``)
        while pages keep advertising the original hash. Default: one byte flipped
        in the middle (same size)."""
        with self._lock:
            if data is None:
                original = self._original_bytes(filename)
                middle = len(original) // 2
                data = original[:middle] + bytes([original[middle] ^ 0x01]) + original[middle + 1:]
            self._altered[filename] = data

    def require_basic_auth(self, user: str | None, password: str | None = None) -> None:
        """Demand HTTP basic auth on every request (``None`` turns it off)."""
        with self._lock:
            self._auth = (None if user is None else
                          base64.b64encode(f"{user}:{password or ''}".encode()).decode())

    def fail_next(self, n: int, status: int = 500, path_prefix: str | None = None, *,
                  retry_after: str | None = None) -> None:
        """Answer the next ``n`` requests (whose path starts with ``path_prefix``) with
        ``status``; ``retry_after`` adds that Retry-After header."""
        with self._lock:
            self._failures.append(_Failure(n, status, path_prefix, retry_after))

    @property
    def files(self) -> dict[str, ServedFile]:
        with self._lock:
            return dict(self._state.files)

    def _original_bytes(self, filename: str) -> bytes:
        if filename.endswith(".metadata"):
            served = self._state.files[filename[: -len(".metadata")]]
            assert served.metadata is not None, f"{filename}: sdists have no .metadata"
            return served.metadata
        return self._state.files[filename].path.read_bytes()

    # -- counting ------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def count(self, path: str | None = None, *, method: str | None = None,
              prefix: str | None = None, conditional: bool | None = None) -> int:
        """Requests matching every given filter (exact ``path``, path ``prefix``...)."""
        return sum(1 for r in self.requests
                   if (path is None or r.path == path)
                   and (prefix is None or r.path.startswith(prefix))
                   and (method is None or r.method == method)
                   and (conditional is None or r.conditional == conditional))

    def counts_by_path(self) -> Counter[str]:
        return Counter(r.path for r in self.requests)

    def counts_by_method(self) -> Counter[str]:
        return Counter(r.method for r in self.requests)

    def conditional_requests(self) -> list[RequestRecord]:
        return [r for r in self.requests if r.conditional]

    def range_requests(self) -> list[RequestRecord]:
        return [r for r in self.requests if r.range is not None]

    @property
    def root_requests(self) -> list[RequestRecord]:
        """Requests for the root listing ``/simple/``: must stay empty."""
        return [r for r in self.requests if r.path.rstrip("/") in ("/simple", "")]

    def reset_counts(self) -> None:
        with self._lock:
            self._records.clear()

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def _take_failure(self, path: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.remaining > 0 and (failure.path_prefix is None
                                              or path.startswith(failure.path_prefix)):
                    failure.remaining -= 1
                    return failure
            return None

    # -- views (called by the handler under the lock) -------------------------

    def _project_files(self, project: str) -> list[ServedFile]:
        found = [f for f in self._state.files.values() if f.normalized == project]
        return sorted(found, key=lambda f: (_version_key(f.version), f.filename))

    def _file_url(self, served: ServedFile, relative_to_page: bool) -> str:
        path = f"files/{served.normalized}/{served.filename}"
        if relative_to_page and self.relative_urls:
            return f"../../{path}"
        return f"{self.base_url}/{path}"

    def _project_json(self, project: str, files: list[ServedFile]) -> bytes:
        entries = []
        for served in files:
            entry: dict[str, Any] = {
                "filename": served.filename,
                "url": self._file_url(served, True),
                "hashes": {"sha256": served.sha256},
                "requires-python": served.requires_python,
                "size": served.size,
                "upload-time": _iso(served.upload_time),
                "yanked": (served.yanked_reason or True) if served.yanked_reason is not None
                else False,
            }
            metadata: Any = False
            if served.metadata is not None and not self.no_metadata:
                metadata = {"sha256": served.metadata_sha256}
            entry["core-metadata"] = metadata
            entry["dist-info-metadata"] = metadata
            entries.append(entry)
        versions = sorted({f.version for f in files}, key=_version_key)
        page = {"meta": {"api-version": "1.1", "_last-serial": self._state.serial},
                "name": project, "versions": versions, "files": entries}
        return json.dumps(page, indent=1, sort_keys=True).encode()

    def _project_html(self, project: str, files: list[ServedFile]) -> bytes:
        lines = ["<!DOCTYPE html>", "<html>", "<head>",
                 '<meta name="pypi:repository-version" content="1.1">',
                 f"<title>Links for {html.escape(project)}</title>", "</head>", "<body>",
                 f"<h1>Links for {html.escape(project)}</h1>"]
        for served in files:
            href = f"{self._file_url(served, True)}#sha256={served.sha256}"
            attributes = [f'href="{html.escape(href)}"']
            if served.requires_python:
                attributes.append(f'data-requires-python="{html.escape(served.requires_python)}"')
            if served.yanked_reason is not None:
                attributes.append(f'data-yanked="{html.escape(served.yanked_reason)}"')
            if served.metadata is not None and not self.no_metadata:
                attributes.append(f'data-core-metadata="sha256={served.metadata_sha256}"')
                attributes.append(f'data-dist-info-metadata="sha256={served.metadata_sha256}"')
            lines.append(f"<a {' '.join(attributes)}>{html.escape(served.filename)}</a><br/>")
        lines += ["</body>", "</html>"]
        return ("\n".join(lines) + "\n").encode()

    def _root_html(self) -> bytes:
        projects = sorted({f.normalized for f in self._state.files.values()})
        links = "\n".join(f'<a href="{p}/">{p}</a><br/>' for p in projects)
        return (f"<!DOCTYPE html>\n<html><body>\n{links}\n</body></html>\n").encode()

    def _json_file(self, served: ServedFile) -> dict[str, Any]:
        return {
            "comment_text": "",
            "digests": {"blake2b_256": served.blake2b_256, "md5": served.md5,
                        "sha256": served.sha256},
            "downloads": -1,
            "filename": served.filename,
            "has_sig": False,
            "md5_digest": served.md5,
            "packagetype": "bdist_wheel" if served.is_wheel else "sdist",
            "python_version": served.python_tag,
            "requires_python": served.requires_python,
            "size": served.size,
            "upload_time": served.upload_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "upload_time_iso_8601": served.upload_time.astimezone(UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ"),
            "url": self._file_url(served, False),
            "yanked": served.yanked_reason is not None,
            "yanked_reason": served.yanked_reason or None,
        }

    def _json_api(self, project: str, version: str | None) -> dict[str, Any] | None:
        files = self._project_files(project)
        if not files:
            return None
        releases: dict[str, list[ServedFile]] = {}
        for served in files:
            releases.setdefault(served.version, []).append(served)
        if version is None:
            candidates = sorted(releases, key=_version_key)
            stable = [v for v in candidates
                      if _version_key(v)[0] == 1 and not Version(v).is_prerelease
                      and any(f.yanked_reason is None for f in releases[v])]
            version = (stable or candidates)[-1]
        elif version not in releases:
            return None
        chosen = releases[version]
        first = chosen[0]
        yanked = all(f.yanked_reason is not None for f in chosen)
        info = {
            "name": first.project, "version": version, "summary": first.summary,
            "requires_python": first.requires_python or "",
            "requires_dist": first.requires_dist or None,
            "yanked": yanked,
            "yanked_reason": (first.yanked_reason or None) if yanked else None,
            "project_url": f"{self.base_url}/project/{project}/",
            "package_url": f"{self.base_url}/project/{project}/",
            "release_url": f"{self.base_url}/project/{project}/{version}/",
            "home_page": "", "author": "", "license": "", "classifiers": [],
        }
        answer: dict[str, Any] = {
            "info": info,
            "last_serial": self._state.serial,
            "urls": [self._json_file(f) for f in chosen],
            "vulnerabilities": list(self._state.vulnerabilities.get((project, version), [])),
        }
        answer["releases"] = {v: [self._json_file(f) for f in fs]
                              for v, fs in sorted(releases.items(),
                                                  key=lambda kv: _version_key(kv[0]))}
        return answer

    def _osv_records(self) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        for (project, version), vulns in sorted(self._state.vulnerabilities.items()):
            for vuln in vulns:
                record = records.setdefault(str(vuln["id"]), {
                    "id": vuln["id"], "summary": vuln.get("summary", ""),
                    "details": vuln.get("details", ""), "aliases": list(vuln.get("aliases", [])),
                    "modified": vuln.get("modified", OSV_MODIFIED),
                    "published": vuln.get("published", OSV_MODIFIED), "affected": []})
                affected = next((a for a in record["affected"]
                                 if a["package"]["name"] == project), None)
                if affected is None:
                    affected = {"package": {"name": project, "ecosystem": "PyPI",
                                            "purl": f"pkg:pypi/{project}"},
                                "ranges": [{"type": "ECOSYSTEM", "events": [
                                    {"introduced": "0"},
                                    *({"fixed": f} for f in vuln.get("fixed_in", []))]}],
                                "versions": []}
                    record["affected"].append(affected)
                affected["versions"].append(version)
        return records

    def _osv_for(self, name: str, version: str) -> list[dict[str, Any]]:
        key = (canonicalize_name(name), version)
        ids = [str(v["id"]) for v in self._state.vulnerabilities.get(key, [])]
        records = self._osv_records()
        return [records[i] for i in ids]


# --------------------------------------------------------------------------
# The request handler
# --------------------------------------------------------------------------


def _negotiate(accept: str | None, html_only: bool) -> str | None:
    """The page media type to send for an Accept header, or None (406).

    Highest quality wins; at equal quality an exact type beats a wildcard,
    and JSON beats HTML. A wildcard alone (or no header) gets ``text/html``,
    as PyPI does.
    """
    offered = [HTML_V1, "text/html"] if html_only else [JSON_V1, HTML_V1, "text/html"]
    if not accept:
        return "text/html"
    aliases = {"application/vnd.pypi.simple.latest+json": JSON_V1,
               "application/vnd.pypi.simple.latest+html": HTML_V1}
    best: tuple[float, int, int, str] | None = None
    for part in accept.split(","):
        pieces = [p.strip() for p in part.split(";")]
        media, quality = aliases.get(pieces[0].lower(), pieces[0].lower()), 1.0
        for parameter in pieces[1:]:
            if parameter.replace(" ", "").startswith("q="):
                try:
                    quality = float(parameter.split("=", 1)[1])
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        if media in offered:
            candidate = (quality, 1, -offered.index(media), media)
        elif media in ("*/*", "text/*"):
            candidate = (quality, 0, 0, "text/html")
        else:
            continue
        if best is None or candidate > best:
            best = candidate
    return best[3] if best else None


def _make_handler(index: FixtureIndex) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "FixtureIndex/1.0"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        # -- plumbing --------------------------------------------------------

        def do_GET(self) -> None:
            self._handle(head=False)

        def do_HEAD(self) -> None:
            self._handle(head=True)

        def do_POST(self) -> None:
            self._handle(head=False)

        def _handle(self, head: bool) -> None:
            split = urlsplit(self.path)
            path = unquote(split.path)
            body = b""
            if self.command == "POST":
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
            self._status = 0
            self._recorded = False
            self._path, self._query = path, split.query
            try:
                self._dispatch(path, body, head)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            finally:
                self._record()

        def _record(self) -> None:
            # Recorded before the response is sent, so a client that has its answer
            # can rely on the count; once per request.
            if self._recorded:
                return
            self._recorded = True
            index._record(RequestRecord(
                method=self.command, path=self._path, query=self._query, status=self._status,
                conditional=bool(self.headers.get("If-None-Match")
                                 or self.headers.get("If-Modified-Since")),
                range=self.headers.get("Range"), accept=self.headers.get("Accept"),
                authorized=self.headers.get("Authorization") is not None,
                user_agent=self.headers.get("User-Agent")))

        def _send(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None,
                  *, head: bool = False, truncate: bool = False) -> None:
            self._status = status
            self._record()
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            if truncate:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if head:
                return
            self.wfile.write(body[: len(body) // 2] if truncate and body else body)
            self.wfile.flush()

        def _error(self, status: int, message: str, head: bool = False,
                   headers: Mapping[str, str] | None = None) -> None:
            self._send(status, (message + "\n").encode(),
                       {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}, head=head)

        def _not_modified(self, etag: str, last_modified: datetime) -> bool:
            if_none_match = self.headers.get("If-None-Match")
            if if_none_match is not None:
                tags = [t.strip() for t in if_none_match.split(",")]
                return "*" in tags or etag in tags or f"W/{etag}" in tags
            since = self.headers.get("If-Modified-Since")
            if since:
                try:
                    return last_modified.replace(microsecond=0) <= parsedate_to_datetime(since)
                except (TypeError, ValueError):
                    return False
            return False

        # -- routing -------------------------------------------------------------

        def _dispatch(self, path: str, body: bytes, head: bool) -> None:
            with index._lock:
                expected_auth = index._auth
            if expected_auth is not None:
                given = self.headers.get("Authorization", "")
                if given != f"Basic {expected_auth}":
                    self._error(401, "authentication required", head,
                                {"WWW-Authenticate": 'Basic realm="fixture-index"'})
                    return
            failure = index._take_failure(path)
            if failure is not None:
                extra = {"Retry-After": failure.retry_after} if failure.retry_after else {}
                self._error(failure.status, f"injected failure {failure.status}", head, extra)
                return
            if index.stall > 0 and index._stopping.wait(index.stall):
                self.close_connection = True
                return
            if self.command == "POST":
                self._post(path, body)
                return
            parts = [p for p in path.split("/") if p]
            if parts == ["simple"]:
                self._root(head)
            elif len(parts) == 2 and parts[0] == "simple":
                self._project_page(parts[1], head)
            elif len(parts) == 3 and parts[0] == "files":
                self._file(parts[1], parts[2], head)
            elif parts[:1] == ["pypi"] and parts[-1:] == ["json"] and len(parts) in (3, 4):
                self._json_api(parts[1], parts[2] if len(parts) == 4 else None, head)
            elif len(parts) == 3 and parts[:2] == ["v1", "vulns"]:
                with index._lock:
                    record = index._osv_records().get(parts[2])
                if record is None:
                    self._error(404, "no such vulnerability", head)
                else:
                    self._json(record, head)
            else:
                self._error(404, "not found", head)

        def _json(self, payload: Any, head: bool = False, status: int = 200) -> None:
            body = json.dumps(payload, indent=1, sort_keys=True).encode()
            self._send(status, body, {"Content-Type": "application/json"}, head=head)

        def _root(self, head: bool) -> None:
            with index._lock:
                body = index._root_html()
            self._send(200, body, {"Content-Type": "text/html; charset=utf-8"}, head=head)

        def _project_page(self, name: str, head: bool) -> None:
            project = canonicalize_name(name)
            if project != name:
                self._send(301, b"", {"Location": f"/simple/{project}/"}, head=head)
                return
            media = _negotiate(self.headers.get("Accept"), index.html_only)
            if media is None:
                self._error(406, "none of the accepted media types is offered", head)
                return
            with index._lock:
                files = index._project_files(project)
                if not files:
                    self._error(404, f"no project named {project}", head)
                    return
                body = (index._project_json(project, files) if media == JSON_V1
                        else index._project_html(project, files))
                last_modified = index._state.changed.get(project, DEFAULT_UPLOAD_TIME)
                serial = index._state.serial
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            headers = {"ETag": etag, "Last-Modified": _http_date(last_modified),
                       "Cache-Control": PAGE_CACHE_CONTROL, "Vary": "Accept, Accept-Encoding",
                       "X-PyPI-Last-Serial": str(serial)}
            if self._not_modified(etag, last_modified):
                self._send(304, b"", headers, head=True)
                return
            content_type = media + ("; charset=utf-8" if "html" in media else "")
            self._send(200, body, {"Content-Type": content_type, **headers}, head=head)

        def _file(self, project: str, filename: str, head: bool) -> None:
            is_metadata = filename.endswith(".metadata")
            artifact = filename[: -len(".metadata")] if is_metadata else filename
            with index._lock:
                served = index._state.files.get(artifact)
                altered = index._altered.get(filename)
            if served is None or served.normalized != project or (
                    is_metadata and (served.metadata is None or index.no_metadata)):
                self._error(404, "not found", head)
                return
            if altered is not None:
                data = altered
            elif is_metadata:
                assert served.metadata is not None
                data = served.metadata
            else:
                data = served.path.read_bytes()
            digest = served.metadata_sha256 if is_metadata else served.sha256
            etag = f'"{digest}"'
            headers = {"ETag": etag, "Last-Modified": _http_date(served.upload_time),
                       "Cache-Control": FILE_CACHE_CONTROL,
                       "Content-Type": "text/plain; charset=utf-8" if is_metadata
                       else "application/octet-stream"}
            if not index.no_range:
                headers["Accept-Ranges"] = "bytes"
            if self._not_modified(etag, served.upload_time):
                self._send(304, b"", headers, head=True)
                return
            wanted = self.headers.get("Range")
            if wanted and index.wrong_range is not None:
                if index.wrong_range == "labelled":
                    headers["Content-Range"] = f"bytes 0-{len(data) - 1}/{len(data)}"
                self._send(206, data, headers, head=head)
                return
            if wanted and not index.no_range:
                span = _parse_range(wanted, len(data))
                if span is None:
                    self._send(416, b"", {**headers, "Content-Range": f"bytes */{len(data)}"},
                               head=head)
                    return
                start, end = span
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                self._send(206, data[start:end + 1], headers, head=head,
                           truncate=index.truncate)
                return
            self._send(200, data, headers, head=head, truncate=index.truncate)

        def _json_api(self, name: str, version: str | None, head: bool) -> None:
            with index._lock:
                answer = index._json_api(canonicalize_name(name), version)
            if answer is None:
                self._error(404, "Not Found", head)
            else:
                if version is not None:
                    answer.pop("releases", None)
                self._json(answer, head)

        def _post(self, path: str, body: bytes) -> None:
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                self._error(400, "body is not JSON")
                return
            if path == "/v1/querybatch":
                results = []
                with index._lock:
                    for query in payload.get("queries", []):
                        vulns = index._osv_for(query.get("package", {}).get("name", ""),
                                               str(query.get("version", "")))
                        results.append({"vulns": [{"id": v["id"], "modified": v["modified"]}
                                                  for v in vulns]} if vulns else {})
                self._json({"results": results})
            elif path == "/v1/query":
                with index._lock:
                    vulns = index._osv_for(payload.get("package", {}).get("name", ""),
                                           str(payload.get("version", "")))
                self._json({"vulns": vulns} if vulns else {})
            else:
                self._error(404, "not found")

    return Handler


def _parse_range(header: str, length: int) -> tuple[int, int] | None:
    """One ``bytes=`` range as inclusive (start, end), or None when unsatisfiable."""
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not match or (not match.group(1) and not match.group(2)) or length == 0:
        return None
    if not match.group(1):
        suffix = int(match.group(2))
        return (max(0, length - suffix), length - 1) if suffix else None
    start = int(match.group(1))
    end = int(match.group(2)) if match.group(2) else length - 1
    if start >= length or end < start:
        return None
    return start, min(end, length - 1)

