"""From a bundle's members to its files on disk, for every kind of bundle.

:func:`write_bundle` is the one path by which a full or delta bundle
(:mod:`lockmirror.stages.bundle`) and a refresh bundle
(:mod:`lockmirror.stages.refresh_bundle`) are written; they differ only in
their members, ``bundle.json`` and README. It adds ``README.txt`` and
``SHA256SUMS``, pins every member in ``bundle.json`` (whose hash is the
content id), signs it, lays the tar out (:mod:`lockmirror.stages.bundle_tar`),
cuts it into volumes and writes the ``.sha256`` listing last. A bundle
already on disk with the same ``bundle.json``, signature, epoch and volume
sizes is recognised from its first member and left alone.
"""

from __future__ import annotations

import dataclasses
import glob
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import BundleError, LockmirrorError
from ..formats import signing
from ..formats.bundle_format import (
    INFO_NAME,
    README_NAME,
    SIGNATURE_NAME,
    SUMS_NAME,
    BundleInfo,
    format_checksums,
    read_checksums,
)
from ..formats.bundle_reader import locate_bundle, read_head
from ..fsutil import atomic_write, check_output_dir, format_size, one_at_a_time
from .bundle_tar import Layout, Member, directories, output_error

MAX_PARTS = 999


@dataclass(frozen=True)
class Written:
    """What :func:`write_bundle` wrote (or found already current)."""

    info: BundleInfo          # bundle.json, with every member's sha256 and size
    parts: tuple[Path, ...]   # the tar, or its volumes
    checksums: Path           # the .sha256 listing of ``parts``
    sha256: tuple[str, ...]   # of each part
    size: int                 # of the whole tar
    members: int              # files in the tar: bundle.json, its signature and ``info.files``
    signed: bool
    changed: bool             # False: an identical bundle was already there


def write_bundle(provisional: BundleInfo, members: list[Member], readme: bytes, *,
                 out_dir: Path, epoch: int, key: Path | None = None,
                 volume_size: int | None = None,
                 progress: Callable[[str], None] | None = None) -> Written:
    """Write the bundle of ``members`` (every member but the head, README.txt
    and SHA256SUMS, which this adds) into ``out_dir``.

    ``provisional`` is bundle.json without its file list (``readme`` is made
    from it, so it cannot depend on the content id); ``key`` (an Ed25519
    private key) signs bundle.json; ``volume_size`` cuts volumes; every
    member's mtime is ``epoch``.

    Raises LockmirrorError for an unreadable key, more than MAX_PARTS
    volumes, an input that is unreadable or not of its entry's size (an S3
    store's object: or not of its sha256, IntegrityError), or output that
    cannot be written; nothing is left in ``out_dir`` then. Costs one read and
    one sha256 pass (the volume's) over every byte written, and a second one
    over an S3 store's objects.
    """
    members = [*members, Member(README_NAME, data=readme)]
    sums = format_checksums((m.name, m.entry.sha256) for m in sorted(members, key=lambda m: m.name)
                            if m.entry).encode()
    members.append(Member(SUMS_NAME, data=sums))
    info = dataclasses.replace(provisional, files={m.name: m.entry for m in members if m.entry},
                               mtime=epoch)
    info_bytes = info.dumps()
    signature = signing.sign(info_bytes, signing.load_private_key(key)).encode() if key else None
    head = [Member("", is_dir=True), Member(INFO_NAME, data=info_bytes)]
    if signature is not None:
        head.append(Member(SIGNATURE_NAME, data=signature))
    ordered = head + sorted([*members, *directories(members)], key=lambda m: m.name)
    layout = Layout(info.top, ordered, epoch)
    names = _volume_names(info.filename, layout.total_size, volume_size)
    checksums = out_dir / f"{info.filename}.sha256"

    def written(digests: Sequence[str], changed: bool) -> Written:
        return Written(info=info, parts=tuple(out_dir / n for n in names), checksums=checksums,
                       sha256=tuple(digests), size=layout.total_size,
                       members=len(info.files) + len(head) - 1, signed=signature is not None,
                       changed=changed)

    current = _existing_digests(out_dir, names, checksums, layout.total_size, volume_size,
                                info_bytes, signature)
    if current is not None:
        return written(current, changed=False)
    if progress:
        progress(f"writing {info.filename} ({format_size(layout.total_size)}, "
                 f"{len(info.files)} files listed in bundle.json)")  # as the import counts
    digests = layout.write(out_dir, names, volume_size)
    atomic_write(checksums, format_checksums(zip(names, digests, strict=True)))
    return written(digests, changed=True)


def _volume_names(filename: str, total: int, volume_size: int | None) -> list[str]:
    """``[X.tar]``, or ``X.tar.001``, ``X.tar.002``, ... for ``total`` bytes cut at
    ``volume_size``; LockmirrorError beyond MAX_PARTS volumes."""
    if volume_size is None:
        return [filename]
    count = max(1, -(-total // volume_size))
    if count > MAX_PARTS:
        raise LockmirrorError(f"{total} bytes in volumes of {volume_size} makes {count} "
                              f"volumes; at most {MAX_PARTS}", hint="use a larger --split")
    return [f"{filename}.{i:03d}" for i in range(1, count + 1)]


def _existing_digests(out_dir: Path, names: list[str], checksums: Path, total: int,
                      volume_size: int | None, info_bytes: bytes, signature: bytes | None,
                      ) -> tuple[str, ...] | None:
    """The hashes of an identical bundle already on disk, else None.

    The tar is a function of bundle.json (which pins every member's bytes and
    their mtime) and the signature, so comparing those two and the volume
    sizes is enough; nothing is re-hashed.
    """
    try:
        listed = read_checksums(checksums)
    except BundleError:
        return None
    if [name for name, _ in listed] != names:
        return None
    for index, name in enumerate(names):
        expected = total if volume_size is None else min(volume_size, total - index * volume_size)
        try:
            if (out_dir / name).stat().st_size != expected:
                return None
        except FileNotFoundError:
            return None
    try:
        head = read_head(locate_bundle([out_dir / n for n in names]))
    except LockmirrorError:
        return None
    if head.info_bytes != info_bytes or (head.signature or "").encode() != (signature or b""):
        return None
    return tuple(digest for _, digest in listed)


@contextmanager
def writing_in(out_dir: Path, name: str) -> Iterator[None]:
    """One bundle writer (full, delta or refresh) at a time in ``out_dir``; first,
    the temporary volumes a killed writer of this mirror's bundles left (each as
    large as a bundle). An ``out_dir`` that is a file, or lies under one, is refused
    naming it (:func:`lockmirror.fsutil.check_output_dir`)."""
    check_output_dir(out_dir, "the bundle output", hint="point --out (paths.dist) at a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, out_dir) from None
    with one_at_a_time(out_dir, "another lockmirror bundle is being written here"):
        for stale in out_dir.glob(f".lockmirror-{glob.escape(name)}-*.tmp"):
            stale.unlink(missing_ok=True)
        yield
