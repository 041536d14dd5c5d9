"""The blob store: where ciphertext lives. An interface and the local-file backend.

A blob goes through two states, named by where it lives:

* *partial*: being uploaded. Chunks are written at the committed offset, the
  file is fsynced, and only then does the caller advance the committed offset in
  the database. Anything past the committed offset is garbage from a chunk that
  failed (client gone, disk full, relay killed); every write and every start-up
  first truncates back to the committed offset, so it never becomes visible.
* *complete*: renamed into place after the whole size arrived (``finalize``).
  Complete blobs are immutable until deleted.

The interface takes keys (transfer ids) and async byte streams, never paths, so
an S3-compatible backend fits it: partial = multipart upload parts, finalize =
complete-multipart-upload.

The local backend supports one relay process per data directory: two processes
writing the same partial file would need a cross-process lock (see
docs/operations.md).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .errors import BadRequest, InsufficientStorage, StoreError

KEY_RE = re.compile(r"[A-Za-z0-9_-]{16,32}")
IO_BLOCK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class BlobInfo:
    key: str
    complete: bool
    size: int


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...


class BlobStore(Protocol):
    """What the relay needs from a place that stores ciphertext."""

    async def ready(self) -> None:
        """Raise ``StoreError`` unless the store can be written now."""

    async def write_chunk(
        self,
        key: str,
        offset: int,
        source: AsyncIterator[bytes],
        *,
        length: int,
        sha256_hex: str,
        running: Hasher | None = None,
    ) -> None:
        """Write exactly ``length`` bytes whose SHA-256 is ``sha256_hex`` at ``offset``
        of the partial blob, durably. On any failure the partial blob is left
        exactly ``offset`` bytes long and the error is raised."""

    async def partial_sha256(self, key: str, start: int, end: int) -> str | None:
        """SHA-256 (hex) of bytes [start, end) of the partial blob, None if short."""

    async def truncate_partial(self, key: str, size: int) -> int:
        """Cut the partial blob to ``size`` bytes if longer; return its size after."""

    async def finalize(self, key: str, size: int) -> None:
        """Make the partial blob (exactly ``size`` bytes) complete, atomically."""

    def read(self, key: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """Bytes [start, end) of a complete blob."""

    async def hash_blob(self, key: str, *, complete: bool = True) -> tuple[int, str] | None:
        """(size, SHA-256 hex) of a blob, None if absent."""

    async def delete(self, key: str) -> None:
        """Remove both states of the blob; absent is fine."""

    async def list(self) -> list[BlobInfo]:
        """Every blob in the store, both states."""


def check_key(key: str) -> str:
    if not KEY_RE.fullmatch(key):
        raise BadRequest("malformed transfer id", code="bad_transfer_id")
    return key


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _hash_file(path: Path, start: int, end: int) -> str | None:
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            f.seek(start)
            left = end - start
            while left > 0:
                block = f.read(min(IO_BLOCK, left))
                if not block:
                    return None
                h.update(block)
                left -= len(block)
    except FileNotFoundError:
        return None
    return h.hexdigest()


class LocalBlobStore:
    """Blobs as files under ``root``: ``partial/<id>`` and ``complete/<id[:2]>/<id>``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.partial_dir = self.root / "partial"
        self.complete_dir = self.root / "complete"

    def create_dirs(self) -> None:
        for d in (self.root, self.partial_dir, self.complete_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)

    def partial_path(self, key: str) -> Path:
        return self.partial_dir / check_key(key)

    def complete_path(self, key: str) -> Path:
        return self.complete_dir / check_key(key)[:2] / key

    async def ready(self) -> None:
        def probe() -> None:
            probe_path = self.partial_dir / ".ready-probe"
            with probe_path.open("wb") as f:
                f.write(b"ok")
            probe_path.unlink()

        try:
            await asyncio.to_thread(probe)
        except OSError as exc:
            raise StoreError(f"blob store not writable: {exc.strerror}") from exc

    async def write_chunk(
        self,
        key: str,
        offset: int,
        source: AsyncIterator[bytes],
        *,
        length: int,
        sha256_hex: str,
        running: Hasher | None = None,
    ) -> None:
        path = self.partial_path(key)
        chunk_hash = hashlib.sha256()
        fd = await asyncio.to_thread(os.open, path, os.O_WRONLY | os.O_CREAT, 0o600)
        ok = False
        try:
            await asyncio.to_thread(os.ftruncate, fd, offset)
            written = 0
            buf = bytearray()

            def flush(data: bytes, at: int) -> None:
                view = memoryview(data)
                while view:
                    n = os.pwrite(fd, view, at)
                    view = view[n:]
                    at += n
                chunk_hash.update(data)
                if running is not None:
                    running.update(data)

            async for piece in source:
                if written + len(buf) + len(piece) > length:
                    raise BadRequest(
                        "chunk body is longer than its Content-Length", code="bad_length"
                    )
                buf += piece
                if len(buf) >= IO_BLOCK:
                    data = bytes(buf)
                    buf.clear()
                    await asyncio.to_thread(flush, data, offset + written)
                    written += len(data)
            if buf:
                data = bytes(buf)
                await asyncio.to_thread(flush, data, offset + written)
                written += len(data)
            if written != length:
                raise BadRequest(
                    f"chunk body ended after {written} of {length} bytes", code="incomplete_chunk"
                )
            if chunk_hash.hexdigest() != sha256_hex:
                raise BadRequest(
                    "chunk does not match its Sealdrop-Chunk-Sha256 header; it may be "
                    "corrupted or tampered with",
                    code="checksum_mismatch",
                )
            await asyncio.to_thread(os.fsync, fd)
            ok = True
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InsufficientStorage("the relay's storage is full; try again later") from exc
            raise
        finally:
            if not ok:
                # Why: whatever failed, the bytes past the committed offset must not
                # survive, or a later chunk could be appended after garbage.
                try:
                    os.ftruncate(fd, offset)
                    os.fsync(fd)
                except OSError:
                    pass  # start-up recovery truncates again
            os.close(fd)

    async def partial_sha256(self, key: str, start: int, end: int) -> str | None:
        return await asyncio.to_thread(_hash_file, self.partial_path(key), start, end)

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
            raise StoreError("the uploaded blob is missing from the blob store") from exc

    async def read(self, key: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        path = self.complete_path(key)
        try:
            f = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError as exc:
            raise StoreError("the blob is missing from the blob store") from exc
        try:
            await asyncio.to_thread(f.seek, start)
            left = end - start
            while left > 0:
                block = await asyncio.to_thread(f.read, min(IO_BLOCK, left))
                if not block:
                    raise StoreError("the blob is shorter than its recorded size")
                left -= len(block)
                yield block
        finally:
            f.close()

    async def hash_blob(self, key: str, *, complete: bool = True) -> tuple[int, str] | None:
        path = self.complete_path(key) if complete else self.partial_path(key)

        def run() -> tuple[int, str] | None:
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                return None
            digest = _hash_file(path, 0, size)
            return None if digest is None else (size, digest)

        return await asyncio.to_thread(run)

    async def delete(self, key: str) -> None:
        def rm() -> None:
            for path in (self.partial_path(key), self.complete_path(key)):
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass

        await asyncio.to_thread(rm)

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
