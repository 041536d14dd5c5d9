"""The relay's transparency log, as a third party reads it from a real relay
process (tests/e2e/kit.py): everything is checked with the crypto package
alone, against the log key the relay publishes.

* the checkpoint opens with the vkey of ``/v1/info``; a registered key's entry
  is in the entry bundle at its ``log_index`` and proven included from tiles;
* a transfer's entry is the commitment its parties recompute with the salt
  they are given; a signed receipt is logged and handed to the sender, a
  forged one is refused with ``bad_receipt`` and records nothing, and the old
  ack form still works and logs nothing;
* ``sealdrop-relay log verify`` passes, then names the entry after one row of
  ``tlog_entries`` or ``tlog_hashes`` is edited behind the relay's back, and
  the account or transfer whose row no longer matches what was logged;
* past 256 entries: full tiles are immutable, partial ones short-lived, a
  tile beyond the tree is 404, a malformed path 400, and a consistency proof
  from the first checkpoint to the last verifies."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import subprocess
import time
from typing import Any

import sqlalchemy as sa
from nacl.signing import SigningKey

from sealdrop.crypto.tlog.checkpoint import Checkpoint, open_checkpoint
from sealdrop.crypto.tlog.entries import (
    KeyEntry,
    Receipt,
    TransferEntry,
    receipt_entry,
    sign_receipt,
    transfer_commitment,
    verify_receipt,
)
from sealdrop.crypto.tlog.merkle import (
    MemoryHashes,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from sealdrop.crypto.tlog.note import NoteVerifier
from sealdrop.crypto.tlog.tiles import TileHashes, split_entry_bundle
from sealdrop.server import logverify, tlog
from tests.e2e.kit import RELAY, Relay
from tests.server.relaykit import Identity, blob_digest, make_identity, sign_headers

IMMUTABLE = "public, max-age=31536000, immutable"


class Http:
    def __init__(self, relay: Relay) -> None:
        self.port = relay.port

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        return self.request("GET", path)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def call(self, who: Identity, method: str, path: str, obj: Any = None, *,
             raw: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """A request signed by ``who``, as any client makes it."""
        body = raw if raw is not None else (
            b"" if obj is None else json.dumps(obj).encode())
        hdrs = dict(headers or {})
        if obj is not None:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(sign_headers(who.signing_key, who.handle, method, path,
                                 hashlib.sha256(body).hexdigest()))
        st, _, data = self.request(method, path, body if body or obj is not None else None, hdrs)
        return st, json.loads(data) if data else None


def _verify(relay: Relay) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RELAY, "log", "verify", "--data", str(relay.data)], env=relay.env,
                          capture_output=True, text=True, timeout=120)


def _check_in_process(relay: Relay) -> logverify.LogReport:
    engine = sa.create_engine(f"sqlite:///{relay.data / 'relay.db'}")
    try:
        with engine.connect() as conn:
            return logverify.check(logverify.read_rows(conn))
    finally:
        engine.dispose()


def test_a_third_party_verifies_the_relays_log(relay: Relay) -> None:
    web = Http(relay)
    st, _, data = web.get("/v1/info")
    pinned = json.loads(data)["log"]
    origin, verifier = pinned["origin"], NoteVerifier.from_vkey(pinned["vkey"])
    (relay_id,) = relay.sql("select value from relay_meta where key = 'relay_id'")[0]
    assert origin == f"sealdrop.invalid/{relay_id}"

    def checkpoint() -> Checkpoint:
        st, h, note = web.get("/v1/log/checkpoint")
        assert st == 200 and h["Cache-Control"] == "no-store"
        assert h["Content-Type"] == "text/plain; charset=utf-8"
        return open_checkpoint(note.decode(), origin, [verifier])

    def fetch(path: str) -> bytes:
        st, _, body = web.get("/v1/log/" + path)
        assert st == 200, (path, st, body)
        return body

    # -- keys ---------------------------------------------------------------
    people = {h: make_identity(h) for h in ("cabinet-a", "labo-b", "labo-c")}
    index = {}
    for h, ident in people.items():
        st, body = web.call(ident, "POST", "/v1/accounts", {
            "handle": h, "invite": relay.invite(), "bundle": ident.bundle.to_json()})
        assert st == 201, body
        index[h] = body["log_index"]
    assert sorted(index.values()) == [0, 1, 2]
    first = checkpoint()
    assert first.size == 3
    alice, bob, carol = people.values()
    st, served = web.call(alice, "GET", "/v1/accounts/labo-b/bundle")
    assert st == 200 and served["log_index"] == index["labo-b"]
    entries = split_entry_bundle(fetch("tile/entries/000.p/3"))
    assert entries[index["labo-b"]] == KeyEntry.for_bundle(bob.bundle).to_bytes()
    i = index["labo-b"]
    proof = inclusion_proof(i, first.size, TileHashes(first.size, fetch))
    verify_inclusion(i, first.size, leaf_hash(entries[i]), proof, first.root)

    # -- a transfer and its receipts ----------------------------------------
    blob = os.urandom(5000)
    st, body = web.call(alice, "POST", "/v1/transfers",
                        {"recipients": ["labo-b"], "size": len(blob)})
    tid = body["transfer"]["id"]
    sha = hashlib.sha256(blob).hexdigest()
    st, _ = web.call(alice, "PATCH", f"/v1/transfers/{tid}/data", raw=blob, headers={
        "Upload-Offset": "0", "Content-Type": "application/octet-stream",
        "Sealdrop-Chunk-Sha256": sha})
    assert st == 204
    st, body = web.call(alice, "POST", f"/v1/transfers/{tid}/complete", {})
    done = body["transfer"]
    assert done["digest"] == blob_digest(blob, [len(blob)]) and done["receipts"] == []
    salt = base64.b64decode(done["log"]["salt"])
    commitment = transfer_commitment(salt, tid, "cabinet-a", ["labo-b"], done["digest"])
    st, seen = web.call(bob, "GET", f"/v1/transfers/{tid}")
    assert seen["transfer"]["log"] == done["log"] and "receipts" not in seen["transfer"]
    size = checkpoint().size
    assert done["log"]["index"] == size - 1
    entries = split_entry_bundle(fetch(f"tile/entries/000.p/{size}"))
    assert entries[-1] == TransferEntry(commitment).to_bytes()

    def receipt(status: str, key: SigningKey) -> tuple[Receipt, dict[str, Any]]:
        r = Receipt(tid, commitment, "labo-b", status, int(time.time()))  # type: ignore[arg-type]
        return r, {"at": r.at, "sig": base64.b64encode(sign_receipt(r, key)).decode()}

    _, forged = receipt("verified", carol.signing_key)  # not bob's key
    st, body = web.call(bob, "POST", f"/v1/transfers/{tid}/ack",
                        {"status": "verified", "receipt": forged})
    assert (st, body["code"]) == (400, "bad_receipt") and "labo-b" in body["error"]
    st, body = web.call(bob, "POST", f"/v1/transfers/{tid}/ack",
                        {"status": "verified", "receipt": {"at": 1, "sig": "AAAA"}})
    assert (st, body["code"]) == (400, "bad_receipt")
    assert checkpoint().size == size  # nothing logged
    assert relay.sql("select verified_at from transfer_recipients")[0] == (None,)

    good, signed = receipt("downloaded", bob.signing_key)
    st, body = web.call(bob, "POST", f"/v1/transfers/{tid}/ack",
                        {"status": "downloaded", "receipt": signed})
    assert st == 200, body
    st, body = web.call(bob, "POST", f"/v1/transfers/{tid}/ack", {"status": "verified"})
    assert st == 200 and body["transfer"]["delivery"]["verified_at"] is not None
    second = checkpoint()
    assert second.size == size + 1  # the receipt only; the old-form ack logs nothing
    st, body = web.call(alice, "GET", f"/v1/transfers/{tid}")
    (got,) = body["transfer"]["receipts"]
    sig = base64.b64decode(got["sig"])
    assert (got["recipient"], got["status"], got["at"], got["log_index"]) == (
        "labo-b", "downloaded", good.at, size)
    verify_receipt(good, sig, bytes(bob.signing_key.verify_key))
    last = split_entry_bundle(fetch(f"tile/entries/000.p/{second.size}"))[-1]
    assert last == receipt_entry(salt, good, sig).to_bytes()

    # -- log verify ------------------------------------------------------------
    ok = _verify(relay)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: the log's 5 entries"), ok.stdout
    (kept,) = relay.sql("select data from tlog_entries where idx = 1")[0]
    relay.sql("update tlog_entries set data = ? where idx = 1",
              KeyEntry("labo-x", bytes(32)).to_bytes())
    bad = _verify(relay)
    assert bad.returncode == 1 and "entry 1: its data does not hash" in bad.stdout, bad.stdout
    relay.sql("update tlog_entries set data = ? where idx = 1", kept)
    # The same check in this process (a command's start costs seconds).
    (kept,) = relay.sql("select hash from tlog_hashes where level = 1 and idx = 1")[0]
    relay.sql("update tlog_hashes set hash = ? where level = 1 and idx = 1", bytes(32))
    problems = _check_in_process(relay).problems
    assert problems and problems[0].startswith("entries 2-3: the stored hash of level 1")
    relay.sql("update tlog_hashes set hash = ? where level = 1 and idx = 1", kept)
    # A key swapped in the database, a transfer's digest changed: named too.
    (kept,) = relay.sql("select bundle from accounts where handle = 'labo-b'")[0]
    relay.sql("update accounts set bundle = ? where handle = 'labo-b'", carol.bundle.dumps())
    relay.sql("update transfers set digest = ?", "0" * 64)
    assert _check_in_process(relay).problems == [
        f"account labo-b's current bundle is not the one logged at entry {index['labo-b']}: "
        "the bundle it serves was changed outside the relay",
        f"entry 3: transfer {tid} (from cabinet-a) no longer matches the commitment logged "
        "for it: its sender, recipients, digest or salt was changed"]
    relay.sql("update accounts set bundle = ? where handle = 'labo-b'", kept)
    relay.sql("update transfers set digest = ?", done["digest"])
    assert _check_in_process(relay).ok

    # -- past one full tile --------------------------------------------------------
    # 300 more entries through the relay's own append, behind its back (a
    # second writer on its SQLite file): transfer entries of no transfer here.
    engine = sa.create_engine(f"sqlite:///{relay.data / 'relay.db'}",
                              connect_args={"timeout": 30})
    try:
        with engine.begin() as conn:
            for _ in range(300):
                tlog.append(conn, TransferEntry(os.urandom(32)).to_bytes(), now=1)
    finally:
        engine.dispose()
    third = checkpoint()
    n = third.size
    assert n == second.size + 300
    hashes = TileHashes(n, fetch)
    verify_consistency(first.size, n, consistency_proof(first.size, n, hashes),
                       first.root, third.root)
    verify_consistency(second.size, n, consistency_proof(second.size, n, hashes),
                       second.root, third.root)
    st, h, full = web.get("/v1/log/tile/0/000")
    assert st == 200 and h["Cache-Control"] == IMMUTABLE and len(full) == 256 * 32
    assert h["Content-Type"] == "application/octet-stream"
    bundle = split_entry_bundle(fetch("tile/entries/000"))
    assert [leaf_hash(e) for e in bundle] == [full[k:k + 32] for k in range(0, 8192, 32)]
    st, h, part = web.get(f"/v1/log/tile/0/001.p/{n - 256}")
    assert st == 200 and h["Cache-Control"] == "public, max-age=60" and len(part) == (n - 256) * 32
    st, _, top = web.get("/v1/log/tile/1/000.p/1")
    assert st == 200 and top == MemoryHashes([leaf_hash(e) for e in bundle]).root()
    for beyond in ("tile/0/001", f"tile/0/001.p/{n - 255}", "tile/0/002.p/1", "tile/1/000",
                   "tile/entries/001", "tile/2/000.p/1"):
        st, _, body = web.get("/v1/log/" + beyond)
        assert st == 404 and json.loads(body)["code"] == "not_found", beyond
    for malformed in ("tile/0/1", "tile/0/000.p/0", "tile/0/000.p/256", "tile/0/x000/001",
                      "tile/64/000", "tile/0/000.p/01", "tile/entries/-01", "tile/00/000"):
        st, _, body = web.get("/v1/log/" + malformed)
        assert st == 400 and json.loads(body)["code"] == "bad_request", malformed
