"""The S3 blob store's pure parts (server/s3parts.py): which parts make up a
partial blob (SeaweedFS lists every version of a part number), a chunk body
checked on its way to S3, a blob hashed along its chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sealdrop.crypto import chunkhash
from sealdrop.crypto.protocol import ErrorCode
from sealdrop.server.errors import InvalidInput
from sealdrop.server.s3parts import ChunkHasher, Part, live_parts, part_ends, verified_body


def tag(data: bytes, algorithm: str = "blake3") -> str:
    return chunkhash.tag(algorithm, chunkhash.hex_digest(algorithm, data))


def test_live_parts_stop_at_the_first_gap() -> None:
    parts = [Part(1, 10, "a"), Part(2, 20, "b"), Part(4, 5, "d")]
    assert [p.number for p in live_parts(parts)] == [1, 2]
    assert part_ends(live_parts(parts)) == [10, 30]
    assert live_parts([Part(2, 10, "b")]) == [] and part_ends([]) == []


def test_the_newest_version_of_a_part_counts() -> None:
    # SeaweedFS keeps each upload of a part number and lists them all
    parts = [Part(1, 10, "a"), Part(2, 20, "new", 200.0), Part(2, 7, "old", 100.0)]
    assert [p.etag for p in live_parts(parts)] == ["a", "new"]
    # equal times: the one listed last
    same = [Part(1, 10, "first", 5.0), Part(1, 10, "second", 5.0)]
    assert [p.etag for p in live_parts(same)] == ["second"]


async def _drain(body: AsyncIterator[bytes]) -> bytes:
    return b"".join([p async for p in body])


async def _pieces(*pieces: bytes) -> AsyncIterator[bytes]:
    for p in pieces:
        yield p


async def test_a_matching_body_passes_whole() -> None:
    sent, failure = [0], []  # type: ignore[var-annotated]
    out = await _drain(verified_body(_pieces(b"abc", b"def"), length=6, digest=tag(b"abcdef"),
                                     sent=sent, failure=failure))
    assert out == b"abcdef" and sent == [6] and failure == []


@pytest.mark.parametrize("pieces, length, code", [
    ((b"abc", b"deX"), 6, ErrorCode.CHECKSUM_MISMATCH),
    ((b"abc",), 6, ErrorCode.INCOMPLETE_CHUNK),
    ((b"abc", b"defg"), 6, ErrorCode.BAD_LENGTH),
])
async def test_a_bad_body_never_yields_its_last_piece(
    pieces: tuple[bytes, ...], length: int, code: ErrorCode
) -> None:
    sent, failure = [0], []  # type: ignore[var-annotated]
    got: list[bytes] = []
    with pytest.raises(InvalidInput) as e:
        async for p in verified_body(_pieces(*pieces), length=length, digest=tag(b"abcdef"),
                                     sent=sent, failure=failure):
            got.append(p)
    assert e.value.code == code and failure == [e.value]
    assert sum(map(len, got)) < length  # S3 never gets a whole body


def test_chunk_hasher_across_blocks() -> None:
    data = bytes(range(256)) * 40
    chunks = [(1000, tag(data[:1000])), (3000, tag(data[1000:3000], "sha256")),
              (len(data), tag(data[3000:]))]
    h = ChunkHasher(chunks)
    for i in range(0, len(data), 777):
        h.update(data[i:i + 777])
    assert h.good == 3
    bad = bytearray(data)
    bad[2000] ^= 1
    h = ChunkHasher(chunks)
    assert h.update(bytes(bad[:1500])) is True
    assert h.update(bytes(bad[1500:])) is False and h.good == 1
