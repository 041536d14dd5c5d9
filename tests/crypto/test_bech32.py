"""Bech32 as age uses it, and the X25519 key strings built on it."""

from __future__ import annotations

import os

import pytest

from sealdrop.crypto.age import (
    RecipientError,
    X25519Identity,
    X25519Recipient,
    bech32,
    parse_identity,
)
from sealdrop.crypto.age.bech32 import _REV, _polymod  # checksum-level checks for BIP 173 vectors

# BIP 173 valid Bech32 strings (checksum level).
BIP173_VALID = [
    "A12UEL5L",
    "a12uel5l",
    "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    "11qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqc8247j",
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    "?1ezyfcl",
]

# BIP 173 invalid strings (those that are invalid for age too; age has no length limit).
BIP173_INVALID = [
    "\x201nwldj5",  # HRP character out of range
    "\x7f1axkwrx",
    "\x801eym55h",
    "pzry9x0s0muk",  # no separator
    "1pzry9x0s0muk",  # empty HRP
    "x1b4n0q5v",  # invalid data character
    "li1dgmt3",  # too short checksum
    "de1lg7wt\xff",  # invalid character in checksum
    "A1G7SGD8",  # checksum calculated with uppercase HRP
    "10a06t8",  # empty HRP
    "1qzzfhee",  # empty HRP
    "a12UEL5L",  # mixed case
]


def _checksum_ok(text: str) -> bool:
    lowered = text.lower()
    pos = lowered.rfind("1")
    hrp, data = lowered[:pos], lowered[pos + 1 :]
    values = [_REV[c] for c in data]
    return _polymod([ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + values) == 1


@pytest.mark.parametrize("text", BIP173_VALID)
def test_bip173_valid_checksums(text: str) -> None:
    assert _checksum_ok(text)
    try:
        hrp, data = bech32.decode(text)
    except ValueError as exc:
        # Some BIP 173 strings carry 5-bit data that is not whole bytes.
        assert "padding" in str(exc)
    else:
        assert hrp == text.lower()[: text.lower().rfind("1")]
        assert bech32.encode(hrp, data) == text.lower()


@pytest.mark.parametrize("text", BIP173_INVALID)
def test_bip173_invalid(text: str) -> None:
    with pytest.raises(ValueError):
        bech32.decode(text)


@pytest.mark.parametrize("size", [0, 1, 5, 31, 32, 33, 100, 1216, 2400])
def test_round_trip_any_length(size: int) -> None:
    data = os.urandom(size)
    text = bech32.encode("age", data)
    assert bech32.decode(text) == ("age", data)
    assert bech32.decode(text.upper()) == ("age", data)
    assert len(text) > 90 or size < 50  # age strings may exceed BIP 173's 90-char limit


def test_every_single_character_change_is_detected() -> None:
    text = bech32.encode("age", os.urandom(32))
    charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
    for i in range(len("age1"), len(text)):
        for c in charset[:8]:
            if c == text[i]:
                continue
            with pytest.raises(ValueError):
                bech32.decode(text[:i] + c + text[i + 1 :])


def test_non_zero_padding_bits_are_rejected() -> None:
    text = bech32.encode("age", b"\x00")  # 8 bits -> two 5-bit groups, 2 padding bits
    hrp, _ = bech32.decode(text)
    # Re-encode the same groups with a padding bit set and a valid checksum.
    from sealdrop.crypto.age.bech32 import _CHARSET, _hrp_expand

    values = [0, 1]
    chk = _polymod(_hrp_expand(hrp) + values + [0] * 6) ^ 1
    forged = (
        hrp
        + "1"
        + "".join(_CHARSET[v] for v in values)
        + "".join(_CHARSET[(chk >> 5 * (5 - i)) & 31] for i in range(6))
    )
    with pytest.raises(ValueError, match="padding"):
        bech32.decode(forged)


# --- X25519 key strings ----------------------------------------------------------

# From the age spec / CCTV vectors: identity and its recipient.
KNOWN_IDENTITY = "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0"


def test_identity_round_trip() -> None:
    ident = X25519Identity.parse(KNOWN_IDENTITY)
    assert ident.encode() == KNOWN_IDENTITY
    rcpt = ident.recipient()
    assert str(rcpt).startswith("age1") and len(str(rcpt)) == 62
    assert str(X25519Recipient.parse(str(rcpt))) == str(rcpt)
    assert parse_identity(KNOWN_IDENTITY.lower()).recipient().public_key == rcpt.public_key


def test_generated_keys() -> None:
    ident = X25519Identity.generate(os.urandom)
    assert ident.encode().startswith("AGE-SECRET-KEY-1") and ident.encode().isupper()
    assert X25519Identity.parse(ident.encode()).public_key == ident.public_key


@pytest.mark.parametrize(
    "text",
    [
        "",
        "age1",
        "age1qqqq",
        "AGE1" + "Q" * 58,
        # a valid bech32 string with the wrong HRP
        bech32.encode("agf", bytes(32)),
        # wrong length: 31 and 33 bytes
        bech32.encode("age", bytes(31)),
        bech32.encode("age", bytes(33)),
        # an identity where a recipient is expected
        KNOWN_IDENTITY,
    ],
)
def test_bad_recipients(text: str) -> None:
    with pytest.raises(RecipientError):
        X25519Recipient.parse(text)


def test_uppercase_recipient_is_rejected() -> None:
    rcpt = str(X25519Identity.parse(KNOWN_IDENTITY).recipient())
    with pytest.raises(RecipientError):
        X25519Recipient.parse(rcpt.upper())


@pytest.mark.parametrize(
    "text",
    [
        "AGE-SECRET-KEY-1",
        KNOWN_IDENTITY[:-1] + ("Q" if KNOWN_IDENTITY[-1] != "Q" else "P"),
        bech32.encode("age-secret-key-", bytes(31)).upper(),
        str(X25519Identity.parse(KNOWN_IDENTITY).recipient()),
    ],
)
def test_bad_identities(text: str) -> None:
    with pytest.raises(RecipientError):
        X25519Identity.parse(text)


def test_bad_identity_error_does_not_echo_the_key() -> None:
    secret = "AGE-SECRET-KEY-NOTAREALTYPE-1" + "Q" * 50
    with pytest.raises(RecipientError) as info:
        parse_identity(secret)
    assert "Q" * 20 not in str(info.value)
