"""The hash of one upload chunk: SHA-256 or BLAKE3, and how a record names which.

A chunk upload (``PATCH …/data``) carries the hash of its ciphertext bytes in
one header, ``Sealdrop-Chunk-Sha256`` or ``Sealdrop-Chunk-Blake3`` (lower-case
hex of 32 bytes either way); the request signature covers it instead of the
body, and the relay checks the body against it before it commits the chunk.

Why BLAKE3 at all: every uploaded byte is hashed twice, by the sender and by
the relay, and BLAKE3 costs about 0.43 CPU-s per GiB where SHA-256 costs 0.78
on the reference machine (README, "Benchmarks"). Why SHA-256 stays: older
clients send it and older relays take nothing else, and chunk records made
before BLAKE3 must still verify. One algorithm per transfer.

A *tagged* digest names both: bare hex for SHA-256 (so every record written
before BLAKE3 existed already is one) and ``"blake3:" + hex`` for BLAKE3. It is
what the relay records per chunk, what the chunk list digest lists and what the
request signature covers; a SHA-256 value and a BLAKE3 value can never be
mistaken for one another.

BLAKE3 runs single-threaded (``max_threads`` left at 1): on the relay the
target is CPU per GiB, and the sender already hashes on its upload lanes while
the encryptor uses the other core.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final, Protocol

import blake3

from .protocol import H_CHUNK_BLAKE3, H_CHUNK_SHA256

SHA256: Final = "sha256"
BLAKE3: Final = "blake3"
# The header that carries each algorithm's hex hash on a chunk upload.
HEADERS: Final = {BLAKE3: H_CHUNK_BLAKE3, SHA256: H_CHUNK_SHA256}
# Preferred first (the cheaper per byte): what a client picks from what a relay offers.
ALGORITHMS: Final = (BLAKE3, SHA256)
HEX_RE = re.compile(r"[0-9a-f]{64}")
_BLAKE3_PREFIX = BLAKE3 + ":"


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> object: ...

    def hexdigest(self) -> str: ...


def new(algorithm: str) -> Hasher:
    """A fresh hasher for ``algorithm`` (``SHA256`` or ``BLAKE3``)."""
    if algorithm == SHA256:
        return hashlib.sha256()
    if algorithm == BLAKE3:
        return blake3.blake3()
    raise ValueError(f"unknown chunk hash {algorithm!r}")


def hex_digest(algorithm: str, data: bytes | bytearray | memoryview) -> str:
    """The plain hex hash of ``data`` (what the chunk header carries)."""
    h = new(algorithm)
    h.update(data)
    return h.hexdigest()


def tag(algorithm: str, hex_value: str) -> str:
    """The tagged digest: bare hex for SHA-256, ``blake3:<hex>`` for BLAKE3."""
    if algorithm == SHA256:
        return hex_value
    if algorithm == BLAKE3:
        return _BLAKE3_PREFIX + hex_value
    raise ValueError(f"unknown chunk hash {algorithm!r}")


def untag(tagged: str) -> tuple[str, str]:
    """(algorithm, hex) of a tagged digest."""
    if tagged.startswith(_BLAKE3_PREFIX):
        return BLAKE3, tagged[len(_BLAKE3_PREFIX):]
    return SHA256, tagged


def tagged_digest(algorithm: str, data: bytes | bytearray | memoryview) -> str:
    return tag(algorithm, hex_digest(algorithm, data))


def pick(offered: object) -> str:
    """The algorithm to upload with, from what a relay offers (``GET /v1/info``
    ``chunk_hashes``; absent from a relay older than BLAKE3: SHA-256)."""
    if isinstance(offered, list):
        for algorithm in ALGORITHMS:
            if algorithm in offered:
                return algorithm
    return SHA256
