from __future__ import annotations

import io
import os

from .relaykit import RunningRelay, upload_blob


def test_send_receive_roundtrip(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    bob, _ = relay.user("bob-lab")
    blob = os.urandom(3 * 1024 * 1024 + 17)
    t = alice.create_transfer(["bob-lab"], len(blob))
    assert bob.inbox() == []
    upload_blob(alice, t["id"], blob, chunk_size=1024 * 1024)
    done = alice.complete(t["id"])
    assert done["state"] == "complete"
    inbox = bob.inbox()
    assert [i["id"] for i in inbox] == [t["id"]]
    out = io.BytesIO()
    assert bob.download(t["id"], out) == len(blob)
    assert out.getvalue() == blob
