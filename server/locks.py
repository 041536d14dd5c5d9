"""The per-transfer lock table of one relay process.

Chunk writes, ``complete`` and ``delete`` of one transfer run one at a time
under its lock: the committed offset is re-read under it, so two requests for
the same upload never write the partial blob at once. (Several relay
processes are kept apart by the database's conditional updates instead; see
server.metadata.)

An entry lives as long as its upload: whatever removes an upload (complete,
delete, gc of an expired or abandoned one) drops it, so the table holds at
most the uploads in progress, never every transfer the process has seen.
"""

from __future__ import annotations

import asyncio


class TransferLocks:
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    def __call__(self, transfer_id: str) -> asyncio.Lock:
        """The lock of ``transfer_id``, made on first use."""
        lock = self._locks.get(transfer_id)
        if lock is None:
            lock = self._locks[transfer_id] = asyncio.Lock()
        return lock

    def drop(self, transfer_id: str) -> None:
        """Forget the lock of a transfer that is gone or no longer being uploaded.

        Safe while a request still holds it: a request that takes a lock for the
        id afterwards re-reads the row under it and finds the transfer complete
        or gone; one already past that check cannot commit to a row that is
        gone (the database's conditional update refuses it)."""
        self._locks.pop(transfer_id, None)

    def __len__(self) -> int:
        return len(self._locks)

    def __contains__(self, transfer_id: object) -> bool:
        return transfer_id in self._locks
