"""The S3 blob store's pure parts: which parts make up a partial blob, a chunk's
body checked on its way to S3, a complete blob's bytes hashed along its chunks.

No I/O: async byte streams in, verdicts out (server.s3blobs does the talking).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass

from sealdrop.crypto import chunkhash
from sealdrop.crypto.protocol import ErrorCode

from .blobs import Chunk
from .errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Part:
    number: int
    size: int
    etag: str
    modified: float = 0.0  # LastModified, unix seconds


def live_parts(parts: Sequence[Part]) -> list[Part]:
    """The parts that make up the partial blob: 1, 2, ... up to the first one
    missing; of several versions of one part number, the newest (listed last
    among equals: SeaweedFS lists them oldest first)."""
    by_number: dict[int, Part] = {}
    for p in parts:
        seen = by_number.get(p.number)
        if seen is None or p.modified >= seen.modified:
            by_number[p.number] = p
    out: list[Part] = []
    while (nxt := by_number.get(len(out) + 1)) is not None and nxt.size > 0:
        out.append(nxt)
    return out


def part_ends(parts: Sequence[Part]) -> list[int]:
    ends, total = [], 0
    for p in parts:
        total += p.size
        ends.append(total)
    return ends


async def verified_body(
    source: AsyncIterator[bytes],
    *,
    length: int,
    digest: str,
    sent: list[int],
    failure: list[Exception],
) -> AsyncGenerator[bytes, None]:
    """``source`` passed through, checked: exactly ``length`` bytes hashing to
    ``digest`` (tagged: crypto.chunkhash). The piece that completes the chunk is
    yielded only once the hash matches, so a body that does not match never
    reaches S3 whole, and S3 keeps no part of a body shorter than its
    Content-Length. ``sent`` counts what was yielded; the error raised (the
    HTTP client may wrap it) is also put in ``failure``."""
    algorithm = chunkhash.untag(digest)[0]
    h = chunkhash.new(algorithm)
    try:
        async for piece in source:
            if sent[0] + len(piece) > length:
                raise InvalidInput(
                    "chunk body is longer than its Content-Length", code=ErrorCode.BAD_LENGTH
                )
            h.update(piece)
            if sent[0] + len(piece) == length and (
                chunkhash.tag(algorithm, h.hexdigest()) != digest
            ):
                raise InvalidInput(
                    "chunk does not match its hash header; it may be corrupted or tampered with",
                    code=ErrorCode.CHECKSUM_MISMATCH,
                )
            sent[0] += len(piece)
            yield piece
        if sent[0] != length:
            raise InvalidInput(
                f"chunk body ended after {sent[0]} of {length} bytes",
                code=ErrorCode.INCOMPLETE_CHUNK,
            )
    except Exception as exc:
        failure.append(exc)
        raise


class ChunkHasher:
    """A complete blob's bytes, fed in order, hashed along its recorded chunks;
    ``good`` is how many chunks (from the first) match their hashes."""

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        self.chunks = chunks
        self.good = 0
        self._pos = 0
        self._failed = False
        self._hash = self._next_hash()

    def _next_hash(self) -> chunkhash.Hasher | None:
        if self.good >= len(self.chunks):
            return None
        return chunkhash.new(chunkhash.untag(self.chunks[self.good][1])[0])

    def update(self, block: bytes) -> bool:
        """Feed the next bytes; False once nothing more can change ``good``."""
        view = memoryview(block)
        while view and not self._failed and self._hash is not None:
            end, tagged = self.chunks[self.good]
            take = min(len(view), end - self._pos)
            self._hash.update(view[:take])
            view, self._pos = view[take:], self._pos + take
            if self._pos == end:
                algorithm = chunkhash.untag(tagged)[0]
                if chunkhash.tag(algorithm, self._hash.hexdigest()) != tagged:
                    self._failed = True
                    break
                self.good += 1
                self._hash = self._next_hash()
        return not self._failed and self._hash is not None
