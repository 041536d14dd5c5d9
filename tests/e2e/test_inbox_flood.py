"""Inbox flooding (issue 10, class 2) end to end: a real relay process, the real
``sealdrop`` and ``sealdrop-relay`` commands, and an account that sends a lab a
thousand junk transfers over HTTP before a verified practice sends a real case.

The lab's first listing still shows the practice's transfer first; blocking
the flooder (by the lab, or by the operator on its behalf), dismissing a
transfer and disabling the account each take the junk out of the inbox, and
all of it survives a relay restart."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from sealdrop.client.relay_api import RelayAuthError, RelayClient
from sealdrop.crypto.age import X25519Identity
from sealdrop.crypto.bundle import KeyBundle
from tests.e2e.kit import RELAY, Relay, User, make_case, tree

FLOOD = 1000
SPAM = "spam-account"


@pytest.fixture
def relay(tmp_path: Path, relay_template: tuple[Path, list[str]]) -> Iterator[Relay]:
    """The e2e relay with the per-account rate limit lifted, so that the flood
    takes seconds (a flooder spreading the same requests over a minute gets
    through the default limit just the same)."""
    r = Relay(tmp_path / "relay-data", tmp_path / "relay.log", template=relay_template)
    r.env.update(SEALDROP_RELAY_RATE_PER_SECOND="100000", SEALDROP_RELAY_RATE_BURST="100000")
    r.start()
    try:
        yield r
    finally:
        r.close()


def _flooder(relay: Relay) -> RelayClient:
    sk = SigningKey.generate()
    x = X25519Identity.generate(os.urandom)
    bundle = KeyBundle.create(handle=SPAM, signing_key=sk, x25519=str(x.recipient()),
                              pq="age1pq1" + "q" * 60, created=int(time.time()))
    client = RelayClient(f"http://127.0.0.1:{relay.port}", handle=SPAM, signing_key=sk)
    client.register(relay.invite(), bundle)
    return client


def _flood(client: RelayClient, to: str, n: int) -> list[str]:
    """``n`` complete junk transfers over HTTP, from four connections at once."""
    ids: list[str] = []
    lock = threading.Lock()

    def worker(count: int) -> None:
        c = client.clone()
        try:
            for _ in range(count):
                junk = os.urandom(64)
                tid = c.create_transfer([to], len(junk))["id"]
                c.upload_chunk(tid, 0, junk)
                c.complete(tid)
                with lock:
                    ids.append(tid)
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(n // 4,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == n
    return ids


def _operator(relay: Relay, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RELAY, *args, "--data", str(relay.data)], env=relay.env,
                          capture_output=True, text=True, timeout=120, check=True)


def test_a_flood_does_not_hide_a_verified_senders_transfer(
    tmp_path: Path, pair: tuple[User, User]
) -> None:
    practice, lab = pair
    relay = practice.relay
    spam = _flooder(relay)
    junk = _flood(spam, lab.handle, FLOOD)
    case = make_case(tmp_path / "real")
    real = practice.json("send", str(case), "--to", lab.handle)["transfer_id"]

    # The first listing: the practice's transfer first, every junk one after it.
    listed = lab.json("inbox")
    assert listed["truncated"] is False
    first = listed["transfers"][0]
    assert (first["id"], first["sender"], first["sender_state"]) == (
        real, practice.handle, "verified")
    assert {t["id"] for t in listed["transfers"][1:]} == set(junk)
    assert all(t["sender_state"] == "unknown" for t in listed["transfers"][1:])
    text = lab.run("inbox").stdout.splitlines()
    assert text[0].startswith(real) and "cabinet-martin ✓ ·" in text[0] and len(text) == FLOOD + 1

    # The lab blocks the flooder: the junk leaves its inbox, and new junk is refused.
    lab.run("block", SPAM)
    assert [t["id"] for t in lab.json("inbox")["transfers"]] == [real]
    with pytest.raises(RelayAuthError) as refused:
        spam.create_transfer([lab.handle], 10)
    assert refused.value.code == "blocked_by_recipient"
    dest = tmp_path / "incoming"
    dest.mkdir()
    got = lab.json("receive", "--all", "--into", str(dest))
    assert [r["transfer_id"] for r in got["received"]] == [real] and got["failed"] == []
    assert tree(dest / "case") == tree(case)

    # Blocks and dismissals live on the relay: a restart keeps them.
    relay.restart()
    assert [b["handle"] for b in lab.json("block")["blocks"]] == [SPAM]
    assert [(t["id"], t["state"]) for t in lab.json("inbox")["transfers"]] == [(real, "received")]
    lab.run("dismiss", real)
    assert lab.json("inbox")["transfers"] == []
    (recipient, dismissed), = relay.sql(
        "select recipient, dismissed_at from transfer_recipients where transfer_id = ?", real)
    assert recipient == lab.handle and dismissed is not None
    (row,) = practice.json("status", real)["transfers"]
    assert row["recipients"][0]["dismissed"] is True and row["recipients"][0]["verified"]
    relay.restart()
    assert lab.json("inbox")["transfers"] == []

    # Unblocked, the junk is back; the operator blocks on the lab's behalf...
    lab.run("unblock", SPAM)
    assert len(lab.json("inbox")["transfers"]) == FLOOD
    out = _operator(relay, "account", "block", SPAM, "--for", lab.handle).stdout
    assert f"{lab.handle} now blocks {SPAM}" in out
    assert lab.json("inbox")["transfers"] == []
    _operator(relay, "account", "unblock", SPAM, "--for", lab.handle)
    assert len(lab.json("inbox")["transfers"]) == FLOOD
    # ...and disabling the account takes its transfers out of every inbox.
    _operator(relay, "account", "disable", SPAM)
    assert lab.json("inbox")["transfers"] == []
    _operator(relay, "account", "enable", SPAM)
    assert len(lab.json("inbox")["transfers"]) == FLOOD


def test_dismiss_and_block_refuse_bad_arguments(lab: User) -> None:
    r = lab.run("dismiss", "not-an-id", check=False)
    assert r.returncode != 0 and "not a transfer id" in r.stderr
    r = lab.run("block", "Bad Handle!", check=False)
    assert r.returncode != 0 and "is not a handle" in r.stderr
    r = lab.run("block", "nobody-there", check=False)
    assert r.returncode == 1 and "sealdrop: error:" in r.stderr
    r = lab.run("unblock", "nobody-there", check=False)
    assert r.returncode == 1 and "sealdrop: error:" in r.stderr
    assert lab.json("block")["blocks"] == []
    assert "you block no one" in lab.run("block").stdout
