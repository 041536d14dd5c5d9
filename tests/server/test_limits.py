"""Limits that hold under concurrency (issue 10, class 4), on a real relay over
loopback, on SQLite and PostgreSQL: the quota under concurrent creates, expired
transfers counted until gc, registration that does no work before the invite
is checked, and rate limits keyed on the real client behind a trusted proxy."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from typing import Any

import pytest

from sealdrop.client.relay_api import RelayError
from sealdrop.server import ops

from .relaykit import Identity, RunningRelay, make_identity, sign_headers

JS = {"Content-Type": "application/json"}


def _error(data: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(data)
    assert set(obj) >= {"error", "code"}, obj
    return obj


# -- quota ---------------------------------------------------------------------


def test_concurrent_creates_never_exceed_the_quota(relay_factory) -> None:  # type: ignore[no-untyped-def]
    quota, size, threads = 10_000, 1000, 50
    relay = relay_factory(quota_bytes=quota, rate_burst=1000, rate_per_second=1000.0)
    _, a = relay.user("alice")
    relay.user("bob-lab")
    barrier = threading.Barrier(threads)
    outcomes: list[str] = []
    lock = threading.Lock()

    def create() -> None:
        client = relay.client(a)  # one connection per thread
        barrier.wait(60)
        try:
            client.create_transfer(["bob-lab"], size)
            got = "created"
        except RelayError as exc:
            got = f"{exc.status} {exc.code}"
        with lock:
            outcomes.append(got)

    workers = [threading.Thread(target=create) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert len(outcomes) == threads
    # Exactly what fits: never more (the race), and never fewer (a lock that
    # refused good requests would be no fix either).
    assert outcomes.count("created") == quota // size, outcomes
    assert set(outcomes) == {"created", "413 quota_exceeded"}, set(outcomes)
    rows = relay.rows()["transfers"]
    assert len(rows) == quota // size
    assert sum(r["size"] for r in rows) == quota


def test_expired_transfers_count_until_gc_deletes_their_blobs(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory(quota_bytes=10_000)
    alice, _ = relay.user("alice")
    relay.user("bob-lab")
    t = alice.create_transfer(["bob-lab"], 4000, expires_in=60)["id"]
    alice.upload_chunk(t, 0, os.urandom(4000))
    alice.complete(t)
    relay.clock.advance(61)
    # Expired: gone from the API, but its 4000 bytes are still on the relay's disk.
    assert relay.run(relay.relay.blobs.list())[0].key == t
    with pytest.raises(RelayError) as e:
        alice.create_transfer(["bob-lab"], 7000)
    assert e.value.status == 413 and e.value.code == "quota_exceeded"
    report = relay.run(ops.gc(relay.relay.store, relay.relay.blobs, relay.config,
                              now=int(relay.clock())))
    assert report.deleted == [t]
    assert relay.run(relay.relay.blobs.list()) == []
    alice.create_transfer(["bob-lab"], 7000)  # freed once the blob is gone


# -- registration does no work before the invite is checked -------------------------


def _registration(relay: RunningRelay, ident: Identity, invite: str, *,
                  nonce: bytes | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"handle": ident.handle, "invite": invite,
                       "bundle": ident.bundle.to_json()}).encode()
    headers = {**JS, **sign_headers(ident.signing_key, ident.handle, "POST", "/v1/accounts",
                                    hashlib.sha256(body).hexdigest(), now=relay.clock(),
                                    nonce=nonce)}
    return body, headers


def _register(relay: RunningRelay, ident: Identity, invite: str,
              extra: dict[str, str] | None = None) -> tuple[int, bytes]:
    body, headers = _registration(relay, ident, invite)
    st, _, data = relay.raw("POST", "/v1/accounts", body=body, headers={**headers, **(extra or {})})
    return st, data


def test_bad_invite_flood_leaves_no_nonce_and_spends_no_token(relay_factory) -> None:  # type: ignore[no-untyped-def]
    burst = 3
    relay = relay_factory(rate_burst=burst, rate_per_second=0.001)
    for i in range(40):
        # Well-formed, properly signed, unknown invites: the flood a stranger can send.
        st, data = _register(relay, make_identity(f"flood-{i}"), os.urandom(16).hex())
        assert st == 403 and _error(data)["code"] == "invalid_invite", (st, data)
    rows = relay.rows()
    assert rows["nonces"] == [] and rows["accounts"] == []
    # The registration bucket of this address is still full: `burst` real
    # registrations go through, and only the next one is limited (so the
    # limiter is on, and the flood above spent none of it).
    for i in range(burst):
        st, data = _register(relay, make_identity(f"clinic-{i}"), relay.invite())
        assert st == 201, data
    st, data = _register(relay, make_identity("clinic-late"), relay.invite())
    assert st == 429 and _error(data)["code"] == "rate_limited"
    assert len(relay.rows()["nonces"]) == burst


def test_replayed_registration_leaves_the_invite_open(relay: RunningRelay) -> None:
    first, second = make_identity("clinic-one"), make_identity("clinic-two")
    nonce = os.urandom(16)
    body, headers = _registration(relay, first, relay.invite(), nonce=nonce)
    assert relay.raw("POST", "/v1/accounts", body=body, headers=headers)[0] == 201
    # Another registration carrying an already used nonce: refused as a replay,
    # and all or nothing (its invite is not burnt, no account appears).
    code = relay.invite()
    body, headers = _registration(relay, second, code, nonce=nonce)
    st, _, data = relay.raw("POST", "/v1/accounts", body=body, headers=headers)
    assert st == 401 and _error(data)["code"] == "replayed_request"
    assert [r["handle"] for r in relay.rows()["accounts"]] == ["clinic-one"]
    st, data = _register(relay, second, code)
    assert st == 201, data


# -- rate limits key on the real client behind a trusted proxy ------------------------


def test_forwarded_for_from_an_untrusted_peer_is_ignored(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory(rate_burst=1, rate_per_second=0.001, trusted_proxies="10.9.9.9/32")
    st, data = _register(relay, make_identity("clinic-a"), relay.invite(),
                         {"X-Forwarded-For": "203.0.113.1"})
    assert st == 201, data
    # A forged header naming another client changes nothing: the peer,
    # 127.0.0.1, is not a trusted proxy, so this is the same client again.
    st, data = _register(relay, make_identity("clinic-b"), relay.invite(),
                         {"X-Forwarded-For": "203.0.113.2"})
    assert st == 429 and _error(data)["code"] == "rate_limited"


def test_forwarded_for_from_a_trusted_proxy_is_honoured(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory(rate_burst=1, rate_per_second=0.001,
                          trusted_proxies="127.0.0.1/32,10.0.0.0/8")
    ok = [("clinic-a", "203.0.113.1"),
          ("clinic-b", "203.0.113.2"),
          # an inner trusted proxy between: skipped, the client is the next one left
          ("clinic-c", "203.0.113.3, 10.1.2.3")]
    for handle, xff in ok:
        st, data = _register(relay, make_identity(handle), relay.invite(),
                             {"X-Forwarded-For": xff})
        assert st == 201, (handle, data)
    # The same clients again are limited, whatever they write further left:
    # only the right-most untrusted entry counts.
    for handle, xff in [("clinic-d", "203.0.113.1"),
                        ("clinic-e", "198.51.100.7, 203.0.113.2"),
                        ("clinic-f", "198.51.100.8, 203.0.113.3, 10.1.2.3")]:
        st, data = _register(relay, make_identity(handle), relay.invite(),
                             {"X-Forwarded-For": xff})
        assert st == 429 and _error(data)["code"] == "rate_limited", (handle, st, data)
    # Without the header, the proxy itself is the client: a bucket of its own.
    st, data = _register(relay, make_identity("clinic-g"), relay.invite())
    assert st == 201, data
