"""Cross-process locks on local blob writes: OFD byte-range locks on one file.

Why they exist: with several relay processes on one blob folder (PostgreSQL),
the upload lease (``server.leases``) says who may write an upload. But a
holder that stalls past its lease (a paused VM, a stopped process) and wakes
inside a chunk write still runs that write's clean-up, which cuts the partial
blob back to the write's offset (``LocalBlobStore.write_chunk``; ``_open_at``
cuts too), and by then another process may have committed chunks past it: a
committed chunk lost, and the upload stuck at ``complete``. A lease cannot stop
a write already under way; this lock can. A writer takes it after its lease
and checks the lease again under it (``server.locks.exclusive``), and holds
it until the blob is closed. A new holder then waits for a stalled one that is
inside its write (503 ``upload_busy`` if it waits too long: clients retry),
and a stalled one that wakes before the lock finds its lease gone and touches
nothing.

Open file description locks (``F_OFD_SETLK``), not ``flock`` on a file per
blob: they exclude two descriptors of one process as well as two processes
(tests run two stores in one process), they work on NFS, and they all live on
one file, so nothing is left to clean up when a blob goes. Each key locks one
byte at a position hashed from it, in a 2**62-byte range; two keys in use at
once share a byte with odds of about one in 10**18, which would cost a wait,
or, in one process, the exclusion of those two (never of one key's writes).

S3 needs none of this: a part upload replaces a part whole or not at all, and
nothing there is ever cut (``server.s3blobs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import os
import struct
from collections.abc import AsyncIterator
from pathlib import Path

from sealdrop.crypto.protocol import ErrorCode

from .errors import Busy

# struct flock on Linux x86-64 and arm64: l_type, l_whence, l_start, l_len, l_pid.
_FLOCK = struct.Struct("hhqqi4x")
_POLL_FIRST, _POLL_MAX = 0.02, 0.25


def position(key: str) -> int:
    """The byte ``key`` locks."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") >> 2


def _set(fd: int, kind: int, start: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _FLOCK.pack(kind, os.SEEK_SET, start, 1, 0))
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


class WriteLocks:
    """The write locks of one blob folder, on its file ``path``."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd

    @contextlib.asynccontextmanager
    async def hold(self, key: str, *, wait: float) -> AsyncIterator[None]:
        """Hold ``key``'s lock for the block; ``Busy`` after ``wait`` seconds."""
        fd, start = self._file(), position(key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        pause = _POLL_FIRST
        while not _set(fd, fcntl.F_WRLCK, start):
            if loop.time() >= deadline:
                raise Busy("another relay process is still writing this upload; try again "
                           "shortly", code=ErrorCode.UPLOAD_BUSY)
            await asyncio.sleep(pause)
            pause = min(pause * 2, _POLL_MAX)
        try:
            yield
        finally:
            _set(fd, fcntl.F_UNLCK, start)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # lets go of every lock this store still held
            self._fd = None
