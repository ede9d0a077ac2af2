"""CLI subcommands, one module each, found by :func:`lockmirror.cli.main`.

A command module defines ``NAME`` (the subcommand), ``HELP`` (one line),
``configure(parser)`` to add its arguments and ``run(args) -> int``.
``run`` may raise :class:`~lockmirror.errors.LockmirrorError`; the CLI
prints it as one line and exits with its ``exit_code``.
"""
