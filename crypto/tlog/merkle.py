"""RFC 9162 (section 2.1) Merkle tree hashes, inclusion and consistency proofs.

The hashing is RFC 6962's, which C2SP tlog-tiles and every transparency-log
tool share: a leaf is ``SHA-256(0x00 || data)``, an interior node
``SHA-256(0x01 || left || right)``, the empty tree ``SHA-256("")``. The two
prefixes keep a leaf from ever passing for a node (second preimages).

Proofs are *made* from a source of complete-subtree hashes (``SubtreeHashes``:
the relay's table, tiles fetched over HTTP, or a list in memory), and
*verified* with nothing but the proof, the leaf hash and a signed root, by the
RFC's own algorithms (2.1.3.2 and 2.1.4.2). A source need not be trusted: a
proof made from lies does not verify.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

from ..errors import LogProofError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
# A tree of 2**63 leaves is beyond any log; its proofs have at most 63 hashes.
MAX_PROOF_HASHES = 63


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class SubtreeHashes(Protocol):
    def subtree(self, level: int, index: int) -> bytes:
        """The hash of the complete subtree of ``2**level`` leaves that starts
        at leaf ``index * 2**level``."""
        ...


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2): RFC 9162's k."""
    return 1 << ((n - 1).bit_length() - 1)


def range_hash(start: int, end: int, hashes: SubtreeHashes) -> bytes:
    """MTH(D[start:end]): the Merkle tree hash of leaves [start, end) taken as a
    tree of their own, from the complete subtrees that make it up."""
    if not 0 <= start <= end:
        raise ValueError(f"bad leaf range [{start}, {end})")
    n = end - start
    if n == 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0 and start % n == 0:
        level = n.bit_length() - 1
        return hashes.subtree(level, start >> level)
    k = _split(n)
    return node_hash(range_hash(start, start + k, hashes), range_hash(start + k, end, hashes))


def root(size: int, hashes: SubtreeHashes) -> bytes:
    return range_hash(0, size, hashes)


def inclusion_proof(index: int, size: int, hashes: SubtreeHashes) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 2.1.3.1, leaf's sibling first."""
    if not 0 <= index < size:
        raise LogProofError(f"log entry {index} is not in a tree of {size} entries")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append(range_hash(start + k, end, hashes))
            end = start + k
        else:
            path.append(range_hash(start, start + k, hashes))
            start += k
    path.reverse()  # collected root-down; the RFC lists it leaf-up
    return path


def consistency_proof(old_size: int, new_size: int, hashes: SubtreeHashes) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) of RFC 9162 2.1.4.1; empty when
    old_size is 0 or equal to new_size."""
    if not 0 <= old_size <= new_size:
        raise LogProofError(
            f"the log cannot shrink: no consistency proof from {old_size} to {new_size} entries"
        )
    if old_size in (0, new_size):
        return []
    # SUBPROOF(m, D[start:end], b), unrolled: each step appends one hash.
    path: list[bytes] = []
    m, start, end, whole = old_size, 0, new_size, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            path.append(range_hash(start + k, end, hashes))
            end = start + k
        else:
            path.append(range_hash(start, start + k, hashes))
            m -= k
            start += k
            whole = False
    if not whole:
        path.append(range_hash(start, end, hashes))
    path.reverse()
    return path


def _check_hashes(proof: Sequence[bytes], what: str) -> None:
    if len(proof) > MAX_PROOF_HASHES:
        raise LogProofError(f"the {what} proof has {len(proof)} hashes, more than any tree needs")
    for h in proof:
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise LogProofError(f"the {what} proof holds a hash that is not {HASH_SIZE} bytes")


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 2.1.3.2: does ``proof`` put the leaf hash ``leaf`` (that is,
    ``leaf_hash(entry)``, not the entry) at ``index`` in the tree of ``size``
    leaves whose root is ``root``? Raises LogProofError if not."""
    if len(leaf) != HASH_SIZE:
        raise ValueError("verify_inclusion takes leaf_hash(entry), 32 bytes")
    if not 0 <= index < size:
        raise LogProofError(f"log entry {index} is not in a tree of {size} entries")
    _check_hashes(proof, "inclusion")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise LogProofError(f"the inclusion proof for log entry {index} is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise LogProofError(f"the inclusion proof for log entry {index} is too short")
    if r != root:
        raise LogProofError(
            f"log entry {index} is not in the signed tree of {size} entries: "
            "the inclusion proof leads to another root"
        )


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """RFC 9162 2.1.4.2: is the tree of ``new_size`` leaves with ``new_root``
    an append-only extension of the one of ``old_size`` with ``old_root``?
    Raises LogProofError if not."""
    if not 0 <= old_size <= new_size:
        raise LogProofError(
            f"the log went back from {old_size} to {new_size} entries (a rollback)"
            if new_size >= 0 and old_size > new_size
            else f"bad tree sizes {old_size} and {new_size}"
        )
    _check_hashes(proof, "consistency")
    if old_size == 0 or old_size == new_size:
        if proof:
            raise LogProofError(
                f"a consistency proof from {old_size} to {new_size} entries must be empty"
            )
        if old_size == new_size and old_root != new_root:
            raise LogProofError(
                f"two different roots for the same tree of {new_size} entries (a fork)"
            )
        return
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    if not path:
        raise LogProofError(f"the consistency proof from {old_size} to {new_size} is empty")
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise LogProofError(
                f"the consistency proof from {old_size} to {new_size} entries is too long"
            )
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != old_root or sr != new_root:
        raise LogProofError(
            f"the tree of {new_size} entries does not extend the one of {old_size} "
            "that was verified before: the consistency proof fails (a fork or a rewrite)"
        )


class MemoryHashes:
    """Every complete subtree hash of a tree held in memory, level by level.

    For tests and for ``sealdrop-relay log verify``, which recomputes the
    whole tree from its entries. ``append`` returns the subtree hashes a new
    leaf completes: exactly the rows a store of subtree hashes must add.
    """

    def __init__(self, leaf_hashes: Sequence[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append(h)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; returns (level, index, hash) of every subtree it
        completes, the leaf itself first."""
        if len(leaf) != HASH_SIZE:
            raise ValueError("MemoryHashes holds leaf hashes, 32 bytes each")
        added = [(0, self.size, leaf)]
        self._levels[0].append(leaf)
        level = 0
        while len(self._levels[level]) % 2 == 0:
            row = self._levels[level]
            h = node_hash(row[-2], row[-1])
            level += 1
            if level == len(self._levels):
                self._levels.append([])
            added.append((level, len(self._levels[level]), h))
            self._levels[level].append(h)
        return added

    def subtree(self, level: int, index: int) -> bytes:
        if level < 0 or index < 0 or level >= len(self._levels) or index >= len(
            self._levels[level]
        ):
            raise ValueError(
                f"no complete subtree at level {level}, index {index} in a tree of {self.size}"
            )
        return self._levels[level][index]

    def root(self) -> bytes:
        return root(self.size, self)
