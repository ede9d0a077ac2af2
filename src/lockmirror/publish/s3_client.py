"""Moved to :mod:`lockmirror.net.s3_client` (the S3 store below the stages uses it
too); these names stay importable from here for the publishers."""

from __future__ import annotations

from ..net.s3_client import (
    DEFAULT_JOBS,
    NOT_FOUND_CODES,
    S3Client,
    convert_error,
    error_code,
    make_client,
    s3_errors,
)

__all__ = ["DEFAULT_JOBS", "NOT_FOUND_CODES", "S3Client", "convert_error", "error_code",
           "make_client", "s3_errors"]
