"""Placeholder: the mlkem768x25519 hybrid recipient type is being written."""

from __future__ import annotations

from .errors import RecipientError


class HybridRecipient:
    pq = True

    @classmethod
    def parse(cls, text: str) -> "HybridRecipient":
        raise RecipientError("post-quantum recipients are not supported yet")


class HybridIdentity:
    @classmethod
    def parse(cls, text: str) -> "HybridIdentity":
        raise RecipientError("post-quantum identities are not supported yet")

    @classmethod
    def generate(cls, rand: object) -> "HybridIdentity":
        raise RecipientError("post-quantum identities are not supported yet")
