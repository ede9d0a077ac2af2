"""``lockmirror serve`` and the S3 publisher send the same Content-Type and
Cache-Control for every path of a built index: both take them from
:mod:`lockmirror.formats.pages` (``content_type``, ``cache_control``)."""

from __future__ import annotations

import http.client
from pathlib import Path
from typing import TYPE_CHECKING

from lockmirror.config_schema import S3Destination
from lockmirror.publish import publish
from lockmirror.publish.s3 import RECEIPT_KEY
from lockmirror.stages.serve import MirrorServer

if TYPE_CHECKING:
    from servers import S3Server

pytest_plugins = ["servers"]  # aws_env (moto), and index_tree: a built dist-index/


def served_headers(server: MirrorServer, path: str) -> tuple[str, str]:
    """(Content-Type, Cache-Control) of a HEAD request for ``path``."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("HEAD", "/" + path)
        response = connection.getresponse()
        response.read()
        assert response.status == 200, path
        return str(response.getheader("Content-Type")), str(response.getheader("Cache-Control"))
    finally:
        connection.close()


def test_serve_and_the_s3_publisher_send_the_same_content_types(
        aws_env: S3Server, index_tree: Path) -> None:
    bucket = aws_env.new_bucket()
    publish(index_tree, S3Destination(kind="s3", bucket=bucket, prefix="pypi",
                                      endpoint_url=aws_env.endpoint_url))
    client = aws_env.client()
    published = {}
    for key in aws_env.keys(bucket):
        if key != f"pypi/{RECEIPT_KEY}":
            head = client.head_object(Bucket=bucket, Key=key)
            published[key[len("pypi/"):]] = (head["ContentType"], head["CacheControl"])
    with MirrorServer(index_tree, "127.0.0.1", 0) as server:
        served = {path: served_headers(server, path) for path in published}
    assert served == published
    # every kind of file the tree holds was compared
    suffixes = {Path(path).suffix for path in published}
    assert {".html", ".json", ".toml", ".txt", ".whl", ".metadata", ""} <= suffixes
    assert published["lockfiles/pylock.core.toml"][0] == "text/plain; charset=utf-8"
