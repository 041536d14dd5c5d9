"""The bucket's versions at the S3 edge (server.s3versions) on a real SeaweedFS:
versioning refused when off; a deleted blob's versions listed newest first;
a delete marker removed; a version copied part by part (UploadPartCopy, as
for a blob above CopyObject's 5 GiB, here with a tiny threshold) byte-identical
to the original; and a drill's prefix purged of every version while the live
prefix beside it is untouched."""

from __future__ import annotations

import asyncio
import os

import pytest

from sealdrop.server import s3versions
from sealdrop.server.errors import ConfigError
from sealdrop.server.s3blobs import S3BlobStore
from sealdrop.server.s3url import parse
from tests.s3kit import Seaweed, s3_bucket, seaweed  # noqa: F401 - fixtures

MiB = 1024 * 1024


def test_versions_unmark_copy_and_purge(seaweed: Seaweed, s3_bucket: str) -> None:  # noqa: F811
    c = seaweed.client()
    live = parse(f"s3://{s3_bucket}/live", endpoint=seaweed.endpoint)
    drill = parse(f"s3://{s3_bucket}/drill", endpoint=seaweed.endpoint)
    body = os.urandom(11 * MiB + 7)
    tid, other = "a" * 32, "b" * 32

    async def run() -> None:
        store = S3BlobStore(live)
        await store.open()
        try:
            with pytest.raises(ConfigError, match="does not keep versions"):
                await s3versions.require_versioning(store)
            c.put_bucket_versioning(Bucket=s3_bucket,
                                    VersioningConfiguration={"Status": "Enabled"})
            await s3versions.require_versioning(store)
            c.put_object(Bucket=s3_bucket, Key=f"live/blobs/{tid}", Body=body)
            c.put_object(Bucket=s3_bucket, Key=f"live/blobs/{other}", Body=b"x" * 10)
            c.delete_object(Bucket=s3_bucket, Key=f"live/blobs/{tid}")
            c.put_object(Bucket=s3_bucket, Key="live/blobs/not/a/blob", Body=b"?")

            found = await s3versions.list_versions(store, live)
            assert sorted(found) == [tid, other]  # keys with a slash are not blobs
            marker, data = found[tid]
            assert marker.deleted and marker.latest and not data.deleted
            assert data.size == len(body) and not data.latest

            await s3versions.unmark(store, tid, (marker.version_id,))
            got = c.get_object(Bucket=s3_bucket, Key=f"live/blobs/{tid}")["Body"].read()
            assert got == body

            target = S3BlobStore(drill)
            await target.open()
            try:
                await s3versions.copy_version(target, live, tid, data,
                                              copy_max=MiB, part=5 * MiB)
                copied = c.get_object(Bucket=s3_bucket, Key=f"drill/blobs/{tid}")
                assert copied["Body"].read() == body
                assert copied["ETag"].strip('"').endswith("-3")  # three copied parts
                await target.write_relay_id("c" * 32)
                assert await s3versions.purge(target) == 2
                left = c.list_object_versions(Bucket=s3_bucket, Prefix="drill/")
                assert left.get("Versions", []) == [] and left.get("DeleteMarkers", []) == []
                assert seaweed.uploads(s3_bucket) == []
            finally:
                await target.close()
            assert seaweed.objects(s3_bucket) == sorted(
                [f"live/blobs/{tid}", f"live/blobs/{other}", "live/blobs/not/a/blob"])
        finally:
            await store.close()

    asyncio.run(run())
