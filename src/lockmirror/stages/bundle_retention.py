"""``dist/`` kept bounded: the newest N bundles of a mirror stay, older ones go.

A bundle on disk is the group of files that share its stem,
``lockmirror-<name>-<id>.tar`` (a delta: ``...-<id>.delta.tar``): the tar
or its volumes ``.tar.NNN``, the ``.sha256`` listing, and a ``.sig`` beside
either, if any. :func:`prune_bundles` runs once a new bundle is complete;
it keeps that bundle and the newest others of the same mirror name (ranked
by the time their ``.sha256`` listing, written last, was written) up to
``keep`` in all, and removes the rest. Files of other mirrors and anything
else in the directory are never touched.

Each bundle is removed listing first: a removal cut short leaves volumes
without a listing, which ``lockmirror import`` refuses and the next run
removes with the rest.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import LockmirrorError
from ..fsutil import format_size, plural

_PARTS = r"(?:\.\d{3})?(?:\.sha256)?(?:\.sig)?"


@dataclass(frozen=True)
class Removed:
    """The older bundles :func:`prune_bundles` removed: their stems, files and bytes."""

    bundles: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()
    size: int = 0

    def summary(self) -> str | None:
        """One line for the front doors to print; None when nothing was removed."""
        if not self.bundles:
            return None
        return (f"removed {plural(len(self.bundles), 'older bundle')} "
                f"({plural(len(self.files), 'file')}, {format_size(self.size)} freed): "
                f"{', '.join(self.bundles)}")


def _index_of(files: list[Path]) -> str | None:
    """The sha256 of the index manifest a bundle on disk carries (its head only);
    None when it does not read (such a bundle is no delta's base)."""
    from ..formats.bundle_reader import locate_bundle, read_head

    try:
        parts = sorted(p for p in files if not p.name.endswith(".sha256"))
        return read_head(locate_bundle(parts)).info.index_manifest_sha256
    except LockmirrorError:
        return None


def bundles_on_disk(out_dir: Path, name: str) -> dict[str, list[Path]]:
    """Stem -> files of every bundle of the mirror ``name`` in ``out_dir``."""
    pattern = re.compile(rf"(lockmirror-{re.escape(name)}-[0-9a-f]{{16}}(?:\.delta)?\.tar)"
                         rf"{_PARTS}")
    groups: dict[str, list[Path]] = {}
    try:
        entries = list(os.scandir(out_dir))
    except FileNotFoundError:
        return groups
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match and entry.is_file(follow_symlinks=False):
            groups.setdefault(match.group(1), []).append(Path(entry.path))
    return groups


def prune_bundles(out_dir: Path, name: str, *, current: str, keep: int,
                  base_manifest_sha256: str | None = None) -> Removed:
    """Remove the bundles of ``name`` in ``out_dir`` beyond the newest ``keep``.

    ``current`` (the stem of the bundle just written or found current) is
    always kept and counts as the newest; so is a bundle whose index is
    ``base_manifest_sha256``, the one a delta was made against (the far side
    needs it first); ``keep`` 0 keeps everything. Raises LockmirrorError naming
    a file that cannot be removed.
    """
    if keep <= 0:
        return Removed()
    groups = bundles_on_disk(out_dir, name)
    others = sorted((stem for stem in groups if stem != current),
                    key=lambda stem: (_written(groups[stem]), stem), reverse=True)
    doomed = [stem for stem in others[keep - 1:]
              if base_manifest_sha256 is None
              or _index_of(groups[stem]) != base_manifest_sha256]
    files: list[Path] = []
    size = 0
    for stem in doomed:
        # the listing first: a bundle without one is visibly incomplete
        for path in sorted(groups[stem], key=lambda p: not p.name.endswith(".sha256")):
            try:
                file_size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise LockmirrorError(f"cannot remove an older bundle: {exc.strerror}",
                                      where=str(path), hint=f"{current} is complete") from None
            files.append(path)
            size += file_size
    return Removed(tuple(doomed), tuple(files), size)


def _written(paths: list[Path]) -> int:
    """When a bundle was completed: its listing's mtime (else its newest file's)."""
    listing = [p for p in paths if p.name.endswith(".sha256")]
    times = []
    for path in listing or paths:
        try:
            times.append(path.stat().st_mtime_ns)
        except FileNotFoundError:
            continue
    return max(times, default=0)
