"""The bucket's versions of the relay's blobs: the S3 side of a PostgreSQL backup.

Needs bucket versioning (GetBucketVersioning says "Enabled"): a deleted
blob then stays as a noncurrent version behind a delete marker until the
bucket's lifecycle rule expires it. The calls used: GetBucketVersioning,
ListObjectVersions, CopyObject / UploadPartCopy with a VersionId, and
DeleteObject with a VersionId (to remove a delete marker, and to clear a
drill's copies without leaving versions behind). SeaweedFS 4.48, the test
server, answers all of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .blobs import RELAY_ID_FILE
from .errors import ConfigError
from .restore_plan import Version
from .s3blobs import BLOB_FOLDER, S3BlobStore
from .s3faults import s3_call
from .s3url import MIN_PART_BYTES, S3Location

# CopyObject copies at most 5 GiB; a larger blob (max_transfer_bytes allows
# 8 GiB) is copied part by part with UploadPartCopy.
COPY_MAX = 5 * 1024 * 1024 * 1024
COPY_PART = 512 * 1024 * 1024


async def require_versioning(store: S3BlobStore) -> None:
    """Refuse a bucket without versioning: a dump alone cannot bring back a blob
    deleted or overwritten after it."""
    async with s3_call("say whether the bucket keeps versions"):
        status = (await store.client.get_bucket_versioning(Bucket=store.bucket)).get("Status")
    if status != "Enabled":
        raise ConfigError(
            f"the bucket {store.bucket} does not keep versions (versioning "
            f"{str(status or 'never enabled').lower()}): a database dump cannot bring back "
            "a blob deleted after it; enable versioning on the bucket, with a lifecycle "
            "rule keeping noncurrent versions longer than your backups "
            "(docs/operations.md, Backups and retention); no backup was written"
        )


def blob_folder(location: S3Location) -> str:
    return location.prefix + BLOB_FOLDER


async def _entries(store: S3BlobStore, bucket: str,
                   prefix: str) -> AsyncIterator[tuple[dict[str, Any], bool]]:
    """Every version and delete marker under ``prefix``: (entry, is a delete marker)."""
    pages = store.client.get_paginator("list_object_versions").paginate(
        Bucket=bucket, Prefix=prefix)
    async for page in pages:
        for kind, deleted in (("Versions", False), ("DeleteMarkers", True)):
            for v in page.get(kind, []):
                yield v, deleted


async def list_versions(store: S3BlobStore, location: S3Location) -> dict[str, list[Version]]:
    """Every version and delete marker of every blob under ``location``, by
    transfer id, newest first (the latest one first whatever its time)."""
    folder = blob_folder(location)
    found: dict[str, list[Version]] = {}
    async with s3_call("list the blobs' versions"):
        async for v, deleted in _entries(store, location.bucket, folder):
            key = v["Key"][len(folder):]
            if "/" in key or not key:
                continue
            found.setdefault(key, []).append(Version(
                str(v["VersionId"]), v["LastModified"].timestamp(),
                int(v.get("Size", 0)), deleted, bool(v["IsLatest"])))
    # Stable: versions listed in the same second keep S3's order.
    return {k: sorted(vs, key=lambda v: (not v.latest, -v.modified)) for k, vs in found.items()}


async def copy_version(store: S3BlobStore, source: S3Location, key: str, version: Version,
                       *, copy_max: int = COPY_MAX, part: int = COPY_PART) -> None:
    """Make ``version`` of ``source``'s blob ``key`` the current object ``key`` of ``store``."""
    src = {"Bucket": source.bucket, "Key": blob_folder(source) + key,
           "VersionId": version.version_id}
    dest = store.object_key(key)
    c: Any = store.client
    async with s3_call("copy the blob's version back"):
        if version.size <= copy_max:
            await c.copy_object(Bucket=store.bucket, Key=dest, CopySource=src)
            return
        part = max(part, MIN_PART_BYTES)
        upload = (await c.create_multipart_upload(Bucket=store.bucket, Key=dest))["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, version.size, part), start=1):
                end = min(start + part, version.size) - 1
                done = await c.upload_part_copy(
                    Bucket=store.bucket, Key=dest, UploadId=upload, PartNumber=number,
                    CopySource=src, CopySourceRange=f"bytes={start}-{end}")
                parts.append({"PartNumber": number, "ETag": done["CopyPartResult"]["ETag"]})
            await c.complete_multipart_upload(Bucket=store.bucket, Key=dest, UploadId=upload,
                                              MultipartUpload={"Parts": parts})
        except BaseException:
            # No half copy left as an upload: the next restore starts over.
            await c.abort_multipart_upload(Bucket=store.bucket, Key=dest, UploadId=upload)
            raise


async def unmark(store: S3BlobStore, key: str, markers: tuple[str, ...]) -> None:
    """Remove the delete markers hiding the blob's data version (in place)."""
    async with s3_call("remove the blob's delete marker"):
        for version_id in markers:
            await store.client.delete_object(
                Bucket=store.bucket, Key=store.object_key(key), VersionId=version_id)


async def purge(store: S3BlobStore) -> int:
    """Delete every version of every object the store keeps (its blobs and
    its relay-id marker), leaving no version behind: how a drill
    clears its copies. Never called on a relay's own blobs (server.pgrestore
    refuses)."""
    loc = store.location
    marker = loc.prefix + RELAY_ID_FILE
    n = 0
    c: Any = store.client
    async with s3_call("delete the drill's copies"):
        for prefix in (blob_folder(loc), marker):
            async for v, _ in _entries(store, loc.bucket, prefix):
                if prefix == marker and v["Key"] != marker:
                    continue
                await c.delete_object(Bucket=loc.bucket, Key=v["Key"],
                                      VersionId=v["VersionId"])
                n += 1
    return n
