"""Every malformed request gets a 4xx with a JSON {"error", "code"} body naming
what was wrong, and none of them reaches the 500 handler."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from .relaykit import Identity, RunningRelay, make_identity, sign_headers

JS = {"Content-Type": "application/json"}
OCT = {"Content-Type": "application/octet-stream"}


@dataclass
class Ctx:
    relay: RunningRelay
    alice: Identity
    bob: Identity
    pending: str  # alice → bob, 1000 of 4000 bytes uploaded
    done: str  # alice → bob, complete


@pytest.fixture
def ctx(relay_factory) -> Iterator[Ctx]:  # type: ignore[no-untyped-def]
    relay = relay_factory(max_json_bytes=4096, max_chunk_bytes=100_000, max_recipients=3)
    alice_c, alice = relay.user("alice")
    _, bob = relay.user("bob-lab")
    pending = alice_c.create_transfer(["bob-lab"], 4000)["id"]
    alice_c.upload_chunk(pending, 0, os.urandom(1000))
    done = alice_c.create_transfer(["bob-lab"], 10)["id"]
    alice_c.upload_chunk(done, 0, os.urandom(10))
    alice_c.complete(done)
    yield Ctx(relay, alice, bob, pending, done)
    # None of the bad requests may have reached the 500 handler.
    assert relay.relay.metrics.value("sealdrop_internal_errors_total") == 0
    statuses = {
        dict(labels)["status"]
        for labels, count in relay.relay.metrics.samples("sealdrop_http_requests_total").items()
        if count > 0
    }
    assert not any(s.startswith("5") for s in statuses), statuses


def _check(status: int, data: bytes, want_status: int, want_code: str) -> None:
    assert status == want_status, (status, data)
    obj = json.loads(data)
    assert isinstance(obj, dict) and obj["code"] == want_code, obj
    assert isinstance(obj["error"], str) and obj["error"]


# -- authentication headers -----------------------------------------------------------


def _signed(c: Ctx, method: str, path: str, body: bytes = b"") -> dict[str, str]:
    return sign_headers(c.alice.signing_key, "alice", method, path,
                        hashlib.sha256(body).hexdigest(), now=c.relay.clock())


@pytest.mark.parametrize(
    "mutate, code",
    [
        (lambda h: {}, "auth_required"),
        (lambda h: {"Sealdrop-Handle": h["Sealdrop-Handle"]}, "bad_auth_header"),
        (lambda h: {**h, "Sealdrop-Handle": "Al!ce"}, "bad_auth_header"),
        (lambda h: {**h, "Sealdrop-Handle": "a" * 65}, "bad_auth_header"),
        (lambda h: {**h, "Sealdrop-Timestamp": "12.5"}, "bad_auth_header"),
        (lambda h: {**h, "Sealdrop-Timestamp": "-100"}, "bad_auth_header"),
        (lambda h: {**h, "Sealdrop-Timestamp": "9" * 40}, "bad_auth_header"),
        (lambda h: {**h, "Sealdrop-Nonce": "short"}, "bad_auth_header"),
        (lambda h: {**h, "Sealdrop-Nonce": h["Sealdrop-Nonce"][:-1] + "!"}, "bad_auth_header"),
        (lambda h: {**h, "Sealdrop-Signature": "x"}, "bad_auth_header"),
        (lambda h: {**h, "Sealdrop-Signature": h["Sealdrop-Signature"] + "=="},
         "bad_auth_header"),
        (lambda h: {**h, "Sealdrop-Signature": base64.urlsafe_b64encode(bytes(64)).decode()
                    .rstrip("=")}, "invalid_signature"),
        (lambda h: {**h, "Sealdrop-Handle": "bob-lab"}, "invalid_signature"),
        (lambda h: {**h, "Sealdrop-Timestamp": "0"}, "stale_timestamp"),
    ],
    ids=["none", "partial", "bad-handle", "long-handle", "ts-float", "ts-negative", "ts-huge",
         "nonce-short", "nonce-char", "sig-short", "sig-padded", "sig-zero", "sig-other-acct",
         "ts-zero"],
)
def test_bad_auth_headers(ctx: Ctx, mutate: Any, code: str) -> None:
    headers = mutate(_signed(ctx, "GET", "/v1/inbox"))
    st, _, data = ctx.relay.raw("GET", "/v1/inbox", headers=headers)
    _check(st, data, 401, code)


def _raw_socket(c: Ctx, head: str, body: bytes = b"") -> tuple[int, bytes]:
    with socket.create_connection((c.relay.host, c.relay.port), timeout=10) as s:
        s.sendall(head.encode("utf-8") + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head_part, _, rest = data.partition(b"\r\n\r\n")
    return int(head_part.split()[1]), rest


def test_duplicate_auth_header(ctx: Ctx) -> None:
    h = _signed(ctx, "GET", "/v1/inbox")
    lines = "".join(f"{k}: {v}\r\n" for k, v in h.items())
    extra = f"Sealdrop-Nonce: {h['Sealdrop-Nonce']}\r\n"
    st, body = _raw_socket(ctx, f"GET /v1/inbox HTTP/1.1\r\nHost: x\r\n{lines}{extra}"
                                "Connection: close\r\n\r\n")
    _check(st, body, 401, "bad_auth_header")


def test_non_ascii_handle_header(ctx: Ctx) -> None:
    h = _signed(ctx, "GET", "/v1/inbox")
    h["Sealdrop-Handle"] = "al\u00efce"
    lines = "".join(f"{k}: {v}\r\n" for k, v in h.items())
    st, body = _raw_socket(ctx, f"GET /v1/inbox HTTP/1.1\r\nHost: x\r\n{lines}"
                                "Connection: close\r\n\r\n")
    _check(st, body, 401, "bad_auth_header")


# -- JSON bodies ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, status, code",
    [
        (b"not json", 400, "bad_json"),
        (b"\xff\xfe{}", 400, "bad_json"),
        (b"[1, 2]", 400, "bad_json"),
        (b'"text"', 400, "bad_json"),
        (b"[" * 2000 + b"]" * 2000, 400, "bad_json"),
        (b"{}", 400, "bad_json"),
        (b'{"recipients": [], "size": 10}', 400, "bad_json"),
        (b'{"recipients": "bob-lab", "size": 10}', 400, "bad_json"),
        (b'{"recipients": ["Bob"], "size": 10}', 400, "bad_handle"),
        (b'{"recipients": [7], "size": 10}', 400, "bad_handle"),
        (b'{"recipients": ["bob-lab", "bob-lab"], "size": 10}', 400, "duplicate_recipient"),
        (b'{"recipients": ["a1a", "b2b", "c3c", "d4d"], "size": 10}', 400, "too_many_recipients"),
        (b'{"recipients": ["nobody"], "size": 10}', 400, "unknown_recipient"),
        (b'{"recipients": ["bob-lab"]}', 400, "bad_json"),
        (b'{"recipients": ["bob-lab"], "size": "10"}', 400, "bad_json"),
        (b'{"recipients": ["bob-lab"], "size": true}', 400, "bad_json"),
        (b'{"recipients": ["bob-lab"], "size": 1.5}', 400, "bad_json"),
        (b'{"recipients": ["bob-lab"], "size": 0}', 400, "bad_size"),
        (b'{"recipients": ["bob-lab"], "size": -5}', 400, "bad_size"),
        (b'{"recipients": ["bob-lab"], "size": 99999999999999999999999}', 413,
         "transfer_too_large"),
        (b'{"recipients": ["bob-lab"], "size": 10, "expires_in": 5}', 400, "bad_expiry"),
        (b'{"recipients": ["bob-lab"], "size": 10, "expires_in": "1d"}', 400, "bad_json"),
        (b'{"recipients": ["bob-lab"], "size": 10, "name": "scan.dcm"}', 400, "bad_json"),
        (b'{"recipients": ["bob-lab"], "size": 10, "pad": "' + b"x" * 5000 + b'"}', 413,
         "body_too_large"),
    ],
)
def test_bad_create_bodies(ctx: Ctx, body: bytes, status: int, code: str) -> None:
    st, _, data = ctx.relay.raw("POST", "/v1/transfers", body=body, headers=JS, sign=ctx.alice)
    _check(st, data, status, code)
    assert len(ctx.relay.rows()["transfers"]) == 2


def test_wrong_content_type(ctx: Ctx) -> None:
    body = b'{"recipients": ["bob-lab"], "size": 10}'
    st, _, data = ctx.relay.raw("POST", "/v1/transfers", body=body,
                                headers={"Content-Type": "text/plain"}, sign=ctx.alice)
    _check(st, data, 400, "bad_content_type")


@pytest.mark.parametrize(
    "body, code",
    [
        ({}, "bad_json"),
        ({"handle": "clinic", "invite": "x" * 24}, "bad_json"),
        ({"handle": "Clinic", "invite": "x" * 24, "bundle": {}}, "bad_handle"),
        ({"handle": "clinic", "invite": "bad code!", "bundle": {}}, "bad_invite"),
        ({"handle": "clinic", "invite": "x" * 24, "bundle": "text"}, "bad_bundle"),
        ({"handle": "clinic", "invite": "x" * 24, "bundle": {"v": 1}}, "bad_bundle"),
        ({"handle": "clinic", "invite": "x" * 24, "bundle": None, "extra": 1}, "bad_json"),
    ],
)
def test_bad_registrations(ctx: Ctx, body: dict[str, Any], code: str) -> None:
    raw = json.dumps(body).encode()
    st, _, data = ctx.relay.raw("POST", "/v1/accounts", body=raw, headers=JS,
                                sign=make_identity("clinic"))
    _check(st, data, 400, code)


def test_registration_handle_header_mismatch(ctx: Ctx) -> None:
    ident = make_identity("clinic")
    raw = json.dumps({"handle": "clinic", "invite": ctx.relay.invite(),
                      "bundle": ident.bundle.to_json()}).encode()
    h = sign_headers(ident.signing_key, "clinik", "POST", "/v1/accounts",
                     hashlib.sha256(raw).hexdigest(), now=ctx.relay.clock())
    st, _, data = ctx.relay.raw("POST", "/v1/accounts", body=raw, headers={**JS, **h})
    _check(st, data, 400, "bad_handle")


@pytest.mark.parametrize(
    "body, code",
    [(b'{"bundle": "x"}', "bad_bundle"), (b"{}", "bad_json"), (b'{"bundle": {}, "x": 1}',
                                                                "bad_json")],
)
def test_bad_rotation(ctx: Ctx, body: bytes, code: str) -> None:
    st, _, data = ctx.relay.raw("PUT", "/v1/accounts/alice/bundle", body=body, headers=JS,
                                sign=ctx.alice)
    _check(st, data, 400, code)


@pytest.mark.parametrize("body", [b'{"status": "opened"}', b"{}", b'{"status": 1}',
                                  b'{"status": "verified", "x": 1}'])
def test_bad_ack(ctx: Ctx, body: bytes) -> None:
    st, _, data = ctx.relay.raw("POST", f"/v1/transfers/{ctx.done}/ack", body=body, headers=JS,
                                sign=ctx.bob)
    _check(st, data, 400, "bad_json")


def test_complete_with_body(ctx: Ctx) -> None:
    st, _, data = ctx.relay.raw("POST", f"/v1/transfers/{ctx.pending}/complete",
                                body=b'{"force": true}', headers=JS, sign=ctx.alice)
    _check(st, data, 400, "bad_json")


def test_body_on_get(ctx: Ctx) -> None:
    st, _, data = ctx.relay.raw("GET", "/v1/inbox", body=b"{}", headers=JS, sign=ctx.alice,
                                body_sha256=hashlib.sha256(b"").hexdigest())
    _check(st, data, 400, "unexpected_body")


# -- chunk uploads -------------------------------------------------------------------


def _patch(c: Ctx, headers: dict[str, str], body: bytes, *, sha: str | None = None,
           tid: str | None = None) -> tuple[int, bytes]:
    sha = sha if sha is not None else hashlib.sha256(body).hexdigest()
    h = {**OCT, "Upload-Offset": "1000", "Sealdrop-Chunk-Sha256": sha, **headers}
    h = {k: v for k, v in h.items() if v is not None}
    st, _, data = c.relay.raw("PATCH", f"/v1/transfers/{tid or c.pending}/data", body=body,
                              headers=h, sign=c.alice, body_sha256=sha)
    return st, data


@pytest.mark.parametrize(
    "headers, status, code",
    [
        ({"Upload-Offset": None}, 400, "missing_header"),
        ({"Upload-Offset": "-1"}, 400, "bad_header"),
        ({"Upload-Offset": "abc"}, 400, "bad_header"),
        ({"Upload-Offset": "1e3"}, 400, "bad_header"),
        ({"Upload-Offset": "1" * 30}, 400, "bad_header"),
        ({"Upload-Offset": "\u0661\u0660\u0660\u0660"}, 400, "bad_header"),
        ({"Upload-Offset": "0"}, 409, "offset_mismatch"),
        ({"Upload-Offset": "2000"}, 409, "offset_mismatch"),
        ({"Content-Type": "text/plain"}, 400, "bad_content_type"),
    ],
)
def test_bad_patch_headers(ctx: Ctx, headers: dict[str, Any], status: int, code: str) -> None:
    if any(ord(ch) > 127 for v in headers.values() if v for ch in v):
        h = {**OCT, "Sealdrop-Chunk-Sha256": hashlib.sha256(b"x" * 10).hexdigest()}
        h.update(_signed_patch(ctx, b"x" * 10))
        lines = "".join(f"{k}: {v}\r\n" for k, v in {**h, **headers}.items())
        st, data = _raw_socket(ctx, f"PATCH /v1/transfers/{ctx.pending}/data HTTP/1.1\r\n"
                                    f"Host: x\r\nContent-Length: 10\r\n{lines}"
                                    "Connection: close\r\n\r\n", b"x" * 10)
    else:
        st, data = _patch(ctx, headers, b"x" * 10)
    _check(st, data, status, code)
    assert ctx.relay.rows()["transfers"][0]["committed"] in (1000, 10)


def _signed_patch(c: Ctx, body: bytes) -> dict[str, str]:
    return sign_headers(c.alice.signing_key, "alice", "PATCH", f"/v1/transfers/{c.pending}/data",
                        hashlib.sha256(body).hexdigest(), now=c.relay.clock())


@pytest.mark.parametrize("sha", ["", "ABC", "A" * 64, "g" * 64, "0" * 63])
def test_bad_checksum_header(ctx: Ctx, sha: str) -> None:
    st, data = _patch(ctx, {}, b"x" * 10, sha=sha)
    _check(st, data, 400, "bad_checksum")


def test_empty_chunk(ctx: Ctx) -> None:
    st, data = _patch(ctx, {}, b"")
    _check(st, data, 400, "bad_length")


def test_chunk_too_large(ctx: Ctx) -> None:
    st, data = _patch(ctx, {}, b"x" * 100_001)
    _check(st, data, 413, "chunk_too_large")


def test_chunked_encoding_needs_length(ctx: Ctx) -> None:
    body = b"x" * 10
    h = {**OCT, **_signed_patch(ctx, body), "Upload-Offset": "1000",
         "Sealdrop-Chunk-Sha256": hashlib.sha256(body).hexdigest()}
    lines = "".join(f"{k}: {v}\r\n" for k, v in h.items())
    st, data = _raw_socket(ctx, f"PATCH /v1/transfers/{ctx.pending}/data HTTP/1.1\r\nHost: x\r\n"
                                f"Transfer-Encoding: chunked\r\n{lines}Connection: close\r\n\r\n",
                           b"a\r\n" + body + b"\r\n0\r\n\r\n")
    _check(st, data, 411, "length_required")


def test_malformed_transfer_ids(ctx: Ctx) -> None:
    for tid in ("..", "%2e%2e", "a" * 200, "abc", "A" * 21 + "!", "%00" * 22):
        st, _, data = ctx.relay.raw("GET", f"/v1/transfers/{tid}", sign=ctx.alice)
        _check(st, data, 404, "transfer_not_found")


# -- downloads -----------------------------------------------------------------------


@pytest.mark.parametrize("rng", ["bytes=a-b", "items=0-1", "bytes=5-1", "bytes=0-1,3-4",
                                 "bytes=-", "bytes 0-1", "bytes=" + "9" * 30 + "-"])
def test_bad_ranges(ctx: Ctx, rng: str) -> None:
    st, _, data = ctx.relay.raw("GET", f"/v1/transfers/{ctx.done}/data", headers={"Range": rng},
                                sign=ctx.bob)
    _check(st, data, 400, "bad_range")


def test_unsatisfiable_ranges(ctx: Ctx) -> None:
    for rng in ("bytes=10-", "bytes=-0"):
        st, _, data = ctx.relay.raw("GET", f"/v1/transfers/{ctx.done}/data",
                                    headers={"Range": rng}, sign=ctx.bob)
        _check(st, data, 416, "range_not_satisfiable")


# -- routing -------------------------------------------------------------------------


def test_unknown_route_and_method(ctx: Ctx) -> None:
    st, _, data = ctx.relay.raw("GET", "/v2/nothing")
    _check(st, data, 404, "not_found")
    st, h, data = ctx.relay.raw("PUT", "/v1/inbox")
    _check(st, data, 405, "method_not_allowed")
    assert "GET" in h["Allow"]


def test_lookup_invalid_handle(ctx: Ctx) -> None:
    for handle in ("A", "x" * 100, "%20"):
        st, _, data = ctx.relay.raw("GET", f"/v1/accounts/{handle}/bundle", sign=ctx.alice)
        _check(st, data, 404, "account_not_found")
