"""The content-addressed artifact store: ``<root>/sha256/ab/cdef...``.

Files are named by the sha256 of their bytes, so a file used by several
sets, targets or mirror repositories is kept once, and a file is either
absent or exactly right. Only the fetch stage adds files (after verifying
them); the index stage hard-links them out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Store:
    root: Path

    def path(self, sha256: str) -> Path:
        """Where the file with this sha256 lives (whether or not it is there)."""
        digest = sha256.lower()
        return self.root / "sha256" / digest[:2] / digest[2:]

    def has(self, sha256: str, size: int | None = None) -> bool:
        """Present with the expected size (the name proves the hash: only
        verified bytes are ever renamed to it)."""
        try:
            stat = self.path(sha256).stat()
        except FileNotFoundError:
            return False
        return size is None or stat.st_size == size

    def temp_dir(self) -> Path:
        """Where downloads in progress live: same filesystem, never linked."""
        path = self.root / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def partial_path(self, sha256: str) -> Path:
        """Where an unfinished download of this sha256 is kept for resuming.

        Named by the *expected* hash, so a later run (or another mirror
        repository sharing the store) finds and continues it; it is never
        linked out, and only :meth:`adopt` after verification makes it visible.
        """
        return self.temp_dir() / f"{sha256.lower()}.partial"

    def adopt(self, verified: Path, sha256: str) -> Path:
        """Rename a file whose hash the caller has verified into the store."""
        final = self.path(sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(verified, final)
        return final
