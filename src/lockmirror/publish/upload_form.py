"""The form of a legacy upload (``:action=file_upload``, protocol 1), as PyPI,
Nexus, devpi, pypiserver and Artifactory accept it, and the body that
carries it from the disk (:class:`UploadBody`).

The fields come from the file's own core metadata (read and parsed by
:mod:`lockmirror.formats.core_metadata`), named as twine and Warehouse name them;
fields ``packaging.metadata`` does not know or cannot parse are passed on
as written, so any metadata version is carried and no file is refused here
for its metadata style (twine 7 refuses, for example, Metadata-Version 2.1
with a License-Expression field, as beautifulsoup4 4.12.2 has).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from urllib3.filepost import choose_boundary, encode_multipart_formdata

from ..formats.core_metadata import CoreMetadata
from ..fsutil import CHUNK

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

Fields = list[tuple[str, str]]
Digests = dict[str, str]

# packaging.metadata's names -> the form's, where they differ
_FORM_NAMES = {"platforms": "platform", "supported_platforms": "supported_platform",
               "license_files": "license_file"}


def file_digests(path: Path) -> Digests:
    """The form's md5, sha256 and blake2b-256 digests of the file ``path`` (as
    ``md5_digest``, ``sha256_digest``, ``blake2_256_digest``), read once in 1 MiB
    chunks. Raises OSError."""
    md5 = hashlib.md5(usedforsecurity=False)
    sha256, blake2 = hashlib.sha256(), hashlib.blake2b(digest_size=32)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            md5.update(chunk)
            sha256.update(chunk)
            blake2.update(chunk)
    return {"md5_digest": md5.hexdigest(), "sha256_digest": sha256.hexdigest(),
            "blake2_256_digest": blake2.hexdigest()}


def upload_fields(filename: str, digests: Digests, metadata: CoreMetadata) -> Fields:
    """The form fields for posting the distribution ``filename`` whose
    :func:`file_digests` are ``digests``: its metadata, its kind and its digests
    (the file itself is the body's ``content`` part, see :class:`UploadBody`)."""
    fields: Fields = [(":action", "file_upload"), ("protocol_version", "1")]
    fields += metadata_fields(metadata)
    if filename.endswith(".whl"):
        filetype, pyversion = "bdist_wheel", filename[:-4].split("-")[-3]
    else:
        filetype, pyversion = "sdist", "source"
    fields += [("filetype", filetype), ("pyversion", pyversion)]
    fields += [(name, digests[name]) for name in ("md5_digest", "sha256_digest",
                                                  "blake2_256_digest")]
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


class UploadBody(io.RawIOBase):
    """A ``multipart/form-data`` body of ``fields`` whose last part, ``content``, is the
    file ``path``, read from the disk as it is sent: memory does not grow with the file.

    It presents ``prefix + file + suffix`` as one read-only, seekable stream; urllib3
    encodes the prefix and suffix (:func:`urllib3.filepost.encode_multipart_formdata`
    with an empty ``content`` part, split where the file goes), so the bytes are the
    ones ``requests``' ``files=`` would send. Pass it as ``data=`` with
    ``headers={"Content-Type": body.content_type}``: ``len()`` gives requests the
    Content-Length (no chunked encoding), and urllib3's ``Retry`` records ``tell()``
    before the first send and ``seek()``s back before each retry, so a retry sends
    the whole body again. The file is open until :meth:`close` (use ``with``).
    Raises OSError when the file cannot be opened, or is shorter than when opened.
    """

    def __init__(self, fields: Fields, path: Path,
                 mime_type: str = "application/octet-stream") -> None:
        super().__init__()
        boundary = choose_boundary()
        suffix = f"\r\n--{boundary}--\r\n".encode("latin-1")
        empty, self.content_type = encode_multipart_formdata(
            [*fields, ("content", (path.name, b"", mime_type))], boundary=boundary)
        self._prefix, self._suffix = empty[:-len(suffix)], suffix
        self._path = path
        self._file = path.open("rb")
        self._size = os.fstat(self._file.fileno()).st_size
        self._file_end = len(self._prefix) + self._size
        self._position = 0

    def __len__(self) -> int:
        return self._file_end + len(self._suffix)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Fill ``buffer`` from the current part (prefix, file or suffix); 0 at the end."""
        view, at = memoryview(buffer).cast("B"), self._position
        if len(self._prefix) <= at < self._file_end:
            self._file.seek(at - len(self._prefix))
            count = self._file.readinto(view[:self._file_end - at])
            if not count:
                raise OSError(f"{self._path}: shorter than when the upload began")
        else:
            part, start = ((self._prefix, 0) if at < len(self._prefix)
                           else (self._suffix, self._file_end))
            chunk = part[at - start:at - start + len(view)]
            count = len(chunk)
            view[:count] = chunk
        self._position += count
        return count

    def close(self) -> None:
        self._file.close()
        super().close()
