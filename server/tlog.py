"""The transparency log's rows: append inside the caller's transaction, and
the reads that tiles, entry bundles and checkpoints are made of.

The tree is RFC 9162's (``sealdrop.crypto.tlog.merkle`` hashes it). Stored:
every leaf's data (``tlog_entries``), every complete subtree's hash
(``tlog_hashes``: level 0 the leaf hashes, (level, idx) the subtree over
leaves [idx * 2**level, (idx + 1) * 2**level)) and one head row (size, root).
A C2SP tile of level L is then a range read of tree level 8L, and an append
reads only the right edge it hashes with.

Why the database serialises appends, not the process: several relay
processes share one database, and two appends that read the same size would
both claim its index. On PostgreSQL the append locks the head row (``SELECT
… FOR UPDATE``) before reading anything, so the next append waits for this
transaction's commit and then reads the size it left; a rolled-back caller
leaves no trace. On SQLite the append takes the database's write lock (a
no-op update of the head; the caller usually holds it already), which
serialises just the same. Callers append last in
their transaction: once the head is locked they touch only the log's tables,
so two transactions never wait on each other in a cycle.
"""

from __future__ import annotations

import sqlalchemy as sa

from sealdrop.crypto.tlog.merkle import leaf_hash, node_hash

from .db import tlog_entries, tlog_hashes, tlog_head
from .errors import StoreUnavailable

HEAD_ID = 1


def _missing_head() -> StoreUnavailable:
    return StoreUnavailable(
        "the transparency log's head row is missing from the database; restore it from "
        "a backup (`sealdrop-relay log verify` says what else is damaged)"
    )


def lock_head(conn: sa.Connection) -> tuple[int, bytes]:
    """(size, root) of the tree, with the head row locked until the caller's
    transaction ends (PostgreSQL; SQLite's write lock is already held)."""
    stmt = sa.select(tlog_head.c.size, tlog_head.c.root).where(tlog_head.c.id == HEAD_ID)
    if conn.dialect.name == "sqlite":
        # A write takes SQLite's write lock now (usually held already), so a
        # transaction that began with reads cannot meet another writer's
        # commit between its read of the head and its own write.
        conn.execute(sa.update(tlog_head).where(tlog_head.c.id == HEAD_ID)
                     .values(size=tlog_head.c.size))
    else:
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        raise _missing_head()
    return int(row[0]), bytes(row[1])


def read_head(conn: sa.Connection) -> tuple[int, bytes]:
    """(size, root) as last committed; no lock."""
    row = conn.execute(
        sa.select(tlog_head.c.size, tlog_head.c.root).where(tlog_head.c.id == HEAD_ID)
    ).first()
    if row is None:
        raise _missing_head()
    return int(row[0]), bytes(row[1])


def peaks(size: int) -> list[tuple[int, int]]:
    """(level, idx) of the complete subtrees a tree of ``size`` leaves splits
    into, left to right (RFC 9162 2.1.1: the largest power of two first)."""
    out, start = [], 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            out.append((level, start >> level))
            start += 1 << level
    return out


def fold_root(hashes: list[bytes]) -> bytes:
    """The root over ``peaks`` hashes, left to right: MTH(D[0:n]) =
    node(MTH(D[0:k]), MTH(D[k:n])), the first peak being D[0:k]."""
    root = hashes[-1]
    for h in reversed(hashes[:-1]):
        root = node_hash(h, root)
    return root


def _read_hashes(
    conn: sa.Connection, wanted: list[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    if not wanted:
        return {}
    rows = conn.execute(
        sa.select(tlog_hashes.c.level, tlog_hashes.c.idx, tlog_hashes.c.hash).where(
            sa.tuple_(tlog_hashes.c.level, tlog_hashes.c.idx).in_(wanted)
        )
    ).all()
    return {(int(lv), int(i)): bytes(h) for lv, i, h in rows}


def append(conn: sa.Connection, entry: bytes, *, now: int) -> int:
    """Add ``entry`` as the next leaf, in the caller's transaction; its index.

    Inserts the entry, the leaf hash and every subtree this leaf completes,
    and moves the head to the new size and root. One statement locks, one
    reads the right edge, two insert, one updates."""
    size, _ = lock_head(conn)
    index = size
    # The leaf completes the subtree at each level l while bit l of index is
    # set: its left sibling is (l, (index >> l) - 1), already stored.
    climb = []
    level = 0
    while index >> level & 1:
        climb.append((level, (index >> level) - 1))
        level += 1
    new_size = size + 1
    old_peaks = peaks(new_size)[:-1]  # the last peak is the one this leaf completes
    stored = _read_hashes(conn, climb + old_peaks)
    missing = [k for k in climb + old_peaks if k not in stored]
    if missing:
        lv, i = missing[0]
        raise StoreUnavailable(
            f"the transparency log lacks the hash of subtree ({lv}, {i}) it needs to "
            "append; run `sealdrop-relay log verify`"
        )
    h = leaf_hash(entry)
    rows = [{"level": 0, "idx": index, "hash": h}]
    for lv, left in climb:
        h = node_hash(stored[(lv, left)], h)
        rows.append({"level": lv + 1, "idx": index >> (lv + 1), "hash": h})
    root = fold_root([stored[p] for p in old_peaks] + [h])
    conn.execute(sa.insert(tlog_entries).values(idx=index, data=entry, created_at=now))
    conn.execute(sa.insert(tlog_hashes), rows)
    conn.execute(
        sa.update(tlog_head).where(tlog_head.c.id == HEAD_ID).values(size=new_size, root=root)
    )
    return index


def read_level(conn: sa.Connection, level: int, start: int, count: int) -> list[bytes]:
    """The hashes of tree level ``level`` at [start, start + count), in order
    (fewer if some are not stored: the caller checks)."""
    rows = conn.execute(
        sa.select(tlog_hashes.c.hash)
        .where(tlog_hashes.c.level == level, tlog_hashes.c.idx >= start,
               tlog_hashes.c.idx < start + count)
        .order_by(tlog_hashes.c.idx)
    ).scalars().all()
    return [bytes(h) for h in rows]


def read_entries(conn: sa.Connection, start: int, count: int) -> list[bytes]:
    """The entries at [start, start + count), in order (fewer if missing)."""
    rows = conn.execute(
        sa.select(tlog_entries.c.data)
        .where(tlog_entries.c.idx >= start, tlog_entries.c.idx < start + count)
        .order_by(tlog_entries.c.idx)
    ).scalars().all()
    return [bytes(d) for d in rows]

