"""Safety numbers: a human-comparable fingerprint of an Ed25519 signing key.

The algorithm follows Signal's displayable fingerprint, for one party:

    h = SHA-512(DOMAIN || key)
    repeat 5200 times: h = SHA-512(h || key)
    take the first 30 bytes of h as six 5-byte big-endian integers,
    each reduced mod 100000 and printed as 5 decimal digits.

That gives 30 digits (~99.7 bits) read as six groups of five, which two people
can compare over the phone. The iteration makes a brute-force search for a key
with a chosen (or similar-looking) number 5200 times more expensive; the
domain prefix keeps the number unrelated to any other hash of the same key.

``qr_payload`` is a form meant for a QR code (upper-case alphanumerics only,
so QR's compact alphanumeric mode applies); it carries the same 30 digits.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from .errors import SafetyNumberError

DOMAIN = b"sealdrop safety number v1\x00"
ITERATIONS = 5200
DIGITS = 30
GROUP = 5
QR_PREFIX = "SEALDROP:SN1:"
_SEPARATORS = re.compile(r"[\s\-_.·:/]+")


def _digits(signing_key: bytes) -> str:
    if len(signing_key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    h = hashlib.sha512(DOMAIN + signing_key).digest()
    for _ in range(ITERATIONS):
        h = hashlib.sha512(h + signing_key).digest()
    groups = [int.from_bytes(h[i : i + 5], "big") % 100000 for i in range(0, 30, 5)]
    return "".join(f"{g:05d}" for g in groups)


def safety_number(signing_key: bytes) -> str:
    """The safety number of ``signing_key``: six groups of five digits, space-separated."""
    d = _digits(signing_key)
    return " ".join(d[i : i + GROUP] for i in range(0, DIGITS, GROUP))


def qr_payload(signing_key: bytes) -> str:
    """A QR-friendly form: ``SEALDROP:SN1:`` followed by the 30 digits."""
    return QR_PREFIX + _digits(signing_key)


def normalise(text: str) -> str:
    """Reduce user input to its 30 digits: spaces, dashes, dots and the QR prefix go.

    Raises SafetyNumberError (never echoing the input) if what is left is not 30 digits.
    """
    if not isinstance(text, str):
        raise SafetyNumberError("a safety number must be text")
    stripped = text.strip()
    if stripped.upper().startswith(QR_PREFIX):
        stripped = stripped[len(QR_PREFIX) :]
    digits = _SEPARATORS.sub("", stripped)
    if not digits.isascii() or not digits.isdigit() or len(digits) != DIGITS:
        raise SafetyNumberError(
            f"a safety number is {DIGITS} digits (six groups of five); "
            f"what was given has {sum(c.isdigit() for c in digits)} digits",
            hint="copy it exactly as `sealdrop identity show` prints it on the other side",
        )
    return digits


def matches(signing_key: bytes, text: str) -> bool:
    """True if the user-typed ``text`` is the safety number of ``signing_key``."""
    return hmac.compare_digest(normalise(text), _digits(signing_key))
