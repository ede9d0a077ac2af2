"""What the index stage writes, as bytes: simple pages, landing page, client configuration.

Pure rendering, no file system: :mod:`lockmirror.index` decides what to
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
* the landing page ``index.html`` for people;
* :func:`pip_config`: pip / uv configuration for a mirror URL (the text the
  landing page shows and ``lockmirror pip-config`` prints).

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

from .fsutil import format_size

API_VERSION = "1.1"
JSON_CONTENT_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_CONTENT_TYPE = "application/vnd.pypi.simple.v1+html"
# The URL shown in configuration snippets where the real one is not known
# when the page is built; the landing page's script replaces it in the browser.
EXAMPLE_URL = "https://mirror.example.com/simple/"


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


@dataclass(frozen=True)
class SetTarget:
    name: str
    python: str
    implementation: str
    platforms: tuple[str, ...]


@dataclass(frozen=True)
class SetPackage:
    """A release as one set locks it: for which targets, and why."""

    name: str
    version: str
    targets: tuple[str, ...]
    size: int
    files: int
    build_only: bool = False
    yanked: str | None = None
    quarantined: bool = False  # locked, but left out of the index (quarantine list)


@dataclass(frozen=True)
class SetSummary:
    """What the landing page says about one package set."""

    name: str
    requirements: tuple[str, ...]
    targets: tuple[SetTarget, ...]
    packages: tuple[SetPackage, ...]
    input_hash: str
    total_size: int  # every distinct file of the set, once


@dataclass(frozen=True)
class Provenance:
    """Where the mirror's content came from."""

    config_name: str | None = None  # "mirror.yaml"
    config_sha256: str | None = None
    commit: str | None = None  # last commit touching mirror.yaml
    config_modified: bool = False  # mirror.yaml differs from that commit
    sources: tuple[str, ...] = ()  # index URLs the releases were locked from
    tool_version: str = ""


@dataclass(frozen=True)
class Snippet:
    """One piece of client configuration: a heading, where it goes, the text."""

    title: str
    where: str
    text: str


@dataclass(frozen=True)
class LandingPage:
    title: str
    set_names: tuple[str, ...]
    sections: tuple[str, ...]  # set_section() of each set (cached by the index stage)
    provenance: Provenance
    projects: int
    files: int
    total_size: int


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


def public_url(url: str) -> str:
    """``url`` without user name or password (source URLs may embed tokens)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=host))


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


# --------------------------------------------------------------------------
# Client configuration (pip-config command and landing page)
# --------------------------------------------------------------------------


def pip_config(url: str) -> list[Snippet]:
    """pip and uv configuration making ``url`` (a simple index URL) the only index.

    ``url`` is used as given except that a trailing ``/`` is added. For a
    plain-http URL pip also needs ``trusted-host`` (it refuses insecure
    hosts otherwise, except localhost).
    """
    if not url.endswith("/"):
        url += "/"
    parts = urllib.parse.urlsplit(url)
    trusted = parts.scheme == "http" and parts.hostname not in (None, "localhost", "127.0.0.1")
    trusted_line = f"trusted-host = {parts.hostname}\n" if trusted else ""
    pip_conf = f"[global]\nindex-url = {url}\n{trusted_line}"
    env = (f"export PIP_INDEX_URL={url}\n"
           + (f"export PIP_TRUSTED_HOST={parts.hostname}\n" if trusted else "")
           + f"export UV_DEFAULT_INDEX={url}\n"
           + f"export UV_INDEX_URL={url}  # uv older than 0.4.23\n")
    uv_toml = f'[[index]]\nname = "mirror"\nurl = "{url}"\ndefault = true\n'
    pyproject = f'[[tool.uv.index]]\nname = "mirror"\nurl = "{url}"\ndefault = true\n'
    once = (f"pip install --index-url {url} PACKAGE\n"
            f"uv pip install --default-index {url} PACKAGE\n")
    return [
        Snippet("pip", "pip.conf: ~/.config/pip/pip.conf (Linux), "
                "~/Library/Application Support/pip/pip.conf (macOS), "
                "%APPDATA%\\pip\\pip.ini (Windows), or /etc/pip.conf", pip_conf),
        Snippet("Environment variables", "shell profile or CI job", env),
        Snippet("uv", "uv.toml: ~/.config/uv/uv.toml or the project's uv.toml", uv_toml),
        Snippet("uv project", "pyproject.toml", pyproject),
        Snippet("One command", "command line", once),
    ]


def render_pip_config(url: str) -> str:
    """:func:`pip_config` as plain text with ``#`` headings."""
    parts = []
    for snippet in pip_config(url):
        parts.append(f"# --- {snippet.title} ({snippet.where})\n{snippet.text}")
    return "\n".join(parts)


# --------------------------------------------------------------------------
# Landing page
# --------------------------------------------------------------------------

_STYLE = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d2329;
background:#f6f7f9}
header{background:#1f3a5f;color:#fff;padding:1.2em 2em}
header h1{margin:0;font-size:1.6em}
header p{margin:.3em 0 0;opacity:.85}
main{max-width:72em;margin:0 auto;padding:1em 2em 3em}
section{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:.8em 1.4em;
margin:1.2em 0}
h2{font-size:1.25em;margin:.4em 0}
h3{font-size:1.05em;margin:1em 0 .4em}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1.2em;margin:.4em 0}
dl.facts dt{color:#5a6570}
dl.facts dd{margin:0;word-break:break-all}
code,pre{font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:#f0f3f6;border:1px solid #dde2e8;border-radius:4px;padding:.6em .8em;
white-space:pre-wrap;overflow-wrap:anywhere;margin:.3em 0 .8em}
table{border-collapse:collapse;width:100%;margin:.4em 0}
th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #e6e9ed;vertical-align:top}
th{background:#eef1f4;font-weight:600}
tbody tr:nth-child(even){background:#fafbfc}
td.num,th.num{text-align:right;white-space:nowrap}
.none{color:#a0a8b0}
.tag{display:inline-block;font-size:.8em;padding:0 .4em;border-radius:3px;background:#e8edf3;
color:#33475b;margin-left:.3em}
.yanked{background:#fbe3e1;color:#8a1f11}
details>summary{cursor:pointer;font-weight:600;margin:.4em 0}
.config{display:grid;grid-template-columns:repeat(auto-fit,minmax(28em,1fr));gap:0 1.4em}
.where{color:#5a6570;font-size:.85em}
""".strip()

_SCRIPT = """
(function(){
  var url = new URL("simple/", document.baseURI).href;
  var from = %s;
  document.querySelectorAll("[data-mirror-config]").forEach(function(node){
    node.textContent = node.textContent.split(from).join(url);
  });
  document.querySelectorAll("[data-mirror-url]").forEach(function(node){
    node.textContent = url;
  });
})();
""".strip()


def _facts(rows: Iterable[tuple[str, str]]) -> str:
    inner = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<dl class="facts">{inner}</dl>'


def set_section(summary: SetSummary) -> str:
    """The landing page's section for one set (depends on that set alone)."""
    out = [f'<section id="set-{escape(summary.name)}">',
           f"<h2>Set <code>{escape(summary.name)}</code></h2>"]
    distinct = {p.name for p in summary.packages}
    out.append(_facts([
        ("packages", f"{len(distinct)} ({len(summary.packages)} releases)"),
        ("size", escape(format_size(summary.total_size))),
        ("lockfile", (f'<a href="lockfiles/pylock.{escape(summary.name)}.toml">'
                      f"lockfiles/pylock.{escape(summary.name)}.toml</a>")),
        ("input hash", f"<code>{escape(summary.input_hash)}</code>"),
    ]))
    out.append("<h3>Targets</h3><table><thead><tr><th>target</th><th>python</th>"
               "<th>platforms</th><th>constraints</th></tr></thead><tbody>")
    for set_target in summary.targets:
        path = f"constraints/{summary.name}-{set_target.name}.txt"
        out.append(f"<tr><td><code>{escape(set_target.name)}</code></td>"
                   f"<td>{escape(set_target.implementation)}{escape(set_target.python)}</td>"
                   f"<td>{escape(', '.join(set_target.platforms))}</td>"
                   f'<td><a href="{escape(path)}">{escape(path)}</a></td></tr>')
    out.append("</tbody></table>")
    if summary.requirements:
        out.append("<details><summary>Requirements "
                   f"({len(summary.requirements)})</summary><pre>"
                   + escape("\n".join(summary.requirements)) + "</pre></details>")
    target_names = [t.name for t in summary.targets]
    rows: dict[str, dict[str, list[SetPackage]]] = {}
    for package in summary.packages:
        per_target = rows.setdefault(package.name, {})
        for target in package.targets:
            per_target.setdefault(target, []).append(package)
    out.append(f"<h3>Packages ({len(distinct)})</h3><table><thead><tr><th>package</th>"
               + "".join(f"<th>{escape(t)}</th>" for t in target_names)
               + '<th class="num">files</th><th class="num">size</th></tr></thead><tbody>')
    releases_by_name: dict[str, list[SetPackage]] = {}
    for package in summary.packages:
        releases_by_name.setdefault(package.name, []).append(package)
    for name in sorted(rows):
        cells = []
        for target in target_names:
            found = rows[name].get(target, [])
            if not found:
                cells.append('<td class="none">-</td>')
                continue
            texts = []
            for package in found:
                text = escape(package.version)
                if package.yanked is not None:
                    text += '<span class="tag yanked">yanked</span>'
                if package.build_only:
                    text += '<span class="tag">build</span>'
                if package.quarantined:
                    text += '<span class="tag yanked">quarantined</span>'
                texts.append(text)
            cells.append(f"<td>{'<br>'.join(texts)}</td>")
        releases = releases_by_name[name]
        files = sum(p.files for p in releases)
        size = sum(p.size for p in releases)
        out.append(f'<tr><td><a href="simple/{escape(name)}/">{escape(name)}</a></td>'
                   + "".join(cells)
                   + f'<td class="num">{files}</td>'
                   f'<td class="num">{escape(format_size(size))}</td></tr>')
    out.append("</tbody></table></section>")
    return "\n".join(out)


def landing_html(page: LandingPage) -> str:
    """The human front page: sets, packages and versions per target, sizes,
    provenance, and copy-paste client configuration."""
    prov = page.provenance
    facts: list[tuple[str, str]] = []
    if prov.commit:
        commit = f"<code>{escape(prov.commit)}</code>"
        if prov.config_modified:
            commit += ' <span class="tag yanked">modified since this commit</span>'
        facts.append((f"{prov.config_name or 'mirror.yaml'} commit", commit))
    elif prov.config_name:
        facts.append(("commit", "not in a git repository"))
    if prov.config_sha256:
        facts.append((f"{prov.config_name or 'mirror.yaml'} sha256",
                      f"<code>{escape(prov.config_sha256)}</code>"))
    if prov.sources:
        facts.append(("locked from", "<br>".join(
            f"<code>{escape(public_url(s))}</code>" for s in prov.sources)))
    facts.append(("built by", f"lockmirror {escape(prov.tool_version)}"))
    facts.append(("manifest", ('<a href="manifest.json">manifest.json</a> '
                               "(path, size and sha256 of every file)")))
    snippets = pip_config(EXAMPLE_URL)
    config_html = "".join(
        f'<div><h3>{escape(s.title)}</h3><div class="where">{escape(s.where)}</div>'
        f"<pre data-mirror-config>{escape(s.text)}</pre></div>" for s in snippets)
    set_links = ", ".join(f'<a href="#set-{escape(name)}"><code>{escape(name)}</code></a>'
                          for name in page.set_names)
    body = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(page.title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        (f"<header><h1>{escape(page.title)}</h1>"
         f"<p>{len(page.set_names)} package sets, {page.projects} projects, {page.files} files, "
         f"{escape(format_size(page.total_size))}</p></header>"),
        "<main>",
        '<section id="use"><h2>Use this mirror</h2>',
        ("<p>Simple index (PEP 503/691): "
         f'<code data-mirror-url>{escape(EXAMPLE_URL)}</code> &mdash; '
         '<a href="simple/">simple/</a> beside this page. '
         "The snippets below show this mirror's address when the page is opened "
         "from where the mirror is served; otherwise replace the example URL.</p>"),
        f'<div class="config">{config_html}</div>',
        ("<p>To install a set exactly as locked, use its lockfile or its constraints file "
         "for your target: <code>pip install -c constraints/SET-TARGET.txt "
         "PACKAGE</code>.</p>"),
        "</section>",
        '<section id="provenance"><h2>Where this content came from</h2>',
        _facts(facts),
        f"<p>Sets: {set_links}</p>" if page.set_names else "",
        "</section>",
    ]
    body += page.sections
    body += [
        "</main>",
        f"<script>{_SCRIPT % json.dumps(EXAMPLE_URL)}</script>",
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(line for line in body if line)
