"""The form of a legacy upload (``:action=file_upload``, protocol 1), as PyPI,
Nexus, devpi, pypiserver and Artifactory accept it.

The fields come from the file's own core metadata (read and parsed by
:mod:`lockmirror.core_metadata`), named as twine and Warehouse name them;
fields ``packaging.metadata`` does not know or cannot parse are passed on
as written, so any metadata version is carried and no file is refused here
for its metadata style (twine 7 refuses, for example, Metadata-Version 2.1
with a License-Expression field, as beautifulsoup4 4.12.2 has).
"""

from __future__ import annotations

import hashlib

from ..core_metadata import CoreMetadata

Fields = list[tuple[str, str]]

# packaging.metadata's names -> the form's, where they differ
_FORM_NAMES = {"platforms": "platform", "supported_platforms": "supported_platform",
               "license_files": "license_file"}


def upload_fields(filename: str, data: bytes, metadata: CoreMetadata) -> Fields:
    """The form fields for posting the distribution ``filename`` whose bytes are
    ``data``: its metadata, its kind and its md5, sha256 and blake2b digests
    (the file itself is added by the caller as ``content``)."""
    fields: Fields = [(":action", "file_upload"), ("protocol_version", "1")]
    fields += metadata_fields(metadata)
    if filename.endswith(".whl"):
        filetype, pyversion = "bdist_wheel", filename[:-4].split("-")[-3]
    else:
        filetype, pyversion = "sdist", "source"
    fields += [("filetype", filetype), ("pyversion", pyversion),
               ("md5_digest", hashlib.md5(data, usedforsecurity=False).hexdigest()),
               ("sha256_digest", hashlib.sha256(data).hexdigest()),
               ("blake2_256_digest", hashlib.blake2b(data, digest_size=32).hexdigest())]
    return fields


def metadata_fields(metadata: CoreMetadata) -> Fields:
    """Core metadata as form fields: one field per value of a multiple-use field,
    keywords joined by commas, project URLs as ``label, url``."""
    fields: Fields = []
    for name, value in metadata.raw.items():
        form_name = _FORM_NAMES.get(name, name)
        if name == "keywords" and isinstance(value, list):
            fields.append((form_name, ",".join(value)))
        elif isinstance(value, dict):
            fields += [(form_name, f"{label}, {url}") for label, url in value.items()]
        elif isinstance(value, list):
            fields += [(form_name, str(item)) for item in value]
        else:
            fields.append((form_name, str(value)))
    for header, values in metadata.unparsed.items():
        fields += [(header.lower().replace("-", "_"), value) for value in values]
    return fields
