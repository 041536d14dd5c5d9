"""Reading the whole log for the audit (gather.read_log) and ``--compare``
(splitview.compare), over trees built in memory and real signed notes.

``read_log`` takes the tile fetch as a function: here a dict of the tiles a
relay would serve (crypto.tlog.tiles), so each test can serve one lie.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sealdrop.client.audit.gather import read_log
from sealdrop.client.audit.splitview import compare
from sealdrop.client.errors import ClientError, LogInclusionError
from sealdrop.crypto.tlog.checkpoint import Checkpoint
from sealdrop.crypto.tlog.merkle import MemoryHashes, leaf_hash
from sealdrop.crypto.tlog.note import NoteSigner, sign_note
from sealdrop.crypto.tlog.tiles import entries_path, join_entry_bundle

ORIGIN = "sealdrop.invalid/relay-test"
LOG = NoteSigner(ORIGIN, b"\x07" * 32)
ENTRIES = [f"sealdrop/transfer/v1\n{i:064x}\n".encode() for i in range(300)]


def checkpoint(entries: list[bytes]) -> tuple[str, Checkpoint]:
    cp = Checkpoint(ORIGIN, len(entries), MemoryHashes([leaf_hash(e) for e in entries]).root())
    return sign_note(cp.text(), [LOG]), cp


def tiles(entries: list[bytes]) -> dict[str, bytes]:
    """The entry tiles of a tree of len(entries): full ones and the partial last."""
    out = {}
    for n in range(0, len(entries), 256):
        chunk = entries[n:n + 256]
        out[entries_path(n // 256, len(chunk))] = join_entry_bundle(chunk)
    return out


def serve(tiles: dict[str, bytes]) -> Callable[[str], bytes]:
    return tiles.__getitem__


def test_every_entry_is_read_across_a_full_and_a_partial_tile() -> None:
    note, cp = checkpoint(ENTRIES)
    served = tiles(ENTRIES)
    assert sorted(served) == ["tile/entries/000", "tile/entries/001.p/44"]
    log = read_log(serve(served), note, cp, now=123)
    assert list(log.entries) == ENTRIES
    assert (log.checkpoint.size, log.checkpoint.root, log.checkpoint.verified_at) == (
        300, cp.root, 123)


def test_an_empty_log_needs_no_tile() -> None:
    cp = Checkpoint(ORIGIN, 0, MemoryHashes().root())
    assert read_log(serve({}), "note", cp).entries == []


def test_an_entry_changed_left_out_or_swapped_in_a_tile_is_refused() -> None:
    note, cp = checkpoint(ENTRIES)
    changed = tiles([*ENTRIES[:10], b"sealdrop/transfer/v1\n" + b"f" * 64 + b"\n",
                     *ENTRIES[11:]])
    with pytest.raises(LogInclusionError, match="do not hash to the root"):
        read_log(serve(changed), note, cp)
    short = tiles(ENTRIES)
    short["tile/entries/001.p/44"] = join_entry_bundle(ENTRIES[256:299])
    with pytest.raises(LogInclusionError, match="holds 43 entries, not 44"):
        read_log(serve(short), note, cp)
    broken = tiles(ENTRIES)
    broken["tile/entries/000"] = b"\x00"
    with pytest.raises(LogInclusionError, match="malformed"):
        read_log(serve(broken), note, cp)


def test_compare_accepts_a_prefix_and_the_same_tree() -> None:
    mine, _ = checkpoint(ENTRIES)
    # as a file read back (no final line break) and as a Windows editor saves it
    prefix = checkpoint(ENTRIES[:77])[0]
    for theirs in (prefix, mine, prefix.rstrip("\n"), mine.replace("\n", "\r\n")):
        seen, failure = compare(mine, theirs, LOG.vkey, ENTRIES)
        assert failure is None and seen.consistent


def test_compare_names_two_histories() -> None:
    mine, _ = checkpoint(ENTRIES)
    fork = [*ENTRIES[:76], b"sealdrop/transfer/v1\n" + b"e" * 64 + b"\n"]
    seen, failure = compare(mine, checkpoint(fork)[0], LOG.vkey, ENTRIES)
    assert not seen.consistent and seen.size == 77
    assert failure is not None and "two different histories" in failure.text
    # The other client saw more than the relay shows now: it went back.
    bigger = [*ENTRIES, b"sealdrop/transfer/v1\n" + b"d" * 64 + b"\n"]
    seen, failure = compare(checkpoint(ENTRIES[:200])[0], checkpoint(bigger)[0], LOG.vkey,
                            ENTRIES[:200])
    assert not seen.consistent
    assert failure is not None and "301 entries, more than the 200 it shows now" in (
        failure.text)


def test_compare_refuses_a_checkpoint_not_signed_by_the_pinned_key() -> None:
    mine, cp = checkpoint(ENTRIES)
    other = sign_note(cp.text(), [NoteSigner(ORIGIN, b"\x08" * 32)])
    with pytest.raises(ClientError, match="not one signed by the relay's pinned key"):
        compare(mine, other, LOG.vkey, ENTRIES)
