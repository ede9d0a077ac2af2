"""The one core-metadata reader: wheel, sdist (tar.gz and zip), PEP 658 file."""

from __future__ import annotations

import gzip
import tarfile
import zipfile
from pathlib import Path

import pytest
from fixtureindex import build_sdist, build_wheel

from lockmirror.formats.core_metadata import (
    MAX_METADATA_BYTES,
    MetadataError,
    MetadataTooLarge,
    archive_metadata,
    parse_metadata,
    read_metadata,
    sdist_members,
)
from lockmirror.publish.upload_form import file_digests, upload_fields


def test_wheel_metadata_from_the_archive_and_from_its_pep658_file(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, "alpha", "1.0", requires_dist=["beta>=1"],
                        requires_python=">=3.9")
    parsed = parse_metadata(read_metadata(wheel))
    assert parsed.raw["name"] == "alpha" and parsed.raw["requires_dist"] == ["beta>=1"]
    assert parsed.raw["requires_python"] == ">=3.9"
    assert archive_metadata(wheel.read_bytes(), wheel.name) == read_metadata(wheel)
    sibling = wheel.with_name(wheel.name + ".metadata")
    sibling.write_bytes(b"Metadata-Version: 2.1\nName: alpha\nVersion: 1.0\n")
    assert read_metadata(wheel) == sibling.read_bytes()  # the index's file wins


def test_sdist_pkg_info_from_tar_gz_and_zip(tmp_path: Path) -> None:
    sdist = build_sdist(tmp_path, "gamma", "2.0", requires_dist=["delta"])
    raw = read_metadata(sdist)
    assert parse_metadata(raw).raw["requires_dist"] == ["delta"]
    zipped = tmp_path / "gamma-2.0.zip"
    with tarfile.open(sdist) as source, zipfile.ZipFile(zipped, "w") as target:
        for member in source.getmembers():
            extracted = source.extractfile(member)
            if extracted is not None:
                target.writestr(member.name, extracted.read())
    assert read_metadata(zipped) == raw


def test_missing_or_unreadable_metadata_names_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty-1.0-py3-none-any.whl"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("empty/__init__.py", "")
    with pytest.raises(MetadataError, match=r"empty-1.0-py3-none-any.whl: has no METADATA"):
        read_metadata(empty)
    broken = tmp_path / "broken-1.0.tar.gz"
    broken.write_bytes(b"not a tarball")
    with pytest.raises(MetadataError, match=r"broken-1.0.tar.gz: cannot read its metadata"):
        read_metadata(broken)


def test_upload_form_carries_every_field_as_written(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, "licexpr", "1.0", metadata_version="2.1",
                        extra_metadata=[("License-Expression", "MIT"),
                                        ("Classifier", "A :: B"), ("Classifier", "C :: D"),
                                        ("Project-URL", "Home, https://example.invalid/"),
                                        ("X-Custom", "kept")])
    fields = upload_fields(wheel.name, file_digests(wheel), parse_metadata(read_metadata(wheel)))
    assert fields[:2] == [(":action", "file_upload"), ("protocol_version", "1")]
    assert ("license_expression", "MIT") in fields
    assert [v for k, v in fields if k == "classifiers"] == ["A :: B", "C :: D"]
    assert ("project_urls", "Home, https://example.invalid/") in fields
    assert ("x_custom", "kept") in fields  # unknown to packaging: passed on as written
    assert ("filetype", "bdist_wheel") in fields and ("pyversion", "py3") in fields
    assert dict(fields)["sha256_digest"] and dict(fields)["blake2_256_digest"]


# --------------------------------------------------------------------------
# hostile sdists: tar headers and compressed bombs
# --------------------------------------------------------------------------

PKG_INFO = b"Metadata-Version: 2.1\nName: bomb\nVersion: 1.0\n"


def tar_block(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    """One tar header block stating ``size`` bytes of data (not written here)."""
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return info.tobuf(format=tarfile.GNU_FORMAT)


def member(name: str, data: bytes) -> bytes:
    """A header and its data, padded to whole blocks."""
    return tar_block(name, len(data)) + data + bytes(-len(data) % tarfile.BLOCKSIZE)


def gzip_of(parts: list[bytes]) -> bytes:
    """One gzip member per part, concatenated: a valid gzip file."""
    return b"".join(gzip.compress(part) for part in parts)


END = bytes(2 * tarfile.BLOCKSIZE)


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE],
                         ids=["gnu-longname", "pax"])
def test_a_tar_header_past_the_cap_is_refused_before_it_is_read(kind: bytes) -> None:
    """tarfile reads a GNU long name's or a pax header's data whole, at the size its header
    states, before a member reaches the bounded read (400 MiB stated took 436 MiB)."""
    stated = 2 * MAX_METADATA_BYTES
    sdist = gzip_of([tar_block("././@LongLink", stated, kind), bytes(stated),
                     member("bomb-1.0/PKG-INFO", PKG_INFO), END])
    with pytest.raises(MetadataTooLarge) as caught:
        archive_metadata(sdist, "bomb-1.0.tar.gz")
    assert str(caught.value) == (f"bomb-1.0.tar.gz: a tar header of {stated} bytes (at byte 0) "
                                 "is more than the 16.0 MiB lockmirror reads; refused")


def test_a_compressed_bomb_before_pkg_info_is_refused_not_decompressed() -> None:
    """5 GiB of zeros in 5 MiB of gzip ahead of PKG-INFO: it was decompressed in full."""
    size = 5 << 30
    zeros = gzip.compress(bytes(1 << 20)) * (size >> 20)  # one gzip member per MiB
    sdist = gzip_of([tar_block("bomb-1.0/zeros", size)]) + zeros + \
        gzip_of([member("bomb-1.0/PKG-INFO", PKG_INFO), END])
    with pytest.raises(MetadataTooLarge) as caught:
        archive_metadata(sdist, "bomb-1.0.tar.gz")
    assert str(caught.value) == (f"bomb-1.0.tar.gz: its members run to byte {size} "
                                 "decompressed, past the 4.0 GiB lockmirror looks through for "
                                 "the core metadata; refused")


def test_nothing_after_the_wanted_members_is_read() -> None:
    """PKG-INFO first, then a member stating 5 GiB of which the archive holds one MiB: the
    rest is never read, so the archive cut short there is not even noticed (it was read
    to its end: "unexpected end of data")."""
    sdist = gzip_of([member("bomb-1.0/PKG-INFO", PKG_INFO), tar_block("bomb-1.0/zeros", 5 << 30),
                     bytes(1 << 20)])
    assert archive_metadata(sdist, "bomb-1.0.tar.gz") == PKG_INFO
    assert sdist_members(sdist, "bomb-1.0.tar.gz", ["PKG-INFO"]) == {"PKG-INFO": PKG_INFO}
