"""The blob store: where ciphertext lives. An interface and the local-file backend.

A blob goes through two states, named by where it lives:

* *partial*: being uploaded. A chunk is written at the committed offset and
  its hash checked (SHA-256 or BLAKE3, as the client chose: crypto.chunkhash);
  only then does the caller advance the committed offset and record the
  chunk's (end offset, tagged hash) in the database. The chunk is
  NOT fsynced: writeback of its pages is started at once (so the fsync at
  ``finalize`` has little left to wait for), but a power loss may take bytes
  the database already counts as committed. Start-up recovery re-hashes every
  partial blob along its recorded chunks and rolls the committed offset back to
  the last chunk that verifies (server.ops.recover); a SIGKILL of the relay
  loses nothing, since the page cache survives the process. Anything past the
  committed offset is garbage from a chunk that failed (client gone, disk full,
  relay killed); every write and every start-up first truncates back to the
  committed offset, so it never becomes visible.
* *complete*: fsynced, then renamed into place after the whole size arrived
  (``finalize``), before the transfer becomes visible. Complete blobs are
  immutable until deleted.

The interface takes keys (transfer ids) and async byte streams, never paths, so
an S3-compatible backend fits it (server.s3blobs): partial = multipart upload
parts, finalize = complete-multipart-upload.

The local backend supports one relay process per data directory: two processes
writing the same partial file would need a cross-process lock (see
docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
import re
import shutil
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from sealdrop.crypto import chunkhash, chunklist
from sealdrop.crypto.protocol import ErrorCode

from .errors import ConfigError, InvalidInput, StorageFull, StoreUnavailable
from .writelocks import WriteLocks

KEY_RE = re.compile(r"[A-Za-z0-9_-]{16,32}")
# Why 1 MiB: each block is one hop to a worker thread, which writes it while
# the event loop receives (and hashes) the next one. At the end of a chunk the
# client waits for the last block to be written before the answer, so larger
# blocks add latency to every chunk; smaller ones cost more in hops than they
# gain.
IO_BLOCK = 1024 * 1024
_IOV_MAX = 512  # pieces per pwritev call, well under any platform's IOV_MAX
# (end offset, tagged hash: crypto.chunkhash) of one committed chunk
Chunk = tuple[int, str]
# The marker file binding a blob store to its database (server.ops.check_binding).
RELAY_ID_FILE = "relay-id"
WRITE_LOCKS_FILE = "write-locks"  # server.writelocks: holds no data, only locks
RELAY_ID_RE = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class BlobInfo:
    key: str
    complete: bool
    size: int


class BlobStore(Protocol):
    """What the relay needs from a place that stores ciphertext."""

    @property
    def min_chunk_bytes(self) -> int:
        """The smallest chunk other than a transfer's last that the store takes
        (S3's smallest multipart part); 1 if any size will do."""

    @property
    def where(self) -> str:
        """The store as an operator names it (a folder, ``s3://bucket/prefix``),
        for messages; never holds a credential."""

    async def open(self) -> None:
        """Connect, and check that the store is there and lets the relay in
        (``ConfigError`` with one sentence otherwise). Writes nothing."""

    async def prepare(self) -> None:
        """Create what the store needs before its first write (local: folders)."""

    async def close(self) -> None:
        """Release connections; the store is not used after."""

    async def read_relay_id(self) -> str | None:
        """The relay id of the marker binding this store to its database
        (server.binding); None if there is none. ``ConfigError`` for a marker
        that is not an id: ignoring it would let a damaged store look unbound
        and be adopted by any database."""

    async def write_relay_id(self, relay_id: str) -> None:
        """Write the marker durably and atomically (never a half-written id)."""

    async def ready(self) -> None:
        """Raise ``StoreUnavailable`` unless the store can be written now."""

    @property
    def writes_can_cut(self) -> bool:
        """Whether a write's clean-up can cut bytes past its own offset (local
        files: ``write_chunk`` truncates). Then ``server.locks.exclusive`` takes
        ``write_lock`` under the lease and reads the lease again under it."""

    def write_lock(self, key: str, *, wait: float) -> AbstractAsyncContextManager[None]:
        """Exclude other relay processes from changing ``key``'s partial blob for
        the block, where a stalled writer could otherwise cut bytes another
        process committed (``server.writelocks``); ``Busy`` after ``wait``
        seconds. Taken under the upload lease, by ``server.locks.exclusive``."""

    async def write_chunk(
        self,
        key: str,
        offset: int,
        source: AsyncIterator[bytes],
        *,
        length: int,
        digest: str,
    ) -> None:
        """Write exactly ``length`` bytes whose tagged hash is ``digest`` at ``offset``
        of the partial blob. Not durable on return (``finalize`` is); on any
        failure the partial blob is left exactly ``offset`` bytes long and the
        error is raised (``InvalidInput`` for a body that does not match its
        length or hash, ``StorageFull`` when out of space)."""

    async def partial_digest(self, key: str, start: int, end: int, algorithm: str) -> str | None:
        """Tagged hash of bytes [start, end) of the partial blob, None if short."""

    async def check_chunks(
        self, key: str, chunks: Sequence[Chunk], *, complete: bool
    ) -> tuple[int, int | None]:
        """How many of ``chunks`` (consecutive from offset 0) the blob holds intact,
        and the blob's size (None if absent)."""

    async def truncate_partial(self, key: str, size: int) -> int:
        """Cut the partial blob to ``size`` bytes if longer; return its size after."""

    async def finalize(self, key: str, size: int) -> None:
        """Make the partial blob (exactly ``size`` bytes) complete: durable, atomically."""

    def read(self, key: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """Bytes [start, end) of a complete blob."""

    async def open_file(self, key: str, end: int) -> BinaryIO | None:
        """The complete blob as an open file, for the caller to serve with
        ``sendfile`` and close; None if this store keeps no local files (serve
        ``read`` then). ``StoreUnavailable`` if the blob is missing or shorter
        than ``end``."""

    async def delete(self, key: str) -> None:
        """Remove both states of the blob; absent is fine."""

    async def discard_partial(self, key: str) -> None:
        """Remove only the partial state of the blob (a stale one beside its
        complete blob); absent is fine."""

    async def list(self) -> list[BlobInfo]:
        """Every blob in the store, both states."""

    async def backup_blob(self, key: str, dest: Path, *, complete: bool, length: int) -> bool:
        """Copy the blob, as a metadata snapshot records it, into ``dest``: the
        blob folder of a backup data folder, which ``serve`` reads back.

        ``complete``: the whole complete blob. Otherwise the first ``length``
        (committed) bytes of the partial blob, or of the complete blob if the
        upload was finalised after the snapshot. False if the blob is gone
        (deleted since the snapshot): the caller drops its row from the copy."""


def check_key(key: str) -> str:
    if not KEY_RE.fullmatch(key):
        raise InvalidInput("malformed transfer id", code=ErrorCode.BAD_TRANSFER_ID)
    return key


def chunk_list_digest(chunks: Sequence[Chunk]) -> str:
    """The relay's digest of a blob (SHA-256 of its chunk list): the pure
    core lives in ``crypto.chunklist`` so that a sender computes the same
    bytes from its own journal for the transparency log."""
    return chunklist.chunk_list_digest(chunks)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pwrite_all(fd: int, pieces: list[bytes], at: int) -> None:
    for i in range(0, len(pieces), _IOV_MAX):
        group = pieces[i:i + _IOV_MAX]
        want = sum(len(p) for p in group)
        n = os.pwritev(fd, group, at)
        if n != want:  # a short write (rare): finish it piece by piece
            view = memoryview(b"".join(group))[n:]
            pos = at + n
            while view:
                k = os.pwrite(fd, view, pos)
                view = view[k:]
                pos += k
        at += want


def _open_at(path: Path, offset: int) -> int:
    """The partial blob opened for writing, cut back to ``offset`` bytes (one
    thread hop for both)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, offset)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_span(path: Path, end: int) -> BinaryIO:
    """The complete blob opened for reading; it must hold at least ``end`` bytes."""
    try:
        f = path.open("rb")
    except FileNotFoundError as exc:
        raise StoreUnavailable("the blob is missing from the blob store") from exc
    if os.fstat(f.fileno()).st_size < end:
        f.close()
        raise StoreUnavailable("the blob is shorter than its recorded size")
    return f


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing [offset, offset+length) to the device now, without waiting.

    On Linux, POSIX_FADV_DONTNEED initiates writeback of the range's dirty
    pages (and drops the clean ones); the fsync in ``finalize`` then waits
    only for the tail instead of the whole blob. Elsewhere a no-op.
    """
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        with contextlib.suppress(OSError):
            advise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def _hash_range(
    f: io.BufferedReader, start: int, end: int, buf: bytearray, algorithm: str
) -> str | None:
    h = chunkhash.new(algorithm)
    f.seek(start)
    left = end - start
    view = memoryview(buf)
    while left > 0:
        n = f.readinto(view[: min(len(buf), left)])
        if not n:
            return None
        h.update(view[:n])
        left -= n
    return chunkhash.tag(algorithm, h.hexdigest())


def _hash_file(path: Path, start: int, end: int, algorithm: str) -> str | None:
    try:
        with path.open("rb") as f:
            buf = bytearray(min(IO_BLOCK, max(end - start, 1)))
            return _hash_range(f, start, end, buf, algorithm)
    except FileNotFoundError:
        return None


def _check_chunks(path: Path, chunks: Sequence[Chunk]) -> tuple[int, int | None]:
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return 0, None
    with f:
        size = os.fstat(f.fileno()).st_size
        buf = bytearray(IO_BLOCK)
        start = 0
        for i, (end, sha) in enumerate(chunks):
            algorithm = chunkhash.untag(sha)[0]
            if end > size or _hash_range(f, start, end, buf, algorithm) != sha:
                return i, size
            start = end
        return len(chunks), size


def _copy_stream(fin: io.BufferedReader, fout: io.BufferedWriter, length: int | None) -> bool:
    """Copy all of ``fin`` or its first ``length`` bytes; False if it is shorter."""
    if length is None:
        shutil.copyfileobj(fin, fout, IO_BLOCK)
        return True
    left = length
    while left > 0:
        block = fin.read(min(IO_BLOCK, left))
        if not block:
            return False
        fout.write(block)
        left -= len(block)
    return True


def _copy_prefix(src: Path, dst: Path, length: int | None) -> bool:
    """Copy ``src`` (its first ``length`` bytes if given) to ``dst``, fsynced.
    False, and no ``dst`` left behind, if ``src`` is gone or too short."""
    dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        with src.open("rb") as fin, dst.open("wb") as fout:
            copied = _copy_stream(fin, fout, length)
            if copied:
                fout.flush()
                os.fsync(fout.fileno())
    except FileNotFoundError:
        copied = False
    if not copied:
        dst.unlink(missing_ok=True)
    return copied


async def _stream_file(path: Path, start: int, end: int) -> AsyncGenerator[bytes, None]:
    """Bytes [start, end) of the file at ``path``, a block at a time, each read
    in a worker thread."""
    try:
        f = await asyncio.to_thread(path.open, "rb")
    except FileNotFoundError as exc:
        raise StoreUnavailable("the blob is missing from the blob store") from exc
    try:
        await asyncio.to_thread(f.seek, start)
        left = end - start
        while left > 0:
            block = await asyncio.to_thread(f.read, min(IO_BLOCK, left))
            if not block:
                raise StoreUnavailable("the blob is shorter than its recorded size")
            left -= len(block)
            yield block
    finally:
        f.close()


class LocalBlobStore:
    """Blobs as files under ``root``: ``partial/<id>`` and ``complete/<id[:2]>/<id>``."""

    min_chunk_bytes = 1
    writes_can_cut = True

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.partial_dir = self.root / "partial"
        self.complete_dir = self.root / "complete"
        self._write_locks = WriteLocks(self.root / WRITE_LOCKS_FILE)

    @property
    def where(self) -> str:
        return str(self.root)

    def create_dirs(self) -> None:
        for d in (self.root, self.partial_dir, self.complete_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)

    async def open(self) -> None:
        pass  # a folder needs no connection; `prepare` creates it

    async def prepare(self) -> None:
        await asyncio.to_thread(self.create_dirs)

    async def close(self) -> None:
        self._write_locks.close()

    def write_lock(self, key: str, *, wait: float) -> AbstractAsyncContextManager[None]:
        return self._write_locks.hold(check_key(key), wait=wait)

    @property
    def marker_path(self) -> Path:
        return self.root / RELAY_ID_FILE

    async def read_relay_id(self) -> str | None:
        return self.read_relay_id_now()

    async def write_relay_id(self, relay_id: str) -> None:
        self.write_relay_id_now(relay_id)

    def read_relay_id_now(self) -> str | None:
        """``read_relay_id`` without an event loop (a marker is a few bytes)."""
        try:
            text = self.marker_path.read_text("ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"cannot read the blob store's relay id {self.marker_path}: {exc}"
            ) from exc
        if not RELAY_ID_RE.fullmatch(text):
            raise ConfigError(
                f"{self.marker_path} does not hold a relay id; restore it from a backup"
            )
        return text

    def write_relay_id_now(self, relay_id: str) -> None:
        """``write_relay_id`` without an event loop."""
        if not RELAY_ID_RE.fullmatch(relay_id):
            raise ValueError("relay id must be 32 lowercase hex digits")
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.root / (RELAY_ID_FILE + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, (relay_id + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.marker_path)
        _fsync_dir(self.root)

    def partial_path(self, key: str) -> Path:
        return self.partial_dir / check_key(key)

    def complete_path(self, key: str) -> Path:
        return self.complete_dir / check_key(key)[:2] / key

    async def ready(self) -> None:
        def probe() -> None:
            # A file of its own per probe (unnamed where the kernel can): the
            # relay processes sharing one data folder probe it at once, and a
            # shared name let one delete the other's file (a /readyz 503 for
            # a healthy process, tests/server/test_ready_probe.py).
            with tempfile.TemporaryFile(dir=self.partial_dir) as f:
                f.write(b"ok")

        try:
            await asyncio.to_thread(probe)
        except OSError as exc:
            raise StoreUnavailable(f"blob store not writable: {exc.strerror}") from exc

    async def write_chunk(
        self,
        key: str,
        offset: int,
        source: AsyncIterator[bytes],
        *,
        length: int,
        digest: str,
    ) -> None:
        path = self.partial_path(key)
        algorithm = chunkhash.untag(digest)[0]
        chunk_hash = chunkhash.new(algorithm)
        fd = await asyncio.to_thread(_open_at, path, offset)
        ok = False
        in_flight: asyncio.Future[None] | None = None

        def flush(pieces: list[bytes], at: int, n: int) -> None:
            # In a worker thread (pwritev releases the GIL): one vectored write
            # of the very buffers aiohttp received, no copy.
            _pwrite_all(fd, pieces, at)
            _start_writeback(fd, at, n)

        try:
            written = 0  # bytes handed to a worker
            pieces: list[bytes] = []
            buffered = 0
            async for piece in source:
                if written + buffered + len(piece) > length:
                    raise InvalidInput(
                        "chunk body is longer than its Content-Length", code=ErrorCode.BAD_LENGTH
                    )
                # Why the hash here, on the event loop, and not in the worker:
                # hashlib and blake3 release the GIL for the update (blake3 stays
                # single-threaded: CPU per GiB is what counts here), so the worker writes
                # meanwhile; hashing in the worker instead made the two threads
                # trade the GIL for every piece (measured: ~0.3 CPU-s per GiB
                # more, futex calls in the tens of thousands).
                chunk_hash.update(piece)
                pieces.append(piece)
                buffered += len(piece)
                if buffered >= IO_BLOCK:
                    # At most one block in the worker while the next one arrives.
                    if in_flight is not None:
                        await in_flight
                    in_flight = asyncio.ensure_future(
                        asyncio.to_thread(flush, pieces, offset + written, buffered)
                    )
                    written += buffered
                    pieces, buffered = [], 0
            if in_flight is not None:
                await in_flight
            in_flight = None
            if pieces:
                await asyncio.to_thread(flush, pieces, offset + written, buffered)
                written += buffered
            if written != length:
                raise InvalidInput(
                    f"chunk body ended after {written} of {length} bytes",
                    code=ErrorCode.INCOMPLETE_CHUNK,
                )
            if chunkhash.tag(algorithm, chunk_hash.hexdigest()) != digest:
                raise InvalidInput(
                    "chunk does not match its hash header; it may be "
                    "corrupted or tampered with",
                    code=ErrorCode.CHECKSUM_MISMATCH,
                )
            ok = True
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull("the relay's storage is full; try again later") from exc
            raise
        finally:
            if in_flight is not None:
                # Never truncate under a worker that is still writing.
                with contextlib.suppress(BaseException):
                    await in_flight
            if not ok:
                # Why: whatever failed, the bytes past the committed offset must not
                # survive, or a later chunk could be appended after garbage. Not
                # fsynced: after a crash, start-up recovery truncates again.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, offset)
            os.close(fd)

    async def partial_digest(self, key: str, start: int, end: int, algorithm: str) -> str | None:
        return await asyncio.to_thread(_hash_file, self.partial_path(key), start, end, algorithm)

    async def check_chunks(
        self, key: str, chunks: Sequence[Chunk], *, complete: bool
    ) -> tuple[int, int | None]:
        path = self.complete_path(key) if complete else self.partial_path(key)
        return await asyncio.to_thread(_check_chunks, path, chunks)

    async def truncate_partial(self, key: str, size: int) -> int:
        path = self.partial_path(key)

        def cut() -> int:
            try:
                actual = path.stat().st_size
            except FileNotFoundError:
                return 0
            if actual > size:
                with path.open("r+b") as f:
                    f.truncate(size)
                    os.fsync(f.fileno())
                return size
            return actual

        return await asyncio.to_thread(cut)

    async def finalize(self, key: str, size: int) -> None:
        src, dst = self.partial_path(key), self.complete_path(key)

        def move() -> None:
            with src.open("r+b") as f:
                f.truncate(size)
                os.fsync(f.fileno())
            dst.parent.mkdir(mode=0o700, exist_ok=True)
            os.replace(src, dst)
            _fsync_dir(dst.parent)
            _fsync_dir(src.parent)

        try:
            await asyncio.to_thread(move)
        except FileNotFoundError as exc:
            raise StoreUnavailable("the uploaded blob is missing from the blob store") from exc

    def read(self, key: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        return _stream_file(self.complete_path(key), start, end)

    def read_partial(self, key: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """Bytes [start, end) of the partial blob (``migrate`` moves uploads in
        progress; the relay itself never reads one back)."""
        return _stream_file(self.partial_path(key), start, end)

    async def open_file(self, key: str, end: int) -> BinaryIO | None:
        return await asyncio.to_thread(_open_span, self.complete_path(key), end)

    async def delete(self, key: str) -> None:
        def rm() -> None:
            for path in (self.partial_path(key), self.complete_path(key)):
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass

        await asyncio.to_thread(rm)

    async def discard_partial(self, key: str) -> None:
        await asyncio.to_thread(self.partial_path(key).unlink, missing_ok=True)

    def _scan(self) -> Iterator[BlobInfo]:
        if self.partial_dir.is_dir():
            for p in self.partial_dir.iterdir():
                if KEY_RE.fullmatch(p.name):
                    yield BlobInfo(p.name, False, p.stat().st_size)
        if self.complete_dir.is_dir():
            for sub in self.complete_dir.iterdir():
                if sub.is_dir():
                    for p in sub.iterdir():
                        if KEY_RE.fullmatch(p.name):
                            yield BlobInfo(p.name, True, p.stat().st_size)

    async def list(self) -> list[BlobInfo]:
        return await asyncio.to_thread(lambda: list(self._scan()))

    async def backup_blob(self, key: str, dest: Path, *, complete: bool, length: int) -> bool:
        copy = LocalBlobStore(dest)

        def run() -> bool:
            copy.create_dirs()
            if complete:
                return _copy_prefix(self.complete_path(key), copy.complete_path(key), None)
            # Nothing committed yet: the restored relay needs no file at all.
            return length == 0 or _copy_prefix(
                self.partial_path(key), copy.partial_path(key), length
            ) or _copy_prefix(self.complete_path(key), copy.partial_path(key), length)

        return await asyncio.to_thread(run)
