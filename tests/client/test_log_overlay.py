"""client.tlog.overlay: the newest entries proved under a signed root, the rest from tiles."""

from __future__ import annotations

import pytest

from sealdrop.client.tlog.overlay import LeafOverlay
from sealdrop.crypto.tlog import merkle


@pytest.mark.parametrize(("start", "size"), [(0, 1), (0, 9), (5, 9), (8, 9), (7, 8), (3, 70)])
def test_entries_read_rebuild_the_signed_root(start: int, size: int) -> None:
    data = [f"entry {i}\n".encode() for i in range(size)]
    tree = merkle.MemoryHashes([merkle.leaf_hash(d) for d in data])
    signed = merkle.root(size, tree)
    assert merkle.root(size, LeafOverlay(tree, start, data[start:])) == signed
    # an entry the relay changed, or dropped and replaced by the next, never matches
    changed = [*data[start:-1], b"hidden key\n"]
    assert merkle.root(size, LeafOverlay(tree, start, changed)) != signed
    if size - start > 1:
        dropped = data[start + 1:] + [data[-1]]
        assert merkle.root(size, LeafOverlay(tree, start, dropped)) != signed


def test_too_few_entries_cannot_make_a_root() -> None:
    data = [b"a\n", b"b\n", b"c\n"]
    tree = merkle.MemoryHashes([merkle.leaf_hash(d) for d in data])
    with pytest.raises(IndexError):
        merkle.root(3, LeafOverlay(tree, 1, data[1:2]))
