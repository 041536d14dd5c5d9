"""A transfer's ciphertext as it arrives: the spool first, then the relay, journalled.

``incoming`` is a reader of the whole ciphertext for the decryptor: what the
spool (``profile.spool``) already holds, read back, then the rest of the blob
from the relay (HTTP Range from the spool's length), each block appended to
the spool as it passes. The spool is the resume journal: written, never read
again unless a receive was interrupted, so a run killed at any point (even
with SIGKILL) continues where the relay's bytes stopped instead of
downloading them again. Nothing here decrypts: the ciphertext authenticates
itself chunk by chunk in the decryptor.

Why a ciphertext journal rather than checkpoints at STREAM chunk boundaries:
resuming from a checkpoint would need the SHA-256 state of the file being
staged (hashlib cannot save one) or a re-read of the staged plaintext, and
would keep unverified plaintext across runs, which the staging area promises
not to do (``stagearea.sweep``). Appending what arrives costs one write per
block into the page cache, not fsynced (the spool is a cache: see
``profile.spool``). Measured (1 GiB, three runs each, machine shared): about
1.2 s of system CPU per GiB (2.5 s with the journal, 1.35 s without), the
price of resuming after a kill -9 without downloading again. At 4 GiB, where
the journal no longer stays in the page cache beside everything else, it
cost 11 of 28 CPU-seconds (17 without). Dropping it behind as it is written
(POSIX_FADV_DONTNEED) cut that to 19.5 but doubled the wall time at 1 GiB
(10.7 s against 4.8 to 7.3 s), by writing to the disk what is otherwise
deleted unwritten: not taken. Checkpoints at chunk boundaries, which need no
journal, are the way to remove this cost (see the first paragraph for what
they must solve).

In the one pass, ``Incoming`` is read by the age reader's read-ahead thread
(``crypto.age.readahead``): the socket and the journal on that thread, the
hash and the staging write on the caller's, so the two overlap. If the
reader stops (a signal, a refusal) while that thread waits on a silent
relay, ``abort`` shuts the socket down so it returns at once; the reader
waits for it before the journal's descriptor is closed here.

``download`` only fills the spool (for the two readings of ``staging``).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import ReceiveError
from ..profile.session import Session
from ..relay_api import BlobReader, RelayProtocolError

Progress = Callable[[int, int], None]
_BLOCK = 1 << 20


class Incoming:
    """The ciphertext of ``relay_id``: ``readinto`` until 0 at exactly ``size`` bytes.

    A relay that serves a blob of another size than it announced stops the
    receive (``RelayProtocolError``); a download cut short raises the relay
    client's RelayUnavailable, never an early end, so the decryptor never
    mistakes an interrupted download for a truncated transfer.
    """

    def __init__(self, session: Session, relay_id: str, fd: int, *, held: int, size: int,
                 start: int, on_progress: Progress | None, pause: float,
                 stack: contextlib.ExitStack) -> None:
        self._session, self._id, self._fd = session, relay_id, fd
        self._held, self.size, self.pos = held, size, start
        self._progress, self._pause, self._stack = on_progress, pause, stack
        self._blob: BlobReader | None = None

    @property
    def complete(self) -> bool:
        """Whether every byte of the blob has passed (the relay may be told "downloaded")."""
        return self.pos == self.size

    def _relay(self) -> BlobReader:
        if self._blob is None:
            blob = self._stack.enter_context(
                self._session.relay.open_download(self._id, offset=self._held))
            if blob.size != self.size:  # the relay's fault, not a local one
                raise RelayProtocolError(
                    f"the relay served {blob.size} bytes for {self._id} but announced "
                    f"{self.size}; download stopped")
            self._blob = blob
        return self._blob

    def readinto(self, buf: bytearray | memoryview, /) -> int:
        view = memoryview(buf).cast("B")[: min(len(buf), self.size - self.pos, _BLOCK)]
        if not view:
            return 0
        if self.pos < self._held:  # resuming: what an earlier run journalled
            n = os.preadv(self._fd, [view[: self._held - self.pos]], self.pos)
            if n <= 0:
                raise ReceiveError(f"the spooled download of {self._id} shrank; run receive "
                                   "again")
        else:
            n = self._relay().readinto(view)
            if n == 0:  # the relay client raises on a short body; this is a guard
                raise ReceiveError(f"the download of {self._id} is incomplete; run receive "
                                   "again")
            _write_all(self._fd, view[:n])
            self._held += n
            if self._pause:
                time.sleep(self._pause)
        self.pos += n
        if self._progress is not None:
            self._progress(self.pos, self.size)
        return n

    def abort(self) -> None:
        """A read blocked on the relay, on another thread, fails now (the decryptor's
        read-ahead is being stopped); what came before stays journalled."""
        if self._blob is not None:
            self._blob.abort()

    def read(self, n: int = -1, /) -> bytes:
        buf = bytearray(_BLOCK if n < 0 else min(n, _BLOCK))
        got = self.readinto(buf)
        return bytes(memoryview(buf)[:got])  # one copy, not two


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data):]


@contextlib.contextmanager
def incoming(session: Session, relay_id: str, *, size: int,
             on_progress: Progress | None = None, pause_after_block: float = 0.0,
             replay: bool = True) -> Iterator[Incoming]:
    """The ciphertext of ``relay_id`` (``size`` bytes, as the relay announced it).

    ``on_progress(done, total)`` hears each block (at most 1 MiB);
    ``pause_after_block`` seconds are slept after each block from the relay, a
    crude rate limit for callers that need one. ``replay=False`` starts at the
    spool's end (the caller reads the spool itself).
    """
    path = session.spool.path(relay_id)  # first: checks the id before it goes in a URL
    held = session.spool.held(relay_id, size)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ReceiveError(f"cannot write the download spool {path}: {exc.strerror}") from exc
    try:
        with contextlib.ExitStack() as stack:
            src = Incoming(session, relay_id, fd, held=held, size=size,
                           start=0 if replay else held, on_progress=on_progress,
                           pause=pause_after_block, stack=stack)
            if on_progress is not None and src.pos:
                on_progress(src.pos, size)
            yield src
    finally:
        os.close(fd)


def download(session: Session, relay_id: str, *, on_progress: Progress | None = None,
             pause_after_block: float = 0.0, size: int | None = None) -> Path:
    """The complete ciphertext of ``relay_id`` in the spool; returns its path.

    ``size``: the blob size the relay announced (asked for if not given).
    """
    if size is None:
        size = int(session.relay.status(relay_id)["size"])
    with incoming(session, relay_id, size=size, on_progress=on_progress,
                  pause_after_block=pause_after_block, replay=False) as src:
        buf = bytearray(_BLOCK)
        while src.readinto(buf):
            pass
        if not src.complete:  # pragma: no cover - readinto raises first
            raise ReceiveError(f"the download of {relay_id} is incomplete; run receive again")
    return session.spool.path(relay_id)
