"""Small helpers shared by the age core tests: deterministic randomness and
in-memory encrypt/decrypt with the released plaintext kept on failure."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence

from sealdrop.crypto.age import Decryptor, Encryptor, X25519Identity
from sealdrop.crypto.age.core import Identity, Recipient

KiB = 1024
MiB = 1024 * KiB
CHUNK = 64 * KiB


def det_rand(seed: bytes | str = b"sealdrop") -> Callable[[int], bytes]:
    """A deterministic ``rand`` (SHA-256 in counter mode) for reproducible files."""
    if isinstance(seed, str):
        seed = seed.encode()
    counter = 0

    def rand(n: int) -> bytes:
        nonlocal counter
        out = bytearray()
        while len(out) < n:
            out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
            counter += 1
        return bytes(out[:n])

    return rand


def plaintext(size: int, seed: int = 0) -> bytes:
    """Reproducible, non-repeating plaintext (so swapped chunks differ)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha512(seed.to_bytes(4, "big") + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


def identity(seed: str = "alice") -> X25519Identity:
    return X25519Identity(hashlib.sha256(seed.encode()).digest())


def encrypt_bytes(
    data: bytes,
    recipients: Sequence[Recipient],
    *,
    armor: bool = False,
    rand: Callable[[int], bytes] | None = None,
    workers: int = 1,
    batch_chunks: int = 64,
    write_size: int | None = None,
) -> bytes:
    out = io.BytesIO()
    kwargs = {} if rand is None else {"rand": rand}
    enc = Encryptor(
        out, recipients, armor=armor, workers=workers, batch_chunks=batch_chunks, **kwargs
    )
    if write_size is None:
        enc.write(data)
    else:
        for i in range(0, len(data), write_size):
            enc.write(data[i : i + write_size])
    enc.close()
    return out.getvalue()


class Released:
    """What a decryption wrote before it finished or failed."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.error: Exception | None = None

    @property
    def data(self) -> bytes:
        return self.buf.getvalue()


def decrypt_collect(
    ct: bytes,
    identities: Sequence[Identity],
    *,
    armored: bool | None = None,
    workers: int = 1,
    batch_chunks: int = 64,
) -> Released:
    """Decrypt chunk by chunk, keeping the authenticated plaintext and the error."""
    r = Released()
    try:
        with Decryptor(
            io.BytesIO(ct), identities, armored=armored, workers=workers, batch_chunks=batch_chunks
        ) as dec:
            for chunk in dec.chunks():
                r.buf.write(chunk)
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        r.error = exc
    return r


def decrypt_bytes(ct: bytes, identities: Sequence[Identity], **kw: object) -> bytes:
    r = decrypt_collect(ct, identities, **kw)  # type: ignore[arg-type]
    if r.error is not None:
        raise r.error
    return r.data
