"""What an S3 failure becomes in the relay: a domain error, and a deadline on a
stalled object store.

Every S3 refusal (an error answer: 500 InternalError, 503 SlowDown, 403 ...)
and every network failure (refused connection, reset, timeout) is a
``StoreUnavailable``: the HTTP edge answers 503 ``store_unavailable``, which
clients retry, and nothing is committed. The message says what the relay was
doing and, for a refusal, S3's error code (``SlowDown``), which helps the
operator and tells a client nothing about the bucket: never the endpoint,
the bucket, a key, a presigned URL or a credential.

A stalled object store (a process stopped, a network black hole, a server
that takes a body and never answers) must not hold a request forever.
botocore's calls have ``connect_timeout`` and ``read_timeout``; a chunk's
UploadPart goes through the relay's own HTTP session, where a read timeout
would also count the pauses of the client sending the chunk, so it gets
``PacedDeadline`` instead: the object store's own share of the time is
bounded, the client's is bounded by the relay's body timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import Any

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError

from .errors import StoreUnavailable

# S3 error codes of "not there" and of "not allowed".
MISSING = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchUpload"})
DENIED = frozenset({"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"})
# Network failures, as botocore, aiohttp and the socket layer raise them.
NETWORK_ERRORS = (TimeoutError, BotoCoreError, aiohttp.ClientError, OSError)


def code_of(exc: ClientError) -> str:
    """S3's error code of a refusal (``SlowDown``), or "error"."""
    return str(exc.response.get("Error", {}).get("Code", "")) or "error"


def code_in_xml(status: int, text: str) -> str:
    """S3's error code from an error answer's XML body, else the HTTP status.
    Only the code is kept: the body also names the bucket and the key."""
    if "<Code>" in text:
        code = text.split("<Code>", 1)[1].split("<", 1)[0].strip()
        if code.isalnum():
            return code
    return str(status)


def refused(what: str, code: str) -> StoreUnavailable:
    return StoreUnavailable(f"the object store refused to {what} ({code}); try again later")


def silent(what: str) -> StoreUnavailable:
    return StoreUnavailable(f"the object store did not answer to {what}; try again later")


@contextlib.asynccontextmanager
async def s3_call(what: str) -> AsyncIterator[None]:
    """S3 and network failures inside the block as ``StoreUnavailable``,
    chained to the original (the relay's log names its type)."""
    try:
        yield
    except ClientError as exc:
        raise refused(what, code_of(exc)) from exc
    except NETWORK_ERRORS as exc:
        raise silent(what) from exc


class PacedDeadline:
    """A deadline on the object store's side of a streamed request body.

    ``pace(body)`` passes the body through: while the HTTP client holds a piece
    (writing it to the object store), and from the last piece until the
    answer, the deadline runs ``seconds``; while the body waits for its own
    source (the client's upload), it is off. Used inside ``async with
    deadline:``, which raises ``TimeoutError`` when it fires.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._timeout: asyncio.Timeout | None = None

    async def __aenter__(self) -> PacedDeadline:
        self._timeout = asyncio.timeout(None)
        await self._timeout.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        timeout, self._timeout = self._timeout, None
        assert timeout is not None
        # Turns its own cancellation into TimeoutError, as asyncio.timeout does.
        await timeout.__aexit__(exc_type, exc, tb)

    def _set(self, running: bool) -> None:
        # The body is pulled by the HTTP client's writer task, which may run
        # on after the deadline fired or the block ended: then no-op.
        if self._timeout is None or self._timeout.expired():
            return
        loop = asyncio.get_running_loop()
        self._timeout.reschedule(loop.time() + self.seconds if running else None)

    async def pace(self, body: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
        async for piece in body:
            self._set(True)
            yield piece
            self._set(False)
        self._set(True)  # the answer to the whole body


async def get_small(client: Any, bucket: str, key: str, what: str) -> bytes | None:
    """A small object's bytes, or None when it does not exist; any other
    failure as ``StoreUnavailable`` naming ``what`` (never the key)."""
    async with s3_call(what):
        try:
            resp = await client.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if code_of(exc) in MISSING:
                return None
            raise
        async with resp["Body"] as body:
            data: bytes = await body.read()
    return data
