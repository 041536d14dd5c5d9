"""The client's side of the relay's advertised chunk limit (GET /v1/info): an older
relay that does not say, a hostile one that says nonsense, and the size a new send
then uses. The relay's side and a whole send are in tests/server/test_metrics_scrape.py
and tests/e2e/test_chunk_fit.py."""

from __future__ import annotations

import json
import socket

import pytest
from nacl.signing import SigningKey

from sealdrop.client.errors import ClientError
from sealdrop.client.relay_api import RelayClient, RelayProtocolError
from sealdrop.client.send.upload import MIN_CHUNK_SIZE, fit_chunk_size
from tests.client.hostilekit import HostileRelay, hostile_relay, json_head

KEY = SigningKey.generate()


def _answering(status: str, body: bytes) -> object:
    def behave(conn: socket.socket, head: bytes) -> None:
        conn.sendall(json_head(len(body), status) + body)

    return behave


def _limit(relay: HostileRelay) -> int | None:
    with RelayClient(relay.url, handle="cabinet-a", signing_key=KEY, timeout=30) as c:
        return c.max_chunk_bytes()


def test_an_older_relay_without_info_leaves_the_chunk_size_alone() -> None:
    body = json.dumps({"error": "not found", "code": "not_found"}).encode()
    with hostile_relay(_answering("404 Not Found", body)) as relay:  # type: ignore[arg-type]
        assert _limit(relay) is None
        # unsigned: /v1/info is the same for everyone
        assert b"sealdrop-signature" not in relay.heads[0].lower()
    assert fit_chunk_size(12 << 20, None) == 12 << 20


@pytest.mark.parametrize("answer", [
    {"max_chunk_bytes": True}, {"max_chunk_bytes": 0}, {"max_chunk_bytes": -5},
    {"max_chunk_bytes": "65536"}, {"max_chunk_bytes": 1.5e6}, {}, [65536],
])
def test_a_nonsense_limit_is_refused(answer: object) -> None:
    body = json.dumps(answer).encode()
    with hostile_relay(_answering("200 OK", body)) as relay:  # type: ignore[arg-type]
        with pytest.raises(RelayProtocolError, match="largest chunk"):
            _limit(relay)


def test_the_relay_limit_lowers_never_raises() -> None:
    assert fit_chunk_size(12 << 20, 16 << 20) == 12 << 20
    assert fit_chunk_size(12 << 20, 1 << 20) == 1 << 20
    assert fit_chunk_size(MIN_CHUNK_SIZE, 1 << 20) == MIN_CHUNK_SIZE
    assert fit_chunk_size(1 << 20, MIN_CHUNK_SIZE) == MIN_CHUNK_SIZE


def test_a_limit_below_what_the_client_can_use_is_a_sentence() -> None:
    with pytest.raises(ClientError) as e:
        fit_chunk_size(12 << 20, MIN_CHUNK_SIZE - 1)
    assert "at most 65535 bytes" in str(e.value) and "\n" not in str(e.value)
    assert e.value.hint is not None and "max_chunk_bytes" in e.value.hint


def _terms(relay: HostileRelay) -> tuple[int | None, str]:
    with RelayClient(relay.url, handle="cabinet-a", signing_key=KEY, timeout=30) as c:
        return c.upload_terms()


@pytest.mark.parametrize(("answer", "expected"), [
    ({"max_chunk_bytes": 65536}, "sha256"),  # a relay from before BLAKE3
    ({"max_chunk_bytes": 65536, "chunk_hashes": ["sha256"]}, "sha256"),
    ({"max_chunk_bytes": 65536, "chunk_hashes": ["blake3", "sha256"]}, "blake3"),
    ({"max_chunk_bytes": 65536, "chunk_hashes": ["sha256", "blake3"]}, "blake3"),
    ({"max_chunk_bytes": 65536, "chunk_hashes": "blake3"}, "sha256"),
    ({"max_chunk_bytes": 65536, "chunk_hashes": ["md5"]}, "sha256"),
])
def test_the_chunk_hash_is_what_the_relay_offers_else_sha256(answer: object,
                                                             expected: str) -> None:
    body = json.dumps(answer).encode()
    with hostile_relay(_answering("200 OK", body)) as relay:  # type: ignore[arg-type]
        assert _terms(relay) == (65536, expected)


def test_an_older_relay_without_info_gets_sha256() -> None:
    body = json.dumps({"error": "not found", "code": "not_found"}).encode()
    with hostile_relay(_answering("404 Not Found", body)) as relay:  # type: ignore[arg-type]
        assert _terms(relay) == (None, "sha256")


def test_a_relay_minimum_raises_a_smaller_chunk() -> None:
    """A relay on S3 says min_chunk_bytes (5 MiB): smaller chunks are raised to it,
    larger ones (the 12 MiB default) are left alone."""
    five = 5 << 20
    assert fit_chunk_size(12 << 20, 16 << 20, five) == 12 << 20
    assert fit_chunk_size(1 << 20, 16 << 20, five) == five
    assert fit_chunk_size(MIN_CHUNK_SIZE, 16 << 20, five) == five
    assert fit_chunk_size(five, 16 << 20, five) == five


def test_a_minimum_above_what_the_client_can_send_is_refused() -> None:
    with pytest.raises(ClientError, match="at least"):
        fit_chunk_size(1 << 20, 16 << 20, 20 << 20)  # above the client's 16 MiB
    with pytest.raises(ClientError, match="at least"):
        fit_chunk_size(1 << 20, 4 << 20, 5 << 20)  # above the relay's own maximum


@pytest.mark.parametrize("least", [0, -1, True, "5242880", 1.5, 32 << 20])
def test_a_nonsense_minimum_is_refused(least: object) -> None:
    body = json.dumps({"max_chunk_bytes": 16 << 20, "min_chunk_bytes": least}).encode()
    with hostile_relay(_answering("200 OK", body)) as relay:  # type: ignore[arg-type]
        with RelayClient(relay.url, handle="cabinet-a", signing_key=KEY, timeout=30) as c:
            with pytest.raises(RelayProtocolError, match="smallest chunk"):
                c.upload_bounds()


def test_a_relay_without_a_minimum_says_none() -> None:
    body = json.dumps({"max_chunk_bytes": 16 << 20, "chunk_hashes": ["blake3"]}).encode()
    with hostile_relay(_answering("200 OK", body)) as relay:  # type: ignore[arg-type]
        with RelayClient(relay.url, handle="cabinet-a", signing_key=KEY, timeout=30) as c:
            assert c.upload_bounds() == (16 << 20, None, "blake3")
