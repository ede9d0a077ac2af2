"""What an upload-API repository already holds, and who we are there.

:class:`RepositoryPages` reads the repository's simple page of a project
(PEP 691 JSON when offered, else PEP 503 HTML) through the session of
:func:`lockmirror.net.http.make_session` (its urllib3 ``Retry`` retries
connection errors, read timeouts, 5xx and 429, as
:mod:`lockmirror.net.publish_timeouts` says for every publish). Pages are read
without credentials until the repository asks for them (HTTP 401): many serve
reads anonymously, and checking a password costs servers such as pypiserver
(htpasswd) real time on every request.

Credentials come from the variables named by ``username_env`` /
``password_env`` (default ``TWINE_USERNAME`` / ``TWINE_PASSWORD``) or the
keyring; they travel only in Authorization headers, never in argv or text.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from http import HTTPStatus
from urllib.parse import urlsplit

import requests
from packaging.utils import canonicalize_name

from ..config_schema import UploadDestination
from ..errors import LockmirrorError, PublishError
from ..net.http import PrefixAuth, make_session, network_error
from ..net.index_client import DistFile, parse_html_page, parse_json_page
from ..net.publish_timeouts import ATTEMPTS, CONNECT_TIMEOUT, READ_TIMEOUT
from ..net.redirects import RedirectRefused, follow, origin
from ..redaction import redact_url
from .upload_answer import server_message

ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, " \
         "text/html;q=0.1"
Credentials = tuple[str, str]


def simple_url_for(destination: UploadDestination) -> str:
    """The repository's simple index: ``simple_url``, else ``<url>/simple/``
    (pypiserver, Nexus, Artifactory; devpi's ``<url>/+simple/`` is found on the
    first page read, see ``RepositoryPages._devpi_simple_url``)."""
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
        username, password = _from_keyring(destination.url, username)
    if username is None and password is None:
        return None
    if username is None:  # a token alone: the convention of PyPI, Nexus and Artifactory
        username = "__token__"
    return username, password or ""


def credential_variables(destination: UploadDestination) -> tuple[str, str]:
    """The names of the variables the credentials come from (username, password)."""
    return (destination.username_env or "TWINE_USERNAME",
            destination.password_env or "TWINE_PASSWORD")


def url_credentials(destination: UploadDestination, credentials: Credentials | None) -> bool:
    """Whether the requests carry the credentials written into the upload URL
    (``https://user:pw@host/``): they do when no variable or keyring gave any."""
    return credentials is None and urlsplit(destination.url).username is not None


def missing_credentials(destination: UploadDestination, credentials: Credentials | None,
                        environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The variables whose absence left the credentials empty ('' for none missing).

    No credentials at all: both unset variables (none when the URL holds
    credentials); a username without a password: the password's variable.
    What the keyring supplied is not missing.
    """
    env = os.environ if environ is None else environ
    user, password = credential_variables(destination)
    if url_credentials(destination, credentials):
        return ()
    if credentials is None:
        return tuple(v for v in (user, password) if v not in env)
    return (password,) if not credentials[1] and password not in env else ()


def auth_failure(doing: str, answer: str, missing: tuple[str, ...], *,
                 destination: UploadDestination, from_url: bool = False) -> tuple[str, str]:
    """(message, hint) for a 401/403: credentials that are missing (naming the
    variables) are told apart from credentials the server refused, and those
    of the variables from those written into the URL (``from_url``; never shown)."""
    if from_url:
        return (f"the credentials in the upload URL were refused {doing} ({answer})",
                "check the user name and password written into the URL, or set "
                + " and ".join(credential_variables(destination)) + " instead")
    user, password = credential_variables(destination)
    if missing and destination.keyring:
        return _keyring_failure(doing, answer, user, missing)
    if missing:
        names = " and ".join(missing)
        verb = "is" if len(missing) == 1 else "are"
        return (f"the repository wants credentials {doing} ({answer}), and {names} {verb} "
                "not set", "export " + " ".join(f"{name}=..." for name in missing)
                + ", or name other variables with username_env/password_env in mirror.yaml")
    return (f"the credentials were refused {doing} ({answer})",
            f"check {user}/{password}" + (" or the keyring" if destination.keyring else ""))


def _keyring_failure(doing: str, answer: str, user: str,
                     missing: tuple[str, ...]) -> tuple[str, str]:
    """(message, hint) for a 401/403 with ``keyring: true`` that gave no password: the
    keyring is looked up by the upload URL and a user name, which ``user`` gives."""
    if user in missing:
        return (f"the repository wants credentials {doing} ({answer}); keyring: true looks "
                f"the password up by the upload URL and a user name, and {user} is not set",
                f"export {user}=... (the user name the keyring holds the password under, "
                "for the upload URL), or name another variable with username_env")
    return (f"the repository wants credentials {doing} ({answer}), and the keyring holds no "
            f"password for the upload URL and the user name in {user}",
            "store it with `keyring set UPLOAD-URL USER`, or set "
            f"{missing[0]} (password_env names another variable)")


def http_answer(response: requests.Response) -> str:
    """``HTTP 403``, with the server's own message when it says more than the
    standard reason phrase."""
    message = server_message(response)
    try:
        phrase = HTTPStatus(response.status_code).phrase
    except ValueError:
        phrase = ""
    if message and message.lower() != phrase.lower():  # "Forbidden" says nothing more
        return f"HTTP {response.status_code}: {message}"
    return f"HTTP {response.status_code}"


def _from_keyring(url: str, username: str | None) -> tuple[str | None, str | None]:
    import keyring
    import keyring.errors

    try:
        if username is None:
            found = keyring.get_credential(url, None)
            return (found.username, found.password) if found is not None else (None, None)
        return username, keyring.get_password(url, username)
    except keyring.errors.KeyringError as error:
        raise PublishError(f"the keyring failed ({type(error).__name__})",
                           where=redact_url(url)) from None


class RepositoryPages:
    """The simple pages of one repository, read on demand (thread-safe)."""

    def __init__(self, destination: UploadDestination, credentials: Credentials | None, *,
                 display: str, missing: tuple[str, ...], pool_size: int,
                 read_timeout: float = READ_TIMEOUT) -> None:
        self.destination = destination
        self.url = destination.url
        self.simple_url = simple_url_for(destination)
        self.display = display
        self.missing = missing  # credential variables that are not set
        self.from_url = url_credentials(destination, credentials)
        prefixes = {origin(self.url), origin(self.simple_url)}
        self.auth = PrefixAuth({prefix: credentials for prefix in prefixes}) \
            if credentials else None
        # the publish policy (as S3's): ATTEMPTS tries, each ended by read_timeout s of silence
        self.session = make_session(retries=ATTEMPTS - 1, pool_size=pool_size,
                                    timeout=(CONNECT_TIMEOUT, read_timeout))
        self._reads_need_auth = threading.Event()

    def files(self, project: str) -> dict[str, DistFile]:
        """Filename -> file on the repository's simple page of ``project`` ({} if absent).

        Redirects are followed within the repository's origin only: a
        redirect elsewhere (pypiserver's fallback to PyPI) means absent here.
        Raises PublishError for refused credentials or an unreachable server.
        """
        url = f"{self.simple_url}{project}/"
        response = self._get_page(url)
        if response is None:
            return {}
        status = response.status_code
        if status in (404, 410):
            if self._devpi_simple_url(response):
                return self.files(project)
            return {}
        if status in (401, 403):
            message, hint = auth_failure(f"reading {redact_url(url)}", http_answer(response),
                                         self.missing, destination=self.destination,
                                         from_url=self.from_url)
            raise PublishError(message, where=self.display, hint=hint)
        if status >= 400:
            raise PublishError(f"reading {redact_url(url)} failed ({http_answer(response)})",
                               where=self.display)
        kind = response.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            if kind.endswith("+json"):
                page = parse_json_page(response.content, response.url, canonicalize_name(project),
                                       self.display)
            else:
                page = parse_html_page(response.text, response.url, canonicalize_name(project),
                                       self.display)
        except LockmirrorError as error:
            raise PublishError(f"cannot read the repository's page ({error.message})",
                               where=redact_url(url)) from None
        return {file.filename: file for file in page.files}

    def _get_page(self, url: str) -> requests.Response | None:
        """The answer for ``url`` after same-origin redirects and a 401 asking for
        credentials; None when it redirects to another origin."""
        auth = self.auth if self._reads_need_auth.is_set() else None
        response = self._follow(url, auth)
        if response is not None and response.status_code == 401 and auth is None \
                and self.auth is not None:
            response.close()
            self._reads_need_auth.set()  # from now on every read sends them
            response = self._follow(url, self.auth)
        return response

    def _follow(self, url: str, auth: PrefixAuth | None) -> requests.Response | None:
        try:
            return follow(self.session, url, headers={"Accept": ACCEPT}, auth=auth)
        except RedirectRefused:
            return None
        except LockmirrorError as error:  # too many redirects
            raise PublishError(error.message, where=self.display) from None
        except requests.RequestException as error:
            raise self.unreachable(error, url) from None

    def _devpi_simple_url(self, response: requests.Response) -> bool:
        """devpi serves an index's pages under ``<index>/+simple/``: switch there when the
        default ``<url>/simple/`` was guessed and a devpi server answered 404."""
        guessed = not self.destination.simple_url and self.simple_url.endswith("/simple/")
        if guessed and any(name.lower().startswith("x-devpi") for name in response.headers):
            self.simple_url = self.url.rstrip("/") + "/+simple/"
            return True
        return False

    def sha256(self, file: DistFile) -> str | None:
        """The page's sha256, else the hash of the downloaded file (pages without hashes)."""
        if file.sha256:
            return file.sha256
        digest = hashlib.sha256()
        try:
            with follow(self.session, file.url, stream=True) as response:
                if response.status_code >= 400:
                    return None
                for chunk in response.iter_content(1 << 20):
                    digest.update(chunk)
        except RedirectRefused:  # another origin: not verified, as a missing file
            return None
        except requests.RequestException as error:
            raise self.unreachable(error, file.url) from None
        return digest.hexdigest()

    def unreachable(self, error: BaseException, url: str) -> PublishError:
        """The one-line error for a request that failed on the network."""
        message = network_error(error, url, retries=ATTEMPTS - 1,
                                read_timeout=self.session.default_timeout[1]).message
        return PublishError(message, where=self.display,
                            hint="check the repository URL and that it is running")
