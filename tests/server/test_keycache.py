"""The relay keeps the signing keys of recent signers in memory
(server.keycache), and never lets that memory accept what the database refuses:
each request's nonce commit reads the account back (server.noncebatch).

The database is changed here behind the store's back, as another process
would change it (``sealdrop-relay account disable``, a second relay, a restored
backup): the running relay's cache is not told."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
import sqlalchemy as sa
from nacl.signing import SigningKey

from sealdrop.client.relay_api import RelayAuthError
from sealdrop.server.db import accounts
from sealdrop.server.keycache import KeyCache
from sealdrop.server.metadata import Account

from .relaykit import RunningRelay, make_identity, sign_headers


def _behind_the_stores_back(relay: RunningRelay, handle: str, **values: object) -> None:
    async def update() -> None:
        async with relay.relay.store.engine.begin() as conn:
            await conn.execute(
                sa.update(accounts).where(accounts.c.handle == handle).values(**values))

    relay.run(update())


def _inbox(relay: RunningRelay, handle: str, key: SigningKey) -> tuple[int, str, dict[str, str]]:
    headers = sign_headers(key, handle, "GET", "/v1/inbox", hashlib.sha256(b"").hexdigest(),
                           now=relay.clock())
    status, _, data = relay.raw("GET", "/v1/inbox", headers=headers)
    return status, json.loads(data).get("code", "") if status >= 400 else "", headers


def test_a_cached_key_is_refused_once_another_process_disables_the_account(
        relay: RunningRelay) -> None:
    bob, ident = relay.user("bob-lab")
    assert bob.inbox() == []
    assert relay.relay.store.keys.get("bob-lab") is not None  # cached now
    _behind_the_stores_back(relay, "bob-lab", disabled=True)
    status, code, headers = _inbox(relay, "bob-lab", ident.signing_key)
    assert (status, code) == (403, "account_disabled")
    assert relay.relay.store.keys.get("bob-lab") is None
    with pytest.raises(RelayAuthError) as e:
        bob.inbox()  # read afresh now: still refused
    assert e.value.code == "account_disabled"
    _behind_the_stores_back(relay, "bob-lab", disabled=False)
    # The refused request's nonce was committed all the same: it stays used.
    status, _, data = relay.raw("GET", "/v1/inbox", headers=headers)
    assert status == 401 and json.loads(data)["code"] == "replayed_request"
    assert bob.inbox() == []


def test_a_handle_that_now_holds_another_key_refuses_the_cached_one(
        relay: RunningRelay) -> None:
    bob, ident = relay.user("bob-lab")
    assert bob.inbox() == []
    assert relay.relay.store.keys.get("bob-lab") is not None
    # A restored backup, then the handle registered again with a new key.
    new = make_identity("bob-lab")
    _behind_the_stores_back(relay, "bob-lab", signing_key=base64.b64encode(
        new.signing_key.verify_key.encode()).decode())
    status, code, _ = _inbox(relay, "bob-lab", ident.signing_key)
    assert (status, code) == (401, "invalid_signature")
    with pytest.raises(RelayAuthError) as e:
        bob.inbox()
    assert e.value.code == "invalid_signature"
    # The new key's first request misses the cache, reads the row, verifies.
    assert _inbox(relay, "bob-lab", new.signing_key)[0] == 200
    cached = relay.relay.store.keys.get("bob-lab")
    assert cached is not None and cached.signing_key == base64.b64encode(
        new.signing_key.verify_key.encode()).decode()


def test_disabling_through_the_store_forgets_the_key_at_once(relay: RunningRelay) -> None:
    bob, _ = relay.user("bob-lab")
    assert bob.inbox() == []
    assert relay.run(relay.relay.store.set_disabled("bob-lab", True))
    assert relay.relay.store.keys.get("bob-lab") is None
    with pytest.raises(RelayAuthError) as e:
        bob.inbox()
    assert e.value.code == "account_disabled"
    assert relay.relay.store.keys.get("bob-lab") is None  # a disabled account is never cached


def test_only_a_verified_signer_is_cached(relay: RunningRelay) -> None:
    relay.user("bob-lab")
    stranger = make_identity("bob-lab")  # right handle, wrong key
    status, code, _ = _inbox(relay, "bob-lab", stranger.signing_key)
    assert (status, code) == (401, "invalid_signature")
    assert relay.relay.store.keys.get("bob-lab") is None
    status, code, _ = _inbox(relay, "nobody-here", stranger.signing_key)
    assert (status, code) == (401, "invalid_signature")
    assert len(relay.relay.store.keys) == 0


def test_a_wrong_key_after_a_cached_one_is_refused_and_evicts(relay: RunningRelay) -> None:
    bob, _ = relay.user("bob-lab")
    assert bob.inbox() == []
    stranger = make_identity("bob-lab")
    status, code, _ = _inbox(relay, "bob-lab", stranger.signing_key)
    assert (status, code) == (401, "invalid_signature")
    assert bob.inbox() == []  # the rightful key is read again and accepted


def _account(handle: str, *, disabled: bool = False) -> Account:
    return Account(handle=handle, signing_key="k", bundle="{}", bundle_created=0,
                   created_at=0, disabled=disabled)


def test_the_cache_is_bounded_and_never_holds_a_disabled_account() -> None:
    cache = KeyCache(limit=4)
    for i in range(4):
        cache.put(_account(f"a{i}"))
    cache.put(_account("a4"))
    assert len(cache) <= 4 and cache.get("a4") is not None
    assert cache.get("a0") is None  # the oldest went first
    cache.put(_account("a4", disabled=True))
    assert cache.get("a4") is None
