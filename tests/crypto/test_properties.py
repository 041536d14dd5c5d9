"""Property tests: round trips for random sizes and recipients, and no
single-byte change, truncation or header mutation ever decrypts."""

from __future__ import annotations

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealdrop.crypto.age import AgeError, Decryptor
from tests.crypto.agetools import (
    CHUNK,
    decrypt_bytes,
    decrypt_collect,
    det_rand,
    encrypt_bytes,
    identity,
    plaintext,
)

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

sizes = st.one_of(
    st.integers(0, 300),
    st.sampled_from([CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 1]),
    st.integers(0, 4 * CHUNK + 50),
)
names = st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=5, unique=True)


@FAST
@given(
    size=sizes,
    recipients=names,
    armor=st.booleans(),
    workers=st.sampled_from([1, 2]),
    batch=st.sampled_from([1, 2, 3, 64]),
    write_size=st.one_of(st.none(), st.integers(1, 3 * CHUNK)),
    data=st.data(),
)
def test_round_trip(size, recipients, armor, workers, batch, write_size, data) -> None:  # type: ignore[no-untyped-def]
    pt = plaintext(size, seed=size)
    ids = {n: identity(n) for n in recipients}
    ct = encrypt_bytes(
        pt,
        [i.recipient() for i in ids.values()],
        armor=armor,
        workers=workers,
        batch_chunks=batch,
        write_size=write_size,
    )
    who = data.draw(st.sampled_from(recipients))
    dec_workers = data.draw(st.sampled_from([1, 2]))
    dec_batch = data.draw(st.sampled_from([2, 3, 64]))
    got = decrypt_bytes(
        ct, [identity("stranger"), ids[who]], workers=dec_workers, batch_chunks=dec_batch
    )
    assert got == pt


# One file per shape, reused across examples: the property is about the flip.
_ALICE = identity("alice")
_BOB = identity("bob")
_PT = plaintext(2 * CHUNK + 300, seed=9)
_FILES = {
    (armor, n): encrypt_bytes(
        _PT[:n], [_BOB.recipient(), _ALICE.recipient()], armor=armor, rand=det_rand(f"{armor}{n}")
    )
    for armor in (False, True)
    for n in (0, 100, CHUNK, len(_PT))
}


@settings(max_examples=150, deadline=None)
@given(
    key=st.sampled_from(sorted(_FILES)),
    pos=st.floats(0, 1, exclude_max=True),
    xor=st.integers(1, 255),
    workers=st.sampled_from([1, 2]),
)
def test_any_single_byte_change_fails(key, pos, xor, workers) -> None:  # type: ignore[no-untyped-def]
    ct = _FILES[key]
    i = int(pos * len(ct))
    bad = bytearray(ct)
    bad[i] ^= xor
    r = decrypt_collect(bytes(bad), [_ALICE], armored=None, workers=workers, batch_chunks=2)
    assert isinstance(r.error, AgeError), f"byte {i} ^ {xor:#x}: {r.error!r}"
    # Whatever was released before the failure is genuine plaintext.
    assert _PT.startswith(r.data)


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(sorted(_FILES)), pos=st.floats(0, 1, exclude_max=True))
def test_any_truncation_fails_and_releases_only_a_prefix(key, pos) -> None:  # type: ignore[no-untyped-def]
    ct = _FILES[key]
    # An armored file may lose its last newline: no EOL after END is allowed.
    usable = len(ct) - 1 if key[0] else len(ct)
    cut = int(pos * usable)
    r = decrypt_collect(ct[:cut], [_ALICE], armored=key[0])
    assert isinstance(r.error, AgeError), f"cut at {cut}/{len(ct)}: {r.error!r}"
    assert _PT.startswith(r.data)


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(sorted(_FILES)), extra=st.binary(min_size=1, max_size=100))
def test_any_appended_data_fails(key, extra) -> None:  # type: ignore[no-untyped-def]
    ct = _FILES[key]
    if key[0] and not extra.strip(b" \t\r\n"):
        return  # whitespace after the armor's END line is allowed
    r = decrypt_collect(ct + extra, [_ALICE], armored=key[0])
    assert isinstance(r.error, AgeError), r.error
    assert _PT.startswith(r.data)


_HEADER_FILE = _FILES[(False, 100)]
_HEADER_LEN = _HEADER_FILE.index(b"\n---") + 48


@settings(max_examples=150, deadline=None)
@given(
    edits=st.lists(
        st.tuples(
            st.integers(0, _HEADER_LEN),
            st.sampled_from(["del", "ins", "set"]),
            st.sampled_from(b"\n\r -> >-AZaz09+/=\x00\x7f\xff\x80"),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_header_mutations_only_raise_age_errors(edits) -> None:  # type: ignore[no-untyped-def]
    raw = bytearray(_HEADER_FILE)
    for pos, op, byte in edits:
        pos = min(pos, len(raw) - 1)
        if op == "del":
            del raw[pos]
        elif op == "ins":
            raw.insert(pos, byte)
        else:
            raw[pos] = byte
    if bytes(raw) == _HEADER_FILE:
        return
    try:
        with Decryptor(io.BytesIO(bytes(raw)), [_ALICE], armored=False) as dec:
            out = dec.read()
    except AgeError:
        return
    raise AssertionError(f"mutated header decrypted to {out[:20]!r}")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_input_only_raises_age_errors(blob: bytes) -> None:
    for prefix in (b"", b"age-encryption.org/v1\n", b"age-encryption.org/v1\n-> X25519 "):
        r = decrypt_collect(prefix + blob, [_ALICE])
        assert isinstance(r.error, AgeError), repr(r.error)
    r = decrypt_collect(b"-----BEGIN AGE ENCRYPTED FILE-----\n" + blob, [_ALICE])
    assert isinstance(r.error, AgeError), repr(r.error)
