"""The metadata store: accounts, invites, transfers, recipients and nonces,
and the transparency log's appends in their transactions (``server.tlog``).

It raises the relay's domain errors (``server.errors``), never HTTP ones. It
also makes the database half of a backup: ``backup`` writes a snapshot, which
``server.ops.backup`` then reads through a second store opened on the copy.

One implementation on SQLAlchemy 2 Core serves SQLite and PostgreSQL. Every
method is one transaction, written as one synchronous function over a
``Connection`` and run whole by ``server.sqlrun`` (SQLite: on one dedicated
thread, one hop per transaction; PostgreSQL: in the async engine's greenlet). Invariants that span
rows (a used invite, the committed offset) are enforced inside that
transaction with conditional updates, never by read-then-write in Python; the
quota, a sum over rows, is checked under a lock that serialises the sender's
creates (``_lock_sender``). So several relay processes sharing one database
stay correct, on SQLite as on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from sealdrop.crypto.protocol import ErrorCode
from sealdrop.crypto.tlog.entries import KeyEntry

from . import leases as lease_sql
from . import ratelimit, tlog
from .db import (
    accounts,
    blocks,
    cards,
    chunks,
    invites,
    key_log,
    make_engine,
    nonces,
    recipients,
    relay_meta,
    sqlite_file,
    sqlite_twin,
    tlog_receipts,
    transfers,
)
from .dbfail import GuardedEngine
from .errors import (
    ConfigError,
    Conflict,
    InvalidInput,
    NotPermitted,
    QuotaExceeded,
    Unauthenticated,
)
from .keycache import KeyCache
from .noncebatch import AccountState, NonceBatcher
from .ratelimit import RateLimit
from .sqlrun import AsyncRunner, Runner, SqliteRunner

T = TypeVar("T")

UPLOADING = "uploading"
COMPLETE = "complete"


@dataclass(frozen=True, slots=True)
class Account:
    handle: str
    signing_key: str  # base64, as in the bundle
    bundle: str  # the signed bundle, JSON text exactly as registered
    bundle_created: int
    created_at: int
    disabled: bool
    log_index: int | None = None  # the current bundle's key entry (server.tlog)


@dataclass(frozen=True, slots=True)
class Invite:
    code_hash: str
    created_at: int
    expires_at: int
    used_by: str | None
    used_at: int | None
    revoked: bool


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    handle: str
    downloaded_at: int | None
    verified_at: int | None
    dismissed_at: int | None = None  # the recipient refused or dismissed it


@dataclass(frozen=True, slots=True)
class Transfer:
    id: str
    sender: str
    size: int
    committed: int
    state: str
    digest: str | None  # blobs.chunk_list_digest, once complete
    created_at: int
    updated_at: int
    completed_at: int | None
    expires_at: int
    recipients: tuple[RecipientStatus, ...]
    # Once complete (migration 0008): the transfer entry and its commitment's salt.
    log_salt: bytes | None = None
    log_index: int | None = None

    def recipient(self, handle: str) -> RecipientStatus | None:
        for r in self.recipients:
            if r.handle == handle:
                return r
        return None


@dataclass(frozen=True, slots=True)
class LoggedReceipt:
    """A receipt to log with an ack: its status, time and signature as the
    recipient sent them, and its log entry (crypto.tlog.entries)."""

    status: str
    at: int
    sig: bytes
    entry: bytes


@dataclass(frozen=True, slots=True)
class ReceiptRow:
    """A logged receipt, as the sender gets it back."""

    recipient: str
    status: str
    at: int
    sig: bytes
    log_index: int


def _open_invite(invite_hash: str, now: int) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        invites.c.code_hash == invite_hash,
        invites.c.used_by.is_(None),
        invites.c.revoked == sa.false(),
        invites.c.expires_at > now,
    )


def _invalid_invite() -> NotPermitted:
    return NotPermitted(
        "the invite code is unknown, used, revoked or expired; ask the relay operator "
        "for a new one",
        code=ErrorCode.INVALID_INVITE,
    )


def _account(row: sa.Row[tuple[object, ...]]) -> Account:
    m = row._mapping
    return Account(
        handle=m["handle"],
        signing_key=m["signing_key"],
        bundle=m["bundle"],
        bundle_created=m["bundle_created"],
        created_at=m["created_at"],
        disabled=bool(m["disabled"]),
        log_index=m["log_index"],
    )


def _sqlite_backup(src: str, dest: Path) -> None:
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
    try:
        target = sqlite3.connect(dest)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


# The statements every transfer runs, built once: building a Core statement
# costs more CPU than SQLite takes to run it (measured, issue 17).
_ACCOUNT = sa.select(accounts).where(accounts.c.handle == sa.bindparam("handle"))
_PROGRESS = sa.select(transfers.c.state, transfers.c.committed).where(
    transfers.c.id == sa.bindparam("tid")
)
# A transfer and its recipients in one statement (every transfer has at least
# one recipient; the outer join still finds a row without any).
_TRANSFER = (
    sa.select(
        transfers,
        recipients.c.recipient,
        recipients.c.downloaded_at,
        recipients.c.verified_at,
        recipients.c.dismissed_at,
    )
    .select_from(
        transfers.outerjoin(recipients, recipients.c.transfer_id == transfers.c.id)
    )
    .where(transfers.c.id == sa.bindparam("tid"))
    .order_by(recipients.c.recipient)
)
_HIDDEN = sa.select(
    sa.exists().where(
        blocks.c.blocker == sa.bindparam("recipient"), blocks.c.blocked == sa.bindparam("sender")
    )
    | sa.exists().where(
        accounts.c.handle == sa.bindparam("sender"), accounts.c.disabled == sa.true()
    )
)
_ADVANCE = (
    sa.update(transfers)
    .where(
        transfers.c.id == sa.bindparam("tid"),
        transfers.c.state == UPLOADING,
        transfers.c.committed == sa.bindparam("old"),
    )
    .values(committed=sa.bindparam("new"), updated_at=sa.bindparam("now"))
)
_DROP_CHUNKS_PAST = sa.delete(chunks).where(
    chunks.c.transfer_id == sa.bindparam("tid"), chunks.c.end_offset > sa.bindparam("old")
)
_ADD_CHUNK = sa.insert(chunks).values(
    transfer_id=sa.bindparam("tid"), end_offset=sa.bindparam("new"), sha256=sa.bindparam("sha")
)
_CHUNKS = (
    sa.select(chunks.c.end_offset, chunks.c.sha256)
    .where(chunks.c.transfer_id == sa.bindparam("tid"))
    .order_by(chunks.c.end_offset)
)
_COMPLETE = (
    sa.update(transfers)
    .where(
        transfers.c.id == sa.bindparam("tid"),
        transfers.c.state == UPLOADING,
        transfers.c.committed == transfers.c.size,
    )
    .values(
        state=COMPLETE,
        digest=sa.bindparam("dig"),
        completed_at=sa.bindparam("now"),
        updated_at=sa.bindparam("now"),
    )
)
_ACK = sa.update(recipients).where(
    recipients.c.transfer_id == sa.bindparam("tid"),
    recipients.c.recipient == sa.bindparam("who"),
)
_ACK_DOWNLOADED = _ACK.values(
    downloaded_at=sa.func.coalesce(recipients.c.downloaded_at, sa.bindparam("now"))
)
_ACK_VERIFIED = _ACK.values(
    downloaded_at=sa.func.coalesce(recipients.c.downloaded_at, sa.bindparam("now")),
    verified_at=sa.func.coalesce(recipients.c.verified_at, sa.bindparam("now")),
)
# The accounts of a nonce batch's requests, read in its transaction (server.keycache).
_SIGNERS = sa.select(accounts.c.handle, accounts.c.signing_key, accounts.c.disabled).where(
    accounts.c.handle.in_(sa.bindparam("handles", expanding=True))
)
_BLOCKER_AMONG = (
    sa.select(blocks.c.blocker)
    .where(
        blocks.c.blocked == sa.bindparam("sender"),
        blocks.c.blocker.in_(sa.bindparam("to", expanding=True)),
    )
    .order_by(blocks.c.blocker)
    .limit(1)
)
_ENABLED_AMONG = sa.select(accounts.c.handle).where(
    accounts.c.handle.in_(sa.bindparam("to", expanding=True)), accounts.c.disabled == sa.false()
)
# Plain inserts: the columns come from the parameters.
_INSERT_TRANSFER = sa.insert(transfers)
_INSERT_RECIPIENT = sa.insert(recipients)
_SENDER_USED = sa.select(sa.func.coalesce(sa.func.sum(transfers.c.size), 0)).where(
    transfers.c.sender == sa.bindparam("sender")
)


def _read_transfer(conn: sa.Connection, transfer_id: str) -> Transfer | None:
    return _transfer_of(list(conn.execute(_TRANSFER, {"tid": transfer_id}).all()))


def _read_chunks(conn: sa.Connection, transfer_id: str) -> list[tuple[int, str]]:
    """(end offset, tagged hash: crypto.chunkhash) of each committed chunk, in order."""
    return [(int(end), str(h)) for end, h in conn.execute(_CHUNKS, {"tid": transfer_id}).all()]


def _transfer_of(rows: list[sa.Row[tuple[object, ...]]]) -> Transfer | None:
    """The transfer of ``_TRANSFER``'s rows (one per recipient), or None."""
    if not rows:
        return None
    m = rows[0]._mapping
    return Transfer(
        id=m["id"],
        sender=m["sender"],
        size=m["size"],
        committed=m["committed"],
        state=m["state"],
        digest=m["digest"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        completed_at=m["completed_at"],
        expires_at=m["expires_at"],
        log_salt=None if m["log_salt"] is None else bytes(m["log_salt"]),
        log_index=m["log_index"],
        recipients=tuple(
            RecipientStatus(
                r._mapping["recipient"],
                r._mapping["downloaded_at"],
                r._mapping["verified_at"],
                r._mapping["dismissed_at"],
            )
            for r in rows
            if r._mapping["recipient"] is not None
        ),
    )


def _load(conn: sa.Connection, rows: list[sa.Row[tuple[object, ...]]]) -> list[Transfer]:
    """Transfers from their rows, with their recipients (one more query)."""
    ids = [r._mapping["id"] for r in rows]
    by_id: dict[str, list[RecipientStatus]] = {i: [] for i in ids}
    if ids:
        rec = conn.execute(
            sa.select(recipients)
            .where(recipients.c.transfer_id.in_(ids))
            .order_by(recipients.c.recipient)
        ).all()
        for r in rec:
            m = r._mapping
            by_id[m["transfer_id"]].append(
                RecipientStatus(m["recipient"], m["downloaded_at"], m["verified_at"],
                                m["dismissed_at"])
            )
    out = []
    for r in rows:
        fields = dict(r._mapping)
        if fields["log_salt"] is not None:
            fields["log_salt"] = bytes(fields["log_salt"])  # memoryview on some drivers
        out.append(Transfer(**fields, recipients=tuple(by_id[fields["id"]])))
    return out


def _lock_sender(conn: sa.Connection, sender: str) -> None:
    """Serialise this transaction with every other quota check of ``sender``.

    The quota is checked by reading the sender's sum and then inserting, so
    two creates must never both read before either inserts. PostgreSQL: lock
    the sender's account row until commit, FOR NO KEY UPDATE: a plain FOR
    UPDATE also conflicts with the FOR KEY SHARE lock that the foreign key of
    every transfer *to* that account takes, so senders sending to each other in
    a ring deadlocked (``deadlock detected``, a 500; ``scripts/bench_relay`` on
    PostgreSQL: 5 of 200). SQLite ignores FOR UPDATE, and its
    default deferred transaction reads without any lock: so take the
    database's write lock up front (BEGIN IMMEDIATE; other writers wait on the
    busy timeout), which must be the transaction's first statement. (Within
    one relay process the store's one SQLite thread already runs writers one
    at a time; this is for several processes on one file.)"""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.execute(
            sa.select(accounts.c.handle)
            .where(accounts.c.handle == sender)
            .with_for_update(key_share=True)
        )


def _log_bundle(
    conn: sa.Connection, handle: str, bundle: str, digest: bytes, *, now: int
) -> int:
    """Append the key entry of ``handle``'s ``bundle`` (last in the caller's
    transaction: ``server.tlog``), keep it in the key history and mark it the
    account's current one; its log index."""
    index = tlog.append(conn, KeyEntry(handle, digest).to_bytes(), now=now)
    conn.execute(sa.insert(key_log).values(
        log_index=index, handle=handle, bundle_digest=digest.hex(), bundle=bundle,
        created_at=now))
    conn.execute(
        sa.update(accounts).where(accounts.c.handle == handle).values(log_index=index))
    return index


def _make_runner(engine: GuardedEngine) -> Runner:
    """SQLite in a file: its own thread (``server.sqlrun``); else the async engine."""
    if sqlite_file(engine.raw) is not None:
        return SqliteRunner(sqlite_twin(engine.raw))
    return AsyncRunner(engine)


class SqlMetadataStore:
    def __init__(self, engine: AsyncEngine) -> None:
        # Guarded: a database that is down or goes away answers StoreUnavailable.
        # The async engine also serves the schema checks (``server.schema``) and
        # the tests that look at rows; the store's own transactions go through
        # ``_run``.
        self.engine = GuardedEngine(engine)
        self._run = _make_runner(self.engine)
        self.engine.on_dispose.append(self._run.reset)
        self._nonces = NonceBatcher(self._insert_nonces)
        # Accounts that signed recent requests; checked at every nonce commit.
        self.keys = KeyCache()
        # Per-account token buckets, spent in each nonce batch's transaction
        # (``server.ratelimit``); None: no limit (operator commands, tests).
        self.rate_limit: RateLimit | None = None
        self.rate_clock: Callable[[], float] = time.time

    @classmethod
    def open(cls, url: str) -> SqlMetadataStore:
        """A store on its own engine (``close`` it); ``url`` as ``RelayConfig.db_url``."""
        return cls(make_engine(url))

    @classmethod
    def open_sqlite(cls, path: Path) -> SqlMetadataStore:
        """A store on the SQLite file ``path`` (a backup, say)."""
        return cls.open(f"sqlite+aiosqlite:///{path}")

    async def close(self) -> None:
        await self.engine.dispose()  # the runner's connections too (``on_dispose``)
        await self._run.close()

    async def ping(self) -> None:
        await self._run.read(lambda conn: conn.exec_driver_sql("SELECT 1").all())

    async def schema_revision(self) -> str | None:
        """The database's alembic revision, for ``/readyz`` (``server.schema``)."""
        from .schema import read_revision

        rev: str | None = await self._run.read(read_revision)
        return rev

    async def backup(self, dest: Path) -> None:
        """Write a consistent snapshot of the whole database to the new SQLite file
        ``dest``, safe while relays serve (SQLite's online backup API)."""
        src = self.engine.url.database
        if self.engine.dialect.name != "sqlite" or not src:
            raise ConfigError(
                "backup copies SQLite relays; for PostgreSQL use pg_dump plus a copy of the "
                "blob directory (docs/operations.md)"
            )
        await asyncio.to_thread(_sqlite_backup, src, dest)

    # -- accounts ---------------------------------------------------------

    async def get_account(self, handle: str) -> Account | None:
        def work(conn: sa.Connection) -> Account | None:
            row = conn.execute(_ACCOUNT, {"handle": handle}).first()
            return None if row is None else _account(row)

        return await self._run.read(work)

    async def list_accounts(self) -> list[Account]:
        def work(conn: sa.Connection) -> list[Account]:
            rows = conn.execute(sa.select(accounts).order_by(accounts.c.handle)).all()
            return [_account(r) for r in rows]

        return await self._run.read(work)

    async def set_disabled(self, handle: str, disabled: bool) -> bool:
        def work(conn: sa.Connection) -> bool:
            res = conn.execute(
                sa.update(accounts).where(accounts.c.handle == handle).values(disabled=disabled)
            )
            return res.rowcount == 1

        try:
            return await self._run.write(work)
        finally:
            self.keys.forget(handle)

    async def check_invite(self, invite_hash: str, *, now: int) -> None:
        """``NotPermitted`` unless the invite is open now. A read only: the
        claim is ``register``'s conditional update."""

        def work(conn: sa.Connection) -> bool:
            row = conn.execute(
                sa.select(invites.c.code_hash).where(*_open_invite(invite_hash, now))
            ).first()
            return row is not None

        if not await self._run.read(work):
            raise _invalid_invite()

    async def register(
        self,
        *,
        handle: str,
        signing_key: str,
        bundle: str,
        bundle_created: int,
        invite_hash: str,
        now: int,
        nonce: str,
        nonce_expires_at: int,
        bundle_digest: bytes,
    ) -> int:
        """Claim the invite, remember the request's nonce, add the account and
        log its bundle (``bundle_digest``: crypto.tlog.entries.bundle_digest):
        all or nothing (any error leaves the transaction, which rolls back).
        Returns the key entry's log index."""

        def work(conn: sa.Connection) -> int:
            # Why a conditional update: two registrations racing for one invite
            # code must not both succeed, on any database.
            res = conn.execute(
                sa.update(invites)
                .where(*_open_invite(invite_hash, now))
                .values(used_by=handle, used_at=now)
            )
            if res.rowcount != 1:
                raise _invalid_invite()
            taken = conn.execute(
                sa.select(accounts.c.handle).where(
                    sa.or_(accounts.c.handle == handle, accounts.c.signing_key == signing_key)
                )
            ).first()
            if taken is not None:
                raise Conflict(
                    "that handle or signing key is already registered",
                    code=ErrorCode.HANDLE_TAKEN,
                )
            try:
                conn.execute(sa.insert(nonces).values(nonce=nonce, expires_at=nonce_expires_at))
            except sa.exc.IntegrityError:
                raise Unauthenticated(
                    "this signed request was already used (replay refused)",
                    code=ErrorCode.REPLAYED_REQUEST,
                ) from None
            conn.execute(
                sa.insert(accounts).values(
                    handle=handle,
                    signing_key=signing_key,
                    bundle=bundle,
                    bundle_created=bundle_created,
                    created_at=now,
                    disabled=False,
                )
            )
            return _log_bundle(conn, handle, bundle, bundle_digest, now=now)

        return await self._run.write(work)

    async def rotate_bundle(
        self, *, handle: str, signing_key: str, bundle: str, bundle_created: int,
        bundle_digest: bytes, now: int,
    ) -> int:
        """Replace the account's bundle with a newer one and log it, in one
        transaction; the key entry's log index."""

        def work(conn: sa.Connection) -> int | None:
            changed = conn.execute(
                sa.update(accounts)
                .where(
                    accounts.c.handle == handle,
                    accounts.c.signing_key == signing_key,
                    accounts.c.bundle_created < bundle_created,
                )
                .values(bundle=bundle, bundle_created=bundle_created)
            ).rowcount
            if changed != 1:
                return None
            return _log_bundle(conn, handle, bundle, bundle_digest, now=now)

        try:
            index = await self._run.write(work)
        finally:
            self.keys.forget(handle)  # the cached row holds the old bundle
        if index is None:
            raise Conflict(
                "a rotated bundle must be newer than the current one",
                code=ErrorCode.STALE_BUNDLE,
            )
        return index

    # -- invites ------------------------------------------------------------

    async def create_invite(self, code_hash: str, *, now: int, expires_at: int) -> None:
        def work(conn: sa.Connection) -> None:
            conn.execute(
                sa.insert(invites).values(
                    code_hash=code_hash, created_at=now, expires_at=expires_at, revoked=False
                )
            )

        await self._run.write(work)

    async def list_invites(self) -> list[Invite]:
        def work(conn: sa.Connection) -> list[Invite]:
            rows = conn.execute(sa.select(invites).order_by(invites.c.created_at)).all()
            return [Invite(**r._mapping) for r in rows]

        return await self._run.read(work)

    async def revoke_invite(self, code_hash_or_prefix: str) -> int:
        """Revoke by full hash or by the listed id (a hash prefix); returns how many."""

        def work(conn: sa.Connection) -> int:
            return conn.execute(
                sa.update(invites)
                .where(
                    invites.c.code_hash.startswith(code_hash_or_prefix, autoescape=True),
                    invites.c.used_by.is_(None),
                    invites.c.revoked == sa.false(),
                )
                .values(revoked=True)
            ).rowcount

        return await self._run.write(work)

    # -- nonces -------------------------------------------------------------

    async def remember_nonce(self, nonce: str, *, expires_at: int) -> bool:
        """Record a request nonce; False if it was seen before (a replay).

        Committed, synced, together with the nonces of the requests that arrive
        meanwhile (``server.noncebatch``): durable before the caller acts."""
        return await self._nonces.remember(nonce, expires_at=expires_at)

    async def remember_nonce_as(
        self, nonce: str, *, expires_at: int, handle: str
    ) -> tuple[bool, AccountState | None]:
        """``remember_nonce``, and the account ``handle`` as that same commit saw
        it: (signing key, disabled, whether its rate limit let this request
        through), or None if there is no such account."""
        return await self._nonces.remember_as(nonce, expires_at=expires_at, handle=handle)

    async def _insert_nonces(
        self, batch: list[tuple[str, int]], handles: dict[str, int]
    ) -> tuple[set[str], dict[str, tuple[str, bool, int]]]:
        """Insert the nonces of ``batch`` that are not stored yet, in one synced
        transaction; return those inserted, and the accounts of ``handles``
        (signing key, disabled, requests its token bucket granted of the
        ``handles[h]`` in the batch) read and spent in that transaction.
        Race-free across relay processes: the primary key decides,
        ``ON CONFLICT DO NOTHING`` skips the taken ones; each bucket's take is
        one atomic upsert (``server.ratelimit``)."""
        limit, now = self.rate_limit, self.rate_clock()

        def work(conn: sa.Connection) -> tuple[set[str], dict[str, tuple[str, bool, int]]]:
            insert = (
                sqlite_insert(nonces) if conn.dialect.name == "sqlite" else pg_insert(nonces)
            )
            rows = conn.execute(
                insert.values([{"nonce": n, "expires_at": e} for n, e in batch])
                .on_conflict_do_nothing(index_elements=[nonces.c.nonce])
                .returning(nonces.c.nonce)
            ).scalars().all()
            states: dict[str, tuple[str, bool, int]] = {}
            if handles:
                for h, key, off in conn.execute(_SIGNERS, {"handles": list(handles)}):
                    n = handles[str(h)]
                    granted = n
                    if limit is not None and not off:
                        granted, _ = ratelimit.take(conn, "acct:" + str(h), n=n, now=now,
                                                    limit=limit)
                    states[str(h)] = (str(key), bool(off), granted)
            return {str(n) for n in rows}, states

        return await self._run.write(work)

    async def purge_rate_buckets(self, limit: RateLimit) -> int:
        """Delete the buckets full again (idle ``burst / rate`` seconds): no change."""
        stmt = ratelimit.purge_statement(limit, self.rate_clock())
        return await self._run.write(lambda conn: conn.execute(stmt).rowcount)

    # -- leases (server.leases) ------------------------------------------------

    async def take_lease(self, name: str, owner: str, *, now: int, until: int) -> bool:
        # Unsynced: a lease lost to a power loss died with its holder anyway.
        return await self._run.write(
            lambda conn: lease_sql.take(conn, name, owner, now=now, until=until), synced=False)

    async def renew_lease(self, name: str, owner: str, *, until: int) -> bool:
        return await self._run.write(
            lambda conn: lease_sql.renew(conn, name, owner, until=until), synced=False)

    async def steal_lease(self, name: str, dead: str, owner: str, *, until: int) -> bool:
        return await self._run.write(
            lambda conn: lease_sql.steal(conn, name, dead, owner, until=until), synced=False)

    async def release_lease(self, name: str, owner: str) -> None:
        await self._run.write(lambda conn: lease_sql.release(conn, name, owner), synced=False)

    async def lease_holder(self, name: str) -> tuple[str, int] | None:
        """(owner, expires_at) of the lease ``name``, if any row holds it."""
        return await self._run.read(lambda conn: lease_sql.holder(conn, name))

    async def purge_nonces(self, now: int) -> int:
        def work(conn: sa.Connection) -> int:
            return conn.execute(sa.delete(nonces).where(nonces.c.expires_at < now)).rowcount

        return await self._run.write(work)

    # -- transfers ----------------------------------------------------------

    async def create_transfer(
        self,
        *,
        transfer_id: str,
        sender: str,
        to: list[str],
        size: int,
        now: int,
        expires_at: int,
        quota: int,
    ) -> None:
        def work(conn: sa.Connection) -> None:
            _lock_sender(conn, sender)
            # In the creating transaction: a block committed before it is seen.
            blocker = conn.execute(_BLOCKER_AMONG, {"sender": sender, "to": to}).first()
            if blocker is not None:
                raise NotPermitted(
                    f"recipient {blocker[0]} does not accept transfers from this account; "
                    "ask them by other means",
                    code=ErrorCode.BLOCKED_BY_RECIPIENT,
                )
            known = conn.execute(_ENABLED_AMONG, {"to": to}).scalars().all()
            missing = sorted(set(to) - set(known))
            if missing:
                raise InvalidInput(
                    f"unknown or disabled recipient: {missing[0]}",
                    code=ErrorCode.UNKNOWN_RECIPIENT,
                )
            # Every row of the sender, expired ones too: an expired transfer's
            # blob is on disk until gc deletes the row and then the blob.
            used = conn.execute(_SENDER_USED, {"sender": sender}).scalar_one()
            if int(used) + size > quota:
                raise QuotaExceeded(
                    f"this transfer would exceed the account quota ({quota} bytes, "
                    f"{int(used)} in use)"
                )
            conn.execute(_INSERT_TRANSFER, {
                "id": transfer_id, "sender": sender, "size": size, "committed": 0,
                "state": UPLOADING, "created_at": now, "updated_at": now,
                "expires_at": expires_at,
            })
            conn.execute(
                _INSERT_RECIPIENT, [{"transfer_id": transfer_id, "recipient": r} for r in to]
            )

        await self._run.write(work)

    async def get_transfer(self, transfer_id: str) -> Transfer | None:
        def work(conn: sa.Connection) -> Transfer | None:
            return _read_transfer(conn, transfer_id)

        return await self._run.read(work)

    # -- case cards (opaque ciphertext, docs/card.md) --------------------------

    async def put_card(self, transfer_id: str, card: bytes, *, now: int) -> None:
        """Store or replace the card of an uploading transfer, in one transaction.

        Why the state is checked in the same statement: a card must not change
        once recipients can see the transfer, even if a ``complete`` races it.
        """
        uploading = sa.exists().where(transfers.c.id == transfer_id,
                                      transfers.c.state == UPLOADING)

        def work(conn: sa.Connection) -> int:
            # Writes first, each conditional: the check and the change happen
            # under the database's write lock (no read-then-write).
            conn.execute(sa.delete(cards).where(cards.c.transfer_id == transfer_id, uploading))
            return conn.execute(sa.insert(cards).from_select(
                ["transfer_id", "card", "updated_at"],
                sa.select(transfers.c.id, sa.literal(card, sa.LargeBinary),
                          sa.literal(now, sa.BigInteger))
                .where(transfers.c.id == transfer_id, transfers.c.state == UPLOADING),
            )).rowcount

        if await self._run.write(work) != 1:
            raise Conflict("the transfer is complete or gone; its card can no longer change",
                           code=ErrorCode.ALREADY_COMPLETE)

    async def cards_of(self, transfer_ids: list[str]) -> dict[str, bytes]:
        """The cards of these transfers (those that have one): one query per inbox page."""
        if not transfer_ids:
            return {}

        def work(conn: sa.Connection) -> dict[str, bytes]:
            rows = conn.execute(
                sa.select(cards.c.transfer_id, cards.c.card)
                .where(cards.c.transfer_id.in_(transfer_ids))
            ).all()
            return {str(r[0]): bytes(r[1]) for r in rows}

        return await self._run.read(work)

    async def progress(self, transfer_id: str) -> tuple[str, int] | None:
        """(state, committed offset) of a transfer: one small query, for each chunk."""

        def work(conn: sa.Connection) -> tuple[str, int] | None:
            row = conn.execute(_PROGRESS, {"tid": transfer_id}).first()
            return None if row is None else (str(row[0]), int(row[1]))

        return await self._run.read(work)

    async def list_sent(self, sender: str, *, now: int, limit: int = 1000) -> list[Transfer]:
        def work(conn: sa.Connection) -> list[Transfer]:
            rows = conn.execute(
                sa.select(transfers)
                .where(transfers.c.sender == sender, transfers.c.expires_at > now)
                .order_by(transfers.c.created_at.desc(), transfers.c.id)
                .limit(limit)
            ).all()
            return _load(conn, list(rows))

        return await self._run.read(work)

    # -- inbox pages, dismissals and blocks -----------------------------------

    def _inbox_filter(self, recipient: str) -> list[sa.ColumnElement[bool]]:
        """What a recipient's inbox never shows: dismissed, blocked, disabled."""
        return [
            recipients.c.recipient == recipient,
            recipients.c.dismissed_at.is_(None),
            ~sa.exists().where(
                blocks.c.blocker == recipient, blocks.c.blocked == transfers.c.sender
            ),
            ~sa.exists().where(
                accounts.c.handle == transfers.c.sender, accounts.c.disabled == sa.true()
            ),
        ]

    async def inbox_page(
        self,
        recipient: str,
        *,
        now: int,
        limit: int,
        after: tuple[int, str] | None = None,
        senders: tuple[str, ...] = (),
    ) -> tuple[list[Transfer], bool]:
        """Up to ``limit`` complete, unexpired transfers for ``recipient`` after the
        keyset position ``after`` (completed_at, id), in that order; and whether
        more follow. ``senders``: only theirs (empty: everyone's)."""
        where = [
            *self._inbox_filter(recipient),
            transfers.c.state == COMPLETE,
            transfers.c.expires_at > now,
        ]
        if senders:
            where.append(transfers.c.sender.in_(senders))
        if after is not None:
            at, tid = after
            where.append(sa.or_(
                transfers.c.completed_at > at,
                sa.and_(transfers.c.completed_at == at, transfers.c.id > tid),
            ))

        def work(conn: sa.Connection) -> tuple[list[Transfer], bool]:
            rows = conn.execute(
                sa.select(transfers)
                .join(recipients, recipients.c.transfer_id == transfers.c.id)
                .where(*where)
                .order_by(transfers.c.completed_at, transfers.c.id)
                .limit(limit + 1)
            ).all()
            return _load(conn, list(rows[:limit])), len(rows) > limit

        return await self._run.read(work)

    async def transfer_for(self, transfer_id: str, viewer: str) -> tuple[Transfer | None, bool]:
        """``get_transfer`` and, if ``viewer`` is one of its recipients (not its
        sender), whether ``viewer`` blocked the sender or the operator disabled
        the sender: one round trip, not two."""

        def work(conn: sa.Connection) -> tuple[Transfer | None, bool]:
            t = _read_transfer(conn, transfer_id)
            if t is None or t.sender == viewer or t.recipient(viewer) is None:
                return t, False
            params = {"recipient": viewer, "sender": t.sender}
            return t, bool(conn.execute(_HIDDEN, params).scalar_one())

        return await self._run.read(work)

    async def dismiss(self, transfer_id: str, recipient: str, *, now: int) -> bool:
        """Record that ``recipient`` dismissed the transfer (the first time counts)."""

        def work(conn: sa.Connection) -> bool:
            return conn.execute(
                sa.update(recipients)
                .where(
                    recipients.c.transfer_id == transfer_id, recipients.c.recipient == recipient
                )
                .values(dismissed_at=sa.func.coalesce(recipients.c.dismissed_at, now))
            ).rowcount == 1

        return await self._run.write(work)

    async def dismissed_by_all(self) -> list[str]:
        """Ids of transfers every recipient dismissed: nobody wants their blob."""
        undismissed = sa.exists().where(
            recipients.c.transfer_id == transfers.c.id, recipients.c.dismissed_at.is_(None)
        )

        def work(conn: sa.Connection) -> list[str]:
            return list(conn.execute(
                sa.select(transfers.c.id).where(transfers.c.state == COMPLETE, ~undismissed)
            ).scalars().all())

        return await self._run.read(work)

    async def block(self, blocker: str, blocked: str, *, now: int) -> bool:
        """``blocker`` refuses ``blocked`` from now on; False if it already did."""

        def work(conn: sa.Connection) -> bool:
            if conn.execute(
                sa.select(blocks.c.blocker).where(
                    blocks.c.blocker == blocker, blocks.c.blocked == blocked
                )
            ).first() is not None:
                return False
            conn.execute(
                sa.insert(blocks).values(blocker=blocker, blocked=blocked, created_at=now)
            )
            return True

        try:
            return await self._run.write(work)
        except sa.exc.IntegrityError:
            return False  # a concurrent block of the same pair won

    async def unblock(self, blocker: str, blocked: str) -> bool:
        def work(conn: sa.Connection) -> bool:
            return conn.execute(
                sa.delete(blocks).where(blocks.c.blocker == blocker, blocks.c.blocked == blocked)
            ).rowcount == 1

        return await self._run.write(work)

    async def blocks_of(self, blocker: str) -> list[tuple[str, int]]:
        """(blocked handle, since) for every account ``blocker`` blocks, by handle."""

        def work(conn: sa.Connection) -> list[tuple[str, int]]:
            rows = conn.execute(
                sa.select(blocks.c.blocked, blocks.c.created_at)
                .where(blocks.c.blocker == blocker)
                .order_by(blocks.c.blocked)
            ).all()
            return [(str(h), int(at)) for h, at in rows]

        return await self._run.read(work)

    async def all_transfers(self) -> list[Transfer]:
        def work(conn: sa.Connection) -> list[Transfer]:
            rows = conn.execute(sa.select(transfers).order_by(transfers.c.id)).all()
            return _load(conn, list(rows))

        return await self._run.read(work)

    async def advance(
        self, transfer_id: str, *, old: int, new: int, sha256: str, now: int,
        fence: tuple[str, str] | None = None, release: bool = False,
    ) -> bool:
        """Commit the chunk [old, new) with its SHA-256: move the committed offset
        and record the chunk, in one transaction; False if the offset moved meanwhile.

        On SQLite the transaction is atomic but not synced to disk on its own
        (``synchronous=NORMAL`` for it): the chunk's bytes are not fsynced either
        (server.blobs), so after a power loss the offset may move back anyway,
        and start-up recovery reconciles the row, the chunk records and the blob
        whichever of them lost what. The next synced commit (every request's
        nonce, ``complete``) makes it durable. Saves a WAL fsync per chunk, which
        waits behind the chunk's own writeback.

        On PostgreSQL it is synced: there the database fails on its own (a
        crash, ``pg_ctl restart -m immediate``, the OOM killer) while the
        chunk's bytes survive on the relay's disk or in the bucket, and an
        acknowledged chunk lost then would stop every send in flight ("the relay
        lost the chunks ...; run the same send again") instead of letting it
        retry through the outage (tests/e2e/test_pg_restart.py). PostgreSQL's
        group commit shares one WAL flush among the chunks committing together.

        ``fence``: (lease name, owner): commit only while that owner still holds
        the lease (``server.leases``), in the same statement, so a holder whose
        lease ran out and was taken over can no longer move the offset.
        ``release``: and let go of that lease in the same transaction, if the
        chunk was committed.
        """
        params = {"tid": transfer_id, "old": old, "new": new, "now": now, "sha": sha256}
        update = _ADVANCE if fence is None else _ADVANCE.where(lease_sql.held_by(*fence))

        def work(conn: sa.Connection) -> bool:
            if conn.execute(update, params).rowcount != 1:
                return False  # nothing changed: the empty transaction commits
            # A row left past the offset (rolled back without being deleted) is
            # replaced, never trusted.
            conn.execute(_DROP_CHUNKS_PAST, params)
            conn.execute(_ADD_CHUNK, params)
            if fence is not None and release:
                lease_sql.release(conn, *fence)
            return True

        return await self._run.write(work, synced=self.engine.dialect.name != "sqlite")

    async def completion(
        self, transfer_id: str
    ) -> tuple[Transfer | None, list[tuple[int, str]]]:
        """The transfer and its committed chunks, read together (``complete``)."""

        def work(conn: sa.Connection) -> tuple[Transfer | None, list[tuple[int, str]]]:
            t = _read_transfer(conn, transfer_id)
            return (None, []) if t is None else (t, _read_chunks(conn, transfer_id))

        return await self._run.read(work)

    async def chunks(self, transfer_id: str) -> list[tuple[int, str]]:
        """The committed chunks of a transfer, (end offset, tagged hash), in order."""
        return await self._run.read(lambda conn: _read_chunks(conn, transfer_id))

    async def roll_back(self, transfer_id: str, committed: int) -> None:
        """Set an uploading transfer's offset back to ``committed`` (a chunk end) and
        forget the chunks past it."""

        def work(conn: sa.Connection) -> None:
            conn.execute(
                sa.update(transfers)
                .where(transfers.c.id == transfer_id, transfers.c.state == UPLOADING)
                .values(committed=committed)
            )
            conn.execute(
                sa.delete(chunks).where(
                    chunks.c.transfer_id == transfer_id, chunks.c.end_offset > committed
                )
            )

        await self._run.write(work)

    async def complete(self, transfer_id: str, *, digest: str, now: int, log_entry: bytes,
                       log_salt: bytes, release: tuple[str, str] | None = None) -> int | None:
        """Mark the upload complete and log its transfer entry (``log_entry``,
        the commitment salted with ``log_salt``), all in one transaction;
        ``release``: (lease name, owner) to let go of in it too
        (``server.leases``). The entry's log index; None if it was not
        uploading with every byte committed."""

        def work(conn: sa.Connection) -> int | None:
            params = {"tid": transfer_id, "dig": digest, "now": now}
            done = conn.execute(_COMPLETE, params).rowcount == 1
            if release is not None:
                lease_sql.release(conn, *release)
            if not done:
                return None
            # Last: once the head is locked only the log's rows (and this
            # transaction's own transfer row) are touched (server.tlog).
            index = tlog.append(conn, log_entry, now=now)
            conn.execute(sa.update(transfers).where(transfers.c.id == transfer_id)
                         .values(log_salt=log_salt, log_index=index))
            return index

        return await self._run.write(work)

    async def ack(
        self, transfer_id: str, recipient: str, *, verified: bool, now: int,
        receipt: LoggedReceipt | None = None,
    ) -> Transfer | None:
        """Record the recipient's download (and verification; the first time
        counts) and, with ``receipt`` (its signature checked by the caller),
        log it unless that recipient's receipt of that status is logged
        already; return the transfer as this transaction left it."""
        values = _ACK_VERIFIED if verified else _ACK_DOWNLOADED

        def work(conn: sa.Connection) -> Transfer | None:
            conn.execute(values, {"tid": transfer_id, "who": recipient, "now": now})
            if receipt is not None:
                # Under the head's lock: two acks with the same receipt
                # status see each other, and only the first is logged.
                tlog.lock_head(conn)
                kept = conn.execute(sa.select(tlog_receipts.c.log_index).where(
                    tlog_receipts.c.transfer_id == transfer_id,
                    tlog_receipts.c.recipient == recipient,
                    tlog_receipts.c.status == receipt.status,
                )).first()
                if kept is None:
                    index = tlog.append(conn, receipt.entry, now=now)
                    conn.execute(sa.insert(tlog_receipts).values(
                        transfer_id=transfer_id, recipient=recipient, status=receipt.status,
                        at=receipt.at, sig=receipt.sig, log_index=index))
            return _read_transfer(conn, transfer_id)

        return await self._run.write(work)

    async def receipts_of(self, transfer_ids: list[str]) -> dict[str, list[ReceiptRow]]:
        """The logged receipts of these transfers, by transfer, in log order."""
        if not transfer_ids:
            return {}

        def work(conn: sa.Connection) -> dict[str, list[ReceiptRow]]:
            rows = conn.execute(
                sa.select(tlog_receipts)
                .where(tlog_receipts.c.transfer_id.in_(transfer_ids))
                .order_by(tlog_receipts.c.log_index)
            ).all()
            out: dict[str, list[ReceiptRow]] = {}
            for r in rows:
                m = r._mapping
                out.setdefault(str(m["transfer_id"]), []).append(ReceiptRow(
                    recipient=m["recipient"], status=m["status"], at=int(m["at"]),
                    sig=bytes(m["sig"]), log_index=int(m["log_index"])))
            return out

        return await self._run.read(work)

    async def delete_transfer(self, transfer_id: str) -> bool:
        def work(conn: sa.Connection) -> bool:
            # Its log entries stay: the log is append-only (docs/transparency.md).
            conn.execute(sa.delete(tlog_receipts)
                         .where(tlog_receipts.c.transfer_id == transfer_id))
            conn.execute(sa.delete(recipients).where(recipients.c.transfer_id == transfer_id))
            conn.execute(sa.delete(chunks).where(chunks.c.transfer_id == transfer_id))
            conn.execute(sa.delete(cards).where(cards.c.transfer_id == transfer_id))
            return conn.execute(
                sa.delete(transfers).where(transfers.c.id == transfer_id)
            ).rowcount == 1

        return await self._run.write(work)

    async def expired(self, *, now: int, abandoned_before: int) -> list[str]:
        """Ids of expired transfers and of uploads idle since ``abandoned_before``."""

        def work(conn: sa.Connection) -> list[str]:
            return list(conn.execute(
                sa.select(transfers.c.id).where(
                    sa.or_(
                        transfers.c.expires_at <= now,
                        sa.and_(
                            transfers.c.state == UPLOADING,
                            transfers.c.updated_at < abandoned_before,
                        ),
                    )
                )
            ).scalars().all())

        return await self._run.read(work)

    async def ids(self) -> set[str]:
        def work(conn: sa.Connection) -> set[str]:
            return set(conn.execute(sa.select(transfers.c.id)).scalars().all())

        return await self._run.read(work)

    async def stats(self) -> dict[str, int]:
        def work(conn: sa.Connection) -> dict[str, int]:
            rows = conn.execute(
                sa.select(
                    transfers.c.state,
                    sa.func.count(),
                    sa.func.coalesce(sa.func.sum(transfers.c.committed), 0),
                ).group_by(transfers.c.state)
            ).all()
            n_accounts = conn.execute(
                sa.select(sa.func.count()).select_from(accounts)
            ).scalar_one()
            out = {"accounts": int(n_accounts)}
            for state, count, stored in rows:
                out[f"transfers_{state}"] = int(count)
                out[f"bytes_{state}"] = int(stored)
            return out

        return await self._run.read(work)

    # -- the transparency log (server.tlog) ------------------------------------

    async def log_head(self) -> tuple[int, bytes]:
        """(size, root) of the log as last committed."""
        return await self._run.read(tlog.read_head)

    async def log_read(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run ``fn``, a read of the log's rows (``server.tlog``: tiles, entry
        bundles; ``server.logverify``), in one read transaction."""
        return await self._run.read(fn)

    async def log_unlogged_accounts(self, *, now: int) -> int:
        """Log the current bundle of every account that has no key entry yet
        (registered before the relay kept a log), one transaction each; how
        many. Safe when several processes start together: each transaction
        re-checks under the head's lock."""

        def pending(conn: sa.Connection) -> list[str]:
            return list(conn.execute(
                sa.select(accounts.c.handle).where(accounts.c.log_index.is_(None))
                .order_by(accounts.c.handle)
            ).scalars().all())

        from sealdrop.crypto.bundle import KeyBundle
        from sealdrop.crypto.tlog.entries import bundle_digest

        done = 0
        for handle in await self._run.read(pending):
            def work(conn: sa.Connection, handle: str = handle) -> bool:
                stmt = (sa.select(accounts.c.bundle, accounts.c.log_index)
                        .where(accounts.c.handle == handle))
                if conn.dialect.name == "sqlite":
                    # Take SQLite's write lock before the re-check (lock_head's
                    # no-op update), so no other writer logs it in between.
                    tlog.lock_head(conn)
                else:
                    # The account row first, then the head (in the append): the
                    # order rotate_bundle takes too, so the two never deadlock.
                    stmt = stmt.with_for_update()
                row = conn.execute(stmt).first()
                if row is None or row[1] is not None:
                    return False
                digest = bundle_digest(KeyBundle.loads(str(row[0])))
                _log_bundle(conn, handle, str(row[0]), digest, now=now)
                return True

            done += await self._run.write(work)
        return done

    # -- relay identity ---------------------------------------------------

    async def relay_id(self) -> str | None:
        """The id binding this database to its blob store (None: not bound yet)."""

        def work(conn: sa.Connection) -> str | None:
            value = conn.execute(
                sa.select(relay_meta.c.value).where(relay_meta.c.key == "relay_id")
            ).scalar_one_or_none()
            return None if value is None else str(value)

        return await self._run.read(work)

    async def set_relay_id(self, relay_id: str) -> str:
        """Store ``relay_id`` unless the database already has one; return the one stored."""

        def work(conn: sa.Connection) -> str:
            current = conn.execute(
                sa.select(relay_meta.c.value).where(relay_meta.c.key == "relay_id")
            ).scalar_one_or_none()
            if current is not None:
                return str(current)
            conn.execute(sa.insert(relay_meta).values(key="relay_id", value=relay_id))
            return relay_id

        return await self._run.write(work)

    async def meta(self, key: str) -> str | None:
        """A fact about this relay kept in ``relay_meta`` (None: not set)."""

        def work(conn: sa.Connection) -> str | None:
            value = conn.execute(
                sa.select(relay_meta.c.value).where(relay_meta.c.key == key)
            ).scalar_one_or_none()
            return None if value is None else str(value)

        return await self._run.read(work)

    async def set_meta_once(self, key: str, value: str) -> str:
        """Store ``value`` under ``key`` unless one is stored; the one stored
        (the first writer wins, across processes: the primary key decides)."""

        def work(conn: sa.Connection) -> str:
            insert = (sqlite_insert(relay_meta) if conn.dialect.name == "sqlite"
                      else pg_insert(relay_meta))
            conn.execute(insert.values(key=key, value=value)
                         .on_conflict_do_nothing(index_elements=[relay_meta.c.key]))
            return str(conn.execute(
                sa.select(relay_meta.c.value).where(relay_meta.c.key == key)).scalar_one())

        return await self._run.write(work)

    async def count_transfers(self) -> int:
        def work(conn: sa.Connection) -> int:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(transfers)).scalar_one()
            )

        return await self._run.read(work)

    # -- per-account views for the operator -------------------------------

    async def usage(self) -> list[tuple[str, int, int]]:
        """(handle, live transfers sent, bytes stored) for every account, by handle."""

        def work(conn: sa.Connection) -> list[tuple[str, int, int]]:
            rows = conn.execute(
                sa.select(
                    accounts.c.handle,
                    sa.func.count(transfers.c.id),
                    sa.func.coalesce(sa.func.sum(transfers.c.committed), 0),
                )
                .select_from(
                    accounts.outerjoin(transfers, transfers.c.sender == accounts.c.handle)
                )
                .group_by(accounts.c.handle)
                .order_by(accounts.c.handle)
            ).all()
            return [(str(h), int(n), int(b)) for h, n, b in rows]

        return await self._run.read(work)

    async def transfers_of(self, handle: str) -> list[Transfer]:
        """Every transfer ``handle`` sent or receives, oldest first (expired ones too, until gc)."""

        def work(conn: sa.Connection) -> list[Transfer]:
            received = sa.select(recipients.c.transfer_id).where(recipients.c.recipient == handle)
            rows = conn.execute(
                sa.select(transfers)
                .where(sa.or_(transfers.c.sender == handle, transfers.c.id.in_(received)))
                .order_by(transfers.c.created_at, transfers.c.id)
            ).all()
            return _load(conn, list(rows))

        return await self._run.read(work)
