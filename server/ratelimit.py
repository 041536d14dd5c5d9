"""Request rate limiting: per-account token buckets kept in the shared database,
per-address registration buckets in memory.

Why in the database: every relay process behind a load balancer sees a share
of an account's requests, and buckets in process memory let N processes
allow N times the configured rate. Here a bucket is a row of
``rate_buckets`` (tokens, updated_at), and one request's take is one atomic
statement: ``INSERT ... ON CONFLICT (key) DO UPDATE ... RETURNING``, whose
SET expressions all read the row as it was before, under the row lock the
upsert takes (PostgreSQL) or the database's one write lock (SQLite). So
concurrent takes from any number of processes are applied one after the
other, and a bucket never lets more than ``burst + rate * t`` requests
through in any ``t`` seconds.

Cost: an account's take rides in the transaction that already commits its
request nonce (``server.noncebatch``): no commit of its own, one statement
per account per nonce batch, ``n`` requests of the account in the batch taken
at once. A bucket left alone for ``burst / rate`` seconds is full again,
exactly as if it had no row: ``gc`` deletes such rows (``purge_statement``).

Times are fractional seconds of the relays' wall clocks (several hosts must
keep them in step, as request signatures already require); a clock that steps
back never refills a bucket (the elapsed time counts as zero) and never
moves ``updated_at`` back.

Registrations are limited per client address (no account yet), and those
buckets stay in process memory (``AddressBuckets``): the relay promises to
keep addresses in memory only (docs/protocol.md), and a row keyed by address
would store them. So N processes allow N times the registration rate per
address; the invite, claimed in the database, is what admits an account.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .db import rate_buckets


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``rate`` tokens a second refill a bucket of at most ``burst`` tokens."""

    rate: float
    burst: int

    def wait(self, tokens: float) -> float:
        """Seconds until a bucket holding ``tokens`` has one to spare."""
        return max(0.0, (1.0 - tokens) / self.rate)

    @staticmethod
    def retry_after(wait: float) -> int:
        return max(1, math.ceil(wait))


def _take_statement(dialect: str) -> sa.Insert:
    b = rate_buckets.c
    now = sa.bindparam("now", type_=sa.Float)
    rate = sa.bindparam("rate", type_=sa.Float)
    burst = sa.bindparam("burst", type_=sa.Float)
    n = sa.bindparam("n", type_=sa.Integer)
    later = now > b.updated_at
    raw = b.tokens + sa.case((later, now - b.updated_at), else_=sa.literal(0.0)) * rate
    refill = sa.case((raw > burst, burst), else_=raw)
    # floor(refill): refill >= 0, so SQLite's CAST (which truncates) is floor
    # there; PostgreSQL's CAST of a double rounds, hence floor() first.
    whole = (sa.cast(refill, sa.Integer) if dialect == "sqlite"
             else sa.cast(sa.func.floor(refill), sa.Integer))
    granted = sa.case((refill >= n, n), else_=whole)
    insert = sqlite_insert(rate_buckets) if dialect == "sqlite" else pg_insert(rate_buckets)
    stmt = insert.values(
        key=sa.bindparam("bkey"),
        tokens=sa.bindparam("fresh_tokens", type_=sa.Float),
        updated_at=now,
        granted=sa.bindparam("fresh_granted", type_=sa.Integer),
    )
    return stmt.on_conflict_do_update(
        index_elements=[b.key],
        set_={
            "tokens": refill - granted,
            "updated_at": sa.case((later, now), else_=b.updated_at),
            "granted": granted,
        },
    ).returning(b.tokens, b.granted)


# Built once per dialect: building a Core statement costs more than running it.
_TAKE = {name: _take_statement(name) for name in ("sqlite", "postgresql")}


def take(
    conn: sa.Connection, key: str, *, n: int, now: float, limit: RateLimit
) -> tuple[int, float]:
    """Spend up to ``n`` of ``key``'s tokens in one statement, inside the
    caller's transaction: (how many were granted, tokens left)."""
    first = min(n, limit.burst)  # a bucket seen for the first time is full
    row = conn.execute(_TAKE[conn.dialect.name], {
        "bkey": key, "now": now, "rate": limit.rate, "burst": float(limit.burst), "n": n,
        "fresh_tokens": float(limit.burst - first), "fresh_granted": first,
    }).one()
    return int(row[1]), float(row[0])


def purge_statement(limit: RateLimit, now: float) -> sa.Delete:
    """The buckets idle long enough to be full again: deleting them changes nothing."""
    idle = limit.burst / limit.rate
    return sa.delete(rate_buckets).where(rate_buckets.c.updated_at < now - idle)


class AddressBuckets:
    """In-process token buckets by client address (registrations only: see above)."""

    def __init__(self, limit: RateLimit, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.limit = limit
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Spend one token; returns 0 if allowed, else seconds until one is free."""
        now = self.clock()
        burst = float(self.limit.burst)
        tokens, last = self._buckets.pop(key, (burst, now))
        tokens = min(burst, tokens + max(0.0, now - last) * self.limit.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = self.limit.wait(tokens)
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait
