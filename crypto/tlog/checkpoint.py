"""C2SP tlog-checkpoint: the signed head of the log, as the text of a note.

    <origin>\\n<tree size>\\n<base64 root hash>\\n[<extension line>\\n]...

The origin names the log (``sealdrop.invalid/<relay id>`` by default, no
scheme); a client pins it with the log's key, so that a checkpoint of another
log signed by the same key is still refused. Parsing is strict: one text per
checkpoint, so two clients comparing checkpoints compare bytes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import LogFormatError, NoteError
from .merkle import HASH_SIZE
from .note import Verifier, b64, open_note, unb64

_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")
MAX_SIZE = 2**63 - 1


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise LogFormatError("a checkpoint's origin must be one non-empty line")
        if not isinstance(self.size, int) or isinstance(self.size, bool) or not (
            0 <= self.size <= MAX_SIZE
        ):
            raise LogFormatError("a checkpoint's tree size must be a non-negative integer")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise LogFormatError(f"a checkpoint's root hash must be {HASH_SIZE} bytes")
        if any(not e or "\n" in e for e in self.extensions):
            raise LogFormatError("a checkpoint's extension lines must be non-empty lines")

    def text(self) -> str:
        return "".join(
            line + "\n"
            for line in (self.origin, str(self.size), b64(self.root), *self.extensions)
        )

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        if not isinstance(text, str) or not text.endswith("\n"):
            raise LogFormatError("a checkpoint must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise LogFormatError("a checkpoint needs an origin, a tree size and a root hash")
        origin, size, root64, *ext = lines
        if not _SIZE.fullmatch(size) or int(size) > MAX_SIZE:
            raise LogFormatError(
                "a checkpoint's tree size is not a decimal number without leading zeros"
            )
        try:
            root = unb64(root64, "a checkpoint's root hash")
        except NoteError as exc:
            raise LogFormatError(str(exc)) from exc
        return cls(origin, int(size), root, tuple(ext))


def open_checkpoint(
    note: str,
    origin: str,
    verifiers: Sequence[Verifier],
    *,
    cosigners: Sequence[Verifier] = (),
    need: int = 0,
) -> Checkpoint:
    """Open a checkpoint note: signed by one of the log's keys ``verifiers``,
    cosigned by at least ``need`` of ``cosigners``, for the log ``origin``.
    Raises NoteError (signatures) or LogFormatError (the text)."""
    opened = open_note(note, [*verifiers, *cosigners])
    # By (name, key id): a cosigner named like the log is not the log.
    if not {(v.name, v.key_id) for v in verifiers} & set(opened.signers):
        raise NoteError(f"the checkpoint is not signed by the log's key for {origin}")
    cosigned = {(v.name, v.key_id) for v in cosigners} & set(opened.signers)
    if len(cosigned) < need:
        raise NoteError(
            f"the checkpoint has {len(cosigned)} valid cosignatures of the {need} required"
        )
    cp = Checkpoint.parse(opened.text)
    if cp.origin != origin:
        raise LogFormatError(
            f"the checkpoint is for the log {cp.origin!r}, not the pinned log {origin!r}"
        )
    return cp
