"""The transparency log's rows (server.tlog) stay one correct tree when many
transactions append at once: from several stores on one database (separate
engines and connection pools: several relay processes' worth), each running
many registrations and rotations concurrently, with an append rolled back
among them. Every stored subtree hash and the head must equal the naive
recomputation from the entries (crypto's ``MemoryHashes``), every index is
used once and none is skipped, and ``log verify``'s check finds nothing."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
import sqlalchemy as sa
from nacl.signing import SigningKey

from sealdrop.crypto.age import X25519Identity
from sealdrop.crypto.bundle import KeyBundle
from sealdrop.crypto.tlog.entries import KeyEntry, bundle_digest, parse_entry
from sealdrop.crypto.tlog.merkle import MemoryHashes, leaf_hash
from sealdrop.server import logverify, schema, tlog
from sealdrop.server.db import accounts, key_log, make_engine, tlog_entries, tlog_hashes
from sealdrop.server.errors import Conflict
from sealdrop.server.metadata import SqlMetadataStore

from .test_migration_0002 import _url

STORES = 3  # several relay processes on one database
PER_STORE = 22  # 66 appends: the tree crosses 64 leaves (seven levels)


def _bundle(handle: str, sk: SigningKey, created: int) -> KeyBundle:
    x = X25519Identity.generate(lambda n: bytes([len(handle)]) * n)
    return KeyBundle.create(handle=handle, signing_key=sk, x25519=str(x.recipient()),
                            pq="age1pq1" + "q" * 60, created=created)


async def _register(store: SqlMetadataStore, handle: str, n: int) -> tuple[SigningKey, int]:
    code_hash = f"{n:064x}"
    await store.create_invite(code_hash, now=1, expires_at=10**10)
    sk = SigningKey(bytes([n + 1]) * 32)
    b = _bundle(handle, sk, 100)
    index = await store.register(
        handle=handle, signing_key=base64.b64encode(bytes(sk.verify_key)).decode(),
        bundle=b.dumps(), bundle_created=b.created, invite_hash=code_hash, now=2,
        nonce=f"{n:032x}", nonce_expires_at=10**10, bundle_digest=bundle_digest(b))
    return sk, index


def test_concurrent_appends_make_one_tree(db_url: str, tmp_path: Path) -> None:
    stores_n = STORES if db_url else 2  # SQLite: one writer at a time anyway

    async def run() -> None:
        url = _url(db_url, tmp_path)
        engine = make_engine(url)
        await schema.upgrade(engine)
        stores = [SqlMetadataStore.open(url) for _ in range(stores_n)]
        try:
            # Every store registers its accounts at once: appends race.
            jobs = [_register(stores[s], f"clinic-{s}-{i}", s * 100 + i)
                    for s in range(stores_n) for i in range(PER_STORE)]
            registered = await asyncio.gather(*jobs)
            handles = [f"clinic-{s}-{i}" for s in range(stores_n) for i in range(PER_STORE)]

            # An append whose transaction rolls back leaves no trace.
            def doomed(conn: sa.Connection) -> None:
                tlog.append(conn, KeyEntry("ghost", bytes(32)).to_bytes(), now=3)
                raise RuntimeError("the caller fails after appending")

            with pytest.raises(RuntimeError):
                async with engine.begin() as conn:
                    await conn.run_sync(doomed)

            # Then rotations, again from every store at once, and a stale one refused.
            rotations = []
            for k, (handle, (sk, _)) in enumerate(zip(handles[:9], registered[:9], strict=True)):
                b = _bundle(handle, sk, 200)
                rotations.append(stores[k % stores_n].rotate_bundle(
                    handle=handle, signing_key=base64.b64encode(bytes(sk.verify_key)).decode(),
                    bundle=b.dumps(), bundle_created=b.created, bundle_digest=bundle_digest(b),
                    now=4))
            rotated = await asyncio.gather(*rotations)
            old = _bundle(handles[0], registered[0][0], 150)
            with pytest.raises(Conflict):
                await stores[0].rotate_bundle(
                    handle=handles[0], signing_key=base64.b64encode(
                        bytes(registered[0][0].verify_key)).decode(),
                    bundle=old.dumps(), bundle_created=old.created,
                    bundle_digest=bundle_digest(old), now=5)

            async with engine.connect() as conn:
                entries = dict((await conn.execute(
                    sa.select(tlog_entries.c.idx, tlog_entries.c.data))).all())
                hashes = {(lv, i): bytes(h) for lv, i, h in (await conn.execute(
                    sa.select(tlog_hashes.c.level, tlog_hashes.c.idx, tlog_hashes.c.hash)
                )).all()}
                current = dict((await conn.execute(
                    sa.select(accounts.c.handle, accounts.c.log_index))).all())
                history = (await conn.execute(
                    sa.select(key_log.c.log_index, key_log.c.handle))).all()
                rows = await conn.run_sync(logverify.read_rows)
            size, root = await stores[0].log_head()
        finally:
            for s in stores:
                await s.close()
            await engine.dispose()

        n = stores_n * PER_STORE + 9
        assert size == n
        # every index used once, none skipped, none from the rolled-back append
        assert sorted(entries) == list(range(n))
        indexes = [i for _, i in registered] + rotated
        assert sorted(indexes) == list(range(n))
        assert sorted(i for i, _ in history) == list(range(n))
        assert {type(parse_entry(bytes(d))) for d in entries.values()} == {KeyEntry}
        assert not any(b"\nghost\n" in bytes(d) for d in entries.values())
        # each account's current bundle is its rotation where it rotated
        assert [current[h] for h in handles[:9]] == rotated
        # every stored hash is the naive tree's, and the naive tree's are all stored
        tree = MemoryHashes([leaf_hash(bytes(entries[i])) for i in range(n)])
        expected = {(lv, i): tree.subtree(lv, i)
                    for lv in range(n.bit_length()) for i in range(n >> lv)}
        assert hashes == expected
        assert root == tree.root()
        report = logverify.check(rows)
        assert report.problems == [] and report.keys == n

    asyncio.run(run())


def test_accounts_from_before_the_log_are_logged_once(db_url: str, tmp_path: Path) -> None:
    """An account registered before migration 0008 has no key entry; the
    relay's start logs its current bundle, once, whichever process starts."""

    async def run() -> None:
        url = _url(db_url, tmp_path)
        engine = make_engine(url)
        await schema.upgrade(engine)
        sk = SigningKey(bytes([7]) * 32)
        old = _bundle("cabinet-ancien", sk, 100)
        async with engine.begin() as conn:  # as a relay before the log wrote it
            await conn.execute(sa.insert(accounts).values(
                handle="cabinet-ancien", signing_key="k", bundle=old.dumps(),
                bundle_created=100, created_at=1, disabled=False))
        stores = [SqlMetadataStore.open(url) for _ in range(2)]
        try:
            counts = await asyncio.gather(*(s.log_unlogged_accounts(now=9) for s in stores))
            again = await stores[0].log_unlogged_accounts(now=10)
            account = await stores[1].get_account("cabinet-ancien")
            size, _ = await stores[0].log_head()
            async with engine.connect() as conn:
                (data,) = (await conn.execute(sa.select(tlog_entries.c.data))).scalars().all()
        finally:
            for s in stores:
                await s.close()
            await engine.dispose()
        assert sorted(counts) == [0, 1] and again == 0 and size == 1
        assert account is not None and account.log_index == 0
        assert bytes(data) == KeyEntry.for_bundle(old).to_bytes()

    asyncio.run(run())


def test_the_backfill_and_a_rotation_never_deadlock(db_url: str, tmp_path: Path) -> None:
    """PostgreSQL: a rotation holds the account row and then appends (takes the
    log head); the start-up backfill of the same unlogged account must take the
    account row before the head too. In the other order each waits on the other
    and PostgreSQL aborts one of them ("deadlock detected")."""
    if not db_url:
        pytest.skip("SQLite takes one write lock for the whole transaction: no row order")

    async def run() -> None:
        from sealdrop.server.metadata import _log_bundle

        url = _url(db_url, tmp_path)
        engine = make_engine(url)
        await schema.upgrade(engine)
        sk = SigningKey(bytes([9]) * 32)
        old, new = _bundle("cabinet-ancien", sk, 100), _bundle("cabinet-ancien", sk, 101)
        async with engine.begin() as conn:  # an account from before the log
            await conn.execute(sa.insert(accounts).values(
                handle="cabinet-ancien", signing_key="k", bundle=old.dumps(),
                bundle_created=100, created_at=1, disabled=False))
        store = SqlMetadataStore.open(url)
        rotation = await engine.connect()
        try:
            await rotation.begin()
            # The rotation's first step: it now holds the account's row.
            await rotation.execute(
                sa.update(accounts).where(accounts.c.handle == "cabinet-ancien")
                .values(bundle=new.dumps(), bundle_created=101))
            backfill = asyncio.create_task(store.log_unlogged_accounts(now=9))
            # Wait until the backfill waits on a lock (PostgreSQL says so).
            for _ in range(600):
                async with engine.connect() as probe:
                    waiting = (await probe.execute(sa.text(
                        "select count(*) from pg_stat_activity where datname = "
                        "current_database() and wait_event_type = 'Lock'"))).scalar_one()
                if waiting or backfill.done():
                    break
                await asyncio.sleep(0.05)
            assert waiting == 1, "the backfill should wait for the rotation's row"
            # The rotation's last step: its append takes the head.
            await rotation.run_sync(lambda c: _log_bundle(
                c, "cabinet-ancien", new.dumps(), bundle_digest(new), now=9))
            await rotation.commit()
            logged = await backfill  # no "deadlock detected", and nothing logged twice
            size, _ = await store.log_head()
        finally:
            await rotation.close()
            await store.close()
            await engine.dispose()
        assert logged == 0 and size == 1

    asyncio.run(run())
