"""``lockmirror pip-config URL``: pip and uv configuration for a mirror."""

from __future__ import annotations

import argparse

NAME = "pip-config"
HELP = ("print pip.conf, environment variables and uv configuration that make URL "
        "(a mirror's simple/ index) the only index")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the mirror's simple index, e.g. https://mirror.example/simple/")


def run(args: argparse.Namespace) -> int:
    from ..errors import LockmirrorError
    from ..formats.client_config import render_pip_config

    if not args.url.startswith(("http://", "https://", "file://")):
        raise LockmirrorError(f"'{args.url}' is not an http(s) or file URL",
                              hint="give the mirror's simple index URL, e.g. "
                                   "https://mirror.example/simple/")
    print(render_pip_config(args.url), end="")
    return 0
