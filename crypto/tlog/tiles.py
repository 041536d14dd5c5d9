"""C2SP tlog-tiles: the tree served as static tiles of hashes and entries.

A tile at level L holds up to 256 consecutive hashes of tree level 8L: leaf
hashes at level 0, at level 1 the roots of full level-0 tiles, and so on. The
rightmost tile of a level is partial (``.p/<width>``) until it fills; an entry
bundle holds the entries behind one level-0 tile. Tiles are immutable once
full, so any cache or object store can hold them; nothing in them is trusted:
hashes read from tiles only matter through proofs checked against a signed
checkpoint.

Index ``1234067`` is written ``x001/x234/067`` (3-digit groups, all but the
last prefixed with ``x``), so a filesystem or a bucket can serve the paths.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Literal

from ..errors import LogFormatError
from .merkle import HASH_SIZE, node_hash

TILE_HEIGHT = 8
TILE_WIDTH = 256
MAX_LEVEL = 63
MAX_ENTRY = 0xFFFF
_PATH = re.compile(
    r"tile/(entries|0|[1-9][0-9]?)/((?:x[0-9]{3}/)*[0-9]{3})(?:\.p/([1-9][0-9]{0,2}))?"
)


def _index_path(index: int) -> str:
    if not isinstance(index, int) or index < 0:
        raise LogFormatError("a tile index must be a non-negative integer")
    parts = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        parts.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(parts))


def _suffix(width: int) -> str:
    if not isinstance(width, int) or not 1 <= width <= TILE_WIDTH:
        raise LogFormatError(f"a tile's width must be between 1 and {TILE_WIDTH}")
    return "" if width == TILE_WIDTH else f".p/{width}"


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """``tile/<L>/<N>[.p/<W>]``, e.g. ``tile/0/x001/x234/067.p/5``."""
    if not isinstance(level, int) or not 0 <= level <= MAX_LEVEL:
        raise LogFormatError(f"a tile level must be between 0 and {MAX_LEVEL}")
    return f"tile/{level}/{_index_path(index)}{_suffix(width)}"


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    """``tile/entries/<N>[.p/<W>]``: the entries behind level-0 tile N."""
    return f"tile/entries/{_index_path(index)}{_suffix(width)}"


def parse_tile_path(path: str) -> tuple[int | Literal["entries"], int, int]:
    """(level or "entries", index, width) of a canonical tile path; anything
    else (leading zeros, ``x000`` groups, ``.p/256``...) is LogFormatError."""
    m = _PATH.fullmatch(path) if isinstance(path, str) else None
    if m is None:
        raise LogFormatError("not a tile path: tile/<level>/<index>[.p/<width>]")
    kind, digits, w = m.groups()
    index = int(digits.replace("x", "").replace("/", ""))
    width = int(w) if w is not None else TILE_WIDTH
    level: int | Literal["entries"] = "entries" if kind == "entries" else int(kind)
    if level != "entries" and level > MAX_LEVEL:
        raise LogFormatError(f"a tile level must be between 0 and {MAX_LEVEL}")
    canonical = (
        entries_path(index, width) if level == "entries" else tile_path(level, index, width)
    ) if width <= TILE_WIDTH else ""
    if canonical != path:
        raise LogFormatError("the tile path is not in its canonical form")
    return level, index, width


def tile_width(level: int, index: int, size: int) -> int:
    """How many hashes tile (level, index) holds in a tree of ``size`` leaves:
    256 when full, 1..255 when partial, 0 when it does not exist yet.
    The same for the entry bundle ``index`` at level 0."""
    if level < 0 or index < 0 or size < 0:
        return 0
    return max(0, min(TILE_WIDTH, (size >> (TILE_HEIGHT * level)) - index * TILE_WIDTH))


def tiles_for_size(size: int) -> Iterator[tuple[int, int, int]]:
    """(level, index, width) of every tile a tree of ``size`` leaves has,
    level by level; the last of each level may be partial."""
    level = 0
    while size >> (TILE_HEIGHT * level):
        hashes = size >> (TILE_HEIGHT * level)
        for index in range((hashes + TILE_WIDTH - 1) // TILE_WIDTH):
            yield level, index, tile_width(level, index, size)
        level += 1


def join_entry_bundle(entries: list[bytes]) -> bytes:
    """Each entry as a big-endian uint16 length and its bytes."""
    if not 1 <= len(entries) <= TILE_WIDTH:
        raise LogFormatError(f"an entry bundle holds 1 to {TILE_WIDTH} entries")
    out = bytearray()
    for e in entries:
        if len(e) > MAX_ENTRY:
            raise LogFormatError("a log entry is longer than an entry bundle can hold")
        out += len(e).to_bytes(2, "big") + e
    return bytes(out)


def split_entry_bundle(data: bytes) -> list[bytes]:
    """The entries of a bundle; a truncated or overlong one is LogFormatError."""
    entries: list[bytes] = []
    at = 0
    while at < len(data):
        if at + 2 > len(data):
            raise LogFormatError("an entry bundle ends inside an entry's length")
        n = int.from_bytes(data[at : at + 2], "big")
        if at + 2 + n > len(data):
            raise LogFormatError("an entry bundle ends inside an entry")
        entries.append(bytes(data[at + 2 : at + 2 + n]))
        at += 2 + n
    if not 1 <= len(entries) <= TILE_WIDTH:
        raise LogFormatError(f"an entry bundle holds 1 to {TILE_WIDTH} entries")
    return entries


class TileHashes:
    """Complete-subtree hashes of a tree of ``size`` leaves, read from tiles.

    ``fetch(path)`` returns a tile's bytes (over HTTP, from a bucket...); each
    path is fetched once. The tile is asked for at the width the tree of
    ``size`` gives it: the full tile, or ``.p/W`` while it is partial. A tile
    of the wrong length is LogFormatError. No hash here is trusted: proofs
    made from them are verified against a signed root.
    """

    def __init__(self, size: int, fetch: Callable[[str], bytes]) -> None:
        if size < 0:
            raise ValueError("a tree size is non-negative")
        self.size = size
        self._fetch = fetch
        self._tiles: dict[str, bytes] = {}

    def tile(self, level: int, index: int) -> bytes:
        """The bytes of tile (level, index) at this tree size, checked for length."""
        width = tile_width(level, index, self.size)
        if width == 0:
            raise ValueError(f"tile {level}/{index} does not exist at size {self.size}")
        path = tile_path(level, index, width)
        data = self._tiles.get(path)
        if data is None:
            data = self._fetch(path)
            if len(data) != width * HASH_SIZE:
                raise LogFormatError(
                    f"the log's tile {path} is {len(data)} bytes, not {width * HASH_SIZE}"
                )
            self._tiles[path] = data
        return data

    def subtree(self, level: int, index: int) -> bytes:
        if level < 0 or index < 0 or (index + 1) << level > self.size:
            raise ValueError(
                f"no complete subtree at level {level}, index {index} in a tree of {self.size}"
            )
        tile_level, height = divmod(level, TILE_HEIGHT)
        # The subtree's 2**height nodes at tree level 8*tile_level sit in one tile.
        first = index << height
        data = self.tile(tile_level, first // TILE_WIDTH)
        at = first % TILE_WIDTH
        row = [
            data[i * HASH_SIZE : (i + 1) * HASH_SIZE] for i in range(at, at + (1 << height))
        ]
        while len(row) > 1:
            row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
        return row[0]
