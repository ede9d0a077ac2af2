"""The mirror's copies of the lockfiles: every file entry points at the mirror itself.

The committed ``lockfiles/pylock.<set>.toml`` name the upstream files
(``https://files.pythonhosted.org/...``), which nothing behind an air gap can
reach. The copies in ``dist-index/lockfiles/`` (and so in every bundle and
import) are rewritten by :func:`relocate_lockfile`, a pure function of the
lockfile's bytes, in one of two forms:

* **relative paths** (the default, what the index stage writes): each
  ``url`` becomes a PEP 751 ``path`` relative to the lockfile's own location,
  ``../files/<project>/<filename>``. Checked with the real installers:
  ``uv pip install -r DIR/lockfiles/pylock.<set>.toml`` and
  ``pip install -r`` (pip >= 26.1) of a local path install from the files
  beside it; ``pip install -r http://mirror/lockfiles/pylock.<set>.toml``
  resolves the paths against the URL, but uv (0.13) resolves them against the
  current directory when it reads a lockfile over HTTP, so uv over HTTP needs
  the second form.
* **absolute URLs** for a ``base_url`` the operator gives (``lockmirror lockfile
  --base-url https://mirror.internal/``, or its ``.../simple/``: :func:`mirror_root`):
  ``<base_url>files/<project>/<filename>``, which both installers take from a path
  or a URL.

Either way the upstream ``index`` key (which may carry a token) is dropped or
replaced by the mirror's ``<base_url>simple/``; hashes, sizes, markers and
``[tool]`` data are kept as they are, so the installer still checks every byte.

The copies are written with rtoml, not with tomli_w as the committed
lockfiles are: the same data, laid out by the Rust ``toml`` crate (arrays of
tables before plain tables, UTC datetimes as ``2024-01-02T03:04:05Z``). The
committed files keep tomli_w's layout because reviewers diff them; the copies
are for installers, and rtoml writes a 1.8 MB lockfile in 0.007 s where tomli_w
takes 0.1 s (tomli_w formats each string a character at a time), a fifth of
a full index build of three such lockfiles. The layout is rtoml's, so it is
named by :data:`COPY_FORMAT`, which the index stage keeps with each set: a
copy written by another writer or version is written again.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import rtoml

from ..errors import LockmirrorError
from ..redaction import carries_credentials
from .bounded import load_toml

FILES_FROM_LOCKFILE = "../files"  # dist-index/lockfiles/ -> dist-index/files/
COPY_FORMAT = f"rtoml {rtoml.__version__}"  # what lays out the copies' bytes
_NOTE = "# Mirror copy:"
_NORMALIZE = re.compile(r"[-_.]+")


class RelocationError(LockmirrorError):
    """Bad input to the relocation: not a lockfile, or an unusable base URL."""

    exit_code = 2


def relocate_lockfile(data: bytes, *, base_url: str | None = None,
                      where: str = "lockfile") -> bytes:
    """``data`` (a PEP 751 lockfile) with every wheel and sdist pointing at the mirror.

    Without ``base_url``: relative ``path`` entries (``../files/<project>/<file>``,
    resolved against the lockfile's directory). With ``base_url`` (the mirror's
    root, e.g. ``https://mirror.internal/``): absolute ``url`` entries under it.
    Either form is accepted as input, so a mirror copy can be relocated again.
    Deterministic: the same bytes and base URL give the same bytes. Raises
    LockmirrorError naming ``where`` when ``data`` is not a lockfile or the base
    URL is unusable.
    """
    base = check_base_url(base_url) if base_url is not None else None
    try:
        document = load_toml(data.decode("utf-8"), where=where, error=RelocationError)
    except UnicodeDecodeError as exc:
        raise RelocationError(f"not a TOML lockfile: {exc}", where=where) from None
    except RelocationError as exc:  # the bounded reader's limits, as every lockfile read
        raise RelocationError(f"not a TOML lockfile: {exc.message}", where=where) from None
    return _relocate(document, data, base, where)


def relocate_document(document: dict[str, Any], data: bytes, *, where: str = "lockfile",
                      ) -> bytes:
    """:func:`relocate_lockfile` (relative paths) of a lockfile already parsed and
    validated: ``document`` is the TOML of ``data`` (whose leading comments are
    kept) that :meth:`~lockmirror.formats.lockfile.Lockfile.from_toml` accepted, and is
    changed in place. Same output; spares the index stage a second parse and
    validation of a lockfile it has just read (relocation only swaps each file's
    ``url``/``path`` for a ``path`` and drops ``index``, which keeps a valid
    lockfile valid)."""
    return _relocate(document, data, None, where, validate=False)


def _relocate(document: dict[str, Any], data: bytes, base: str | None, where: str, *,
              validate: bool = True) -> bytes:
    packages = document.get("packages")
    if not isinstance(packages, list):
        raise RelocationError("not a PEP 751 lockfile (no [[packages]])", where=where)
    for package in packages:
        _relocate_package(package, base, where)
    if validate:
        _validate(document, where)
    return (_header(data, base) + rtoml.dumps(document, pretty=True)).encode("utf-8")


def check_base_url(base_url: str) -> str:
    """``base_url`` ending in ``/``; RelocationError unless http(s)/file with no credentials."""
    try:
        parts = urllib.parse.urlsplit(base_url)
    except ValueError:  # of the host part (user:password@ too): never echoed
        raise RelocationError("not a URL: its host part does not parse",
                              where="--base-url") from None
    if parts.scheme not in ("http", "https", "file") or (parts.scheme != "file"
                                                         and not parts.hostname):
        raise RelocationError(f"not an http(s) or file URL: {base_url!r}", where="--base-url",
                              hint="give the mirror's root, e.g. https://mirror.internal/")
    if carries_credentials(base_url):
        raise RelocationError("the base URL carries credentials, which would be written into "
                              "the lockfile", where="--base-url",
                              hint="give the URL without user:password; let the installer "
                                   "authenticate (netrc, keyring)")
    if parts.query or parts.fragment:
        raise RelocationError(f"the base URL has a query or fragment: {base_url!r}",
                              where="--base-url")
    return base_url if base_url.endswith("/") else base_url + "/"


def mirror_root(base_url: str) -> str:
    """The mirror's root that ``lockmirror lockfile --base-url`` names: ``base_url``
    itself, or for the mirror's simple index (``.../simple/`` or ``.../simple``, the
    URL users are given) the directory holding it, as ``check-install --index-url``
    reads it. Checked as :func:`check_base_url` (RelocationError)."""
    base = check_base_url(base_url)
    parts = urllib.parse.urlsplit(base)
    if not parts.path.endswith("/simple/"):
        return base
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.removesuffix("simple/")))


def _relocate_package(package: Any, base: str | None, where: str) -> None:
    if not isinstance(package, dict) or not isinstance(package.get("name"), str):
        raise RelocationError("a [[packages]] entry has no name", where=where)
    project = _NORMALIZE.sub("-", package["name"]).lower()
    archives = list(package.get("wheels") or [])
    if isinstance(package.get("sdist"), dict):
        archives.append(package["sdist"])
    for archive in archives:
        if not isinstance(archive, dict):
            raise RelocationError(f"package '{project}' has a file entry that is not a table",
                                  where=where)
        filename = _filename(archive, project, where)
        archive.pop("url", None)
        archive.pop("path", None)
        if base is None:
            archive["path"] = f"{FILES_FROM_LOCKFILE}/{project}/{filename}"
        else:
            archive["url"] = f"{base}files/{project}/{urllib.parse.quote(filename)}"
    package.pop("index", None)
    if base is not None and archives:
        package["index"] = f"{base}simple/"


def _filename(archive: Any, project: str, where: str) -> str:
    location = archive.get("url") or archive.get("path") or ""
    name = archive.get("name") or urllib.parse.unquote(
        urllib.parse.urlsplit(location).path.rsplit("/", 1)[-1])
    if not name or "/" in name or name in (".", ".."):
        raise RelocationError(f"package '{project}' has a file without a name", where=where)
    return str(name)


def _validate(document: dict[str, Any], where: str) -> None:
    from packaging.pylock import Pylock, PylockValidationError

    try:  # from_dict validates; .validate() would only rebuild the dict and do it again
        Pylock.from_dict(document)
    except PylockValidationError as exc:
        raise RelocationError(f"not a valid PEP 751 lockfile after relocation: {exc}",
                              where=where) from None


def _header(data: bytes, base: str | None) -> str:
    """The input's leading comment lines, and one line saying where the files are."""
    lines = []
    for line in data.decode("utf-8").splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith(_NOTE):
            lines.append(line)
    where = f"under {base}files/" if base else "in ../files/, relative to this file"
    lines.append(f"{_NOTE} every file points at the mirror ({where}).")
    return "".join(line + "\n" for line in lines)


def set_of_lockfile_copy(path: str) -> str | None:
    """The set of an index's lockfile copy path (``lockfiles/pylock.<set>.toml``), else None."""
    prefix, suffix = "lockfiles/pylock.", ".toml"
    if path.startswith(prefix) and path.endswith(suffix) and "/" not in path[len(prefix):]:
        return path[len(prefix):-len(suffix)] or None
    return None
