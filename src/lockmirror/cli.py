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


def _module_names() -> list[str]:
    return sorted(info.name for info in pkgutil.iter_modules(commands.__path__)
                  if not info.name.startswith("_"))


def _command_modules(wanted: str | None = None) -> list[ModuleType]:
    """The command modules; only the one for ``wanted`` when its file says so.

    A command ``pip-config`` lives in ``pip_config.py`` (``import`` in
    ``import_.py``): importing just that module keeps start-up fast and keeps
    one command's import error from breaking the others.
    """
    names = _module_names()
    if wanted is not None:
        guess = wanted.replace("-", "_")
        for candidate in (guess, guess + "_"):
            if candidate in names:
                names = [candidate]
                break
    found = []
    for name in names:
        module = importlib.import_module(f"{commands.__name__}.{name}")
        if hasattr(module, "NAME"):
            found.append(module)
    return sorted(found, key=lambda m: m.NAME)


def build_parser(wanted: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lockmirror",
        description="Build, verify, carry and publish private Python package mirrors.")
    parser.add_argument("--version", action="version", version=f"lockmirror {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _command_modules(wanted):
        child = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.configure(child)
        child.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments == ["--version"]:  # without importing every command
        print(f"lockmirror {__version__}")
        return 0
    wanted = next((a for a in arguments if not a.startswith("-")), None)
    parser = build_parser(wanted)
    args = parser.parse_args(arguments)
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
