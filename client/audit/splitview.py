"""``sealdrop audit --compare FILE``: the checkpoint another client saw, held against ours.

Another practice (or a witness, or the DPO of another practice) saves the
relay's checkpoint note it verified (``sealdrop audit --json`` prints it as
``checkpoint.note``) and hands it over. The two are one history iff the
smaller tree is a prefix of the larger; the check itself is
``client.witness.compare.compare_checkpoints``, over the tree this audit just
rebuilt from every entry (so it needs no more requests). A checkpoint larger
than the relay's current one cannot be a prefix of it: the relay went back,
or shows the other client a tree this one does not see.
"""

from __future__ import annotations

from collections.abc import Sequence

from sealdrop.crypto.errors import LogFormatError, NoteError
from sealdrop.crypto.tlog.checkpoint import open_checkpoint
from sealdrop.crypto.tlog.merkle import MemoryHashes, leaf_hash
from sealdrop.crypto.tlog.note import NoteVerifier

from ..errors import ClientError, SplitViewError
from ..witness.compare import compare_checkpoints
from .model import Comparison, Failure

MAX_NOTE = 64 * 1024  # a signed note; C2SP signed-note's limits are far below


def as_note(text: str) -> str:
    """A checkpoint file as its signed note: a file passed through an e-mail or a
    Windows editor has CRLF line ends, and every text reader drops the final line
    break; a signed note has LF ends and a last one (C2SP signed-note)."""
    text = text.replace("\r\n", "\n")
    return text if text.endswith("\n") else text + "\n"


def compare(mine: str, theirs: str, vkey: str, entries: Sequence[bytes]
            ) -> tuple[Comparison, Failure | None]:
    """``mine``: the note this audit verified, of ``len(entries)`` entries.
    Raises ClientError if ``theirs`` is not a checkpoint signed by the pinned key."""
    theirs = as_note(theirs)
    verifier = NoteVerifier.from_vkey(vkey)
    try:
        other = open_checkpoint(theirs, verifier.name, [verifier])
    except (NoteError, LogFormatError) as exc:
        raise ClientError(f"the checkpoint to compare with is not one signed by the relay's "
                          f"pinned key ({exc}); it proves nothing about this relay") from exc
    seen = Comparison(origin=other.origin, size=other.size, root=other.root, consistent=True)
    if other.size > len(entries):
        return (Comparison(origin=other.origin, size=other.size, root=other.root,
                           consistent=False),
                Failure(text=(
                    f"the other client saw the relay's log at {other.size} entries, more than "
                    f"the {len(entries)} it shows now: the relay went back or shows two "
                    "different histories")))
    try:
        # The larger tree is ours (the larger case was answered above).
        tree = MemoryHashes([leaf_hash(e) for e in entries])
        compare_checkpoints(mine, theirs, verifier, lambda _size: tree)
    except SplitViewError as exc:
        return (Comparison(origin=other.origin, size=other.size, root=other.root,
                           consistent=False), Failure(text=str(exc)))
    return seen, None
