"""The log's C2SP tlog-tiles resources, read from its rows (``server.tlog``).

Tile (L, N) holds the hashes of tree level 8L at [256N, 256N + W): rows of
``tlog_hashes`` as stored, so a tile is one range read, never a computation.
An entry bundle is the same range of ``tlog_entries``, each entry prefixed
with its big-endian uint16 length.
"""

from __future__ import annotations

import sqlalchemy as sa

from sealdrop.crypto.tlog.tiles import TILE_HEIGHT, TILE_WIDTH, join_entry_bundle

from .errors import StoreUnavailable
from .tlog import read_entries, read_head, read_level


def read_tile(conn: sa.Connection, level: int | str, index: int, width: int) -> bytes | None:
    """A C2SP tile (``level`` an int) or entry bundle (``level == "entries"``)
    of ``width`` hashes or entries at ``index``, from the tree as committed
    now; None when the tree does not have that many there yet (a tile
    beyond the head: 404).

    A partial tile is a prefix of its full tile, and rows are only ever
    added, so it is served whenever the tree holds at least ``width`` there."""
    size, _ = read_head(conn)
    start = index * TILE_WIDTH
    if level == "entries":
        have = size - start
    else:
        have = (size >> (TILE_HEIGHT * int(level))) - start
    if width > min(TILE_WIDTH, have):
        return None
    if level == "entries":
        entries = read_entries(conn, start, width)
        if len(entries) == width:
            return join_entry_bundle(entries)
    else:
        hashes = read_level(conn, TILE_HEIGHT * int(level), start, width)
        if len(hashes) == width:
            return b"".join(hashes)
    raise StoreUnavailable(
        "rows of the transparency log are missing from the database; run "
        "`sealdrop-relay log verify`"
    )
