"""The boto3 side of S3 (publisher, S3 store): the client, and botocore's errors as ours.

boto3 is imported on first use only, so every other command starts without
it; its client class is generated at run time, so it is typed loosely here.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import IntegrityError, LockmirrorError, PublishError
from .publish_timeouts import ATTEMPTS, CONNECT_TIMEOUT, READ_TIMEOUT

if TYPE_CHECKING:  # pydantic's import is for the commands that read mirror.yaml
    from ..config_schema import S3Destination

S3Client = Any

DEFAULT_JOBS = 10

# Errors that will not go away by trying the next object: stop the phase.
_AUTH_CODES = frozenset({
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled", "InvalidClientTokenId",
    "AuthorizationHeaderMalformed", "UnrecognizedClientException",
})
_DIGEST_CODES = frozenset({"BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest"})
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
STATE_CACHE = "no-store"  # the Cache-Control of the receipt and the lock
MULTIPART_THRESHOLD = 8 * 1024 * 1024
MULTIPART_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class Listed:
    """An object as a listing gives it."""

    size: int
    etag: str


def make_client(destination: S3Destination, *, pool: int = DEFAULT_JOBS + 4,
                attempts: int = ATTEMPTS, read_timeout: float = READ_TIMEOUT) -> S3Client:
    """A boto3 S3 client for the destination (profile, region, endpoint).

    Credentials come from boto3's usual chain (environment, profile, instance
    or OIDC web identity); they are never read or printed here. botocore's
    standard retry mode is the one retry policy for S3 requests: ``attempts``
    tries of a request, each given up after ``read_timeout`` seconds without a
    byte from the server (fewer and shorter for the clean-up after a failure,
    so that a silent server cannot hold it up for long). Raises
    PublishError for an unknown profile. Costs boto3's import and the S3
    service model (about 0.2 s); no request.
    """
    import boto3  # type: ignore[import-untyped]
    import botocore.config  # type: ignore[import-untyped]
    import botocore.exceptions  # type: ignore[import-untyped]

    try:
        session = boto3.session.Session(profile_name=destination.profile,
                                        region_name=destination.region)
    except botocore.exceptions.ProfileNotFound:
        raise PublishError(f"AWS profile {destination.profile!r} is not configured",
                           hint="check ~/.aws/config or the destination's profile") from None
    region = destination.region or session.region_name or (
        "us-east-1" if destination.endpoint_url else None)
    s3_options: dict[str, Any] = {
        # Every upload carries its sha256 as the (signed) x-amz-checksum-sha256 header,
        # which the server verifies; signing the payload too would hash every byte again.
        "payload_signing_enabled": False}
    if destination.endpoint_url:
        s3_options["addressing_style"] = "path"
    config = botocore.config.Config(
        max_pool_connections=pool, connect_timeout=CONNECT_TIMEOUT, read_timeout=read_timeout,
        retries={"total_max_attempts": attempts, "mode": "standard"}, s3=s3_options)
    return session.client("s3", endpoint_url=destination.endpoint_url, region_name=region,
                          config=config)


def transfer_config() -> Any:
    """boto3's transfer settings for a large file: multipart above 8 MiB, 4 parts at once."""
    from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]

    return TransferConfig(multipart_threshold=MULTIPART_THRESHOLD,
                          multipart_chunksize=MULTIPART_CHUNK, max_concurrency=4)


def list_objects(client: S3Client, bucket: str, prefix: str) -> dict[str, Listed]:
    """Every object under ``prefix``: key (after the prefix) -> size and ETag. One
    request per 1,000 keys; raises boto3's errors."""
    found: dict[str, Listed] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            key = entry["Key"][len(prefix):]
            if key:
                found[key] = Listed(int(entry["Size"]), str(entry["ETag"]))
    return found


@functools.cache
def s3_errors() -> tuple[type[BaseException], ...]:
    """What boto3 and botocore raise (imported on first use, not at module import)."""
    import boto3.exceptions  # type: ignore[import-untyped]
    import botocore.exceptions

    return (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError,
            boto3.exceptions.Boto3Error)


def error_code(error: BaseException) -> str | None:
    """The S3 error code of a botocore ClientError (``NoSuchKey``...), else None."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code"))
    return None


def convert_error(error: BaseException, *, action: str, bucket: str, where: str,
                  endpoint: str | None) -> LockmirrorError:
    """One-line lockmirror error for a botocore/boto3 failure (no credentials in it)."""
    import boto3.exceptions
    import botocore.exceptions as be

    if isinstance(error, LockmirrorError):
        return error
    cause: BaseException = error
    if isinstance(error, boto3.exceptions.S3UploadFailedError):
        cause = error.__cause__ or error.__context__ or error
    server = endpoint or "the AWS endpoint"
    if isinstance(cause, (be.NoCredentialsError, be.PartialCredentialsError)):
        return PublishError("no AWS credentials found", where=where,
                            hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
                                 "or the destination's profile")
    if isinstance(cause, be.ReadTimeoutError):  # connected, then silence (a frozen server)
        return PublishError(f"{server} stopped answering (ReadTimeoutError)", where=where,
                            hint="it took the connection but sent nothing back; check that "
                                 "the server is running and not overloaded")
    if isinstance(cause, (be.EndpointConnectionError, be.ConnectTimeoutError,
                          be.ConnectionClosedError)):
        return PublishError(f"cannot reach {server} ({type(cause).__name__})", where=where,
                            hint="check endpoint_url and the network")
    if isinstance(cause, be.ClientError):
        return _client_error(cause, action=action, bucket=bucket, where=where, server=server)
    text = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    return PublishError(f"{action} failed ({type(cause).__name__}: {text})", where=where)


def _client_error(cause: Any, *, action: str, bucket: str, where: str,
                  server: str) -> LockmirrorError:
    code = error_code(cause) or "?"
    status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    message = str(cause.response.get("Error", {}).get("Message") or "").splitlines()
    detail = f"{code}: {message[0]}" if message else code
    if code == "NoSuchBucket":
        return PublishError(f"bucket {bucket!r} does not exist at {server}", where=where,
                            hint="create it, or fix bucket/endpoint_url in mirror.yaml")
    if code in _AUTH_CODES or status == 403:
        return PublishError(f"the credentials were refused while {action} ({code})",
                            where=where,
                            hint="check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the "
                                 "profile, and the bucket policy")
    if code in _DIGEST_CODES:
        return IntegrityError(f"the server received other bytes than were sent ({code})",
                              where=where)
    return PublishError(f"{action} failed ({detail})", where=where)


def endpoint_from_environment() -> str | None:
    """The S3 endpoint the environment names (``AWS_ENDPOINT_URL_S3``, else
    ``AWS_ENDPOINT_URL``). boto3 reads these itself too; knowing it picks
    path-style addressing and a default region."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
