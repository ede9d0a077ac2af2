"""Option forms several commands share (not a command: the leading ``_``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import DEFAULT_CONFIG, LoadedConfig, load_config, split_names


class NameList(argparse.Action):
    """``--set a,b`` and ``--set a --set b`` alike: the names, in order, split at
    commas, as doit's list parameters take them (``doit fetch --set a,b``). With
    ``nargs="*"`` (``--upgrade a,b c``) each value is split so; none given: an empty
    list (``--upgrade``: every package)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        given = [str(value) for value in values] if isinstance(values, list) else [str(values)]
        names = split_names(given)
        if given and not names:
            parser.error(f"{option_string} {' '.join(given)!r}: no name (write NAME or A,B)")
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or ()), *names])


def positive_int(text: str) -> int:
    """An option's value that counts something (``--jobs``): a whole number from 1; the
    error says so in words (argparse would name this function)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive whole number (1 or more)")
    return value


def project_if_any(config: str | None) -> LoadedConfig | None:
    """The mirror.yaml ``--config`` names, else ./mirror.yaml when present (a broken
    one is an error, as for every command), else None: a command run outside a project."""
    if config is not None:
        return load_config(config)
    return load_config(DEFAULT_CONFIG) if Path(DEFAULT_CONFIG).is_file() else None


def is_project_index(tree: Path, loaded: LoadedConfig | None) -> bool:
    """Whether ``tree`` is the index directory of the mirror.yaml in use (not when
    there is none, or either directory is missing): what ``verify`` and ``publish``
    say about its unchecked ``manifest.json`` depends on it."""
    if loaded is None:
        return False
    try:
        return tree.samefile(loaded.index_dir)
    except OSError:
        return False
