"""Logs built in memory for the witness tests: a relay's signed checkpoints and
consistency proofs, without a relay (``sealdrop.crypto.tlog``'s MemoryHashes)."""

from __future__ import annotations

import hashlib

from sealdrop.crypto.tlog.checkpoint import Checkpoint
from sealdrop.crypto.tlog.cosignature import CosignatureSigner
from sealdrop.crypto.tlog.merkle import MemoryHashes, consistency_proof, leaf_hash, root
from sealdrop.crypto.tlog.note import NoteSigner, sign_note

ORIGIN = "sealdrop.invalid/test-relay"


def seed(label: str) -> bytes:
    """A fixed 32-byte seed per label: the tests' keys are the same at every run."""
    return hashlib.sha256(label.encode()).digest()


LOG_KEY = NoteSigner(ORIGIN, seed("log"))
WITNESS_KEY = CosignatureSigner("witness.test/w1", seed("w1"))


class Tree:
    """A log of ``entries``; ``fork`` changes one entry to make another history."""

    def __init__(self, size: int, *, fork_at: int | None = None,
                 signer: NoteSigner = LOG_KEY, origin: str = ORIGIN) -> None:
        leaves = [leaf_hash(f"entry {i}{' forked' if i == fork_at else ''}".encode())
                  for i in range(size)]
        self.hashes = MemoryHashes(leaves)
        self.checkpoint = Checkpoint(origin, size, root(size, self.hashes))
        self.note = sign_note(self.checkpoint.text(), [signer])

    async def proof_for(self, old: int) -> list[bytes]:
        return consistency_proof(old, self.checkpoint.size, self.hashes)
