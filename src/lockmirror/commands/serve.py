"""``lockmirror serve [DIR]``: serve a built index over HTTP (trials and small sites)."""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

NAME = "serve"
HELP = ("serve a built dist-index/ over HTTP with PEP 691 content negotiation "
        "(for trials and small sites; use nginx or object storage in production)")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", nargs="?", type=Path, default=Path("dist-index"),
                        help="the index tree (default: dist-index)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1; 0.0.0.0 for every "
                             "interface)")
    parser.add_argument("--port", type=int, default=8080, help="default: 8080; 0 picks a free one")
    parser.add_argument("--idle-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="close a connection silent this long, or still sending a "
                             "request's headers this long after they began (default: 30)")
    parser.add_argument("--max-connections", type=int, default=100, metavar="N",
                        help="connections served at once, one thread each; more are "
                             "answered 503 with Retry-After (default: 100)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no request log")


def run(args: argparse.Namespace) -> int:
    from ..formats.client_config import render_pip_config
    from ..stages.serve import MirrorServer

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    server = MirrorServer(args.directory, args.host, args.port, log=None if args.quiet else log,
                          idle_timeout=args.idle_timeout, max_connections=args.max_connections)
    print(f"Serving {args.directory} at {server.url} (simple index: {server.simple_url}); "
          "Ctrl-C stops.", flush=True)
    if not args.quiet:
        config = render_pip_config(client_url(server.simple_url), _environments(args.directory))
        print(f"\nClient configuration:\n\n{config}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0


def client_url(url: str) -> str:
    """``url`` as clients reach it: a wildcard address (``--host 0.0.0.0`` or ``::``,
    listening on every address) names no host a client can use (pip would be told
    ``trusted-host = 0.0.0.0``), so this machine's name stands in for it."""
    parts = urlsplit(url)
    try:
        wildcard = ipaddress.ip_address(parts.hostname or "").is_unspecified
    except ValueError:  # a name, not an address
        return url
    if not wildcard:
        return url
    return urlunsplit(parts._replace(netloc=f"{socket.gethostname()}:{parts.port}"))


def _environments(directory: Path) -> tuple[str, ...]:
    """The markers of the targets the index's ``landing.json`` names (for ``uv
    lock``, as the landing page gives them); none when it cannot be read."""
    from ..errors import LockmirrorError
    from ..formats.landing_page import LANDING_DATA, LandingData

    try:
        return LandingData.from_json((directory / LANDING_DATA).read_bytes()).environments()
    except (OSError, LockmirrorError, ValueError, KeyError, TypeError, AttributeError):
        return ()  # as import_quarantine reads it: a bundle's landing.json may be any JSON
