"""Publish through the legacy upload API: Nexus, devpi, pypiserver, Artifactory, PyPI.

What the repository already holds is established by lockmirror itself:
servers answer a duplicate upload differently (pypiserver 409, or 400 when
the client says it is twine; devpi 200 or 409; Nexus 400) and twine 7
refuses ``--skip-existing`` for anything but PyPI. So the repository's
simple page of each project is read first (:mod:`.upload_repository`), and
only files it lacks are uploaded. A file it holds under the same name with
other bytes is a conflict: never overwritten, reported loudly. An "already
exists" answer counts as success only when the page then shows the file
with our sha256.

Each file is hashed, checked against the manifest's sha256, and posted
as a ``:action=file_upload`` form built from its own core metadata
(:mod:`.upload_form`), ``jobs`` files at a time (network concurrency: the
repository works on one file while the next is sent). The body streams from
the disk (memory does not grow with the file) and is seekable, so that
urllib3's ``Retry`` of :func:`lockmirror.net.http.make_session`, the one retry
policy, rewinds it and sends it again after a connection error, 5xx or 429.
One refused file never blocks the others; refused credentials stop at the
first 401/403, a URL that takes no uploads at the first 404/405.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import requests

from ..config_schema import UploadDestination
from ..errors import IntegrityError, LockmirrorError, PublishError, UnreachableError
from ..formats.core_metadata import parse_metadata, read_metadata
from ..fsutil import plural
from ..net.http import make_session, network_error, retries_made, timed_out
from ..net.index_client import DistFile
from ..net.publish_timeouts import (
    ATTEMPTS,
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    UPLOAD_ANSWER_TIMEOUT,
)
from ..net.redirects import origin
from ..redaction import redact_text, redact_url
from .tree import (
    Item,
    Plan,
    Progress,
    ProgressEvent,
    PublishResult,
    SourceTree,
    first_lines,
    no_progress,
)
from .upload_form import UploadBody, file_digests, upload_fields
from .upload_repository import (
    RepositoryPages,
    auth_failure,
    http_answer,
    missing_credentials,
    simple_url_for,
    upload_credentials,
)

DEFAULT_JOBS = 2  # uploads in flight: two keep a repository busy; four crowded pypiserver
POST_RETRIES = ATTEMPTS - 1  # the publish policy, as S3's (net/publish_timeouts.py)


@dataclass(frozen=True)
class _Outcome:
    path: str
    uploaded: bool = False
    present: bool = False       # the server said "exists" and holds our bytes
    problem: str | None = None
    refused: bool = False       # the problem is the server's HTTP answer (not a failure to ask)

    def progress_text(self) -> str:
        """``uploaded F``, ``present F``, ``refused F`` (the server said no) or ``failed F:
        REASON`` (it was not reached, or failed to answer)."""
        name = self.path.rsplit("/", 1)[-1]
        if self.uploaded or self.present:
            return f"{'uploaded' if self.uploaded else 'present'} {name}"
        if self.refused:
            return f"refused {name}"
        return f"failed {name}: {(self.problem or '').removeprefix(name + ': ')}"


class _StopAll(Exception):
    """No other file can be published either (401/403/404/405 on an upload, or
    nobody answers): every other upload stops, and this is the error."""

    def __init__(self, error: LockmirrorError, *, answered: bool = True) -> None:
        super().__init__(str(error))
        self.error = error
        self.answered = answered  # an HTTP answer refused it (not: nobody answered)


class UploadPublisher:
    """The upload-API implementation of :class:`lockmirror.publish.Publisher`."""

    def __init__(self, destination: UploadDestination, *, jobs: int = DEFAULT_JOBS,
                 progress: Progress = no_progress,
                 environ: Mapping[str, str] | None = None,
                 read_timeout: float = READ_TIMEOUT,
                 upload_answer_timeout: float = UPLOAD_ANSWER_TIMEOUT) -> None:
        self.destination = destination
        self.url = destination.url
        self.display = redact_url(destination.url)
        self.jobs = max(1, jobs)
        self.progress = progress
        self.credentials = upload_credentials(destination, environ)
        self.missing = missing_credentials(destination, self.credentials, environ)
        self.pages = RepositoryPages(destination, self.credentials, display=self.display,
                                     missing=self.missing, pool_size=max(self.jobs, 8) + 2,
                                     read_timeout=read_timeout)
        creds = {origin(self.url): self.credentials} if self.credentials else {}
        # the answer to a POST comes once the whole file is sent and the repository has
        # checked it: a longer wait than the pages' (net/publish_timeouts.py)
        self.post_session = make_session(retries=POST_RETRIES, retry_reads=False,
                                         timeout=(CONNECT_TIMEOUT, upload_answer_timeout),
                                         pool_size=self.jobs + 2, credentials=creds)
        self._refused: LockmirrorError | None = None  # why no upload can succeed: stop
        self._lock = threading.Lock()

    @property
    def simple_url(self) -> str:
        return self.pages.simple_url

    def repository_files(self, project: str) -> dict[str, DistFile]:
        """Filename -> file on the repository's page of ``project``; see
        :meth:`RepositoryPages.files`."""
        return self.pages.files(project)

    # ------------------------------------------------------------------
    # planning
    # ------------------------------------------------------------------

    def plan(self, tree: SourceTree, *, prune: bool = False) -> Plan:
        """Read each project's page (in parallel) and compare. Costs one GET per
        project (plus a download for a same-named file the page gives no hash for).
        The first page is read alone: a wrong password or URL fails once, not per
        project."""
        self._refuse_prune(prune)
        artifacts = tree.artifacts()
        by_project: dict[str, list[Item]] = {}
        for item in artifacts:
            by_project.setdefault(item.path.split("/")[1], []).append(item)
        projects = sorted(by_project)
        pages: dict[str, dict[str, DistFile]] = {}
        if projects:
            # said before the first read: a server that never answers keeps the user
            # waiting through the session's timeouts and retries here
            guessed = self.simple_url
            self.progress(ProgressEvent(f"reading what the repository holds "
                                        f"({plural(len(projects), 'project')}, "
                                        f"{redact_url(guessed)})"))
            pages[projects[0]] = self.pages.files(projects[0])
            if self.simple_url != guessed:  # devpi's +simple/, found by the first read
                self.progress(ProgressEvent(f"{redact_url(guessed)} is not found: devpi's "
                                            f"pages are at {redact_url(self.simple_url)}, "
                                            "reading those"))
        # page reads are small and the server's work: more at once than uploads
        with ThreadPoolExecutor(max(self.jobs, 8)) as pool:
            reads = {pool.submit(self.pages.files, project): project
                     for project in projects[1:]}
            try:
                for future in as_completed(reads):
                    pages[reads[future]] = future.result()
            except BaseException:
                for pending in reads:
                    pending.cancel()
                raise
        upload: list[Item] = []
        present: list[Item] = []
        conflicts: list[str] = []
        for project in projects:
            for item in by_project[project]:
                remote = pages[project].get(item.path.rsplit("/", 1)[-1])
                if remote is None:
                    upload.append(item)
                elif self.pages.sha256(remote) == item.sha256:
                    present.append(item)
                else:
                    conflicts.append(f"{item.path.rsplit('/', 1)[-1]}: the repository holds "
                                     "other bytes under this name")
        return Plan(destination=self.display, upload=tuple(upload), present=tuple(present),
                    conflicts=tuple(sorted(conflicts)))

    def _refuse_prune(self, prune: bool) -> None:
        if prune:
            raise PublishError("--prune is not possible here: the upload API cannot delete",
                               where=self.display, hint="remove files in the repository's UI")

    # ------------------------------------------------------------------
    # applying
    # ------------------------------------------------------------------

    def run(self, tree: SourceTree, *, prune: bool = False) -> PublishResult:
        """:meth:`plan`, then :meth:`apply`. Raises as both."""
        return self.apply(tree, self.plan(tree, prune=prune), prune=prune)

    def apply(self, tree: SourceTree, plan: Plan, *, prune: bool = False) -> PublishResult:
        """Upload what the repository lacks, file by file (``jobs`` at a time).

        Raises PublishError after trying every file when any was refused or
        conflicts (naming them and what was uploaded), at once for refused
        credentials. Costs one POST per missing file (more when retried), plus
        a page read for each file the server refuses.
        """
        self._refuse_prune(prune)
        outcomes: list[_Outcome] = []
        if plan.upload:
            self.progress(ProgressEvent("uploading what the repository lacks"))
            pool = ThreadPoolExecutor(self.jobs)
            try:
                futures = [pool.submit(self._upload_one, tree, item) for item in plan.upload]
                for done, future in enumerate(as_completed(futures), 1):
                    outcome = future.result()
                    if outcome is None:  # not tried: credentials refused, or nobody answers
                        continue
                    outcomes.append(outcome)
                    self.progress(ProgressEvent(outcome.progress_text(), done,
                                                len(plan.upload), detail=True))
            finally:  # Ctrl-C: the uploads under way finish, the queued ones never start
                pool.shutdown(wait=True, cancel_futures=True)
        return self._result(plan, outcomes)

    def _result(self, plan: Plan, outcomes: list[_Outcome]) -> PublishResult:
        order = {item.path: index for index, item in enumerate(plan.upload)}
        outcomes = sorted(outcomes, key=lambda outcome: order[outcome.path])
        result = PublishResult(destination=self.display, plan=plan, dry_run=False,
                               uploaded=tuple(o.path for o in outcomes if o.uploaded),
                               found_present=tuple(o.path for o in outcomes if o.present))
        if self._refused is not None:
            raise self._refused
        problems = [o.problem for o in outcomes if o.problem] + list(plan.conflicts)
        if problems:
            raise PublishError(f"{plural(len(problems), 'file')} not published "
                               f"({result.summary()}): "
                               f"{first_lines(problems)}", where=self.display,
                               hint="a conflict needs a new version or a removal by hand"
                               if plan.conflicts else None)
        return result

    def _upload_one(self, tree: SourceTree, item: Item) -> _Outcome | None:
        """One file's outcome, None when it was not tried because the credentials were
        refused or the server is unreachable; never raises (a worker's failure is
        reported, not lost)."""
        if self._refused is not None:
            return None
        try:
            return self._post(tree, item)
        except _StopAll as refused:
            with self._lock:
                self._refused = self._refused or refused.error
            return _Outcome(item.path, problem=refused.error.message, refused=refused.answered)
        except LockmirrorError as error:  # this file only: the others go on
            return _Outcome(item.path, problem=str(error))
        except Exception as error:  # noqa: BLE001 - reported as this file's problem
            text = redact_text(f"{type(error).__name__}: {error}".splitlines()[0])
            return _Outcome(item.path, problem=f"{item.path}: {text}")

    def _post(self, tree: SourceTree, item: Item) -> _Outcome:
        """Hash, check and POST one file (streamed from the disk). Raises
        IntegrityError when its bytes are not the manifest's, MetadataError when it
        has no readable metadata, _StopAll for 401/403/404/405 or an unreachable server, OSError."""
        path = tree.root / item.source
        digests = file_digests(path)
        actual = digests["sha256_digest"]
        if actual != item.sha256:
            raise IntegrityError(f"sha256 is {actual}, manifest.json says {item.sha256}",
                                 where=str(path), hint="rebuild or re-import the index")
        fields = upload_fields(path.name, digests, parse_metadata(read_metadata(path)))
        try:
            with UploadBody(fields, path) as body:
                response = self.post_session.post(
                    self.url, data=body, headers={"Content-Type": body.content_type},
                    allow_redirects=False)
        except requests.RequestException as error:
            silent = timed_out(error)  # sent, never answered: not re-sent (retry_reads)
            failure = network_error(error, self.url, retries=0 if silent else POST_RETRIES,
                                    doing="upload to",
                                    read_timeout=self.post_session.default_timeout[1])
            if silent or isinstance(failure, UnreachableError):  # the next would wait the same
                said = f"{path.name}: {failure.message}" if silent else failure.message
                raise _StopAll(PublishError(said, where=self.display,
                                            hint="nothing more was tried; publish again once "
                                                 "the repository answers: a file it took "
                                                 "meanwhile is found there, not sent again"),
                               answered=False) from None
            return _Outcome(item.path, problem=f"{path.name}: {failure.message}")
        status = response.status_code
        answer = http_answer(response)
        response.close()
        if 200 <= status < 300:
            return _Outcome(item.path, uploaded=True)
        if status in (401, 403):
            message, hint = auth_failure(f"uploading {path.name}", answer, self.missing,
                                         destination=self.destination,
                                         from_url=self.pages.from_url)
            raise _StopAll(PublishError(message, where=self.display, hint=hint))
        if status in (404, 405):  # no upload endpoint here: every other file would be the same
            raise _StopAll(PublishError(
                f"the URL takes no uploads: uploading {path.name} was answered {answer}",
                where=self.display, hint="check the upload URL (the repository's upload "
                                         "endpoint, not its simple index); nothing more was "
                                         "tried"))
        # 400/409/...: "exists" in some wording (perhaps after a retried POST that was
        # stored), or a real refusal; the page tells which
        settled = self._settled(item, path.name)
        if settled is not None:
            return settled
        retried = retries_made(response)
        after = f" after {retried} {'retry' if retried == 1 else 'retries'}" if retried else ""
        failed = status >= 500 or status == 429
        return _Outcome(item.path, problem=f"{path.name}: {'failed' if failed else 'refused'} "
                                           f"({answer}){after}", refused=not failed)

    def _settled(self, item: Item, filename: str) -> _Outcome | None:
        """Present with our bytes -> success; with other bytes -> a conflict; else None."""
        remote = self.pages.files(item.path.split("/")[1]).get(filename)
        if remote is None:
            return None
        if self.pages.sha256(remote) == item.sha256:
            return _Outcome(item.path, present=True)
        return _Outcome(item.path, problem=f"{filename}: the repository holds other bytes "
                                           "under this name", refused=True)


__all__ = ["UploadPublisher", "simple_url_for", "upload_credentials"]
