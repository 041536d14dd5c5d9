"""A send record keeps the chunk hash its transfer started with (crypto.chunkhash):
a resume hashes with it whatever the relay offers now, and records written
before BLAKE3 existed (no field) are SHA-256."""

from __future__ import annotations

import json

import pytest

from sealdrop.client.profile.outbox import SendRecord
from sealdrop.crypto import chunkhash


def _record(chunk_hash: str) -> SendRecord:
    return SendRecord(
        relay_id="r" * 22, relay="https://relay.example", job_key="j" * 64,
        resume_state=b"s" * 40, manifest_id=b"m" * 16, created=1, recipients=(), note="",
        dicom={}, files=(), chunk_size=65536, size=100, chunk_hash=chunk_hash)


@pytest.mark.parametrize("algorithm", chunkhash.ALGORITHMS)
def test_the_chunk_hash_survives_the_record(algorithm: str) -> None:
    assert SendRecord.from_bytes(_record(algorithm).to_bytes()).chunk_hash == algorithm


def test_a_record_from_before_blake3_is_sha256() -> None:
    obj = json.loads(_record(chunkhash.SHA256).to_bytes())
    assert "chunk_hash" not in obj  # what an older client wrote, byte for byte
    assert SendRecord.from_bytes(json.dumps(obj).encode()).chunk_hash == chunkhash.SHA256


def test_an_unknown_chunk_hash_is_a_damaged_record() -> None:
    obj = json.loads(_record(chunkhash.BLAKE3).to_bytes())
    obj["chunk_hash"] = "md5"
    with pytest.raises(ValueError):
        SendRecord.from_bytes(json.dumps(obj).encode())
