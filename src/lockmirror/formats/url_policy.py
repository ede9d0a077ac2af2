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
5. Index wheels and sdists only: a ``vcs``, ``directory`` or ``archive`` table
   or a file ``path`` (which lockmirror never writes, but an installer given
   the lockfile would follow) refuses the lockfile.

Without sources (``lockmirror index LOCKFILE... --store --out`` reads no
mirror.yaml) only the rules that need none apply: 3 as for a loopback-or-https
source, 4 and 5. :class:`LinkRule` applies 1 to 4 to a project page's links as ``lock``
reads it (never asked for if refused). No I/O beyond reading the lockfiles it is given.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from packaging.utils import canonicalize_name

from ..errors import UrlPolicyError
from ..redaction import redact_url
from .lockfile import Lockfile, read_document
from .pages import ARTIFACT_SUFFIXES

if TYPE_CHECKING:  # the standalone `index` form loads neither pydantic nor requests
    from ..config_schema import SourceConfig

# The file hosts of well-known indexes whose pages link to another host.
KNOWN_FILE_HOSTS: dict[str, tuple[str, ...]] = {
    "pypi.org": ("https://files.pythonhosted.org/packages/",),
    "test.pypi.org": ("https://test-files.pythonhosted.org/packages/",),
}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNSAFE_CHARS = re.compile(r"[\\\s\x00-\x1f\x7f]")
_ENCODED_UNSAFE = re.compile(r"[\\\x00-\x1f\x7f]")  # a decoded path may hold spaces, not these
# after one decoding, what a server that decodes twice would turn into '.', '/', '\' or NUL
_ENCODED_AGAIN = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)
# path segments no rule looks twice at: ASCII, no dot first, nothing encoded
_PLAIN_SEGMENTS = re.compile(r"(?:[\w+~-][\w.+~-]*/)*[\w+~-][\w.+~-]*", re.ASCII)


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


def same_origin(first: str, second: str) -> bool:
    """Whether two URLs have one scheme, host and port (a default port written out or
    not); ValueError for a port that is no number."""
    one, two = _Prefix.parse(first), _Prefix.parse(second)
    return (one.scheme, one.host, one.port) == (two.scheme, two.host, two.port)


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
    return _url_check(url, None if sources is None else _file_locations(sources))[0]


# (source, one of its file prefixes as written, the same parsed)
_Locations = list[tuple["SourceConfig", str, "_Prefix"]]


def _file_locations(sources: Sequence[SourceConfig]) -> _Locations:
    return [(s, text, _Prefix.parse(text)) for s in sources for text in file_prefixes(s)]


class LinkRule:
    """The rule for the links on one source's project pages, applied as a page is read (a
    link a lockfile would refuse is never requested, cached or a candidate): the lockfile's
    with that source (mirror.yaml has no ``file://`` source, so no ``file://`` link passes).
    A few string operations a link."""

    def __init__(self, source: SourceConfig) -> None:
        self._allowed = _file_locations([source])
        # a link that is a location the rule accepts plus plain segments passes at once
        self._plain = tuple(text for text in (prefix.text() for _, _, prefix in self._allowed)
                            if _url_check(text + "x.whl", self._allowed)[0] is None)

    def problem(self, url: str) -> str | None:
        """Why the absolute link ``url`` may not be followed; None if it may."""
        for text in self._plain:
            if url.startswith(text) and _PLAIN_SEGMENTS.fullmatch(url, len(text)):
                return None
        return _url_check(url, self._allowed)[0]


def _url_check(url: str, allowed: _Locations | None) -> tuple[str | None, str]:
    """(why ``url`` may not be a file URL under ``allowed`` or None, its path): :func:`url_problem`
    with the prefixes parsed once, the URL split once for the file-name check too."""
    if _UNSAFE_CHARS.search(url):
        return "the URL holds whitespace, a control character or a backslash", ""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a valid URL ({exc})", ""
    scheme = parts.scheme.lower()
    if scheme == "file":
        return "file:// URLs are never allowed in a lockfile", ""
    if scheme not in ("http", "https"):
        return f"'{scheme}:' URLs are not allowed; https only", ""
    if "@" in parts.netloc:
        return ("the URL carries a user name or password; credentials belong in the "
                "environment"), ""
    if not parts.hostname:
        return "the URL names no host", ""
    problem = _path_problem(parts.path)
    if problem is not None:
        return problem, ""
    wanted = _Prefix(scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme],
                     parts.path or "/")
    if allowed is None:
        if scheme == "http" and not is_loopback(wanted.host):
            return ("plain http is allowed only from a source that says `allow_http: true` "
                    "(pass --config so its sources apply)"), ""
        return None, parts.path
    under = [s for s, _text, prefix in allowed if _is_under(wanted, prefix)]
    if not under:
        listed = ", ".join(sorted({text for _, text, _prefix in allowed})) or "none"
        return (f"not under a file location of its source (allowed: {listed}; a source "
                "declares more with `files_url` in mirror.yaml)"), ""
    if scheme == "http" and not any(_http_allowed(s, wanted.host) for s in under):
        return ("plain http; allowed only from an http:// source that says `allow_http: true` "
                "(or a loopback host)"), ""
    return None, parts.path


def _path_problem(path: str) -> str | None:
    """Why a file URL's path could step out of its directory on some server; None if
    it cannot. The raw path has passed ``_UNSAFE_CHARS`` (no backslash, no space)."""
    if "%" in path:  # what a server decodes once
        path = unquote(path)
        if _ENCODED_UNSAFE.search(path):
            return "the URL path holds an encoded backslash or control character"
        if _ENCODED_AGAIN.search(path):
            return "the URL path is encoded twice ('%25' before a dot, slash, backslash or NUL)"
    if not path.isascii():  # '‥' (one character some servers normalize to '..')
        path = unicodedata.normalize("NFKC", path)
    if any(segment == "." or segment.startswith("..") for segment in path.split("/")):
        return "the URL path holds '.' or '..' segments"  # '..;' (a path parameter) too
    return None


@dataclass(frozen=True)
class LockEntry:
    """What the rules look at in one ``[[packages]]`` entry of a lockfile."""

    name: str
    version: str
    index: str
    files: tuple[tuple[str | None, str], ...]  # (stated file name, URL) of each wheel, the sdist
    refused: str | None = None  # a shape no lockmirror lockfile has (vcs, a local path, ...)


def entries_of(lockfile: Lockfile) -> list[LockEntry]:
    """The entries of a lockfile already in memory (``lock`` checks before it writes)."""
    return [LockEntry(p.name, str(p.version), p.index, tuple((f.filename, f.url) for f in p.files))
            for p in lockfile.packages]


def read_entries(path: Path) -> list[LockEntry]:
    """The entries of the lockfile at ``path``, from its TOML alone.

    Every URL-bearing key PEP 751 allows is looked at, not only what
    lockmirror reads: an installer given the lockfile would follow a
    ``vcs``, ``directory`` or ``archive`` entry or a file ``path``, so those
    are refused too. Raises as :func:`~lockmirror.formats.lockfile.read_document`
    (missing, unreadable, not TOML). Costs one TOML parse (no PEP 751
    validation: the index stage reads unchanged lockfiles from its cache, and
    stays fast).
    """
    return document_entries(read_document(path), path)


def document_entries(data: dict[str, Any], path: Path | str) -> list[LockEntry]:
    """The entries of a lockfile's parsed TOML (see :func:`read_entries`)."""
    packages = data.get("packages", [])
    if not isinstance(packages, list):
        raise UrlPolicyError("'packages' is not an array of tables", where=str(path))
    return [_entry(item, i) for i, item in enumerate(packages)]


def _entry(item: Any, position: int) -> LockEntry:
    if not isinstance(item, dict):
        return LockEntry(f"packages[{position}]", "", "", (), "not a table")
    name, version = str(item.get("name", f"packages[{position}]")), str(item.get("version", ""))
    index = item.get("index", "")
    refused = None if isinstance(index, str) else "its index is not a string"
    for key in ("vcs", "directory", "archive"):
        if key in item:
            refused = f"a `{key}` table; lockmirror locks index wheels and sdists only"
    wheels = item.get("wheels", [])
    files = [*(wheels if isinstance(wheels, list) else [wheels])]
    if "sdist" in item:
        files.append(item["sdist"])
    found: list[tuple[str | None, str]] = []
    for file in files:
        if not isinstance(file, dict):
            refused = "a wheel or sdist entry is not a table"
        elif "path" in file:
            refused = "a wheel or sdist with a local `path`; only index URLs are allowed"
        elif not isinstance(file.get("url"), str):
            refused = "a wheel or sdist without a URL"
        else:
            stated = file.get("name")
            found.append((stated if isinstance(stated, str) else None, file["url"]))
    return LockEntry(name, version, index if isinstance(index, str) else "", tuple(found), refused)


_DISTRIBUTION_SUFFIXES = (*ARTIFACT_SUFFIXES, ".tar")  # an old plain-tar sdist too


def _named_elsewhere(name: str | None, path: str) -> str | None:
    """Why a file whose URL has ``path`` names another file than its ``name``: PEP 503
    has a file link's text (the name) match the URL's last path segment, so a URL
    ending in another distribution's file name (another project's wheel, its real
    sha256 and size) is a hand edit. None when they agree, when the entry states no
    name (PEP 751 derives it then), or when the URL ends in no distribution file name
    (a PEP 691 index may serve files at opaque URLs)."""
    if name is None:
        return None
    last = unquote(path.rsplit("/", 1)[-1])
    if last == name or not last.lower().endswith(_DISTRIBUTION_SUFFIXES):
        return None
    return f"the URL of {name} names another file ({last})"


def package_problem(entry: LockEntry, sources: Sequence[SourceConfig] | None
                    ) -> tuple[str | None, str] | None:
    """(URL or None, reason) for the first thing in ``entry`` the rules refuse; None if
    all pass."""
    if entry.refused is not None:
        return None, entry.refused
    candidates = None if sources is None else sources_for(entry.name, sources)
    if candidates is not None and entry.index:
        recorded = normal_source_url(entry.index)
        matching = [s for s in candidates if normal_source_url(s.url) == recorded]
        if not matching:
            declared = ", ".join(redact_url(s.url) for s in candidates)
            return (redact_url(entry.index),
                    (f"its index is not a source mirror.yaml declares for {entry.name} "
                     f"(declared: {declared})"))
        candidates = matching
    allowed = None if candidates is None else _file_locations(candidates)
    misnamed = None  # reported after every URL passed the rules
    for name, url in entry.files:
        reason, path = _url_check(url, allowed)
        if reason is not None:
            return redact_url(url), reason
        misnamed = misnamed or _named_elsewhere(name, path)
    return (None, misnamed) if misnamed else None


def check_entries(entries: Iterable[LockEntry], path: Path | str,
                  sources: Sequence[SourceConfig] | None) -> None:
    """Raise UrlPolicyError (exit 2) for the first entry the rules refuse.

    One line: ``<path>: package <name> <version>: <url>: <reason>``, plus how
    many other packages are refused. Costs a few string operations per file.
    """
    refused = []
    for entry in entries:
        problem = package_problem(entry, sources)
        if problem is not None:
            refused.append((entry, *problem))
    if not refused:
        return
    entry, url, reason = refused[0]
    more = f" ({len(refused) - 1} more packages refused)" if len(refused) > 1 else ""
    what = f"package {entry.name} {entry.version}".rstrip()
    where = f"{url}: " if url else ""
    raise UrlPolicyError(f"{what}: {where}{reason}{more}", where=str(path))


def check_lockfile_urls(lockfile: Lockfile, path: Path | str,
                        sources: Sequence[SourceConfig] | None) -> None:
    """:func:`check_entries` for a lockfile in memory."""
    check_entries(entries_of(lockfile), path, sources)


def check_lockfile_paths(paths: Iterable[Path], sources: Sequence[SourceConfig] | None) -> None:
    """Check the lockfiles at ``paths`` (read as TOML; see :func:`read_entries`).

    Raises StaleLockError for a missing one, LockmirrorError for one that is
    not TOML, UrlPolicyError as :func:`check_entries`.
    """
    for path in paths:
        check_entries(read_entries(path), path, sources)


def read_checked_lockfiles(paths: Sequence[Path], sources: Sequence[SourceConfig] | None
                           ) -> list[Lockfile]:
    """The lockfiles at ``paths``, each parsed once: every one passes the rules
    (raising as :func:`check_lockfile_paths`) before any is validated as PEP 751
    (:meth:`Lockfile.from_toml`, raising InputError)."""
    return [Lockfile.from_toml(document, where=str(path))
            for path, document in zip(paths, read_checked_documents(paths, sources),
                                      strict=True)]


def read_checked_documents(paths: Sequence[Path], sources: Sequence[SourceConfig] | None
                           ) -> list[dict[str, Any]]:
    """The parsed TOML of each lockfile at ``paths``, every one checked against
    the rules (raising as :func:`check_lockfile_paths`); not yet validated."""
    documents = []
    for path in paths:
        document = read_document(path)
        check_entries(document_entries(document, path), path, sources)
        documents.append(document)
    return documents


@dataclass(frozen=True)
class UrlRule:
    """The rules for one set of sources, as the index stage applies them to the
    lockfiles it parses (those it kept from an earlier run were checked then,
    under the rule whose :attr:`key` their kept rows record)."""

    sources: tuple[SourceConfig, ...] | None  # None: the rules that need no sources

    @property
    def key(self) -> str:
        """What the rule depends on: a change of sources makes kept rows stale."""
        if self.sources is None:
            return "no-sources"
        fields = [(s.name, redact_url(s.url), sorted(s.projects), list(s.files_url),
                   s.allow_http) for s in self.sources]
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()

    def check(self, document: dict[str, Any], path: Path | str) -> None:
        """Raise UrlPolicyError as :func:`check_entries` for a parsed lockfile."""
        check_entries(document_entries(document, path), path, self.sources)


def check_lockfile_dir(directory: Path, sources: Sequence[SourceConfig] | None) -> None:
    """:func:`check_lockfile_paths` for every ``pylock.*.toml`` in ``directory``: what a
    bundle carries, whether or not mirror.yaml still names the set."""
    check_lockfile_paths(sorted(directory.glob("pylock.*.toml")), sources)


def _is_under(url: _Prefix, prefix: _Prefix) -> bool:
    return (url.scheme == prefix.scheme and url.host == prefix.host and url.port == prefix.port
            and url.path.startswith(prefix.path))


def _http_allowed(source: SourceConfig, host: str) -> bool:
    own = _Prefix.parse(redact_url(source.url))
    return own.scheme == "http" and (source.allow_http
                                     or (is_loopback(own.host) and is_loopback(host)))


def url_host(url: str) -> str:
    """The scheme, host and port of ``url`` (no user info), as it decides where bytes
    come from; a URL that does not parse so, whole but redacted."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return redact_url(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}" if parts.scheme else redact_url(url)


def normal_source_url(url: str) -> str:
    """``url`` without user info and with a trailing slash: how source URLs compare."""
    text = redact_url(url)
    return text if text.endswith("/") else text + "/"
