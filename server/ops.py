"""Operator work on the stores: start-up recovery, gc, verify (fsck) and backup.

Ordering rule used throughout: rows are created before their blobs and deleted
before them, and every scan lists blobs *before* reading rows. So a blob
whose row is missing at scan time really is an orphan (its row existed before
the blob did, and is gone), never a blob of an upload that just started.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from .blobs import BlobStore, LocalBlobStore, chunk_list_digest
from .config import CONFIG_NAME, DB_NAME, RelayConfig
from .errors import ConfigError
from .metadata import COMPLETE, UPLOADING, SqlMetadataStore, Transfer


async def recover(store: SqlMetadataStore, blobs: BlobStore) -> int:
    """After a crash: make every partial blob exactly its last intact chunk.

    Chunks are not fsynced as they arrive (server.blobs), so after a power loss
    a partial blob may be shorter than its committed offset, or hold zeros or
    stale bytes where a chunk should be. Each one is re-hashed along its
    recorded chunks; the committed offset moves back to the end of the last
    chunk that verifies (clients resume from HEAD and re-send the rest), the
    chunk records past it are dropped and the bytes past it cut. After a mere
    SIGKILL every chunk verifies and only an uncommitted tail is cut. Costs one
    read of every partial blob per start.
    """
    fixed = 0
    for t in await store.all_transfers():
        if t.state == UPLOADING and await _recover_one(store, blobs, t):
            fixed += 1
    return fixed


async def _recover_one(store: SqlMetadataStore, blobs: BlobStore, t: Transfer) -> bool:
    """Roll one upload back to its last intact chunk; True if the offset moved."""
    recorded = [c for c in await store.chunks(t.id) if c[0] <= t.committed]
    good, size = await blobs.check_chunks(t.id, recorded, complete=False)
    intact = recorded[good - 1][0] if good else 0
    if size is None and t.committed > 0:
        done = await blobs.check_chunks(t.id, [], complete=True)
        if done[1] == t.size:
            return False  # finalised, row update lost: `complete` finishes it
    moved = intact != t.committed or good != len(recorded)
    if moved:
        await store.roll_back(t.id, intact)
    if size is not None and size > intact:
        await blobs.truncate_partial(t.id, intact)
    return moved


@dataclass(slots=True)
class GcReport:
    deleted: list[str] = field(default_factory=list)
    orphan_blobs: int = 0
    nonces: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "transfers_deleted": len(self.deleted),
            "orphan_blobs_deleted": self.orphan_blobs,
            "nonces_purged": self.nonces,
        }


async def gc(store: SqlMetadataStore, blobs: BlobStore, cfg: RelayConfig, *, now: int) -> GcReport:
    report = GcReport()
    listed = await blobs.list()
    for tid in await store.expired(now=now, abandoned_before=now - cfg.abandoned_upload_seconds):
        await store.delete_transfer(tid)
        await blobs.delete(tid)
        report.deleted.append(tid)
    ids = await store.ids()
    for b in listed:
        if b.key not in ids and b.key not in report.deleted:
            await blobs.delete(b.key)
            report.orphan_blobs += 1
    report.nonces = await store.purge_nonces(now)
    return report


@dataclass(slots=True)
class VerifyReport:
    checked: int = 0
    tampered: list[str] = field(default_factory=list)  # complete blob ≠ its recorded chunks
    missing: list[str] = field(default_factory=list)  # row without its blob
    orphans: list[str] = field(default_factory=list)  # blob without a row
    trailing: list[str] = field(default_factory=list)  # partial blob longer than committed
    repaired: bool = False

    @property
    def ok(self) -> bool:
        return not (self.tampered or self.missing or self.orphans or self.trailing)

    def to_json(self) -> dict[str, object]:
        return {
            "checked": self.checked,
            "tampered": self.tampered,
            "missing": self.missing,
            "orphans": self.orphans,
            "trailing": self.trailing,
            "ok": self.ok,
            "repaired": self.repaired,
        }


async def verify(store: SqlMetadataStore, blobs: BlobStore, *, repair: bool) -> VerifyReport:
    """Re-hash every complete blob along its recorded chunks; find rows without
    blobs and blobs without rows."""
    report = VerifyReport()
    listed = await blobs.list()
    rows = await store.all_transfers()
    by_id = {t.id: t for t in rows}
    for t in rows:
        report.checked += 1
        recorded = await store.chunks(t.id)
        if t.state == COMPLETE:
            good, size = await blobs.check_chunks(t.id, recorded, complete=True)
            if size is None:
                report.missing.append(t.id)
            elif (size != t.size or good != len(recorded) or not recorded
                  or recorded[-1][0] != t.size or chunk_list_digest(recorded) != t.digest):
                report.tampered.append(t.id)
        else:
            # Only the length is checked: an upload in progress may be writing.
            # Start-up recovery re-hashes partial blobs.
            _, size = await blobs.check_chunks(t.id, [], complete=False)
            if (size or 0) < t.committed:
                report.missing.append(t.id)
            elif (size or 0) > t.committed:
                report.trailing.append(t.id)
    for b in listed:
        row = by_id.get(b.key)
        if row is None:
            report.orphans.append(b.key)
        elif row.state == COMPLETE and not b.complete:
            report.orphans.append(b.key)  # a stale partial beside a complete blob
    if repair:
        for tid in report.tampered + report.missing:
            if by_id[tid].state == UPLOADING:
                # A partial blob shorter than its offset (a power loss): roll the
                # upload back to its last intact chunk; the sender resumes.
                await _recover_one(store, blobs, by_id[tid])
                continue
            await store.delete_transfer(tid)
            await blobs.delete(tid)
        for tid in report.trailing:
            await blobs.truncate_partial(tid, by_id[tid].committed)
        for tid in report.orphans:
            if tid in by_id:
                await blobs.truncate_partial(tid, 0)
                if isinstance(blobs, LocalBlobStore):
                    blobs.partial_path(tid).unlink(missing_ok=True)
            else:
                await blobs.delete(tid)
        report.repaired = True
    return report


def _copy_prefix(src: Path, dst: Path, length: int | None) -> bool:
    """Copy ``src`` (its first ``length`` bytes if given) to ``dst``, fsynced."""
    dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        with src.open("rb") as fin, dst.open("wb") as fout:
            if length is None:
                shutil.copyfileobj(fin, fout, 1024 * 1024)
            else:
                left = length
                while left > 0:
                    block = fin.read(min(1024 * 1024, left))
                    if not block:
                        return False
                    fout.write(block)
                    left -= len(block)
            fout.flush()
            os.fsync(fout.fileno())
    except FileNotFoundError:
        dst.unlink(missing_ok=True)
        return False
    return True


@dataclass(slots=True)
class BackupReport:
    transfers: int = 0
    dropped: int = 0
    bytes: int = 0


def backup(cfg: RelayConfig, dest: Path) -> BackupReport:
    """A consistent copy of a SQLite relay, safe while it serves.

    The database is copied first with SQLite's online backup API (a snapshot);
    then each blob that snapshot refers to. Complete blobs are immutable, and a
    partial blob is copied only up to the snapshot's committed offset, so the
    copy matches the snapshot. A blob deleted meanwhile drops its row from the
    copy: the result never has a row without a blob. ``dest`` is a data
    directory: ``sealdrop-relay serve --data DEST`` runs it.
    """
    src_db = cfg.sqlite_path
    if src_db is None:
        raise ConfigError(
            "backup copies SQLite relays; for PostgreSQL use pg_dump plus a copy of the "
            "blob directory (docs/operations.md)"
        )
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ConfigError(f"backup destination {dest} is not empty")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    out_db = dest / DB_NAME
    src = sqlite3.connect(f"file:{src_db}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(out_db)
    try:
        src.backup(dst)
    finally:
        src.close()
    report = BackupReport()
    live = LocalBlobStore(cfg.blob_dir)
    copy = LocalBlobStore(dest / "blobs")
    copy.create_dirs()
    try:
        rows = dst.execute("SELECT id, state, committed FROM transfers").fetchall()
        for tid, state, committed in rows:
            if state == COMPLETE:
                ok = _copy_prefix(live.complete_path(tid), copy.complete_path(tid), None)
            else:
                ok = committed == 0 or _copy_prefix(
                    live.partial_path(tid), copy.partial_path(tid), committed
                ) or _copy_prefix(live.complete_path(tid), copy.partial_path(tid), committed)
            if ok:
                report.transfers += 1
                report.bytes += committed
            else:
                dst.execute("DELETE FROM transfer_recipients WHERE transfer_id = ?", (tid,))
                dst.execute("DELETE FROM transfer_chunks WHERE transfer_id = ?", (tid,))
                dst.execute("DELETE FROM transfers WHERE id = ?", (tid,))
                report.dropped += 1
        dst.commit()
    finally:
        dst.close()
    conf = cfg.data_dir / CONFIG_NAME
    if conf.exists():
        shutil.copy2(conf, dest / CONFIG_NAME)
    return report
