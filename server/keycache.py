"""The accounts that signed recent requests, kept in memory so a signed request
does not read its account from the database before it verifies the signature.

Why: every request read its account row first, one database round trip of five
per small transfer (``scripts/bench_relay``). A cached entry is never trusted
on its own: ``server.auth`` verifies the signature with the cached key and then
commits the request's nonce, and that same transaction reads the account back
(``server.noncebatch``). If the account is disabled, gone, or holds another
signing key by then (an operator command in another process, a second relay on
the same database, a restored backup), the request is refused and the entry
forgotten. So the cache saves the read, never the check.

Only what was read is cached: an unknown handle is not (each costs a read, as
before). Bounded: past ``limit`` entries the oldest half is forgotten.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the store owns a cache: no import cycle at run time
    from .metadata import Account

DEFAULT_LIMIT = 4096


class KeyCache:
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._limit = limit
        self._accounts: dict[str, Account] = {}

    def get(self, handle: str) -> Account | None:
        return self._accounts.get(handle)

    def put(self, account: Account) -> None:
        if account.disabled:
            self.forget(account.handle)  # never served from memory
            return
        if len(self._accounts) >= self._limit and account.handle not in self._accounts:
            # Dicts keep insertion order: drop the oldest half in one go.
            for handle in list(self._accounts)[: self._limit // 2]:
                del self._accounts[handle]
        self._accounts[account.handle] = account

    def forget(self, handle: str) -> None:
        self._accounts.pop(handle, None)

    def __len__(self) -> int:
        return len(self._accounts)
