"""Which redirects lockmirror follows, and the one loop that follows them.

A redirect is followed only to the origin (scheme, host, port) of the URL
asked for, or to a URL the lockfile URL rule
(:func:`lockmirror.formats.url_policy.url_problem`) accepts as a file of a
declared source (``files_url``, the big indexes' file hosts). Anything else is
refused with one line naming the URL and where it led, before a request is
made there: a server (or anything on the path to it) cannot send lockmirror,
with a source's credentials or not, to a host mirror.yaml never declared.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests

from ..errors import NetworkError
from ..formats.url_policy import same_origin, url_problem
from ..redaction import redact_url

if TYPE_CHECKING:
    from ..config_schema import SourceConfig

MAX_REDIRECTS = 10


class RedirectRefused(NetworkError):
    """A server redirected to a place no source declares; nothing was asked of it."""


def origin(url: str) -> str:
    """``scheme://host[:port]/`` of ``url``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/"


def answered_url(requested: str, answered: str | None) -> str:
    """The URL to name in a message about the answer to ``requested``: itself, or
    after a redirect the URL that answered, without its query and fragment (a
    storage host's signed URL carries its token there: ``?X-Amz-Signature=...``)."""
    if not answered or answered == requested:
        return requested
    return urlsplit(answered)._replace(query="", fragment="").geturl()


def redirect_allowed(url: str, target: str, sources: Sequence[SourceConfig] = ()) -> bool:
    """Whether a redirect from ``url`` to ``target`` may be followed: to the same
    origin (scheme, host and port), or to a URL the lockfile URL rule accepts as a
    file of one of ``sources`` (:func:`lockmirror.formats.url_policy.url_problem`)."""
    try:
        if same_origin(target, url):
            return True
    except ValueError:  # a port that is no number
        return False
    return bool(sources) and url_problem(target, sources) is None


def follow(session: requests.Session, url: str, *, method: str = "GET",
           sources: Sequence[SourceConfig] = (), **kwargs: Any) -> requests.Response:
    """``session.request(method, url, **kwargs)`` for GET or HEAD, following a
    redirect only where :func:`redirect_allowed` says (each step a request of its
    own: the session's retries and timeout, ``auth`` for its own URL); the first
    answer that is no redirect.

    Raises RedirectRefused, naming ``url`` and the target's origin, for a redirect
    elsewhere (the target is never asked; no retry); NetworkError after
    :data:`MAX_REDIRECTS`; requests' errors as ``session.request`` does (their
    ``request.url`` is the step that failed, see :func:`network_error`).
    """
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        response = session.request(method, current, allow_redirects=False, **kwargs)
        location = session.get_redirect_target(response)
        if location is None:
            return response
        response.close()
        target = urljoin(current, location)
        if not redirect_allowed(url, target, sources):
            raise RedirectRefused(
                f"cannot fetch {redact_url(url)}: redirected to "
                f"{redact_url(origin(target))} which no source declares",
                hint="if that host serves the source's files, add it to the source's "
                     "files_url in mirror.yaml")
        current = target
    raise NetworkError(f"cannot fetch {redact_url(url)}: more than {MAX_REDIRECTS} redirects")
