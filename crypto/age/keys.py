"""Parsing recipient and identity strings and identity files, by their prefix."""

from __future__ import annotations

from .core import Identity, Recipient
from .errors import RecipientError
from .x25519 import X25519Identity, X25519Recipient

_PQ_RECIPIENT = "age1pq1"
_PQ_IDENTITY = "AGE-SECRET-KEY-PQ-1"


def parse_recipient(text: str) -> Recipient:
    text = text.strip()
    if text.startswith(_PQ_RECIPIENT):
        from .hybrid import HybridRecipient

        return HybridRecipient.parse(text)
    if text.startswith("age1"):
        return X25519Recipient.parse(text)
    raise RecipientError(
        f"unknown recipient type {text[:12]!r}…",
        hint="recipients look like age1… (or age1pq1… for post-quantum keys)",
    )


def parse_identity(text: str) -> Identity:
    text = text.strip()
    upper = text.upper()
    if upper.startswith(_PQ_IDENTITY):
        from .hybrid import HybridIdentity

        return HybridIdentity.parse(text)
    if upper.startswith("AGE-SECRET-KEY-1"):
        return X25519Identity.parse(text)
    # Never echo the line: it may be a secret key of a type we do not know.
    raise RecipientError("unknown identity type in identity file")


def _lines(text: str) -> list[str]:
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def parse_identities(text: str) -> list[Identity]:
    """Parse an age identity file: one key a line, '#' comments and blank lines ignored."""
    out = [parse_identity(line) for line in _lines(text)]
    if not out:
        raise RecipientError("the identity file contains no identities")
    return out


def parse_recipients_file(text: str) -> list[Recipient]:
    out = [parse_recipient(line) for line in _lines(text)]
    if not out:
        raise RecipientError("the recipients file contains no recipients")
    return out
