"""A deployed mirror named by ``check-install --index-url``: its URL, and what is read from it.

:func:`parse_index_url` checks the URL before anything runs (no credentials in
it; the path gets its trailing ``/``, a query is kept and sent on, never
printed). :class:`DeployedInputs` reads the mirror's own
``lockfiles/pylock.<set>.toml`` and ``constraints/<set>-<target>.txt`` from
beside its ``simple/``, with the one HTTP session: each compared with the
local directory's copy when there is one, else with the sha256 the mirror's
``manifest.json`` lists. A file the mirror lacks, or one that differs, is a
reason (a failed check), not a pass. :meth:`DeployedInputs.files_check` asks
the mirror for the files a target this machine is not would install (uv's dry
run of the lockfile, given their URLs, reads none of them).
:meth:`DeployedInputs.tree_absent` tells such a mirror from an upload repository
(pypiserver, Nexus), which serves its pages and packages and nothing beside them:
there the local directory's lockfiles and constraints say what must install.
"""

from __future__ import annotations

import dataclasses
import hashlib
import posixpath
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit
from urllib.request import url2pathname

import requests

from ..errors import InputError, LockmirrorError
from ..formats.lockfile import Lockfile
from ..redaction import carries_credentials
from .install_runs import Check, Where

if TYPE_CHECKING:
    from ..targets import TargetRecord

_NOT_FOUND = (404, 410)
FILES_STEP = "read the files the lockfile installs (given)"
_NAMED = 3  # missing files a failed check names; the rest are counted
NO_TREE = "the index serves no lockfiles/ (an upload repository?): no lockfile to install from"


@dataclass(frozen=True)
class DeployedMirror:
    """Where a deployed mirror's pages and tree are."""

    simple: str  # the simple index as given, its path ending in "/", its query kept
    root: str | None  # the tree beside simple/ (no query); None: the URL does not end in simple/
    query: str  # the given URL's query ("": none), sent with every request to the mirror
    shown: str  # the simple index as messages print it: no user info, no query

    def url(self, relative: str) -> str:
        """The URL of ``relative`` (``lockfiles/...``) in the tree, with the query."""
        assert self.root is not None
        return self.root + relative + (f"?{self.query}" if self.query else "")

    def show(self, relative: str) -> str:
        """:meth:`url` as messages print it."""
        return self.shown.removesuffix("simple/") + relative

    def page(self, project: str) -> str:
        """The URL of a project page of the simple index (its root page for "")."""
        path = urlsplit(self.simple)
        return urlunsplit(path._replace(path=path.path + (f"{project}/" if project else "")))

    def scrub(self, text: str) -> str:
        """``text`` without the query (an access token, perhaps)."""
        return text.replace(self.query, "...") if self.query else text

    def failure(self, error: LockmirrorError | requests.RequestException,
                url: str) -> LockmirrorError:
        """``error`` of the request for ``url`` (a URL of this mirror, with the query) as
        the one-line error to raise: a requests error as net.http's NetworkError, ``url``
        named without its query, and no query in the message, the place or the hint."""
        shown = url.replace(f"?{self.query}", "") if self.query else url
        if isinstance(error, requests.RequestException):
            from ..net.http import network_error

            error = network_error(error, shown)  # names the URL requests asked for, no query

        def clean(text: str) -> str:
            return self.scrub(text.replace(url, shown))

        return type(error)(clean(error.message), where=error.where and clean(error.where),
                           hint=error.hint and clean(error.hint))

    def scrub_check(self, check: Check) -> Check:
        if not self.query:
            return check
        return dataclasses.replace(check, detail=self.scrub(check.detail),
                                   requirement=check.requirement and self.scrub(check.requirement))


def parse_index_url(url: str) -> DeployedMirror:
    """The mirror at ``url``; InputError (exit 2) naming ``--index-url`` for a URL
    that is not http(s) or file, or that carries credentials (check-install would
    hand them to every installer and write them into the lockfile copy uv reads)."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError as exc:  # of the host part, which urlsplit quotes, user:password@ too
        reason = "its host part does not parse" if "@" in url else str(exc)
        raise InputError(f"not a URL: {reason}", where="--index-url") from None
    if parts.scheme not in ("http", "https", "file") or (parts.scheme != "file"
                                                         and not parts.hostname):
        raise InputError("not an http(s) or file URL", where="--index-url",
                         hint="give the mirror's simple index, e.g. "
                              "https://mirror.internal/simple/")
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + port
    if carries_credentials(url):
        raise InputError(
            f"{parts.scheme}://{netloc}{parts.path}: the URL carries credentials "
            "(user:password@), which check-install does not pass to installers",
            where="--index-url",
            hint="give a URL the mirror answers without credentials, e.g. run "
                 "`lockmirror check-install` on a host it serves openly, or on a copy "
                 "of its directory")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    base = f"{parts.scheme}://{netloc}"
    root = f"{base}{path.removesuffix('simple/')}" if path.endswith("/simple/") else None
    return DeployedMirror(simple=urlunsplit(parts._replace(path=path, fragment="")),
                          root=root, query=parts.query, shown=base + path)


class DeployedInputs:
    """The deployed mirror's lockfiles and constraints, each read once (bytes kept
    for the run) and put into a run's directory on demand."""

    def __init__(self, mirror: DeployedMirror, local_dir: Path | None,
                 session: requests.Session) -> None:
        self.mirror = mirror
        self.local_dir = local_dir  # its copies are what the mirror's must equal
        self.session = session
        self.listed: dict[str, str] = {}  # relative path -> sha256, from its manifest.json
        self._read: dict[str, bytes | str] = {}

    def lockfiles(self) -> list[Lockfile]:
        """Every lockfile the mirror's ``manifest.json`` lists (no local directory
        to read them from). LockmirrorError when the mirror has no manifest, lists
        no lockfile, or a lockfile it lists is missing or differs."""
        from ..formats.manifest import Manifest

        data = self._get("manifest.json")
        if data is None:
            raise LockmirrorError(
                f"the deployed mirror has no manifest.json ({self.mirror.show('manifest.json')}: "
                "not found)", where="--index-url",
                hint="give the simple/ URL of a mirror `lockmirror import` wrote, or for an "
                     "upload repository (pypiserver, Nexus), which serves no lockfiles, the "
                     "dist-index published to it as the directory")
        manifest = Manifest.loads(data, where=self.mirror.show("manifest.json"))
        self.listed = {path: entry.sha256 for path, entry in manifest.files.items()}
        names = sorted(p for p in self.listed
                       if p.startswith("lockfiles/pylock.") and p.endswith(".toml"))
        if not names:
            raise LockmirrorError("the deployed mirror's manifest.json lists no "
                                  "lockfiles/pylock.*.toml", where=self.mirror.shown,
                                  hint="import a bundle that carries its lockfiles")
        found = []
        for name in names:
            text = self.read(name)
            if isinstance(text, str):
                raise LockmirrorError(text)
            where = self.mirror.show(name)
            try:
                found.append(Lockfile.loads(text.decode("utf-8"), where=where))
            except UnicodeDecodeError as exc:
                raise InputError(f"cannot read the lockfile: {exc}", where=where) from None
        return found

    def tree_absent(self, relatives: Sequence[str], index_dir: Path) -> str | None:
        """None when the mirror serves lockmirror's tree beside its ``simple/``: its
        ``manifest.json`` or one of ``relatives`` (the lockfiles and constraints the run
        reads) is there. Otherwise (each not found, as at an upload repository, which
        serves what was uploaded and nothing else) the note saying so, and that the
        sets are checked against its pages, pinned by ``index_dir``'s constraints. One
        request each, up to the first found; errors as :meth:`read`."""
        if self.listed or any(self._get(relative) is not None  # each path asked once
                              for relative in dict.fromkeys(("manifest.json", *relatives))):
            return None
        return (f"the index at {self.mirror.shown} serves no lockfiles/ or constraints/ (an "
                "upload repository such as pypiserver or Nexus?): checking the sets' "
                f"requirements against its pages, pinned by {index_dir}/constraints/")

    def read(self, relative: str) -> bytes | str:
        """The bytes of ``relative`` in the mirror's tree, or why they cannot be used:
        the mirror lacks it, or it differs from the local copy (or the manifest's sha256)."""
        if relative not in self._read:
            self._read[relative] = self._checked(relative)
        return self._read[relative]

    def place(self, relative: str, directory: Path) -> Path | str:
        """:meth:`read`, written to ``directory/relative`` (the path, or the reason)."""
        data = self.read(relative)
        if isinstance(data, str):
            return data
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def files_check(self, where: Where, target: TargetRecord) -> Check:
        """Whether the mirror serves every file ``target`` installs from its lockfile
        of ``where.set_name`` (read by :meth:`read`; packaging's ``Pylock.select``
        picks them for the target's marker environment and tags, as an installer
        there would): a failed check names those it lacks. One HEAD request per file;
        errors as :meth:`read`."""
        from packaging.pylock import Pylock, PylockSelectError, PylockValidationError

        from ..formats.bounded import load_toml
        from ..targets import Target

        relative = f"lockfiles/pylock.{where.set_name}.toml"
        data = self.read(relative)
        if isinstance(data, str):
            return where.check(FILES_STEP, ok=False, detail=data)
        chosen = Target.of_locked(target)
        try:
            lock = Pylock.from_dict(load_toml(data.decode("utf-8"), where=relative))
            # the mirror's copies name each file by a path relative to lockfiles/
            files = [posixpath.normpath(f"lockfiles/{dist.path}") for _, dist in
                     lock.select(environment=chosen.environment(),  # type: ignore[arg-type]
                                 tags=chosen.tags) if dist.path]
        except (PylockValidationError, PylockSelectError) as exc:
            return where.check(FILES_STEP, ok=False, detail=f"cannot tell which files "
                               f"{self.mirror.show(relative)} installs for the target: {exc}")
        started = time.perf_counter()
        lacking = [f"{file} ({self.mirror.show(file)}: {why})"
                   for file, why in ((file, self._answer(file)) for file in files) if why]
        seconds = time.perf_counter() - started
        if not lacking:
            return where.check(FILES_STEP, ok=True, detail=f"{len(files)} files",
                               seconds=seconds)
        more = f"; and {len(lacking) - _NAMED} more" if len(lacking) > _NAMED else ""
        return where.check(FILES_STEP, ok=False, seconds=seconds, detail="the deployed mirror "
                           "has no " + "; ".join(lacking[:_NAMED]) + more)

    def landing_data(self) -> bytes | None:
        """The mirror's ``landing.json`` (its landing page's data: which locked releases
        it quarantined); None when it serves none or cannot be asked. One request."""
        from ..formats.landing_page import LANDING_DATA

        try:
            return self._get(LANDING_DATA)
        except LockmirrorError:  # only for a hint: the run's own errors are said elsewhere
            return None

    def _answer(self, relative: str) -> str | None:
        """Why the mirror does not serve ``relative`` (None: it does); one HEAD request."""
        url = self.mirror.url(relative)
        if url.startswith("file:"):
            return None if Path(url2pathname(urlsplit(url).path)).is_file() else "not found"
        from ..net.redirects import follow

        try:
            with follow(self.session, url, method="HEAD") as response:  # the session's timeout
                status = response.status_code
        except (LockmirrorError, requests.RequestException) as exc:  # elsewhere; no answer
            raise self.mirror.failure(exc, url) from None
        return None if status < 300 else "not found" if status in _NOT_FOUND else f"HTTP {status}"

    def _checked(self, relative: str) -> bytes | str:
        data = self._get(relative)
        if data is None:
            return (f"the deployed mirror has no {relative} "
                    f"({self.mirror.show(relative)}: not found)")
        local = self.local_dir / relative if self.local_dir is not None else None
        if local is not None and local.is_file():
            if local.read_bytes() != data:
                return f"{self.mirror.show(relative)} differs from {local}"
        elif relative in self.listed and hashlib.sha256(data).hexdigest() != self.listed[relative]:
            return (f"{self.mirror.show(relative)} does not match the sha256 the mirror's "
                    "manifest.json lists")
        return data

    def _get(self, relative: str) -> bytes | None:
        """The bytes at ``relative`` (None: not found); errors as :func:`~lockmirror.net.http.get`,
        naming the URL without its query."""
        url = self.mirror.url(relative)
        if url.startswith("file:"):
            try:
                return Path(url2pathname(urlsplit(url).path)).read_bytes()
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise LockmirrorError(f"cannot read {self.mirror.show(relative)}: "
                                      f"{exc.strerror}") from None
        from ..net.http import get

        try:
            with get(self.session, url, allow=_NOT_FOUND) as response:
                return None if response.status_code in _NOT_FOUND else response.content
        except (LockmirrorError, requests.RequestException) as exc:  # requests': the body broke
            raise self.mirror.failure(exc, url) from None


def read_lockfiles(index_dir: Path, mirror: DeployedMirror | None, session: requests.Session
                   ) -> tuple[list[Lockfile], DeployedInputs | None]:
    """The lockfiles naming the sets, and the deployed mirror's inputs (None: the
    directory's are installed from). With no lockfiles in ``index_dir``, those
    of the deployed mirror. LockmirrorError when neither has any."""
    paths = sorted((index_dir / "lockfiles").glob("pylock.*.toml"))
    if paths:
        inputs = (DeployedInputs(mirror, index_dir, session)
                  if mirror is not None and mirror.root is not None else None)
        return [Lockfile.read(path) for path in paths], inputs
    if mirror is None:
        raise LockmirrorError("holds no lockfiles/pylock.*.toml", where=str(index_dir),
                              hint="build the index with `doit index`")
    if mirror.root is None:
        raise InputError(f"{mirror.shown} does not end in /simple/, so the deployed mirror's "
                         f"lockfiles are not known, and {index_dir} holds none",
                         where="--index-url", hint="give the mirror's .../simple/ URL")
    inputs = DeployedInputs(mirror, None, session)
    return inputs.lockfiles(), inputs


def probe(mirror: DeployedMirror, requirements: Sequence[str]) -> None:
    """One request to a deployed mirror (a project page of the first requirement),
    so a mirror nobody answers for is one line naming it, not every installer's
    guess; UnreachableError or NetworkError. Any HTTP answer is left to the
    installers."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    from ..net.http import get, make_session

    try:
        project = canonicalize_name(Requirement(requirements[0]).name) if requirements else ""
    except InvalidRequirement:  # the root page then
        project = ""
    url = mirror.page(project)
    try:
        with make_session(retries=1) as session:
            # a redirect is an answer too; where it leads is the installers' business
            get(session, url, allow=range(300, 600), timeout=(10, 30), redirects=False).close()
    except LockmirrorError as exc:
        raise mirror.failure(exc, url) from None
