"""Merkle hashes and proofs: fixed vectors, every small tree against the RFC's
definitions, and tampered proofs refused."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealdrop.crypto.errors import LogProofError
from sealdrop.crypto.tlog.merkle import (
    EMPTY_ROOT,
    MemoryHashes,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    range_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from tests.crypto.tlog.naive import NaiveTree

# The 8-leaf reference tree of the certificate-transparency test data, as
# transparency-dev/merkle vendors it: testonly/constants.go (LeafInputs,
# NodeHashes, RootHashes) and testonly/reference_test.go (TestRefInclusionProof,
# TestRefConsistencyProof). Only the numbers are copied.
LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]
H = bytes.fromhex
NODES = [
    [H("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
     H("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
     H("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
     H("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
     H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
     H("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
     H("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
     H("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1")],
    [H("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
     H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
     H("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
     H("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0")],
    [H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
     H("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")],
    [H("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]
ROOTS = [
    H("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    H("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    H("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    H("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    H("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    H("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    H("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    H("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
INCLUSION = [  # (index, size, proof)
    (0, 1, []),
    (0, 2, [NODES[0][1]]),
    (1, 2, [NODES[0][0]]),
    (2, 3, [NODES[1][0]]),
    (1, 5, [NODES[0][0], NODES[1][1], NODES[0][4]]),
    (0, 8, [NODES[0][1], NODES[1][1], NODES[2][1]]),
    (5, 8, [NODES[0][4], NODES[1][3], NODES[2][0]]),
]
CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (1, 8, [NODES[0][1], NODES[1][1], NODES[2][1]]),
    (2, 5, [NODES[1][1], NODES[0][4]]),
    (6, 8, [NODES[1][2], NODES[1][3], NODES[2][0]]),
]

TREE = MemoryHashes([leaf_hash(d) for d in LEAVES])


def test_hashing_is_rfc6962() -> None:
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == ROOTS[0]
    assert leaf_hash(b"") == NODES[0][0]
    assert node_hash(NODES[0][0], NODES[0][1]) == NODES[1][0]


def test_reference_tree_subtrees_and_roots() -> None:
    for level, row in enumerate(NODES):
        for index, want in enumerate(row):
            assert TREE.subtree(level, index) == want
    for size, want in enumerate(ROOTS):
        assert root(size, TREE) == want
        assert MemoryHashes([leaf_hash(d) for d in LEAVES[:size]]).root() == want


@pytest.mark.parametrize(("index", "size", "want"), INCLUSION)
def test_reference_inclusion_proofs(index: int, size: int, want: list[bytes]) -> None:
    assert inclusion_proof(index, size, TREE) == want
    verify_inclusion(index, size, leaf_hash(LEAVES[index]), want, ROOTS[size])


@pytest.mark.parametrize(("old", "new", "want"), CONSISTENCY)
def test_reference_consistency_proofs(old: int, new: int, want: list[bytes]) -> None:
    assert consistency_proof(old, new, TREE) == want
    verify_consistency(old, new, want, ROOTS[old], ROOTS[new])


N = 70
ENTRIES = [i.to_bytes(2, "big") * (i % 5 + 1) for i in range(N)]  # distinct, of varied length
BIG = MemoryHashes([leaf_hash(e) for e in ENTRIES])
NAIVE = NaiveTree(ENTRIES)


def test_every_range_hash_matches_the_definition() -> None:
    for start in range(N + 1):
        for end in range(start, N + 1):
            assert range_hash(start, end, BIG) == NAIVE.mth(start, end)


def test_every_inclusion_proof_up_to_70_leaves() -> None:
    for size in range(1, N + 1):
        r = NAIVE.mth(0, size)
        for index in range(size):
            proof = inclusion_proof(index, size, BIG)
            assert proof == NAIVE.path(index, 0, size)
            verify_inclusion(index, size, leaf_hash(ENTRIES[index]), proof, r)


def test_every_consistency_proof_up_to_70_leaves() -> None:
    for new in range(0, N + 1):
        new_root = NAIVE.mth(0, new)
        for old in range(0, new + 1):
            proof = consistency_proof(old, new, BIG)
            assert proof == ([] if old == 0 else NAIVE.proof(old, new))
            verify_consistency(old, new, proof, NAIVE.mth(0, old), new_root)


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _mutations(proof: list[bytes], data: st.DataObject) -> list[bytes]:
    """One way of breaking a proof: a flipped bit, a hash dropped, added or
    swapped with its neighbour."""
    how = data.draw(st.sampled_from(["flip", "drop", "add", "swap"]))
    p = list(proof)
    if how == "flip" and p:
        i = data.draw(st.integers(0, len(p) - 1))
        bit = data.draw(st.integers(0, 255))
        h = bytearray(p[i])
        h[bit // 8] ^= 1 << (bit % 8)
        p[i] = bytes(h)
    elif how == "drop" and p:
        del p[data.draw(st.integers(0, len(p) - 1))]
    elif how == "swap" and len(p) >= 2 and p[0] != p[1]:
        p[0], p[1] = p[1], p[0]
    else:
        p.insert(data.draw(st.integers(0, len(p))), NODES[0][3])
    return p


@FAST
@given(size=st.integers(1, N), data=st.data())
def test_tampered_inclusion_refused(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, size - 1))
    proof = inclusion_proof(index, size, BIG)
    r = NAIVE.mth(0, size)
    leaf = leaf_hash(ENTRIES[index])
    bad = _mutations(proof, data)
    with pytest.raises(LogProofError):
        verify_inclusion(index, size, leaf, bad, r)
    other = data.draw(st.integers(0, N - 1).filter(lambda j: ENTRIES[j] != ENTRIES[index]))
    with pytest.raises(LogProofError):  # another entry at that place
        verify_inclusion(index, size, leaf_hash(ENTRIES[other]), proof, r)
    wrong_index = data.draw(st.integers(0, size).filter(lambda j: j != index))
    with pytest.raises(LogProofError):  # the right entry, said to be elsewhere
        verify_inclusion(wrong_index, size, leaf, proof, r)
    if size > 1:
        with pytest.raises(LogProofError):  # the root of a smaller tree
            verify_inclusion(index, size, leaf, proof, NAIVE.mth(0, size - 1))


@FAST
@given(new=st.integers(2, N), data=st.data())
def test_tampered_consistency_refused(new: int, data: st.DataObject) -> None:
    old = data.draw(st.integers(1, new - 1))
    proof = consistency_proof(old, new, BIG)
    old_root, new_root = NAIVE.mth(0, old), NAIVE.mth(0, new)
    with pytest.raises(LogProofError):
        verify_consistency(old, new, _mutations(proof, data), old_root, new_root)
    # A fork: the new tree's entry at some old position differs.
    forked = list(ENTRIES[:new])
    at = data.draw(st.integers(0, old - 1))
    forked[at] = b"forged" + forked[at]
    fork = MemoryHashes([leaf_hash(e) for e in forked])
    with pytest.raises(LogProofError):
        verify_consistency(old, new, consistency_proof(old, new, fork), old_root, fork.root())
    with pytest.raises(LogProofError):  # the proof, but sizes said otherwise
        verify_consistency(old + 1, new, proof, NAIVE.mth(0, old + 1), new_root)


def test_edge_cases_of_the_rfc() -> None:
    r5 = ROOTS[5]
    verify_consistency(0, 5, [], EMPTY_ROOT, r5)  # the empty tree precedes any
    with pytest.raises(LogProofError, match="must be empty"):
        verify_consistency(0, 5, [NODES[0][0]], EMPTY_ROOT, r5)
    verify_consistency(5, 5, [], r5, r5)
    with pytest.raises(LogProofError, match="fork"):
        verify_consistency(5, 5, [], r5, ROOTS[6])
    with pytest.raises(LogProofError, match="must be empty"):
        verify_consistency(5, 5, [NODES[0][0]], r5, r5)
    with pytest.raises(LogProofError, match="rollback"):
        verify_consistency(6, 5, [], ROOTS[6], r5)
    with pytest.raises(LogProofError, match="not in a tree"):
        verify_inclusion(5, 5, NODES[0][0], [], r5)
    with pytest.raises(LogProofError, match="not in a tree"):
        inclusion_proof(5, 5, TREE)
    with pytest.raises(LogProofError, match="shrink"):
        consistency_proof(6, 5, TREE)
    with pytest.raises(LogProofError, match="32 bytes"):
        verify_inclusion(0, 2, NODES[0][0], [NODES[0][1][:31]], ROOTS[2])
    with pytest.raises(LogProofError, match="more than"):
        verify_inclusion(0, 2, NODES[0][0], [NODES[0][1]] * 64, ROOTS[2])
    with pytest.raises(ValueError, match="leaf_hash"):  # entry data instead of its hash
        verify_inclusion(0, 1, LEAVES[0], [], ROOTS[1])
    with pytest.raises(ValueError):
        TREE.subtree(3, 1)


def test_append_reports_the_subtrees_it_completes() -> None:
    t = MemoryHashes()
    rows: dict[tuple[int, int], bytes] = {}
    for d in LEAVES:
        for level, index, h in t.append(leaf_hash(d)):
            assert (level, index) not in rows
            rows[(level, index)] = h
    assert rows == {(lv, i): h for lv, row in enumerate(NODES) for i, h in enumerate(row)}
