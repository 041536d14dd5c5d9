"""Safety numbers: format, determinism, an independent re-implementation, input normalisation."""

from __future__ import annotations

import hashlib
import re

import pytest

from sealdrop.crypto import safety
from sealdrop.crypto.errors import SafetyNumberError

KEY = bytes(range(32))


def reference(key: bytes) -> str:
    """The algorithm as docs/container.md states it, written out independently."""
    h = hashlib.sha512(b"sealdrop safety number v1\x00" + key).digest()
    for _ in range(5200):
        h = hashlib.sha512(h + key).digest()
    return " ".join(f"{int.from_bytes(h[i:i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5))


def test_format_is_six_groups_of_five_digits() -> None:
    assert re.fullmatch(r"(\d{5} ){5}\d{5}", safety.safety_number(KEY))


def test_matches_reference_and_is_deterministic() -> None:
    assert safety.safety_number(KEY) == reference(KEY) == safety.safety_number(KEY)


def test_fixed_vector() -> None:
    # Pinned so that an accidental change of the algorithm breaks every user's
    # verified contacts loudly here first.
    assert safety.safety_number(bytes(32)) == reference(bytes(32))
    assert safety.safety_number(bytes(32)) == VECTOR_ZERO_KEY


VECTOR_ZERO_KEY = "12882 40962 11950 02521 87469 87179"


def test_different_keys_different_numbers() -> None:
    numbers = {safety.safety_number(bytes([i]) * 32) for i in range(20)}
    assert len(numbers) == 20


@pytest.mark.parametrize(
    "typed",
    [
        "{n}",
        "{d}",
        "  {n}  ",
        "{dashed}",
        "{dotted}",
        "SEALDROP:SN1:{d}",
        "sealdrop:sn1:{d}",
    ],
)
def test_user_input_is_normalised(typed: str) -> None:
    n = safety.safety_number(KEY)
    d = n.replace(" ", "")
    text = typed.format(n=n, d=d, dashed=n.replace(" ", "-"), dotted=n.replace(" ", "."))
    assert safety.matches(KEY, text)


def test_one_wrong_digit_does_not_match() -> None:
    d = safety.safety_number(KEY).replace(" ", "")
    wrong = d[:-1] + str((int(d[-1]) + 1) % 10)
    assert not safety.matches(KEY, wrong)


def test_other_keys_number_does_not_match() -> None:
    assert not safety.matches(KEY, safety.safety_number(bytes(32)))


@pytest.mark.parametrize("bad", ["", "12345", "1" * 31, "abcde " * 6, "١٢٣٤٥" * 6])
def test_malformed_input_is_refused_without_echo(bad: str) -> None:
    with pytest.raises(SafetyNumberError) as ei:
        safety.matches(KEY, bad)
    if bad:
        assert bad not in str(ei.value)


def test_qr_payload_is_qr_alphanumeric() -> None:
    qr = safety.qr_payload(KEY)
    assert re.fullmatch(r"[0-9A-Z $%*+\-./:]+", qr)
    assert safety.normalise(qr) == safety.safety_number(KEY).replace(" ", "")


def test_wrong_key_size() -> None:
    with pytest.raises(ValueError):
        safety.safety_number(b"short")
