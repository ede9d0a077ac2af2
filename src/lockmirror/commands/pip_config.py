"""``lockmirror pip-config URL``: pip and uv configuration for a mirror."""

from __future__ import annotations

import argparse

NAME = "pip-config"
HELP = ("print pip.conf, environment variables and uv configuration that make URL "
        "(a mirror's simple/ index) the only index")


_CREDENTIALS_HINT = ("give the URL without them; pip and uv read credentials from keyring "
                     "or ~/.netrc, or from PIP_INDEX_URL / UV_DEFAULT_INDEX you set in "
                     "your own environment")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the mirror's simple index, e.g. "
                                    "https://mirror.example/simple/; without user:password "
                                    "(pip and uv take those from keyring or ~/.netrc)")


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..formats.client_config import render_pip_config
    from ..redaction import carries_credentials, redact_url

    if not args.url.startswith(("http://", "https://", "file://")):
        said = "the URL" if set("@?#") & set(args.url) else f"'{args.url}'"  # no secret said
        raise InputError(f"{said} is not an http(s) or file URL",
                              hint="give the mirror's simple index URL, e.g. "
                                   "https://mirror.example/simple/")
    # neither a query nor user:password@ is echoed: either may hold a token
    shown = redact_url(args.url.split("?", 1)[0].split("#", 1)[0])
    if carries_credentials(args.url):  # the snippets are copied into files users commit
        raise InputError(f"{shown}: the URL carries credentials "
                         "(user:password@), which would be printed into pip.conf, the "
                         "environment lines and pyproject.toml", hint=_CREDENTIALS_HINT)
    if "?" in args.url or "#" in args.url:  # pip joins project names onto the path only
        raise InputError(f"{shown}: the URL has a query or fragment (?... or #...), which "
                         "pip drops when it joins a project name onto the index URL",
                         hint="give the URL without ?.../#...; if it held a credential, "
                              + _CREDENTIALS_HINT.removeprefix("give the URL without them; "))
    try:
        text = render_pip_config(args.url)
    except ValueError:  # of the host part (a bad IPv6 address or port)
        raise InputError(f"'{args.url}' is not a URL: its host part does not parse") from None
    print(text, end="")
    return 0
