"""The ``lockmirror`` command line: the only place (with the doit glue) that prints.

Subcommands live in :mod:`lockmirror.commands`, one module each; this file
finds them, parses arguments and turns every LockmirrorError into one line
on stderr and an exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

from . import __version__, commands
from .errors import LockmirrorError


def _command_modules() -> list[ModuleType]:
    found = []
    for info in pkgutil.iter_modules(commands.__path__):
        if not info.name.startswith("_"):
            module = importlib.import_module(f"{commands.__name__}.{info.name}")
            if hasattr(module, "NAME"):
                found.append(module)
    return sorted(found, key=lambda m: m.NAME)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lockmirror",
        description="Build, verify, carry and publish private Python package mirrors.")
    parser.add_argument("--version", action="version", version=f"lockmirror {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _command_modules():
        child = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.configure(child)
        child.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except LockmirrorError as error:
        print(f"lockmirror: error: {error}" if "\n" not in str(error) else str(error),
              file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("lockmirror: interrupted", file=sys.stderr)
        return 130


def run() -> None:  # pragma: no cover - console script wrapper
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
