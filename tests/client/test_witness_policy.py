"""The client's cosignature policy (client.witness.policy) and the split-view
comparison (client.witness.compare), over checkpoints built in memory."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from sealdrop.client.errors import ClientError, CosignatureError, SplitViewError
from sealdrop.client.witness.compare import compare_checkpoints
from sealdrop.client.witness.policy import check_cosignatures
from sealdrop.crypto.errors import NoteError
from sealdrop.crypto.tlog.cosignature import CosignatureSigner
from sealdrop.crypto.tlog.merkle import MemoryHashes
from sealdrop.crypto.tlog.note import NoteSigner, NoteVerifier
from tests.witnesskit import LOG_KEY, ORIGIN, Tree, seed

LOG = NoteVerifier.from_vkey(LOG_KEY.vkey)
W = [CosignatureSigner(f"witness.test/w{i}", seed(f"w{i}")) for i in range(4)]
TREE = Tree(7)


def cosigned(*signers: CosignatureSigner, note: str = TREE.note) -> str:
    return note + "".join(s.cosign(TREE.checkpoint.text(), 1_700_000_000 + i)
                          for i, s in enumerate(signers))


def test_n_valid_cosignatures_pass() -> None:
    note = cosigned(W[0], W[1], W[2])
    trusted = [w.vkey for w in W[:3]]
    assert check_cosignatures(note, LOG, trusted, 3) == [w.name for w in W[:3]]
    assert check_cosignatures(note, LOG, trusted, 0) == [w.name for w in W[:3]]
    # Listing a key twice does not make it count twice.
    assert check_cosignatures(cosigned(W[0]), LOG, [W[0].vkey, W[0].vkey], 1) == [W[0].name]
    with pytest.raises(CosignatureError):
        check_cosignatures(cosigned(W[0]), LOG, [W[0].vkey, W[0].vkey], 2)


def test_n_minus_one_is_refused_naming_who_cosigned() -> None:
    with pytest.raises(CosignatureError) as e:
        check_cosignatures(cosigned(W[0], W[1]), LOG, [w.vkey for w in W[:3]], 3)
    assert str(e.value) == ("the relay's checkpoint carries 2 valid witness cosignatures "
                            "(from: witness.test/w0, witness.test/w1); this profile requires 3 "
                            "(none from: witness.test/w2)")
    with pytest.raises(CosignatureError, match="carries 0 valid .* cosignatures .from: none"):
        check_cosignatures(TREE.note, LOG, [W[0].vkey], 1)


def test_a_cosignature_from_an_unknown_key_does_not_count() -> None:
    note = cosigned(W[0], W[3])  # W[3] is not trusted by this profile
    with pytest.raises(CosignatureError, match="carries 1 valid .*from: witness.test/w0\\)"):
        check_cosignatures(note, LOG, [W[0].vkey, W[1].vkey], 2)
    # Same name as a trusted witness, another key: not that witness.
    impostor = CosignatureSigner(W[1].name, seed("impostor"))
    with pytest.raises(CosignatureError, match="carries 1 valid"):
        check_cosignatures(cosigned(W[0], impostor), LOG, [W[0].vkey, W[1].vkey], 2)


def test_a_tampered_cosignature_is_refused_and_named() -> None:
    line = W[1].cosign(TREE.checkpoint.text(), 1_700_000_000)
    name, b64 = line[2:].rstrip("\n").split(" ")
    raw = bytearray(base64.b64decode(b64))
    raw[-1] ^= 1  # one bit of the signature
    tampered = f"\u2014 {name} {base64.b64encode(bytes(raw)).decode()}\n"
    note = cosigned(W[0]) + tampered
    with pytest.raises(CosignatureError) as e:
        check_cosignatures(note, LOG, [W[0].vkey, W[1].vkey], 2)
    assert "carries 1 valid" in str(e.value)
    assert "does not verify from witness.test/w1" in str(e.value)
    # A valid cosignature of ANOTHER checkpoint moved onto this one.
    other = Tree(8)
    moved = TREE.note + W[1].cosign(other.checkpoint.text(), 1_700_000_000)
    with pytest.raises(CosignatureError, match="does not verify from witness.test/w1"):
        check_cosignatures(moved, LOG, [W[1].vkey], 1)


def test_the_relays_own_signature_is_required() -> None:
    impostor = Tree(7, signer=NoteSigner(ORIGIN, seed("not the log")))
    with pytest.raises(NoteError):
        check_cosignatures(impostor.note + W[0].cosign(impostor.checkpoint.text(), 1),
                           LOG, [W[0].vkey], 1)
    with pytest.raises(ClientError, match="not a cosignature vkey"):
        check_cosignatures(TREE.note, LOG, [LOG_KEY.vkey], 1)  # a log key, not a witness's


# -- split views -------------------------------------------------------------------

BIG = Tree(23)


def tiles(tree: Tree) -> Callable[[int], MemoryHashes]:
    """What the relay's tiles would give: its tree's hashes, asked at the larger size."""
    def hashes_for_size(size: int) -> MemoryHashes:
        assert size == 23  # the larger of the two checkpoints compared, always BIG's here
        return tree.hashes
    return hashes_for_size


def test_a_prefix_and_equal_checkpoints_are_one_history() -> None:
    for small in (1, 7, 16, 22):
        a, b = compare_checkpoints(Tree(small).note, BIG.note, LOG, tiles(BIG))
        assert (a.size, b.size) == (small, 23)
        a, b = compare_checkpoints(BIG.note, Tree(small).note, LOG, tiles(BIG))
        assert (a.size, b.size) == (23, small)
    assert compare_checkpoints(BIG.note, Tree(23).note, LOG, tiles(BIG))[0] == BIG.checkpoint


def test_two_histories_are_a_split_view() -> None:
    with pytest.raises(SplitViewError, match="^the relay showed two different histories: "
                                             "two checkpoints of size 23 with different roots"):
        compare_checkpoints(BIG.note, Tree(23, fork_at=22).note, LOG, tiles(BIG))
    forked = Tree(9, fork_at=4)  # size 9, but not the first 9 entries of BIG
    # Whichever history the relay's tiles then show, no proof joins the two.
    for relay in (BIG, Tree(23, fork_at=4)):
        with pytest.raises(SplitViewError, match="checkpoint of size 9 is not a prefix of "
                                                 "its checkpoint of size 23"):
            compare_checkpoints(forked.note, BIG.note, LOG, tiles(relay))


def test_a_checkpoint_the_relay_did_not_sign_proves_nothing() -> None:
    impostor = Tree(23, fork_at=3, signer=NoteSigner(ORIGIN, seed("not the log")))
    with pytest.raises(ClientError, match="^the other checkpoint is not one signed by the "
                                          "relay's pinned key") as e:
        compare_checkpoints(BIG.note, impostor.note, LOG, tiles(BIG))
    assert not isinstance(e.value, SplitViewError)
