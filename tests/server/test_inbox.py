"""Inbox flooding (issue 10, class 2) on the relay: pages and cursors, the sender
filter that a flood cannot push a trusted sender's transfer out of, dismissal,
blocks by the recipient and by the operator, and disabled senders.

Every test runs on a real relay over HTTP, on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import io
import json
import os
import urllib.parse
from typing import Any

import pytest
import sqlalchemy as sa

from sealdrop.client.relay_api import RelayAuthError, RelayClient, RelayError, RelayNotFound
from sealdrop.server import ops
from sealdrop.server.db import recipients, transfers

from .relaykit import Identity, RunningRelay, upload_blob
from .test_ops import run_cli

FLOOD = 1000


def _upload(sender: RelayClient, to: list[str], blob: bytes | None = None) -> str:
    blob = blob if blob is not None else os.urandom(300)
    t = sender.create_transfer(to, len(blob))
    upload_blob(sender, t["id"], blob)
    sender.complete(t["id"])
    return str(t["id"])


def _page(relay: RunningRelay, who: Identity, **params: Any) -> tuple[int, dict[str, Any]]:
    pairs = [(k, x) for k, v in params.items() for x in (v if isinstance(v, list) else [v])]
    path = "/v1/inbox" + ("?" + urllib.parse.urlencode(pairs) if pairs else "")
    st, _, data = relay.raw("GET", path, sign=who)
    return st, json.loads(data)


def _ids(page: dict[str, Any]) -> list[str]:
    return [t["id"] for t in page["transfers"]]


def _flood(relay: RunningRelay, sender: str, to: str, n: int) -> list[str]:
    """``n`` complete junk transfers from ``sender`` to ``to``, straight into the
    relay's database in one transaction (thousands of HTTP uploads would only
    make the test slow; the e2e flood goes through HTTP)."""
    now = int(relay.clock())
    ids = [os.urandom(16).hex() for _ in range(n)]

    async def insert() -> None:
        async with relay.relay.store.engine.begin() as conn:
            await conn.execute(sa.insert(transfers), [
                {"id": i, "sender": sender, "size": 1, "committed": 1, "state": "complete",
                 "digest": "0" * 64, "created_at": now, "updated_at": now,
                 "completed_at": now, "expires_at": now + 86400} for i in ids])
            await conn.execute(sa.insert(recipients),
                               [{"transfer_id": i, "recipient": to} for i in ids])

    relay.run(insert())
    return ids


# -- pages and cursors ---------------------------------------------------------------


def test_pages_walk_every_transfer_once_in_order(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    _, b = relay.user("bob-lab")
    sent = []
    for i in range(7):
        sent.append(_upload(alice, ["bob-lab"]))
        if i % 3 == 0:
            relay.clock.advance(2)  # some share a second (the id breaks the tie), some not
    # an old client's request, without cursor or limit: the first page, all of it here
    st, first = _page(relay, b)
    assert st == 200 and first["next_cursor"] is None and sorted(_ids(first)) == sorted(sent)
    order = _ids(first)
    stamps = [(t["completed_at"], t["id"]) for t in first["transfers"]]
    assert stamps == sorted(stamps)  # oldest first, id as the tie-break
    walked, cursor, pages = [], None, 0
    while True:
        st, page = _page(relay, b, limit=3, **({"cursor": cursor} if cursor else {}))
        assert st == 200 and len(page["transfers"]) <= 3
        walked += _ids(page)
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == order and pages == 3
    # a transfer that completes during a walk shows on a later page, none twice
    st, one = _page(relay, b, limit=4)
    relay.clock.advance(5)
    late = _upload(alice, ["bob-lab"])
    st, rest = _page(relay, b, limit=100, cursor=one["next_cursor"])
    assert _ids(one) + _ids(rest) == order + [late]
    # the client walks the pages itself
    assert [t["id"] for t in relay.client(b).inbox()] == order + [late]


def test_the_default_page_is_bounded(relay: RunningRelay) -> None:
    relay.user("mallory")
    _, b = relay.user("bob-lab")
    junk = _flood(relay, "mallory", "bob-lab", 250)
    st, first = _page(relay, b)
    assert st == 200 and len(first["transfers"]) == 100 and first["next_cursor"]
    st, big = _page(relay, b, limit=500)
    assert len(big["transfers"]) == 250 and big["next_cursor"] is None
    assert sorted(_ids(big)) == sorted(junk)


def test_a_flood_cannot_hide_a_trusted_senders_transfer(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    relay.user("mallory")
    _, b = relay.user("bob-lab")
    relay.clock.advance(-60)  # the flood is older: oldest first puts it in front
    junk = _flood(relay, "mallory", "bob-lab", FLOOD)
    relay.clock.advance(60)
    real = _upload(alice, ["bob-lab"])
    st, first = _page(relay, b)
    assert st == 200 and real not in _ids(first)  # buried without the filter
    st, mine = _page(relay, b, sender=["alice", "carol-rad"])
    assert st == 200 and _ids(mine) == [real] and mine["next_cursor"] is None
    st, theirs = _page(relay, b, sender="mallory", limit=500)
    assert len(theirs["transfers"]) == 500 and set(_ids(theirs)) <= set(junk)
    everything = relay.client(b).inbox()
    assert len(everything) == FLOOD + 1 and everything[-1]["id"] == real


@pytest.mark.parametrize("params, code", [
    ({"cursor": "not a cursor!"}, "bad_cursor"),
    ({"cursor": base64.urlsafe_b64encode(b"12.xyz").decode().rstrip("=")}, "bad_cursor"),
    ({"cursor": base64.urlsafe_b64encode(b"12." + b"a" * 32).decode().rstrip("=") + "x"},
     "bad_cursor"),
    ({"cursor": base64.urlsafe_b64encode(b"012." + b"a" * 32).decode().rstrip("=")},
     "bad_cursor"),
    ({"cursor": ["YQ", "YQ"]}, "bad_request"),
    ({"limit": "0"}, "bad_request"),
    ({"limit": "501"}, "bad_request"),
    ({"limit": "\uff11\uff12"}, "bad_request"),
    ({"limit": " 5"}, "bad_request"),
    ({"limit": "-1"}, "bad_request"),
    ({"limit": ["5", "6"]}, "bad_request"),
    ({"page": "2"}, "bad_request"),
    ({"sender": "Not A Handle"}, "bad_handle"),
    ({"sender": [f"sender-{i:03d}" for i in range(33)]}, "bad_request"),
])
def test_malformed_inbox_queries_are_refused(relay: RunningRelay, params: dict[str, Any],
                                            code: str) -> None:
    _, b = relay.user("bob-lab")
    st, body = _page(relay, b, **params)
    assert st == 400 and body["code"] == code, body
    assert body["error"] == body["error"].lower() and "\n" not in body["error"]


def test_a_cursor_is_only_a_position(relay: RunningRelay) -> None:
    """A well-formed cursor naming no transfer is just a place in the order."""
    alice, _ = relay.user("alice")
    _, b = relay.user("bob-lab")
    tid = _upload(alice, ["bob-lab"])
    before = base64.urlsafe_b64encode(b"1." + b"0" * 32).decode().rstrip("=")
    after = base64.urlsafe_b64encode(b"99999999999." + b"f" * 32).decode().rstrip("=")
    assert _ids(_page(relay, b, cursor=before)[1]) == [tid]
    assert _ids(_page(relay, b, cursor=after)[1]) == []


# -- dismiss ------------------------------------------------------------------------


def test_dismiss_takes_a_transfer_out_of_one_inbox_for_good(relay: RunningRelay) -> None:
    alice, a = relay.user("alice")
    bob, b = relay.user("bob-lab")
    carol, c = relay.user("carol-rad")
    _, m = relay.user("mallory")
    tid = _upload(alice, ["bob-lab", "carol-rad"])
    js = {"Content-Type": "application/json"}
    st, _, data = relay.raw("POST", f"/v1/transfers/{tid}/dismiss", body=b'{"x":1}',
                            headers=js, sign=b)
    assert st == 400 and json.loads(data)["code"] == "bad_json"
    for who in (a, m):  # the sender is not a recipient; a stranger learns nothing
        st, _, data = relay.raw("POST", f"/v1/transfers/{tid}/dismiss", body=b"{}",
                                headers=js, sign=who)
        assert st == 404 and json.loads(data)["code"] == "transfer_not_found"
    bob.dismiss(tid)
    bob.dismiss(tid)  # again: still fine, nothing changes
    assert bob.inbox() == []
    for call in (lambda: bob.download(tid, io.BytesIO()), lambda: bob.status(tid),
                 lambda: bob.ack(tid, "verified")):
        with pytest.raises(RelayNotFound):
            call()
    assert [t["id"] for t in carol.inbox()] == [tid]
    seen = {r["handle"]: r for r in alice.status(tid)["recipients"]}
    assert seen["bob-lab"]["dismissed_at"] is not None
    assert seen["carol-rad"]["dismissed_at"] is None
    first = seen["bob-lab"]["dismissed_at"]
    relay.clock.advance(30)
    bob.dismiss(tid)
    assert {r["handle"]: r for r in alice.status(tid)["recipients"]}["bob-lab"][
        "dismissed_at"] == first  # the first time counts
    # gc keeps it while carol may still want it...
    report = relay.run(ops.gc(relay.relay.store, relay.relay.blobs, relay.config,
                              now=relay.relay.now()))
    assert tid not in report.deleted
    # ...and deletes row and blob once nobody does
    carol.dismiss(tid)
    report = relay.run(ops.gc(relay.relay.store, relay.relay.blobs, relay.config,
                              now=relay.relay.now()))
    assert report.deleted == [tid]
    assert relay.rows()["transfers"] == []
    assert relay.run(relay.relay.blobs.list()) == []
    with pytest.raises(RelayNotFound):
        alice.status(tid)


def test_an_unfinished_upload_cannot_be_dismissed(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    bob, _ = relay.user("bob-lab")
    tid = alice.create_transfer(["bob-lab"], 100)["id"]
    with pytest.raises(RelayNotFound):
        bob.dismiss(tid)
    assert relay.rows()["transfer_recipients"][0]["dismissed_at"] is None
    report = relay.run(ops.gc(relay.relay.store, relay.relay.blobs, relay.config,
                              now=relay.relay.now()))
    assert report.deleted == []  # an upload in progress is not "dismissed by all"


# -- blocks -------------------------------------------------------------------------


def test_a_recipient_blocks_a_sender(relay_factory: Any) -> None:
    relay = relay_factory()
    alice, _ = relay.user("alice")
    bob, b = relay.user("bob-lab")
    relay.user("carol-rad")
    mallory, _ = relay.user("mallory")
    junk = _upload(mallory, ["bob-lab"])
    real = _upload(alice, ["bob-lab"])
    assert bob.block("mallory") is True
    assert bob.block("mallory") is False  # already: nothing changes
    assert [x["handle"] for x in bob.blocks()] == ["mallory"]
    assert [t["id"] for t in bob.inbox()] == [real]
    with pytest.raises(RelayNotFound):
        bob.download(junk, io.BytesIO())
    for to in (["bob-lab"], ["carol-rad", "bob-lab"]):
        with pytest.raises(RelayAuthError) as e:
            mallory.create_transfer(to, 10)
        assert e.value.status == 403 and e.value.code == "blocked_by_recipient"
        assert "bob-lab" in str(e.value)
    assert _upload(mallory, ["carol-rad"])  # nobody else is affected
    # the block lives in the database: a restarted relay keeps it
    again = relay_factory()
    again.identities = relay.identities
    bob2 = again.client(b)
    assert [t["id"] for t in bob2.inbox()] == [real]
    bob2.unblock("mallory")
    assert sorted(t["id"] for t in bob2.inbox()) == sorted([junk, real])
    with pytest.raises(RelayNotFound) as nf:
        bob2.unblock("mallory")
    assert nf.value.code == "account_not_found"
    assert bob2.blocks() == []


@pytest.mark.parametrize("handle, status, code", [
    ("bob-lab", 400, "bad_handle"),  # oneself
    ("nobody-here", 404, "account_not_found"),
    ("NOT%20A%20HANDLE", 400, "bad_handle"),
])
def test_bad_blocks_are_refused(relay: RunningRelay, handle: str, status: int,
                                code: str) -> None:
    _, b = relay.user("bob-lab")
    st, _, data = relay.raw("PUT", f"/v1/blocks/{handle}", sign=b)
    assert st == status and json.loads(data)["code"] == code
    assert relay.rows()["blocks"] == []


def test_the_operator_blocks_and_disables(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    bob, _ = relay.user("bob-lab")
    carol, _ = relay.user("carol-rad")
    mallory, _ = relay.user("mallory")
    junk = _upload(mallory, ["bob-lab", "carol-rad"])
    real = _upload(alice, ["bob-lab"])
    # block on a lab's behalf
    assert "bob-lab now blocks mallory" in run_cli(
        relay, "account", "block", "mallory", "--for", "bob-lab").output
    assert "already" in run_cli(relay, "account", "block", "mallory", "--for", "bob-lab").output
    listed = [json.loads(x) for x in
              run_cli(relay, "account", "blocks", "bob-lab", "--json").output.splitlines()]
    assert [x["handle"] for x in listed] == ["mallory"]
    assert [t["id"] for t in bob.inbox()] == [real]
    assert [t["handle"] for t in bob.blocks()] == ["mallory"]
    assert [t["id"] for t in carol.inbox()] == [junk]
    bad = run_cli(relay, "account", "block", "nobody", "--for", "bob-lab", ok=False)
    assert bad.exit_code != 0
    run_cli(relay, "account", "unblock", "mallory", "--for", "bob-lab")
    assert run_cli(relay, "account", "unblock", "mallory", "--for", "bob-lab",
                   ok=False).exit_code != 0
    assert sorted(t["id"] for t in bob.inbox()) == sorted([junk, real])
    # disabling an account takes its transfers out of every inbox
    run_cli(relay, "account", "disable", "mallory")
    assert [t["id"] for t in bob.inbox()] == [real]
    assert carol.inbox() == []
    with pytest.raises(RelayNotFound):
        carol.download(junk, io.BytesIO())
    with pytest.raises(RelayError):
        mallory.create_transfer(["bob-lab"], 10)
    run_cli(relay, "account", "enable", "mallory")
    assert [t["id"] for t in carol.inbox()] == [junk]


def test_the_clients_walk_is_bounded(relay: RunningRelay) -> None:
    """A flood (or a hostile relay) cannot keep a client walking for ever."""
    relay.user("mallory")
    _, b = relay.user("bob-lab")
    _flood(relay, "mallory", "bob-lab", 250)
    got = relay.client(b).inbox(max_items=150)
    assert len(got) == 150 and len({t["id"] for t in got}) == 150
