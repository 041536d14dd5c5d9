"""The relay's HTTP API end to end: a real relay on loopback, driven over HTTP."""

from __future__ import annotations

import hashlib
import io
import json
import os

import pytest

from sealdrop.client.relay_api import (
    RelayAuthError,
    RelayConflict,
    RelayError,
    RelayNotFound,
    RelayRateLimited,
)
from sealdrop.crypto.bundle import KeyBundle
from sealdrop.server import ops
from sealdrop.server.accounts import invite_hash

from .relaykit import RunningRelay, blob_digest, make_identity, sign_headers, upload_blob

MiB = 1024 * 1024


def _upload(relay: RunningRelay, sender, to: list[str], blob: bytes, **kw) -> str:  # type: ignore[no-untyped-def]
    t = sender.create_transfer(to, len(blob), **kw)
    upload_blob(sender, t["id"], blob, chunk_size=256 * 1024)
    sender.complete(t["id"])
    return t["id"]


def _error(data: bytes) -> dict[str, str]:
    obj = json.loads(data)
    assert set(obj) >= {"error", "code"}, obj
    return obj


# -- accounts ----------------------------------------------------------------


def test_register_and_lookup_bundle(relay: RunningRelay) -> None:
    alice, a = relay.user("alice")
    bob, _ = relay.user("bob-lab")
    got = bob.get_bundle("alice")
    assert got == a.bundle
    status, _, data = relay.raw("GET", "/v1/accounts/alice/bundle")
    assert status == 401 and _error(data)["code"] == "auth_required"
    with pytest.raises(RelayNotFound):
        bob.get_bundle("nobody")


def test_register_refuses_bad_invites(relay: RunningRelay) -> None:
    ident = make_identity("clinic")
    c = relay.client(ident)
    with pytest.raises(RelayAuthError) as e:
        c.register("x" * 24, ident.bundle)
    assert e.value.code == "invalid_invite"
    code = relay.invite()
    c.register(code, ident.bundle)
    other = make_identity("clinic2")
    with pytest.raises(RelayAuthError) as e:
        relay.client(other).register(code, other.bundle)  # already used
    assert e.value.code == "invalid_invite"
    assert [r["handle"] for r in relay.rows()["accounts"]] == ["clinic"]


def test_register_with_expired_invite(relay: RunningRelay) -> None:
    code = relay.invite(ttl=60)
    relay.clock.advance(61)
    ident = make_identity("late")
    with pytest.raises(RelayAuthError) as e:
        relay.client(ident).register(code, ident.bundle)
    assert e.value.code == "invalid_invite"


def test_register_needs_matching_handle_and_own_key(relay: RunningRelay) -> None:
    ident = make_identity("clinic")
    body = {"handle": "other", "invite": relay.invite(), "bundle": ident.bundle.to_json()}
    raw = json.dumps(body).encode()
    st, _, data = relay.raw("POST", "/v1/accounts", body=raw,
                            headers={"Content-Type": "application/json"},
                            sign=make_identity("other"))
    assert st == 400 and _error(data)["code"] == "bundle_handle_mismatch"
    # The bundle is genuine but the request is signed by someone else's key.
    body["handle"] = "clinic"
    raw = json.dumps(body).encode()
    thief = make_identity("clinic")
    st, _, data = relay.raw("POST", "/v1/accounts", body=raw,
                            headers={"Content-Type": "application/json"}, sign=thief)
    assert st == 401 and _error(data)["code"] == "invalid_signature"
    assert relay.rows()["accounts"] == []
    assert relay.rows()["invites"][0]["used_by"] is None


def test_register_refuses_tampered_bundle(relay: RunningRelay) -> None:
    ident = make_identity("clinic")
    bad = ident.bundle.to_json()
    bad["x25519"] = str(make_identity("evil").x25519.recipient())
    body = json.dumps({"handle": "clinic", "invite": relay.invite(), "bundle": bad}).encode()
    st, _, data = relay.raw("POST", "/v1/accounts", body=body,
                            headers={"Content-Type": "application/json"}, sign=ident)
    assert st == 400 and _error(data)["code"] == "bad_bundle"


def test_register_taken_handle(relay: RunningRelay) -> None:
    relay.user("alice")
    again = make_identity("alice")
    with pytest.raises(RelayConflict) as e:
        relay.client(again).register(relay.invite(), again.bundle)
    assert e.value.code == "handle_taken"


def test_key_rotation(relay: RunningRelay) -> None:
    alice, a = relay.user("alice")
    bob, b = relay.user("bob-lab")
    newer = KeyBundle.create(handle="alice", signing_key=a.signing_key, x25519=a.bundle.x25519,
                             pq="age1pq1" + "z" * 60, created=a.bundle.created + 10)
    alice.rotate_bundle(newer)
    assert bob.get_bundle("alice") == newer
    with pytest.raises(RelayConflict) as e:  # not later than the current one
        alice.rotate_bundle(a.bundle)
    assert e.value.code == "stale_bundle"
    stranger = make_identity("alice", created=a.bundle.created + 100)
    with pytest.raises(RelayConflict) as e:  # different signing key
        alice.rotate_bundle(stranger.bundle)
    assert e.value.code == "signing_key_mismatch"
    st, _, data = relay.raw(
        "PUT", "/v1/accounts/alice/bundle", headers={"Content-Type": "application/json"},
        body=json.dumps({"bundle": b.bundle.to_json()}).encode(), sign=b)
    assert st == 403 and _error(data)["code"] == "not_your_account"
    assert bob.get_bundle("alice") == newer


# -- signed requests -----------------------------------------------------------


def test_replayed_request_is_refused(relay: RunningRelay) -> None:
    alice, a = relay.user("alice")
    relay.user("bob-lab")
    body = json.dumps({"recipients": ["bob-lab"], "size": 100}).encode()
    headers = {"Content-Type": "application/json"}
    headers.update(sign_headers(a.signing_key, "alice", "POST", "/v1/transfers",
                                hashlib.sha256(body).hexdigest(), now=relay.clock()))
    st, _, _ = relay.raw("POST", "/v1/transfers", body=body, headers=headers)
    assert st == 201
    st, _, data = relay.raw("POST", "/v1/transfers", body=body, headers=headers)
    assert st == 401 and _error(data)["code"] == "replayed_request"
    assert len(relay.rows()["transfers"]) == 1
    # A GET replayed, too.
    h = sign_headers(a.signing_key, "alice", "GET", "/v1/inbox", hashlib.sha256(b"").hexdigest(),
                     now=relay.clock())
    assert relay.raw("GET", "/v1/inbox", headers=h)[0] == 200
    st, _, data = relay.raw("GET", "/v1/inbox", headers=h)
    assert st == 401 and _error(data)["code"] == "replayed_request"


def test_signature_binds_method_path_and_body(relay: RunningRelay) -> None:
    _, a = relay.user("alice")
    relay.user("bob-lab")
    body = json.dumps({"recipients": ["bob-lab"], "size": 100}).encode()
    # signed for another path
    st, _, data = relay.raw("POST", "/v1/transfers", body=body, sign=a, sign_path="/v1/inbox",
                            headers={"Content-Type": "application/json"})
    assert st == 401 and _error(data)["code"] == "invalid_signature"
    # signed over another body
    st, _, data = relay.raw("POST", "/v1/transfers", body=body, sign=a,
                            body_sha256=hashlib.sha256(b"{}").hexdigest(),
                            headers={"Content-Type": "application/json"})
    assert st == 401 and _error(data)["code"] == "invalid_signature"
    # unknown account: same answer as a bad signature
    st, _, data = relay.raw("GET", "/v1/inbox", sign=make_identity("ghost"))
    assert st == 401 and _error(data)["code"] == "invalid_signature"


@pytest.mark.parametrize("skew", [-301, 301])
def test_stale_timestamp(relay: RunningRelay, skew: int) -> None:
    _, a = relay.user("alice")
    st, _, data = relay.raw("GET", "/v1/inbox", sign=a, now=relay.clock() + skew)
    assert st == 401 and _error(data)["code"] == "stale_timestamp"
    st, _, _ = relay.raw("GET", "/v1/inbox", sign=a, now=relay.clock() + skew // abs(skew) * 250)
    assert st == 200


def test_rate_limit(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory(rate_per_second=0.5, rate_burst=3)
    alice, _ = relay.user("alice")
    for _ in range(2):  # registration itself was not charged to the account
        alice.inbox()
    alice.inbox()
    with pytest.raises(RelayRateLimited) as e:
        alice.inbox()
    assert e.value.status == 429 and e.value.retry_after >= 1


# -- upload ------------------------------------------------------------------


def _partial_size(relay: RunningRelay, tid: str) -> int:
    p = relay.config.blob_dir / "partial" / tid
    return p.stat().st_size if p.exists() else 0


def test_wrong_offset_is_409_and_changes_nothing(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    relay.user("bob-lab")
    blob = os.urandom(300_000)
    t = alice.create_transfer(["bob-lab"], len(blob))
    assert alice.upload_chunk(t["id"], 0, blob[:100_000]) == 100_000
    for off in (50_000, 150_000, 100_001):
        with pytest.raises(RelayConflict) as e:
            alice.upload_chunk(t["id"], off, blob[off:off + 100_000])
        assert e.value.code == "offset_mismatch" and e.value.offset == 100_000
    assert alice.upload_offset(t["id"]) == 100_000
    assert _partial_size(relay, t["id"]) == 100_000


def test_bad_checksum_changes_nothing(relay: RunningRelay) -> None:
    alice, a = relay.user("alice")
    relay.user("bob-lab")
    blob = os.urandom(200_000)
    t = alice.create_transfer(["bob-lab"], len(blob))
    alice.upload_chunk(t["id"], 0, blob[:100_000])
    chunk = blob[100_000:]
    wrong = hashlib.sha256(b"something else").hexdigest()
    path = f"/v1/transfers/{t['id']}/data"
    st, _, data = relay.raw(
        "PATCH", path, body=chunk, sign=a, body_sha256=wrong,
        headers={"Content-Type": "application/octet-stream", "Upload-Offset": "100000",
                 "Sealdrop-Chunk-Sha256": wrong})
    assert st == 400 and _error(data)["code"] == "checksum_mismatch"
    assert alice.upload_offset(t["id"]) == 100_000
    assert _partial_size(relay, t["id"]) == 100_000
    upload_blob(alice, t["id"], blob)
    assert alice.complete(t["id"])["digest"] == blob_digest(blob, [100_000, len(blob)])


def test_resent_chunk_is_idempotent(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    bob, _ = relay.user("bob-lab")
    blob = os.urandom(250_000)
    t = alice.create_transfer(["bob-lab"], len(blob))
    alice.upload_chunk(t["id"], 0, blob[:100_000])
    alice.upload_chunk(t["id"], 100_000, blob[100_000:200_000])
    assert alice.upload_chunk(t["id"], 0, blob[:100_000]) == 200_000  # the same again
    assert alice.upload_chunk(t["id"], 100_000, blob[100_000:200_000]) == 200_000
    with pytest.raises(RelayConflict):  # same offset, different bytes
        alice.upload_chunk(t["id"], 0, os.urandom(100_000))
    alice.upload_chunk(t["id"], 200_000, blob[200_000:])
    alice.complete(t["id"])
    out = io.BytesIO()
    bob.download(t["id"], out)
    assert out.getvalue() == blob


def test_complete_needs_exact_size(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    bob, _ = relay.user("bob-lab")
    blob = os.urandom(1000)
    t = alice.create_transfer(["bob-lab"], len(blob))
    with pytest.raises(RelayError) as e:
        alice.upload_chunk(t["id"], 0, blob + b"x")
    assert e.value.code == "chunk_past_end"
    alice.upload_chunk(t["id"], 0, blob[:999])
    with pytest.raises(RelayConflict) as e:
        alice.complete(t["id"])
    assert e.value.code == "incomplete_upload"
    assert bob.inbox() == []  # not visible before complete
    with pytest.raises(RelayNotFound):
        bob.status(t["id"])
    alice.upload_chunk(t["id"], 999, blob[999:])
    first = alice.complete(t["id"])
    assert alice.complete(t["id"]) == first  # idempotent
    with pytest.raises(RelayConflict) as e:
        alice.upload_chunk(t["id"], 0, blob)
    assert e.value.code == "already_complete"
    assert [x["id"] for x in bob.inbox()] == [t["id"]]


def test_digest_is_that_of_the_chunk_list(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    relay.user("bob-lab")
    blob = os.urandom(500_000)
    t = alice.create_transfer(["bob-lab"], len(blob))
    alice.upload_chunk(t["id"], 0, blob[:200_000])
    alice.upload_chunk(t["id"], 200_000, blob[200_000:])
    assert alice.complete(t["id"])["digest"] == blob_digest(blob, [200_000, len(blob)])


# -- download, inbox, ack, status, delete ------------------------------------------


def test_range_download(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    bob, b = relay.user("bob-lab")
    blob = os.urandom(1_000_003)
    tid = _upload(relay, alice, ["bob-lab"], blob)
    path = f"/v1/transfers/{tid}/data"
    for rng, (lo, hi) in {
        "bytes=0-0": (0, 1),
        "bytes=10-19": (10, 20),
        "bytes=999990-": (999990, len(blob)),
        "bytes=-5": (len(blob) - 5, len(blob)),
        "bytes=5-99999999": (5, len(blob)),
    }.items():
        st, h, data = relay.raw("GET", path, headers={"Range": rng}, sign=b)
        assert st == 206, rng
        assert data == blob[lo:hi]
        assert h["Content-Range"] == f"bytes {lo}-{hi - 1}/{len(blob)}"
    st, h, data = relay.raw("GET", path, headers={"Range": f"bytes={len(blob)}-"}, sign=b)
    assert st == 416 and h["Content-Range"] == f"bytes */{len(blob)}"
    assert _error(data)["code"] == "range_not_satisfiable"
    # resume: the client continues from what it already holds
    out = io.BytesIO(blob[:123_456])
    out.seek(0, 2)
    assert bob.download(tid, out, offset=123_456) == len(blob)
    assert out.getvalue() == blob
    st, h, data = relay.raw("GET", path, sign=b)
    assert st == 200 and data == blob
    ends = [*range(256 * 1024, len(blob), 256 * 1024), len(blob)]
    assert h["Sealdrop-Blob-Digest"] == blob_digest(blob, ends)
    assert h["ETag"] == f'"{blob_digest(blob, ends)}"'


def test_ack_gives_sender_delivery_status(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    bob, _ = relay.user("bob-lab")
    carol, _ = relay.user("carol-rad")
    tid = _upload(relay, alice, ["bob-lab", "carol-rad"], os.urandom(5000))
    bob.download(tid, io.BytesIO())
    bob.ack(tid, "downloaded")
    seen = bob.ack(tid, "verified")
    assert seen["delivery"]["verified_at"] is not None
    assert "recipients" not in seen  # recipients do not see each other's status
    st = {r["handle"]: r for r in alice.status(tid)["recipients"]}
    assert st["bob-lab"]["downloaded_at"] and st["bob-lab"]["verified_at"]
    assert st["carol-rad"]["downloaded_at"] is None
    with pytest.raises(RelayNotFound):  # the sender is not a recipient
        alice.ack(tid, "verified")
    assert [t["id"] for t in alice.sent()] == [tid]
    assert [t["id"] for t in carol.inbox()] == [tid]


def test_strangers_get_404_not_403(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    bob, b = relay.user("bob-lab")
    _, c = relay.user("carol-rad")
    blob = os.urandom(4000)
    done = _upload(relay, alice, ["bob-lab"], blob)
    pending = alice.create_transfer(["bob-lab"], 4000)["id"]
    unknown = "A" * 22
    js = {"Content-Type": "application/json"}
    calls = [
        ("GET", "/v1/transfers/{}", None, {}),
        ("DELETE", "/v1/transfers/{}", None, {}),
        ("HEAD", "/v1/transfers/{}/data", None, {}),
        ("GET", "/v1/transfers/{}/data", None, {}),
        ("POST", "/v1/transfers/{}/complete", b"{}", js),
        ("POST", "/v1/transfers/{}/ack", b'{"status":"downloaded"}', js),
    ]
    for tid in (done, pending, unknown):
        for method, tmpl, body, headers in calls:
            st, _, data = relay.raw(method, tmpl.format(tid), body=body, headers=headers, sign=c)
            assert st == 404, (method, tmpl, tid)
            if method != "HEAD":
                assert _error(data)["code"] == "transfer_not_found"
    sha = hashlib.sha256(b"x").hexdigest()
    for who in (b, c):
        st, _, _ = relay.raw("PATCH", f"/v1/transfers/{pending}/data", body=b"x", sign=who,
                             body_sha256=sha, headers={"Content-Type": "application/octet-stream",
                                                       "Upload-Offset": "0",
                                                       "Sealdrop-Chunk-Sha256": sha})
        assert st == 404
    # the recipient cannot delete or complete, nor see an unfinished upload
    for method, tmpl, body, headers in calls[:3] + calls[4:5]:
        st, _, _ = relay.raw(method, tmpl.format(pending), body=body, headers=headers, sign=b)
        assert st == 404
    st, _, _ = relay.raw("DELETE", f"/v1/transfers/{done}", sign=b)
    assert st == 404
    assert bob.status(done)["id"] == done
    assert carol_inbox_empty(relay, c)


def carol_inbox_empty(relay: RunningRelay, c) -> bool:  # type: ignore[no-untyped-def]
    return relay.client(c).inbox() == []


def test_delete_by_sender(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    bob, _ = relay.user("bob-lab")
    tid = _upload(relay, alice, ["bob-lab"], os.urandom(5000))
    pending = alice.create_transfer(["bob-lab"], 5000)["id"]
    alice.upload_chunk(pending, 0, os.urandom(1000))
    alice.delete(tid)
    alice.delete(pending)
    assert bob.inbox() == []
    with pytest.raises(RelayNotFound):
        bob.download(tid, io.BytesIO())
    rows = relay.rows()
    assert rows["transfers"] == [] and rows["transfer_recipients"] == []
    assert relay.run(relay.relay.blobs.list()) == []


# -- limits, expiry, accounts ---------------------------------------------------


def test_quota_and_max_size(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory(quota_bytes=10_000, max_transfer_bytes=8000)
    alice, _ = relay.user("alice")
    relay.user("bob-lab")
    with pytest.raises(RelayError) as e:
        alice.create_transfer(["bob-lab"], 8001)
    assert e.value.status == 413 and e.value.code == "transfer_too_large"
    first = alice.create_transfer(["bob-lab"], 6000)["id"]
    with pytest.raises(RelayError) as e:
        alice.create_transfer(["bob-lab"], 6000)
    assert e.value.status == 413 and e.value.code == "quota_exceeded"
    assert len(relay.rows()["transfers"]) == 1
    alice.delete(first)
    alice.create_transfer(["bob-lab"], 6000)


def test_chunk_size_limit(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory(max_chunk_bytes=64 * 1024)
    alice, _ = relay.user("alice")
    relay.user("bob-lab")
    t = alice.create_transfer(["bob-lab"], 200_000)
    with pytest.raises(RelayError) as e:
        alice.upload_chunk(t["id"], 0, os.urandom(64 * 1024 + 1))
    assert e.value.status == 413 and e.value.code == "chunk_too_large"
    assert alice.upload_offset(t["id"]) == 0


def test_expiry_and_gc(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    bob, _ = relay.user("bob-lab")
    short = _upload(relay, alice, ["bob-lab"], os.urandom(3000), expires_in=120)
    long = _upload(relay, alice, ["bob-lab"], os.urandom(3000))
    with pytest.raises(RelayError) as e:
        alice.create_transfer(["bob-lab"], 10, expires_in=relay.config.max_expiry_seconds + 1)
    assert e.value.code == "bad_expiry"
    relay.clock.advance(121)
    assert [t["id"] for t in bob.inbox()] == [long]
    with pytest.raises(RelayNotFound):
        bob.download(short, io.BytesIO())
    with pytest.raises(RelayNotFound):
        alice.status(short)
    report = relay.run(ops.gc(relay.relay.store, relay.relay.blobs, relay.config,
                              now=int(relay.clock())))
    assert report.deleted == [short]
    assert [t["id"] for t in relay.rows()["transfers"]] == [long]
    assert [b.key for b in relay.run(relay.relay.blobs.list())] == [long]
    relay.clock.advance(relay.config.default_expiry_seconds)
    relay.run(ops.gc(relay.relay.store, relay.relay.blobs, relay.config, now=int(relay.clock())))
    assert relay.rows()["transfers"] == []


def test_gc_removes_abandoned_uploads(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    relay.user("bob-lab")
    t = alice.create_transfer(["bob-lab"], 10_000)["id"]
    alice.upload_chunk(t, 0, os.urandom(5000))
    relay.clock.advance(relay.config.abandoned_upload_seconds + 1)
    report = relay.run(ops.gc(relay.relay.store, relay.relay.blobs, relay.config,
                              now=int(relay.clock())))
    assert report.deleted == [t]
    assert relay.rows()["transfers"] == [] and relay.run(relay.relay.blobs.list()) == []


def test_revoked_invite(relay: RunningRelay) -> None:
    code = relay.invite()
    assert relay.run(relay.relay.store.revoke_invite(invite_hash(code))) == 1
    ident = make_identity("clinic")
    with pytest.raises(RelayAuthError) as e:
        relay.client(ident).register(code, ident.bundle)
    assert e.value.code == "invalid_invite"


def test_disabled_account(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    bob, _ = relay.user("bob-lab")
    relay.run(relay.relay.store.set_disabled("bob-lab", True))
    with pytest.raises(RelayAuthError) as e:
        bob.inbox()
    assert e.value.status == 403 and e.value.code == "account_disabled"
    with pytest.raises(RelayError) as e:
        alice.create_transfer(["bob-lab"], 100)
    assert e.value.code == "unknown_recipient"
    with pytest.raises(RelayNotFound):
        alice.get_bundle("bob-lab")
    relay.run(relay.relay.store.set_disabled("bob-lab", False))
    assert bob.inbox() == []


# -- service endpoints -------------------------------------------------------


def test_health_ready_metrics(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    relay.user("bob-lab")
    _upload(relay, alice, ["bob-lab"], os.urandom(7000))
    assert relay.raw("GET", "/healthz")[0] == 200
    st, _, data = relay.raw("GET", "/readyz")
    assert st == 200 and json.loads(data)["status"] == "ready"
    st, h, data = relay.raw("GET", "/metrics")
    text = data.decode()
    assert st == 200 and h["Content-Type"].startswith("text/plain")
    assert "sealdrop_upload_bytes_total 7000.0" in text
    assert 'sealdrop_transfers{state="complete"} 1.0' in text
    assert "sealdrop_http_request_duration_seconds_bucket" in text
    for line in text.splitlines():
        if not line.startswith("#"):
            assert line.startswith("sealdrop_"), line
    assert "alice" not in text and "bob-lab" not in text
