"""Leases: named locks in the shared database, so relay processes exclude each other.

A lease is a row of ``leases``: (name, owner, expires_at). Taking it is one
conditional upsert: insert the row, or take over one whose expiry has passed,
``RETURNING`` the owner; the statement's row lock (PostgreSQL) or the
database's one write lock (SQLite) decides between racing takers. The holder
renews it every ``RENEW_EVERY`` seconds while it works and deletes it when done.
Names: ``upload:<transfer id>`` around a chunk write, ``complete`` and
``delete`` (``server.transfers``); ``gc`` for the one gc running (``server.ops``).

Why a lease row and not ``pg_advisory_lock`` (issue 14's choice, by failure
analysis and cost):

* a holder that dies any way at all (SIGKILL, OOM, the host gone, the network
  cut) blocks the name for at most ``LEASE_SECONDS``. A session advisory lock
  goes when PostgreSQL notices its session is gone: at once for a killed
  process on a live host, but for a lost host only when TCP keepalive gives
  up (two hours and more with Linux defaults), unless every server is tuned;
* an advisory lock pins one pooled connection for the whole chunk write, and
  a 16 MiB chunk may take 1,024 s at the minimum body rate: the pool (15
  connections by default) would cap the uploads in progress per process,
  where ``scripts/bench_relay`` runs 200 at once. A lease costs one short
  unsynced commit to take (a chunk's and ``complete``'s own commit lets go
  of it) and pins nothing;
* SQLite has no advisory locks; the lease row is one code path for both.

What it costs: a crashed holder's upload waits up to ``LEASE_SECONDS``
(clients retry a ``503 upload_busy``), unless the holder was a process of
the same host (the owner string names host and pid): a waiter that finds
that pid gone takes the lease over at once (``take_over_dead``), and so does
start-up recovery after a crash. A holder that stalls longer than that
(it cannot renew) loses the lease; its later commit is refused
(``SqlMetadataStore.advance`` checks the lease in the committing statement),
so the row never takes a chunk from a holder that was overtaken. A hold
that ends while the database is away (a restart, a crash) cannot delete its
row then: the process releases it in the background once the database is
back (``_release_later``), so a PostgreSQL restart does not stall every
upload in flight, and gc, until their leases run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from sealdrop.crypto.protocol import ErrorCode

from .db import leases
from .errors import Busy
from .logs import LOGGER_NAME

if TYPE_CHECKING:  # the store runs these statements: no import cycle at run time
    from .metadata import SqlMetadataStore

LEASE_SECONDS = 30  # how long a dead holder can block a name
RENEW_EVERY = 10.0  # a live holder renews well before that
WAIT_SECONDS = 30.0  # a request waits this long for a held lease, then 503 upload_busy
_POLL_FIRST, _POLL_MAX = 0.02, 0.25  # backoff while waiting on another process's lease
_RELEASE_RETRY_MAX = 2.0  # a lease left behind by a database outage: released this soon after
_log = logging.getLogger(LOGGER_NAME)


def _take_statement(dialect: str) -> sa.Insert:
    insert = sqlite_insert(leases) if dialect == "sqlite" else pg_insert(leases)
    stmt = insert.values(name=sa.bindparam("lname"), owner=sa.bindparam("lowner"),
                         expires_at=sa.bindparam("luntil", type_=sa.BigInteger))
    return stmt.on_conflict_do_update(
        index_elements=[leases.c.name],
        set_={"owner": stmt.excluded.owner, "expires_at": stmt.excluded.expires_at},
        # Only a lease that has run out changes hands.
        where=leases.c.expires_at <= sa.bindparam("now", type_=sa.BigInteger),
    ).returning(leases.c.owner)


_TAKE = {name: _take_statement(name) for name in ("sqlite", "postgresql")}
_RENEW = (
    sa.update(leases)
    .where(leases.c.name == sa.bindparam("lname"), leases.c.owner == sa.bindparam("lowner"))
    .values(expires_at=sa.bindparam("luntil"))
)
_STEAL = (
    sa.update(leases)
    .where(leases.c.name == sa.bindparam("lname"), leases.c.owner == sa.bindparam("ldead"))
    .values(owner=sa.bindparam("lowner"), expires_at=sa.bindparam("luntil"))
)
_RELEASE = sa.delete(leases).where(
    leases.c.name == sa.bindparam("lname"), leases.c.owner == sa.bindparam("lowner")
)
_HOLDER = sa.select(leases.c.owner, leases.c.expires_at).where(
    leases.c.name == sa.bindparam("lname")
)


def held_by(name: str, owner: str) -> sa.ColumnElement[bool]:
    """True while ``owner`` holds ``name``: a condition to fence a commit with."""
    return sa.exists().where(leases.c.name == name, leases.c.owner == owner)


def take(conn: sa.Connection, name: str, owner: str, *, now: int, until: int) -> bool:
    """Take ``name`` for ``owner`` until ``until`` unless someone else holds it."""
    row = conn.execute(_TAKE[conn.dialect.name],
                       {"lname": name, "lowner": owner, "luntil": until, "now": now}).first()
    return row is not None and row[0] == owner


def renew(conn: sa.Connection, name: str, owner: str, *, until: int) -> bool:
    return conn.execute(_RENEW, {"lname": name, "lowner": owner, "luntil": until}).rowcount == 1


def steal(conn: sa.Connection, name: str, dead: str, owner: str, *, until: int) -> bool:
    """Hand ``name`` from ``dead`` to ``owner``, if ``dead`` still holds it."""
    params = {"lname": name, "ldead": dead, "lowner": owner, "luntil": until}
    return conn.execute(_STEAL, params).rowcount == 1


def release(conn: sa.Connection, name: str, owner: str) -> None:
    conn.execute(_RELEASE, {"lname": name, "lowner": owner})


def holder(conn: sa.Connection, name: str) -> tuple[str, int] | None:
    row = conn.execute(_HOLDER, {"lname": name}).first()
    return None if row is None else (str(row[0]), int(row[1]))


@dataclass(slots=True)
class Held:
    """A lease this process holds. A transaction that ends the work may delete
    the lease row itself (``SqlMetadataStore.advance``, ``complete``: one
    commit less per chunk); it then sets ``released``."""

    name: str
    owner: str
    released: bool = False

    @property
    def fence(self) -> tuple[str, str]:
        return self.name, self.owner


# The process tokens of this process's ``Leases`` (``dead_here``).
_LIVE: set[str] = set()


def process_owner() -> str:
    """This process, as a lease owner names it: host, pid and a random part
    (a pid reused after a restart is another owner)."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"


class Leases:
    """Takes and holds leases for one process on one store.

    Every hold gets its own owner string (the process's, plus a counter), so
    a request can fence its commit against any other holder, in this process
    or another."""

    def __init__(self, store: SqlMetadataStore, clock: Callable[[], float] = time.time,
                 *, ttl: int = LEASE_SECONDS, renew_every: float = RENEW_EVERY) -> None:
        self._store = store
        self._clock = clock
        self._ttl = ttl
        self._renew_every = renew_every
        self.process = process_owner()
        _LIVE.add(self.process)
        self._count = itertools.count(1)
        # Holds that ended while the database could not be told, released in
        # the background once it can (``_release_later``): (name, owner) ->
        # when its row runs out anyway. By owner, not name: the retries of one
        # upload during an outage each leave an owner that may hold the row.
        self._let_go: dict[tuple[str, str], int] = {}
        self._releasing: asyncio.Task[None] | None = None

    def _now(self) -> int:
        return int(self._clock())

    def new_owner(self) -> str:
        return f"{self.process}:{next(self._count)}"[:64]

    async def try_take(self, name: str, owner: str) -> bool:
        now = self._now()
        try:
            return await self._store.take_lease(name, owner, now=now, until=now + self._ttl)
        except BaseException:  # cancelled too: the statement may have run all the same
            # The database may have committed the take and lost only its answer
            # (it went down in between): let go of it as soon as it is back.
            # Deleting a lease ``owner`` does not hold changes nothing.
            self._release_later(name, owner)
            raise

    async def acquire(self, name: str, owner: str, *, wait: float) -> None:
        """Take ``name`` for ``owner``, waiting up to ``wait`` seconds for another
        holder to let go (or its lease to run out); else ``Busy`` (503
        ``upload_busy``, which clients send again)."""
        deadline = asyncio.get_running_loop().time() + wait
        pause = _POLL_FIRST
        polls = 0
        while not await self.try_take(name, owner):
            # Now and then: is the holder a process of this host that died (its
            # lease then need not run out first)? One read, on contention only.
            if polls % 20 == 0 and await self.take_over_dead(name, owner):
                return
            polls += 1
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise Busy("another request is writing this upload; try again shortly",
                           code=ErrorCode.UPLOAD_BUSY)
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, _POLL_MAX)

    @contextlib.asynccontextmanager
    async def hold(self, name: str, *, wait: float = WAIT_SECONDS) -> AsyncIterator[Held]:
        """Hold ``name`` for the block, renewed meanwhile (``acquire`` says how
        long it waits)."""
        owner = self.new_owner()
        await self.acquire(name, owner, wait=wait)
        async with self.held(name, owner) as lease:
            yield lease

    async def holds(self, lease: Held) -> bool:
        """Whether ``lease`` is still its owner's: no other took it over (one read)."""
        held = await self._store.lease_holder(lease.name)
        return held is not None and held[0] == lease.owner

    async def take_over_dead(self, name: str, owner: str) -> bool:
        """Take ``name`` for ``owner`` at once if its holder is a process of this
        host that no longer runs (start-up after a crash: its leases would
        otherwise block for ``LEASE_SECONDS``), or a hold of this process that
        ended while the database was away (``_release_later``)."""
        held = await self._store.lease_holder(name)
        if held is None or not (self.dead_here(held[0]) or self._ended_here(name, held[0])):
            return False
        now = self._now()
        return await self._store.steal_lease(name, held[0], owner, until=now + self._ttl)

    def dead_here(self, owner: str) -> bool:
        """Whether ``owner`` (``process_owner`` form) was a process of this host
        that is gone: another process token with this process's pid (the pid
        was reused), or a pid that no longer exists."""
        parts = owner.split(":")
        if len(parts) < 3 or owner.startswith(self.process + ":"):
            return False
        host, pid_text = parts[0], parts[1]
        if host != socket.gethostname()[:32] or not pid_text.isdigit():
            return False
        pid = int(pid_text)
        if pid == os.getpid():
            # This pid: dead unless it is the token of a ``Leases`` of this very
            # process (a command may make several); else a process before us had it.
            token = ":".join(parts[:3])
            return token not in _LIVE

        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, someone else's
        return False

    @contextlib.asynccontextmanager
    async def held(self, name: str, owner: str) -> AsyncIterator[Held]:
        """Keep an already taken lease renewed for the block, then release it
        (unless the block's last transaction released it: ``Held.released``)."""
        lease = Held(name, owner)
        renewer = asyncio.create_task(self._renew(name, owner))
        try:
            yield lease
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            if not lease.released:
                # Shielded: a request cancelled here (its client went away) still
                # lets go, or the name would stay blocked until the lease ran out.
                try:
                    await asyncio.shield(self._store.release_lease(name, owner))
                except BaseException:  # cancelled too: the shielded release may fail
                    self._release_later(name, owner)
                    raise

    async def _renew(self, name: str, owner: str) -> None:
        while True:
            await asyncio.sleep(self._renew_every)
            try:
                until = self._now() + self._ttl
                if not await self._store.renew_lease(name, owner, until=until):
                    return  # overtaken: the fenced commit will refuse this holder
            except Exception as exc:  # noqa: BLE001 - a database hiccup: try again next time
                # The lease name only: it holds a transfer id, already in the access log.
                _log.warning("lease_renew_failed", extra={"fields": {
                    "lease": name, "cause": type(exc).__name__}})

    def _ended_here(self, name: str, owner: str) -> bool:
        return (name, owner) in self._let_go

    def _release_later(self, name: str, owner: str) -> None:
        """Release a lease whose hold ended while the database was away (a
        restart, a crash, the network): without this its row would block the
        name on every process until it ran out, ``LEASE_SECONDS`` after the
        database came back (each upload in flight stalled, gc skipped). A
        waiter in this process takes it over at once (``take_over_dead``)."""
        # Past its ttl from now the row has run out: anyone may take it anyway.
        self._let_go[name, owner] = self._now() + self._ttl
        if self._releasing is None or self._releasing.done():
            self._releasing = asyncio.create_task(self._release_let_go())

    async def _release_let_go(self) -> None:
        pause = _POLL_MAX
        while self._let_go:
            await asyncio.sleep(pause)
            pause = min(pause * 2, _RELEASE_RETRY_MAX)
            for (name, owner), until in list(self._let_go.items()):
                if self._now() < until:
                    try:
                        await self._store.release_lease(name, owner)
                    except Exception:  # noqa: BLE001 - still away: the next round
                        break
                del self._let_go[name, owner]
