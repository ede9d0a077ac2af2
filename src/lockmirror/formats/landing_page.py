"""The landing page ``index.html`` for people, with client configuration.

Pure rendering, no file system, deterministic (no clock), relative links
only: :mod:`lockmirror.stages.index` builds the page from :class:`SetSummary`
values (cached per set) and writes it. The configuration it shows is
:func:`lockmirror.formats.client_config.pip_config` for an example URL, which
the page's script replaces with the page's own address. The simple pages are
:mod:`lockmirror.formats.pages`. The page's data, ``landing.json``, is read back by the
far side under :func:`reading_landing_data` (one wording for every error of it).

Imports are kept to the standard library so the index entry point starts fast.
"""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html import escape
from pathlib import Path

from ..errors import LockmirrorError
from ..fsutil import format_size, plural
from .bounded import load_json
from .client_config import pip_config, pip_index_arguments, trusted_host

# The URL shown in configuration snippets where the real one is not known
# when the page is built; the landing page's script replaces it in the browser.
EXAMPLE_URL = "https://mirror.example.com/simple/"
EXAMPLE_ROOT = EXAMPLE_URL.removesuffix("simple/")  # the page's own address, for its files
# The same for a page served on plain http to a host pip does not trust by itself:
# each snippet's text for this URL (with trusted-host) is in its data-plain-http.
EXAMPLE_HTTP_URL = "http://mirror.example.com/simple/"
EXAMPLE_HTTP_ROOT = EXAMPLE_HTTP_URL.removesuffix("simple/")
EXAMPLE_HOST = trusted_host(EXAMPLE_HTTP_URL)  # the trusted-host its pip snippets carry


# --------------------------------------------------------------------------
# The model the landing page is rendered from (plain, cacheable values)
# --------------------------------------------------------------------------


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
    size: int  # of its files as locked (the page counts them only while served)
    files: int
    build_only: bool = False
    yanked: str | None = None
    quarantined: bool = False  # locked, but left out of the index (quarantine list)
    kept_for: str | None = None  # not in the current lock; retention keeps it (and why)


@dataclass(frozen=True)
class SetSummary:
    """What the landing page says about one package set."""

    name: str
    requirements: tuple[str, ...]
    targets: tuple[SetTarget, ...]
    packages: tuple[SetPackage, ...]
    input_hash: str
    total_size: int  # every distinct file of the set's current lock the mirror serves, once


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
class LandingPage:
    title: str
    set_names: tuple[str, ...]
    sections: tuple[str, ...]  # set_section() of each set (cached by the index stage)
    provenance: Provenance
    projects: int
    files: int
    total_size: int
    sbom: bool = False  # the index has sbom/mirror.cdx.json (and each set's)
    environments: tuple[str, ...] = ()  # a PEP 508 marker per target, for uv lock



# --------------------------------------------------------------------------
# The model as data: ``landing.json`` beside the page
# --------------------------------------------------------------------------

LANDING_DATA = "landing.json"
_DATA_FORMAT = 1


@dataclass(frozen=True)
class LandingData:
    """What the landing page is rendered from, less the counts the manifest
    gives; kept beside the page as ``landing.json``, so that the far side (which
    has no store or lockfiles to build it from) renders the page again after
    taking releases out (:mod:`lockmirror.stages.import_quarantine`)."""

    title: str
    provenance: Provenance
    sets: tuple[SetSummary, ...]
    sbom: bool

    def page(self, *, projects: int, files: int, total_size: int) -> LandingPage:
        """The landing page of these sets, with the index's counts."""
        return LandingPage(title=self.title, set_names=tuple(s.name for s in self.sets),
                           sections=tuple(set_section(s, sbom=self.sbom) for s in self.sets),
                           provenance=self.provenance, projects=projects, files=files,
                           total_size=total_size, sbom=self.sbom,
                           environments=self.environments())

    def environments(self) -> tuple[str, ...]:  # :func:`target_markers` of the sets' targets
        return target_markers(target for s in self.sets for target in s.targets)

    def to_json(self) -> bytes:
        """``landing.json``'s bytes (deterministic)."""
        data = {"format": _DATA_FORMAT, "title": self.title, "sbom": self.sbom,
                "provenance": self.provenance, "sets": self.sets}
        # default=vars: each dataclass as its fields (tuples are JSON arrays), without
        # dataclasses.asdict's deep copy of every value (0.02 s of a 0.35 s add-one index run)
        return (json.dumps(data, sort_keys=True, separators=(",", ":"), default=vars)
                + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> LandingData:
        """Parse ``landing.json`` (with the limits of :func:`load_json`: it comes
        from a bundle); InputError, ValueError, KeyError or TypeError if it is not one."""
        raw = load_json(data, where=LANDING_DATA)
        if raw.get("format") != _DATA_FORMAT:
            raise ValueError(f"landing data format {raw.get('format')!r}")
        sets = tuple(SetSummary(
            name=s["name"], requirements=tuple(s["requirements"]),
            targets=tuple(SetTarget(t["name"], t["python"], t["implementation"],
                                    tuple(t["platforms"])) for t in s["targets"]),
            packages=tuple(SetPackage(**{**p, "targets": tuple(p["targets"])})
                           for p in s["packages"]),
            input_hash=s["input_hash"], total_size=int(s["total_size"])) for s in raw["sets"])
        provenance = Provenance(**{**raw["provenance"],
                                   "sources": tuple(raw["provenance"]["sources"])})
        return cls(title=str(raw["title"]), provenance=provenance, sets=sets,
                   sbom=bool(raw["sbom"]))


@contextlib.contextmanager
def reading_landing_data(path: Path) -> Iterator[None]:
    """Around reading and using a mirror's ``landing.json`` (``path``; it came in a bundle,
    so it may be any JSON): what it raises is one LockmirrorError naming the file."""
    try:
        yield
    except (LockmirrorError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        reason = (exc.message if isinstance(exc, LockmirrorError) else
                  str(exc) if isinstance(exc, ValueError) else exc.__class__.__name__)
        raise LockmirrorError(f"not the index's own landing data ({reason})", where=str(path),
                              hint="run `lockmirror verify` on the mirror") from None


def target_markers(targets: Iterable[SetTarget]) -> tuple[str, ...]:
    """A PEP 508 marker per target, sorted, each once: what ``uv lock`` must be limited
    to, or it resolves for every platform (click's Windows-only colorama)."""
    from ..targets import Target  # packaging's tags and markers: only to render

    return tuple(sorted({Target(t.name, t.python, t.implementation, t.platforms)
                         .environment_marker() for t in targets}))


def public_url(url: str) -> str:
    """``url`` without user name or password (source URLs may embed tokens)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=host))


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

# pip refuses plain http except to localhost, 127.0.0.0/8 and ::1
# (client_config.trusted_host): a page served to any other http host shows each
# snippet's data-plain-http text, which names the host to trust.
_SCRIPT = """
(function(){
  var page = new URL(document.baseURI);
  var plainHttp = page.protocol === "http:"
    && !/^(localhost|127[.][0-9]+[.][0-9]+[.][0-9]+|\\[::1\\])$/.test(page.hostname);
  var url = new URL("simple/", page).href, root = new URL("./", page).href;
  var from = %s[plainHttp ? "http" : "https"];
  function fill(text){  // one pass: a replaced part is not replaced again
    return text.split(from[0]).map(function(part){
      return part.split(from[1]).map(function(rest){
        return from[2] ? rest.split(from[2]).join(page.hostname) : rest;
      }).join(root);
    }).join(url);
  }
  document.querySelectorAll("[data-mirror-config]").forEach(function(node){
    node.textContent = fill(plainHttp ? node.getAttribute("data-plain-http") : node.textContent);
  });
  document.querySelectorAll("[data-mirror-url]").forEach(function(node){
    node.textContent = url;
  });
})();
""".strip()


def _facts(rows: Iterable[tuple[str, str]]) -> str:
    inner = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<dl class="facts">{inner}</dl>'


def set_section(summary: SetSummary, *, sbom: bool = False) -> str:
    """The landing page's section for one set (depends on that set alone);
    ``sbom``: link its CycloneDX SBOM, ``sbom/<set>.cdx.json``."""
    out = [f'<section id="set-{escape(summary.name)}">',
           f"<h2>Set <code>{escape(summary.name)}</code></h2>",
           _set_facts(summary, sbom=sbom), _targets_table(summary)]
    if summary.requirements:
        out.append("<details><summary>Requirements "
                   f"({len(summary.requirements)})</summary><pre>"
                   + escape("\n".join(summary.requirements)) + "</pre></details>")
    out.append(_packages_table(summary))
    return "\n".join(out)


def _set_facts(summary: SetSummary, *, sbom: bool) -> str:
    """A set's packages, size, lockfile, input hash and SBOM link."""
    locked = [p for p in summary.packages if p.kept_for is None]
    kept = len(summary.packages) - len(locked)
    return _facts([
        ("packages", f"{len({p.name for p in locked})} ({plural(len(locked), 'release')}"
                     + (f"; {kept} more kept for earlier locks)" if kept else ")")),
        ("size", escape(format_size(summary.total_size))),
        ("lockfile", (f'<a href="lockfiles/pylock.{escape(summary.name)}.toml">'
                      f"lockfiles/pylock.{escape(summary.name)}.toml</a>")),
        ("input hash", f"<code>{escape(summary.input_hash)}</code>"),
        *([("SBOM", (f'<a href="sbom/{escape(summary.name)}.cdx.json">'
                     f"sbom/{escape(summary.name)}.cdx.json</a> (CycloneDX 1.6)"))]
          if sbom else []),
    ])


def _targets_table(summary: SetSummary) -> str:
    """A set's targets, each with its constraints and hashed requirements files."""
    out = ["<h3>Targets</h3><table><thead><tr><th>target</th><th>python</th>"
           "<th>platforms</th><th>constraints, requirements with hashes</th></tr></thead><tbody>"]
    for set_target in summary.targets:
        paths = [f"{kind}/{summary.name}-{set_target.name}.txt"
                 for kind in ("constraints", "requirements")]
        out.append(f"<tr><td><code>{escape(set_target.name)}</code></td>"
                   f"<td>{escape(set_target.implementation)}{escape(set_target.python)}</td>"
                   f"<td>{escape(', '.join(set_target.platforms))}</td><td>"
                   + "<br>".join(f'<a href="{escape(p)}">{escape(p)}</a>' for p in paths)
                   + "</td></tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _packages_table(summary: SetSummary) -> str:
    """One row per project: its release(s) on each target, the files and size served."""
    target_names = [t.name for t in summary.targets]
    releases_by_name: dict[str, list[SetPackage]] = {}
    for package in summary.packages:
        releases_by_name.setdefault(package.name, []).append(package)
    out = [f"<h3>Packages ({len(releases_by_name)})</h3><table><thead><tr><th>package</th>"
           + "".join(f"<th>{escape(t)}</th>" for t in target_names)
           + '<th class="num">files</th><th class="num">size</th></tr></thead><tbody>']
    for name in sorted(releases_by_name):
        releases = releases_by_name[name]
        cells = []
        for target in target_names:
            found = [p for p in releases if target in p.targets]
            cells.append(f"<td>{'<br>'.join(_release_text(p) for p in found)}</td>"
                         if found else '<td class="none">-</td>')
        # the counts are what the mirror serves, as the header's: no quarantined file;
        # a project whose every release here is quarantined may have no page left
        served = [p for p in releases if not p.quarantined]
        link = (f'<a href="simple/{escape(name)}/">{escape(name)}</a>' if served
                else escape(name))
        out.append(f'<tr><td>{link}</td>'
                   + "".join(cells)
                   + f'<td class="num">{sum(p.files for p in served)}</td>'
                   f'<td class="num">{escape(format_size(sum(p.size for p in served)))}'
                   "</td></tr>")
    out.append("</tbody></table></section>")
    return "\n".join(out)


def _release_text(package: SetPackage) -> str:
    """A release in a target's cell: its version and tags (yanked, build, ...)."""
    text = escape(package.version)
    if package.yanked is not None:
        text += '<span class="tag yanked">yanked</span>'
    if package.build_only:
        text += '<span class="tag">build</span>'
    if package.quarantined:
        text += '<span class="tag yanked">quarantined</span>'
    if package.kept_for:
        text += f'<span class="tag">{escape(package.kept_for)}</span>'
    return text


def _provenance_facts(page: LandingPage) -> list[tuple[str, str]]:
    """Where the content came from: mirror.yaml's commit and sha256, the
    sources, the tool, the manifest and the SBOM."""
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
    if page.sbom:
        facts.append(("SBOM", ('<a href="sbom/mirror.cdx.json">sbom/mirror.cdx.json</a> '
                               "(CycloneDX 1.6, every set; one per set below)")))
    return facts


def _config_node(tag: str, text: str, plain_http: str) -> str:
    """Configuration text for https (the content) and for plain http (an attribute)."""
    return (f'<{tag} data-mirror-config data-plain-http="{escape(plain_http)}">'
            f"{escape(text)}</{tag}>")


def _script_examples() -> str:
    """The example URL, root and trusted host the script replaces, per kind of page."""
    return json.dumps({"https": [EXAMPLE_URL, EXAMPLE_ROOT, None],
                       "http": [EXAMPLE_HTTP_URL, EXAMPLE_HTTP_ROOT, EXAMPLE_HOST]})


def landing_html(page: LandingPage) -> str:
    """The human front page: sets, packages and versions per target, sizes,
    provenance, and copy-paste client configuration."""
    plain_http = pip_config(EXAMPLE_HTTP_URL, page.environments)
    config_html = "".join(
        f'<div><h3>{escape(s.title)}</h3><div class="where">{escape(s.where)}</div>'
        f"{_config_node('pre', s.text, http.text)}</div>"
        for s, http in zip(pip_config(EXAMPLE_URL, page.environments), plain_http, strict=True))
    roots = ((EXAMPLE_URL, EXAMPLE_ROOT), (EXAMPLE_HTTP_URL, EXAMPLE_HTTP_ROOT))
    constraints = [f"pip install {' '.join(pip_index_arguments(url))} -c "
                   f"{root}constraints/SET-TARGET.txt PACKAGE" for url, root in roots]
    hashed = [f"pip install {' '.join(pip_index_arguments(url))} --require-hashes -r "
              f"{root}requirements/SET-TARGET.txt" for url, root in roots]
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
         f"<p>{plural(len(page.set_names), 'package set')}, {plural(page.projects, 'project')}, "
         f"{plural(page.files, 'file')}, "
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
         f"for your target, from the mirror: {_config_node('code', *constraints)}; with a "
         f"pip older than 26.1, check every file's hash: {_config_node('code', *hashed)}. "
         "Read from this server, that requirements file refuses a file altered here alone, not a "
         "server that alters both: take it from a copy you trust (the verified bundle's).</p>"),
        "</section>",
        '<section id="provenance"><h2>Where this content came from</h2>',
        _facts(_provenance_facts(page)),
        f"<p>Sets: {set_links}</p>" if page.set_names else "",
        "</section>",
    ]
    body += page.sections
    body += [
        "</main>",
        f"<script>{_SCRIPT % _script_examples()}</script>",
        "</body>",
        "</html>",
        "",
    ]
    return "\n".join(line for line in body if line)
