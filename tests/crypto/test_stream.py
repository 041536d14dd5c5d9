"""The STREAM payload: sizes around chunk and batch boundaries, truncation,
trailing data, reordering, and identical output however the data is written."""

from __future__ import annotations

import io

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from sealdrop.crypto.age import Decryptor, Encryptor, PayloadError, X25519Identity
from sealdrop.crypto.age.stream import (
    CHUNK_SIZE,
    ENC_CHUNK_SIZE,
    NONCE_SIZE,
    StreamReader,
    StreamWriter,
    _nonce,
)
from tests.crypto.agetools import (
    CHUNK,
    MiB,
    decrypt_bytes,
    decrypt_collect,
    det_rand,
    encrypt_bytes,
    identity,
    plaintext,
)

KEY = bytes(range(32))
TAG = 16

# (workers, batch_chunks): the default, single-threaded, and tiny batches so
# that a few chunks cross several batch boundaries.
CONFIGS = [(1, 64), (2, 64), (1, 2), (2, 2), (1, 3), (2, 3)]
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 1]


def seal(
    pt: bytes,
    *,
    workers: int = 1,
    batch_chunks: int = 64,
    write_size: int | None = None,
    key: bytes = KEY,
) -> bytes:
    out = io.BytesIO()
    w = StreamWriter(key, out, workers=workers, batch_chunks=batch_chunks)
    if write_size is None:
        w.write(pt)
    else:
        for i in range(0, len(pt), write_size):
            w.write(pt[i : i + write_size])
    w.close()
    return out.getvalue()


def open_all(
    ct: bytes, *, workers: int = 1, batch_chunks: int = 64
) -> tuple[bytes, Exception | None]:
    """Plaintext released chunk by chunk, and the error that stopped it."""
    r = StreamReader(KEY, io.BytesIO(ct), workers=workers, batch_chunks=batch_chunks)
    out = bytearray()
    try:
        for chunk in r.chunks():
            out += chunk
    except PayloadError as exc:
        return bytes(out), exc
    finally:
        r.close()
    return bytes(out), None


def expected_ct_size(n: int) -> int:
    chunks = max(1, -(-n // CHUNK_SIZE))
    return n + TAG * chunks


def chunk_bounds(ct: bytes) -> list[tuple[int, int]]:
    return [(i, min(i + ENC_CHUNK_SIZE, len(ct))) for i in range(0, len(ct), ENC_CHUNK_SIZE)]


def raw_chunk(pt: bytes, counter: int, last: bool, key: bytes = KEY) -> bytes:
    return ChaCha20Poly1305(key).encrypt(_nonce(counter, last), pt, None)


# --- round trips -------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("workers,batch", CONFIGS)
def test_round_trip_sizes(size: int, workers: int, batch: int) -> None:
    pt = plaintext(size)
    ct = seal(pt, workers=workers, batch_chunks=batch)
    assert len(ct) == expected_ct_size(size)
    for w, b in [(1, 64), (workers, batch)]:
        out, err = open_all(ct, workers=w, batch_chunks=b)
        assert err is None
        assert out == pt


@pytest.mark.parametrize("batch", [2, 3])
@pytest.mark.parametrize("workers", [1, 2])
def test_batch_boundaries(workers: int, batch: int) -> None:
    sizes = sorted(
        {k * batch * CHUNK + d for k in (1, 2) for d in (-1, 0, 1)}
        | {(k * batch + 1) * CHUNK + d for k in (1, 2) for d in (-1, 0, 1)}
    )
    for size in sizes:
        pt = plaintext(size, seed=size)
        ct = seal(pt, workers=workers, batch_chunks=batch)
        assert ct == seal(pt), f"size {size}: output depends on workers/batch"
        out, err = open_all(ct, workers=workers, batch_chunks=batch)
        assert err is None, (size, err)
        assert out == pt, size


@pytest.mark.parametrize("workers", [1, 2])
def test_a_few_mib(workers: int) -> None:
    pt = plaintext(3 * MiB + 17)
    ct = seal(pt, workers=workers, batch_chunks=16)
    assert ct == seal(pt, workers=1, batch_chunks=64)
    out, err = open_all(ct, workers=workers, batch_chunks=5)
    assert err is None and out == pt


def test_ciphertext_is_chunked_with_the_last_flag() -> None:
    pt = plaintext(2 * CHUNK + 5)
    ct = seal(pt)
    aead = ChaCha20Poly1305(KEY)
    chunks = [ct[a:b] for a, b in chunk_bounds(ct)]
    assert [len(c) for c in chunks] == [ENC_CHUNK_SIZE, ENC_CHUNK_SIZE, 5 + TAG]
    assert aead.decrypt(_nonce(0, False), chunks[0], None) == pt[:CHUNK]
    assert aead.decrypt(_nonce(1, False), chunks[1], None) == pt[CHUNK : 2 * CHUNK]
    assert aead.decrypt(_nonce(2, True), chunks[2], None) == pt[2 * CHUNK :]


def test_empty_payload_is_one_empty_final_chunk() -> None:
    ct = seal(b"")
    assert ct == raw_chunk(b"", 0, True)


def test_full_last_chunk_is_not_followed_by_an_empty_one() -> None:
    ct = seal(plaintext(CHUNK))
    assert len(ct) == ENC_CHUNK_SIZE
    assert ct == raw_chunk(plaintext(CHUNK), 0, True)


# --- identical output however it is written ----------------------------------


@pytest.mark.parametrize("write_size", [1, 7, 1000, CHUNK - 1, CHUNK + 1, 3 * CHUNK])
def test_stream_writes_of_any_size_give_identical_output(write_size: int) -> None:
    size = 4 * CHUNK + 3 if write_size >= 1000 else CHUNK + 33
    pt = plaintext(size)
    assert seal(pt, write_size=write_size, batch_chunks=2, workers=2) == seal(pt)


@pytest.mark.parametrize("size", [0, 1, CHUNK, 3 * CHUNK + 5])
def test_encryptor_tiny_writes_equal_one_big_write(size: int) -> None:
    pt = plaintext(size)
    rcpt = [identity("alice").recipient(), identity("bob").recipient()]
    one = encrypt_bytes(pt, rcpt, rand=det_rand("x"))
    many = encrypt_bytes(pt, rcpt, rand=det_rand("x"), write_size=997, workers=2, batch_chunks=2)
    assert one == many
    tiny = encrypt_bytes(pt[: CHUNK + 10], rcpt, rand=det_rand("x"), write_size=3)
    assert tiny == encrypt_bytes(pt[: CHUNK + 10], rcpt, rand=det_rand("x"))
    assert encrypt_bytes(pt, rcpt, rand=det_rand("y")) != one
    if hasattr(Encryptor, "write_from"):
        out = io.BytesIO()
        with Encryptor(out, rcpt, rand=det_rand("x"), workers=2, batch_chunks=2) as enc:
            assert enc.write_from(io.BytesIO(pt)) == size
        assert out.getvalue() == one


@pytest.mark.parametrize("size", [0, 1, CHUNK + 1, 3 * CHUNK + 5])
def test_decryptor_readinto_and_small_reads(size: int) -> None:
    pt = plaintext(size)
    alice = identity("alice")
    ct = encrypt_bytes(pt, [alice.recipient()])
    dec = Decryptor(io.BytesIO(ct), [alice], batch_chunks=2)
    got = bytearray()
    buf = bytearray(1001)
    while True:
        n = dec.readinto(buf) if hasattr(dec, "readinto") else 0
        if not n:
            break
        got += buf[:n]
    if hasattr(dec, "readinto"):
        assert bytes(got) == pt
    dec.close()
    dec = Decryptor(io.BytesIO(ct), [alice], batch_chunks=3)
    parts = []
    while data := dec.read(4097):
        parts.append(data)
    assert b"".join(parts) == pt


def test_reused_write_buffer_is_copied() -> None:
    """A caller may reuse its bytearray after write(): the output must not change."""
    pt = plaintext(3 * CHUNK + 100)
    out = io.BytesIO()
    w = StreamWriter(KEY, out, workers=1, batch_chunks=2)
    buf = bytearray(1000)
    for i in range(0, len(pt), 1000):
        piece = pt[i : i + 1000]
        buf[: len(piece)] = piece
        w.write(memoryview(buf)[: len(piece)])
        buf[:] = b"\xff" * len(buf)
    w.close()
    assert out.getvalue() == seal(pt)


def test_write_after_close_fails_and_close_is_idempotent() -> None:
    out = io.BytesIO()
    w = StreamWriter(KEY, out)
    w.write(b"abc")
    w.close()
    size = len(out.getvalue())
    w.close()
    assert len(out.getvalue()) == size
    with pytest.raises(ValueError):
        w.write(b"more")


def test_writer_aborted_by_an_exception_writes_no_final_chunk() -> None:
    out = io.BytesIO()
    with pytest.raises(RuntimeError):
        with StreamWriter(KEY, out, workers=2, batch_chunks=2) as w:
            w.write(plaintext(CHUNK // 2))
            raise RuntimeError("boom")
    _, err = open_all(out.getvalue())
    assert isinstance(err, PayloadError)


# --- truncation ----------------------------------------------------------------

N_CHUNKS = 5
TRUNC_PT = plaintext((N_CHUNKS - 1) * CHUNK + 100, seed=7)


def _truncation_points(ct_len: int) -> list[tuple[int, int]]:
    """(cut, chunks that still authenticate) for cuts at and inside every chunk."""
    points = []
    for k in range(N_CHUNKS):
        start = k * ENC_CHUNK_SIZE
        if start < ct_len:
            points.append((start, k))  # at a chunk boundary
        end = min(start + ENC_CHUNK_SIZE, ct_len)
        for cut in (start + 1, start + 17, end - TAG, end - TAG + 1, end - 8, end - 1):
            if start < cut < end:
                points.append((cut, k))  # inside the data or the tag
    return points


@pytest.mark.parametrize("workers,batch", CONFIGS)
def test_truncation_everywhere_releases_only_the_authenticated_prefix(
    workers: int, batch: int
) -> None:
    ct = seal(TRUNC_PT)
    assert len(chunk_bounds(ct)) == N_CHUNKS
    for cut, good in _truncation_points(len(ct)):
        out, err = open_all(ct[:cut], workers=workers, batch_chunks=batch)
        assert type(err) is PayloadError, f"cut at {cut}: {err!r}"
        assert out == TRUNC_PT[: good * CHUNK], f"cut at {cut}: released {len(out)} bytes"


def test_truncation_through_the_decryptor() -> None:
    alice = identity("alice")
    ct = encrypt_bytes(TRUNC_PT, [alice.recipient()], rand=det_rand())
    header_len = ct.index(b"\n", ct.index(b"\n---") + 1) + 1
    payload_start = header_len + NONCE_SIZE
    for cut, good in _truncation_points(len(ct) - payload_start):
        r = decrypt_collect(ct[: payload_start + cut], [alice], batch_chunks=2)
        assert type(r.error) is PayloadError, (cut, r.error)
        assert r.data == TRUNC_PT[: good * CHUNK]


def test_read_returns_the_authenticated_prefix_then_raises() -> None:
    ct = seal(TRUNC_PT)
    cut = 2 * ENC_CHUNK_SIZE + 10
    r = StreamReader(KEY, io.BytesIO(ct[:cut]), workers=1, batch_chunks=2)
    got = bytearray()
    with pytest.raises(PayloadError):
        while True:
            data = r.read(10 * CHUNK)
            assert data, "a truncated stream must not end like a complete one"
            got += data
    assert bytes(got) == TRUNC_PT[: 2 * CHUNK]
    r.close()


def test_read_after_a_payload_error_raises_again() -> None:
    """A caller that retries after the error must not see a clean EOF."""
    ct = seal(TRUNC_PT)
    r = StreamReader(KEY, io.BytesIO(ct[: ENC_CHUNK_SIZE + 10]), workers=1, batch_chunks=2)
    with pytest.raises(PayloadError):
        while r.read(CHUNK):
            pass
    with pytest.raises(PayloadError):
        r.read(1)
    with pytest.raises(PayloadError):
        r.read()
    with pytest.raises(PayloadError):
        list(r.chunks())
    r.close()


def test_no_chunks_at_all() -> None:
    out, err = open_all(b"")
    assert type(err) is PayloadError and out == b""


# --- trailing data, reordering, tampering ---------------------------------------


@pytest.mark.parametrize("size", [0, 100, CHUNK, 2 * CHUNK, 2 * CHUNK + 100])
@pytest.mark.parametrize(
    "extra", [b"\x00", b"garbage", bytes(TAG), bytes(ENC_CHUNK_SIZE), bytes(ENC_CHUNK_SIZE + 1)]
)
@pytest.mark.parametrize("workers,batch", [(1, 64), (2, 2)])
def test_trailing_data_is_rejected(size: int, extra: bytes, workers: int, batch: int) -> None:
    pt = plaintext(size)
    out, err = open_all(seal(pt) + extra, workers=workers, batch_chunks=batch)
    assert type(err) is PayloadError
    assert pt.startswith(out)


def test_trailing_valid_chunk_after_the_final_one() -> None:
    """A second final chunk (even a validly sealed one) is trailing data."""
    pt = plaintext(CHUNK)
    ct = raw_chunk(pt, 0, True) + raw_chunk(b"more", 1, True)
    out, err = open_all(ct)
    assert type(err) is PayloadError
    assert pt.startswith(out)


@pytest.mark.parametrize("workers,batch", [(1, 64), (2, 2), (1, 3)])
def test_swapped_and_replayed_chunks(workers: int, batch: int) -> None:
    ct = seal(TRUNC_PT)
    c = [ct[a:b] for a, b in chunk_bounds(ct)]
    cases = {
        "swap 0,1": ([c[1], c[0], *c[2:]], 0),
        "swap 2,3": ([*c[:2], c[3], c[2], *c[4:]], 2),
        "replay 0 at 1": ([c[0], c[0], *c[2:]], 1),
        "drop 1": ([c[0], *c[2:]], 1),
        "final moved first": ([c[4], *c[:4]], 0),
        "final duplicated": ([*c, c[4]], 4),
    }
    for name, (chunks, good) in cases.items():
        out, err = open_all(b"".join(chunks), workers=workers, batch_chunks=batch)
        assert type(err) is PayloadError, name
        assert out == TRUNC_PT[: good * CHUNK], name


def test_a_flipped_bit_in_any_chunk_stops_there() -> None:
    ct = seal(TRUNC_PT)
    for k, (a, b) in enumerate(chunk_bounds(ct)):
        for pos in (a, (a + b) // 2, b - 1):
            bad = bytearray(ct)
            bad[pos] ^= 0x01
            out, err = open_all(bytes(bad), workers=2, batch_chunks=2)
            assert type(err) is PayloadError, (k, pos)
            assert out == TRUNC_PT[: k * CHUNK], (k, pos)


def test_wrong_key() -> None:
    ct = seal(plaintext(100))
    r = StreamReader(bytes(32), io.BytesIO(ct))
    with pytest.raises(PayloadError):
        r.read()


def test_final_flag_on_a_middle_chunk() -> None:
    """Chunk 0 sealed as final, followed by a real final chunk: rejected."""
    a, b = plaintext(CHUNK), b"tail"
    ct = raw_chunk(a, 0, True) + raw_chunk(b, 1, True)
    out, err = open_all(ct)
    assert type(err) is PayloadError and a.startswith(out)


def test_empty_final_chunk_after_a_full_one_is_rejected() -> None:
    a = plaintext(CHUNK)
    ct = raw_chunk(a, 0, False) + raw_chunk(b"", 1, True)
    out, err = open_all(ct)
    assert type(err) is PayloadError
    assert out == a


def test_decryptor_round_trip_with_small_batches() -> None:
    alice, bob = identity("alice"), identity("bob")
    pt = plaintext(5 * CHUNK + 1)
    ct = encrypt_bytes(pt, [alice.recipient()], workers=2, batch_chunks=2)
    assert decrypt_bytes(ct, [bob, alice], workers=2, batch_chunks=2) == pt
    assert decrypt_bytes(ct, [alice], workers=1, batch_chunks=3) == pt
    assert isinstance(alice, X25519Identity)


def test_a_small_payload_allocates_one_chunk_of_buffers_not_four_batches() -> None:
    # Profile records and cards are a few KiB: four zeroed 4 MiB batch sets each
    # time took a send's peak RSS over its budget.
    out = io.BytesIO()
    w = StreamWriter(KEY, out, workers=2)
    w.write(b"x" * 1000)
    w.close()
    assert sum(len(a) + len(b) for a, b in w._sets) == CHUNK_SIZE + ENC_CHUNK_SIZE
    out2, err = open_all(out.getvalue())
    assert err is None and out2 == b"x" * 1000


def test_buffers_grow_to_a_batch_and_no_further() -> None:
    w = StreamWriter(KEY, io.BytesIO(), workers=1, batch_chunks=4)
    w.write(bytes(3 * CHUNK_SIZE + 1))
    assert len(w._sets) == 1 and len(w._sets[0][0]) == 4 * CHUNK_SIZE
    w.write(bytes(9 * CHUNK_SIZE))
    assert len(w._sets) == 4  # one filling, one held, the rest sealed or draining
    assert all(len(a) == 4 * CHUNK_SIZE and len(b) == 4 * ENC_CHUNK_SIZE for a, b in w._sets)
    w.close()
