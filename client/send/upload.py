"""The upload pipeline: ciphertext in, fixed-size checksummed chunks out to the relay.

    seal.seal --ciphertext--> ChunkUploader.reserve/commit --queue--> upload lanes
                                                      hash, log in order, PATCH -->

The encryptor (on the caller's thread, itself using two crypto workers) seals
straight into the chunk buffers, which the uploader lends it (``reserve``,
then ``commit`` once sealed; crypto.age.stream.Lender); what it writes
itself (the age header) is copied in by ``write``. Full chunks go through a
queue to ``lanes`` upload
threads, each with its own connection. A lane hashes its chunk once (the
digest serves the chunk log, the request signature and the
Sealdrop-Chunk-Blake3 header, or Sealdrop-Chunk-Sha256 for a relay older than
BLAKE3: crypto.chunkhash) and PATCHes it. Why two lanes: the relay
commits chunks strictly in order, but each request also costs a signature
check and a few database round trips; with the next chunk's request already
authenticated and waiting at the relay while the current one is written, that
latency is hidden instead of idling the link once per chunk. A lane whose
chunk reached the relay before its predecessor's (409, offset behind) waits
for the predecessor and sends again. The buffers are recycled, never copied:
memory is (lanes + depth) chunks, whatever the transfer size (plus at most one
encryptor batch when chunks are smaller than a batch: see ``reserve``).

Resuming: chunks that end at or before ``committed`` (what the relay already
holds) are regenerated, hashed and compared with the chunk log, then skipped,
never re-sent. A chunk that does not match means the source files changed:
``FilesChangedError``. Every other chunk's hash is appended to the log
before it is sent (``profile.outbox`` explains why).

The relay may move its committed offset *back* after a power loss (it does
not fsync every chunk; docs/protocol.md): a running send then stops with a
hint to run it again, which resumes from the relay's offset.

Network loss and relay restarts are retried with exponential backoff for up
to ``retry_for`` seconds, each wait told to ``on_retry(seconds, error)`` (the
progress bar's "relay unreachable, retrying in 8 s (upload safe)"); then the
send stops with the relay's URL, what went wrong and how much the relay holds,
and can be run again to resume.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar, cast

from sealdrop.crypto import chunkhash, protocol
from sealdrop.crypto.protocol import ErrorCode

from ..cli.format import human_size
from ..errors import ClientError, FilesChangedError, join_hints
from ..profile.outbox import ChunkJournal
from ..relay_api import (
    RelayClient,
    RelayConflict,
    RelayError,
    RelayRateLimited,
    RelayUnavailable,
)

# Why 12 MiB by default (crypto.protocol.DEFAULT_CHUNK_SIZE): every chunk
# costs a request (signature, nonce, database commit), so larger chunks go
# faster (8 MiB measured ~15% slower than 12 or 16 MiB); three buffers of
# 16 MiB would take the client to the edge of its 150 MB RSS budget (the age
# stream and Python take ~100 MB by themselves). The bounds of --chunk-size:
# at least 64 KiB (below that the per-request cost dominates), at most 16 MiB
# (the relay's default maximum chunk, and the memory budget's). A relay
# configured with a smaller maximum says so (``GET /v1/info``) and a new send
# uses the smaller of the two (``fit_chunk_size``).
MIN_CHUNK_SIZE = protocol.MIN_CHUNK_SIZE
MAX_CHUNK_SIZE = 16 * 1024 * 1024
DEFAULT_LANES = 2
_STOP = object()
RESUME_HINT = "Your upload is safe: run the same command again to resume."
OnRetry = Callable[[float, RelayError], None]
T = TypeVar("T")


def ride_out(call: Callable[[], T], *, retry_for: float, on_retry: OnRetry | None) -> T:
    """``call()``, again with the chunks' backoff while the relay is down or busy.

    For the requests that close an upload (``complete``, the log check after
    it): both are safe to repeat, and a send whose bytes are all on the relay
    must not stop at its last step because the relay's database restarted
    (tests/e2e/test_pg_restart.py met it; tests/e2e/test_send_finish_faults.py
    forces it)."""
    deadline = time.monotonic() + retry_for
    delay = 0.5
    while True:
        try:
            return call()
        except (RelayUnavailable, RelayRateLimited) as exc:
            wait = min(getattr(exc, "retry_after", 0) or delay, 30.0)
            if time.monotonic() + wait > deadline:
                raise
            if on_retry is not None:
                on_retry(wait, exc)
            time.sleep(wait)
            delay = min(delay * 2, 30.0)


def check_chunk_size(chunk_size: int) -> int:
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ClientError(
            f"the chunk size must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} bytes, "
            f"not {chunk_size}"
        )
    return chunk_size


def fit_chunk_size(
    chunk_size: int, relay_limit: int | None, relay_least: int | None = None
) -> int:
    """The chunk size a new send uses: ``chunk_size``, or less if the relay accepts
    less (``relay_limit``: its advertised ``max_chunk_bytes``; None from an older
    relay that does not say), or more if the relay needs more (``relay_least``:
    its ``min_chunk_bytes``, 5 MiB from a relay that stores blobs in S3)."""
    if relay_least is not None and chunk_size < relay_least:
        if relay_least > min(MAX_CHUNK_SIZE, relay_limit or MAX_CHUNK_SIZE):
            raise ClientError(
                f"the relay needs chunks of at least {relay_least} bytes, more than the "
                f"{min(MAX_CHUNK_SIZE, relay_limit or MAX_CHUNK_SIZE)} this client can send",
                hint="ask the relay operator to check max_chunk_bytes",
            )
        return relay_least
    if relay_limit is None or relay_limit >= chunk_size:
        return chunk_size
    if relay_limit < MIN_CHUNK_SIZE:
        raise ClientError(
            f"the relay accepts chunks of at most {relay_limit} bytes, less than the "
            f"{MIN_CHUNK_SIZE} this client needs",
            hint="ask the relay operator to raise max_chunk_bytes to at least 64 KiB",
        )
    return relay_limit


class ChunkUploader:
    """A writer of ciphertext that uploads it in ``chunk_size`` chunks (see above).

    ``pause_after_chunk``: seconds each lane sleeps after a chunk, a crude rate
    limit for callers that need one (0: none). ``on_retry(seconds, error)``: a
    lane is about to wait that long before sending again (called on the lane's
    thread).
    """

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
        pause_after_chunk: float = 0.0,
        depth: int = 1,
        lanes: int = DEFAULT_LANES,
        on_retry: OnRetry | None = None,
        algorithm: str = chunkhash.SHA256,
    ) -> None:
        self._relay = relay
        self._algorithm = algorithm
        self._id = relay_id
        self.size = size
        self._chunk = chunk_size
        self._committed = committed
        self._known = known_hashes
        self._journal = journal
        self._progress = on_progress
        self._retry_for = retry_for
        self._pause = pause_after_chunk
        self._on_retry = on_retry
        # One chunk in flight per lane, ``depth`` filling or waiting for a lane: the
        # pool of buffers, not the queue, bounds memory.
        self._free: queue.Queue[bytearray] = queue.Queue()
        self._buffers = max(1, lanes) + max(1, depth)
        for _ in range(self._buffers):
            self._free.put(self._new_buffer())
        self._buf = self._free.get()
        self._fill = 0
        # Lent to the encryptor (``reserve``), not yet written: buffers taken
        # beyond the current one, and the bytes reserved past ``_fill``.
        self._ahead: deque[bytearray] = deque()
        self._reserved = 0
        self._index = 0
        self.produced = 0  # ciphertext bytes seen
        self.sent = 0  # bytes PATCHed by this run (not counting skipped ones)
        self._queue: queue.Queue[object] = queue.Queue()
        self._error: BaseException | None = None
        self._stopping = threading.Event()
        # Chunk order across lanes: the next chunk index to log, and the end of the
        # contiguous run of chunks the relay confirmed.
        self._order = threading.Condition()
        self._next_log = 0
        self._confirmed = committed
        self._done: dict[int, int] = {}  # offset -> end of confirmed chunks past the run
        self._clients = [relay] + [relay.clone() for _ in range(max(1, lanes) - 1)]
        self._threads = [
            threading.Thread(target=self._run, args=(c,), name=f"sealdrop-upload-{i}",
                             daemon=True)
            for i, c in enumerate(self._clients)
        ]
        for t in self._threads:
            t.start()

    # --- producer side (the encryptor's writes) ---------------------------------

    def reserve(self, n: int, wait: bool) -> list[memoryview] | None:
        """Lend the next ``n`` bytes of the chunk buffers for ciphertext to be sealed
        into in place (crypto.age.stream.Lender; copying it in cost 0.22 CPU-s per
        GiB, measured). None if that needs a free buffer and ``wait`` is False;
        ``commit`` them, in order, once written."""
        self._raise_if_failed()
        end = self._fill + self._reserved + n
        if self.produced + end > self.size:
            raise ClientError(
                f"the transfer came out larger than the {self.size} bytes announced; "
                "nothing was delivered, send again"
            )
        missing = max(0, (end - 1) // self._chunk - len(self._ahead))
        taken: list[bytearray] = []
        try:
            for _ in range(missing):
                if not wait:
                    taken.append(self._free.get_nowait())
                elif 1 + len(self._ahead) + len(taken) >= self._buffers:
                    # One reservation spans every buffer (chunks smaller than the
                    # encryptor's batch): none would ever come back, so the pool
                    # grows, by at most a batch of ciphertext.
                    self._buffers += 1
                    taken.append(self._new_buffer())
                else:
                    taken.append(self._take_free())
        except queue.Empty:
            for buf in taken:
                self._free.put(buf)
            return None
        self._ahead.extend(taken)
        views = []
        pos = self._fill + self._reserved
        self._reserved += n
        while n:
            b, at = divmod(pos, self._chunk)
            buf = self._buf if b == 0 else self._ahead[b - 1]
            take = min(n, len(buf) - at)
            views.append(memoryview(buf)[at : at + take])
            pos += take
            n -= take
        return views

    def commit(self, n: int) -> None:
        """The oldest ``n`` reserved bytes hold their ciphertext: chunks that are full
        go to the upload lanes."""
        if not 0 <= n <= self._reserved:
            raise ValueError("commit of bytes that were not reserved")
        self._reserved -= n
        while n:
            take = min(n, self._chunk - self._fill)
            self._fill += take
            n -= take
            if self._fill == self._chunk:
                self._emit()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._reserved:
            raise ValueError("write while ciphertext is reserved in the chunk buffers")
        view = memoryview(data).cast("B")
        n = len(view)
        while view:
            take = min(len(view), self._chunk - self._fill)
            self._buf[self._fill:self._fill + take] = view[:take]
            self._fill += take
            view = view[take:]
            if self._fill == self._chunk:
                self._emit()
        return n

    def _emit(self) -> None:
        buf, n = self._buf, self._fill
        offset, index = self.produced, self._index
        self.produced += n
        self._index += 1
        if self.produced > self.size:
            raise ClientError(
                f"the transfer came out larger than the {self.size} bytes announced; "
                "nothing was delivered, send again"
            )
        if offset + n <= self._committed:
            digest = chunkhash.hex_digest(self._algorithm, memoryview(buf)[:n])
            if index >= len(self._known) or self._known[index] != digest:
                raise FilesChangedError(
                    "the files changed since the send started; the interrupted send was "
                    "cancelled, send again"
                )
            self._free.put(buf)  # the relay holds it: the buffer is free at once
            self._buf = self._next_buffer()
            self._fill = 0
            with self._order:
                self._next_log = index + 1
            if self._progress is not None:
                self._progress(n)
            return
        if offset < self._committed:
            raise ClientError("the relay holds part of a chunk; the send cannot be resumed")
        self._put((offset, index, buf, n))
        self._buf = self._next_buffer()
        self._fill = 0

    def _new_buffer(self) -> bytearray:
        return bytearray(min(self._chunk, max(self.size, 1)))

    def _next_buffer(self) -> bytearray:
        return self._ahead.popleft() if self._ahead else self._take_free()

    def _take_free(self) -> bytearray:
        while True:
            self._raise_if_failed()
            try:
                return self._free.get(timeout=0.2)
            except queue.Empty:
                continue

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
        if self._reserved:
            raise ValueError("close while ciphertext is reserved in the chunk buffers")
        if self._fill:
            self._emit()
        for _ in self._threads:
            self._put(_STOP)
        for t in self._threads:
            while t.is_alive():
                t.join(0.2)
        self._close_clones()
        self._raise_if_failed()
        if self.produced != self.size:
            raise ClientError(
                f"the transfer came out at {self.produced} bytes, not the {self.size} "
                "announced; nothing was delivered, send again"
            )

    def abort(self) -> None:
        self._stopping.set()
        with self._order:
            self._order.notify_all()
        while True:  # unblock the threads if they wait to hand over
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        for _ in self._threads:
            try:
                self._queue.put_nowait(_STOP)
            except queue.Full:
                pass
        for t in self._threads:
            t.join(5)
        self._close_clones()

    def _close_clones(self) -> None:
        for c in self._clients[1:]:
            c.close()

    # --- the upload threads ---------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        with self._order:
            if self._error is None:
                self._error = exc
            self._order.notify_all()

    def _wait_turn(self, index: int) -> None:
        """Block until every chunk before ``index`` is logged."""
        with self._order:
            while self._next_log != index:
                if self._error is not None or self._stopping.is_set():
                    raise ClientError("upload stopped")
                self._order.wait(0.2)

    def _confirm(self, offset: int, end: int) -> None:
        with self._order:
            self._done[offset] = end
            while self._confirmed in self._done:
                self._confirmed = self._done.pop(self._confirmed)
            self._order.notify_all()

    def _predecessor_pending(self, offset: int) -> bool:
        """Wait while an earlier chunk is still on its way; True if there was one."""
        with self._order:
            if self._confirmed >= offset:
                return False
            while self._confirmed < offset:
                if self._error is not None or self._stopping.is_set():
                    raise ClientError("upload stopped")
                self._order.wait(0.2)
            return True

    def _run(self, client: RelayClient) -> None:
        try:
            while not self._stopping.is_set():
                item = self._queue.get()
                if item is _STOP:
                    return
                offset, index, buf, n = cast(tuple[int, int, bytearray, int], item)
                chunk = memoryview(buf)[:n]
                # Hashed here, not by the producer: this overlaps the encryption of
                # the next chunk, and the one digest serves log, signature and header.
                digest = chunkhash.hex_digest(self._algorithm, chunk)
                if index < len(self._known) and self._known[index] != digest:
                    raise FilesChangedError(
                        "the files changed since the send started; the interrupted send "
                        "was cancelled, send again"
                    )
                self._wait_turn(index)
                if index >= len(self._known):
                    # write-ahead: logged, in chunk order, before it can be committed.
                    # Our turn until _next_log moves on, so no lock is held over the
                    # fsync: the other lane's confirmations need not wait for the disk.
                    self._journal.append(digest)
                with self._order:
                    self._next_log = index + 1
                    self._order.notify_all()
                self._send(client, offset, chunk, digest)
                self._confirm(offset, offset + n)
                chunk.release()
                self._free.put(buf)
                with self._order:
                    self.sent += n
                if self._progress is not None:
                    self._progress(n)
                if self._pause:
                    time.sleep(self._pause)
        except BaseException as exc:  # handed to the producer
            self._fail(exc)

    def _send(self, client: RelayClient, offset: int, chunk: memoryview, digest: str) -> None:
        deadline = time.monotonic() + self._retry_for
        delay = 0.5
        while True:
            if self._stopping.is_set():
                raise ClientError("upload stopped")
            with self._order:
                known = self._confirmed  # what the relay had confirmed before this attempt
            try:
                client.upload_chunk(self._id, offset, chunk, hex_digest=digest,
                                    algorithm=self._algorithm)
                return
            except RelayConflict as exc:
                # Our previous attempt may have been committed before its answer was lost.
                if exc.offset is not None and exc.offset >= offset + len(chunk):
                    return
                if exc.offset is not None and known <= exc.offset < offset and exc.code == (
                        ErrorCode.OFFSET_MISMATCH):
                    # Our chunk overtook an earlier one: the relay answered before
                    # that one was in, though it may be confirmed by now (the other
                    # lane's answer came first). Not a loss: the relay went back
                    # from nothing it had confirmed. Send it again once that one is in.
                    self._predecessor_pending(offset)
                    continue
                if exc.offset is not None and exc.offset < offset:
                    # The relay lost chunks it had committed (a power loss; it does not
                    # fsync each one) and rolled back: they must be regenerated.
                    raise RelayUnavailable(
                        f"the relay lost the chunks after byte {exc.offset} (it restarted "
                        "after a crash); nothing is lost on this side",
                        hint="run the same `sealdrop send` again to resume where it stopped",
                    ) from exc
                raise
            except (RelayUnavailable, RelayRateLimited) as exc:
                if time.monotonic() + delay > deadline:
                    with self._order:
                        held = self._confirmed
                    raise RelayUnavailable(
                        f"{exc}; {human_size(held)} of {human_size(self.size)} already on "
                        "the relay",
                        hint=join_hints(exc.hint, RESUME_HINT),
                    ) from exc
                wait = min(getattr(exc, "retry_after", 0) or delay, 30.0)
                if self._on_retry is not None:
                    self._on_retry(wait, exc)
                self._sleep(wait)
                delay = min(delay * 2, 30.0)

    def _sleep(self, seconds: float) -> None:
        """Wait, but not past an abort (Ctrl-C should not wait out a backoff)."""
        self._stopping.wait(seconds)
