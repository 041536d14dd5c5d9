"""The S3 blob store: ciphertext in an S3-compatible bucket (aiobotocore).

How the two blob states of server.blobs map onto S3:

* *partial* is a multipart upload on the blob's object key
  (``PREFIX/blobs/<id>``). Chunk number i of the upload (from 1) is part
  number i, so no state lives outside S3 and the database: any relay process
  finds the upload with ListMultipartUploads and its parts with ListParts.
  The partial blob's bytes are its parts 1, 2, ... in order up to the first
  part that is missing. A chunk written at offset o is the part after those
  ending at o, so a chunk sent again replaces its part (SeaweedFS keeps and
  lists every version of a part number: the newest counts). Parts S3 has
  acknowledged are durable, so there is no unsynced tail to re-hash after a
  power loss: ``check_chunks`` of a partial blob compares part sizes with the
  recorded chunk ends (S3 offers no way to read a part back before the
  upload completes).
* S3 cannot delete one part, so ``truncate_partial`` cuts nothing: the parts
  past the committed offset (a chunk S3 took whose commit then failed) stay
  until the sender sends that chunk again (it replaces them), the upload
  completes (CompleteMultipartUpload names only the parts up to the size, and
  S3 drops the rest) or gc aborts the upload.
* *complete* is the object itself: CompleteMultipartUpload, listing exactly
  the parts up to the committed size, makes it appear atomically; parts past
  it (a chunk that failed after S3 took it) are dropped by S3 there.

A chunk streams from the client's request into UploadPart with the length the
client declared, through a presigned URL and the relay's own HTTP session:
botocore signs the payload of every request over plain HTTP, which means
reading a body twice, so it would have to hold the whole part. The chunk's
hash is computed on the way, and its last piece is held back until the hash
matches: a chunk that does not match never reaches S3 whole, so S3 never
stores it as a part (a body shorter than its Content-Length is not a part).

Checksums: recent botocore sends CRC checksums with every upload and asks
for them on every download unless told "when_required"; several S3-compatible
servers refuse or mangle those requests, so both are set to "when_required".
The chunk's own BLAKE3/SHA-256, checked here, and ``verify``'s re-hash of
every complete blob are what guard the bytes.

Failures and timeouts (what an S3 error becomes, how long a stalled object
store may hold a request): server.s3faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError, NoCredentialsError
from yarl import URL

from sealdrop.crypto.protocol import ErrorCode

from .blobs import (
    IO_BLOCK,
    KEY_RE,
    RELAY_ID_FILE,
    RELAY_ID_RE,
    BlobInfo,
    Chunk,
    LocalBlobStore,
    check_key,
)
from .errors import ConfigError, InvalidInput, StoreUnavailable
from .s3faults import (
    DENIED,
    MISSING,
    NETWORK_ERRORS,
    PacedDeadline,
    code_in_xml,
    code_of,
    get_small,
    refused,
    s3_call,
    silent,
)
from .s3parts import ChunkHasher, Part, live_parts, part_ends, verified_body
from .s3url import CREDENTIALS_HINT, MAX_PARTS, MIN_PART_BYTES, S3Location

BLOB_FOLDER = "blobs/"
# A presigned part URL is used at once; an hour covers the slowest chunk the
# relay's body timeouts let through.
_PRESIGN_SECONDS = 3600
# How long the object store may take to accept a connection, or to answer
# (RelayConfig.s3_timeout_seconds): docs/operations.md, "Object storage (S3)".
DEFAULT_TIMEOUT = 20.0
# botocore's tries of one call (its "standard" retries: 5xx, throttling,
# timeouts, connection errors), with backoff; a chunk's UploadPart is tried
# once, its client sends it again.
_ATTEMPTS = 3


class S3BlobStore:
    """Blobs as objects ``PREFIX/blobs/<id>`` in one bucket; the relay-id marker
    is ``PREFIX/relay-id``."""

    min_chunk_bytes = MIN_PART_BYTES

    def __init__(self, location: S3Location, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.location = location
        self.timeout = timeout
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._http: aiohttp.ClientSession | None = None
        # key -> upload id: a hint that saves one listing per chunk; never
        # trusted (another relay process may have completed or aborted it).
        self._uploads: dict[str, str] = {}

    @property
    def where(self) -> str:
        return self.location.url

    @property
    def bucket(self) -> str:
        return self.location.bucket

    @property
    def client(self) -> Any:
        """The open botocore client: for server.s3versions (backup and restore)."""
        return self._client

    def object_key(self, key: str) -> str:
        return f"{self.location.prefix}{BLOB_FOLDER}{check_key(key)}"

    @property
    def _marker_key(self) -> str:
        return self.location.prefix + RELAY_ID_FILE

    # -- connection ------------------------------------------------------------

    async def open(self) -> None:
        loc = self.location
        config = AioConfig(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # Path-style for any custom endpoint: an address like 127.0.0.1 or
            # a private host name has no per-bucket DNS names.
            s3={"addressing_style": "path" if loc.endpoint else "auto"},
            # SigV4 presigned URLs sign the host alone; SigV2 ones (botocore's
            # default for presigning) also sign the Content-Type aiohttp adds.
            signature_version="s3v4",
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            retries={"max_attempts": _ATTEMPTS, "mode": "standard"},
        )
        self._client = await self._stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=loc.endpoint or None,
                region_name=loc.region or ("us-east-1" if loc.endpoint else None),
                config=config,
            )
        )
        # No read timeout: a part's request body arrives at the client's pace
        # (the relay's body timeouts bound that), and aiohttp would count it;
        # write_chunk bounds the object store's share (s3faults.PacedDeadline).
        self._http = await self._stack.enter_async_context(
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout))
        )
        try:
            await self._client.head_bucket(Bucket=loc.bucket)
        except NoCredentialsError as exc:
            await self.close()
            raise ConfigError(f"no S3 credentials for {self.where}: {CREDENTIALS_HINT}") from exc
        except ClientError as exc:
            await self.close()
            code = code_of(exc)
            at = loc.endpoint or "AWS"
            if code in MISSING or code == "NoSuchBucket":
                raise ConfigError(
                    f"the bucket {loc.bucket} does not exist at {at}; create it (with "
                    "versioning, docs/operations.md) or correct blobs in relay.toml"
                ) from exc
            if code in DENIED:
                raise ConfigError(
                    f"the S3 server at {at} refused the relay's credentials for the bucket "
                    f"{loc.bucket} ({code}); {CREDENTIALS_HINT}"
                ) from exc
            raise ConfigError(f"the S3 server at {at} refused access to {loc.bucket} ({code})"
                              ) from exc
        except NETWORK_ERRORS as exc:
            await self.close()
            raise ConfigError(
                f"cannot reach the S3 server at {loc.endpoint or 'AWS'}: check s3_endpoint"
            ) from exc

    async def prepare(self) -> None:
        pass  # a bucket has no folders to create

    async def close(self) -> None:
        self._client = None
        self._http = None
        await self._stack.aclose()

    # Nothing here cuts a blob (truncate_partial only reads): a stalled writer's
    # late part replaces a part whole, with the same bytes. No write lock, and
    # no second read of the lease per chunk.
    writes_can_cut = False

    def write_lock(self, key: str, *, wait: float) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def ready(self) -> None:
        async with s3_call("answer"):
            await self._client.head_bucket(Bucket=self.bucket)

    # -- relay id marker ---------------------------------------------------------

    async def read_relay_id(self) -> str | None:
        raw = await self._get_small(self._marker_key)
        if raw is None:
            return None
        try:
            text = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            text = ""
        if not RELAY_ID_RE.fullmatch(text):
            raise ConfigError(
                f"{self.where}/{RELAY_ID_FILE} does not hold a relay id; restore it from "
                "the bucket's versions or a backup"
            )
        return text

    async def write_relay_id(self, relay_id: str) -> None:
        if not RELAY_ID_RE.fullmatch(relay_id):
            raise ValueError("relay id must be 32 lowercase hex digits")
        async with s3_call("store the relay id"):
            # A PUT is atomic: readers see the old object or the new one.
            await self._client.put_object(
                Bucket=self.bucket, Key=self._marker_key, Body=(relay_id + "\n").encode()
            )

    async def _get_small(self, object_key: str) -> bytes | None:
        return await get_small(self._client, self.bucket, object_key, "read the relay id")

    # -- multipart state ---------------------------------------------------------

    async def _all_uploads(self, object_key: str) -> list[str]:
        """Upload ids on exactly this object key, oldest first."""
        found: list[tuple[Any, str]] = []
        pages = self._client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=object_key
        )
        async for page in pages:
            for u in page.get("Uploads", []):
                if u["Key"] == object_key:
                    found.append((u["Initiated"], u["UploadId"]))
        return [uid for _, uid in sorted(found)]

    async def _parts(self, object_key: str, upload_id: str) -> list[Part]:
        out: list[Part] = []
        pages = self._client.get_paginator("list_parts").paginate(
            Bucket=self.bucket, Key=object_key, UploadId=upload_id
        )
        async for page in pages:
            for p in page.get("Parts", []):
                out.append(Part(int(p["PartNumber"]), int(p["Size"]), str(p["ETag"]),
                                p["LastModified"].timestamp()))
        return out

    async def _upload(self, key: str) -> tuple[str, list[Part]] | None:
        """The multipart upload of ``key`` and its parts; None if there is none.
        Several (two relays racing on a first chunk): the oldest is the blob."""
        obj = self.object_key(key)
        hint = self._uploads.get(key)
        if hint is not None:
            try:
                return hint, await self._parts(obj, hint)
            except ClientError as exc:
                if code_of(exc) not in MISSING:
                    raise
                self._uploads.pop(key, None)
        ids = await self._all_uploads(obj)
        if not ids:
            return None
        self._uploads[key] = ids[0]
        return ids[0], await self._parts(obj, ids[0])

    # -- partial blobs -------------------------------------------------------------

    async def write_chunk(
        self,
        key: str,
        offset: int,
        source: AsyncIterator[bytes],
        *,
        length: int,
        digest: str,
    ) -> None:
        async with s3_call("store the chunk"):
            found = await self._upload(key)
            if found is None:
                if offset != 0:
                    raise StoreUnavailable("the partial upload is missing from the blob store")
                created = await self._client.create_multipart_upload(
                    Bucket=self.bucket, Key=self.object_key(key)
                )
                found = (created["UploadId"], [])
                self._uploads[key] = found[0]
            upload_id, parts = found
            live = live_parts(parts)
            ends = [0, *part_ends(live)]
            if offset not in ends:
                raise StoreUnavailable(
                    "the partial upload in the blob store is shorter than its committed offset"
                )
            number = ends.index(offset) + 1
            if number > MAX_PARTS:
                raise InvalidInput(
                    f"an upload to this relay may have at most {MAX_PARTS} chunks; "
                    "send larger chunks",
                    code=ErrorCode.CHUNK_TOO_SMALL,
                )
            url = await self._client.generate_presigned_url(
                "upload_part",
                Params={"Bucket": self.bucket, "Key": self.object_key(key),
                        "UploadId": upload_id, "PartNumber": number},
                ExpiresIn=_PRESIGN_SECONDS,
            )
        failure: list[Exception] = []
        sent = [0]
        body = verified_body(source, length=length, digest=digest, sent=sent, failure=failure)
        if self._http is None:
            raise StoreUnavailable("the blob store is not open")
        try:
            async with PacedDeadline(self.timeout) as deadline:
                # encoded=True: the signature covers the URL exactly as signed.
                async with self._http.put(
                    URL(url, encoded=True), data=deadline.pace(body),
                    headers={"Content-Length": str(length)},
                ) as resp:
                    if resp.status != 200:
                        text = (await resp.text())[:2000]
                        raise refused("store the chunk", code_in_xml(resp.status, text))
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            if failure:  # the client's body failed first: that is the error
                raise failure[0] from None
            # S3 may have stored the part before the answer was lost: it holds
            # the verified chunk, and the chunk sent again replaces it.
            raise silent("store the chunk") from exc
        if failure:
            raise failure[0]

    async def partial_digest(self, key: str, start: int, end: int, algorithm: str) -> str | None:
        # S3 serves no part back before the upload completes: a re-sent chunk
        # must match the recorded chunk boundaries (server.transfers).
        return None

    async def check_chunks(
        self, key: str, chunks: Sequence[Chunk], *, complete: bool
    ) -> tuple[int, int | None]:
        if complete:
            return await self._check_complete(key, chunks)
        async with s3_call("list the upload's parts"):
            found = await self._upload(key)
        if found is None:
            return 0, None
        ends = part_ends(live_parts(found[1]))
        good = 0
        for i, (end, _) in enumerate(chunks):
            if i >= len(ends) or ends[i] != end:
                break
            good += 1
        return good, ends[-1] if ends else 0

    async def _check_complete(self, key: str, chunks: Sequence[Chunk]) -> tuple[int, int | None]:
        async with s3_call("read the blob"):
            try:
                if not chunks:  # only the size: no need for the bytes
                    head = await self._client.head_object(
                        Bucket=self.bucket, Key=self.object_key(key))
                    return 0, int(head["ContentLength"])
                resp = await self._client.get_object(Bucket=self.bucket, Key=self.object_key(key))
            except ClientError as exc:
                if code_of(exc) in MISSING:
                    return 0, None
                raise
            size = int(resp["ContentLength"])
            hasher = ChunkHasher(chunks)
            async with resp["Body"] as stream:
                async for block in stream.iter_chunks(IO_BLOCK):
                    if not hasher.update(block):
                        break
            return hasher.good, size

    async def truncate_partial(self, key: str, size: int) -> int:
        # Cuts nothing (see the module's docstring): says how long the blob is.
        async with s3_call("list the upload's parts"):
            found = await self._upload(key)
        if found is None:
            return 0
        ends = part_ends(live_parts(found[1]))
        return ends[-1] if ends else 0

    async def finalize(self, key: str, size: int) -> None:
        async with s3_call("complete the upload"):
            found = await self._upload(key)
            if found is None:
                raise StoreUnavailable("the uploaded blob is missing from the blob store")
            upload_id, parts = found
            live = live_parts(parts)
            ends = part_ends(live)
            if size not in ends:
                raise StoreUnavailable("the uploaded blob is missing from the blob store")
            chosen = live[: ends.index(size) + 1]
            await self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=self.object_key(key), UploadId=upload_id,
                MultipartUpload={"Parts": [
                    {"PartNumber": p.number, "ETag": p.etag} for p in chosen
                ]},
            )
            self._uploads.pop(key, None)

    # -- complete blobs --------------------------------------------------------------

    async def read(self, key: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        if end <= start:
            return
        async with s3_call("read the blob"):
            try:
                resp = await self._client.get_object(
                    Bucket=self.bucket, Key=self.object_key(key), Range=f"bytes={start}-{end - 1}"
                )
            except ClientError as exc:
                if code_of(exc) in MISSING or code_of(exc) == "InvalidRange":
                    raise StoreUnavailable("the blob is missing from the blob store") from exc
                raise
            left = end - start
            async with resp["Body"] as stream:
                async for block in stream.iter_chunks(IO_BLOCK):
                    block = block[:left]
                    left -= len(block)
                    yield block
                    if not left:
                        break
            if left:
                raise StoreUnavailable("the blob is shorter than its recorded size")

    async def open_file(self, key: str, end: int) -> BinaryIO | None:
        return None  # no local file: the handler serves ``read``

    async def delete(self, key: str) -> None:
        await self.discard_partial(key)
        async with s3_call("delete the blob"):
            await self._client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    async def discard_partial(self, key: str) -> None:
        obj = self.object_key(key)
        async with s3_call("abort the partial upload"):
            for upload_id in await self._all_uploads(obj):
                try:
                    await self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=obj, UploadId=upload_id
                    )
                except ClientError as exc:
                    if code_of(exc) not in MISSING:
                        raise
        self._uploads.pop(key, None)

    async def list(self) -> list[BlobInfo]:
        folder = self.location.prefix + BLOB_FOLDER
        out: list[BlobInfo] = []
        async with s3_call("list the blobs"):
            async for page in self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=folder
            ):
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(folder):]
                    if KEY_RE.fullmatch(name):
                        out.append(BlobInfo(name, True, int(obj["Size"])))
            partial: dict[str, str] = {}
            async for page in self._client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=folder
            ):
                for u in sorted(page.get("Uploads", []), key=lambda u: u["Initiated"]):
                    name = u["Key"][len(folder):]
                    if KEY_RE.fullmatch(name):
                        partial.setdefault(name, u["UploadId"])
            for name, upload_id in sorted(partial.items()):
                ends = part_ends(live_parts(await self._parts(folder + name, upload_id)))
                out.append(BlobInfo(name, False, ends[-1] if ends else 0))
        return out

    async def backup_blob(self, key: str, dest: Path, *, complete: bool, length: int) -> bool:
        """A complete blob is downloaded whole. An upload in progress cannot be
        (S3 serves no part before completion): unless it was completed since the
        snapshot, it is left out, and its row with it."""
        copy = LocalBlobStore(dest)
        await copy.prepare()
        if not complete and length == 0:
            return True
        target = copy.complete_path(key) if complete else copy.partial_path(key)
        want = None if complete else length
        async with s3_call("read the blob for the backup"):
            try:
                resp = await self._client.get_object(Bucket=self.bucket, Key=self.object_key(key))
            except ClientError as exc:
                if code_of(exc) in MISSING:
                    return False
                raise
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            written = 0
            with target.open("wb") as f:
                async with resp["Body"] as stream:
                    async for block in stream.iter_chunks(IO_BLOCK):
                        if want is not None:
                            block = block[: want - written]
                        await asyncio.to_thread(f.write, block)
                        written += len(block)
                        if want is not None and written >= want:
                            break
                await asyncio.to_thread(os.fsync, f.fileno())
        if want is not None and written < want:
            target.unlink(missing_ok=True)
            return False
        return True
