"""The chunk uploader lends its buffers to the encryptor, which seals into them in place.

The ciphertext that reaches the relay must be byte for byte what the same
encryptor writes to a plain file, whatever the chunk size (below, at and
above the encryptor's batch, not a multiple of the 64 KiB STREAM chunk), and
a resumed upload must still skip and check the chunks the relay holds.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

import pytest

from sealdrop.client.errors import ClientError, FilesChangedError
from sealdrop.client.send.upload import ChunkUploader
from sealdrop.crypto import age, chunkhash
from sealdrop.crypto.age.stream import CHUNK_SIZE, ENC_CHUNK_SIZE, StreamWriter

KEY = bytes(range(32))


class FakeRelay:
    """Records the chunks PATCHed to it (one shared log for the clones)."""

    def __init__(self, log: dict[int, bytes] | None = None,
                 lock: threading.Lock | None = None) -> None:
        self.log = {} if log is None else log
        self.lock = lock or threading.Lock()

    def clone(self) -> FakeRelay:
        return FakeRelay(self.log, self.lock)

    def close(self) -> None:
        pass

    def upload_chunk(self, relay_id: str, offset: int, data: memoryview, *,
                     hex_digest: str, algorithm: str) -> int:
        assert chunkhash.hex_digest(algorithm, data) == hex_digest
        with self.lock:
            self.log[offset] = bytes(data)
        return offset + len(data)


class Journal:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def append(self, digest: str) -> None:
        self.lines.append(digest)


def _state(tag: int) -> age.ResumeState:
    return age.ResumeState(header=b"age-encryption.org/v1\n-> X25519 test\n--- mac\n",
                           file_key=bytes([tag]) * 16, nonce=bytes([tag + 1]) * 16)


def _encrypt(plain: bytes, dst: object, batch_chunks: int = 32) -> None:
    with age.Encryptor(dst, [], resume=_state(7), batch_chunks=batch_chunks) as enc:  # type: ignore[arg-type]
        enc.write_from(io.BytesIO(plain))


def _upload(plain: bytes, chunk: int, *, committed: int = 0, known: list[str] | None = None,
            batch_chunks: int = 32) -> tuple[ChunkUploader, FakeRelay, Journal, bytes]:
    reference = io.BytesIO()
    _encrypt(plain, reference, batch_chunks)
    expected = reference.getvalue()
    relay, journal = FakeRelay(), Journal()
    up = ChunkUploader(relay, "t", size=len(expected), chunk_size=chunk, committed=committed,  # type: ignore[arg-type]
                       known_hashes=known or [], journal=journal)  # type: ignore[arg-type]
    try:
        _encrypt(plain, up, batch_chunks)
        up.close()
    except BaseException:
        up.abort()
        raise
    return up, relay, journal, expected


@pytest.mark.parametrize("chunk", [
    64 * 1024,                  # the smallest: one batch spans many upload buffers
    100_000,                    # not a multiple of anything
    3 * ENC_CHUNK_SIZE,         # AEAD chunks end exactly on chunk ends (after the header)
    2 * 1024 * 1024 + 7,        # about one batch
    12 * 1024 * 1024,           # the default
])
@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, 5 * 1024 * 1024 + 123])
def test_lent_chunks_carry_exactly_the_ciphertext(chunk: int, size: int) -> None:
    plain = os.urandom(size)
    up, relay, journal, expected = _upload(plain, chunk)
    offsets = sorted(relay.log)
    assert offsets == list(range(0, len(expected), chunk))
    assert b"".join(relay.log[o] for o in offsets) == expected
    assert journal.lines == [hashlib.sha256(relay.log[o]).hexdigest() for o in offsets]
    assert up.sent == len(expected)


def test_resumed_upload_skips_and_checks_lent_chunks() -> None:
    plain = os.urandom(3 * 1024 * 1024)
    chunk = 256 * 1024
    _, first, _, expected = _upload(plain, chunk)
    hashes = [hashlib.sha256(first.log[o]).hexdigest() for o in sorted(first.log)]
    up, relay, _, _ = _upload(plain, chunk, committed=4 * chunk, known=hashes[:4])
    assert sorted(relay.log) == list(range(4 * chunk, len(expected), chunk))
    assert up.sent == len(expected) - 4 * chunk
    bad = hashes[:4]
    bad[2] = "0" * 64
    with pytest.raises(FilesChangedError):
        _upload(plain, chunk, committed=4 * chunk, known=bad)


def test_more_ciphertext_than_announced_is_refused_while_lending() -> None:
    relay, journal = FakeRelay(), Journal()
    up = ChunkUploader(relay, "t", size=1000, chunk_size=64 * 1024, committed=0,  # type: ignore[arg-type]
                       known_hashes=[], journal=journal)  # type: ignore[arg-type]
    try:
        with pytest.raises(ClientError, match="larger than the 1000 bytes announced"):
            _encrypt(os.urandom(5000), up)
    finally:
        up.abort()
    assert relay.log == {}


def test_writes_and_close_while_reserved_are_refused(tmp_path: Path) -> None:
    relay, journal = FakeRelay(), Journal()
    up = ChunkUploader(relay, "t", size=1 << 20, chunk_size=64 * 1024, committed=0,  # type: ignore[arg-type]
                       known_hashes=[], journal=journal)  # type: ignore[arg-type]
    try:
        views = up.reserve(100, True)
        assert views is not None and sum(len(v) for v in views) == 100
        with pytest.raises(ValueError):
            up.write(b"x")
        with pytest.raises(ValueError):
            up.close()
        with pytest.raises(ValueError):
            up.commit(101)
        up.commit(100)
        up.write(b"y" * 10)
    finally:
        up.abort()


def test_stream_writer_without_a_lender_still_writes() -> None:
    """A plain file destination: the writer's own buffers, the same bytes."""
    plain = os.urandom(300_000)
    out = io.BytesIO()
    with StreamWriter(KEY, out, batch_chunks=2) as w:
        w.write(plain)
    lent = FakeLender()
    with StreamWriter(KEY, lent, batch_chunks=2) as w:
        w.write(plain)
    assert bytes(lent.data) == out.getvalue()
    assert lent.waits > 0  # it was asked to lend without waiting, and said no


def test_positional_writes_into_a_lender_too() -> None:
    plain = os.urandom(11 * CHUNK_SIZE + 99)
    out = io.BytesIO()
    with StreamWriter(KEY, out, batch_chunks=3) as w:
        w.write(plain)
    lent = FakeLender()
    with StreamWriter(KEY, lent, batch_chunks=3) as w:
        w.write_positional(Region(plain), len(plain))
    assert bytes(lent.data) == out.getvalue()


class Region:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def pread_into(self, buf: memoryview, offset: int) -> int:
        piece = self.data[offset : offset + len(buf)]
        buf[: len(piece)] = piece
        return len(piece)


class FakeLender:
    """Lends fresh 70 000-byte pieces, at most two outstanding unless told to wait."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.pieces: list[tuple[bytearray, int]] = []
        self.reserved = 0
        self.waits = 0

    def write(self, data: bytes) -> int:
        raise AssertionError("a lender is never written to")

    def reserve(self, n: int, wait: bool) -> list[memoryview] | None:
        if self.reserved and not wait:
            self.waits += 1
            return None
        views = []
        while n:
            piece = bytearray(min(n, 70_000))
            self.pieces.append((piece, len(piece)))
            views.append(memoryview(piece))
            n -= len(piece)
        self.reserved += sum(len(v) for v in views)
        return views

    def commit(self, n: int) -> None:
        self.reserved -= n
        while n:
            piece, size = self.pieces.pop(0)
            assert size <= n
            self.data += piece
            n -= size
