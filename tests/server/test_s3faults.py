"""server/s3faults.py on its own: S3's error answers reduced to their code, and
the deadline on the object store's side of a streamed body (only the object
store's share counts, never the client's pauses). The same behaviour against
a real relay and SeaweedFS: tests/server/test_s3_relay_faults.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from sealdrop.server.blobstores import blob_store
from sealdrop.server.config import load_config
from sealdrop.server.errors import StoreUnavailable
from sealdrop.server.s3blobs import S3BlobStore
from sealdrop.server.s3faults import PacedDeadline, code_in_xml, s3_call

SECONDS = 0.1


async def _pieces(n: int, pause: float = 0.0) -> AsyncIterator[bytes]:
    for i in range(n):
        if pause:
            await asyncio.sleep(pause)  # the client, slower than the deadline
        yield bytes([i]) * 10


def test_the_clients_pauses_do_not_count() -> None:
    async def run() -> list[bytes]:
        got = []
        async with PacedDeadline(SECONDS) as deadline:
            async for piece in deadline.pace(_pieces(3, pause=2.5 * SECONDS)):
                got.append(piece)
        return got

    assert len(asyncio.run(run())) == 3


@pytest.mark.parametrize("where", ["mid_body", "answer"])
def test_an_object_store_that_stops_taking_or_answering_times_out(where: str) -> None:
    state = {"body_sent": False}

    async def run() -> None:
        taken = 0
        async with PacedDeadline(SECONDS) as deadline:
            async for _ in deadline.pace(_pieces(3)):
                taken += 1
                if where == "mid_body" and taken == 2:
                    await asyncio.sleep(30)  # holds the piece: never takes the next
            state["body_sent"] = True
            await asyncio.sleep(30)  # the whole body sent; no answer comes

    with pytest.raises(TimeoutError):
        asyncio.run(run())
    # mid_body: cut while holding the piece, not only once the answer is late
    assert state["body_sent"] is (where == "answer")


def test_a_late_pull_after_the_block_is_harmless() -> None:
    # The HTTP client's writer task may pull the body after the request failed.
    async def run() -> list[bytes]:
        deadline = PacedDeadline(SECONDS)
        body = deadline.pace(_pieces(2))
        async with deadline:
            first = await anext(body)
        return [first, *[p async for p in body]]

    assert len(asyncio.run(run())) == 2


@pytest.mark.parametrize("status,text,code", [
    (503, "<Error><Code>SlowDown</Code><Resource>/bucket/r/blobs/x</Resource></Error>",
     "SlowDown"),
    (500, "<Error><Code>Internal Error</Code></Error>", "500"),  # not a code: the status
    (502, "<html>bad gateway at s3.internal</html>", "502"),
])
def test_an_error_answer_is_reduced_to_its_code(status: int, text: str, code: str) -> None:
    assert code_in_xml(status, text) == code


def test_s3_failures_become_store_unavailable_without_the_request() -> None:
    async def refused() -> None:
        async with s3_call("complete the upload"):
            raise ClientError({"Error": {"Code": "InternalError",
                                         "Message": "at bucket sealdrop-blobs"}},
                              "CompleteMultipartUpload")

    async def silent() -> None:
        async with s3_call("store the chunk"):
            raise EndpointConnectionError(endpoint_url="http://s3.internal:8333/bucket")

    with pytest.raises(StoreUnavailable) as e:
        asyncio.run(refused())
    assert str(e.value) == (
        "the object store refused to complete the upload (InternalError); try again later")
    with pytest.raises(StoreUnavailable) as e:
        asyncio.run(silent())
    assert str(e.value) == "the object store did not answer to store the chunk; try again later"
    assert e.value.code.value == "store_unavailable"


def test_s3_timeout_seconds_reaches_the_store(tmp_path: Path) -> None:
    env = {"SEALDROP_RELAY_BLOBS": "s3://sealdrop-blobs/r"}
    default = blob_store(load_config(tmp_path, env=env))
    assert isinstance(default, S3BlobStore) and default.timeout == 20.0
    env["SEALDROP_RELAY_S3_TIMEOUT_SECONDS"] = "7"
    chosen = blob_store(load_config(tmp_path, env=env))
    assert isinstance(chosen, S3BlobStore) and chosen.timeout == 7.0
