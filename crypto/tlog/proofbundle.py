"""C2SP tlog-proof@v1: an offline-verifiable proof that an entry is logged.

    c2sp.org/tlog-proof@v1
    [extra <base64>]
    index <n>
    <base64 hash>            (the inclusion proof, leaf's sibling first)
    ...
                             (an empty line)
    <the checkpoint note, verbatim>

What it proves needs nothing but the log's origin and key (and the witnesses'
keys for a cosigning policy): a client files one with each pinned contact key
and each receipt, and an auditor checks them without asking the relay. The
extra data is not authenticated; nothing here reads it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import LogFormatError, NoteError
from .checkpoint import Checkpoint, open_checkpoint
from .merkle import HASH_SIZE, MAX_PROOF_HASHES, leaf_hash, verify_inclusion
from .note import MAX_NOTE_SIZE, Verifier, b64

HEADER = "c2sp.org/tlog-proof@v1"
_INDEX = re.compile(r"index (0|[1-9][0-9]{0,18})")
MAX_EXTRA = 4096


def _unb64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise LogFormatError(f"the proof bundle's {what} is not valid base64") from exc
    if b64(raw) != text:
        raise LogFormatError(f"the proof bundle's {what} is not in canonical base64")
    return raw


@dataclass
class ProofBundle:
    index: int
    proof: list[bytes]
    checkpoint_note: str
    extra: bytes | None = None

    def text(self) -> str:
        if not isinstance(self.index, int) or not 0 <= self.index < 2**63:
            raise LogFormatError("a proof bundle's index must be a non-negative integer")
        if any(len(h) != HASH_SIZE for h in self.proof) or len(self.proof) > MAX_PROOF_HASHES:
            raise LogFormatError("a proof bundle's proof must be at most 63 hashes of 32 bytes")
        if not self.checkpoint_note:
            raise LogFormatError("a proof bundle needs its checkpoint")
        head = [HEADER]
        if self.extra is not None:
            head.append(f"extra {b64(self.extra)}")
        head.append(f"index {self.index}")
        head += [b64(h) for h in self.proof]
        return "\n".join(head) + "\n\n" + self.checkpoint_note

    @classmethod
    def parse(cls, text: str) -> ProofBundle:
        if not isinstance(text, str) or len(text) > MAX_NOTE_SIZE + 8192:
            raise LogFormatError("a proof bundle is not text of a reasonable size")
        head, sep, note = text.partition("\n\n")
        if not sep or not note:
            raise LogFormatError("a proof bundle has no checkpoint after an empty line")
        lines = head.split("\n")
        if lines[0] != HEADER:
            raise LogFormatError(f"a proof bundle must start with {HEADER}")
        at = 1
        extra = None
        if at < len(lines) and lines[at].startswith("extra "):
            extra = _unb64(lines[at][len("extra ") :], "extra data")
            if len(extra) > MAX_EXTRA:
                raise LogFormatError("a proof bundle's extra data is too long")
            at += 1
        m = _INDEX.fullmatch(lines[at]) if at < len(lines) else None
        if m is None:
            raise LogFormatError("a proof bundle's index line is missing or malformed")
        hashes = lines[at + 1 :]
        if len(hashes) > MAX_PROOF_HASHES:
            raise LogFormatError("a proof bundle's proof has more hashes than any tree needs")
        proof = [_unb64(h, "proof hash") for h in hashes]
        if any(len(h) != HASH_SIZE for h in proof):
            raise LogFormatError("a proof bundle's proof holds a hash that is not 32 bytes")
        return cls(index=int(m.group(1)), proof=proof, checkpoint_note=note, extra=extra)


def verify_bundle(
    bundle: ProofBundle,
    leaf_data: bytes,
    origin: str,
    verifiers: Sequence[Verifier],
    *,
    cosigners: Sequence[Verifier] = (),
    need: int = 0,
) -> Checkpoint:
    """The checkpoint ``bundle`` carries, once its signatures (log key, and
    ``need`` of ``cosigners``), its origin and the inclusion of ``leaf_data``
    at ``bundle.index`` all check. Raises NoteError, LogFormatError or
    LogProofError."""
    try:
        cp = open_checkpoint(
            bundle.checkpoint_note, origin, verifiers, cosigners=cosigners, need=need
        )
    except NoteError as exc:
        raise NoteError(f"the proof bundle's checkpoint does not check: {exc}") from exc
    verify_inclusion(bundle.index, cp.size, leaf_hash(leaf_data), bundle.proof, cp.root)
    return cp
