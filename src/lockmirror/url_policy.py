"""Which file URLs a lockfile may name: only those under a source mirror.yaml declares.

A lockfile is reviewed in a pull request, but a reviewer reads package names
and versions, not URLs. So every stage that reads a lockfile from the
repository (``validate``, ``lock --check``, ``fetch``, ``index``, ``bundle``;
``lock`` before it writes) first checks every file URL against these rules,
and refuses the lockfile with one line naming it, the package and the URL
before any file is opened or downloaded:

1. The package's source: the one whose ``projects`` pins the package, else any
   source; when the package records its ``index``, that source must be one of
   those (compared without user info).
2. The URL lies under one of that source's file prefixes: its ``files_url``
   list when given; else :data:`KNOWN_FILE_HOSTS` for the big public indexes
   (``pypi.org`` serves its files from ``files.pythonhosted.org``); else the
   source's own scheme, host and port. "Under" compares scheme, host, port
   and whole path segments; ``.``/``..`` segments (also percent-encoded),
   backslashes and whitespace are refused outright.
3. ``https`` only. Plain ``http`` only under a prefix of a source whose own
   URL is ``http://`` and that says ``allow_http: true``, or whose host is a
   loopback address (``localhost``, ``127.0.0.0/8``, ``::1``): those bytes never
   cross a network. The sha256 in the lockfile still guards the bytes.
4. Never ``file://`` (a lockfile must not make the build machine read its own
   files), never a user name or password in the URL.

Without sources (``lockmirror index LOCKFILE... --store --out`` reads no
mirror.yaml) only the rules that need none apply: 3 as for a loopback-or-https
source, and 4. Nothing here does I/O beyond reading the lockfiles it is given.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from packaging.utils import canonicalize_name

from .errors import UrlPolicyError
from .lockfile import LockedPackage, Lockfile

if TYPE_CHECKING:  # the standalone `index` form loads neither pydantic nor requests
    from .config import SourceConfig

# The file hosts of well-known indexes whose pages link to another host.
KNOWN_FILE_HOSTS: dict[str, tuple[str, ...]] = {
    "pypi.org": ("https://files.pythonhosted.org/packages/",),
    "test.pypi.org": ("https://test-files.pythonhosted.org/packages/",),
}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNSAFE_CHARS = re.compile(r"[\\\s\x00-\x1f\x7f]")


@dataclass(frozen=True)
class _Prefix:
    """A URL prefix files may lie under: scheme, host, port and leading path."""

    scheme: str
    host: str
    port: int | None
    path: str  # always ends with "/"

    @classmethod
    def parse(cls, url: str) -> _Prefix:
        parts = urlsplit(url)
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        scheme = parts.scheme.lower()
        return cls(scheme, (parts.hostname or "").lower(),
                   parts.port or _DEFAULT_PORTS.get(scheme), path)

    def text(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port == _DEFAULT_PORTS.get(self.scheme) else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.path}"


def file_prefixes(source: SourceConfig) -> tuple[str, ...]:
    """The URL prefixes ``source`` serves files under (see the module docstring)."""
    if source.files_url:
        return tuple(source.files_url)
    own = _Prefix.parse(redact_url(source.url))
    known = KNOWN_FILE_HOSTS.get(own.host)
    if known is not None and own.scheme == "https":
        return known
    return (_Prefix(own.scheme, own.host, own.port, "/").text(),)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or IP literal, no brackets) is this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sources_for(name: str, sources: Sequence[SourceConfig]) -> list[SourceConfig]:
    """The sources ``name`` may come from: the one pinning it, else every one."""
    key = canonicalize_name(name)
    pinned = [s for s in sources if key in s.normalized_projects]
    return pinned[:1] if pinned else list(sources)


def url_problem(url: str, sources: Sequence[SourceConfig] | None) -> str | None:
    """Why ``url`` may not be a file URL of a package from ``sources``; None if it may.

    ``sources`` None applies only the rules that need no mirror.yaml. The
    reason never repeats credentials the URL carries.
    """
    if _UNSAFE_CHARS.search(url):
        return "the URL holds whitespace, a control character or a backslash"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    scheme = parts.scheme.lower()
    if scheme == "file":
        return "file:// URLs are never allowed in a lockfile"
    if scheme not in ("http", "https"):
        return f"'{scheme}:' URLs are not allowed; https only"
    if "@" in parts.netloc:
        return "the URL carries a user name or password; credentials belong in the environment"
    if not parts.hostname:
        return "the URL names no host"
    segments = unquote(parts.path).split("/")
    if "." in segments or ".." in segments:
        return "the URL path holds '.' or '..' segments"
    wanted = _Prefix(scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme],
                     parts.path or "/")
    if sources is None:
        if scheme == "http" and not is_loopback(wanted.host):
            return ("plain http is allowed only from a source that says `allow_http: true` "
                    "(pass --config so its sources apply)")
        return None
    allowed = [(s, prefix) for s in sources for prefix in file_prefixes(s)]
    under = [(s, p) for s, p in allowed if _is_under(wanted, _Prefix.parse(p))]
    if not under:
        listed = ", ".join(sorted({p for _, p in allowed})) or "none"
        return (f"not under a file location of its source (allowed: {listed}; a source declares "
                "more with `files_url` in mirror.yaml)")
    if scheme == "http" and not any(_http_allowed(s, wanted.host) for s, _ in under):
        return ("plain http; allowed only from an http:// source that says `allow_http: true` "
                "(or a loopback host)")
    return None


def package_problem(package: LockedPackage, sources: Sequence[SourceConfig] | None
                    ) -> tuple[str, str] | None:
    """(URL, reason) for the first URL of ``package`` the rules refuse; None if all pass."""
    candidates = None if sources is None else sources_for(package.name, sources)
    if candidates is not None and package.index:
        recorded = _normal_source_url(package.index)
        matching = [s for s in candidates if _normal_source_url(s.url) == recorded]
        if not matching:
            declared = ", ".join(redact_url(s.url) for s in candidates)
            return (redact_url(package.index),
                    (f"its index is not a source mirror.yaml declares for {package.name} "
                     f"(declared: {declared})"))
        candidates = matching
    for file in package.files:
        reason = url_problem(file.url, candidates)
        if reason is not None:
            return redact_url(file.url), reason
    return None


def check_lockfile_urls(lockfile: Lockfile, path: Path | str,
                        sources: Sequence[SourceConfig] | None) -> None:
    """Raise UrlPolicyError (exit 2) for the first URL of ``lockfile`` the rules refuse.

    One line: ``<path>: package <name> <version>: <url>: <reason>``, plus how
    many other packages are refused. Costs a few string operations per file.
    """
    refused = []
    for package in lockfile.packages:
        problem = package_problem(package, sources)
        if problem is not None:
            refused.append((package, *problem))
    if not refused:
        return
    package, url, reason = refused[0]
    more = f" ({len(refused) - 1} more packages refused)" if len(refused) > 1 else ""
    raise UrlPolicyError(f"package {package.name} {package.version}: {url}: {reason}{more}",
                         where=str(path))


def check_lockfile_paths(paths: Iterable[Path], sources: Sequence[SourceConfig] | None, *,
                         missing_ok: bool = False) -> list[Lockfile]:
    """Read each lockfile and check its URLs; returns them in order.

    Raises StaleLockError for a missing one (unless ``missing_ok``: skipped),
    LockmirrorError for an invalid one, UrlPolicyError as
    :func:`check_lockfile_urls`.
    """
    out = []
    for path in paths:
        if missing_ok and not path.exists():
            continue
        lockfile = Lockfile.read(path)
        check_lockfile_urls(lockfile, path, sources)
        out.append(lockfile)
    return out


def _is_under(url: _Prefix, prefix: _Prefix) -> bool:
    return (url.scheme == prefix.scheme and url.host == prefix.host and url.port == prefix.port
            and url.path.startswith(prefix.path))


def _http_allowed(source: SourceConfig, host: str) -> bool:
    own = _Prefix.parse(redact_url(source.url))
    if own.scheme != "http":
        return False
    return source.allow_http or (is_loopback(own.host) and is_loopback(host))


def redact_url(url: str) -> str:
    """``url`` without user info (:func:`lockmirror.http.redact_url`, loaded only when needed)."""
    if "@" not in url:
        return url
    from .http import redact_url as redact

    return redact(url)


def _normal_source_url(url: str) -> str:
    text = redact_url(url)
    return text if text.endswith("/") else text + "/"
