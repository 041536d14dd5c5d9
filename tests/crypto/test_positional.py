"""write_positional (parallel positional reads) must produce exactly what write() does."""

from __future__ import annotations

import io
import os

import pytest

from sealdrop.crypto import age
from sealdrop.crypto.age.stream import CHUNK_SIZE

SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE,
         5 * CHUNK_SIZE + 3, 7 * CHUNK_SIZE,
         # several four-chunk reads per worker, the last one short
         19 * CHUNK_SIZE + 17]


class BytesRegion:
    """A PositionalReader over bytes that returns short reads, like a real pread may."""

    def __init__(self, data: bytes, *, max_read: int = 10_000) -> None:
        self.data = data
        self.max_read = max_read
        self.calls = 0

    def pread_into(self, buf: memoryview, offset: int) -> int:
        self.calls += 1
        piece = self.data[offset : offset + min(len(buf), self.max_read)]
        buf[: len(piece)] = piece
        return len(piece)


def _fixed_rand(seed: bytes):  # type: ignore[no-untyped-def]
    state = [seed]

    def rand(n: int) -> bytes:
        out = b""
        while len(out) < n:
            state[0] = __import__("hashlib").sha256(state[0]).digest()
            out += state[0]
        return out[:n]

    return rand


def _encrypt(data: bytes, *, positional: bool, workers: int, batch: int) -> bytes:
    ident = age.X25519Identity(bytes(range(32)))
    out = io.BytesIO()
    with age.Encryptor(out, [ident.recipient()], rand=_fixed_rand(b"s"), workers=workers,
                       batch_chunks=batch) as enc:
        if positional:
            enc.write_positional(BytesRegion(data), len(data))
        else:
            enc.write(data)
    return out.getvalue()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("workers", "batch"), [(1, 2), (2, 2), (2, 3), (2, 64)])
def test_positional_equals_sequential(size: int, workers: int, batch: int) -> None:
    data = os.urandom(size)
    expected = _encrypt(data, positional=False, workers=1, batch=64)
    assert _encrypt(data, positional=True, workers=workers, batch=batch) == expected
    plain = io.BytesIO()
    age.decrypt(io.BytesIO(expected), plain, [age.X25519Identity(bytes(range(32)))])
    assert plain.getvalue() == data


def test_source_shorter_than_announced_is_an_error_not_a_short_file() -> None:
    data = os.urandom(3 * CHUNK_SIZE)
    out = io.BytesIO()
    enc = age.Encryptor(out, [age.X25519Identity(bytes(range(32))).recipient()], batch_chunks=2)
    with pytest.raises(EOFError):
        enc.write_positional(BytesRegion(data[: 2 * CHUNK_SIZE + 5]), len(data))
        enc.close()


def test_positional_must_be_the_only_write() -> None:
    enc = age.Encryptor(io.BytesIO(), [age.X25519Identity(bytes(range(32))).recipient()])
    enc.write(b"x")
    with pytest.raises(ValueError):
        enc.write_positional(BytesRegion(b"y"), 1)
    enc2 = age.Encryptor(io.BytesIO(), [age.X25519Identity(bytes(range(32))).recipient()])
    enc2.write_positional(BytesRegion(b"y"), 1)
    with pytest.raises(ValueError):
        enc2.write(b"more")
    enc2.close()
