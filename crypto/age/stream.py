"""The age STREAM payload: 64 KiB ChaCha20-Poly1305 chunks, and nothing else.

Chunks are independent given their counter, so whole batches of chunks are
sealed or opened on a small thread pool (the AEAD releases the GIL). A task
per 64 KiB chunk costs more in scheduling than it gains, so each task takes a
contiguous slice of a batch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .errors import PayloadError
from .primitives import TAG_SIZE

CHUNK_SIZE = 64 * 1024
ENC_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE
NONCE_SIZE = 16  # the payload nonce that precedes the first chunk
DEFAULT_BATCH_CHUNKS = 64  # 4 MiB a batch
DEFAULT_WORKERS = 2
_IN_FLIGHT = 2  # batches submitted but not yet written out

_LAST = b"\x01"
_NOT_LAST = b"\x00"
# An 11-byte counter: 2**88 chunks is far beyond any file we could see.
_MAX_COUNTER = (1 << 88) - 1

Buffer = bytes | bytearray | memoryview


class Reader(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Writer(Protocol):
    def write(self, data: bytes, /) -> int: ...


def _nonce(counter: int, last: bool) -> bytes:
    if counter > _MAX_COUNTER:
        raise PayloadError("payload too large: chunk counter overflow")
    return counter.to_bytes(11, "big") + (_LAST if last else _NOT_LAST)


def _seal_slice(aead: ChaCha20Poly1305, first: int, chunks: Sequence[Buffer]) -> list[bytes]:
    return [aead.encrypt(_nonce(first + i, False), c, None) for i, c in enumerate(chunks)]


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    step = -(-n // parts)
    return [(i, min(i + step, n)) for i in range(0, n, step)]


class _Pool:
    """Runs a function over contiguous slices of a batch, in order."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None

    def map_slices(self, fn, items: Sequence, first: int) -> Future[list]:  # type: ignore[no-untyped-def,type-arg]
        if self._pool is None or len(items) < 2 * self.workers:
            f: Future[list] = Future()  # type: ignore[type-arg]
            try:
                f.set_result(fn(first, items))
            except BaseException as exc:  # noqa: BLE001 - surfaced via result()
                f.set_exception(exc)
            return f
        parts = [
            self._pool.submit(fn, first + a, items[a:b]) for a, b in _split(len(items), self.workers)
        ]
        done: Future[list] = Future()  # type: ignore[type-arg]

        def gather(_: object) -> None:
            if all(p.done() for p in parts) and not done.done():
                try:
                    out: list = []  # type: ignore[type-arg]
                    for p in parts:
                        out.extend(p.result())
                    done.set_result(out)
                except BaseException as exc:  # noqa: BLE001
                    done.set_exception(exc)

        for p in parts:
            p.add_done_callback(gather)
        return done

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


class _ChunkQueue:
    """Plaintext waiting to be sealed, as a list of blocks (no concatenation)."""

    def __init__(self) -> None:
        self._blocks: deque[memoryview] = deque()
        self.size = 0

    def push(self, data: Buffer) -> None:
        # Keep a private copy of mutable buffers: the caller may reuse them.
        block = memoryview(data if isinstance(data, bytes) else bytes(data))
        if len(block):
            self._blocks.append(block)
            self.size += len(block)

    def pop(self, size: int) -> Buffer:
        head = self._blocks[0]
        if len(head) >= size:
            out: Buffer = head[:size]
            if len(head) == size:
                self._blocks.popleft()
            else:
                self._blocks[0] = head[size:]
        else:
            joined = bytearray()
            while len(joined) < size:
                head = self._blocks[0]
                take = min(size - len(joined), len(head))
                joined += head[:take]
                if take == len(head):
                    self._blocks.popleft()
                else:
                    self._blocks[0] = head[take:]
            out = bytes(joined)
        self.size -= size
        return out


class StreamWriter:
    """Encrypts what is written to it into ``dst`` as an age STREAM payload.

    The final chunk is only sealed on ``close()``: until then we cannot know
    which chunk is last, so at least one byte is always held back.
    """

    def __init__(
        self,
        key: bytes,
        dst: Writer,
        *,
        workers: int = DEFAULT_WORKERS,
        batch_chunks: int = DEFAULT_BATCH_CHUNKS,
    ) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._dst = dst
        self._queue = _ChunkQueue()
        self._batch_chunks = max(1, batch_chunks)
        self._pool = _Pool(workers)
        self._pending: deque[Future[list[bytes]]] = deque()
        self._counter = 0
        self._closed = False

    def write(self, data: Buffer) -> int:
        if self._closed:
            raise ValueError("write to a closed age stream")
        self._queue.push(data)
        batch = self._batch_chunks * CHUNK_SIZE
        while self._queue.size > batch:
            chunks = [self._queue.pop(CHUNK_SIZE) for _ in range(self._batch_chunks)]
            self._submit(chunks)
        return len(data)

    def _submit(self, chunks: list[Buffer]) -> None:
        fut = self._pool.map_slices(
            lambda first, part: _seal_slice(self._aead, first, part), chunks, self._counter
        )
        self._counter += len(chunks)
        self._pending.append(fut)
        while len(self._pending) > _IN_FLIGHT:
            self._flush_one()

    def _flush_one(self) -> None:
        self._dst_writelines(self._pending.popleft().result())

    def _dst_writelines(self, parts: list[bytes]) -> None:
        for p in parts:
            self._dst.write(p)

    def close(self) -> None:
        """Seal the rest, marking the final chunk, and flush. Does not close dst."""
        if self._closed:
            return
        self._closed = True
        try:
            rest: list[Buffer] = []
            while self._queue.size > CHUNK_SIZE:
                rest.append(self._queue.pop(CHUNK_SIZE))
            last = self._queue.pop(self._queue.size) if self._queue.size else b""
            if rest:
                self._submit(rest)
            while self._pending:
                self._flush_one()
            # Only an empty payload has an empty final chunk.
            self._dst.write(self._aead.encrypt(_nonce(self._counter, True), last, None))
            self._counter += 1
        finally:
            self._pool.close()

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._closed = True
            self._pool.close()


def read_full(src: Reader, n: int) -> bytes:
    """Read exactly n bytes unless EOF comes first: a short read is not an end."""
    first = src.read(n)
    if len(first) == n or not first:
        return first
    parts = [first]
    got = len(first)
    while got < n:
        data = src.read(n - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


class _Opened:
    """A batch's plaintext chunks, and the error that stopped it, if any."""

    __slots__ = ("chunks", "error")

    def __init__(self, chunks: list[bytes], error: PayloadError | None) -> None:
        self.chunks = chunks
        self.error = error


def _open_middle(aead: ChaCha20Poly1305, first: int, chunks: Sequence[Buffer]) -> _Opened:
    out: list[bytes] = []
    for i, c in enumerate(chunks):
        counter = first + i
        try:
            out.append(aead.decrypt(_nonce(counter, False), c, None))
        except InvalidTag:
            # A full chunk followed by more data may still be a valid final
            # chunk; then what follows it is trailing data, not payload.
            try:
                out.append(aead.decrypt(_nonce(counter, True), c, None))
            except InvalidTag:
                return _Opened(out, _chunk_error(counter))
            return _Opened(
                out,
                PayloadError(
                    "unexpected data after the end of the encrypted payload; "
                    "the file may be corrupted or tampered with"
                ),
            )
    return _Opened(out, None)


def _chunk_error(counter: int) -> PayloadError:
    return PayloadError(
        f"payload chunk {counter} failed to authenticate; "
        "the file may be corrupted or tampered with"
    )


class StreamReader:
    """Decrypts an age STREAM payload from ``src``, one authenticated chunk at a time.

    Plaintext is released only chunk by chunk after each chunk's tag verified.
    An error is raised once the plaintext that authenticated before it has been
    read, so callers that need all-or-nothing must stage the output.
    """

    def __init__(
        self,
        key: bytes,
        src: Reader,
        *,
        workers: int = DEFAULT_WORKERS,
        batch_chunks: int = DEFAULT_BATCH_CHUNKS,
    ) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._src = src
        self._pool = _Pool(workers)
        self._batch_chunks = max(2, batch_chunks)
        self._counter = 0
        self._carry: Buffer = b""
        self._eof = False
        self._ready: deque[bytes] = deque()
        self._error: PayloadError | None = None
        self._partial = memoryview(b"")
        self._done = False

    def chunks(self) -> Iterator[bytes]:
        """Yield plaintext chunks in order; raises PayloadError where the stream breaks."""
        while True:
            if self._partial:
                out = bytes(self._partial)
                self._partial = memoryview(b"")
                yield out
            while self._ready:
                yield self._ready.popleft()
            if self._error is not None:
                raise self._error
            if self._done:
                return
            self._fill()

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return b"".join(self.chunks())
        parts: list[bytes] = []
        want = n
        while want > 0:
            if not self._partial:
                if self._ready:
                    self._partial = memoryview(self._ready.popleft())
                elif self._error is not None:
                    if parts:
                        break  # return what authenticated; raise on the next read
                    raise self._error
                elif self._done:
                    break
                else:
                    self._fill()
                    continue
            take = self._partial[:want]
            parts.append(bytes(take))
            self._partial = self._partial[len(take) :]
            want -= len(take)
        return b"".join(parts)

    def close(self) -> None:
        self._pool.close()

    def _fill(self) -> None:
        """Read and open the next batch of chunks."""
        want = self._batch_chunks * ENC_CHUNK_SIZE
        data = memoryview(read_full(self._src, want))
        at_eof = len(data) < want
        pieces: list[Buffer] = [self._carry] if self._carry else []
        pieces += [data[i : i + ENC_CHUNK_SIZE] for i in range(0, len(data), ENC_CHUNK_SIZE)]
        self._carry = b""
        if not at_eof:
            # The batch's last full chunk may be the final one: hold it back
            # until we know whether anything follows it.
            self._carry = pieces.pop()
            self._open_batch(pieces)
            return
        if not pieces:
            self._finish_error(
                PayloadError("payload is truncated: it has no chunks")
            )
            return
        final = pieces.pop()
        if pieces:
            self._open_batch(pieces)
            if self._error is not None:
                return
        self._open_final(final)

    def _open_batch(self, chunks: list[Buffer]) -> None:
        opened = self._pool.map_slices(
            lambda first, part: [_open_middle(self._aead, first, part)], chunks, self._counter
        ).result()
        for part in opened:
            self._ready.extend(part.chunks)
            if part.error is not None:
                self._finish_error(part.error)
                return
        self._counter += len(chunks)

    def _open_final(self, chunk: Buffer) -> None:
        counter = self._counter
        if len(chunk) < TAG_SIZE:
            self._finish_error(
                PayloadError("payload is truncated: the final chunk is shorter than its tag")
            )
            return
        if len(chunk) == ENC_CHUNK_SIZE:
            # A full chunk at the end of the file that opens as a middle chunk
            # means the real final chunk was cut off.
            try:
                self._ready.append(self._aead.decrypt(_nonce(counter, False), chunk, None))
            except InvalidTag:
                pass
            else:
                self._finish_error(
                    PayloadError(
                        "payload is truncated: the final chunk is missing; "
                        "the file may be corrupted or tampered with"
                    )
                )
                return
        try:
            plain = self._aead.decrypt(_nonce(counter, True), chunk, None)
        except InvalidTag:
            self._finish_error(_chunk_error(counter))
            return
        if not plain and counter > 0:
            self._finish_error(
                PayloadError("final payload chunk is empty; the file may be corrupted or tampered with")
            )
            return
        self._ready.append(plain)
        self._counter += 1
        self._done = True

    def _finish_error(self, error: PayloadError) -> None:
        self._error = error
        self._done = True
