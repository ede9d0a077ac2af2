"""pip and uv configuration that makes a mirror's simple index the only index.

:func:`pip_config` is the text ``lockmirror pip-config`` and ``lockmirror serve``
print and the landing page shows (:mod:`lockmirror.formats.landing_page`);
:func:`pip_index_arguments` is the index part of one pip command line, also
what ``check-install`` gives pip (:mod:`lockmirror.stages.install_runs`).

pip ignores an index on plain http ("is not a trusted or secure host") unless
it is told to trust the host (:func:`trusted_host`); uv needs no such setting.

Imports are kept to the standard library so the index entry point starts fast.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

# What pip counts as secure over plain http (pip's SECURE_ORIGINS): localhost by
# name and these networks by address; any other http host needs trusted-host.
_PIP_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True)
class Snippet:
    """One piece of client configuration: a heading, where it goes, the text."""

    title: str
    where: str
    text: str


def trusted_host(url: str) -> str | None:
    """The host pip must be told to trust (``--trusted-host``) to use ``url``, or
    None where pip trusts it already: https, file, and plain http to localhost,
    127.0.0.0/8 or ::1, as pip decides. A host without a port trusts each of its
    ports in pip; an IPv6 address is given in brackets (as a browser's
    ``location.hostname`` is)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname  # lower case, without brackets
    if parts.scheme != "http" or not host or host == "localhost":
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a name (or a form like 127.1): pip compares it with localhost only
        return host
    if any(address in network for network in _PIP_LOOPBACK):
        return None
    return f"[{host}]" if address.version == 6 else host


def pip_index_arguments(url: str) -> list[str]:
    """``--index-url URL``, with ``--trusted-host HOST`` where pip needs it
    (:func:`trusted_host`). pip hands both to the pip that installs an sdist's
    build requirements."""
    host = trusted_host(url)
    return ["--index-url", url, *(["--trusted-host", host] if host else [])]


def pip_config(url: str, environments: Sequence[str] = ()) -> list[Snippet]:
    """pip and uv configuration making ``url`` (a simple index URL) the only index;
    ``environments``, the targets' markers
    (:func:`lockmirror.formats.landing_page.target_markers`), limit ``uv lock`` to them.

    ``url`` is used as given except that a trailing ``/`` is added. A plain-http
    URL pip does not trust by itself gets ``trusted-host`` in every pip snippet.
    """
    if not url.endswith("/"):
        url += "/"
    host = trusted_host(url)
    pip_conf = f"[global]\nindex-url = {url}\n" + (f"trusted-host = {host}\n" if host else "")
    env = (f"export PIP_INDEX_URL={url}\n"
           + (f"export PIP_TRUSTED_HOST={host}\n" if host else "")
           + f"export UV_DEFAULT_INDEX={url}\n"
           + f"export UV_INDEX_URL={url}  # uv older than 0.4.23\n")
    uv_toml = f'[[index]]\nname = "mirror"\nurl = "{url}"\ndefault = true\n'
    pyproject = f'[[tool.uv.index]]\nname = "mirror"\nurl = "{url}"\ndefault = true\n'
    if environments:
        pyproject += "\n" + _uv_environments(environments)
    once = (f"pip install {' '.join(pip_index_arguments(url))} PACKAGE\n"
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


def _uv_environments(markers: Sequence[str]) -> str:
    """``[tool.uv] environments``: ``uv lock`` resolves for every platform unless
    told otherwise. One entry, the targets' markers joined by ``or``: uv refuses
    an entry that does not overlap the project's requires-python (a mirror's
    Python 3.9 target in a ``>=3.11`` project), and the entries must not overlap
    each other; uv still splits the resolution where the targets differ."""
    union = " or ".join(f"({marker})" if len(markers) > 1 else marker for marker in markers)
    return ("[tool.uv]  # lock only for this mirror's targets that requires-python allows\n"
            f"environments = [\n    '{union}',\n]\n")


def render_pip_config(url: str, environments: Sequence[str] = ()) -> str:
    """:func:`pip_config` as plain text with ``#`` headings."""
    parts = []
    for snippet in pip_config(url, environments):
        parts.append(f"# --- {snippet.title} ({snippet.where})\n{snippet.text}")
    return "\n".join(parts)
