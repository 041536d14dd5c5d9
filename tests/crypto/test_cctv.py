"""The C2SP CCTV age vectors: every vector, exact error class, exact payload hash."""

from __future__ import annotations

import hashlib
import io

import pytest

import sealdrop.crypto.age as age
from sealdrop.crypto.age import (
    ArmorError,
    HeaderError,
    MACError,
    NoIdentityMatchError,
    PayloadError,
    ScryptIdentity,
)
from tests.crypto import cctv

EXPECTED_COUNT = 143

EXPECT: dict[str, type[Exception] | None] = {
    "success": None,
    "header failure": HeaderError,
    "HMAC failure": MACError,
    "armor failure": ArmorError,
    "payload failure": PayloadError,
    "no match": NoIdentityMatchError,
}


VECTORS = cctv.all_vectors()


def test_vector_count() -> None:
    assert cctv.VECTOR_DIR.is_dir(), f"CCTV vectors missing at {cctv.VECTOR_DIR}"
    assert len(VECTORS) == EXPECTED_COUNT


def test_every_expectation_is_known() -> None:
    assert {v.expect for v in VECTORS} <= set(EXPECT)


def _identities(v: cctv.Vector) -> list[age.Identity]:
    ids: list[age.Identity] = [age.parse_identity(i) for i in v.identities]
    ids += [ScryptIdentity(p.encode("utf-8")) for p in v.passphrases]
    return ids


@pytest.mark.parametrize("vector", VECTORS, ids=[v.name for v in VECTORS])
def test_vector(vector: cctv.Vector) -> None:
    expected = EXPECT[vector.expect]
    identities = _identities(vector)
    out = io.BytesIO()
    err: Exception | None = None
    try:
        age.decrypt(io.BytesIO(vector.body), out, identities, armored=vector.armored)
    except Exception as exc:  # noqa: BLE001 - compared below
        err = exc

    if expected is None:
        assert err is None, f"{vector.name}: unexpected {type(err).__name__}: {err}"
    else:
        assert err is not None, f"{vector.name}: decrypted, expected {expected.__name__}"
        assert type(err) is expected, (
            f"{vector.name}: got {type(err).__name__} ({err}), expected {expected.__name__}"
        )
    if vector.payload_sha256 is not None:
        # For payload failures this is the plaintext released before the failure.
        assert hashlib.sha256(out.getvalue()).hexdigest() == vector.payload_sha256
    elif expected is not None and expected is not PayloadError:
        # Header-level failures release nothing.
        assert out.getvalue() == b""


@pytest.mark.parametrize(
    "vector",
    [v for v in VECTORS if v.expect == "success"],
    ids=[v.name for v in VECTORS if v.expect == "success"],
)
def test_success_vector_by_small_reads(vector: cctv.Vector) -> None:
    """Decryptor.read(n) with odd sizes gives the same plaintext as chunks()."""
    dec = age.Decryptor(io.BytesIO(vector.body), _identities(vector), armored=vector.armored)
    parts = []
    while data := dec.read(7777):
        parts.append(data)
    dec.close()
    assert hashlib.sha256(b"".join(parts)).hexdigest() == vector.payload_sha256


@pytest.mark.parametrize(
    "vector",
    [v for v in VECTORS if v.armored],
    ids=[v.name for v in VECTORS if v.armored],
)
def test_armored_vector_autodetect(vector: cctv.Vector) -> None:
    """armored=None detects the armor: successes match, failures still fail.

    Like the age CLI, detection only looks for the BEGIN line at the start, so
    a file with garbage before it is read as binary and fails as a bad header.
    """
    expected = EXPECT[vector.expect]
    out = io.BytesIO()
    err: Exception | None = None
    try:
        age.decrypt(io.BytesIO(vector.body), out, _identities(vector), armored=None)
    except Exception as exc:  # noqa: BLE001
        err = exc
    if expected is None:
        assert err is None, err
        assert hashlib.sha256(out.getvalue()).hexdigest() == vector.payload_sha256
    elif expected is ArmorError:
        assert type(err) in (ArmorError, HeaderError), f"{type(err).__name__}: {err}"
    else:
        assert type(err) is expected, f"{type(err).__name__}: {err}"
