"""What the transparency log costs, as ratios against a baseline of the same run.

1. The relay's append (``server.tlog.append``) on SQLite (a temp file migrated
   by ``server.schema``, as the relay does) and, with --pg URL or
   SEALDROP_TEST_PG_URL, on PostgreSQL: --appends transactions that each insert
   one nonce row (the baseline: the smallest write every signed request makes),
   against as many that insert the nonce and append a transfer entry. Blocks of
   the two alternate, so a change in the machine's load hits both alike.
   Prints ms per transaction, their ratio, and rows in tlog_hashes per entry.
2. The client following the log, against a real ``sealdrop-relay serve`` on
   loopback whose log holds --entries transfer entries (appended straight into
   its database, for speed), through the client's own code (LogClient.advance):
   (a) a bare GET /v1/log/checkpoint, opened and parsed (the baseline: every
   command does it); (b) a new profile's first checkpoint: every entry tile
   read and the root recomputed (what ``sealdrop audit`` also does); (c) an
   advance by one entry: a consistency proof from tiles. Prints ms, HTTP
   requests and body bytes of each, and ratios to (a).
3. The load average at start and end: on a shared machine, read the ratios
   with it. No figure here is a target; tests never assert any of them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from nacl.signing import SigningKey
from sqlalchemy.ext.asyncio import AsyncEngine

from sealdrop.client.profile.contacts import ContactStore
from sealdrop.client.relay_api import RelayClient
from sealdrop.client.tlog.logclient import LogClient
from sealdrop.crypto.tlog.checkpoint import Checkpoint
from sealdrop.crypto.tlog.entries import TransferEntry
from sealdrop.crypto.tlog.note import NoteVerifier, open_note
from sealdrop.server import schema, tlog
from sealdrop.server.config import DB_NAME, async_url
from sealdrop.server.db import make_engine, nonces, tlog_entries, tlog_hashes

BLOCK = 50  # transactions per block; baseline and log blocks alternate


def _entry() -> bytes:
    # A transfer entry is a salted SHA-256: random bytes are as realistic as any.
    return TransferEntry(os.urandom(32)).to_bytes()


async def _one(engine: AsyncEngine, with_log: bool) -> None:
    def work(conn: sa.Connection) -> None:
        now = int(time.time())
        conn.execute(sa.insert(nonces).values(nonce=os.urandom(16).hex(),
                                              expires_at=now + 600))
        if with_log:  # last in the transaction, as the relay's callers do
            tlog.append(conn, _entry(), now=now)

    async with engine.begin() as conn:
        await conn.run_sync(work)


async def append_cost(url: str, n: int) -> dict[str, float]:
    """ms per baseline and per log transaction, and tlog_hashes rows per entry."""
    engine = make_engine(url)
    try:
        await schema.upgrade(engine)
        spent = {False: 0.0, True: 0.0}
        done = {False: 0, True: 0}
        while done[True] < n:
            for with_log in (False, True):
                k = min(BLOCK, n - done[with_log])
                t = time.perf_counter()
                for _ in range(k):
                    await _one(engine, with_log)
                spent[with_log] += time.perf_counter() - t
                done[with_log] += k
        async with engine.connect() as conn:
            entries = (await conn.execute(sa.select(sa.func.count()).select_from(
                tlog_entries))).scalar_one()
            hashes = (await conn.execute(sa.select(sa.func.count()).select_from(
                tlog_hashes))).scalar_one()
    finally:
        await engine.dispose()
    base = spent[False] / n * 1000
    log = spent[True] / n * 1000
    return {"base_ms": base, "log_ms": log, "ratio": log / base,
            "hashes_per_entry": hashes / entries if entries else float("nan"),
            "entries": float(entries)}


async def _fill(url: str, count: int) -> None:
    """``count`` transfer entries into the relay's log, in one transaction."""
    engine = make_engine(url)
    try:
        def work(conn: sa.Connection) -> None:
            now = int(time.time())
            for _ in range(count):
                tlog.append(conn, _entry(), now=now)

        async with engine.begin() as conn:
            await conn.run_sync(work)
    finally:
        await engine.dispose()


class CountingRelay(RelayClient):
    """The client's own RelayClient, counting the log's GETs and their body bytes."""

    requests = 0
    nbytes = 0

    def log_checkpoint(self) -> str:
        note = super().log_checkpoint()
        self.requests += 1
        self.nbytes += len(note.encode("utf-8"))
        return note

    def log_tile(self, path: str) -> bytes:
        data = super().log_tile(path)
        self.requests += 1
        self.nbytes += len(data)
        return data


class Measured:
    def __init__(self) -> None:
        self.ms: list[float] = []
        self.requests = 0
        self.nbytes = 0

    def add(self, relay: CountingRelay, seconds: float) -> None:
        self.ms.append(seconds * 1000)
        self.requests, self.nbytes = relay.requests, relay.nbytes  # the same every round

    @property
    def median(self) -> float:
        return statistics.median(self.ms)


def _relay(url: str) -> CountingRelay:
    return CountingRelay(url, handle="bench-reader", signing_key=SigningKey.generate())


def _new_reader(url: str, home: Path) -> tuple[CountingRelay, LogClient]:
    home.mkdir(parents=True)
    relay = _relay(url)
    client = LogClient(relay, home, handle="bench-reader", contacts=ContactStore(home),
                       notice=lambda _line: None)
    client.pin_at_init()  # init's GET /v1/info: not part of any figure
    return relay, client


def follow_cost(url: str, db_url: str, entries: int, rounds: int, work: Path
                ) -> dict[str, Measured]:
    asyncio.run(_fill(db_url, entries))
    out = {"checkpoint": Measured(), "first": Measured(), "advance1": Measured()}

    # (a) what every command pays: one checkpoint GET, its signature, its text
    relay, client = _new_reader(url, work / "a")
    state = client.pinned()
    assert state is not None
    verifier = NoteVerifier.from_vkey(state.vkey)
    for _ in range(max(rounds, 10)):
        relay.requests = relay.nbytes = 0
        t = time.perf_counter()
        Checkpoint.parse(open_note(relay.log_checkpoint(), [verifier]).text)
        out["checkpoint"].add(relay, time.perf_counter() - t)
    relay.close()

    for r in range(rounds):
        # (b) a new profile's first checkpoint: the whole log from entry tiles
        relay, client = _new_reader(url, work / f"b{r}")
        t = time.perf_counter()
        got = client.advance()
        out["first"].add(relay, time.perf_counter() - t)
        assert got is not None and got.checkpoint.size >= entries
        # (c) one more entry: a consistency proof from tiles, one entry scanned
        asyncio.run(_fill(db_url, 1))
        relay.requests = relay.nbytes = 0
        t = time.perf_counter()
        client.advance()
        out["advance1"].add(relay, time.perf_counter() - t)
        relay.close()
    return out


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="bench_tlog", description=__doc__.split("\n\n")[0],
        epilog=("Measures (1) the relay's append: N transactions inserting a nonce row "
                "(baseline) against N inserting a nonce and appending a transfer entry "
                "(server.tlog.append), on SQLite and, with --pg, PostgreSQL: ms per "
                "transaction, the ratio, tlog_hashes rows per entry; (2) the client "
                "following a real relay's log of --entries entries: (a) GET "
                "/v1/log/checkpoint + open (baseline), (b) a new profile's first read "
                "of every entry tile with the root recomputed (as sealdrop audit), (c) "
                "an advance by 1 entry (consistency proof from tiles): ms, requests, "
                "bytes, ratios to (a); (3) the load average at start and end. Ratios "
                "only: no figure is a target."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--appends", type=int, default=2000, metavar="N",
                    help="transactions of each kind for the append cost (default 2000)")
    ap.add_argument("--entries", type=int, default=5000, metavar="E",
                    help="entries in the relay's log for the client's cost (default 5000)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="repeats of (b) and (c), the median printed (default 3)")
    ap.add_argument("--pg", metavar="URL", default=os.environ.get("SEALDROP_TEST_PG_URL"),
                    help="also PostgreSQL: a scratch database (migrated here; the rows "
                    "stay); default $SEALDROP_TEST_PG_URL")
    args = ap.parse_args(argv)
    if min(args.appends, args.entries, args.rounds) < 1:
        ap.error("--appends, --entries and --rounds must be at least 1")

    print(f"load average at start: {_load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_tlog.") as tmp:
        work = Path(tmp)
        dbs = [("sqlite", async_url(f"sqlite:///{work / 'append.db'}"))]
        if args.pg:
            dbs.append(("postgresql", async_url(args.pg)))
        print(f"append: {args.appends} transactions each, nonce row vs nonce row + "
              "tlog.append(transfer entry)")
        for name, url in dbs:
            r = asyncio.run(append_cost(url, args.appends))
            print(f"  {name:<10} baseline {r['base_ms']:.3f} ms/tx  with log "
                  f"{r['log_ms']:.3f} ms/tx  ratio {r['ratio']:.2f}x  "
                  f"tlog_hashes rows/entry {r['hashes_per_entry']:.2f}", flush=True)

        # Our own relay process, its log filled behind its back through its database.
        from bench_relay import _start  # scripts/lib: init + serve on a free port

        # sealdrop-relay from this Python's venv, also when run without scripts/bench_tlog
        os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + \
            os.environ.get("PATH", "")

        data = work / "relay"
        proc, port = _start(data, work / "relay.log")
        try:
            res = follow_cost(f"http://127.0.0.1:{port}",
                              async_url(f"sqlite:///{data / DB_NAME}"), args.entries,
                              args.rounds, work / "profiles")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        base = res["checkpoint"].median
        print(f"follow: a relay's log of {args.entries} entries (+{args.rounds} appended), "
              f"median of {args.rounds} (checkpoint: {len(res['checkpoint'].ms)})")
        names = {"checkpoint": "(a) checkpoint GET + open", "first":
                 "(b) first read, all tiles", "advance1": "(c) advance by 1 entry"}
        for key, label in names.items():
            m = res[key]
            print(f"  {label:<27} {m.median:9.2f} ms  requests {m.requests:4d}  "
                  f"bytes {m.nbytes:9d}  ratio {m.median / base:8.2f}x", flush=True)
    print(f"load average at end: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
