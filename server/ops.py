"""Operator work on the stores: start-up recovery, gc, verify (fsck) and backup.

Ordering rule used throughout: rows are created before their blobs and deleted
before them, and every scan lists blobs *before* reading rows. So a blob
whose row is missing at scan time really is an orphan (its row existed before
the blob did, and is gone), never a blob of an upload that just started.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .blobs import BlobStore, chunk_list_digest
from .config import BLOB_DIR, CONFIG_NAME, DB_NAME, LOG_KEY_NAME, RelayConfig
from .errors import Busy, ConfigError
from .leases import LEASE_SECONDS, Leases
from .locks import TransferLocks, upload_lease
from .logs import LOGGER_NAME
from .metadata import COMPLETE, UPLOADING, SqlMetadataStore, Transfer
from .ratelimit import RateLimit


async def recover(
    store: SqlMetadataStore, blobs: BlobStore, leases: Leases | None = None
) -> int:
    """After a crash: make every partial blob exactly its last intact chunk.

    Chunks are not fsynced as they arrive (server.blobs), so after a power loss
    a partial blob may be shorter than its committed offset, or hold zeros or
    stale bytes where a chunk should be. Each one is re-hashed along its
    recorded chunks; the committed offset moves back to the end of the last
    chunk that verifies (clients resume from HEAD and re-send the rest), the
    chunk records past it are dropped and the bytes past it cut. After a mere
    SIGKILL every chunk verifies and only an uncommitted tail is cut. Costs one
    read of every partial blob per start.

    ``leases``: the serving relay's (``server.leases``). Another relay process
    sharing the blob folder may be writing a chunk of an upload right now,
    past its committed offset: recovering that upload would cut the chunk
    under it. So each upload is recovered holding its lease: taken at once
    if free or its holder is a dead process of this host (a crash, a power
    loss), else waited for up to ``LEASE_SECONDS`` (a holder that died
    elsewhere lets go by then); one held still longer is being written by a
    live process, which renews it, and is left to it.
    """
    fixed = 0
    for t in await store.all_transfers():
        if t.state != UPLOADING:
            continue
        if leases is None:
            fixed += await _recover_one(store, blobs, t)
            continue
        name, owner = upload_lease(t.id), leases.new_owner()
        try:
            if not await leases.take_over_dead(name, owner):
                await leases.acquire(name, owner, wait=LEASE_SECONDS + 5)
            async with leases.held(name, owner), blobs.write_lock(t.id, wait=LEASE_SECONDS + 5):
                # Read again under the lease: the holder may have moved it meanwhile.
                # Under the write lock too: a holder that stalled inside a write
                # past its lease may still be writing (server.writelocks).
                fresh = await store.get_transfer(t.id)
                if fresh is not None and fresh.state == UPLOADING:
                    fixed += await _recover_one(store, blobs, fresh)
        except Busy:  # held by a live process (or its stalled write): left to it
            _log.info("recover_skipped", extra={"fields": {"transfer": t.id}})
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


_log = logging.getLogger(LOGGER_NAME)

# gc never deletes more than this share of the stored blobs in one run unless
# forced; a run that would is refused whole (nothing deleted), because a sudden
# mass deletion is far likelier a wrong database than a mass expiry. Below
# GC_FLOOR deletions the share is not checked, so a small relay still empties.
GC_MAX_SHARE = 0.5
GC_FLOOR = 20


class GcRefused(ConfigError):
    """gc would delete more than its bounded share of blobs."""


async def _delete(store: SqlMetadataStore, blobs: BlobStore, tid: str) -> None:
    # Row first, then blob (the ordering rule above).
    await store.delete_transfer(tid)
    await blobs.delete(tid)


@dataclass(slots=True)
class GcReport:
    deleted: list[str] = field(default_factory=list)
    orphan_blobs: int = 0
    stale_partials: int = 0
    nonces: int = 0
    rate_buckets: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "transfers_deleted": len(self.deleted),
            "orphan_blobs_deleted": self.orphan_blobs,
            "stale_partials_discarded": self.stale_partials,
            "nonces_purged": self.nonces,
            "rate_buckets_purged": self.rate_buckets,
        }


# The lease (server.leases) of the one gc running on a database.
GC_LEASE = "gc"


async def gc_as_leader(
    store: SqlMetadataStore,
    blobs: BlobStore,
    cfg: RelayConfig,
    *,
    now: int,
    leases: Leases,
    locks: TransferLocks | None = None,
    force: bool = False,
) -> GcReport | None:
    """``gc``, unless another gc runs on this database (``sealdrop-relay gc``,
    or any relay process's reaper): then None, at once, nothing done.

    Why one at a time: two gcs would list the same blobs and rows and delete
    the same uploads twice, and each would judge its bounded share
    (``GC_MAX_SHARE``) against a store the other is emptying. The lease is
    held, renewed, for the whole run; a leader that dies lets go of it
    within ``server.leases.LEASE_SECONDS``."""
    owner = leases.new_owner()
    if not await leases.try_take(GC_LEASE, owner):
        return None
    async with leases.held(GC_LEASE, owner):
        return await gc(store, blobs, cfg, now=now, locks=locks, force=force)


async def gc(
    store: SqlMetadataStore,
    blobs: BlobStore,
    cfg: RelayConfig,
    *,
    now: int,
    locks: TransferLocks | None = None,
    force: bool = False,
) -> GcReport:
    """Delete expired transfers, abandoned uploads, those every recipient
    dismissed, orphan blobs and old nonces.

    ``locks`` is the serving relay's lock table (the operator command has
    none): the entry of every transfer deleted here is dropped from it, so the
    table never keeps an upload that is gone. Not taken: a stalled upload may
    hold its lock for long, and must not stall gc. A chunk still being written
    then fails to commit (its row is gone) and leaves at most an orphan
    partial blob, which the next gc removes.

    Bounded: without ``force``, a run that would delete more than
    ``GC_MAX_SHARE`` of the stored blobs (and more than ``GC_FLOOR``) raises
    ``GcRefused`` before deleting anything. Every deletion is logged
    (``gc_delete``: transfer id and reason).

    A blob store failure (``StoreUnavailable``: S3 refusing or not answering)
    stops the run there: a transfer whose row went and whose blob did not is
    an orphan, which the next run deletes (``tests/server/test_s3_relay_faults.py``)."""
    report = GcReport()
    listed = await blobs.list()
    # Expired, abandoned, and dismissed by every recipient (nobody wants the blob).
    expired = await store.expired(now=now, abandoned_before=now - cfg.abandoned_upload_seconds)
    dismissed = [t for t in await store.dismissed_by_all() if t not in expired]
    ids = await store.ids()
    doomed = expired + dismissed
    orphans = sorted({b.key for b in listed if b.key not in ids and b.key not in doomed})
    stored = {b.key for b in listed}
    share = len(orphans) + len([t for t in doomed if t in stored])
    if not force and share > GC_FLOOR and share > GC_MAX_SHARE * len(stored):
        raise GcRefused(
            f"gc would delete {share} of the {len(stored)} stored blobs, more than "
            f"{GC_MAX_SHARE:.0%} in one run; nothing was deleted. Check that database_url is "
            "this relay's database, then run `sealdrop-relay gc --force` if the deletions are "
            "right"
        )
    # The database's own clean-up first: an object store that fails below
    # (gc stops at its first failure) must not leave nonces to pile up.
    report.nonces = await store.purge_nonces(now)
    report.rate_buckets = await store.purge_rate_buckets(
        RateLimit(rate=cfg.rate_per_second, burst=cfg.rate_burst))
    for tid in doomed:
        await _delete(store, blobs, tid)
        if locks is not None:
            locks.drop(tid)
        report.deleted.append(tid)
        # Ids only: the relay logs no patient data, and ids are already in the access log.
        _log.info("gc_delete", extra={"fields": {
            "transfer": tid, "reason": "expired" if tid in expired else "dismissed"}})
    for key in orphans:
        await blobs.delete(key)
        report.orphan_blobs += 1
        _log.info("gc_delete", extra={"fields": {"transfer": key, "reason": "orphan"}})
    # A partial blob beside the complete one (S3: a second multipart upload
    # left by two relays racing on a first chunk) is never written again:
    # aborting it is what stops the object store from keeping its parts.
    done = {b.key for b in listed if b.complete}
    for key in sorted({b.key for b in listed if not b.complete and b.key in done} - set(doomed)):
        await blobs.discard_partial(key)
        report.stale_partials += 1
        _log.info("gc_delete", extra={"fields": {"transfer": key, "reason": "stale_partial"}})
    return report


@dataclass(frozen=True, slots=True)
class Removal:
    """One thing ``verify --repair`` removed or cut: what an operator tells the sender."""

    transfer: str
    sender: str  # "" for a blob without a row: nobody to tell
    problem: str  # tampered | missing | orphan | trailing
    action: str  # deleted (row and blob) | rolled_back | truncated | blob_deleted

    def to_json(self) -> dict[str, str]:
        return {"transfer": self.transfer, "sender": self.sender,
                "problem": self.problem, "action": self.action}


@dataclass(slots=True)
class VerifyReport:
    checked: int = 0
    tampered: list[str] = field(default_factory=list)  # complete blob ≠ its recorded chunks
    missing: list[str] = field(default_factory=list)  # row without its blob
    orphans: list[str] = field(default_factory=list)  # blob without a row
    trailing: list[str] = field(default_factory=list)  # partial blob longer than committed
    repaired: bool = False
    removed: list[Removal] = field(default_factory=list)  # what --repair did, one per fix

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
            "removed": [r.to_json() for r in self.removed],
        }

    def removed_counts(self) -> dict[tuple[str, str, str], int]:
        """(sender, problem, action) → count: the labels of the repair metric."""
        out: dict[tuple[str, str, str], int] = {}
        for r in self.removed:
            key = (r.sender, r.problem, r.action)
            out[key] = out.get(key, 0) + 1
        return out


async def verify(store: SqlMetadataStore, blobs: BlobStore, *, repair: bool) -> VerifyReport:
    """Re-hash every complete blob along its recorded chunks; find rows without
    blobs and blobs without rows. ``repair`` fixes each and records (and logs,
    ``verify_removed``) what it removed, with the transfer's sender."""
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
        def removed(tid: str, problem: str, action: str) -> None:
            row = by_id.get(tid)
            item = Removal(tid, row.sender if row else "", problem, action)
            report.removed.append(item)
            _log.warning("verify_removed", extra={"fields": item.to_json()})

        for problem, tids in (("tampered", report.tampered), ("missing", report.missing)):
            for tid in tids:
                if by_id[tid].state == UPLOADING:
                    # A partial blob shorter than its offset (a power loss): roll the
                    # upload back to its last intact chunk; the sender resumes.
                    await _recover_one(store, blobs, by_id[tid])
                    removed(tid, problem, "rolled_back")
                    continue
                await _delete(store, blobs, tid)
                removed(tid, problem, "deleted")
        for tid in report.trailing:
            left = await blobs.truncate_partial(tid, by_id[tid].committed)
            # An S3 store cannot cut a multipart upload: its extra part is
            # replaced by the sender's next chunk or dropped at completion.
            removed(tid, "trailing", "truncated" if left <= by_id[tid].committed else "kept")
        for tid in report.orphans:
            if tid in by_id:
                await blobs.discard_partial(tid)
                removed(tid, "orphan", "partial_deleted")
            else:
                await blobs.delete(tid)
                removed(tid, "orphan", "blob_deleted")
        report.repaired = True
    return report


@dataclass(slots=True)
class BackupReport:
    transfers: int = 0
    dropped: int = 0
    bytes: int = 0


async def backup(
    store: SqlMetadataStore, blobs: BlobStore, cfg: RelayConfig, dest: Path
) -> BackupReport:
    """A consistent copy of a relay, safe while it serves.

    The database is copied first as a snapshot (``store.backup``: SQLite's
    online backup; PostgreSQL relays are refused, pg_dump is the tool there);
    then each blob that snapshot refers to (``blobs.backup_blob``). Complete
    blobs are immutable, and a partial blob is copied only up to the
    snapshot's committed offset, so the copy matches the snapshot. A blob
    deleted meanwhile drops its row from the copy: the result never has a row
    without a blob. ``dest`` is a data directory: ``sealdrop-relay serve --data
    DEST`` runs it.
    """
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ConfigError(f"backup destination {dest} is not empty")
    await store.backup(dest / DB_NAME)
    report = BackupReport()
    snapshot = SqlMetadataStore.open_sqlite(dest / DB_NAME)
    try:
        for t in await snapshot.all_transfers():
            if await blobs.backup_blob(
                t.id, dest / BLOB_DIR, complete=t.state == COMPLETE, length=t.committed
            ):
                report.transfers += 1
                report.bytes += t.committed
            else:
                await snapshot.delete_transfer(t.id)
                report.dropped += 1
    finally:
        await snapshot.close()
    conf = cfg.data_dir / CONFIG_NAME
    if conf.exists():
        shutil.copy2(conf, dest / CONFIG_NAME)
        if cfg.s3 is not None:
            _local_blobs_in(dest / CONFIG_NAME)
    # The log's key goes with the database it signs: a relay restored
    # without it is refused by its clients (docs/transparency.md).
    if cfg.log_key_path.exists():
        shutil.copy2(cfg.log_key_path, dest / LOG_KEY_NAME)
    return report


def _local_blobs_in(conf: Path) -> None:
    """The backup of an S3 relay keeps its blobs as files: its relay.toml must
    not send a relay serving it back to the live bucket."""
    lines = conf.read_text("utf-8").splitlines()
    kept = [
        f"# {line}  (this backup's blobs are files in blobs/)"
        if re.match(r"\s*(blobs|s3_endpoint|s3_region)\s*=", line) else line
        for line in lines
    ]
    conf.write_text("\n".join(kept) + "\n", "utf-8")
