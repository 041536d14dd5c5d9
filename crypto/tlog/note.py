"""C2SP signed-note: text signed by one or more keys (Ed25519, type 0x01).

A note is its text (ending in a newline), a blank line, then signature lines
``— <key name> base64(4-byte key id || signature)``. Keys are written as the Go
``golang.org/x/mod/sumdb/note`` package writes them, so standard tooling reads
ours and ours reads theirs:

- verifier key ``<name>+<8 hex key id>+base64(0x01 || 32-byte public key)``;
- private key ``PRIVATE+KEY+<name>+<8 hex key id>+base64(0x01 || 32-byte seed)``.

The key id is ``SHA-256(name || 0x0A || type || public key)[:4]``: an
identifier, not a hash to rely on. What makes a signature count is that its
(name, key id) matches a key the caller was configured with, *and* it verifies.

Opening follows the spec (and Go's reader): unknown signatures are ignored, a
known key whose signature fails rejects the whole note, a note with no known
signature is rejected. Randomness stays with the caller (pass the seed).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, Self

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from ..errors import NoteError

ED25519 = 0x01
EM_DASH = "\u2014"
SIG_PREFIX = EM_DASH + " "
# Go's reader stops at 100 signature lines; the spec asks verifiers to accept
# at least 16. A checkpoint with 100 Ed25519 lines is well under 16 KiB, so
# 64 KiB bounds the work a hostile note can cause without refusing real ones.
MAX_SIGNATURES = 100
MAX_NOTE_SIZE = 64 * 1024
_HEX8 = re.compile(r"[0-9a-f]{8}")


def check_name(name: str) -> str:
    """Key names are non-empty, with no Unicode space and no '+'."""
    if (
        not isinstance(name, str) or not name or "+" in name
        or any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in name)
    ):
        raise NoteError(f"{name!r} is not a valid note key name (no spaces, no '+')")
    return name


def key_id(name: str, key_type: int, public: bytes) -> bytes:
    return hashlib.sha256(
        check_name(name).encode("utf-8") + b"\n" + bytes([key_type]) + public
    ).digest()[:4]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, what: str) -> bytes:
    """Strict standard base64 (RFC 4648 section 4), canonical form only."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise NoteError(f"{what} is not valid base64") from exc
    if b64(raw) != text:
        raise NoteError(f"{what} is not in canonical base64")
    return raw


def encode_vkey(name: str, key_type: int, public: bytes) -> str:
    return f"{check_name(name)}+{key_id(name, key_type, public).hex()}+" + b64(
        bytes([key_type]) + public
    )


def parse_vkey(vkey: str, key_type: int) -> tuple[str, bytes]:
    """(name, public key) of a verifier key of ``key_type``, checked strictly:
    its key id must be the one its name and key give."""
    if not isinstance(vkey, str):
        raise NoteError("a verifier key must be text")
    parts = vkey.split("+", 2)  # names hold no '+'; base64 may
    if len(parts) != 3 or not _HEX8.fullmatch(parts[1]):
        raise NoteError("a verifier key must read <name>+<8 hex digits>+<base64 key>")
    name, id_hex, key64 = parts
    key = unb64(key64, "the verifier key")
    if len(key) != 33 or key[0] != key_type:
        raise NoteError(
            f"the verifier key for {check_name(name)} is not a type 0x{key_type:02x} "
            "Ed25519 key"
        )
    if key_id(name, key_type, key[1:]).hex() != id_hex:
        raise NoteError(f"the verifier key for {name} has a key id that does not match its key")
    return name, key[1:]


def encode_private_key(name: str, key_type: int, seed: bytes) -> str:
    public = bytes(SigningKey(seed).verify_key)
    return (
        f"PRIVATE+KEY+{check_name(name)}+{key_id(name, key_type, public).hex()}+"
        + b64(bytes([key_type]) + seed)
    )


def parse_private_key(text: str, key_type: int) -> tuple[str, bytes]:
    """(name, seed) of a ``PRIVATE+KEY+…`` text. Messages never quote the key."""
    if not isinstance(text, str):
        raise NoteError("a private key must be text")
    parts = text.split("+", 4)
    if (
        len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY"
        or not _HEX8.fullmatch(parts[3])
    ):
        raise NoteError("the key file does not hold a PRIVATE+KEY+<name>+<id>+<key> line")
    name, id_hex, key64 = parts[2:]
    check_name(name)
    key = unb64(key64, "the private key")
    if len(key) != 33 or key[0] != key_type:
        raise NoteError(f"the private key for {name} is not a type 0x{key_type:02x} Ed25519 key")
    seed = key[1:]
    if key_id(name, key_type, bytes(SigningKey(seed).verify_key)).hex() != id_hex:
        raise NoteError(f"the private key for {name} has a key id that does not match its key")
    return name, seed


class Ed25519Signer:
    """A named Ed25519 private key (a 32-byte seed) with the key id of its
    signature type (``key_type``); a subclass says what it signs."""

    key_type: int = ED25519

    def __init__(self, name: str, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise NoteError("an Ed25519 key seed must be 32 bytes")
        self.name = check_name(name)
        self._key = SigningKey(seed)
        self.public_key = bytes(self._key.verify_key)
        self.key_id = key_id(name, self.key_type, self.public_key)

    def __repr__(self) -> str:  # never the seed
        return f"{type(self).__name__}({self.name!r}, key id {self.key_id.hex()})"

    @property
    def vkey(self) -> str:
        return encode_vkey(self.name, self.key_type, self.public_key)

    def private_key_text(self) -> str:
        return encode_private_key(self.name, self.key_type, bytes(self._key))

    @classmethod
    def from_private_key_text(cls, text: str) -> Self:
        return cls(*parse_private_key(text.strip(), cls.key_type))


class NoteSigner(Ed25519Signer):
    """An Ed25519 note signer: ``NoteSigner(name, seed)`` with a 32-byte seed."""

    key_type = ED25519

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message).signature


class Verifier(Protocol):
    """What ``open_note`` needs of a key: Ed25519 note keys and cosigners."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def verify(self, text: bytes, signature: bytes) -> int | None:
        """None if ``signature`` (key id removed) does not verify over the note
        text; otherwise the time it states (a cosignature), or -1 if none."""
        ...


class Ed25519Verifier:
    """A named Ed25519 public key with the key id of its signature type
    (``key_type``); a subclass says how a signature line verifies."""

    key_type: int = ED25519

    def __init__(self, name: str, public_key: bytes) -> None:
        if len(public_key) != 32:
            raise NoteError("an Ed25519 public key must be 32 bytes")
        self._name = check_name(name)
        self.public_key = public_key
        self._key_id = key_id(name, self.key_type, public_key)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        return self._key_id

    @property
    def vkey(self) -> str:
        return encode_vkey(self.name, self.key_type, self.public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> Self:
        return cls(*parse_vkey(vkey.strip(), cls.key_type))


class NoteVerifier(Ed25519Verifier):
    """An Ed25519 (type 0x01) note verifier key."""

    key_type = ED25519

    def verify(self, text: bytes, signature: bytes) -> int | None:
        try:
            VerifyKey(self.public_key).verify(text, signature)
        except (BadSignatureError, ValueError):
            return None
        return -1


@dataclass(frozen=True)
class OpenedNote:
    """A note whose signatures by known keys all verified."""

    text: str
    signatures: tuple[str, ...]  # names of the known keys that signed, in note order
    timestamps: Mapping[str, int] = field(default_factory=dict)  # cosigner name -> time
    signers: tuple[tuple[str, bytes], ...] = ()  # (name, key id) of each, in note order


def check_text(text: str) -> bytes:
    """Valid UTF-8 without control characters other than newline."""
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise NoteError("a signed note holds a control character")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise NoteError("a signed note is not valid UTF-8") from exc


def signature_line(name: str, key_id_: bytes, signature: bytes) -> str:
    return f"{SIG_PREFIX}{check_name(name)} {b64(key_id_ + signature)}\n"


def sign_note(text: str, signers: Sequence[NoteSigner]) -> str:
    """The note: ``text`` (ending in a newline), a blank line, one signature
    line per signer."""
    if not text.endswith("\n"):
        raise NoteError("a note's text must end with a newline")
    if not signers:
        raise NoteError("a note needs at least one signer")
    data = check_text(text)
    return text + "\n" + "".join(
        signature_line(s.name, s.key_id, s.sign(data)) for s in signers
    )


def open_note(note: str, verifiers: Sequence[Verifier]) -> OpenedNote:
    """Check a signed note against the known keys ``verifiers``. Raises
    NoteError if it is malformed, if a known key's signature fails, or if no
    known key signed it."""
    if not isinstance(note, str):
        raise NoteError("a signed note must be text")
    if len(note) > MAX_NOTE_SIZE:
        raise NoteError(f"a signed note is longer than {MAX_NOTE_SIZE} bytes")
    check_text(note)
    if len(note.encode("utf-8")) > MAX_NOTE_SIZE:
        raise NoteError(f"a signed note is longer than {MAX_NOTE_SIZE} bytes")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("a signed note has no blank line before its signatures")
    text, sigs = note[: split + 1], note[split + 2 :]
    if not sigs or not sigs.endswith("\n"):
        raise NoteError("a signed note's signature block is empty or not newline-terminated")
    known: dict[tuple[str, bytes], Verifier] = {}
    for v in verifiers:
        if (v.name, v.key_id) in known:
            raise NoteError(f"two configured keys share the name {v.name} and key id")
        known[(v.name, v.key_id)] = v
    data = text.encode("utf-8")
    lines = sigs[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"a signed note has more than {MAX_SIGNATURES} signatures")
    seen: set[tuple[str, bytes]] = set()
    names: list[str] = []
    idents: list[tuple[str, bytes]] = []
    times: dict[str, int] = {}
    for line in lines:
        if not line.startswith(SIG_PREFIX):
            raise NoteError("a signed note has a malformed signature line")
        name, sep, sig64 = line[len(SIG_PREFIX) :].partition(" ")
        check_name(name)
        if not sep or not sig64:
            raise NoteError(f"the signature line for {name} is malformed")
        try:
            raw = base64.b64decode(sig64.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
            raise NoteError(f"the signature by {name} is not valid base64") from exc
        if len(raw) < 5:
            raise NoteError(f"the signature by {name} is too short")
        ident = (name, raw[:4])
        verifier = known.get(ident)
        if verifier is None or ident in seen:  # unknown keys are ignored, repeats too
            continue
        seen.add(ident)
        stated = verifier.verify(data, raw[4:])
        if stated is None:
            raise NoteError(
                f"the signature by {name} does not verify: the note was altered "
                "or signed by another key"
            )
        names.append(name)
        idents.append(ident)
        if stated >= 0:
            times[name] = stated
    if not names:
        raise NoteError("the note is not signed by any of the expected keys")
    return OpenedNote(
        text=text, signatures=tuple(names), timestamps=times, signers=tuple(idents)
    )
