"""Blocks: an account refuses another's transfers, by its own request or the operator's.

A block takes effect in two places: the blocker's inbox (and download, ack,
dismiss) no longer shows the blocked account's transfers, old or new
(``SqlMetadataStore.inbox_page``, ``transfers.visible``), and creating a new
transfer to the blocker is refused with ``blocked_by_recipient``, so an honest
sender blocked by mistake learns why and can ask by other means. Unblocking
shows the unexpired transfers again. Operator commands and the API share these
functions, so both apply the same rules.
"""

from __future__ import annotations

from sealdrop.crypto.bundle import HANDLE_RE
from sealdrop.crypto.protocol import ErrorCode

from .errors import InvalidInput, NotFound
from .metadata import SqlMetadataStore


async def _check(store: SqlMetadataStore, blocker: str, blocked: str) -> None:
    if not HANDLE_RE.fullmatch(blocked):
        raise InvalidInput("that is not a valid handle", code=ErrorCode.BAD_HANDLE)
    if blocked == blocker:
        raise InvalidInput("an account cannot block itself", code=ErrorCode.BAD_HANDLE)
    for handle in (blocker, blocked):
        # A disabled account can still be blocked: the block outlives re-enabling.
        if await store.get_account(handle) is None:
            raise NotFound(f"no account {handle}", code=ErrorCode.ACCOUNT_NOT_FOUND)


async def block(store: SqlMetadataStore, blocker: str, blocked: str, *, now: int) -> bool:
    """Make ``blocker`` refuse ``blocked``; False if it already did."""
    await _check(store, blocker, blocked)
    return await store.block(blocker, blocked, now=now)


async def unblock(store: SqlMetadataStore, blocker: str, blocked: str) -> bool:
    """Lift a block; False if there was none."""
    if not HANDLE_RE.fullmatch(blocked):
        raise InvalidInput("that is not a valid handle", code=ErrorCode.BAD_HANDLE)
    return await store.unblock(blocker, blocked)
