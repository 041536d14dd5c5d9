"""Subtree hashes of a tree whose newest leaves are known here, the rest from tiles.

``advance`` reads the new entries (entry bundles) and must know they are the
ones in the signed tree: the relay could serve a bundle without the key entry
it would rather hide. So the leaves from ``start`` on are hashed here from
the entries themselves, every subtree that reaches into them is recomputed
from those leaves, and only subtrees wholly before ``start`` (already covered
by the consistency proof to the previous checkpoint) come from the relay's
tiles. The root of that overlay equal to the signed root proves the entries.
"""

from __future__ import annotations

from collections.abc import Sequence

from sealdrop.crypto.tlog.merkle import SubtreeHashes, leaf_hash, node_hash


class LeafOverlay:
    """``SubtreeHashes`` of a tree: leaves ``start..start+len(entries)`` from
    ``entries``, any subtree wholly before ``start`` from ``below``."""

    def __init__(self, below: SubtreeHashes, start: int, entries: Sequence[bytes]) -> None:
        self._below = below
        self._start = start
        self._leaves = [leaf_hash(e) for e in entries]
        self._memo: dict[tuple[int, int], bytes] = {}

    def subtree(self, level: int, index: int) -> bytes:
        first = index << level
        if first + (1 << level) <= self._start:
            return self._below.subtree(level, index)
        if level == 0:
            at = index - self._start
            if not 0 <= at < len(self._leaves):
                raise IndexError(f"leaf {index} is not among the entries read")
            return self._leaves[at]
        key = (level, index)
        got = self._memo.get(key)
        if got is None:
            got = node_hash(self.subtree(level - 1, 2 * index),
                            self.subtree(level - 1, 2 * index + 1))
            self._memo[key] = got
        return got
