"""What the index stage writes for installers, as bytes: simple pages, constraints,
hashed requirements.

Pure rendering, no file system: :mod:`lockmirror.stages.index` decides what to
write and where. Every function is deterministic (inputs sorted by the
caller or here, no clock) and emits *relative* links only, so the same tree
works over ``file://``, a static web server, S3 and from an extracted bundle.

Formats:

* project pages: PEP 503 HTML and PEP 691 JSON (api-version 1.1, with the
  PEP 700 ``versions``, ``size`` and ``upload-time``), each advertising the
  PEP 658 core metadata hash under its PEP 714 name only and the PEP 592
  yanked status;
* root pages: the PEP 503/691 project list;
* ``constraints/<set>-<target>.txt``: ``name==version`` pins;
* ``requirements/<set>-<target>.txt``: the same closure with ``--hash`` options,
  for ``pip install --require-hashes -r`` (pip 8 to 26.0, which read no lockfile; each
  installs only the wheels whose platform tags it reads: README.md's tag table).

The landing page ``index.html`` for people and the pip / uv configuration
are :mod:`lockmirror.formats.landing_page`.

Core metadata keys (PEP 714), as pip's ``models/link.py`` reads them:

* pip <= 22.2 (21.2.3 of RHEL 9, 22.0.2 of Ubuntu 22.04): no PEP 658 support;
  any key is ignored and the wheel itself is downloaded.
* pip 22.3 - 23.1 (23.0.1 of Debian 12): reads only the old names. In JSON it
  expects a string where PEP 691 has a dict (``TypeError: unhashable type:
  'dict'``, ``'dict' object has no attribute 'partition'``); in HTML it
  compares the metadata's ``Name`` with the requirement's spelling verbatim
  ("inconsistent Name", then ResolutionImpossible).
* pip >= 23.2 and uv: read ``core-metadata`` / ``data-core-metadata`` first.

So the pages carry ``data-core-metadata`` (HTML) and ``core-metadata`` (JSON)
and never the old names: every pip above installs, the older ones without
the metadata shortcut. (``_PEP_714`` in the renderers points here.)

Imports are kept to the standard library so the index entry point starts fast.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .landing_page import SetTarget

API_VERSION = "1.1"
JSON_CONTENT_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_CONTENT_TYPE = "application/vnd.pypi.simple.v1+html"
FILE_CACHE = "public, max-age=31536000, immutable"
# what a distribution file's name ends in (the files/ an index serves)
ARTIFACT_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz", ".egg")
PAGE_CACHE = "public, max-age=60"


def content_type(path: str) -> str:
    """Content-Type of a tree path (or a directory key ending in ``/``) when a
    static host serves it as a file (``lockmirror serve`` sends the same): simple
    JSON pages as PEP 691 JSON; artifacts as bytes, whatever their names end in."""
    if path.startswith("simple/") and path.endswith("index.json"):
        return JSON_CONTENT_TYPE
    if path.startswith("files/"):
        return "application/octet-stream"
    if path.endswith(("/", ".html")):
        return "text/html; charset=utf-8"
    if path.endswith(".json"):
        return "application/json"
    if path.endswith((".txt", ".toml")):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


def cache_control(path: str) -> str:
    """Artifacts never change under a name; everything else is short-lived."""
    return FILE_CACHE if path.startswith("files/") else PAGE_CACHE


# --------------------------------------------------------------------------
# The model the pages are rendered from (plain, cacheable values)
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndexFile:
    """One artifact of a release, as the index advertises it."""

    filename: str
    size: int
    sha256: str
    upload_time: str | None  # ISO 8601 UTC ("...Z"), PEP 700
    metadata_sha256: str | None  # PEP 658 core metadata of a wheel, when locked


@dataclass(frozen=True, slots=True)
class Release:
    """One (project, version) with its files, merged over every lockfile."""

    name: str  # normalized (PEP 503)
    version: str
    requires_python: str | None
    yanked: str | None  # None: not yanked; "" yanked without reason
    files: tuple[IndexFile, ...]


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def version_key(version: str) -> tuple[object, ...]:
    """Sort key in PEP 440 order; anything unparsable sorts first, by text."""
    from packaging.version import InvalidVersion, Version

    try:
        return (1, Version(version), version)
    except InvalidVersion:
        return (0, version, version)


def file_href(project: str, filename: str) -> str:
    """The link from ``simple/<project>/`` to an artifact (relative, quoted)."""
    return f"../../files/{project}/{urllib.parse.quote(filename)}"


def _sorted_files(releases: Sequence[Release]) -> list[tuple[Release, IndexFile]]:
    ordered = sorted(releases, key=lambda r: version_key(r.version))
    return [(r, f) for r in ordered for f in sorted(r.files, key=lambda f: f.filename)]


# --------------------------------------------------------------------------
# Simple repository API
# --------------------------------------------------------------------------


def project_html(project: str, releases: Sequence[Release]) -> str:
    """PEP 503 page: sha256 fragment, data-requires-python, data-yanked, PEP 658/714."""
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
        f"    <title>Links for {escape(project)}</title>",
        "  </head>",
        "  <body>",
        f"    <h1>Links for {escape(project)}</h1>",
    ]
    for release, file in _sorted_files(releases):
        attrs = [f'href="{escape(file_href(project, file.filename))}#sha256={file.sha256}"']
        if release.requires_python:
            attrs.append(f'data-requires-python="{escape(release.requires_python)}"')
        if file.metadata_sha256:
            # PEP 714: the new name only. pips 22.3-23.1 read the old name and fail
            # (module docstring); they ignore this one and download the wheel instead.
            attrs.append(f'data-core-metadata="sha256={file.metadata_sha256}"')
        if release.yanked is not None:
            attrs.append(f'data-yanked="{escape(release.yanked)}"')
        lines.append(f"    <a {' '.join(attrs)}>{escape(file.filename)}</a><br>")
    lines += ["  </body>", "</html>", ""]
    return "\n".join(lines)


def project_json(project: str, releases: Sequence[Release]) -> str:
    """PEP 691 JSON, api-version 1.1 (PEP 700: versions, size, upload-time)."""
    files = []
    for release, file in _sorted_files(releases):
        entry: dict[str, object] = {
            "filename": file.filename,
            "url": file_href(project, file.filename),
            "hashes": {"sha256": file.sha256},
        }
        if release.requires_python:
            entry["requires-python"] = release.requires_python
        if file.metadata_sha256:
            entry["core-metadata"] = {"sha256": file.metadata_sha256}  # PEP 714 only
        entry["yanked"] = (release.yanked or True) if release.yanked is not None else False
        entry["size"] = file.size
        if file.upload_time:
            entry["upload-time"] = file.upload_time
        files.append(entry)
    versions = sorted({r.version for r in releases}, key=version_key)
    data = {"meta": {"api-version": API_VERSION}, "name": project, "versions": versions,
            "files": files}
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n"


def root_html(projects: Iterable[str]) -> str:
    """PEP 503 root: one link per (normalized) project, relative."""
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
        "    <title>Simple index</title>",
        "  </head>",
        "  <body>",
    ]
    lines += [f'    <a href="{escape(p)}/">{escape(p)}</a><br>' for p in sorted(projects)]
    lines += ["  </body>", "</html>", ""]
    return "\n".join(lines)


def root_json(projects: Iterable[str]) -> str:
    data = {"meta": {"api-version": API_VERSION},
            "projects": [{"name": p} for p in sorted(projects)]}
    return json.dumps(data, separators=(",", ":")) + "\n"


# --------------------------------------------------------------------------
# Constraints
# --------------------------------------------------------------------------


def constraints_text(set_name: str, target: SetTarget, pins: Iterable[tuple[str, str]]) -> str:
    """``name==version`` lines for ``pip install -c`` / ``uv pip install -c``."""
    header = (
        f"# Constraints for the package set '{set_name}' on the target '{target.name}'\n"
        f"# ({target.implementation}{target.python}, {', '.join(target.platforms)}).\n"
        "# Generated by lockmirror from the lockfile; use with\n"
        f"#   pip install -c constraints/{set_name}-{target.name}.txt ...\n"
    )
    lines = sorted({f"{name}=={version}" for name, version in pins})
    return header + "".join(line + "\n" for line in lines)


def requirements_text(set_name: str, target: SetTarget,
                      pins: Iterable[tuple[str, str, Sequence[str]]]) -> str:
    """The locked closure as pip-compile --generate-hashes writes it: ``name==version``
    and a ``--hash=sha256:...`` per file, for ``pip install --require-hashes -r``
    (the hashes come from the committed lockfile, not from the server that serves
    the files: they guard against it only when this file does not come from it)."""
    header = (
        f"# Requirements with hashes for the package set '{set_name}' on the target "
        f"'{target.name}'\n"
        f"# ({target.implementation}{target.python}, {', '.join(target.platforms)}).\n"
        "# Generated by lockmirror from the lockfile; install with\n"
        f"#   pip install --require-hashes -r requirements/{set_name}-{target.name}.txt\n"
    )
    blocks = [f"{name}=={version}" + "".join(f" \\\n    --hash=sha256:{digest}"
                                             for digest in digests) + "\n"
              for name, version, digests in sorted(pins)]
    return header + "".join(blocks)
