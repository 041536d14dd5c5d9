"""The C2SP tlog-witness ``add-checkpoint`` wire format: bytes in, bytes out.

Both sides import this one module: the relay (``server.witnessing``) writes
requests and reads answers, the witness (``client.witness``) reads requests
and writes answers. No I/O here.

A request body is ``old N`` (the size the log believes the witness last
cosigned), at most 63 base64 consistency-proof hashes, an empty line, then the
signed checkpoint note, every line LF-terminated. A 200 answer is one or more
note signature lines (the cosignatures); a 409 answer is the witness's size
and a newline, with the content type ``text/x.tlog.size``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import LogFormatError

PATH = "/add-checkpoint"
SIZE_CONTENT_TYPE = "text/x.tlog.size"
MAX_PROOF_LINES = 63  # C2SP tlog-witness: a client MUST NOT send more
# A checkpoint note is a few hundred bytes; 63 proof lines add ~2.8 KB. The
# signed-note limit of 100 signature lines fits well inside this.
MAX_BODY_BYTES = 64 * 1024
_HASH_SIZE = 32
_SIG_PREFIX = "\u2014 "  # "— ": every note signature line starts with an em dash


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    old_size: int
    proof: tuple[bytes, ...]
    note: str  # the signed checkpoint note, exactly as sent


def _decimal(text: str, what: str) -> int:
    """A size as C2SP writes it: ASCII digits, no sign, no leading zero."""
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise LogFormatError(f"the {what} {text[:24]!r} is not a decimal size")
    value = int(text)
    if value >= 1 << 63:
        raise LogFormatError(f"the {what} {text[:24]!r} is out of range")
    return value


def format_add_checkpoint(old_size: int, proof: Sequence[bytes], note: str) -> bytes:
    if old_size < 0:
        raise ValueError("old_size must not be negative")
    if len(proof) > MAX_PROOF_LINES or any(len(h) != _HASH_SIZE for h in proof):
        raise ValueError("a consistency proof is at most 63 hashes of 32 bytes")
    if old_size == 0 and proof:
        raise ValueError("the proof from size 0 is empty")
    lines = [f"old {old_size}\n", *(base64.b64encode(h).decode() + "\n" for h in proof), "\n"]
    return ("".join(lines) + note).encode("utf-8")


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """The request, strictly; LogFormatError names what is malformed."""
    if len(body) > MAX_BODY_BYTES:
        raise LogFormatError("the add-checkpoint request is too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise LogFormatError("the add-checkpoint request is not UTF-8 text") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise LogFormatError("the add-checkpoint request has no empty line before the checkpoint")
    lines = head.split("\n")
    if not lines[0].startswith("old "):
        raise LogFormatError("the add-checkpoint request does not start with an 'old N' line")
    old_size = _decimal(lines[0][4:], "old size")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise LogFormatError("the consistency proof has more than 63 lines")
    proof = []
    for line in lines[1:]:
        try:
            h = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raise LogFormatError("a consistency proof line is not base64") from None
        if len(h) != _HASH_SIZE:
            raise LogFormatError("a consistency proof line is not a 32-byte hash")
        proof.append(h)
    if old_size == 0 and proof:
        raise LogFormatError("a consistency proof from size 0 must be empty")
    if not note:
        raise LogFormatError("the add-checkpoint request carries no checkpoint")
    return AddCheckpoint(old_size, tuple(proof), note)


def format_size(size: int) -> bytes:
    return f"{size}\n".encode("ascii")


def parse_size(body: bytes) -> int:
    """The body of a 409 answer: the witness's latest cosigned size."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise LogFormatError("the witness's size answer is not ASCII") from None
    if not text.endswith("\n") or "\n" in text[:-1]:
        raise LogFormatError("the witness's size answer is not one line")
    return _decimal(text[:-1], "witness size")


def split_signature_lines(body: bytes) -> list[str]:
    """The note signature lines of a 200 answer (each kept with its newline)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise LogFormatError("the witness's answer is not UTF-8 text") from None
    if not text.endswith("\n"):
        raise LogFormatError("the witness's answer does not end with a newline")
    lines = [line + "\n" for line in text[:-1].split("\n")]
    if not lines or any(not line.startswith(_SIG_PREFIX) for line in lines):
        raise LogFormatError("the witness's answer holds a line that is not a signature")
    return lines
