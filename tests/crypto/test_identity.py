"""The identity file format: plaintext that is an age identity file, sealed with scrypt."""

from __future__ import annotations

import io

import pytest

from sealdrop.crypto import age
from sealdrop.crypto.errors import IdentityFileError
from sealdrop.crypto.identity import (
    HEADER,
    SecretIdentity,
    decode_signing_key,
    encode_signing_key,
    open_identity,
    seal_identity,
)
from tests.crypto.transferkit import det_rand, identity

ALICE = identity("alice.clinic")
BOB = identity("bob.lab")
PASS = b"correct horse battery staple"


def test_generate_binds_keys_with_the_bundle() -> None:
    b = ALICE.bundle
    assert b.verify() is b
    assert b.handle == "alice.clinic"
    assert b.signing_key == ALICE.signing_public_key
    assert b.x25519 == str(ALICE.x25519.recipient())
    assert b.pq == str(ALICE.pq.recipient()) and b.pq.startswith("age1pq1")


def test_text_round_trip_and_format() -> None:
    text = ALICE.to_text()
    lines = text.splitlines()
    assert lines[0] == HEADER
    assert "# handle: alice.clinic" in lines
    assert any(line.startswith("# signing-key: SEALDROP-SIGNING-KEY-1") for line in lines)
    assert [line[:19] for line in lines if not line.startswith("#")] == [
        "AGE-SECRET-KEY-PQ-1",
        "AGE-SECRET-KEY-1" + lines[-1][16:19],
    ]
    again = SecretIdentity.from_text(text)
    assert again.bundle == ALICE.bundle
    assert bytes(again.signing_key) == bytes(ALICE.signing_key)


def test_plaintext_is_an_age_identity_file() -> None:
    # After `age -d`, the file must work as `age -d -i FILE`: our own age parser
    # ignores the comments and finds both keys.
    ids = age.parse_identities(ALICE.to_text())
    assert len(ids) == 2
    ct = io.BytesIO()
    age.encrypt(io.BytesIO(b"hello"), ct, [age.parse_recipient(ALICE.bundle.pq)])
    assert age.Decryptor(io.BytesIO(ct.getvalue()), ids).read() == b"hello"


def test_export_age_lines() -> None:
    full = ALICE.export_age()
    assert ALICE.pq.encode() in full and ALICE.x25519.encode() in full
    classic = ALICE.export_age(pq=False)
    assert "PQ" not in classic and ALICE.x25519.encode() in classic
    assert "SIGNING-KEY" not in full  # the signing key never leaves via --age


def test_seal_and_open() -> None:
    sealed = seal_identity(ALICE, PASS, work_factor=10, rand=det_rand("seal"))
    assert sealed.startswith(b"age-encryption.org/v1\n-> scrypt ")
    assert b"AGE-SECRET" not in sealed
    opened = open_identity(sealed, PASS)
    assert opened.bundle == ALICE.bundle


def test_default_work_factor_is_18() -> None:
    import inspect

    assert inspect.signature(seal_identity).parameters["work_factor"].default == 18


def test_wrong_passphrase() -> None:
    sealed = seal_identity(ALICE, PASS, work_factor=10)
    with pytest.raises(age.NoIdentityMatchError):
        open_identity(sealed, b"wrong")


@pytest.mark.parametrize("cut", [10, 60, 150, -17, -1])
def test_truncated_file(cut: int) -> None:
    sealed = seal_identity(ALICE, PASS, work_factor=10)
    with pytest.raises(age.AgeError):
        open_identity(sealed[:cut], PASS)


def test_work_factor_bound_on_open() -> None:
    sealed = seal_identity(ALICE, PASS, work_factor=12)
    with pytest.raises(age.HeaderError):
        open_identity(sealed, PASS, max_work_factor=11)


def test_repr_has_no_secrets() -> None:
    r = repr(ALICE)
    assert "alice.clinic" in r and ALICE.safety_number in r
    for secret in (ALICE.x25519.encode(), ALICE.pq.encode(), encode_signing_key(ALICE.signing_key)):
        assert secret not in r and secret.lower() not in r


def _replace_line(text: str, prefix: str, new: str) -> str:
    return "\n".join(new if line.startswith(prefix) else line for line in text.splitlines())


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t.replace(HEADER, "# some other file"),
        lambda t: _replace_line(t, "AGE-SECRET-KEY-1", BOB.x25519.encode()),
        lambda t: _replace_line(t, "AGE-SECRET-KEY-PQ-1", BOB.pq.encode()),
        lambda t: _replace_line(
            t, "# signing-key:", "# signing-key: " + encode_signing_key(BOB.signing_key)
        ),
        lambda t: _replace_line(t, "# bundle:", "# bundle: " + BOB.bundle.dumps()),
        lambda t: _replace_line(t, "# bundle:", "# bundle: {}"),
        lambda t: _replace_line(t, "# handle:", "# handle: mallory"),
        lambda t: t + BOB.x25519.encode() + "\n",
        lambda t: t + "SOMETHING-ELSE\n",
        lambda t: _replace_line(t, "AGE-SECRET-KEY-1", ""),
    ],
)
def test_inconsistent_contents_are_refused(mutate) -> None:  # type: ignore[no-untyped-def]
    text = mutate(ALICE.to_text())
    with pytest.raises(IdentityFileError) as ei:
        SecretIdentity.from_text(text)
    for secret in (ALICE.x25519.encode(), BOB.x25519.encode(), ALICE.pq.encode()):
        assert secret not in str(ei.value)


def test_signing_key_encoding() -> None:
    text = encode_signing_key(ALICE.signing_key)
    assert bytes(decode_signing_key(text)) == bytes(ALICE.signing_key)
    broken = text[:-1] + ("Q" if text[-1] != "Q" else "P")
    with pytest.raises(IdentityFileError):
        decode_signing_key(broken)
