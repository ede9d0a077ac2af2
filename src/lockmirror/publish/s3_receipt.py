"""The S3 publisher's receipt: what lockmirror uploaded, so a later run need not ask,
and what --prune may delete (only what lockmirror uploaded: :func:`split_stale`).

``<prefix>.lockmirror/receipt.json`` maps each key to the sha256 and ETag it
had when lockmirror uploaded it (a key whose listed ETag still matches is
current without a request). Its metadata ``objects-sha256`` is
:func:`receipt_digest` of those entries, so that a publisher whose tree, as
listed, gives the same digest knows them all current from a HEAD of the
receipt alone (:meth:`lockmirror.publish.s3.S3Publisher.plan`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from ..errors import LockmirrorError
from ..formats.bounded import load_json
from ..fsutil import sha256_bytes
from ..net.s3_client import NOT_FOUND_CODES, STATE_CACHE, S3Client, error_code, s3_errors

RECEIPT_FORMAT = "lockmirror-s3-receipt/1"
RECEIPT_DIGEST = "objects-sha256"  # the receipt object's metadata key

Receipt = dict[str, tuple[str, str]]  # key -> (sha256, ETag)


def receipt_body(objects: Receipt) -> bytes:
    """The receipt object's bytes (sorted, deterministic)."""
    data = {"format": RECEIPT_FORMAT,
            "objects": {key: list(value) for key, value in sorted(objects.items())}}
    return json.dumps(data, indent=0, sort_keys=True).encode()


def receipt_digest(objects: Receipt) -> str:
    """sha256 of a receipt's entries, in key order."""
    return sha256_bytes(json.dumps(sorted(objects.items())).encode())


def parse_receipt(raw: bytes) -> Receipt:
    """Key -> (sha256, ETag) from a receipt object; {} when unreadable (that only
    costs HEAD requests, never a wrong answer: the ETag must match too)."""
    try:
        data = load_json(raw, where=RECEIPT_FORMAT)
        if data.get("format") != RECEIPT_FORMAT:
            return {}
        return {str(key): (str(value[0]), str(value[1])) for key, value in data["objects"].items()}
    except (LockmirrorError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return {}


def split_stale(receipt: Receipt, extra: Mapping[str, str]) -> tuple[tuple[str, ...],
                                                                    tuple[str, ...]]:
    """(stale, foreign): of the listed keys the tree lacks (``extra``: key -> ETag), those
    lockmirror uploaded (the receipt names them with that ETag) and the others, which
    --prune never deletes. A receipt vouched for by its digest alone holds only the
    tree's keys: then every extra key is foreign."""
    owned = {key for key, etag in extra.items() if key in receipt and receipt[key][1] == etag}
    return tuple(sorted(owned)), tuple(sorted(set(extra) - owned))


def receipt_for(client: S3Client, bucket: str, key: str, listed: Receipt, *, complete: bool,
                convert: Callable[[BaseException], LockmirrorError]) -> tuple[Receipt, bool]:
    """(the receipt ``key``, whether its digest vouched for ``listed``): ``listed`` is
    the tree's keys as listed (sha256, listed ETag), ``complete`` when every key of the
    tree is listed with its size. Then a HEAD first: when the receipt's digest (its
    metadata) is that of ``listed``, it vouches for exactly them and is not read;
    otherwise one GET. Raises what ``convert`` makes of an S3 error but not-found."""
    if complete:
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except s3_errors() as error:
            if error_code(error) not in NOT_FOUND_CODES:
                raise convert(error) from None
            return {}, False
        if head.get("Metadata", {}).get(RECEIPT_DIGEST) == receipt_digest(listed):
            return listed, True
    return read_receipt(client, bucket, key, convert), False


def read_receipt(client: S3Client, bucket: str, key: str,
                 convert: Callable[[BaseException], LockmirrorError]) -> Receipt:
    """The receipt object ``key`` ({} when there is none). One GET; raises
    what ``convert`` makes of any other S3 error."""
    try:
        body = client.get_object(Bucket=bucket, Key=key)
        return parse_receipt(body["Body"].read())
    except s3_errors() as error:
        if error_code(error) in NOT_FOUND_CODES:
            return {}
        raise convert(error) from None


def write_receipt(client: S3Client, bucket: str, key: str, objects: Receipt) -> None:
    """Put the receipt of ``objects`` at ``key``, its digest in its metadata. One PUT;
    raises boto3's errors."""
    objects = dict(objects)  # a copy: a worker still finishing may add to it (Ctrl-C)
    client.put_object(Bucket=bucket, Key=key, Body=receipt_body(objects),
                      ContentType="application/json", CacheControl=STATE_CACHE,
                      Metadata={RECEIPT_DIGEST: receipt_digest(objects)})
