"""The one reader of core metadata (METADATA / PKG-INFO): wheel, sdist or PEP 658 file.

:func:`archive_metadata` finds the raw bytes in a distribution (a wheel's
``<name>.dist-info/METADATA``, an sdist's top-level ``PKG-INFO``);
:func:`read_metadata` prefers a wheel's PEP 658 ``.metadata`` file beside
it; :func:`parse_metadata` parses the bytes with ``packaging.metadata``
(fields it cannot parse are kept, raw, in ``unparsed``);
:func:`refuse_mislabelled` checks that its Name and Version are the file
name's, as installers do. No network.

Every member read (METADATA, PKG-INFO, the PEP 658 file, an sdist's
pyproject.toml / setup.py) is bounded by :data:`MAX_METADATA_BYTES`: refused
by the size its header states before a byte is inflated, and read no further
than the cap in case the header lies (a zip bomb: 1 MiB inflating to 1 GiB).
A tarball's own headers (GNU long names, pax) are held to the same cap before
tarfile reads them, and the tarball to :data:`MAX_SCANNED_BYTES` decompressed.
"""

from __future__ import annotations

import io
import re
import tarfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from packaging.metadata import RawMetadata, parse_email
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from ..errors import LockmirrorError
from ..fsutil import format_size

# Core metadata of real packages is KiBs to a few MiB: past this, a member is refused.
MAX_METADATA_BYTES = 16 << 20
# An sdist tarball is looked through no further than this, decompressed (four times the
# largest sdist lockmirror downloads, 1 GiB): a compressed bomb (gzip inflates 1000-fold)
# is refused at the header stating it, not decompressed.
MAX_SCANNED_BYTES = 4 << 30


class MetadataError(LockmirrorError):
    """A distribution whose core metadata cannot be found or read."""


class MetadataTooLarge(MetadataError):
    """Core metadata past MAX_METADATA_BYTES (a zip bomb's): refused, not read."""


@dataclass(frozen=True)
class CoreMetadata:
    """Parsed core metadata: ``raw`` as ``packaging.metadata`` reads it, plus the
    header fields it could not parse or does not know (name -> values, as written)."""

    raw: RawMetadata
    unparsed: dict[str, list[str]] = field(default_factory=dict)

    # What resolution reads; a field packaging could not parse (repeated, not
    # UTF-8) is taken as written, so no dependency is lost to a strict parser.

    @property
    def name(self) -> str | None:
        """``Name`` as written (None when absent)."""
        return self.raw.get("name") or self._first("name")

    @property
    def version(self) -> str | None:
        """``Version`` as written (None when absent)."""
        return self.raw.get("version") or self._first("version")

    @property
    def metadata_version(self) -> str:
        """``Metadata-Version`` ("1.0" when absent)."""
        return self.raw.get("metadata_version") or self._first("metadata-version") or "1.0"

    @property
    def requires_dist(self) -> tuple[str, ...]:
        """Every ``Requires-Dist``, as written."""
        return tuple(self.raw.get("requires_dist") or self.unparsed.get("requires-dist") or ())

    @property
    def requires_python(self) -> str | None:
        """``Requires-Python`` (the first, if it is repeated)."""
        return self.raw.get("requires_python") or self._first("requires-python")

    @property
    def provides_extra(self) -> tuple[str, ...]:
        """Every ``Provides-Extra``, as written."""
        return tuple(self.raw.get("provides_extra") or self.unparsed.get("provides-extra") or ())

    @property
    def dynamic(self) -> frozenset[str]:
        """``Dynamic`` field names, lower-cased."""
        names = self.raw.get("dynamic") or self.unparsed.get("dynamic") or ()
        return frozenset(name.strip().lower() for name in names)

    def _first(self, name: str) -> str | None:
        values = self.unparsed.get(name)
        return values[0] if values else None


def parse_metadata(data: bytes) -> CoreMetadata:
    """Parse METADATA / PKG-INFO bytes (any metadata version; never raises for a field)."""
    raw, unparsed = parse_email(data)
    return CoreMetadata(raw=raw, unparsed=unparsed)


def refuse_mislabelled(metadata: CoreMetadata, filename: str, project: NormalizedName,
                       version: Version, *, read_from: str) -> None:
    """Raise MetadataError naming ``filename`` when the ``Name`` and ``Version`` of its
    core metadata (``read_from``: ``METADATA``, ``PKG-INFO``...) are not the file
    name's ``project`` and ``version`` (names canonicalized, versions normalized):
    pip and uv refuse such a distribution, so a mirror serving it is of no use."""
    name, written = metadata.name, metadata.version
    if name and written and canonicalize_name(name) == project and _same(written, version):
        return
    says = f"names {name} {written}" if name and written else \
        f"has no {'Name' if not name else 'Version'}"
    raise MetadataError(f"its {read_from} {says}, not {project} {version} (the file "
                        "name's); an installer refuses it", where=filename,
                        hint="lock another release of it, or have its index replace the file")


def _same(written: str, version: Version) -> bool:
    try:
        return Version(written) == version
    except InvalidVersion:
        return False


def read_metadata(path: Path) -> bytes:
    """The core metadata of the distribution file ``path``: for a wheel, the PEP 658
    ``<file>.metadata`` beside it when there is one, else the archive's own.

    Raises MetadataError naming ``path`` when there is none or it cannot be read."""
    if path.name.endswith(".whl"):
        sibling = path.with_name(path.name + ".metadata")
        if sibling.is_file():
            try:
                return bounded_read(sibling.open("rb"), sibling.stat().st_size, str(sibling))
            except OSError as error:
                raise MetadataError(f"cannot read it ({error})", where=str(sibling)) from None
    return archive_metadata(path, str(path))


def archive_metadata(archive: Path | bytes, filename: str) -> bytes:
    """METADATA of a wheel or top-level PKG-INFO of an sdist (``.zip`` or a tarball),
    given as a path or as the archive's bytes; ``filename`` (its name or path) says
    which kind it is and is named in errors.

    Raises MetadataError naming ``filename`` when there is none or the archive is
    unreadable. Reads only the one member."""
    if filename.endswith(".whl"):
        try:
            with zipfile.ZipFile(io.BytesIO(archive) if isinstance(archive, bytes)
                                 else archive) as opened:
                return zip_metadata(opened, filename)
        except (OSError, zipfile.BadZipFile) as error:
            raise MetadataError(f"cannot read its metadata ({error})", where=filename) from None
    found = sdist_members(archive, filename, ("PKG-INFO",))
    if "PKG-INFO" not in found:
        raise MetadataError("has no METADATA / PKG-INFO", where=filename)
    return found["PKG-INFO"]


def zip_metadata(archive: zipfile.ZipFile, filename: str) -> bytes:
    """METADATA of the opened wheel ``archive`` (any seekable file, e.g. one read
    through HTTP Range requests); ``filename`` is the wheel's name, named in errors.

    Raises MetadataError when it has none; zipfile's errors pass through."""
    member = wheel_metadata_member(archive, filename)
    if member is None:
        raise MetadataError("has no METADATA / PKG-INFO", where=filename)
    return _zip_member(archive, member, filename)


def wheel_metadata_member(archive: zipfile.ZipFile, filename: str) -> str | None:
    """The name of the wheel's ``<name>-<version>.dist-info/METADATA`` member,
    preferring the one whose project name starts the wheel's ``filename``."""
    candidates = [n for n in archive.namelist() if _DIST_INFO_METADATA.fullmatch(n)]
    prefix = Path(filename).name.split("-")[0].lower()
    preferred = [n for n in candidates if n.split("-")[0].lower() == prefix]
    chosen = preferred or candidates
    return chosen[0] if chosen else None


def sdist_members(archive: Path | bytes, filename: str,
                  names: Iterable[str]) -> dict[str, bytes]:
    """The top-level files ``names`` (``<dir>/<name>``: PKG-INFO, pyproject.toml...)
    of an sdist (``.zip`` or a tarball) given as a path or its bytes; those it lacks
    are absent from the answer. Reads no further once every one is found, and a
    tarball no further than :data:`MAX_SCANNED_BYTES` decompressed.

    Raises MetadataTooLarge naming ``filename`` past a cap, MetadataError when the
    archive is unreadable."""
    wanted = set(names)
    source = io.BytesIO(archive) if isinstance(archive, bytes) else archive
    try:
        if filename.endswith(".zip"):
            with zipfile.ZipFile(source) as opened:
                return _zip_members(opened, wanted, filename)
        with (tarfile.open(fileobj=source, tarinfo=_BoundedTarInfo)
              if isinstance(source, io.BytesIO)
              else tarfile.open(source, tarinfo=_BoundedTarInfo)) as opened:
            return _tar_members(opened, wanted, filename)
    except _TarHeaderRefused as refused:
        raise MetadataTooLarge(str(refused), where=filename) from None
    except (OSError, zipfile.BadZipFile, tarfile.TarError) as error:
        raise MetadataError(f"cannot read its metadata ({error})", where=filename) from None


def _zip_members(opened: zipfile.ZipFile, wanted: set[str], filename: str) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for name in opened.namelist():
        top = _top_level(name, wanted)
        if top is not None and top not in found:
            found[top] = _zip_member(opened, name, filename)
            if found.keys() == wanted:
                break
    return found


def _tar_members(opened: tarfile.TarFile, wanted: set[str], filename: str) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for info in opened:
        top = _top_level(info.name, wanted)
        if top is not None and top not in found and info.isfile():
            extracted = opened.extractfile(info)
            if extracted is not None:
                found[top] = bounded_read(extracted, info.size, f"{filename}: {info.name}")
                if found.keys() == wanted:
                    break  # the rest may be a compressed bomb: never decompressed
        if opened.offset > MAX_SCANNED_BYTES:  # the next header (a pax header sets any size)
            raise _TarHeaderRefused(_past_scan(opened.offset))
    return found


class _TarHeaderRefused(Exception):
    """A tar header refused by :class:`_BoundedTarInfo` (the archive's name is added after)."""


class _BoundedTarInfo(tarfile.TarInfo):
    """Each tar header checked before tarfile reads past it: tarfile reads a GNU long
    name's or a pax header's data into memory whole, at the size its header states,
    before any member reaches :func:`bounded_read` (a 400 KB tar.gz stating a 400 MiB
    long name took 436 MiB). ``_proc_member`` is tarfile's hook for subclasses."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _READ_WHOLE and self.size > MAX_METADATA_BYTES:
            raise _TarHeaderRefused(f"a tar header of {self.size} bytes (at byte {self.offset}) "
                                    f"is more than the {format_size(MAX_METADATA_BYTES)} "
                                    "lockmirror reads; refused")
        if self.offset + self.size > MAX_SCANNED_BYTES:
            raise _TarHeaderRefused(_past_scan(self.offset + self.size))
        member: tarfile.TarInfo = super()._proc_member(tarfile_)  # type: ignore[misc]
        return member


# the header types whose data tarfile reads whole into memory
_READ_WHOLE = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
               tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)


def _past_scan(offset: int) -> str:
    return (f"its members run to byte {offset} decompressed, past the "
            f"{format_size(MAX_SCANNED_BYTES)} lockmirror looks through for the core "
            "metadata; refused")


def check_stated(size: int, where: str) -> None:
    """Raise MetadataTooLarge naming ``where`` and the cap when ``size`` (the bytes a
    header states) is more than MAX_METADATA_BYTES."""
    if size > MAX_METADATA_BYTES:
        raise MetadataTooLarge(f"core metadata of {size} bytes is more than the "
                            f"{format_size(MAX_METADATA_BYTES)} lockmirror reads; refused",
                            where=where)


def bounded_read(handle: IO[bytes], stated: int, where: str) -> bytes:
    """The bytes of the open member or file ``handle`` (closed after), which states
    ``stated`` bytes: refused as :func:`check_stated` says, and past the cap
    whatever it stated (a header may lie)."""
    with handle:
        check_stated(stated, where)
        data = handle.read(MAX_METADATA_BYTES + 1)
    if len(data) > MAX_METADATA_BYTES:
        raise MetadataTooLarge(f"core metadata runs past the {format_size(MAX_METADATA_BYTES)} "
                            "lockmirror reads; refused", where=where)
    return data


def _zip_member(archive: zipfile.ZipFile, name: str, filename: str) -> bytes:
    info = archive.getinfo(name)  # its stated size is checked before a byte is inflated
    return bounded_read(archive.open(info), info.file_size, f"{filename}: {name}")


_DIST_INFO_METADATA = re.compile(r"[^/]+\.dist-info/METADATA")


def _top_level(name: str, wanted: set[str]) -> str | None:
    parts = name.split("/")
    return parts[1] if len(parts) == 2 and parts[1] in wanted else None
