"""Where a request's path leads in the tree ``lockmirror serve`` serves: the real path,
kept inside the tree (:func:`resolve`); what keeps the server from a path it may not
read (:func:`blocking_part`); and the tree's identity, which an import's swap changes
(:func:`tree_identity`). The HTTP side: :mod:`lockmirror.stages.serve_handler`."""

from __future__ import annotations

import os
from pathlib import Path


def resolve(root: Path, parts: list[str]) -> Path | None:
    """The real path for URL path parts under ``root`` (a real path), or None if it is
    missing or outside the tree. Raises PermissionError when a directory on the way
    may not be searched: the server's fault (500), not a missing file."""
    candidate = os.path.realpath(os.path.join(root, *parts))
    if candidate != str(root) and not candidate.startswith(str(root) + os.sep):
        return None
    path = Path(candidate)
    try:
        return path if path.exists() else None
    except PermissionError:
        raise
    except OSError:  # a name too long for the file system (ENAMETOOLONG): no file
        return None


def blocking_part(root: Path, path: str) -> str:
    """What keeps the server from ``path`` in the tree ``root``: the first directory on
    the way it may not search, else ``path`` itself (a file it may not read). Costs a
    stat per level."""
    parent = str(root)
    for part in os.path.relpath(path, root).split(os.sep):
        try:
            os.stat(os.path.join(parent, part))
        except PermissionError:
            return parent
        except OSError:
            break
        parent = os.path.join(parent, part)
    return path


def tree_identity(root: Path) -> tuple[int, int] | None:
    """(device, inode) of the tree's root, which an import's swap changes; None
    while the root is missing (between the swap's two renames)."""
    try:
        stat = os.stat(root)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino
