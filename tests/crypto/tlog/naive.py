"""RFC 9162 section 2.1, written as the RFC writes it: recursion over slices.

The reference the tests compare ``sealdrop.crypto.tlog.merkle`` against. It
shares no code with it (hashlib only), and is slow on purpose: it follows the
definitions of MTH, PATH and PROOF line by line. Range hashes are memoised per
(start, end) of one leaf list, which changes nothing about what they compute.
"""

from __future__ import annotations

import hashlib
from functools import cache


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class NaiveTree:
    def __init__(self, entries: list[bytes]) -> None:
        self.entries = entries

        @cache
        def mth(start: int, end: int) -> bytes:
            n = end - start
            if n == 0:
                return hashlib.sha256(b"").digest()
            if n == 1:
                return hashlib.sha256(b"\x00" + self.entries[start]).digest()
            k = _k(n)
            return hashlib.sha256(
                b"\x01" + mth(start, start + k) + mth(start + k, end)
            ).digest()

        self.mth = mth

    def path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = _k(n)
        if m < k:
            return self.path(m, start, start + k) + [self.mth(start + k, end)]
        return self.path(m - k, start + k, end) + [self.mth(start, start + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        return self._subproof(m, 0, n, True)

    def _subproof(self, m: int, start: int, end: int, b: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if b else [self.mth(start, end)]
        k = _k(n)
        if m <= k:
            return self._subproof(m, start, start + k, b) + [self.mth(start + k, end)]
        return self._subproof(m - k, start + k, end, False) + [self.mth(start, start + k)]
