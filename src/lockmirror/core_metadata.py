"""The one reader of core metadata (METADATA / PKG-INFO): wheel, sdist or PEP 658 file.

:func:`archive_metadata` finds the raw bytes in a distribution (a wheel's
``<name>.dist-info/METADATA``, an sdist's top-level ``PKG-INFO``);
:func:`read_metadata` prefers a wheel's PEP 658 ``.metadata`` file beside
it; :func:`parse_metadata` parses the bytes with ``packaging.metadata``
(fields it cannot parse are kept, raw, in ``unparsed``). No network.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.metadata import RawMetadata, parse_email

from .errors import LockmirrorError


class MetadataError(LockmirrorError):
    """A distribution whose core metadata cannot be found or read."""


@dataclass(frozen=True)
class CoreMetadata:
    """Parsed core metadata: ``raw`` as ``packaging.metadata`` reads it, plus the
    header fields it could not parse or does not know (name -> values, as written)."""

    raw: RawMetadata
    unparsed: dict[str, list[str]] = field(default_factory=dict)


def parse_metadata(data: bytes) -> CoreMetadata:
    """Parse METADATA / PKG-INFO bytes (any metadata version; never raises for a field)."""
    raw, unparsed = parse_email(data)
    return CoreMetadata(raw=raw, unparsed=unparsed)


def read_metadata(path: Path) -> bytes:
    """The core metadata of the distribution file ``path``: for a wheel, the PEP 658
    ``<file>.metadata`` beside it when there is one, else the archive's own.

    Raises MetadataError naming ``path`` when there is none or it cannot be read."""
    if path.name.endswith(".whl"):
        sibling = path.with_name(path.name + ".metadata")
        if sibling.is_file():
            return sibling.read_bytes()
    return archive_metadata(path, str(path))


def archive_metadata(archive: Path | bytes, filename: str) -> bytes:
    """METADATA of a wheel or top-level PKG-INFO of an sdist (``.zip`` or a tarball),
    given as a path or as the archive's bytes; ``filename`` (its name or path) says
    which kind it is and is named in errors.

    Raises MetadataError naming ``filename`` when there is none or the archive is
    unreadable. Reads only the one member."""
    source = io.BytesIO(archive) if isinstance(archive, bytes) else archive
    try:
        if filename.endswith((".whl", ".zip")):
            with zipfile.ZipFile(source) as opened:
                found = _zip_member(opened.namelist(), wheel=filename.endswith(".whl"))
                if found is not None:
                    return opened.read(found)
        else:
            with (tarfile.open(fileobj=source) if isinstance(source, io.BytesIO)
                  else tarfile.open(source)) as opened:
                for info in opened:
                    if _is_pkg_info(info.name) and info.isfile():
                        extracted = opened.extractfile(info)
                        if extracted is not None:
                            return extracted.read()
    except (OSError, zipfile.BadZipFile, tarfile.TarError) as error:
        raise MetadataError(f"cannot read its metadata ({error})", where=filename) from None
    raise MetadataError("has no METADATA / PKG-INFO", where=filename)


def _zip_member(names: list[str], *, wheel: bool) -> str | None:
    for name in names:
        parts = name.split("/")
        if wheel and len(parts) == 2 and parts[0].endswith(".dist-info") \
                and parts[1] == "METADATA":
            return name
        if not wheel and _is_pkg_info(name):
            return name
    return None


def _is_pkg_info(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and parts[1] == "PKG-INFO"
