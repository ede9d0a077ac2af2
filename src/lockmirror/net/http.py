"""The one HTTP session factory, and the conversion of network failures to lockmirror errors.

:func:`make_session` gives a :class:`requests.Session` that every stage
shares: urllib3 retries (connection errors, 5xx, 429 with a bounded
``Retry-After``), a default timeout on every request, a
``lockmirror/<version>`` User-Agent, proxies and CA bundles from the usual
environment variables (each bundle loaded once per session, not once per
connection). Caching is the index client's (:mod:`lockmirror.net.disk_cache`).

Redirects: :func:`get` follows them through :func:`lockmirror.net.redirects.follow`.

Credentials: :func:`source_auth` reads a source's ``username_env`` /
``password_env`` variables, :class:`PrefixAuth` applies them to URLs under
the source only. Credentials never appear in messages: :func:`~lockmirror.redaction.redact_url`
strips them from every URL an error names.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import ssl
import threading
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase, _basic_auth_str
from urllib3.util.retry import Retry

from .. import __version__
from ..errors import LockmirrorError, NetworkError, NotFoundError, UnreachableError
from ..redaction import redact_text, redact_url
from .redirects import answered_url, follow

if TYPE_CHECKING:
    from ..config_schema import SourceConfig

USER_AGENT = (f"lockmirror/{__version__} ({platform.python_implementation()} "
              f"{platform.python_version()}; requests {importlib.metadata.version('requests')})")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A server asking for a longer pause than this is waited on for this long only.
MAX_RETRY_AFTER = 60.0
# POST is retried too: the POSTs lockmirror makes (OSV queries) are idempotent.
RETRY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST"})

Credentials = tuple[str, str]


# --------------------------------------------------------------------------
# Pieces of the session
# --------------------------------------------------------------------------


class _BoundedRetry(Retry):
    """urllib3 Retry whose Retry-After pause is capped (a server may ask for hours)."""

    def get_retry_after(self, response: urllib3.BaseHTTPResponse) -> float | None:
        value = super().get_retry_after(response)
        return None if value is None else min(value, MAX_RETRY_AFTER)


class _TrustOnceAdapter(HTTPAdapter):
    """An HTTPAdapter that loads a CA bundle named by path (``verify``,
    REQUESTS_CA_BUNDLE, SSL_CERT_FILE) into one SSL context, shared by
    every connection, instead of letting each new connection load it again
    (a tenth of a second of CPU each, with a system bundle)."""

    def __init__(self, **kwargs: Any) -> None:
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._contexts_lock = threading.Lock()
        super().__init__(**kwargs)

    def _context(self, bundle: str) -> ssl.SSLContext:
        context = self._contexts.get(bundle)  # every request asks: no lock once it is made
        if context is not None:
            return context
        with self._contexts_lock:
            context = self._contexts.get(bundle)
            if context is None:
                if os.path.isdir(bundle):
                    context = ssl.create_default_context(capath=bundle)
                else:
                    context = ssl.create_default_context(cafile=bundle)
                self._contexts[bundle] = context
            return context

    def build_connection_pool_key_attributes(
            self, request: requests.PreparedRequest, verify: bool | str,
            cert: str | tuple[str, str] | None = None) -> tuple[Any, Any]:
        host, pool = super().build_connection_pool_key_attributes(request, verify, cert)
        bundle = pool.pop("ca_certs", None) or pool.pop("ca_cert_dir", None)
        if bundle is not None:
            pool["ssl_context"] = self._context(bundle)
        return host, pool

    def cert_verify(self, conn: Any, url: str, verify: bool | str,
                    cert: str | tuple[str, str] | None) -> None:
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
        if isinstance(verify, str):  # the pool's ssl_context holds the bundle already
            conn.ca_certs = None
            conn.ca_cert_dir = None


class LockmirrorSession(requests.Session):
    """A Session with a default timeout on every request and the retry budget it was made with."""

    def __init__(self, *, timeout: tuple[float, float], retries: int) -> None:
        super().__init__()
        self.default_timeout = timeout
        self.retries = retries

    def request(self, method: str | bytes, url: str | bytes,
                *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, *args, **kwargs)


class PrefixAuth(AuthBase):
    """Basic auth for URLs under given prefixes (longest prefix wins).

    URLs outside every prefix get no Authorization header (a public CDN
    never sees a private index's credentials), except credentials written
    into the URL itself (``https://user:pw@host/``), which are honoured.
    """

    def __init__(self, credentials: Mapping[str, Credentials] | None = None) -> None:
        self.credentials: dict[str, Credentials] = dict(credentials or {})

    def add(self, prefix: str, username: str, password: str) -> None:
        self.credentials[prefix] = (username, password)

    def for_url(self, url: str) -> Credentials | None:
        best: tuple[str, Credentials] | None = None
        for prefix, value in self.credentials.items():
            if url.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
                best = (prefix, value)
        if best is not None:
            return best[1]
        parts = urlsplit(url)
        if parts.username is not None:
            return unquote(parts.username), unquote(parts.password or "")
        return None

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        credentials = self.for_url(request.url or "")
        if credentials is not None:
            request.headers["Authorization"] = _basic_auth_str(*credentials)
        return request


def auth_prefix(source_url: str) -> str:
    """The URL prefix a source's credentials cover: its URL without a trailing ``simple/``,
    so files served beside the pages (``.../packages/...``) get them too."""
    prefix = source_url if source_url.endswith("/") else source_url + "/"
    if prefix.endswith("/simple/"):
        prefix = prefix[: -len("simple/")]
    return prefix


def unset_credentials(sources: Sequence[Any], environ: Mapping[str, str] | None = None
                      ) -> list[tuple[int, str, str]]:
    """(source index, ``username_env``/``password_env``, variable) of every
    credential variable a source names that ``environ`` does not set."""
    env = os.environ if environ is None else environ
    return [(index, field, variable) for index, source in enumerate(sources)
            for field, variable in (("username_env", source.username_env),
                                    ("password_env", source.password_env))
            if variable is not None and variable not in env]


def source_auth(sources: Sequence[Any], environ: Mapping[str, str] | None = None
                ) -> dict[str, Credentials]:
    """URL prefix -> (username, password) for every source naming credential variables.

    ``sources`` are :class:`lockmirror.config_schema.SourceConfig`. A variable that
    is named but unset raises LockmirrorError naming the source and the
    variable (never a value). A source with only ``password_env`` (a token)
    gets an empty username.
    """
    env = os.environ if environ is None else environ
    unset = unset_credentials(sources, env)
    if unset:
        # named by the source, not its position: ``sources`` may come sorted by priority;
        # every one at once, so a CI job's secrets are mended in one round
        names = [variable for _, _, variable in unset]
        what = (f"environment variable {names[0]} is not set" if len(names) == 1 else
                f"environment variables {', '.join(names[:-1])} and {names[-1]} are not set")
        where = "; ".join(f"source '{sources[index].name}', {field}"
                          for index, field, _ in unset)
        raise LockmirrorError(what, where=f"mirror.yaml: {where}",
                              hint=f"export {' '.join(f'{n}=...' for n in names)} (the "
                              "source's credentials)")
    result: dict[str, Credentials] = {}
    for source in sources:
        prefix = auth_prefix(redact_url(source.url))
        parts = urlsplit(source.url)
        if parts.username is not None:
            # credentials written into the URL move here, so the URL itself (in
            # pages' URLs, lockfiles, messages) never carries them
            result[prefix] = (unquote(parts.username), unquote(parts.password or ""))
        if not (source.username_env or source.password_env):
            continue
        values = [env[variable] if variable is not None else ""
                  for variable in (source.username_env, source.password_env)]
        result[prefix] = (values[0], values[1])
    return result


# --------------------------------------------------------------------------
# The factory
# --------------------------------------------------------------------------


def make_session(*, retries: int = 4, backoff: float = 0.5,
                 timeout: tuple[float, float] = (10, 60), pool_size: int = 16,
                 credentials: Mapping[str, Credentials] | None = None,
                 retry_reads: bool = True) -> LockmirrorSession:
    """The session every lockmirror stage uses.

    - ``retries``: per request, on connection errors, read timeouts, 5xx and
      429; exponential backoff from ``backoff`` seconds; ``Retry-After`` is
      honoured up to 60 s. When the retries run out on a status, the last
      response is returned (use :func:`check_response` to turn it into an
      error); on a connection failure, requests raises (use
      :func:`network_error`).
    - ``timeout``: (connect, read) seconds for every request that does not
      give its own. ``retry_reads`` False: a read timeout is not retried (an
      upload's body was sent: trying again would send it again).
    - Proxies (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``) and CA bundles
      (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``, then ``SSL_CERT_FILE``) come
      from the environment.
    - ``credentials``: URL prefix -> (user, password), see :class:`PrefixAuth`
      and :func:`source_auth`; more can be added with ``session.auth.add``.
    - ``pool_size`` connections per host, so that many threads can share it.

    Costs nothing until used; no network in the constructor.
    """
    session = LockmirrorSession(timeout=timeout, retries=retries)
    retry = _BoundedRetry(
        total=retries, connect=retries, read=retries if retry_reads else 0, status=retries,
        other=0,
        # requests, not urllib3, sees redirects; redirects.follow decides which to follow
        redirect=False, backoff_factor=backoff, backoff_max=30,
        status_forcelist=RETRY_STATUSES, allowed_methods=RETRY_METHODS,
        raise_on_status=False, respect_retry_after_header=True)
    adapter = _TrustOnceAdapter(max_retries=retry, pool_connections=pool_size,
                                pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    # requests itself reads REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE per request
    # (and they win over this); SSL_CERT_FILE is what OpenSSL users set.
    if os.environ.get("SSL_CERT_FILE"):
        session.verify = os.environ["SSL_CERT_FILE"]
    session.auth = PrefixAuth(credentials)
    return session


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


def _causes(error: BaseException) -> list[BaseException]:
    """The error, what it wraps (requests keeps urllib3's in ``args``), and their reasons."""
    chain: list[BaseException] = []
    todo = [error]
    while todo:
        current = todo.pop(0)
        if current in chain or len(chain) > 10:
            continue
        chain.append(current)
        todo += [a for a in current.args if isinstance(a, BaseException)]
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
        if current.__cause__ is not None:
            todo.append(current.__cause__)
    return chain


def _retry_text(retries: int) -> str:
    return f" after {retries} {'retry' if retries == 1 else 'retries'}" if retries else ""


def timed_out(error: BaseException) -> bool:
    """Whether a failed request's server took it and then sent nothing back in time."""
    return any(isinstance(e, (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError,
                              TimeoutError)) for e in _causes(error))


def network_error(error: BaseException, url: str, *, retries: int = 0,
                  read_timeout: float | None = None, doing: str = "fetch") -> NetworkError:
    """A NetworkError for a failed request: what happened, the URL (credentials
    stripped), and how many retries were made; a hint where one helps.
    UnreachableError when nobody answered at all. ``doing``: "cannot <doing> URL".
    The URL named is the one of the request that failed when requests knows it
    (after a redirect, its target), else ``url``."""
    chain = _causes(error)
    failed = getattr(getattr(error, "request", None), "url", None)
    url = answered_url(url, failed if isinstance(failed, str) else None)

    def has(*kinds: type[BaseException]) -> bool:
        return any(isinstance(e, kinds) for e in chain)

    hint: str | None = None
    unreachable = False  # nobody answered: the next request to the server would fail alike
    if has(requests.exceptions.SSLError, urllib3.exceptions.SSLError):
        cause = "TLS verification failed"
        hint = "point REQUESTS_CA_BUNDLE or SSL_CERT_FILE at your CA bundle"
    elif has(requests.exceptions.ProxyError, urllib3.exceptions.ProxyError):
        cause = "the proxy refused or failed the connection"
        hint = "check HTTPS_PROXY, HTTP_PROXY and NO_PROXY"
    # urllib3 derives NameResolutionError from NewConnectionError, and that
    # from ConnectTimeoutError: test the most specific first.
    elif has(urllib3.exceptions.NameResolutionError):
        cause, unreachable = "the host name does not resolve", True
    elif has(urllib3.exceptions.NewConnectionError, ConnectionRefusedError):
        cause, unreachable = "the connection was refused", True
    elif has(requests.exceptions.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError):
        cause, unreachable = "connecting timed out", True
    elif timed_out(error):
        within = f" within {read_timeout:g} s" if read_timeout else ""
        cause = f"the server did not answer{within}"
    elif has(requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError,
             urllib3.exceptions.IncompleteRead, requests.exceptions.ContentDecodingError):
        cause = "the connection broke during the transfer"
    elif has(requests.exceptions.TooManyRedirects):
        cause = "too many redirects"
    elif has(requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
             requests.exceptions.InvalidSchema):
        cause = "the URL is not valid"
    else:
        root = chain[-1]
        cause = redact_text(f"{type(root).__name__}: {root}".splitlines()[0])
    return (UnreachableError if unreachable else NetworkError)(
        f"cannot {doing} {redact_url(url)}: {cause}{_retry_text(retries)}", hint=hint)


def retries_made(response: requests.Response) -> int:
    """How many retries urllib3 made before this response (0 when from the cache)."""
    retry = getattr(response.raw, "retries", None)
    return len(retry.history) if isinstance(retry, Retry) else 0


def check_response(response: requests.Response, *, url: str | None = None,
                   not_found: type[LockmirrorError] = NotFoundError) -> requests.Response:
    """Return a 2xx/304 response; raise for the rest.

    Raises ``not_found`` (NotFoundError) for 404/410, NetworkError naming
    the URL, the status and the retries made for everything else (with a
    credentials hint on 401/403). Reads no body except to close it.
    """
    if response.status_code < 400:
        return response
    shown = redact_url(url or response.url)
    status = f"HTTP {response.status_code}{' ' + response.reason if response.reason else ''}"
    response.close()
    if response.status_code in (404, 410):
        raise not_found(f"{shown}: not found ({status})")
    hint = None
    if response.status_code in (401, 403, 407):
        hint = "; ".join(access_denied(response))
    raise NetworkError(f"cannot fetch {shown}: {status}{_retry_text(retries_made(response))}",
                       hint=hint)


def access_denied(response: requests.Response) -> tuple[str, str]:
    """What a 401/403/407 means, and what to do: whether credentials were sent."""
    if response.request is not None and "Authorization" in response.request.headers:
        return ("the credentials sent were refused",
                "check the values of the source's username_env/password_env")
    return ("no credentials are configured for this URL",
            "set username_env/password_env on its source in mirror.yaml")


def get(session: requests.Session, url: str, *, headers: Mapping[str, str] | None = None,
        stream: bool = False, allow: Collection[int] = (),
        timeout: tuple[float, float] | None = None,
        auth: AuthBase | None = None, sources: Sequence[SourceConfig] = (),
        redirects: bool = True) -> requests.Response:
    """``session.get`` with lockmirror errors (see :func:`network_error`, :func:`check_response`).

    Redirects are followed as :func:`follow` does (``sources``: where else they
    may lead; RedirectRefused otherwise); ``redirects`` False returns them as
    answers. Statuses in ``allow`` (e.g. 404 when absence is an answer) are
    returned instead of raised. ``auth`` replaces the session's for this request.
    Errors name the URL that failed (after a redirect, its target).
    """
    retries = getattr(session, "retries", 0)
    chosen = timeout or getattr(session, "default_timeout", None)
    try:
        if redirects:
            response = follow(session, url, headers=dict(headers or {}), stream=stream,
                              timeout=chosen, auth=auth, sources=sources)
        else:
            response = session.get(url, headers=dict(headers or {}), stream=stream,
                                   timeout=chosen, auth=auth, allow_redirects=False)
    except requests.RequestException as error:
        # urllib3 raises only once its retries are spent, except for read
        # timeouts and broken bodies when streaming, which are not retried.
        spent = retries if isinstance(error, (requests.ConnectionError,
                                              requests.exceptions.RetryError)) else 0
        raise network_error(error, url, retries=spent,
                            read_timeout=chosen[1] if chosen else None) from None
    if response.status_code in allow:
        return response
    return check_response(response, url=answered_url(url, response.url))
