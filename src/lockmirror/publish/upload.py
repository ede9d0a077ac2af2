"""Publish through the legacy upload API: Nexus, devpi, pypiserver, Artifactory, PyPI.

What the repository already holds is established by lockmirror itself:
servers answer a duplicate upload differently (pypiserver 409, or 400 when
the client says it is twine; devpi 200 or 409; Nexus 400) and twine 7
refuses ``--skip-existing`` for anything but PyPI. So the repository's
simple page of each project is read first (PEP 691 JSON when offered, else
PEP 503 HTML), and only files it lacks are uploaded. A file it holds under
the same name with other bytes is a conflict: never overwritten, reported
loudly. An "already exists" answer counts as success only when the page
then shows the file with our sha256.

Each file goes through twine, in this process (``twine.package.PackageFile``
validates and reads the metadata, ``twine.repository.Repository.upload``
posts it) when twine accepts it. Files whose metadata twine refuses (e.g.
Metadata-Version 2.1 with a License-Expression field, as beautifulsoup4
4.12.2 has) go through the same ``:action=file_upload`` multipart POST
built here from the file's own METADATA / PKG-INFO, so no third-party file
is refused for its metadata style. One refused file never blocks the others; wrong
credentials stop at the first 401/403. Connection errors and 5xx answers
are retried (with a look at the page first, since a failed answer may
follow a stored upload).

Where the time goes (measured against pypiserver, one Python process, in
benchmarks/bench_publish.py): the repository's own work per request
dominates, so a publish keeps it busy without crowding it. One thread
prepares each file (twine's import, reading, hashing, metadata checks)
ahead of the uploads, starting with the files the first pages show missing
while the other pages are still being read; two uploads in flight hide our
per-request work behind the server's, where more only make the server's
threads compete for its one interpreter.

Credentials come from the variables named by ``username_env`` /
``password_env`` (default ``TWINE_USERNAME`` / ``TWINE_PASSWORD``) or the
keyring; they travel only in Authorization headers, never in argv or text.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import compat32
from pathlib import Path
from typing import Any, Self
from urllib.parse import urljoin, urlsplit

import requests
from packaging.utils import canonicalize_name

from ..config import UploadDestination
from ..errors import IntegrityError, LockmirrorError, PublishError
from ..http import PrefixAuth, make_session, network_error, redact_text, redact_url
from ..index_client import DistFile, parse_html_page, parse_json_page
from .tree import (
    Item,
    Plan,
    Progress,
    ProgressEvent,
    PublishResult,
    SourceTree,
    first_lines,
    no_progress,
    plural,
)

DEFAULT_JOBS = 2  # uploads in flight: two hide our per-file work; four crowded pypiserver
# Files read, hashed and checked ahead of the uploads: all the first ones while the
# pages are still being read (the client has CPU to spare then, not once the uploads
# load the repository); bounded, since each holds its metadata in memory.
PREPARE_AHEAD = 256
BODY_CHUNK = 256 * 1024  # POST bodies are sent in these (urllib3's default is 16 KiB)
ATTEMPTS = 3
ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, " \
         "text/html;q=0.1"
Credentials = tuple[str, str]


def simple_url_for(destination: UploadDestination) -> str:
    """The repository's simple index: ``simple_url``, else ``<url>/simple/``
    (pypiserver, Nexus, Artifactory; devpi's ``<url>/+simple/`` is found on the
    first page read, see ``UploadPublisher._devpi_simple_url``)."""
    if destination.simple_url:
        url = destination.simple_url
    else:
        url = destination.url.rstrip("/") + "/simple/"
    return url if url.endswith("/") else url + "/"


def upload_credentials(destination: UploadDestination,
                       environ: Mapping[str, str] | None = None) -> Credentials | None:
    """(username, password) from the named variables, TWINE_* or the keyring; None if none.

    Raises PublishError when a variable the destination names is unset.
    Never returns or raises text containing a secret.
    """
    env = os.environ if environ is None else environ
    for variable in (destination.username_env, destination.password_env):
        if variable is not None and variable not in env:
            raise PublishError(f"environment variable {variable} is not set",
                               where=redact_url(destination.url),
                               hint=f"export {variable}=... (the repository's credentials)")
    username = env.get(destination.username_env or "TWINE_USERNAME")
    password = env.get(destination.password_env or "TWINE_PASSWORD")
    if password is None and destination.keyring:
        import keyring
        import keyring.errors

        try:
            if username is None:
                found = keyring.get_credential(destination.url, None)
                if found is not None:
                    username, password = found.username, found.password
            else:
                password = keyring.get_password(destination.url, username)
        except keyring.errors.KeyringError as error:
            raise PublishError(f"the keyring failed ({type(error).__name__})",
                               where=redact_url(destination.url)) from None
    if username is None and password is None:
        return None
    if username is None:  # a token alone: the convention of PyPI, Nexus and Artifactory
        username = "__token__"
    return username, password or ""


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/"


# ----------------------------------------------------------------------
# Core metadata of a local distribution, for the direct upload path
# ----------------------------------------------------------------------


def core_metadata(path: Path) -> bytes:
    """METADATA of a wheel (the PEP 658 file beside it when the index has one)
    or PKG-INFO of an sdist. Raises PublishError when there is none."""
    name = path.name
    try:
        if name.endswith(".whl"):
            sibling = path.with_name(name + ".metadata")
            if sibling.is_file():
                return sibling.read_bytes()
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    parts = member.split("/")
                    if len(parts) == 2 and parts[0].endswith(".dist-info") \
                            and parts[1] == "METADATA":
                        return archive.read(member)
        elif name.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    if member.count("/") == 1 and member.endswith("/PKG-INFO"):
                        return archive.read(member)
        else:
            with tarfile.open(path) as archive:
                for info in archive:
                    if info.name.count("/") == 1 and info.name.endswith("/PKG-INFO"):
                        extracted = archive.extractfile(info)
                        if extracted is not None:
                            return extracted.read()
    except (OSError, zipfile.BadZipFile, tarfile.TarError) as error:
        raise PublishError(f"cannot read its metadata ({error})", where=str(path)) from None
    raise PublishError("has no METADATA / PKG-INFO", where=str(path))


def legacy_upload_fields(path: Path, metadata: bytes, sha256: str) -> list[tuple[str, Any]]:
    """The form fields of a ``:action=file_upload`` POST (protocol 1), taken
    verbatim from the file's own core metadata; the file itself is added by
    the caller as ``content``. Unknown headers are passed through, so any
    metadata version is carried as written. The file is read once, for its
    md5, blake2b and sha256; raises IntegrityError when the sha256 is not
    ``sha256``."""
    message = BytesParser(policy=compat32).parsebytes(metadata)
    renamed = {"classifier": "classifiers", "project_url": "project_urls"}
    fields: list[tuple[str, Any]] = [(":action", "file_upload"), ("protocol_version", "1")]
    for header, value in message.items():
        key = header.lower().replace("-", "_")
        fields.append((renamed.get(key, key), str(value)))
    body = message.get_payload()
    if isinstance(body, str) and body.strip() and "Description" not in message:
        fields.append(("description", body))
    if path.name.endswith(".whl"):
        filetype, pyversion = "bdist_wheel", path.name[:-4].split("-")[-3]
    else:
        filetype, pyversion = "sdist", "source"
    md5 = hashlib.md5(usedforsecurity=False)
    blake = hashlib.blake2b(digest_size=32)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            md5.update(chunk)
            blake.update(chunk)
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise IntegrityError(f"sha256 is {digest.hexdigest()}, manifest.json says {sha256}",
                             where=str(path), hint="rebuild or re-import the index")
    fields += [("filetype", filetype), ("pyversion", pyversion),
               ("md5_digest", md5.hexdigest()), ("sha256_digest", sha256),
               ("blake2_256_digest", blake.hexdigest())]
    return fields


# ----------------------------------------------------------------------
# The publisher
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    path: str
    uploaded: bool = False
    present: bool = False       # the server said "exists" and holds our bytes
    problem: str | None = None


class _AuthRefused(Exception):
    pass


@dataclass(frozen=True)
class _Prepared:
    """A file ready to post: twine's PackageFile when twine accepts it, else the
    form fields of the direct legacy upload (hashes included, sha256 checked)."""

    package: Any | None = None
    fields: tuple[tuple[str, Any], ...] = ()


class _Uploads:
    """Uploads running ``jobs`` at a time; a refusal of the credentials stops the rest.

    One thread prepares the files (:meth:`UploadPublisher._prepare`) in upload
    order, at most :data:`PREPARE_AHEAD` ahead of the uploads, so a worker
    posts its next file as soon as it is free and a bounded number of
    prepared files (their metadata) is held at once. :meth:`prepare` starts
    a file before the uploads are submitted (while pages are still read)."""

    def __init__(self, publisher: UploadPublisher, tree: SourceTree) -> None:
        self.publisher = publisher
        self.tree = tree
        self.pool = ThreadPoolExecutor(publisher.jobs)
        self.preparing = ThreadPoolExecutor(1)
        self.prepared: dict[str, Future[_Prepared | None]] = {}
        self.early: list[Item] = []
        self.items: list[Item] = []
        self.outcomes: list[_Outcome] = []
        self.stop = threading.Event()       # the credentials were refused
        self.finished = threading.Event()   # the uploads are over
        self.lock = threading.Lock()

    def prepare(self, item: Item) -> None:
        """Start preparing ``item`` now, if fewer than PREPARE_AHEAD are started."""
        with self.lock:
            if len(self.early) < PREPARE_AHEAD and item.path not in self.prepared:
                self.early.append(item)
                self.prepared[item.path] = self.preparing.submit(self._prepare, item)

    def submit_all(self, items: Sequence[Item]) -> None:
        """Upload ``items``: those already being prepared first, then the rest in order."""
        if self.stop.is_set() or not items:
            return
        self.publisher.progress(ProgressEvent("uploading what the repository lacks"))
        started = {item.path for item in self.early}
        self.items = [*self.early, *(item for item in items if item.path not in started)]
        for index in range(min(PREPARE_AHEAD, len(self.items))):
            self._future(index)
        for index in range(len(self.items)):
            self.pool.submit(self._one, index)

    def _future(self, index: int) -> Future[_Prepared | None]:
        item = self.items[index]
        with self.lock:
            future = self.prepared.get(item.path)
            if future is None:
                future = self.preparing.submit(self._prepare, item)
                self.prepared[item.path] = future
            return future

    def _prepare(self, item: Item) -> _Prepared | None:
        if self.stop.is_set() or self.finished.is_set():
            return None
        return self.publisher._prepare(self.tree, item)

    def _one(self, index: int) -> None:
        if self.stop.is_set():
            return
        item = self.items[index]
        if index + PREPARE_AHEAD < len(self.items):
            self._future(index + PREPARE_AHEAD)
        future = self._future(index)
        try:
            ready = future.result()
            if ready is None:  # stopped while it waited
                return
            outcome = self.publisher._upload_one(self.tree, item, ready)
        except _AuthRefused as refused:
            self.stop.set()
            outcome = _Outcome(item.path, problem=str(refused))
        except LockmirrorError as error:  # this file only: the others go on
            outcome = _Outcome(item.path, problem=str(error))
        except Exception as error:  # noqa: BLE001 - a worker's failure must be reported, not lost
            text = redact_text(f"{type(error).__name__}: {error}".splitlines()[0])
            outcome = _Outcome(item.path, problem=f"{item.path}: {text}")
        with self.lock:
            del self.prepared[item.path]  # its metadata need not stay in memory
            self.outcomes.append(outcome)
            done, total = len(self.outcomes), len(self.items)
        verb = "uploaded" if outcome.uploaded else "present" if outcome.present else "refused"
        self.publisher.progress(ProgressEvent(f"{verb} {item.path.rsplit('/', 1)[-1]}", done,
                                              total, detail=True))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            self.stop.set()
        self.pool.shutdown(wait=True, cancel_futures=kind is not None)
        self.finished.set()  # nothing prepared ahead is needed any more
        self.preparing.shutdown(wait=True, cancel_futures=True)


class UploadPublisher:
    """The upload-API implementation of :class:`lockmirror.publish.Publisher`."""

    def __init__(self, destination: UploadDestination, *, jobs: int = DEFAULT_JOBS,
                 progress: Progress = no_progress,
                 environ: Mapping[str, str] | None = None) -> None:
        self.destination = destination
        self.url = destination.url
        self.simple_url = simple_url_for(destination)
        self.display = redact_url(destination.url)
        self.jobs = max(1, jobs)
        self.progress = progress
        self.credentials = upload_credentials(destination, environ)
        prefixes = {_origin(self.url), _origin(self.simple_url)}
        creds = {prefix: self.credentials for prefix in prefixes} if self.credentials else {}
        # Pages are read without credentials until the repository asks for them
        # (HTTP 401): many serve reads anonymously, and checking a password costs
        # servers such as pypiserver (htpasswd) real time on every request.
        self.session = make_session(retries=3, pool_size=max(self.jobs, 8) + 2)
        self._read_auth = PrefixAuth(creds) if creds else None
        self._reads_need_auth = threading.Event()
        # POST bodies are streamed, so urllib3 must not replay them: retried here instead.
        self.post_session = make_session(retries=0, timeout=(10, 600), pool_size=self.jobs + 2,
                                         credentials=creds)
        _larger_body_chunks(self.post_session)
        self._local = threading.local()

    # ------------------------------------------------------------------
    # what the repository holds
    # ------------------------------------------------------------------

    def repository_files(self, project: str) -> dict[str, DistFile]:
        """Filename -> file on the repository's simple page of ``project`` ({} if absent).

        Redirects are followed within the repository's origin only: a
        redirect elsewhere (pypiserver's fallback to PyPI) means absent here.
        Raises PublishError for refused credentials or an unreachable server.
        """
        url = f"{self.simple_url}{project}/"
        for _ in range(6):
            auth = self._read_auth if self._reads_need_auth.is_set() else None
            try:
                response = self.session.get(url, headers={"Accept": ACCEPT},
                                            allow_redirects=False, auth=auth)
            except requests.RequestException as error:
                raise self._unreachable(error, url) from None
            if response.status_code == 401 and auth is None and self._read_auth is not None:
                response.close()
                self._reads_need_auth.set()  # from now on every read sends them
                continue
            if response.is_redirect:
                target = urljoin(url, response.headers.get("Location", ""))
                response.close()
                if _origin(target) != _origin(url):
                    return {}
                url = target
                continue
            break
        else:
            raise PublishError("too many redirects", where=redact_url(url))
        status = response.status_code
        if status in (404, 410):
            if self._devpi_simple_url(response):
                return self.repository_files(project)
            return {}
        if status in (401, 403):
            raise PublishError(f"the credentials were refused reading {redact_url(url)} "
                               f"(HTTP {status})", where=self.display,
                               hint=self._credentials_hint())
        if status >= 400:
            raise PublishError(f"reading {redact_url(url)} failed (HTTP {status} "
                               f"{response.reason})", where=self.display)
        kind = response.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            if kind == "application/vnd.pypi.simple.v1+json" or kind.endswith("+json"):
                page = parse_json_page(response.content, response.url, canonicalize_name(project),
                                       self.display)
            else:
                page = parse_html_page(response.text, response.url, canonicalize_name(project),
                                       self.display)
        except LockmirrorError as error:
            raise PublishError(f"cannot read the repository's page ({error.message})",
                               where=redact_url(url)) from None
        return {file.filename: file for file in page.files}

    def _devpi_simple_url(self, response: requests.Response) -> bool:
        """devpi serves an index's pages under ``<index>/+simple/``: switch there when the
        default ``<url>/simple/`` was guessed and a devpi server answered 404."""
        guessed = not self.destination.simple_url and self.simple_url.endswith("/simple/")
        if guessed and any(name.lower().startswith("x-devpi") for name in response.headers):
            self.simple_url = self.url.rstrip("/") + "/+simple/"
            return True
        return False

    def _remote_sha256(self, file: DistFile) -> str | None:
        """The page's sha256, else the hash of the downloaded file (pages without hashes)."""
        if file.sha256:
            return file.sha256
        digest = hashlib.sha256()
        try:
            with self.session.get(file.url, stream=True) as response:
                if response.status_code >= 400:
                    return None
                for chunk in response.iter_content(1 << 20):
                    digest.update(chunk)
        except requests.RequestException as error:
            raise self._unreachable(error, file.url) from None
        return digest.hexdigest()

    def plan(self, tree: SourceTree, *, prune: bool = False) -> Plan:
        """Read each project's page (in parallel) and compare. Costs one GET per
        project (plus a download for a same-named file the page gives no hash for)."""
        self._refuse_prune(prune)
        return self._compare(tree)

    def run(self, tree: SourceTree, *, prune: bool = False) -> PublishResult:
        """:meth:`plan`, then :meth:`apply`, with the first missing files prepared
        (twine imported, files read and hashed) while the pages are still read.

        The pages are all read before the first upload, on purpose: servers such
        as pypiserver build each page by scanning every stored file, so pages read
        while uploads land get dearer (measured: overlapping them was slower).
        Raises as :meth:`apply`."""
        self._refuse_prune(prune)
        uploads = _Uploads(self, tree)
        # twine's Repository announces each upload on stdout; a stage must not print
        with contextlib.redirect_stdout(io.StringIO()), uploads:
            plan = self._compare(tree, on_missing=uploads.prepare)
            uploads.submit_all(plan.upload)
        return self._result(plan, uploads)

    def apply(self, tree: SourceTree, plan: Plan, *, prune: bool = False) -> PublishResult:
        """Upload what the repository lacks, file by file (``jobs`` at a time).

        Raises PublishError after trying every file when any was refused or
        conflicts (naming them and what was uploaded), at once for refused
        credentials. Costs one POST per missing file, plus a page read for
        each file the server refuses.
        """
        self._refuse_prune(prune)
        uploads = _Uploads(self, tree)
        # twine's Repository announces each upload on stdout; a stage must not print
        with contextlib.redirect_stdout(io.StringIO()), uploads:
            uploads.submit_all(plan.upload)
        return self._result(plan, uploads)

    def _refuse_prune(self, prune: bool) -> None:
        if prune:
            raise PublishError("--prune is not possible here: the upload API cannot delete",
                               where=self.display, hint="remove files in the repository's UI")

    def _compare(self, tree: SourceTree,
                 on_missing: Callable[[Item], None] | None = None) -> Plan:
        artifacts = tree.artifacts()
        by_project: dict[str, list[Item]] = {}
        for item in artifacts:
            by_project.setdefault(item.path.split("/")[1], []).append(item)
        projects = sorted(by_project)
        upload: list[Item] = []
        present: list[Item] = []
        conflicts: list[str] = []

        def compare(project: str, page: dict[str, DistFile]) -> None:
            for item in by_project[project]:
                remote = page.get(item.path.rsplit("/", 1)[-1])
                if remote is None:
                    upload.append(item)
                    if on_missing is not None:
                        on_missing(item)
                elif self._remote_sha256(remote) == item.sha256:
                    present.append(item)
                else:
                    conflicts.append(item.path.rsplit("/", 1)[-1])

        if projects:  # the first alone: a wrong password or URL fails once, not per project
            compare(projects[0], self.repository_files(projects[0]))
        # page reads are small and the server's work: more at once than uploads
        with ThreadPoolExecutor(max(self.jobs, 8)) as pool:
            reads = {pool.submit(self.repository_files, project): project
                     for project in projects[1:]}
            try:
                for future in as_completed(reads):
                    compare(reads[future], future.result())
            except BaseException:
                for pending in reads:
                    pending.cancel()
                raise
        order = {item.path: index for index, item in enumerate(artifacts)}
        upload.sort(key=lambda item: order[item.path])
        present.sort(key=lambda item: order[item.path])
        return Plan(destination=self.display, upload=tuple(upload), present=tuple(present),
                    conflicts=tuple(sorted(conflicts)))

    def _result(self, plan: Plan, uploads: _Uploads) -> PublishResult:
        order = {item.path: index for index, item in enumerate(plan.upload)}
        outcomes = sorted(uploads.outcomes, key=lambda outcome: order[outcome.path])
        result = PublishResult(destination=self.display, plan=plan, dry_run=False,
                               uploaded=tuple(o.path for o in outcomes if o.uploaded),
                               found_present=tuple(o.path for o in outcomes if o.present))
        if uploads.stop.is_set():
            refused = next(o.problem for o in outcomes if o.problem)
            raise PublishError(str(refused), where=self.display, hint=self._credentials_hint())
        problems = [o.problem for o in outcomes if o.problem] + [
            f"{name}: the repository holds other bytes under this name" for name in plan.conflicts]
        if problems:
            raise PublishError(f"{plural(len(problems), 'file')} not published "
                               f"({result.summary()}): "
                               f"{first_lines(problems)}", where=self.display,
                               hint="a conflict needs a new version or a removal by hand"
                               if plan.conflicts else None)
        return result

    def _upload_one(self, tree: SourceTree, item: Item, prepared: _Prepared) -> _Outcome:
        path = tree.root / item.source
        filename = path.name
        project = item.path.split("/")[1]
        last = "no attempt made"
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(0.5 * 2 ** (attempt - 1))
                # a failed answer may follow a stored upload: look before sending again
                settled = self._settled(project, filename, item)
                if settled is not None:
                    return settled
            try:
                response = self._send(path, prepared)
            except (requests.ConnectionError, requests.Timeout) as error:
                last = network_error(error, self.url).message
                continue
            status = response.status_code
            text = _reason(response)
            response.close()
            if 200 <= status < 300:
                return _Outcome(item.path, uploaded=True)
            if status in (401, 403):
                raise _AuthRefused(f"the credentials were refused uploading {filename} "
                                   f"(HTTP {status}{': ' + text if text else ''})")
            last = f"HTTP {status}{': ' + text if text else ''}"
            if status >= 500 or status == 429:
                continue
            # 400/409/...: "exists" in some wording, or a real refusal
            settled = self._settled(project, filename, item)
            if settled is not None:
                return settled
            return _Outcome(item.path, problem=f"{filename}: refused ({last})")
        return _Outcome(item.path, problem=f"{filename}: failed after {ATTEMPTS} attempts "
                                           f"({last})")

    def _settled(self, project: str, filename: str, item: Item) -> _Outcome | None:
        """Present with our bytes -> success; with other bytes -> a conflict; else None."""
        remote = self.repository_files(project).get(filename)
        if remote is None:
            return None
        if self._remote_sha256(remote) == item.sha256:
            return _Outcome(item.path, present=True)
        return _Outcome(item.path, problem=f"{filename}: the repository holds other bytes "
                                           "under this name")

    def _prepare(self, tree: SourceTree, item: Item) -> _Prepared:
        """Read, hash and check one file for :meth:`_send` (once, whatever the retries):
        twine's PackageFile when twine accepts the file, else the direct upload's
        fields. Raises IntegrityError when its sha256 is not the manifest's,
        PublishError when it has no readable metadata."""
        # twine.repository is imported here too, by the preparing thread while pages
        # are still read, not by the first upload (rich, rfc3986...: ~0.1 s of CPU)
        import twine.repository  # noqa: F401
        from twine.exceptions import InvalidDistribution, TwineException
        from twine.package import PackageFile

        path = tree.root / item.source
        try:
            package = PackageFile.from_filename(str(path), comment=None)
        except (InvalidDistribution, TwineException, ValueError):
            package = None
        if package is not None:
            if package.sha2_digest != item.sha256:
                raise _integrity(path, str(package.sha2_digest), item)
            return _Prepared(package=package)
        return _Prepared(fields=tuple(legacy_upload_fields(path, core_metadata(path),
                                                           item.sha256)))

    def _send(self, path: Path, prepared: _Prepared) -> requests.Response:
        """POST one prepared file: through twine when it accepts the file, else directly."""
        if prepared.package is not None:
            # one POST: twine would re-post on every 5xx itself; our retry loop looks
            # at the page first, since a failed answer may follow a stored upload
            response: requests.Response = self._repository().upload(prepared.package,
                                                                    max_redirects=1)
            return response
        from requests_toolbelt import MultipartEncoder  # type: ignore[import-untyped]

        with open(path, "rb") as handle:
            encoder = MultipartEncoder(
                [*prepared.fields, ("content", (path.name, handle, "application/octet-stream"))])
            return self.post_session.post(self.url, data=encoder, allow_redirects=False,
                                          headers={"Content-Type": encoder.content_type})

    def _repository(self) -> Any:
        """One twine Repository (one connection pool) per worker thread."""
        repository = getattr(self._local, "repository", None)
        if repository is None:
            from twine.repository import Repository

            username, password = self.credentials or (None, None)
            repository = Repository(self.url, username, password, disable_progress_bar=True)
            _larger_body_chunks(repository.session)
            self._local.repository = repository
        return repository

    def _unreachable(self, error: BaseException, url: str) -> PublishError:
        return PublishError(network_error(error, url).message, where=self.display,
                            hint="check the repository URL and that it is running")

    def _credentials_hint(self) -> str:
        user = self.destination.username_env or "TWINE_USERNAME"
        password = self.destination.password_env or "TWINE_PASSWORD"
        return f"check {user}/{password}" + (" or the keyring" if self.destination.keyring else "")


def _larger_body_chunks(session: requests.Session) -> None:
    """Send request bodies in BODY_CHUNK pieces. A multipart body is read through
    requests_toolbelt's encoder in Python, once per chunk: with urllib3's 16 KiB
    chunks, sending the benchmark's twelve 3-15 MB wheels cost the client 0.19 s
    of CPU, with 256 KiB 0.07 s. Only a connection pool setting of the session's
    own adapters (set before any connection): the request itself is unchanged."""
    for adapter in session.adapters.values():
        manager = getattr(adapter, "poolmanager", None)
        if manager is not None:
            manager.connection_pool_kw["blocksize"] = BODY_CHUNK


def _reason(response: requests.Response) -> str:
    """The server's one-line reason (reason phrase, else the first body line)."""
    text = ""
    try:
        body = response.text.strip()
        text = next((line.strip() for line in body.splitlines() if line.strip()
                     and not line.lstrip().startswith("<")), "")
    except (requests.RequestException, UnicodeDecodeError):
        pass
    text = text or response.reason or ""
    return redact_text(text)[:200]


def _integrity(path: Path, actual: str, item: Item) -> IntegrityError:
    return IntegrityError(f"sha256 is {actual}, manifest.json says {item.sha256}",
                          where=str(path), hint="rebuild or re-import the index")


__all__ = ["UploadPublisher", "core_metadata", "legacy_upload_fields", "simple_url_for",
           "upload_credentials"]
