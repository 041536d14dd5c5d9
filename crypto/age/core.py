"""Encrypt to recipients and decrypt with identities: the public age API.

A recipient *wraps* a file key into stanzas; an identity *unwraps* stanzas
into a file key. Everything else (header, stream, armor) is in its own module.
Randomness is drawn here, at the top, and passed down.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from . import format as fmt
from .armor import BEGIN, ArmorReader, ArmorWriter
from .errors import HeaderError, MACError, NoIdentityMatchError, RecipientError
from .format import Stanza
from .primitives import (
    FILE_KEY_SIZE,
    TAG_SIZE,
    hkdf_sha256,
    hmac_sha256,
    hmac_sha256_matches,
)
from .stream import (
    CHUNK_SIZE,
    DEFAULT_BATCH_CHUNKS,
    DEFAULT_WORKERS,
    NONCE_SIZE,
    PositionalReader,
    Reader,
    StreamReader,
    StreamWriter,
    Writer,
    read_full,
)

Random = Callable[[int], bytes]


class Recipient(Protocol):
    #: True for post-quantum recipients; the spec forbids mixing on encrypt.
    pq: bool

    def wrap(self, file_key: bytes, rand: Random) -> list[Stanza]: ...


class Identity(Protocol):
    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None: ...


def _header_mac_key(file_key: bytes) -> bytes:
    return hkdf_sha256(file_key, b"", b"header")


def _header_mac(file_key: bytes, mac_input: bytes) -> bytes:
    return hmac_sha256(_header_mac_key(file_key), mac_input)


def _payload_key(file_key: bytes, nonce: bytes) -> bytes:
    return hkdf_sha256(file_key, nonce, b"payload")


def _check_recipients(recipients: Sequence[Recipient]) -> None:
    if not recipients:
        raise RecipientError("no recipients given")
    if any(getattr(r, "sole", False) for r in recipients) and len(recipients) > 1:
        raise RecipientError("a passphrase can't be combined with other recipients")
    kinds = {bool(r.pq) for r in recipients}
    if len(kinds) > 1:
        # Mixing would let the classical stanza undo the post-quantum protection.
        raise RecipientError(
            "can't mix post-quantum (age1pq…) and classical (age1…) recipients",
            hint="give every recipient a post-quantum key, or use only classical keys",
        )


class ResumeState:
    """What it takes to re-create the exact same ciphertext later: SECRET.

    Encryption draws fresh randomness (file key, payload nonce, and the
    ML-KEM encapsulation, which cannot be seeded), so an interrupted upload
    can only be continued byte-identically by keeping the header that was
    sent and the key and nonce behind it; the payload is then deterministic
    in the plaintext. Whoever holds this can decrypt the file: store it
    encrypted, and delete it once the upload is complete.
    """

    __slots__ = ("header", "file_key", "nonce")

    def __init__(self, *, header: bytes, file_key: bytes, nonce: bytes) -> None:
        if len(file_key) != FILE_KEY_SIZE or len(nonce) != NONCE_SIZE:
            raise RecipientError("invalid resume state")
        self.header = header
        self.file_key = file_key
        self.nonce = nonce

    def __repr__(self) -> str:
        return "ResumeState(<secret>)"

    def to_bytes(self) -> bytes:
        return self.file_key + self.nonce + self.header

    @classmethod
    def from_bytes(cls, data: bytes) -> ResumeState:
        n = FILE_KEY_SIZE + NONCE_SIZE
        return cls(file_key=data[:FILE_KEY_SIZE], nonce=data[FILE_KEY_SIZE:n], header=data[n:])


class Encryptor:
    """A writer: what is written is encrypted to ``dst``; ``close()`` finishes the file.

    ``close()`` does not close ``dst``. Pass ``resume`` (from a previous
    Encryptor's ``resume_state``) instead of recipients to produce the same
    header and key again.
    """

    def __init__(
        self,
        dst: Writer,
        recipients: Sequence[Recipient],
        *,
        armor: bool = False,
        rand: Random = os.urandom,
        workers: int = DEFAULT_WORKERS,
        batch_chunks: int = DEFAULT_BATCH_CHUNKS,
        resume: ResumeState | None = None,
    ) -> None:
        if resume is None:
            _check_recipients(recipients)
            file_key = rand(FILE_KEY_SIZE)
            stanzas = [s for r in recipients for s in r.wrap(file_key, rand)]
            mac_input = fmt.marshal_without_mac(stanzas)
            header = fmt.marshal(mac_input, _header_mac(file_key, mac_input))
            nonce = rand(NONCE_SIZE)
            resume = ResumeState(header=header, file_key=file_key, nonce=nonce)
        self.resume_state = resume
        self._armor = ArmorWriter(dst) if armor else None
        out: Writer = dst if self._armor is None else self._armor
        out.write(resume.header)
        out.write(resume.nonce)
        self._stream = StreamWriter(
            _payload_key(resume.file_key, resume.nonce),
            out,
            workers=workers,
            batch_chunks=batch_chunks,
        )

    @staticmethod
    def ciphertext_size(header_size: int, plaintext_size: int) -> int:
        """Exact size of an unarmored age file with this header and plaintext size."""
        chunks = max(1, -(-plaintext_size // CHUNK_SIZE))
        return header_size + NONCE_SIZE + plaintext_size + chunks * TAG_SIZE

    def write(self, data: bytes | bytearray | memoryview) -> int:
        return self._stream.write(data)

    def write_from(self, src: Reader) -> int:
        """Encrypt all of ``src``; faster than write() for files (reads in place)."""
        return self._stream.write_from(src)

    def write_positional(self, src: PositionalReader, size: int) -> int:
        """Encrypt exactly ``size`` bytes read by position (fastest, for regular files)."""
        return self._stream.write_positional(src, size)

    def close(self) -> None:
        self._stream.close()
        if self._armor is not None:
            self._armor.close()
            self._armor = None

    def __enter__(self) -> Encryptor:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._stream.abort()


class _Prefixed:
    """A reader that returns ``prefix`` before the rest of ``src``."""

    def __init__(self, prefix: bytes, src: Reader) -> None:
        self._prefix = memoryview(prefix)
        self._src = src

    def read(self, n: int = -1) -> bytes:
        if not self._prefix:
            return self._src.read(n)
        if n < 0:
            out = bytes(self._prefix) + self._src.read()
            self._prefix = memoryview(b"")
            return out
        out = bytes(self._prefix[:n])
        self._prefix = self._prefix[len(out) :]
        return out

    def readinto(self, buf: memoryview) -> int:
        if not self._prefix:
            readinto = getattr(self._src, "readinto", None)
            if readinto is not None:
                return int(readinto(buf))
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def abort(self) -> None:
        """Passed on to the source (see StreamReader): a blocked read returns."""
        abort = getattr(self._src, "abort", None)
        if abort is not None:
            abort()


def _detect_armor(src: Reader) -> tuple[bool, Reader]:
    """Peek at the start: armored files begin (after whitespace) with '-----BEGIN'."""
    head = read_full(src, len(BEGIN) + 64)
    stripped = head.lstrip(b" \t\r\n")
    return stripped.startswith(b"-----BEGIN"), _Prefixed(head, src)


def unwrap_file_key(header: fmt.Header, identities: Sequence[Identity]) -> bytes:
    """Find the file key with the first identity that opens a stanza, then check the MAC."""
    if any(s.type == "scrypt" for s in header.stanzas) and len(header.stanzas) != 1:
        raise HeaderError("an scrypt stanza must be the only stanza in the header")
    if not identities:
        raise NoIdentityMatchError("no identities given")
    for identity in identities:
        file_key = identity.unwrap(header.stanzas)
        if file_key is None:
            continue
        if len(file_key) != FILE_KEY_SIZE:
            raise HeaderError("invalid file key length in stanza")
        if not hmac_sha256_matches(_header_mac_key(file_key), header.mac_input, header.mac):
            raise MACError(
                "header MAC does not match; the file may be corrupted or tampered with"
            )
        return file_key
    raise NoIdentityMatchError(
        "no identity matched any of the file's recipients",
        hint="check that you are using the right key file or passphrase",
    )


class Decryptor:
    """A reader of the plaintext of an age file, authenticated chunk by chunk.

    The header is parsed and the file key recovered on construction, so header,
    MAC and identity errors surface before any plaintext; payload errors surface
    from ``read()``/``chunks()`` after the plaintext that authenticated before them.
    """

    def __init__(
        self,
        src: Reader,
        identities: Sequence[Identity],
        *,
        armored: bool | None = None,
        workers: int = DEFAULT_WORKERS,
        batch_chunks: int = DEFAULT_BATCH_CHUNKS,
    ) -> None:
        if armored is None:
            armored, src = _detect_armor(src)
        if armored:
            src = ArmorReader(src)
        header, rest = fmt.parse(src)
        self.header = header
        src = _Prefixed(rest, src)
        file_key = unwrap_file_key(header, identities)
        nonce = read_full(src, NONCE_SIZE)
        if len(nonce) != NONCE_SIZE:
            raise HeaderError("file is truncated: the payload nonce is missing")
        self._stream = StreamReader(
            _payload_key(file_key, nonce), src, workers=workers, batch_chunks=batch_chunks
        )

    def read(self, n: int = -1) -> bytes:
        return self._stream.read(n)

    def readinto(self, buf: bytearray | memoryview) -> int:
        return self._stream.readinto(buf)

    def read_view(self, n: int) -> memoryview:
        """Up to ``n`` bytes without a copy, valid until the next read (see StreamReader)."""
        return self._stream.read_view(n)

    def chunks(self) -> Iterator[memoryview]:
        """Runs of plaintext; each view is valid only until the next is requested."""
        return self._stream.chunks()

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> Decryptor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def encrypt(
    src: Reader,
    dst: Writer,
    recipients: Sequence[Recipient],
    *,
    armor: bool = False,
    rand: Random = os.urandom,
    workers: int = DEFAULT_WORKERS,
) -> int:
    """Encrypt all of ``src`` to ``dst``; returns the plaintext size."""
    with Encryptor(dst, recipients, armor=armor, rand=rand, workers=workers) as enc:
        return enc.write_from(src)


def decrypt(
    src: Reader,
    dst: Writer,
    identities: Sequence[Identity],
    *,
    armored: bool | None = None,
    workers: int = DEFAULT_WORKERS,
) -> int:
    """Decrypt ``src`` into ``dst``; returns the plaintext size.

    ``dst`` receives only authenticated chunks, but a payload error may come
    after some of them: stage the output if it must be all-or-nothing.
    """
    total = 0
    with Decryptor(src, identities, armored=armored, workers=workers) as dec:
        for chunk in dec.chunks():
            dst.write(chunk)
            total += len(chunk)
    return total
