"""``sealdrop-relay migrate``: move a SQLite + files relay onto another database
and blob store (PostgreSQL + S3), verified blob by blob, resumable, with the
source untouched.

The order, and why:

1. **A snapshot of the source database** (SQLite's online backup, as
   ``backup`` takes): what is moved is one consistent state. Complete blobs
   are immutable and partial ones are copied only up to the snapshot's
   committed offset, so the blobs match the snapshot. The source is only read.
2. **The target blob store is claimed**: its relay-id marker must be absent
   or this relay's, and is written now, so that a second run knows the
   half-copied blobs are its own and any other relay refuses this store.
3. **Blobs, one by one.** Each recorded chunk is written through the target
   store's ``write_chunk`` with the chunk's recorded hash, so the target checks
   every byte as it arrives; a blob is then finalised (if complete) and read
   back along its chunks (``check_chunks``). A blob the target already holds
   intact is skipped; one it holds in part resumes after its last intact
   chunk. This is what an interrupted run repeats, and most of the time.
4. **Every row in one target transaction**, ``relay_meta`` (the relay id)
   with them. Until it commits, the target database is empty, and a relay
   started on it refuses the claimed blob store (server.binding); after, the
   two are bound. A run that finds the id already there only re-checks blobs.

The relay must be stopped for the last run: what arrives after its snapshot
is not moved. To keep the downtime short, ``--blobs-only`` first copies the
bulk while the relay still serves (steps 1-3); the run after stopping it
re-checks those blobs, copies only what is new and moves the rows. Once the
rows have moved, a further run only re-checks blobs, and refuses if the
source's transfers differ from the target's (the source kept serving): then
start over with an empty target.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sealdrop.crypto import chunkhash

from . import db, schema
from .blobs import BlobStore, Chunk, LocalBlobStore
from .config import DB_NAME
from .errors import ConfigError, InvalidInput
from .metadata import COMPLETE, SqlMetadataStore, Transfer

# Rows that describe a moment, not the relay: replay nonces expire within
# minutes and the clients re-sign; upload and gc leases belong to processes of
# the old relay; rate buckets refill within seconds.
_NOT_MOVED = frozenset({"nonces", "leases", "rate_buckets"})
_BATCH = 500  # rows per INSERT


class MigrateError(ConfigError):
    """The move cannot start or go on; the message says why and what to do."""


@dataclass
class MigrateReport:
    copied: int = 0  # blobs written (in full or resumed)
    skipped: int = 0  # blobs the target already held intact
    bytes: int = 0  # bytes written to the target store
    rows: dict[str, int] = field(default_factory=dict)
    already: bool = False  # the rows were moved by an earlier run
    cut_back: int = 0  # uploads in progress whose senders re-send a tail

    def to_json(self) -> dict[str, object]:
        return {"copied": self.copied, "skipped": self.skipped, "bytes": self.bytes,
                "rows": self.rows, "already_moved": self.already,
                "uploads_cut_back": self.cut_back}


Progress = Callable[[str], None]


async def migrate(
    source: SqlMetadataStore,
    source_blobs: LocalBlobStore,
    target_engine: AsyncEngine,
    target_blobs: BlobStore,
    *,
    progress: Progress = lambda _line: None,
    rows: bool = True,
) -> MigrateReport:
    relay_id = await source.relay_id()
    if relay_id is None:
        raise MigrateError("the source relay has no relay id; run `sealdrop-relay init` on it")
    target_id = await _prepare_target(target_engine)
    if target_id is not None and target_id != relay_id:
        raise MigrateError(
            f"the target database belongs to relay {target_id}, not to this relay "
            f"({relay_id}); migrate into an empty database")
    marker = await target_blobs.read_relay_id()
    if marker is not None and marker != relay_id:
        raise MigrateError(
            f"the target blob store belongs to relay {marker}, not to this relay "
            f"({relay_id}); migrate into an empty bucket or folder")
    if marker is None:
        await target_blobs.prepare()
        await target_blobs.write_relay_id(relay_id)

    report = MigrateReport(already=target_id is not None)
    with tempfile.TemporaryDirectory(prefix="sealdrop-migrate-") as tmp:
        snap_path = Path(tmp) / DB_NAME
        await source.backup(snap_path)
        snapshot = SqlMetadataStore.open_sqlite(snap_path)
        try:
            transfers = await snapshot.all_transfers()
            min_write = target_blobs.min_chunk_bytes
            # Uploads the target holds otherwise than the source: (kept, records).
            cut: dict[str, tuple[int, list[Chunk] | None]] = {}
            for n, t in enumerate(transfers, 1):
                chunks = await snapshot.chunks(t.id)
                moved = await _move_blob(source_blobs, target_blobs, t, chunks, min_write)
                if moved.kept < t.committed or moved.records is not None:
                    cut[t.id] = (moved.kept, moved.records)
                if moved.wrote:
                    report.copied += 1
                    report.bytes += moved.wrote
                else:
                    report.skipped += 1
                progress(f"blob {n}/{len(transfers)} {t.id}: "
                         + (f"copied {moved.wrote} bytes, verified" if moved.wrote
                            else "already there, verified")
                         + (f"; upload cut back to {moved.kept} bytes, the sender resumes"
                            if moved.kept < t.committed else ""))
            report.cut_back = sum(1 for t in transfers
                                  if t.id in cut and cut[t.id][0] < t.committed)
            if rows and report.already:
                await _same_rows(snapshot.engine.raw, target_engine)
            elif rows:
                report.rows = await _move_rows(snapshot.engine.raw, target_engine, cut)
                progress("rows: " + " ".join(f"{k}={v}" for k, v in report.rows.items()))
        finally:
            await snapshot.close()
    return report


async def _prepare_target(engine: AsyncEngine) -> str | None:
    """Create the schema in an empty target; refuse one at another revision or
    holding another relay's rows. The target's relay id, if rows were moved."""
    current = await schema.current(engine)
    if current is None:
        await schema.upgrade(engine)
    elif current != schema.head():
        raise MigrateError(
            f"the target database is at schema {current}, this relay at {schema.head()}; "
            "migrate into an empty database")
    async with engine.connect() as conn:
        rid = (await conn.execute(
            sa.select(db.relay_meta.c.value).where(db.relay_meta.c.key == "relay_id")
        )).scalar()
        if rid is None:
            for table in (db.accounts, db.transfers):
                if (await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar():
                    raise MigrateError(
                        f"the target database already holds {table.name} but no relay id: "
                        "it is another relay's or a half-made one; migrate into an empty "
                        "database")
    return None if rid is None else str(rid)


def groups(chunks: Sequence[Chunk], min_write: int) -> list[list[Chunk]]:
    """Consecutive recorded chunks gathered into writes of at least ``min_write``
    bytes (the last may be shorter): an S3 part must be 5 MiB or more, however
    small the chunks a client chose. With ``min_write`` 1, one chunk a write."""
    out: list[list[Chunk]] = []
    start = group_start = 0
    for chunk in chunks:
        if not out or start - group_start >= min_write:
            out.append([])
            group_start = start
        out[-1].append(chunk)
        start = chunk[0]
    return out


@dataclass(frozen=True, slots=True)
class Moved:
    wrote: int  # bytes written to the target; 0: it held the blob already
    kept: int  # the committed offset the target holds (an upload may be cut back)
    # An upload in progress whose chunks were gathered into parts: its chunk
    # records on the target, one per part (what the target can check while the
    # upload is open, and where the sender's next chunk must start). None: as in
    # the source.
    records: list[Chunk] | None = None


async def _move_blob(
    source: LocalBlobStore, target: BlobStore, t: Transfer, chunks: Sequence[Chunk],
    min_write: int,
) -> Moved:
    """Copy one transfer's blob, every recorded chunk checked on the way out of
    the source and read back from the target. An upload in progress keeps only
    whole writes: its tail is left for the sender to send again (the client
    takes an offset moved back, as after a relay's power loss)."""
    complete = t.state == COMPLETE
    plan = groups(chunks, min_write)
    if not complete and plan and plan[-1][-1][0] - _start_of(plan, len(plan) - 1) < min_write:
        plan = plan[:-1]
    if not plan:
        await target.delete(t.id)
        return Moved(0, 0, [] if chunks else None)
    # Each write's hash: a chunk's own record, or the BLAKE3 of gathered chunks
    # (each checked against its record as it is read).
    async def digest(i: int) -> str:
        g = plan[i]
        return g[0][1] if len(g) == 1 else await _group_digest(
            source, t.id, complete, _start_of(plan, i), g)

    # What the target is checked against: a complete blob, along the recorded
    # chunks (ranged reads); an open upload, along its writes (its parts).
    records = ([c for g in plan for c in g] if complete else
               [(g[-1][0], await digest(i)) for i, g in enumerate(plan)])
    intact, size = await target.check_chunks(t.id, records, complete=complete)
    moved = Moved(0, plan[-1][-1][0],
                  None if complete or records == list(chunks) else records)
    if intact == len(records) and size == records[-1][0]:
        return moved
    if complete and size is not None:
        await target.delete(t.id)  # a wrong complete blob is never resumed into
        intact = 0
    done = _writes_done(plan, complete, intact)  # resume after the last intact write
    start = _start_of(plan, done)
    await target.truncate_partial(t.id, start)
    wrote = 0
    for i in range(done, len(plan)):
        end = plan[i][-1][0]
        hashed = await digest(i) if complete else records[i][1]
        try:
            await target.write_chunk(t.id, start, _read(source, t.id, complete, start, end),
                                     length=end - start, digest=hashed)
        except InvalidInput as exc:
            raise MigrateError(
                f"blob {t.id} in the source does not match its recorded hashes between "
                f"bytes {start} and {end} ({exc}); run `sealdrop-relay verify` on the "
                "source; the target keeps nothing of it past that point") from exc
        wrote += end - start
        start = end
    if complete:
        await target.finalize(t.id, t.size)
    intact, size = await target.check_chunks(t.id, records, complete=complete)
    if intact != len(records) or size != records[-1][0]:
        raise MigrateError(
            f"blob {t.id} does not read back intact from the target store "
            f"({intact} of {len(records)} chunks); the source is untouched: check the "
            "target and run migrate again")
    return Moved(wrote, moved.kept, moved.records)


def _writes_done(plan: Sequence[Sequence[Chunk]], complete: bool, intact: int) -> int:
    """How many whole writes ``intact`` checked records cover: records are
    chunks for a complete blob, writes for an open upload."""
    if not complete:
        return intact
    n = k = 0
    for g in plan:
        if n + len(g) > intact:
            break
        n += len(g)
        k += 1
    return k


def _start_of(plan: Sequence[Sequence[Chunk]], i: int) -> int:
    return plan[i - 1][-1][0] if i else 0


async def _group_digest(
    source: LocalBlobStore, key: str, complete: bool, start: int, group: Sequence[Chunk]
) -> str:
    """The BLAKE3 tag of several recorded chunks read as one write, each of them
    checked against its own recorded hash on the way."""
    whole = chunkhash.new(chunkhash.BLAKE3)
    for end, digest in group:
        algorithm = chunkhash.untag(digest)[0]
        h = chunkhash.new(algorithm)
        async for piece in _read(source, key, complete, start, end):
            h.update(piece)
            whole.update(piece)
        if chunkhash.tag(algorithm, h.hexdigest()) != digest:
            raise MigrateError(
                f"blob {key} in the source does not match its recorded hash for bytes "
                f"{start}-{end}; run `sealdrop-relay verify` on the source")
        start = end
    return chunkhash.tag(chunkhash.BLAKE3, whole.hexdigest())


def _read(
    source: LocalBlobStore, key: str, complete: bool, start: int, end: int
) -> AsyncIterator[bytes]:
    """Bytes [start, end) of the source blob, complete or partial."""
    return (source.read if complete else source.read_partial)(key, start, end)


def _tables() -> list[sa.Table]:
    return [t for t in db.metadata.sorted_tables if t.name not in _NOT_MOVED]


async def _move_rows(src: AsyncEngine, dst: AsyncEngine,
                     cut: dict[str, tuple[int, list[Chunk] | None]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    async with src.connect() as read, dst.begin() as write:
        # The target's schema came with an empty log's head row (migration
        # 0008); the source's head, with its entries, replaces it.
        await write.execute(sa.delete(db.tlog_head))
        for table in _tables():
            counts[table.name] = await _copy_table(read, write, table)
        for tid, (kept, records) in cut.items():  # what the target store holds of them
            await write.execute(sa.update(db.transfers).where(db.transfers.c.id == tid)
                                .values(committed=kept))
            await write.execute(sa.delete(db.chunks).where(
                db.chunks.c.transfer_id == tid, db.chunks.c.end_offset > kept))
            if records is not None:
                await write.execute(sa.delete(db.chunks).where(db.chunks.c.transfer_id == tid))
                if records:
                    await write.execute(sa.insert(db.chunks), [
                        {"transfer_id": tid, "end_offset": end, "sha256": digest}
                        for end, digest in records])
    return counts


async def _copy_table(read: AsyncConnection, write: AsyncConnection, table: sa.Table) -> int:
    result = await read.stream(sa.select(table))
    n = 0
    async for batch in result.mappings().partitions(_BATCH):
        await write.execute(sa.insert(table), [dict(row) for row in batch])
        n += len(batch)
    return n


async def _same_rows(src: AsyncEngine, dst: AsyncEngine) -> None:
    """A repeated run after the rows moved: the target must hold exactly the
    snapshot's transfers, or the two relays have diverged."""
    async with src.connect() as a, dst.connect() as b:
        ids = sa.select(db.transfers.c.id)
        mine = set((await a.execute(ids)).scalars())
        theirs = set((await b.execute(ids)).scalars())
    if mine != theirs:
        raise MigrateError(
            f"the target already holds this relay's rows from an earlier run, but they differ "
            f"from the source now ({len(mine - theirs)} transfer(s) only in the source, "
            f"{len(theirs - mine)} only in the target): the source kept serving after that "
            "run. Start over with an empty target database and blob store, with the source "
            "relay stopped")
