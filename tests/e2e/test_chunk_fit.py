"""A relay configured with a small max_chunk_bytes: the real CLI fits its chunks
to what the relay advertises (GET /v1/info), with no --chunk-size from the user."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.kit import Relay, User, make_case, tree

SMALL = 64 * 1024  # the smallest limit a relay may be configured with
DATA_ROUTE = "/v1/transfers/{id}/data"


def _chunk_uploads(relay: Relay) -> dict[str, float]:
    """PATCHes of chunks the relay answered, by status, from its own /metrics."""
    url = f"http://127.0.0.1:{relay.port}/metrics"  # straight to the relay, not the link
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310
        text = r.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if (s.name == "sealdrop_http_requests_total" and s.labels["method"] == "PATCH"
                    and s.labels["route"] == DATA_ROUTE and s.value):
                out[s.labels["status"]] = out.get(s.labels["status"], 0) + s.value
    return out


def test_send_fits_its_chunks_to_a_relay_with_a_small_max_chunk(
    tmp_path: Path, relay: Relay, pair: tuple[User, User]
) -> None:
    practice, lab = pair
    relay.stop()
    relay.env["SEALDROP_RELAY_MAX_CHUNK_BYTES"] = str(SMALL)
    relay.start()
    with urllib.request.urlopen(f"{relay.url}/v1/info", timeout=10) as r:  # noqa: S310
        info = json.loads(r.read())
    assert set(info.pop("log")) == {"origin", "vkey"}  # the transparency log's key
    assert set(info.pop("expiry_seconds")) == {"min", "max"}
    assert info == {"max_chunk_bytes": SMALL, "chunk_hashes": ["blake3", "sha256"]}
    # ~300 KB of ciphertext: in one default 12 MiB chunk the relay would refuse it (413).
    case = make_case(tmp_path / "src", big=300_000)
    sent = practice.json("send", str(case), "--to", lab.handle)
    (size,) = relay.sql("select size from transfers")[0]
    assert size > 4 * SMALL
    # Chunks of at most SMALL bytes: at least size / SMALL of them, none too large
    # (413). A 409 is a lane that overtook the other (send.upload), then re-sent.
    uploads = _chunk_uploads(relay)
    assert set(uploads) <= {"204", "409"}, uploads
    assert uploads["204"] >= -(-size // SMALL)
    dest = tmp_path / "in"
    dest.mkdir()
    got = lab.json("receive", sent["transfer_id"], "--into", str(dest))
    assert got["failed"] == [] and got["received"][0]["sender_verified"] is True
    assert tree(dest / case.name) == tree(case)


def test_an_explicit_smaller_chunk_size_is_kept(
    tmp_path: Path, relay: Relay, pair: tuple[User, User]
) -> None:
    """The relay's limit lowers a chunk size, never raises one the user chose."""
    practice, lab = pair
    case = make_case(tmp_path / "src", big=400_000)
    practice.json("send", str(case), "--to", lab.handle, "--chunk-size", "64KiB")
    (size,) = relay.sql("select size from transfers")[0]
    uploads = _chunk_uploads(relay)
    assert set(uploads) <= {"204", "409"}, uploads
    assert uploads["204"] >= -(-size // SMALL)
