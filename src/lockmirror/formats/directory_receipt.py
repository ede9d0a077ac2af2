"""A directory publish's receipt, ``.lockmirror/receipt.json``: what lockmirror put there.

:mod:`lockmirror.publish.directory` writes it after each publish (every file it
placed, with its sha256, size and mtime, and the sets published); it reads it
back to skip files already current and to prune only what it owns, and
``lockmirror verify`` reads it to tell a directory publish (flat or tree layout)
from a directory that is no mirror at all.
"""

from __future__ import annotations

import json
from pathlib import Path

from .manifest import DIRECTORY_RECEIPT

RECEIPT_FORMAT = "lockmirror-directory-receipt/1"


def receipt_path(root: Path) -> Path:
    """Where a directory publish keeps its receipt (``formats.manifest.PUBLISHER_STATE``)."""
    return root / DIRECTORY_RECEIPT


def read_receipt(root: Path) -> tuple[dict[str, tuple[str, int, int]], list[str] | None]:
    """(file -> (sha256, size, mtime), the sets published or None when the receipt
    does not record them). No receipt costs hashing, and makes every file there
    one lockmirror does not own: --prune leaves them."""
    try:
        data = json.loads(receipt_path(root).read_text(encoding="utf-8"))
        if data.get("format") != RECEIPT_FORMAT:
            return {}, None
        files = {str(k): (str(v[0]), int(v[1]), int(v[2]))
                 for k, v in data["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return {}, None
    sets = data.get("sets")  # the names of the sets published
    if not isinstance(sets, list):
        return files, None
    return files, sorted(str(name) for name in sets)


def published_tree(root: Path) -> bool | None:
    """Whether the directory publish at ``root`` has the tree layout (its receipt
    names files under ``files/``, ``simple/``...), False for the flat one (bare
    artifact names), None when ``root`` holds no receipt naming a file."""
    files = read_receipt(root)[0]
    return any("/" in path for path in files) if files else None
