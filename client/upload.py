"""The upload pipeline: ciphertext in, fixed-size checksummed chunks out to the relay.

    seal_planned --ciphertext--> ChunkUploader.write --queue(1)--> uploader thread --PATCH-->

The encryptor (on the caller's thread, itself using two crypto workers) writes
into a one-chunk buffer; full chunks go through a queue of ``depth`` chunks to a
thread that PATCHes them, so the next chunk is produced while one is in flight.
Memory: (depth + 2) chunks, whatever the transfer size.

Resuming: chunks that end at or before ``committed`` (what the relay already
holds) are regenerated, hashed and compared with the chunk log, then skipped,
never re-sent. A chunk that does not match means the source files changed:
``FilesChangedError``. Every other chunk's hash is appended to the log
before it is sent (client.outbox explains why).

Network loss and relay restarts are retried with exponential backoff for up
to ``retry_for`` seconds; then the send stops and can be run again to resume.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable
from typing import cast

from .errors import ClientError
from .outbox import ChunkJournal
from .relay_api import RelayClient, RelayConflict, RelayRateLimited, RelayUnavailable

DEFAULT_CHUNK = 8 * 1024 * 1024
_STOP = object()


class FilesChangedError(ClientError):
    """The regenerated ciphertext differs from what the relay already holds."""


class ChunkUploader:
    def __init__(
        self,
        relay: RelayClient,
        relay_id: str,
        *,
        size: int,
        chunk_size: int,
        committed: int,
        known_hashes: list[str],
        journal: ChunkJournal,
        on_progress: Callable[[int], None] | None = None,
        retry_for: float = 300.0,
        pause: float = 0.0,
        depth: int = 1,
    ) -> None:
        self._relay = relay
        self._id = relay_id
        self.size = size
        self._chunk = chunk_size
        self._committed = committed
        self._known = known_hashes
        self._journal = journal
        self._progress = on_progress
        self._retry_for = retry_for
        self._pause = pause
        self._buf = bytearray()
        self._index = 0
        self.produced = 0  # ciphertext bytes seen
        self.sent = 0  # bytes PATCHed by this run (not counting skipped ones)
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sealdrop-upload", daemon=True)
        self._thread.start()

    # --- producer side (the encryptor's writes) ---------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        while view:
            take = min(len(view), self._chunk - len(self._buf))
            self._buf += view[:take]
            view = view[take:]
            if len(self._buf) == self._chunk:
                self._emit()
        return n

    def _emit(self) -> None:
        chunk = bytes(self._buf)
        self._buf.clear()
        offset, index = self.produced, self._index
        self.produced += len(chunk)
        self._index += 1
        if self.produced > self.size:
            raise ClientError(
                f"the transfer came out larger than the {self.size} bytes announced; "
                "nothing was delivered, send again"
            )
        digest = hashlib.sha256(chunk).hexdigest()
        if offset + len(chunk) <= self._committed:
            if index >= len(self._known) or self._known[index] != digest:
                raise FilesChangedError(
                    "the files changed since the send started; the interrupted send was "
                    "cancelled, send again"
                )
            if self._progress is not None:
                self._progress(len(chunk))
            return
        if offset < self._committed:
            raise ClientError("the relay holds part of a chunk; the send cannot be resumed")
        if index < len(self._known) and self._known[index] != digest:
            raise FilesChangedError(
                "the files changed since the send started; the interrupted send was "
                "cancelled, send again"
            )
        if index >= len(self._known):
            self._journal.append(digest)  # write-ahead: logged before it can be committed
        self._put((offset, chunk, digest))

    def _put(self, item: object) -> None:
        while True:
            self._raise_if_failed()
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Send the last (short) chunk and wait until the relay holds everything."""
        if self._buf:
            self._emit()
        self._put(_STOP)
        while self._thread.is_alive():
            self._thread.join(0.2)
        self._raise_if_failed()
        if self.produced != self.size:
            raise ClientError(
                f"the transfer came out at {self.produced} bytes, not the {self.size} "
                "announced; nothing was delivered, send again"
            )

    def abort(self) -> None:
        self._stopping.set()
        while True:  # unblock the thread if it waits to hand over
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            pass
        self._thread.join(5)

    # --- the upload thread ---------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                item = self._queue.get()
                if item is _STOP:
                    return
                offset, chunk, _digest = cast(tuple[int, bytes, str], item)
                self._send(offset, chunk)
                self.sent += len(chunk)
                if self._progress is not None:
                    self._progress(len(chunk))
                if self._pause:
                    time.sleep(self._pause)
        except BaseException as exc:  # handed to the producer
            self._error = exc

    def _send(self, offset: int, chunk: bytes) -> None:
        deadline = time.monotonic() + self._retry_for
        delay = 0.5
        while True:
            if self._stopping.is_set():
                raise ClientError("upload stopped")
            try:
                self._relay.upload_chunk(self._id, offset, chunk)
                return
            except RelayConflict as exc:
                # Our previous attempt may have been committed before its answer was lost.
                if exc.offset is not None and exc.offset >= offset + len(chunk):
                    return
                raise
            except (RelayUnavailable, RelayRateLimited) as exc:
                if time.monotonic() + delay > deadline:
                    raise RelayUnavailable(
                        f"the relay stayed unreachable; {offset} of {self.size} bytes are "
                        "safely uploaded",
                        hint="run the same `sealdrop send` again to resume where it stopped",
                    ) from exc
                wait = getattr(exc, "retry_after", 0) or delay
                time.sleep(min(wait, 30.0))
                delay = min(delay * 2, 30.0)
