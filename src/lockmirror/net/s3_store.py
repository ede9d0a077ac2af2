"""The content-addressed store on S3-compatible object storage: ``s3://bucket/prefix``.

The same small protocol as the local :class:`~lockmirror.formats.store.Store`
(``has``, ``partial_path``, ``adopt``, ``open``, ``write``), so the fetch, index
and bundle stages do not branch on where the store lives:

* keys are ``<prefix>/sha256/ab/cdef...``, exactly the local layout, so a
  key's name proves its bytes and concurrent writers of one key write the
  same bytes (no coordination needed; nothing is ever overwritten with
  different content);
* verified before visible: a download streams into a local partial file
  under ``staging`` (bounded by the files in flight, never the mirror), is
  hashed against the lockfile there, and only then uploaded to its final
  key. A single PUT or a multipart upload is invisible until it completes,
  and every upload carries its SHA-256 checksum, which the server verifies,
  so no key ever holds bytes that were not verified;
* ``has`` answers from one listing of ``<prefix>/sha256/`` (taken on first
  use: one request per 1,000 keys); ``recheck`` asks with a HEAD, which the
  fetch does just before downloading a file, so a key another process wrote
  meanwhile is not fetched again;
* ``open`` reads a key with ranged GETs (seekable: a wheel's METADATA is read
  out of the zip's directory without downloading the wheel);
* ``checked_chunks`` and ``reader`` stream a whole object and hash it as it
  passes: a key's name is a promise nothing enforces (anyone with write access
  can put other bytes of the same size under it), so the bytes bundle and
  publish carry on are checked against it.

Credentials and the endpoint come from boto3's usual chain (environment,
profile, instance or OIDC web identity; ``AWS_ENDPOINT_URL``), or from the S3
destination of ``mirror.yaml`` on the same bucket (its ``endpoint_url``,
``region``, ``profile``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Union

from ..errors import IntegrityError, LockmirrorError
from .s3_client import (
    NOT_FOUND_CODES,
    convert_error,
    endpoint_from_environment,
    error_code,
    make_client,
    s3_errors,
)

if TYPE_CHECKING:
    from ..formats.store import Store

SCHEME = "s3://"
READ_CHUNK = 8 << 20  # ranged GETs of a streamed read


AnyStore = Union["Store", "S3Store"]  # what the stages take: the local store or this one


def is_s3_url(text: str) -> bool:
    """Whether a ``paths.store`` value names object storage."""
    return text.startswith(SCHEME)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, ``some/prefix/`` or ``""``).

    Raises LockmirrorError for a URL without a bucket."""
    bucket, _, prefix = url[len(SCHEME):].partition("/")
    if not bucket:
        raise LockmirrorError("the store URL names no bucket", where=url,
                              hint="write paths.store as s3://bucket/prefix")
    prefix = prefix.strip("/")
    return bucket, prefix + "/" if prefix else ""


@dataclass
class S3Store:
    """A store whose files are objects of ``bucket`` under ``prefix``.

    ``staging`` is a local directory for downloads in flight (partial files,
    as in the local store); ``client`` a boto3 S3 client. Thread-safe.
    """

    url: str
    client: Any
    staging: Path
    bucket: str = ""
    prefix: str = ""
    _sizes: dict[str, int] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.bucket, self.prefix = parse_s3_url(self.url)

    @property
    def root(self) -> Path:
        """The local staging directory (the local store's ``root`` role for partials)."""
        return self.staging

    @property
    def identity(self) -> str:
        """What names this store in saved state and messages."""
        return self.url

    def key(self, sha256: str) -> str:
        """The object key of the file with this sha256."""
        digest = sha256.lower()
        return f"{self.prefix}sha256/{digest[:2]}/{digest[2:]}"

    # -- what is there -------------------------------------------------------

    def sizes(self) -> dict[str, int]:
        """sha256 -> size of every object in the store (one paginated listing,
        taken once and kept up to date by this process's writes)."""
        with self._lock:
            if self._sizes is None:
                found: dict[str, int] = {}
                start = f"{self.prefix}sha256/"
                pages = self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=start)
                for page in self._call("list", start, lambda: list(pages)):
                    for entry in page.get("Contents", ()):
                        rest = entry["Key"][len(start):]
                        if len(rest) == 65 and rest[2] == "/":
                            found[rest[:2] + rest[3:]] = int(entry["Size"])
                self._sizes = found
            return self._sizes

    def size_of(self, sha256: str) -> int | None:
        """The size of the object for ``sha256`` in the listing, or None."""
        return self.sizes().get(sha256.lower())

    def has(self, sha256: str, size: int | None = None) -> bool:
        """Present with the expected size, by the listing (the key proves the hash:
        only verified bytes are ever uploaded to it)."""
        have = self.size_of(sha256)
        return have is not None and (size is None or have == size)

    def recheck(self, sha256: str, size: int | None = None) -> bool:
        """:meth:`has`, asked now (a HEAD): another process may have written it
        since the listing."""
        digest = sha256.lower()
        try:
            answer = self.client.head_object(Bucket=self.bucket, Key=self.key(digest))
        except s3_errors() as exc:
            if error_code(exc) in NOT_FOUND_CODES:
                return False
            raise self._error(exc, "head", self.key(digest)) from None
        self._remember(digest, int(answer["ContentLength"]))
        return size is None or int(answer["ContentLength"]) == size

    # -- writing -------------------------------------------------------------

    def temp_dir(self) -> Path:
        """Where downloads in progress live (local, bounded by the files in flight)."""
        path = self.staging / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def partial_path(self, sha256: str) -> Path:
        """The local partial download of this sha256 (see the local store)."""
        return self.temp_dir() / f"{sha256.lower()}.partial"

    def adopt(self, verified: Path, sha256: str) -> str:
        """Upload a file whose hash the caller has verified to its key, then
        remove the local copy. Multipart above boto3's threshold, completed
        only when every part arrived; the server checks the SHA-256 checksum."""
        key = self.key(sha256)
        size = verified.stat().st_size
        self._call("upload", key, lambda: self.client.upload_file(
            str(verified), self.bucket, key, ExtraArgs={"ChecksumAlgorithm": "SHA256"}))
        verified.unlink()
        self._remember(sha256.lower(), size)
        return key

    def write(self, sha256: str, data: bytes) -> None:
        """Store small verified bytes (a wheel's METADATA) under their sha256."""
        key = self.key(sha256)
        checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
        self._call("upload", key, lambda: self.client.put_object(
            Bucket=self.bucket, Key=key, Body=data, ChecksumSHA256=checksum))
        self._remember(sha256.lower(), len(data))

    # -- reading -------------------------------------------------------------

    def open(self, sha256: str) -> BinaryIO:
        """A seekable, buffered reader of the object (ranged GETs)."""
        size = self.size_of(sha256)
        if size is None:
            raise LockmirrorError("not in the store", where=f"{self.url} {sha256}")
        return io.BufferedReader(_RangedObject(self, self.key(sha256), size),
                                 buffer_size=1 << 20)

    def chunks(self, sha256: str) -> Iterator[bytes]:
        """The object's bytes in order, one GET streamed (for a tar member)."""
        key = self.key(sha256)
        body = self._call("get", key, lambda: self.client.get_object(
            Bucket=self.bucket, Key=key)["Body"])
        try:
            yield from body.iter_chunks(READ_CHUNK)
        finally:
            body.close()

    def checked_chunks(self, sha256: str, size: int,
                       name: str = "") -> Generator[bytes, None, None]:
        """:meth:`chunks`, each hashed as it passes (``hashlib``, the same pass).

        The key names the bytes' sha256, but nothing stops an object from
        being replaced by other bytes of the same size, so what is read out
        is checked: IntegrityError naming the key, both hashes and ``name``
        (the file the object is, for the message) unless
        the object has ``size`` bytes whose sha256 is ``sha256``, raised in
        place of the chunk that would complete it (a multipart upload fed
        from here is never completed).
        """
        key = self.key(sha256)
        digest = hashlib.sha256()
        got = 0
        for chunk in self.chunks(sha256):
            got += len(chunk)
            if got > size:
                break
            digest.update(chunk)
            if got == size:
                self._check(key, sha256, digest, name)
            yield chunk
        if got != size:
            raise IntegrityError(f"{name or 'the object'} is not of the manifest's size "
                                 f"({size} bytes)",
                                 where=f"s3://{self.bucket}/{key}",
                                 hint="delete the object and run `doit fetch`")
        if not size:
            self._check(key, sha256, digest, name)

    def reader(self, sha256: str, size: int, name: str = "") -> BinaryIO:
        """:meth:`checked_chunks` as a file to ``read(n)`` from (n bytes until the end)."""
        return io.BufferedReader(_ChunksObject(self.checked_chunks(sha256, size, name)))

    # -- helpers -------------------------------------------------------------

    def _check(self, key: str, sha256: str, digest: Any, name: str) -> None:
        if digest.hexdigest() != sha256.lower():
            raise IntegrityError(f"{name or 'the object'} has sha256 {digest.hexdigest()}, "
                                 f"not {sha256.lower()} (its key's name)",
                                 where=f"s3://{self.bucket}/{key}",
                                 hint="delete the object and run `doit fetch`")

    def _remember(self, digest: str, size: int) -> None:
        with self._lock:
            if self._sizes is not None:
                self._sizes[digest] = size

    def _call(self, action: str, key: str, call: Any) -> Any:
        try:
            return call()
        except s3_errors() as exc:
            raise self._error(exc, action, key) from None

    def _error(self, exc: BaseException, action: str, key: str) -> LockmirrorError:
        return convert_error(exc, action=action, bucket=self.bucket, where=f"s3://{self.bucket}/"
                             f"{key}", endpoint=self.client.meta.endpoint_url)


class _RangedObject(io.RawIOBase):
    """A read-only, seekable view of one object: each read is a ranged GET."""

    def __init__(self, store: S3Store, key: str, size: int) -> None:
        self.store, self.key, self.size, self.position = store, key, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(base + offset, 0)
        return self.position

    def readinto(self, buffer: Any) -> int:
        end = min(self.position + len(buffer), self.size)
        if end <= self.position:
            return 0
        wanted = f"bytes={self.position}-{end - 1}"
        data = self.store._call("get", self.key, lambda: self.store.client.get_object(
            Bucket=self.store.bucket, Key=self.key, Range=wanted)["Body"].read())
        buffer[:len(data)] = data
        self.position += len(data)
        return len(data)


class _ChunksObject(io.RawIOBase):
    """A read-only, unseekable view of an iterator of chunks."""

    def __init__(self, chunks: Generator[bytes, None, None]) -> None:
        self.chunks, self.left = chunks, memoryview(b"")

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.chunks.close()  # the GET's connection goes back to the pool
        super().close()

    def readinto(self, buffer: Any) -> int:
        if not self.left:
            self.left = memoryview(next(self.chunks, b""))
        count = min(len(buffer), len(self.left))
        buffer[:count] = self.left[:count]
        self.left = self.left[count:]
        return count


def open_store(store_setting: str, staging: Path, destinations: Any = ()) -> AnyStore:
    """The store a ``paths.store`` value names: an :class:`S3Store` for
    ``s3://...`` (client options from an S3 destination on the same bucket,
    else boto3's chain), else the local store at that path."""
    from ..formats.store import Store

    if not is_s3_url(store_setting):
        return Store(Path(store_setting))
    from ..config_schema import S3Destination

    bucket, _prefix = parse_s3_url(store_setting)
    same = [d for d in destinations if getattr(d, "kind", None) == "s3" and d.bucket == bucket]
    # as the publisher's ad-hoc destinations: an endpoint from the environment also
    # picks path-style addressing and a default region
    options = same[0] if same else S3Destination(kind="s3", bucket=bucket,
                                                 endpoint_url=endpoint_from_environment())
    return S3Store(store_setting, make_client(options), staging)


def store_of(loaded: Any, location: str | None = None) -> AnyStore:
    """The store of a loaded ``mirror.yaml`` (``paths.store`` / ``$LOCKMIRROR_STORE``,
    or ``location`` given instead); an S3 store stages downloads in flight under
    ``paths.cache``."""
    return open_store(location or loaded.store_location, loaded.cache_dir / "s3-staging",
                      loaded.config.publish.values())


def s3_store_of(loaded: Any) -> S3Store | None:
    """The S3 store of a loaded ``mirror.yaml`` (``paths.store: s3://...``), else None."""
    store = store_of(loaded) if is_s3_url(loaded.store_location) else None
    return store if isinstance(store, S3Store) else None
