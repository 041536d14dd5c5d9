"""Where an S3 blob store lives: ``blobs = "s3://BUCKET/PREFIX"`` parsed and checked.

Pure: no I/O, no environment. The endpoint and region come from their own
settings (``s3_endpoint``, ``s3_region``; ``SEALDROP_RELAY_S3_ENDPOINT`` ...),
never from the URL's query, so one URL names one bucket whatever server holds it.

Credentials are never part of the configuration: relay.toml and the relay's
environment file are read by every operator command and copied into backups,
and a URL ends up in error messages and process listings. They come from
botocore's default chain only (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE, an instance role). A URL that
carries any is refused with a sentence saying so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import ConfigError

CREDENTIALS_HINT = (
    "S3 credentials come only from the relay's environment (AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, or AWS_SHARED_CREDENTIALS_FILE and AWS_PROFILE), never "
    "from relay.toml or the command line"
)
# S3's smallest multipart part (every part but the last): the relay's smallest
# chunk other than a transfer's last with S3 blobs.
MIN_PART_BYTES = 5 * 1024 * 1024
# S3's largest part number.
MAX_PARTS = 10_000
# S3's bucket naming rules (lowercase, digits, dots, hyphens; 3-63 characters).
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# A prefix is path segments of plain characters: no "..", no empty segment.
_SEGMENT_RE = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    prefix: str  # "" or "seg/.../seg/" (always ending with a slash)
    endpoint: str  # "" for AWS itself (botocore picks the regional endpoint)
    region: str  # "" lets botocore decide (us-east-1 for a custom endpoint)

    @property
    def url(self) -> str:
        """``s3://bucket/prefix``: how logs and errors name the store."""
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


def is_s3(blobs: str) -> bool:
    return blobs.startswith("s3://")


def parse(blobs: str, *, endpoint: str = "", region: str = "") -> S3Location:
    """The ``blobs`` setting as a bucket and prefix; ``ConfigError`` naming what is wrong."""
    if not is_s3(blobs):
        raise ConfigError(
            'configuration: blobs must be empty (files in the data folder) or '
            '"s3://BUCKET/PREFIX"'
        )
    parts = urlsplit(blobs)
    if "@" in parts.netloc or parts.password is not None or parts.username is not None:
        raise ConfigError(f"configuration: blobs must not hold credentials; {CREDENTIALS_HINT}")
    if parts.query or parts.fragment:
        raise ConfigError(
            "configuration: blobs takes no ?query or #fragment; set s3_endpoint and "
            "s3_region instead"
        )
    bucket = parts.netloc
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise ConfigError(
            f"configuration: blobs: {bucket!r} is not an S3 bucket name "
            "(3-63 lowercase letters, digits, dots and hyphens)"
        )
    segments = [s for s in parts.path.split("/") if s]
    for seg in segments:
        if not _SEGMENT_RE.fullmatch(seg) or seg in (".", ".."):
            raise ConfigError(
                f"configuration: blobs: the prefix segment {seg!r} may hold only letters, "
                "digits, dots, hyphens and underscores"
            )
    prefix = "".join(s + "/" for s in segments)
    return S3Location(bucket=bucket, prefix=prefix, endpoint=_endpoint(endpoint), region=region)


def _endpoint(endpoint: str) -> str:
    if not endpoint:
        return ""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            "configuration: s3_endpoint must be an http:// or https:// URL, "
            "e.g. https://s3.example.net"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"configuration: s3_endpoint must not hold credentials; {CREDENTIALS_HINT}"
        )
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        raise ConfigError("configuration: s3_endpoint is a scheme, host and port only")
    return f"{parts.scheme}://{parts.netloc}"
