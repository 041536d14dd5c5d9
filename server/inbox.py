"""The inbox: one bounded page at a time, walked with an opaque cursor.

Keyset pagination on the stable order (completed_at, id), oldest first: a
page is "the next ``limit`` transfers after the cursor's", so a transfer that
completes or disappears while a client walks never shifts the pages after it
(no item is shown twice; one completing in the very second of the cursor with
a smaller id is picked up by the next walk). The cursor is that (completed_at,
id) pair, base64url-encoded: clients must treat it as opaque.

A flood from one account cannot push anyone else's transfer out of reach: the
client asks first for the transfers of the senders it trusts (``sender``,
repeatable, at most ``INBOX_MAX_SENDERS``), then walks the rest. What the
relay leaves out of every page: transfers the recipient dismissed, those from
accounts it blocked, and those from accounts the operator disabled
(``SqlMetadataStore.inbox_page``).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sealdrop.crypto.bundle import HANDLE_RE
from sealdrop.crypto.protocol import (
    INBOX_DEFAULT_PAGE,
    INBOX_MAX_PAGE,
    INBOX_MAX_SENDERS,
    ErrorCode,
)

from .errors import InvalidInput

_CURSOR_TEXT = re.compile(r"([0-9]{1,15})\.([0-9a-f]{32})")
_CURSOR_B64 = re.compile(r"[A-Za-z0-9_-]{1,96}")
_DIGITS = re.compile(r"[0-9]{1,6}")
PARAMS = ("cursor", "limit", "sender")


@dataclass(frozen=True, slots=True)
class InboxQuery:
    limit: int
    after: tuple[int, str] | None  # (completed_at, id) of the last transfer already seen
    senders: tuple[str, ...]  # empty: every sender


def encode_cursor(completed_at: int, transfer_id: str) -> str:
    text = f"{completed_at}.{transfer_id}".encode("ascii")
    return base64.urlsafe_b64encode(text).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple[int, str]:
    bad = InvalidInput(
        "the inbox cursor is malformed; start again without one", code=ErrorCode.BAD_CURSOR
    )
    if not _CURSOR_B64.fullmatch(cursor):
        raise bad
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise bad from None
    m = _CURSOR_TEXT.fullmatch(text)
    # Re-encoding must give the same text: one cursor, one spelling.
    if m is None or encode_cursor(int(m.group(1)), m.group(2)) != cursor:
        raise bad
    return int(m.group(1)), m.group(2)


def _one(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name, ())
    if len(values) > 1:
        raise InvalidInput(f"query parameter {name} given twice", code=ErrorCode.BAD_REQUEST)
    return values[0] if values else None


def parse_query(params: Mapping[str, Sequence[str]]) -> InboxQuery:
    """The inbox query from the URL's parameters (every value of each name)."""
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise InvalidInput(
            f"unknown query parameter {unknown[0][:40]!r}; the inbox takes cursor, limit "
            "and sender",
            code=ErrorCode.BAD_REQUEST,
        )
    limit_text = _one(params, "limit")
    limit = INBOX_DEFAULT_PAGE
    if limit_text is not None:
        # ASCII digits only: int() would take "１２" or " 12".
        if not _DIGITS.fullmatch(limit_text) or not 1 <= int(limit_text) <= INBOX_MAX_PAGE:
            raise InvalidInput(
                f"query parameter limit must be 1 to {INBOX_MAX_PAGE}",
                code=ErrorCode.BAD_REQUEST,
            )
        limit = int(limit_text)
    cursor = _one(params, "cursor")
    after = decode_cursor(cursor) if cursor is not None else None
    senders = tuple(params.get("sender", ()))
    if len(senders) > INBOX_MAX_SENDERS:
        raise InvalidInput(
            f"at most {INBOX_MAX_SENDERS} sender parameters per request; ask in several",
            code=ErrorCode.BAD_REQUEST,
        )
    for h in senders:
        if not HANDLE_RE.fullmatch(h):
            raise InvalidInput("a sender parameter is not a valid handle",
                               code=ErrorCode.BAD_HANDLE)
    return InboxQuery(limit=limit, after=after, senders=tuple(sorted(set(senders))))
