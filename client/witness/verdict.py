"""What the witness answers to one add-checkpoint request: pure, no I/O, no clock.

The checks of C2SP tlog-witness, in its order: a known origin (404), a valid
signature from a trusted log key (403), an old size not above the new one
(400), the old size equal to what this witness last cosigned (409 with its
size), equal roots when the sizes are equal (409), and a consistency proof
from the cosigned root to the new one (422). Only a request that passes all of
them may move the stored head forward and be cosigned.

A 422, or a 409 for equal sizes with different roots, is a signed statement
by the log that contradicts one it made before: ``evidence`` is set so that
the service logs it loudly and keeps the request (the note is the proof).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sealdrop.crypto.errors import LogFormatError, LogProofError, NoteError
from sealdrop.crypto.tlog.checkpoint import Checkpoint, open_checkpoint
from sealdrop.crypto.tlog.merkle import verify_consistency
from sealdrop.crypto.tlog.note import NoteVerifier
from sealdrop.crypto.witness import AddCheckpoint

from .state import Head


@dataclass(frozen=True, slots=True)
class Accept:
    checkpoint: Checkpoint
    text: str  # the note's text exactly as the log signed it: what is cosigned
    head: Head  # to store (fsynced) before the cosignature leaves


@dataclass(frozen=True, slots=True)
class Refuse:
    status: int
    reason: str  # one sentence, for the log and the answer's body
    size: int | None = None  # a 409's body: the size this witness cosigned
    evidence: bool = False  # the log signed something contradicting its past


def _note_text(note: str) -> str:
    """The note's text (up to the last blank line, as ``open_note`` splits it)."""
    split = note.rfind("\n\n")
    if split < 0:
        raise LogFormatError("the checkpoint note has no signature lines")
    return note[:split + 1]


def judge(req: AddCheckpoint, logs: Mapping[str, Sequence[NoteVerifier]],
          heads: Mapping[str, Head]) -> Accept | Refuse:
    try:
        text = _note_text(req.note)
        checkpoint = Checkpoint.parse(text)
    except LogFormatError as exc:
        return Refuse(400, f"the checkpoint is malformed: {exc}")
    origin = checkpoint.origin
    verifiers = logs.get(origin)
    if not verifiers:
        return Refuse(404, f"this witness does not follow the log {origin!r}")
    try:
        open_checkpoint(req.note, origin, list(verifiers))
    except (NoteError, LogFormatError) as exc:
        return Refuse(403, f"the checkpoint of {origin!r} carries no valid signature "
                           f"from a log key this witness trusts ({exc})")
    if req.old_size > checkpoint.size:
        return Refuse(400, f"the old size {req.old_size} is larger than the checkpoint's "
                           f"size {checkpoint.size}")
    known = heads.get(origin)
    known_size = known.size if known else 0
    if req.old_size != known_size:
        return Refuse(409, f"this witness last cosigned size {known_size} of {origin!r}, "
                           f"not {req.old_size}", size=known_size)
    if known is None:
        # Nothing cosigned yet: trust on first use, as the spec defines (old 0, no proof).
        return Accept(checkpoint, text, Head(checkpoint.size, checkpoint.root))
    if checkpoint.size == known.size and checkpoint.root != known.root:
        return Refuse(409, f"FORK: the log {origin!r} signed two different trees of size "
                           f"{known.size}; this witness cosigned the other one",
                      size=known.size, evidence=True)
    try:
        verify_consistency(known.size, checkpoint.size, list(req.proof), known.root,
                           checkpoint.root)
    except LogProofError as exc:
        return Refuse(422, f"FORK?: the checkpoint of {origin!r} at size {checkpoint.size} "
                           f"is not proven to extend the cosigned size {known.size} ({exc})",
                      evidence=True)
    return Accept(checkpoint, text, Head(checkpoint.size, checkpoint.root))
