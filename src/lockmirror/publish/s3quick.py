"""Read a bucket's listing and one object with the standard library only.

Why: a publish with nothing to do must be quick, and creating a boto3
client (importing botocore and loading the S3 service model) costs about
0.4 s, several times what the no-op's two requests take. When the
credentials are plain keys in the environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, optional ``AWS_SESSION_TOKEN``), no profile is
named, and the region is known, the planning requests are signed here
(AWS Signature Version 4) and sent with ``http.client``. Anything else
(profiles, SSO, OIDC web identity, instance roles, or any failure of these
requests) returns None and the caller goes through boto3, which also
produces the error messages. Uploads always go through boto3.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree

from ..config import S3Destination

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_UNRESERVED = "-_.~"


class QuickReadFailed(Exception):
    """The quick path could not answer; the caller falls back to boto3."""


@dataclass(frozen=True)
class KeyCredentials:
    access_key: str
    secret_key: str
    session_token: str | None = None


def environment_credentials(environ: Mapping[str, str]) -> KeyCredentials | None:
    access, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
    if not access or not secret:
        return None
    return KeyCredentials(access, secret, environ.get("AWS_SESSION_TOKEN") or None)


def sigv4_headers(method: str, host: str, path: str, query: Sequence[tuple[str, str]],
                  region: str, credentials: KeyCredentials, now: datetime) -> dict[str, str]:
    """Headers that sign a body-less S3 request (AWS Signature Version 4).

    ``path`` is the request path as sent (already URI-encoded); ``query``
    the raw (unencoded) parameters."""
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    headers = {"host": host, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": amz_date}
    if credentials.session_token:
        headers["x-amz-security-token"] = credentials.session_token
    canonical_query = "&".join(f"{quote(k, safe=_UNRESERVED)}={quote(v, safe=_UNRESERVED)}"
                               for k, v in sorted(query))
    signed = ";".join(sorted(headers))
    canonical = "\n".join([
        method, path, canonical_query,
        "".join(f"{name}:{headers[name].strip()}\n" for name in sorted(headers)),
        signed, EMPTY_SHA256])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{credentials.secret_key}".encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
                                f"SignedHeaders={signed}, Signature={signature}")
    return headers


class QuickBucketReader:
    """List a prefix and GET small objects of one bucket over one connection."""

    def __init__(self, endpoint_url: str, bucket: str, region: str,
                 credentials: KeyCredentials, *, path_style: bool,
                 timeout: float = 15) -> None:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise QuickReadFailed(f"unusable endpoint {endpoint_url!r}")
        self.secure = parts.scheme == "https"
        self.bucket = bucket
        self.region = region
        self.credentials = credentials
        self.path_style = path_style
        netloc = parts.netloc.rsplit("@", 1)[-1]
        self.host = netloc if path_style else f"{bucket}.{netloc}"
        self.base = parts.path.rstrip("/")
        self.timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    @classmethod
    def for_destination(cls, destination: S3Destination,
                        environ: Mapping[str, str] | None = None) -> QuickBucketReader | None:
        """A reader when the quick path applies (see the module docstring), else None."""
        env = os.environ if environ is None else environ
        credentials = environment_credentials(env)
        if credentials is None or destination.profile:
            return None
        region = destination.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if destination.endpoint_url:
            return cls(destination.endpoint_url, destination.bucket, region or "us-east-1",
                       credentials, path_style=True)
        if not region or "." in destination.bucket:
            return None  # let boto3 find the bucket's region and addressing
        return cls(f"https://s3.{region}.amazonaws.com", destination.bucket, region,
                   credentials, path_style=False)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _request(self, key: str, query: Sequence[tuple[str, str]]) -> tuple[int, bytes]:
        path = self.base + (f"/{self.bucket}" if self.path_style else "")
        path += "/" + quote(key, safe="/" + _UNRESERVED) if key else \
            ("" if self.path_style else "/")
        headers = sigv4_headers("GET", self.host, path, query, self.region, self.credentials,
                                datetime.now(UTC))
        target = path + ("?" + "&".join(f"{quote(k, safe=_UNRESERVED)}="
                                        f"{quote(v, safe=_UNRESERVED)}" for k, v in query)
                         if query else "")
        try:
            if self._connection is None:
                self._connection = (
                    http.client.HTTPSConnection(self.host, timeout=self.timeout,
                                                context=ssl.create_default_context())
                    if self.secure else http.client.HTTPConnection(self.host,
                                                                   timeout=self.timeout))
            self._connection.request("GET", target, headers=headers)
            response = self._connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as error:
            self.close()
            raise QuickReadFailed(str(error)) from None

    def list(self, prefix: str) -> dict[str, tuple[int, str]]:
        """Key (without ``prefix``) -> (size, ETag) for every object under ``prefix``."""
        found: dict[str, tuple[int, str]] = {}
        token: str | None = None
        while True:
            query = [("list-type", "2"), ("prefix", prefix)]
            if token:
                query.append(("continuation-token", token))
            status, body = self._request("", query)
            if status != 200:
                raise QuickReadFailed(f"listing answered HTTP {status}")
            try:
                root = ElementTree.fromstring(body)
            except ElementTree.ParseError as error:
                raise QuickReadFailed(f"listing is not XML ({error})") from None
            token = None
            truncated = False
            for element in root:
                tag = element.tag.rsplit("}", 1)[-1]
                if tag == "Contents":
                    fields = {child.tag.rsplit("}", 1)[-1]: child.text or "" for child in element}
                    key = fields.get("Key", "")[len(prefix):]
                    if key:
                        found[key] = (int(fields.get("Size", "0")), fields.get("ETag", ""))
                elif tag == "IsTruncated":
                    truncated = (element.text or "").strip() == "true"
                elif tag == "NextContinuationToken":
                    token = element.text
            if not truncated:
                return found
            if not token:
                raise QuickReadFailed("truncated listing without a continuation token")

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""
        status, body = self._request(key, [])
        if status == 404:
            return None
        if status != 200:
            raise QuickReadFailed(f"GET answered HTTP {status}")
        return body
