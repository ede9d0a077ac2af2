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
from collections.abc import Mapping

from ..errors import LockmirrorError
from ..formats.bounded import load_json
from ..fsutil import sha256_bytes

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
