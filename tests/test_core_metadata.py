"""The one core-metadata reader: wheel, sdist (tar.gz and zip), PEP 658 file."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import pytest
from fixtureindex import build_sdist, build_wheel

from lockmirror.formats.core_metadata import (
    MetadataError,
    archive_metadata,
    parse_metadata,
    read_metadata,
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
