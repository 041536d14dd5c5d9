"""Tile paths and widths (the C2SP tlog-tiles examples), entry bundles, and
proofs computed from tiles equal to those computed from the whole tree."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from sealdrop.crypto.errors import LogFormatError, LogProofError
from sealdrop.crypto.tlog.merkle import (
    HASH_SIZE,
    MemoryHashes,
    consistency_proof,
    inclusion_proof,
    root,
    verify_consistency,
    verify_inclusion,
)
from sealdrop.crypto.tlog.tiles import (
    TILE_WIDTH,
    TileHashes,
    entries_path,
    join_entry_bundle,
    parse_tile_path,
    split_entry_bundle,
    tile_path,
    tile_width,
    tiles_for_size,
)


def test_paths_from_the_spec() -> None:
    assert tile_path(0, 1234067, 5) == "tile/0/x001/x234/067.p/5"
    assert tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert tile_path(2, 0) == "tile/2/000"
    assert tile_path(1, 1000) == "tile/1/x001/000"
    assert entries_path(1234067) == "tile/entries/x001/x234/067"
    assert entries_path(7, 255) == "tile/entries/007.p/255"
    for path, want in [
        ("tile/0/x001/x234/067.p/5", (0, 1234067, 5)),
        ("tile/63/999", (63, 999, 256)),
        ("tile/entries/x001/000", ("entries", 1000, 256)),
        ("tile/entries/000.p/1", ("entries", 0, 1)),
    ]:
        assert parse_tile_path(path) == want


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/67", "tile/0/0067", "tile/0/x000/067", "tile/00/067", "tile/64/000",
        "tile/0/067.p/256", "tile/0/067.p/0", "tile/0/067.p/05", "tile/0/067.p/300",
        "tile/0/001/067", "tile/0/x1/067", "/tile/0/067", "tile/0/067/", "tile/-1/000",
        "tile/entries/067.p/", "tile/data/000", "tile/0/x001/x234/067.p/5\n", "",
    ],
)
def test_non_canonical_paths_refused(path: str) -> None:
    with pytest.raises(LogFormatError):
        parse_tile_path(path)


def test_bad_arguments_refused() -> None:
    for bad in (lambda: tile_path(64, 0), lambda: tile_path(0, -1), lambda: tile_path(0, 0, 0),
                lambda: tile_path(0, 0, 257), lambda: entries_path(0, 0)):
        with pytest.raises(LogFormatError):
            bad()


def test_widths_from_the_spec() -> None:
    # "a tree of size 70,000 will be represented by 273 full level 0 tiles, one
    # partial level 0 tile of width 112, one full level 1 tile, one partial
    # level 1 tile of width 17, and one partial level 2 tile of width 1."
    tiles = list(tiles_for_size(70_000))
    assert [t for t in tiles if t[0] == 0] == [(0, i, 256) for i in range(273)] + [(0, 273, 112)]
    assert [t for t in tiles if t[0] > 0] == [(1, 0, 256), (1, 1, 17), (2, 0, 1)]
    # "a tree of size 256 will be represented by a full level 0 tile and a
    # partial level 1 tile of width 1."
    assert list(tiles_for_size(256)) == [(0, 0, 256), (1, 0, 1)]
    assert list(tiles_for_size(0)) == []
    assert tile_width(0, 274, 70_000) == 0 and tile_width(3, 0, 70_000) == 0


def test_entry_bundles() -> None:
    entries = [b"", b"a", b"x" * 300, b"\x00\xff"]
    data = join_entry_bundle(entries)
    assert data[:5] == b"\x00\x00\x00\x01a"
    assert split_entry_bundle(data) == entries
    assert split_entry_bundle(join_entry_bundle([b"e"] * 256)) == [b"e"] * 256
    for bad, what in [
        (data[:-1], "inside an entry"),
        (data + b"\x00", "inside an entry's length"),
        (data + b"\x00\x05abc", "inside an entry"),
        (b"", "1 to 256"),
        (join_entry_bundle([b"e"] * 256) + b"\x00\x00", "1 to 256"),
    ]:
        with pytest.raises(LogFormatError, match=what):
            split_entry_bundle(bad)
    with pytest.raises(LogFormatError, match="longer"):
        join_entry_bundle([b"x" * 65536])
    with pytest.raises(LogFormatError, match="1 to 256"):
        join_entry_bundle([])


SIZE = 65_536 + 2 * 256 + 7  # a level-2 tile exists; partial tiles on levels 0 and 1
TREE = MemoryHashes([hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(SIZE)])


def _server(size: int, served: list[str]) -> Callable[[str], bytes]:
    """A log serving exactly the tiles a tree of ``size`` has (as the relay
    would), recording every path it is asked for."""
    def fetch(path: str) -> bytes:
        served.append(path)
        level, index, width = parse_tile_path(path)
        assert level != "entries"
        assert tile_width(level, index, size) == width, f"{path} does not exist at {size}"
        return b"".join(
            TREE.subtree(8 * level, index * TILE_WIDTH + i) for i in range(width)
        )
    return fetch


@pytest.mark.parametrize("size", [1, 2, 255, 256, 257, 511, 512, 4097, 65_536, SIZE])
def test_proofs_from_tiles_match_the_whole_tree(size: int) -> None:
    served: list[str] = []
    tiles = TileHashes(size, _server(size, served))
    want_root = root(size, TREE)
    assert root(size, tiles) == want_root
    for index in {0, size // 3, size - 1}:
        proof = inclusion_proof(index, size, tiles)
        assert proof == inclusion_proof(index, size, TREE)
        verify_inclusion(index, size, TREE.subtree(0, index), proof, want_root)
    for old in {1, size // 2, size - 1}:
        if 0 < old < size:
            proof = consistency_proof(old, size, tiles)
            assert proof == consistency_proof(old, size, TREE)
            verify_consistency(old, size, proof, root(old, TREE), want_root)
    assert len(served) == len(set(served))  # each tile fetched once


def test_a_short_tile_is_refused() -> None:
    good = _server(300, [])
    tiles = TileHashes(300, lambda path: good(path)[:-1])
    with pytest.raises(LogFormatError, match="tile/1/000.p/1 is 31 bytes, not 32"):
        root(300, tiles)
    with pytest.raises(LogFormatError, match="tile/0/000 is 8191 bytes, not 8192"):
        tiles.subtree(0, 5)
    with pytest.raises(ValueError):
        tiles.subtree(0, 300)


def test_a_lying_tile_yields_proofs_that_do_not_verify() -> None:
    size = 1000
    good = _server(size, [])

    def lying(target: str, hash_index: int) -> Callable[[str], bytes]:
        def fetch(path: str) -> bytes:
            data = bytearray(good(path))
            if path == target:
                data[HASH_SIZE * hash_index] ^= 1
            return bytes(data)
        return fetch

    signed_root = root(size, TREE)
    leaves = TileHashes(size, lying("tile/0/001", 10))  # leaf 266 altered
    # Any proof that reads the lie fails; the rest stay true.
    with pytest.raises(LogProofError):
        verify_inclusion(
            266, size, leaves.subtree(0, 266), inclusion_proof(266, size, leaves), signed_root
        )
    with pytest.raises(LogProofError):
        verify_consistency(
            300, size, consistency_proof(300, size, leaves), root(300, TREE), signed_root
        )
    verify_inclusion(5, size, TREE.subtree(0, 5), inclusion_proof(5, size, leaves), signed_root)
    upper = TileHashes(size, lying("tile/1/000.p/3", 1))  # leaves 256..511 as one hash
    assert root(size, upper) != signed_root
    with pytest.raises(LogProofError):
        verify_inclusion(5, size, TREE.subtree(0, 5), inclusion_proof(5, size, upper), signed_root)
