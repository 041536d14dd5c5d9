"""Reading plaintext without a copy (``read_view``): the same bytes and the same
failures as ``read``, for the age Decryptor and for a container member."""

from __future__ import annotations

import io
import os

import pytest

from sealdrop.crypto import age
from sealdrop.crypto.age.stream import CHUNK_SIZE, ENC_CHUNK_SIZE
from sealdrop.crypto.container import ContainerReader
from tests.crypto.transferkit import build_archive, encrypt_to, identity

BOB = identity("bob.lab")
ALICE = identity("alice.clinic")


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1,
                                  70 * CHUNK_SIZE + 5])
@pytest.mark.parametrize("n", [1000, CHUNK_SIZE, 1 << 20])
def test_read_view_yields_the_plaintext(size: int, n: int) -> None:
    plain = os.urandom(size)
    blob = encrypt_to(plain, BOB, classical=True)
    out = bytearray()
    with age.Decryptor(io.BytesIO(blob), BOB.age_identities()) as dec:
        while view := dec.read_view(n):
            assert len(view) <= n
            out += view
        assert not dec.read_view(n)  # stays at the end
    assert bytes(out) == plain


def test_read_view_raises_where_the_stream_breaks_after_what_authenticated() -> None:
    plain = os.urandom(5 * CHUNK_SIZE)
    blob = bytearray(encrypt_to(plain, BOB, classical=True))
    blob[len(blob) - 3 * ENC_CHUNK_SIZE] ^= 1  # inside the third chunk from the end
    out = bytearray()
    with age.Decryptor(io.BytesIO(bytes(blob)), BOB.age_identities()) as dec:
        with pytest.raises(age.PayloadError, match="failed to authenticate"):
            while view := dec.read_view(1 << 20):
                out += view
        with pytest.raises(age.PayloadError):  # sticky: never a clean end afterwards
            dec.read_view(1)
    assert bytes(out) == plain[: len(out)] and len(out) < len(plain)


def test_member_read_view_hashes_what_it_lends() -> None:
    files = [("a/big.bin", os.urandom(3 * CHUNK_SIZE + 7)), ("b.txt", b"hello")]
    arch, _ = build_archive(files, sender=ALICE, recipients=[BOB])
    blob = encrypt_to(arch.to_bytes(), BOB, classical=True)
    got: dict[str, bytes] = {}
    with age.Decryptor(io.BytesIO(blob), BOB.age_identities()) as dec:
        reader = ContainerReader(dec)
        for member in reader.members():
            data = bytearray()
            while view := member.read_view(50_000):
                data += view
            got[member.path] = bytes(data)
        manifest = reader.manifest  # every SHA-256 matched what read_view lent
    assert got == dict(files)
    assert [f.path for f in manifest.files] == [p for p, _ in files]
