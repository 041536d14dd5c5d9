"""Split views: do two checkpoints of the relay's log describe one history?

Two checkpoints signed by the relay's pinned key are consistent iff the
smaller tree is a prefix of the larger (an RFC 9162 consistency proof between
them verifies) or, at equal sizes, their roots are equal. Anything else means
the relay signed two histories: it showed one to this practice and another to
whoever holds the other checkpoint (``sealdrop audit --compare``).

Pure: the proof is computed from ``hashes_for_size(n)``, the subtree hashes
of the relay's tree at the larger size n (``lambda n: TileHashes(n, fetch)``
over its tiles), and checked against both signed roots, so the hashes need no
trust: a relay that serves wrong tiles fails the check exactly like one that
forked.
"""

from __future__ import annotations

from collections.abc import Callable

from sealdrop.crypto.errors import LogFormatError, LogProofError, NoteError
from sealdrop.crypto.tlog.checkpoint import Checkpoint, open_checkpoint
from sealdrop.crypto.tlog.merkle import SubtreeHashes, consistency_proof, verify_consistency
from sealdrop.crypto.tlog.note import NoteVerifier

from ..errors import ClientError, SplitViewError

_HINT = ("keep both checkpoint files: together they are the relay's signed proof of "
         "two histories. Stop sending through this relay and tell its operator and "
         "your data protection officer")


def _open(note: str, whose: str, log_verifier: NoteVerifier) -> Checkpoint:
    try:
        # The log key is named by the log's origin: a note for another log is refused.
        return open_checkpoint(note, log_verifier.name, [log_verifier])
    except (NoteError, LogFormatError) as exc:
        raise ClientError(f"{whose} checkpoint is not one signed by the relay's pinned "
                          f"key ({exc}); it proves nothing about this relay") from exc


def compare_checkpoints(mine: str, theirs: str, log_verifier: NoteVerifier,
                        hashes_for_size: Callable[[int], SubtreeHashes],
                        ) -> tuple[Checkpoint, Checkpoint]:
    """Both checkpoints, parsed, if one history explains them; else SplitViewError."""
    a = _open(mine, "this profile's", log_verifier)
    b = _open(theirs, "the other", log_verifier)
    if a.size == b.size:
        if a.root != b.root:
            raise SplitViewError(
                f"the relay showed two different histories: two checkpoints of size {a.size} "
                "with different roots, both signed by its key", hint=_HINT)
        return a, b
    small, large = (a, b) if a.size < b.size else (b, a)
    try:
        proof = consistency_proof(small.size, large.size, hashes_for_size(large.size))
        verify_consistency(small.size, large.size, proof, small.root, large.root)
    except (LogProofError, LogFormatError) as exc:
        raise SplitViewError(
            f"the relay showed two different histories: its checkpoint of size {small.size} "
            f"is not a prefix of its checkpoint of size {large.size} ({exc})",
            hint=_HINT) from exc
    return a, b
