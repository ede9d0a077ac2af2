"""A bundle's tar headers, read without trusting the sizes they state.

tarfile reads what a pax extended header or a GNU long-name header carries
into memory in one piece, of the size the 512-byte header states, before it
returns the member: a header stating gigabytes costs gigabytes, and a pax
header asking for a GNU sparse map makes tarfile read the rest of the file
into a list, in 512-byte steps, ending in a ValueError. lockmirror writes GNU
headers only (:mod:`lockmirror.stages.bundle_tar`): directories, regular files
and, for a name longer than 100 bytes, a GNU long-name header. So
:class:`BundleTarInfo` refuses, from the 512-byte header alone and before
tarfile reads on:

* a pax extended or global header (typeflag ``x``, ``g``, Solaris ``X``) and a
  GNU sparse member (``S``), of any size: no bundle holds one;
* a GNU long name or long link (``L``, ``K``) stating more than
  :data:`MAX_LONG_NAME` bytes (a path on Linux is at most 4 KiB).

:func:`open_tar` and :func:`next_member` turn such a refusal into one
BundleFormatError (exit code 2) naming the bundle and the byte where the
member's headers start.
"""

from __future__ import annotations

import io
import tarfile

from ..errors import BundleError, BundleFormatError
from ..fsutil import format_size

__all__ = ["MAX_LONG_NAME", "BundleTarInfo", "next_member", "open_tar", "refuse_cut"]

MAX_LONG_NAME = 64 << 10
_NEVER_WRITTEN = {
    tarfile.XHDTYPE: "pax extended header",
    tarfile.XGLTYPE: "pax global header",
    tarfile.SOLARIS_XHDTYPE: "Solaris extended header",
    tarfile.GNUTYPE_SPARSE: "GNU sparse member",
}
_LONG_NAMES = {tarfile.GNUTYPE_LONGNAME: "name", tarfile.GNUTYPE_LONGLINK: "link"}
_ALTERED = "lockmirror never writes such a header: the bundle was altered after it was written"


class RefusedHeader(tarfile.TarError):
    """A header refused by its type or stated size, before tarfile read what it states.

    Not a HeaderError: tarfile passes it on as it is, never as a damaged header."""


class BundleTarInfo(tarfile.TarInfo):
    """tarfile's TarInfo, refusing the headers a bundle never holds (module docstring)."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> BundleTarInfo:
        member = super().frombuf(buf, encoding, errors)
        kind = _NEVER_WRITTEN.get(member.type)
        if kind is not None:
            raise RefusedHeader(f"a {kind} ({member.name!r}, {member.size} bytes): "
                                "lockmirror writes plain GNU headers only")
        field = _LONG_NAMES.get(member.type)
        if field is not None and member.size > MAX_LONG_NAME:
            raise RefusedHeader(f"a GNU long-{field} header ({member.name!r}) stating "
                                f"{member.size} bytes, more than the "
                                f"{format_size(MAX_LONG_NAME)} lockmirror reads for a {field}")
        return member


def open_tar(reader: io.RawIOBase, *, where: str) -> tarfile.TarFile:
    """The bundle ``reader`` as a tar, its first header read (:class:`BundleTarInfo`).

    Raises BundleFormatError naming ``where`` for a refused header, BundleError for no
    tar archive."""
    try:
        return tarfile.open(fileobj=reader, mode="r:", tarinfo=BundleTarInfo)
    except RefusedHeader as exc:
        raise _refused(exc, where, 0) from None
    except tarfile.TarError as exc:
        raise BundleError(f"not a tar archive ({exc})", where=where) from None


def next_member(tar: tarfile.TarFile, *, where: str) -> tarfile.TarInfo | None:
    """``tar.next()``; a refused header raises BundleFormatError naming ``where`` and
    the byte the member's headers start at. Other TarErrors (a damaged header) pass
    to the caller."""
    offset = tar.offset  # where the next header starts until tarfile has read it whole
    try:
        return tar.next()
    except RefusedHeader as exc:
        raise _refused(exc, where, offset) from None


def _refused(exc: RefusedHeader, where: str, offset: int) -> BundleFormatError:
    """Not damage in transit: a header lockmirror never writes, so exit code 2."""
    return BundleFormatError(f"the member at byte {offset} has {exc}; refused before reading it",
                       where=where, hint=_ALTERED)


def refuse_cut(member: tarfile.TarInfo, total: int, *, bundle: str) -> None:
    """BundleError naming ``member`` of ``bundle`` when its data ends past the
    ``total`` bytes the bundle has: the copy was cut inside it."""
    if member.offset_data + member.size > total:
        raise BundleError("bundle is truncated: it ends inside this member",
                          where=f"{bundle}:{member.name}", hint="copy it again")
