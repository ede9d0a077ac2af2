"""One exception family for everything a user can cause or fix.

Every error carries *what* went wrong, *where* (a file:line, a URL, a set
and target, a bundle member) and, when one helps, a *hint* saying what to
do. The CLI and the doit glue print ``str(error)`` and exit; nothing below
them prints. Foreign exceptions (requests, boto3, OSError, ...) are
converted to these at the module boundary that called the foreign code.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence


class LockmirrorError(Exception):
    """Base class: a one-line, actionable message; ``exit_code`` for the CLI."""

    exit_code = 1

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None) -> None:
        self.message = message
        self.where = where
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class ConfigError(LockmirrorError):
    """``mirror.yaml`` is wrong. Holds every problem found, one line each."""

    exit_code = 2

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        return "\n".join(self.problems)


class InputError(LockmirrorError):
    """A file lockmirror reads (a lockfile, ``bundle.json``, a ``manifest.json``)
    is malformed or goes past a parsing limit: bad input, exit code 2."""

    exit_code = 2


class UnknownNameError(LockmirrorError):
    """A set, target or package named on the command line (``--set``, ``--target``,
    ``--upgrade``) that mirror.yaml, the lockfiles or the index does not have: bad
    input, exit code 2."""

    exit_code = 2


class NetworkError(LockmirrorError):
    """A server could not be reached or kept failing after retries."""


class UnreachableError(NetworkError):
    """Nobody answered: the host does not resolve, or connecting was refused or
    timed out (a request to the same server after it would fail the same way)."""


class NotFoundError(LockmirrorError):
    """A project, version or file does not exist where it was expected."""


class WrongSourceError(NotFoundError):
    """A project was not found on a source that answers 404 for every project asked:
    the source's URL, not the project's name, is likely wrong."""


class IntegrityError(LockmirrorError):
    """Bytes did not match the sha256 (or size) they were promised to have."""


class ResolutionError(LockmirrorError):
    """No set of versions satisfies the requirements for a target."""


class StaleLockError(LockmirrorError):
    """A lockfile is missing or does not match its inputs."""


class BundleError(LockmirrorError):
    """A bundle is malformed, tampered with, or does not fit the mirror."""


class BundleFormatError(BundleError, InputError):
    """``bundle.json`` (or what it describes) is not what lockmirror writes:
    a refused bundle like any other, but bad input, so exit code 2."""


class PublishError(LockmirrorError):
    """A destination refused, or could not be brought to, the wanted state."""


class PolicyError(LockmirrorError):
    """A release breaks the mirror's policy and no exception covers it."""


class UrlPolicyError(LockmirrorError):
    """A lockfile names a file URL that no declared source may serve."""

    exit_code = 2


# --------------------------------------------------------------------------
# How the front doors print them (the CLI's main, doit's actions): one wording
# --------------------------------------------------------------------------

def error_text(error: LockmirrorError | OSError) -> str:
    """What the front doors print for ``error``: mirror.yaml's problems one per
    line, each naming its place; else ``lockmirror: error: WHERE: MESSAGE (HINT)``
    (an OSError nothing converted: ``lockmirror: error: FILE: REASON``), where only
    the message's own line breaks (a conflict's requirement chains) are kept: the
    place and the hint, which may quote a hostile name, are escaped whole
    (:func:`printable`)."""
    if isinstance(error, OSError):
        where = f"{printable(str(error.filename))}: " if error.filename else ""
        return f"lockmirror: error: {where}{printable(str(error.strerror or error))}"
    if isinstance(error, ConfigError):
        lines = [printable(line) for line in error.problems]
        return "\n".join(lines) if len(lines) > 1 else f"lockmirror: error: {''.join(lines)}"
    message = "\n".join(printable(line) for line in error.message.split("\n"))
    text = f"{printable(error.where)}: {message}" if error.where else message
    if error.hint:
        text += f" ({printable(error.hint)})"
    return f"lockmirror: error: {text}"


def printable(text: str) -> str:
    """``text`` with control and format characters escaped (``\\x1b``, ``\\n``,
    ``\\u202e``): an error may quote a name from a hostile file (a bundle member,
    a lockfile entry), which must not move the cursor, forge a line or
    reorder what the terminal shows."""
    return "".join(ch.encode("unicode_escape").decode("ascii")
                   if unicodedata.category(ch) in ("Cc", "Cf") else ch for ch in text)
