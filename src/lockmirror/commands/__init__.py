"""CLI subcommands, one module each, found by :func:`lockmirror.cli.main`.

A command module defines ``NAME`` (the subcommand), ``HELP`` (one line),
``configure(parser)`` to add its arguments and ``run(args) -> int``.
``run`` may raise :class:`~lockmirror.errors.LockmirrorError`; the CLI
prints it as one line and exits with its ``exit_code``.
"""


def standalone(module_name: str, argv: list[str] | None = None) -> int:
    """Run one command module as ``python -m lockmirror.commands.<name>``.

    The same argument parsing and error handling as ``lockmirror <name>``
    (one line, the error's exit code); used by benchmarks that time a
    command as a whole process.
    """
    import sys

    from ..cli import main

    module = sys.modules[module_name]
    return main([module.NAME, *(sys.argv[1:] if argv is None else argv)])
