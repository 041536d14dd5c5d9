"""Is a DICOM file whole? Cheap structural checks that pydicom does not make.

pydicom reads leniently: an element whose declared length runs past the end of
the file is returned short, without an error, and ``stop_before_pixels`` never
looks at the pixel data, so a study cut off in the middle of its last file
reads as a healthy header. Two checks close that gap without reading a pixel:

- ``check_lengths``: every top-level element read before the pixel data must
  end inside the file (its value offset plus its declared length, both of
  which pydicom records even for values it deferred).
- ``check_pixel_data``: the pixel data element (where pydicom stopped) must end
  inside the file: for a defined length, one comparison; for encapsulated
  (compressed) pixel data of undefined length, a walk over the fragment item
  headers, 8 bytes read per fragment and a seek past each, up to the
  sequence delimiter. Memory and reads stay flat in the file's size.

Elements after the pixel data (rare: trailing padding) are not checked.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import BinaryIO

UNDEFINED = 0xFFFFFFFF
_ITEM = (0xFFFE, 0xE000)
_SEQ_DELIMITER = (0xFFFE, 0xE0DD)
# Explicit VR: these VRs have 2 reserved bytes and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"}
_MAX_FRAGMENTS = 10_000_000  # a bound on the walk, far above any real multi-frame file


class Malformed(Exception):
    """The file looks like DICOM but is not whole; the message says what is wrong."""


def check_lengths(elements: Iterable[tuple[int, int, int]], size: int) -> None:
    """Each ``(tag, value offset, declared length)`` must end inside a file of ``size``."""
    for tag, offset, length in elements:
        if length == UNDEFINED:
            continue  # pydicom found its delimiter while reading, or raised
        if offset + length > size:
            raise Malformed(f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) declares "
                            f"{length} bytes but the file ends {size - offset} bytes later")


def check_pixel_data(f: BinaryIO, size: int, *, implicit_vr: bool, little_endian: bool) -> None:
    """The element starting at ``f``'s position (the pixel data) must end inside the file.

    Does nothing at the end of the file (a header without pixel data).
    """
    start = f.tell()
    if start >= size:
        return
    end = "<" if little_endian else ">"
    head = f.read(8)
    if len(head) < 8:
        raise Malformed("the file ends inside the pixel data element's header")
    if implicit_vr:
        length = struct.unpack(end + "L", head[4:8])[0]
        value_at = start + 8
    elif head[4:6] in _LONG_VRS:
        more = f.read(4)
        if len(more) < 4:
            raise Malformed("the file ends inside the pixel data element's header")
        length = struct.unpack(end + "L", more)[0]
        value_at = start + 12
    else:
        length = struct.unpack(end + "H", head[6:8])[0]
        value_at = start + 8
    if length != UNDEFINED:
        if value_at + length > size:
            raise Malformed(f"the pixel data is truncated: {length} bytes declared, "
                            f"{size - value_at} in the file")
        return
    _walk_fragments(f, size, end)


def _walk_fragments(f: BinaryIO, size: int, end: str) -> None:
    # Encapsulated pixel data is always little endian (PS3.5 A.4), but a file
    # that says otherwise is read as it says; a wrong guess fails loudly here.
    for _ in range(_MAX_FRAGMENTS):
        at = f.tell()
        head = f.read(8)
        if len(head) < 8:
            raise Malformed("the compressed pixel data is truncated (no sequence delimiter "
                            "before the end of the file)")
        group, elem, length = struct.unpack(end + "HHL", head)
        if (group, elem) == _SEQ_DELIMITER:
            return
        if (group, elem) != _ITEM or length == UNDEFINED:
            raise Malformed(f"the compressed pixel data is broken at byte {at} "
                            "(expected a fragment item)")
        if at + 8 + length > size:
            raise Malformed(f"the compressed pixel data is truncated: a fragment declares "
                            f"{length} bytes, {size - at - 8} are left in the file")
        f.seek(at + 8 + length)
    raise Malformed("the compressed pixel data has too many fragments")
