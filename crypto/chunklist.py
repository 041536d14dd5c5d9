"""The chunk-list digest of an uploaded blob, shared by the relay and the sender.

The relay records it when a transfer completes (``server.blobs``), and the
transparency log commits to it (``crypto.tlog.entries.transfer_commitment``).
It lives here, pure, so that a sender recomputes the very same bytes from its
own chunk journal and checks what the relay logged without trusting it.

The digest is SHA-256 over one ``"<end offset> <tagged chunk hash>\\n"`` line
per chunk, in upload order (``crypto.chunkhash``: bare hex for a SHA-256
chunk, ``blake3:<hex>`` for BLAKE3), as lower-case hex.

Why not the SHA-256 of the whole blob: that is a second full pass over every
byte (the chunk hashes are needed anyway), and this digest pins the content
just as firmly. Recipients never rely on it: the age payload authenticates
itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

# (end offset of the chunk in the blob, its tagged hash)
Chunk = tuple[int, str]


def chunk_list_digest(chunks: Iterable[Chunk]) -> str:
    h = hashlib.sha256()
    for end, tagged in chunks:
        h.update(f"{end} {tagged}\n".encode("ascii"))
    return h.hexdigest()
