"""The per-transfer upload lock: an in-process queue in front of a database lease.

Chunk writes, ``complete`` and ``delete`` of one transfer run one at a time
under its lock (``exclusive``): the committed offset is re-read under it, so
two requests for the same upload never write the partial blob at once, in
one relay process or across several on one database. Two layers:

* the lease ``upload:<transfer id>`` in the database (``server.leases``) is
  what excludes other processes, and what a request resumed on another
  process after this one died waits for (at most the lease's lifetime);
* in front of it, this process's ``asyncio.Lock`` per transfer, so requests
  arriving here for the same upload (the client's two upload lanes) queue in
  order without polling the database. The lock alone excludes nothing
  across processes.

A third layer where processes share a blob folder: under the lease, the
blob's write lock (``server.writelocks``), and under that the lease is read
once more. A holder that stalled past its lease (a paused VM) and wakes finds
it gone there and touches nothing; one that stalled inside its write holds
the write lock, so the new holder waits for it instead of having its
committed bytes cut by the stalled one's clean-up.

Either wait is bounded (``server.leases.WAIT_SECONDS``), then the request is
answered ``503 upload_busy``, which clients send again.

An entry lives as long as its upload: whatever removes an upload (complete,
delete, gc of an expired or abandoned one) drops it, so the table holds at
most the uploads in progress, never every transfer the process has seen.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from sealdrop.crypto.protocol import ErrorCode

from .errors import Busy
from .leases import WAIT_SECONDS, Held, Leases

if TYPE_CHECKING:
    from .blobs import BlobStore


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


def upload_lease(transfer_id: str) -> str:
    """The name of a transfer's lease (``server.leases``)."""
    return "upload:" + transfer_id


@contextlib.asynccontextmanager
async def exclusive(
    locks: TransferLocks, leases: Leases | None, blobs: BlobStore, transfer_id: str, *,
    wait: float = WAIT_SECONDS,
) -> AsyncIterator[Held | None]:
    """Hold ``transfer_id``'s lock in this process and its lease in the database
    for the block; yields the lease, to fence the commit with
    (``SqlMetadataStore.advance``). ``Busy`` after ``wait`` seconds in all.

    ``leases`` None: this process is the database's only one (SQLite: ``serve``
    refuses a second, server.cli), so the lock is enough and yields None; the
    lease would cost two statements and a commit per chunk (``bench_relay``:
    49 transfers/s with it, 64 without)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    lock = locks(transfer_id)
    try:
        async with asyncio.timeout(wait):
            await lock.acquire()
    except TimeoutError:
        raise Busy("another request is writing this upload; try again shortly",
                   code=ErrorCode.UPLOAD_BUSY) from None
    try:
        if leases is None:
            yield None
            return
        left = max(0.0, deadline - loop.time())
        async with leases.hold(upload_lease(transfer_id), wait=left) as lease:
            if not blobs.writes_can_cut:
                yield lease
                return
            left = max(0.0, deadline - loop.time())
            async with blobs.write_lock(transfer_id, wait=left):
                if not await leases.holds(lease):
                    raise Busy("this upload was taken over by another request; try again",
                               code=ErrorCode.UPLOAD_BUSY)
                yield lease
    finally:
        lock.release()
