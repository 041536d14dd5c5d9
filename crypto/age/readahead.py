"""A thread that reads an age payload's next batches while the caller uses the last.

Receiving 1 GiB on one thread, the caller's thread took the relay's bytes off
the socket and journalled them, then hashed and wrote the plaintext the
workers had opened: the two halves waited on each other, about one core busy
of two. Here a reader thread takes the first half, a bounded number of
batches ahead (each batch owns one of the reader's buffer sets, handed back
when the caller moves past it), so the two overlap. Every blocking call it
makes releases the GIL (socket reads, file writes, the AEAD on the workers).

What the source raises is raised to the caller in order, after the batches
read before it. ``stop`` asks the source to ``abort`` a read that may block
(a network body: its socket is shut down) and waits for the thread, so no
read or write of the source happens after it returns.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class ReadAhead(Generic[T]):
    """Calls ``read()`` on a thread, at most ``slots`` results ahead of the caller.

    ``read`` returns one item and whether it was the last; ``abort`` (may be
    None) makes a read blocked in the source return soon, by failing.
    """

    def __init__(self, read: Callable[[], tuple[T, bool]], *, slots: int,
                 abort: Callable[[], object] | None = None) -> None:
        self._read = read
        self._abort = abort
        self._free = threading.Semaphore(slots)
        self._ready: queue.SimpleQueue[tuple[T | None, BaseException | None]] = (
            queue.SimpleQueue())
        self._stopping = False
        self._busy = False  # inside read(): what stop must abort
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="age-read-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                self._free.acquire()
                with self._lock:
                    if self._stopping:
                        return
                    self._busy = True
                try:
                    item, last = self._read()
                finally:
                    with self._lock:
                        self._busy = False
                self._ready.put((item, None))
                if last:
                    return
        except BaseException as exc:  # handed to the caller, in order
            self._ready.put((None, exc))

    def next(self) -> T:
        """The next item; raises what the source raised in its place."""
        item, exc = self._ready.get()
        if exc is not None:
            raise exc
        return item  # type: ignore[return-value]

    def release(self) -> None:
        """The caller is done with one item: its slot may be read into again."""
        self._free.release()

    def stop(self) -> None:
        """Stop reading ahead and wait for the thread; idempotent."""
        with self._lock:
            self._stopping = True
            busy = self._busy
        if busy and self._abort is not None:
            self._abort()
        self._free.release()
        self._thread.join()
