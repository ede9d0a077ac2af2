"""The ``lockmirror`` command line: the only place (with the doit glue) that prints.

Subcommands live in :mod:`lockmirror.commands`, one module each; this file
finds them, parses arguments and turns every LockmirrorError into one line
on stderr and an exit status, never a traceback: an OSError nothing converted
becomes one line (exit 1), any other exception one "internal error" line
(exit 70; ``LOCKMIRROR_TRACEBACK=1`` shows the traceback). SIGTERM is taken as
Ctrl-C (:mod:`lockmirror.interrupt`): locks are released and temporary files
removed, then exit 143 (Ctrl-C: 130). A reader of stdout that went away
(``| head``) ends the command quietly with 141.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

from . import __version__, commands
from .errors import LockmirrorError, error_text
from .interrupt import leave, restore, stopped, terminate_as_interrupt

INTERNAL_ERROR = 70  # EX_SOFTWARE (sysexits.h): not the user's mistake, so neither 1 nor 2
TRACEBACK_ENV = "LOCKMIRROR_TRACEBACK"
PIPE_CLOSED_EXIT = 128 + 13  # 141: what a shell reports for a process SIGPIPE stopped

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
        child.set_defaults(_run=module.run, _parser=child)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments == ["--version"]:  # without importing every command
        print(f"lockmirror {__version__}")
        return 0
    wanted = next((a for a in arguments if not a.startswith("-")), None)
    parser = build_parser(wanted)
    args, unknown = parser.parse_known_args(arguments)
    if unknown:  # the command's own usage, not the list of every command
        config = next((a for a in unknown if a.endswith((".yaml", ".yml"))), None)
        hint = f" (name the file with --config {config})" if config else ""
        args._parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    previous = terminate_as_interrupt()
    try:
        status = int(args._run(args) or 0)
        sys.stdout.flush()  # a reader gone (`| head`) shows here, not at interpreter exit
        return status
    except BrokenPipeError:
        # what reads the output stopped reading (`| head`, git's textconv under a
        # pager quit early): stop quietly, as other command-line tools do
        _discard_stdout()
        return PIPE_CLOSED_EXIT
    except LockmirrorError as error:
        print(error_text(error), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM
        line, code = stopped(interrupt)
        # one write, newline and all: a worker's line printed meanwhile is not glued on
        sys.stderr.write(line + "\n")
        return code
    except OSError as error:  # a file or device the command was pointed at
        print(error_text(error), file=sys.stderr)
        return 1
    except Exception as error:
        # Every error a user's input can cause is converted where the foreign
        # code is called; this is the last line of defence, so a bug still
        # prints one line (the tests fail on it: they want exit 2 or 0).
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(f"lockmirror: internal error: {type(error).__name__}: "
              f"{_first_line(error)} (a bug in lockmirror; set {TRACEBACK_ENV}=1 "
              "for the traceback)", file=sys.stderr)
        return INTERNAL_ERROR
    finally:
        restore(previous)


def _discard_stdout() -> None:
    """Point stdout at the null device, so what is left in its buffer is not written to
    the closed pipe again when Python flushes it at exit (another BrokenPipeError)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no file descriptor: a stream a test or caller handed in
        pass


def _first_line(error: BaseException) -> str:
    lines = str(error).splitlines()
    return lines[0][:300] if lines else ""


def run() -> None:  # pragma: no cover - console script wrapper
    leave(main())


if __name__ == "__main__":  # pragma: no cover
    run()
