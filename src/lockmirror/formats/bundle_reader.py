"""Reading a bundle on disk: its volumes found, read as one stream, its head checked.

* :func:`locate_bundle`: a bundle's volumes and its ``.sha256`` listing found from
  the paths given (:class:`BundleSource`).
* :class:`ConcatenatedReader`: the volumes read as one seekable stream.
* :func:`read_head`: its first members (``bundle.json`` and its signature) read and
  checked, tar headers through :mod:`lockmirror.formats.bundle_headers`, every stated
  size capped before it is read.
* :func:`read_index_manifest`: the index manifest it carries, as the base of a delta
  (:class:`DeltaBase`; the bundle stage's :func:`lockmirror.stages.bundle.load_delta_base`
  takes a manifest or a mirror directory too).

Shared by the bundle stage and the importer; what the members mean is
:mod:`lockmirror.formats.bundle_format`. No network.
"""

from __future__ import annotations

import bisect
import io
import os
import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..errors import BundleError, BundleFormatError
from ..fsutil import sha256_bytes
from . import signing
from .bounded import check_json_size
from .bundle_format import INDEX_MANIFEST, INFO_NAME, SIGNATURE_NAME, BundleInfo, read_checksums
from .bundle_headers import next_member, open_tar, refuse_cut
from .manifest import Manifest

Buffer = bytearray | memoryview

VOLUME_NAME = re.compile(r"^(.+\.tar)\.(\d{3})$")


@dataclass(frozen=True)
class BundleSource:
    """A bundle on disk: one tar or its volumes in order, and their expected hashes."""

    parts: tuple[Path, ...]
    expected_sha256: tuple[str, ...]
    checksums: Path

    @property
    def display(self) -> str:
        return self.parts[0].name if len(self.parts) == 1 else f"{self.checksums.stem}.*"

    def open(self) -> ConcatenatedReader:
        return ConcatenatedReader(self.parts)


def locate_bundle(paths: Sequence[Path]) -> BundleSource:
    """Find a bundle's volumes and its ``.sha256`` listing from the paths given.

    Accepts one ``.tar``, or volumes ``X.tar.NNN`` (any order; volumes not
    given are looked for beside the ones given); ``.sha256`` arguments are
    skipped. Raises BundleError naming a missing volume or listing.
    """
    given = [Path(p) for p in paths if not str(p).endswith(".sha256")]
    if not given:
        raise BundleError("no bundle given")
    for candidate in given:
        if not candidate.is_file():
            raise BundleError("no such file", where=str(candidate))
    stems = {volume_stem(p.name) for p in given}
    if len(stems) != 1:
        raise BundleError(f"these are not one bundle: {', '.join(sorted(stems))}",
                          hint="import one bundle at a time, oldest first")
    stem = stems.pop()
    listing = next((p.parent / f"{stem}.sha256" for p in given
                    if (p.parent / f"{stem}.sha256").is_file()), given[0].parent / f"{stem}.sha256")
    entries = read_checksums(listing)
    by_name = {p.name: p for p in given}
    parts = []
    for name, _digest in entries:
        if not (name == stem or VOLUME_NAME.match(name) and name.startswith(stem + ".")):
            raise BundleError(f"lists {name!r}, which is not part of {stem}", where=str(listing))
        path = by_name.get(name) or next(
            (p.parent / name for p in given if (p.parent / name).is_file()), None)
        if path is None or not path.is_file():
            raise BundleError(f"{name} is missing", where=str(listing),
                              hint="pass every volume of the bundle")
        parts.append(path)
    unknown = set(by_name) - {name for name, _ in entries}
    if unknown:
        raise BundleError(f"not listed in {listing.name}: {', '.join(sorted(unknown))}")
    return BundleSource(tuple(parts), tuple(d for _, d in entries), listing)


def volume_stem(name: str) -> str:
    """``X.tar`` for a volume ``X.tar.007``; the name itself otherwise."""
    match = VOLUME_NAME.match(name)
    return match.group(1) if match else name


class ConcatenatedReader(io.RawIOBase):
    """A read-only, seekable view of several files as one (a bundle's volumes)."""

    def __init__(self, parts: Sequence[Path]) -> None:
        super().__init__()
        self._files = []
        try:
            for part in parts:
                self._files.append(open(part, "rb", buffering=0))  # noqa: SIM115 - closed in close()
        except OSError as exc:
            self.close()
            raise BundleError(f"cannot open: {exc.strerror}", where=str(exc.filename)) from None
        sizes = [os.fstat(f.fileno()).st_size for f in self._files]
        self._starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self._sizes = sizes
        self.size = sum(sizes)
        self._pos = 0

    @property
    def part_sizes(self) -> list[int]:
        return list(self._sizes)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self.size:
            index = bisect.bisect_right(self._starts, self._pos) - 1
            local = self._pos - self._starts[index]
            want = min(len(view) - done, self._sizes[index] - local)
            handle = self._files[index]
            handle.seek(local)
            got = handle.readinto(view[done:done + want])
            if not got:
                break  # the file shrank under us; callers see a short read
            done += got
            self._pos += got
        return done

    def close(self) -> None:
        for handle in self._files:
            handle.close()
        super().close()


def read_exact(reader: ConcatenatedReader, offset: int, size: int, *, where: str) -> bytes:
    reader.seek(offset)
    data = bytearray(size)
    if reader.readinto(data) != size:
        raise BundleError("bundle is truncated: it ends inside this member", where=where)
    return bytes(data)


@dataclass(frozen=True)
class BundleHead:
    info: BundleInfo
    info_bytes: bytes
    signature: str | None
    signer: str | None = None  # fingerprint of the key that verified the signature, if given


def read_head(source: BundleSource, trusted: Ed25519PublicKey | None = None) -> BundleHead:
    """Read ``bundle.json`` (and its signature) from the start of a bundle; with
    ``trusted``, check the signature before ``bundle.json`` is parsed.

    Costs a few header reads and one read of ``bundle.json``, refused unread when its
    header states more than JSON's size cap. Raises BundleError if the bundle does not
    start the way lockmirror writes them, or with ``trusted`` is unsigned or not
    signed by it (BundleFormatError for a ``bundle.json`` past the cap or malformed).
    """
    with source.open() as reader:
        return head_of(reader, source.display, trusted)


def head_of(reader: ConcatenatedReader, display: str,
            trusted: Ed25519PublicKey | None = None) -> BundleHead:
    """:func:`read_head` of the bundle ``display`` names, open as ``reader``."""
    reader.seek(0)
    top, info_member, sig_member = _first_members(open_tar(reader, where=display),
                                                  reader.size, display)
    where = f"{display}:{info_member.name}"
    info_bytes = read_exact(reader, info_member.offset_data, info_member.size, where=where)
    signature = None
    if sig_member is not None and sig_member.name == f"{top.name}/{SIGNATURE_NAME}":
        if sig_member.size > 1 << 16:
            raise BundleError("signature is implausibly large", where=sig_member.name)
        raw = read_exact(reader, sig_member.offset_data, sig_member.size,
                         where=f"{display}:{sig_member.name}")
        signature = raw.decode("ascii", "replace")
    signer = signing.check_bundle_signature(
        info_bytes, signature, trusted, bundle=display,
        where=f"{display}:{top.name}/{SIGNATURE_NAME}")
    info = BundleInfo.loads(info_bytes, where=where)
    if info.top != top.name:
        raise BundleError(f"bundle.json hashes to {info.content_id}, but the bundle "
                          f"directory is {top.name}", where=where,
                          hint="bundle.json was altered")
    return BundleHead(info, info_bytes, signature, signer)


def _first_members(tar: tarfile.TarFile, total: int, display: str
                   ) -> tuple[tarfile.TarInfo, tarfile.TarInfo, tarfile.TarInfo | None]:
    """The bundle's directory, its ``bundle.json`` (refused by the size its header
    states before tarfile seeks past it) and the member after it (the signature, if
    signed); BundleError if the bundle does not start so."""
    top = info_member = None
    try:
        top = next_member(tar, where=display)
        info_member = next_member(tar, where=display)
    except tarfile.TarError as exc:
        raise _damaged(exc, top, total, display) from None
    if top is not None and top.isdir() and info_member is None:
        raise BundleError(f"bundle is truncated: it ends before {INFO_NAME}",
                          where=display, hint="copy it again")
    if (top is None or not top.isdir() or info_member is None
            or info_member.name != f"{top.name}/{INFO_NAME}"):
        raise BundleError(f"does not start with <dir>/{INFO_NAME}; not a lockmirror bundle",
                          where=display)
    check_json_size(info_member.size, where=f"{display}:{info_member.name}",
                    error=BundleFormatError)
    try:
        return top, info_member, next_member(tar, where=display)
    except tarfile.TarError as exc:
        raise _damaged(exc, info_member, total, display) from None


def _damaged(exc: tarfile.TarError, last: tarfile.TarInfo | None, total: int,
             display: str) -> BundleError:
    """The error for a tar header that does not read after ``last``: the bundle cut
    inside ``last`` (raised), else a damaged header."""
    if last is not None:
        refuse_cut(last, total, bundle=display)
    return BundleError(f"damaged tar header ({exc})", where=display)


@dataclass(frozen=True)
class DeltaBase:
    """What a delta starts from: the base's manifest, the sha256 of its bytes, and the
    base bundle's ``bundle.json`` when the base is a bundle."""

    manifest: Manifest
    sha256: str
    bundle: BundleInfo | None = None
    mirror: Path | None = None  # the mirror directory holding the base manifest.json


def read_index_manifest(source: BundleSource) -> DeltaBase:
    """The index manifest a bundle carries (its sha256 checked against bundle.json),
    with the bundle's ``bundle.json``."""
    with source.open() as reader:  # once: the head, then the manifest
        head = head_of(reader, source.display)
        wanted = f"{head.info.top}/{INDEX_MANIFEST}"
        reader.seek(0)
        tar = open_tar(reader, where=source.display)
        try:
            member = next_member(tar, where=source.display)
            while member is not None and member.name != wanted:
                member = next_member(tar, where=source.display)
        except tarfile.TarError as exc:
            raise BundleError(f"damaged tar header ({exc})", where=source.display) from None
        if member is None:
            raise BundleError(f"{wanted} is missing", where=source.display)
        where = f"{source.display}:{wanted}"
        check_json_size(member.size, where=where, error=BundleFormatError)
        data = read_exact(reader, member.offset_data, member.size, where=where)
    digest = sha256_bytes(data)
    if digest != head.info.index_manifest_sha256:
        raise BundleError("index manifest does not match bundle.json", where=where)
    return DeltaBase(Manifest.loads(data, where=where), digest, head.info)
