"""Request nonces are group-committed (server.noncebatch): one synced
transaction for the nonces of concurrent requests, and still single-use."""

from __future__ import annotations

import asyncio
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from sealdrop.server.errors import StoreUnavailable
from sealdrop.server.noncebatch import MAX_BATCH, NonceBatcher

from .relaykit import RunningRelay, sign_headers


class _FakeStore:
    """Remembers nonces like the database's primary key, and records each batch."""

    def __init__(self) -> None:
        self.stored: set[str] = set()
        self.batches: list[list[tuple[str, int]]] = []
        self.fail: BaseException | None = None
        self.gate = asyncio.Event()
        self.gate.set()

        self.accounts: dict[str, tuple[str, bool]] = {}
        self.tokens: dict[str, int] = {}  # a handle listed here has that many left
        self.asked: list[dict[str, int]] = []

    async def store(
        self, batch: list[tuple[str, int]], handles: dict[str, int]
    ) -> tuple[set[str], dict[str, tuple[str, bool, int]]]:
        self.batches.append(batch)
        self.asked.append(handles)
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        fresh = {n for n, _ in batch if n not in self.stored}
        self.stored |= fresh
        states = {}
        for h, n in handles.items():
            if h in self.accounts:
                granted = min(n, self.tokens.get(h, n))
                if h in self.tokens:
                    self.tokens[h] -= granted
                states[h] = (*self.accounts[h], granted)
        return fresh, states


def test_concurrent_nonces_share_one_batch_and_a_repeat_is_a_replay() -> None:
    async def run() -> list[bool]:
        fake = _FakeStore()
        batcher = NonceBatcher(fake.store)
        fake.gate.clear()  # the first batch (of one) holds the "lock" meanwhile
        first = asyncio.create_task(batcher.remember("n0", expires_at=1))
        await asyncio.sleep(0)
        rest = [asyncio.create_task(batcher.remember(n, expires_at=1))
                for n in ("a", "b", "a", "n0", "c")]
        await asyncio.sleep(0)
        fake.gate.set()
        got = [await first] + [await t for t in rest]
        # One batch for n0, then one for everything that arrived meanwhile,
        # with the repeated nonce sent once.
        assert [sorted(n for n, _ in b) for b in fake.batches] == [["n0"], ["a", "b", "c", "n0"]]
        again = await batcher.remember("b", expires_at=1)
        return got + [again]

    assert asyncio.run(run()) == [True, True, True, False, False, True, False]


def test_a_failed_batch_fails_every_waiter_and_the_next_batch_works() -> None:
    async def run() -> None:
        fake = _FakeStore()
        batcher = NonceBatcher(fake.store)
        fake.fail = StoreUnavailable("down")
        results = await asyncio.gather(
            *(batcher.remember(f"x{i}", expires_at=1) for i in range(3)),
            return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results)
        fake.fail = None
        assert await batcher.remember("x0", expires_at=1) is True

    asyncio.run(run())


def test_a_cancelled_waiter_does_not_cancel_the_batch() -> None:
    async def run() -> None:
        fake = _FakeStore()
        batcher = NonceBatcher(fake.store)
        fake.gate.clear()
        gone = asyncio.create_task(batcher.remember("g", expires_at=1))
        stays = asyncio.create_task(batcher.remember("s", expires_at=1))
        await asyncio.sleep(0)
        gone.cancel()
        fake.gate.set()
        assert await stays is True
        with pytest.raises(asyncio.CancelledError):
            await gone
        # The cancelled request's nonce was stored anyway: it stays used.
        assert await batcher.remember("g", expires_at=1) is False

    asyncio.run(run())


def test_a_large_burst_is_split_into_bounded_batches() -> None:
    async def run() -> None:
        fake = _FakeStore()
        batcher = NonceBatcher(fake.store)
        fake.gate.clear()
        tasks = [asyncio.create_task(batcher.remember(f"n{i}", expires_at=1))
                 for i in range(MAX_BATCH * 2 + 5)]
        await asyncio.sleep(0)
        fake.gate.set()
        assert all(await asyncio.gather(*tasks))
        assert max(len(b) for b in fake.batches) <= MAX_BATCH

    asyncio.run(run())


def test_the_same_signed_request_sent_concurrently_is_accepted_once(
        relay: RunningRelay) -> None:
    """On the real database: many copies of one signed request at once, all in
    the same batches: exactly one creates a transfer, the rest are replays."""
    relay.user("alice")
    relay.user("bob-lab")
    a = relay.identities["alice"]
    body = json.dumps({"recipients": ["bob-lab"], "size": 100}).encode()
    headers = {"Content-Type": "application/json"}
    headers.update(sign_headers(a.signing_key, "alice", "POST", "/v1/transfers",
                                hashlib.sha256(body).hexdigest(), now=relay.clock()))
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(
            lambda _: relay.raw("POST", "/v1/transfers", body=body, headers=headers),
            range(16)))
    statuses = sorted(st for st, _, _ in answers)
    assert statuses == [201] + [401] * 15
    assert all(json.loads(d)["code"] == "replayed_request" for st, _, d in answers if st == 401)
    assert len(relay.rows()["transfers"]) == 1


def test_distinct_requests_sent_concurrently_are_all_accepted(relay: RunningRelay) -> None:
    relay.user("alice")
    a = relay.identities["alice"]

    def poll(_: int) -> int:
        h = sign_headers(a.signing_key, "alice", "GET", "/v1/inbox",
                         hashlib.sha256(b"").hexdigest(), now=relay.clock())
        return relay.raw("GET", "/v1/inbox", headers=h)[0]

    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(poll, range(32))) == [200] * 32


def test_a_batch_reads_back_the_accounts_of_its_signers_once() -> None:
    async def run() -> None:
        fake = _FakeStore()
        fake.accounts = {"alice": ("ka", False), "bob": ("kb", True)}
        batcher = NonceBatcher(fake.store)
        fake.gate.clear()
        first = asyncio.create_task(batcher.remember("n0", expires_at=1))
        await asyncio.sleep(0)
        rest = [asyncio.create_task(batcher.remember_as(n, expires_at=1, handle=h))
                for n, h in (("a1", "alice"), ("b1", "bob"), ("a2", "alice"), ("g", "gone"))]
        await asyncio.sleep(0)
        fake.gate.set()
        assert await first is True
        got = [await t for t in rest]
        assert got == [(True, ("ka", False, True)), (True, ("kb", True, True)),
                       (True, ("ka", False, True)), (True, None)]
        # Each handle asked for once per batch, with its number of requests;
        # a plain nonce asks for none.
        assert fake.asked == [{}, {"alice": 2, "bob": 1, "gone": 1}]

    asyncio.run(run())


def test_the_tokens_granted_to_a_batch_go_to_its_first_requests() -> None:
    async def run() -> None:
        fake = _FakeStore()
        fake.accounts = {"alice": ("ka", False), "bob": ("kb", False)}
        fake.tokens = {"alice": 2, "bob": 0}
        batcher = NonceBatcher(fake.store)
        fake.gate.clear()
        first = asyncio.create_task(batcher.remember("n0", expires_at=1))
        await asyncio.sleep(0)
        rest = [asyncio.create_task(batcher.remember_as(f"a{i}", expires_at=1, handle=h))
                for i, h in enumerate(["alice", "bob", "alice", "alice", "alice"])]
        await asyncio.sleep(0)
        fake.gate.set()
        await first
        allowed = [(await t)[1] for t in rest]
        # alice's two tokens go to her first two requests in arrival order; bob has none.
        assert [a[2] if a else None for a in allowed] == [True, False, True, False, False]
        assert fake.asked[-1] == {"alice": 4, "bob": 1} and fake.tokens == {"alice": 0, "bob": 0}

    asyncio.run(run())
