"""The per-transfer lock table lives on the app and holds only uploads that are
still there: complete, delete, expiry and gc of abandoned uploads drop entries,
so it does not grow with every transfer the relay has seen."""

from __future__ import annotations

import os
import time

from sealdrop.server import ops
from sealdrop.server.locks import TransferLocks

from .relaykit import RunningRelay


def test_one_lock_per_transfer_until_dropped() -> None:
    locks = TransferLocks()
    a = locks("a" * 32)
    assert locks("a" * 32) is a and len(locks) == 1 and "a" * 32 in locks
    assert locks("b" * 32) is not a and len(locks) == 2
    locks.drop("a" * 32)
    locks.drop("a" * 32)  # dropping twice, or an unknown id, is fine
    assert "a" * 32 not in locks and len(locks) == 1
    assert locks("a" * 32) is not a


def test_the_table_empties_as_uploads_go(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    relay.user("bob-lab")
    locks = relay.relay.locks
    assert len(locks) == 0
    short = [alice.create_transfer(["bob-lab"], 3000, expires_in=60)["id"] for _ in range(8)]
    idle = [alice.create_transfer(["bob-lab"], 3000)["id"] for _ in range(8)]
    done, gone = idle.pop(), idle.pop()
    for tid in [*short, *idle, done, gone]:
        alice.upload_chunk(tid, 0, os.urandom(1000))
    assert len(locks) == 16

    alice.upload_chunk(done, 1000, os.urandom(2000))
    alice.complete(done)
    alice.delete(gone)
    assert len(locks) == 14 and done not in locks and gone not in locks

    relay.clock.advance(61)  # the short ones expire
    report = relay.run(ops.gc(relay.relay.store, relay.relay.blobs, relay.config,
                              now=int(relay.clock()), locks=locks))
    assert sorted(report.deleted) == sorted(short)
    assert len(locks) == len(idle) and all(tid in locks for tid in idle)

    relay.clock.advance(relay.config.abandoned_upload_seconds)  # the rest are abandoned
    report = relay.run(ops.gc(relay.relay.store, relay.relay.blobs, relay.config,
                              now=int(relay.clock()), locks=locks))
    assert sorted(report.deleted) == sorted(idle)
    assert len(locks) == 0
    assert [t["id"] for t in relay.rows()["transfers"]] == [done]


def test_the_background_gc_drops_abandoned_uploads(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory(gc_interval_seconds=1)
    alice, _ = relay.user("alice")
    relay.user("bob-lab")
    tid = alice.create_transfer(["bob-lab"], 3000)["id"]
    alice.upload_chunk(tid, 0, os.urandom(1000))
    locks = relay.relay.locks
    assert tid in locks
    relay.clock.advance(relay.config.abandoned_upload_seconds + 1)
    deadline = time.time() + 20
    while time.time() < deadline and (len(locks) or relay.rows()["transfers"]):
        time.sleep(0.1)
    assert len(locks) == 0 and relay.rows()["transfers"] == []
