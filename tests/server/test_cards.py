"""Case cards on the relay (docs/protocol.md, "Case cards"): only the sender stores
one, only while uploading, bounded in size, opaque, and served inline in the
recipients' inbox only; deleted with the transfer.

A real relay over HTTP, on SQLite and on PostgreSQL (the ``relay`` fixture)."""

from __future__ import annotations

import base64
import json
import os

import pytest

from sealdrop.client.relay_api import RelayConflict, RelayError, RelayNotFound
from sealdrop.crypto.protocol import MAX_CARD_BYTES, ErrorCode

from .relaykit import RunningRelay, upload_blob


def _card_of(relay: RunningRelay, who: str, tid: str) -> object:
    """The ``card`` field of ``tid`` in ``who``'s inbox (KeyError if not listed)."""
    st, _, data = relay.raw("GET", "/v1/inbox", sign=relay.identities[who])
    assert st == 200
    return {t["id"]: t for t in json.loads(data)["transfers"]}[tid]["card"]


def test_only_the_sender_stores_a_card_and_only_recipients_see_it(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    bob, _ = relay.user("bob-lab")
    carol, _ = relay.user("carol")
    blob = os.urandom(300)
    t = alice.create_transfer(["bob-lab"], len(blob))
    tid = str(t["id"])
    card = os.urandom(5000)
    # a recipient or a stranger cannot store a card on it: as if it did not exist
    for other in (bob, carol):
        with pytest.raises(RelayNotFound):
            other.put_card(tid, b"forged")
    assert alice.put_card(tid, b"first") is True
    assert alice.put_card(tid, card) is True  # replaced while uploading
    upload_blob(alice, tid, blob)
    alice.complete(tid)
    # once complete, the card is fixed
    with pytest.raises(RelayConflict) as exc:
        alice.put_card(tid, b"late")
    assert exc.value.code == ErrorCode.ALREADY_COMPLETE
    # the recipient gets the very bytes, inline in the inbox; the stranger nothing
    assert base64.b64decode(str(_card_of(relay, "bob-lab", tid))) == card
    st, _, data = relay.raw("GET", "/v1/inbox", sign=relay.identities["carol"])
    assert st == 200 and json.loads(data)["transfers"] == []
    # the sender's view of the transfer does not carry it (nor a stranger's: 404)
    assert "card" not in alice.status(tid)
    with pytest.raises(RelayNotFound):
        carol.status(tid)
    # a transfer without a card says so: null
    t2 = alice.create_transfer(["bob-lab"], len(blob))
    upload_blob(alice, str(t2["id"]), blob)
    alice.complete(str(t2["id"]))
    assert _card_of(relay, "bob-lab", str(t2["id"])) is None
    # deleting the transfer deletes the card row
    alice.delete(tid)
    assert all(r["transfer_id"] != tid for r in relay.rows()["transfer_cards"])


def test_card_size_and_shape_are_bounded(relay: RunningRelay) -> None:
    alice, a = relay.user("alice")
    relay.user("bob-lab")
    tid = str(alice.create_transfer(["bob-lab"], 100)["id"])
    alice.put_card(tid, os.urandom(MAX_CARD_BYTES))  # at the bound: fine
    with pytest.raises(RelayError) as big:
        alice.put_card(tid, os.urandom(MAX_CARD_BYTES + 1))
    assert big.value.status == 413 and big.value.code == ErrorCode.CARD_TOO_LARGE
    for body in ({"card": "not base64!"}, {"card": ""}, {"card": 5}, {"card": "AA==", "x": 1},
                 {}):
        raw = json.dumps(body).encode()
        st, _, data = relay.raw("PUT", f"/v1/transfers/{tid}/card", body=raw, sign=a,
                                headers={"Content-Type": "application/json"})
        assert st == 400 and json.loads(data)["code"] == ErrorCode.BAD_CARD, body
    # unsigned: refused before anything is looked at
    st, _, _ = relay.raw("PUT", f"/v1/transfers/{tid}/card", body=b'{"card":"AA=="}',
                         headers={"Content-Type": "application/json"})
    assert st == 401
    # an unknown id: 404, exactly as for another's transfer
    with pytest.raises(RelayNotFound):
        alice.put_card("0" * 32, b"x")
