"""``lockmirror verify DIR``'s check: a mirror tree against its ``manifest.json``."""

from __future__ import annotations

from pathlib import Path

from ..errors import LockmirrorError
from ..formats.manifest import MANIFEST_NAME, Manifest, TreeReport, check_tree
from .import_swap import old_dir


def verify_mirror(root: Path, *, hash_files: bool = True) -> TreeReport:
    """Compare a mirror tree with its ``manifest.json`` (missing, altered, unexpected).

    Raises LockmirrorError if there is no tree or no manifest (with a hint
    when an interrupted import left the previous tree aside). Costs one
    sha256 pass over the tree (a stat per file with ``hash_files=False``).
    """
    if not root.is_dir():
        hint = ("an import was interrupted; run `lockmirror import` again, which restores "
                "the previous mirror first" if old_dir(root).is_dir() else None)
        raise LockmirrorError("no such mirror directory", where=str(root), hint=hint)
    if not (root / MANIFEST_NAME).exists():
        raise LockmirrorError(f"is not a mirror (no {MANIFEST_NAME})", where=str(root),
                              hint=f"import a bundle into it: lockmirror import BUNDLE.tar "
                                   f"--into {root}")
    return check_tree(root, Manifest.read(root / MANIFEST_NAME), hash_files=hash_files)
