"""How long a publish waits on a destination that stopped answering, and how often it tries.

One policy for every publisher that talks to a server: S3 (botocore's standard
retry mode, :func:`lockmirror.net.s3_client.make_client`) and upload APIs
(urllib3's ``Retry`` of :func:`lockmirror.net.http.make_session`, for the
repository's pages and the uploads). A server that takes the connection and then
sends nothing (frozen, or a network that drops packets) ends a request after
READ_TIMEOUT seconds of silence, and fails the publish within about
ATTEMPTS * READ_TIMEOUT seconds: one line naming the server, not a long hang.

One wait is longer: the answer to an upload API's POST. Its clock starts once the
whole file is sent, and a repository (Nexus, Artifactory, devpi) may hash or scan
a large wheel before it answers; giving up on that early would not save time but
re-send the whole file. An upload whose answer never comes is not tried again
either, and the publish stops there: every other file would wait the same.
"""

from __future__ import annotations

CONNECT_TIMEOUT = 10  # seconds to connect
READ_TIMEOUT = 30  # seconds without a byte from the server before a try is given up
UPLOAD_ANSWER_TIMEOUT = 300  # seconds an upload POST's answer may take once its body is sent
ATTEMPTS = 3  # tries of one request: the first and two retries
