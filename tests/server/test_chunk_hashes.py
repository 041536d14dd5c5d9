"""BLAKE3 as the per-chunk upload hash, beside SHA-256 (crypto.chunkhash): what
the relay accepts, refuses and records, and both directions of compatibility
(an older client that sends SHA-256; a newer client facing an older relay)."""

from __future__ import annotations

import hashlib
import io
import json
import os

import pytest
from aiohttp import web

from sealdrop.client.relay_api import RelayError
from sealdrop.crypto import chunkhash
from sealdrop.crypto.protocol import ErrorCode
from sealdrop.server import handlers
from sealdrop.server.errors import InvalidInput

from .relaykit import RunningRelay, blob_digest, upload_blob


def _error(data: bytes) -> str:
    return str(json.loads(data)["code"])


def _partial_size(relay: RunningRelay, tid: str) -> int:
    p = relay.config.blob_dir / "partial" / tid
    return p.stat().st_size if p.exists() else 0


def _patch(relay: RunningRelay, ident: object, tid: str, offset: int, body: bytes,
           headers: dict[str, str], signed_value: str) -> tuple[int, bytes]:
    st, _, data = relay.raw(
        "PATCH", f"/v1/transfers/{tid}/data", body=body, sign=ident,  # type: ignore[arg-type]
        body_sha256=signed_value,
        headers={"Content-Type": "application/octet-stream", "Upload-Offset": str(offset),
                 **headers})
    return st, data


def test_the_relay_offers_blake3_first(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    assert alice.upload_terms() == (relay.config.max_chunk_bytes, chunkhash.BLAKE3)


def test_a_blake3_upload_is_recorded_tagged_and_downloads_intact(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    bob, _ = relay.user("bob-lab")
    blob = os.urandom(250_000)
    tid = alice.create_transfer(["bob-lab"], len(blob))["id"]
    upload_blob(alice, tid, blob, chunk_size=100_000, algorithm=chunkhash.BLAKE3)
    done = alice.complete(tid)
    ends = [100_000, 200_000, len(blob)]
    assert done["digest"] == blob_digest(blob, ends, chunkhash.BLAKE3)
    assert done["digest"] != blob_digest(blob, ends, chunkhash.SHA256)
    rows = relay.rows()["transfer_chunks"]
    assert [r["sha256"] for r in rows] == [
        "blake3:" + chunkhash.hex_digest(chunkhash.BLAKE3, blob[s:e])
        for s, e in zip([0, *ends], ends, strict=False)]
    out = io.BytesIO()
    bob.download(tid, out)
    assert out.getvalue() == blob


def test_a_tampered_blake3_chunk_is_refused_and_changes_nothing(relay: RunningRelay) -> None:
    alice, a = relay.user("alice")
    relay.user("bob-lab")
    blob = os.urandom(200_000)
    tid = alice.create_transfer(["bob-lab"], len(blob))["id"]
    alice.upload_chunk(tid, 0, blob[:100_000], algorithm=chunkhash.BLAKE3)
    chunk = bytearray(blob[100_000:])
    good = chunkhash.hex_digest(chunkhash.BLAKE3, chunk)
    chunk[500] ^= 1  # one bit flipped in transit: signature and header are the sender's
    st, data = _patch(relay, a, tid, 100_000, bytes(chunk), {"Sealdrop-Chunk-Blake3": good},
                      "blake3:" + good)
    assert st == 400 and _error(data) == "checksum_mismatch"
    assert alice.upload_offset(tid) == 100_000
    assert _partial_size(relay, tid) == 100_000
    # the SHA-256 of the tampered bytes under the BLAKE3 header does not pass either
    sha = hashlib.sha256(bytes(chunk)).hexdigest()
    st, data = _patch(relay, a, tid, 100_000, bytes(chunk), {"Sealdrop-Chunk-Blake3": sha},
                      "blake3:" + sha)
    assert st == 400 and _error(data) == "checksum_mismatch"
    assert len(relay.rows()["transfer_chunks"]) == 1
    alice.upload_chunk(tid, 100_000, blob[100_000:], algorithm=chunkhash.BLAKE3)
    assert alice.complete(tid)["digest"] == blob_digest(blob, [100_000, len(blob)],
                                                        chunkhash.BLAKE3)


@pytest.mark.parametrize("value", [
    "", "ABC", "A" * 64, "g" * 64, "0" * 63, "0" * 65, "0" * 128, "blake3:" + "0" * 64,
])
def test_a_malformed_blake3_header_is_bad_checksum(relay: RunningRelay, value: str) -> None:
    alice, a = relay.user("alice")
    relay.user("bob-lab")
    tid = alice.create_transfer(["bob-lab"], 10)["id"]
    st, data = _patch(relay, a, tid, 0, b"x" * 10, {"Sealdrop-Chunk-Blake3": value},
                      "blake3:" + value)
    assert st == 400 and _error(data) == "bad_checksum"
    assert alice.upload_offset(tid) == 0


def test_both_hash_headers_or_neither_is_bad_checksum(relay: RunningRelay) -> None:
    alice, a = relay.user("alice")
    relay.user("bob-lab")
    tid = alice.create_transfer(["bob-lab"], 10)["id"]
    body = b"x" * 10
    b3 = chunkhash.hex_digest(chunkhash.BLAKE3, body)
    sha = hashlib.sha256(body).hexdigest()
    for headers in ({"Sealdrop-Chunk-Blake3": b3, "Sealdrop-Chunk-Sha256": sha}, {}):
        st, data = _patch(relay, a, tid, 0, body, headers, sha)
        assert st == 400 and _error(data) == "bad_checksum"
    assert alice.upload_offset(tid) == 0


def test_the_signature_covers_the_algorithm(relay: RunningRelay) -> None:
    """A signature over the bare hex (what a SHA-256 chunk signs) does not pass
    for a BLAKE3 header with the same hex: no value can change algorithm."""
    alice, a = relay.user("alice")
    relay.user("bob-lab")
    body = b"y" * 10
    tid = alice.create_transfer(["bob-lab"], len(body))["id"]
    b3 = chunkhash.hex_digest(chunkhash.BLAKE3, body)
    st, data = _patch(relay, a, tid, 0, body, {"Sealdrop-Chunk-Blake3": b3}, b3)
    assert st == 401 and _error(data) == "invalid_signature"
    st, data = _patch(relay, a, tid, 0, body, {"Sealdrop-Chunk-Blake3": b3}, "blake3:" + b3)
    assert st == 204
    assert alice.upload_offset(tid) == len(body)


def test_an_older_client_sending_sha256_still_works(relay: RunningRelay) -> None:
    """What a client from before BLAKE3 sends: only Sealdrop-Chunk-Sha256, signed
    over the bare hex; recorded as bare hex, digest as it always was."""
    alice, a = relay.user("alice")
    bob, _ = relay.user("bob-lab")
    blob = os.urandom(150_000)
    tid = alice.create_transfer(["bob-lab"], len(blob))["id"]
    for off in (0, 100_000):
        part = blob[off:off + 100_000]
        sha = hashlib.sha256(part).hexdigest()
        st, _ = _patch(relay, a, tid, off, part, {"Sealdrop-Chunk-Sha256": sha}, sha)
        assert st == 204
    assert [r["sha256"] for r in relay.rows()["transfer_chunks"]] == [
        hashlib.sha256(blob[:100_000]).hexdigest(), hashlib.sha256(blob[100_000:]).hexdigest()]
    assert alice.complete(tid)["digest"] == blob_digest(blob, [100_000, len(blob)])
    out = io.BytesIO()
    bob.download(tid, out)
    assert out.getvalue() == blob


def test_a_resent_chunk_in_the_other_hash_is_compared_by_content(relay: RunningRelay) -> None:
    """A chunk recorded under SHA-256 and sent again under BLAKE3 (or the other
    way round) is checked against the blob's bytes, not the record's hex."""
    alice, _ = relay.user("alice")
    relay.user("bob-lab")
    blob = os.urandom(300_000)
    tid = alice.create_transfer(["bob-lab"], len(blob))["id"]
    alice.upload_chunk(tid, 0, blob[:100_000], algorithm=chunkhash.SHA256)
    alice.upload_chunk(tid, 100_000, blob[100_000:200_000], algorithm=chunkhash.BLAKE3)
    assert alice.upload_chunk(tid, 0, blob[:100_000], algorithm=chunkhash.BLAKE3) == 200_000
    assert alice.upload_chunk(tid, 100_000, blob[100_000:200_000],
                              algorithm=chunkhash.SHA256) == 200_000
    with pytest.raises(RelayError) as e:
        alice.upload_chunk(tid, 0, os.urandom(100_000), algorithm=chunkhash.BLAKE3)
    assert e.value.code == "offset_mismatch"


async def _old_info(request: web.Request) -> web.Response:
    return web.json_response({"max_chunk_bytes": 16 * 1024 * 1024})


def _old_chunk_digest(request: web.Request) -> str:
    sha = request.headers.get("Sealdrop-Chunk-Sha256", "")
    if not chunkhash.HEX_RE.fullmatch(sha):
        raise InvalidInput("header Sealdrop-Chunk-Sha256 must be 64 lowercase hex digits",
                            code=ErrorCode.BAD_CHECKSUM)
    return sha


def test_a_newer_client_falls_back_to_sha256_with_an_older_relay(
    relay_factory: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relay from before BLAKE3: /v1/info without chunk_hashes, and only the
    SHA-256 header taken. The client learns SHA-256 and its upload completes."""
    monkeypatch.setattr(handlers, "info", _old_info)
    monkeypatch.setattr(handlers, "chunk_digest", _old_chunk_digest)
    relay: RunningRelay = relay_factory()  # type: ignore[operator]
    alice, _ = relay.user("alice")
    relay.user("bob-lab")
    limit, algorithm = alice.upload_terms()
    assert (limit, algorithm) == (16 * 1024 * 1024, chunkhash.SHA256)
    blob = os.urandom(120_000)
    tid = alice.create_transfer(["bob-lab"], len(blob))["id"]
    with pytest.raises(RelayError):  # what BLAKE3 would have met
        alice.upload_chunk(tid, 0, blob[:60_000], algorithm=chunkhash.BLAKE3)
    upload_blob(alice, tid, blob, chunk_size=60_000, algorithm=algorithm)
    assert alice.complete(tid)["digest"] == blob_digest(blob, [60_000, len(blob)])


def test_a_client_never_sees_blake3_offered_by_name_only() -> None:
    assert chunkhash.pick(None) == chunkhash.SHA256
    assert chunkhash.pick("blake3") == chunkhash.SHA256  # not a list: nonsense
    assert chunkhash.pick(["md5"]) == chunkhash.SHA256
    assert chunkhash.pick(["sha256"]) == chunkhash.SHA256
    assert chunkhash.pick(["sha256", "blake3"]) == chunkhash.BLAKE3
