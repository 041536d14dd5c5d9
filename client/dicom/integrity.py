"""Is a DICOM file whole? Cheap structural checks that pydicom does not make.

pydicom reads leniently: an element whose declared length runs past the end of
the file is returned short, without an error, and ``stop_before_pixels`` never
looks at the pixel data, so a study cut off in the middle of its last file
reads as a healthy header. Three checks close that gap without reading a pixel:

- ``check_lengths``: every top-level element read before the pixel data must
  end inside the file (its value offset plus its declared length, both of
  which pydicom records even for values it deferred).
- ``check_tail``: the pixel data element (where pydicom stopped), and any
  element after it (trailing padding), must end inside the file: for a
  defined length, one comparison and a seek; for encapsulated (compressed)
  pixel data of undefined length, a walk over the fragment item headers, 8
  bytes read per fragment and a seek past each, up to the sequence
  delimiter. Memory and reads stay flat in the file's size.
- ``require_pixel_data``: a file cut exactly between two elements before its
  pixel data passes both checks above, so an image (its SOP class is an
  "Image Storage" class, or it has Rows) must have pixel data.
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
_MAX_ELEMENTS = 100_000  # elements from the pixel data on: real files have one or two


class Malformed(Exception):
    """The file looks like DICOM but is not whole; the message says what is wrong."""


def require_pixel_data(*, sop_class_name: str, has_rows: bool, has_pixels: bool) -> None:
    """An image without pixel data was cut before them (module text)."""
    if has_pixels:
        return
    if "Image Storage" in sop_class_name or has_rows:
        raise Malformed("an image without pixel data: it holds no pixel data, so the file was "
                        "cut before them")


def check_lengths(elements: Iterable[tuple[int, int, int]], size: int) -> None:
    """Each ``(tag, value offset, declared length)`` must end inside a file of ``size``."""
    for tag, offset, length in elements:
        if length == UNDEFINED:
            continue  # pydicom found its delimiter while reading, or raised
        if offset + length > size:
            raise Malformed(f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) declares "
                            f"{length} bytes but the file ends {size - offset} bytes later")


def check_tail(f: BinaryIO, size: int, *, implicit_vr: bool, little_endian: bool) -> None:
    """The elements from ``f``'s position (where pydicom stopped: the pixel data) to the
    end of the file must each end inside it.

    Reads only element headers and seeks past values. An element of undefined
    length other than pixel data (a sequence after the pixel data, which no
    real file has) ends the walk unchecked.
    """
    end = "<" if little_endian else ">"
    for _ in range(_MAX_ELEMENTS):
        start = f.tell()
        if start >= size:
            return
        tag, length, value_at = _element_header(f, start, end, implicit_vr)
        what = "the pixel data" if tag >> 16 == 0x7FE0 else f"element {_tag(tag)}"
        if length == UNDEFINED:
            if tag >> 16 != 0x7FE0:
                return
            _walk_fragments(f, size, end)
            continue
        if value_at + length > size:
            raise Malformed(f"{what} is truncated: {length} bytes declared, "
                            f"{max(size - value_at, 0)} in the file")
        f.seek(value_at + length)
    raise Malformed("too many elements after the pixel data")


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _element_header(f: BinaryIO, start: int, end: str, implicit_vr: bool
                    ) -> tuple[int, int, int]:
    """(tag, declared length, offset of the value) of the element at ``start``."""
    head = f.read(8)
    if len(head) < 8:
        raise Malformed("the file ends inside an element's header")
    group, elem = struct.unpack(end + "HH", head[:4])
    tag = group << 16 | elem
    if implicit_vr:
        return tag, struct.unpack(end + "L", head[4:8])[0], start + 8
    if head[4:6] in _LONG_VRS:
        more = f.read(4)
        if len(more) < 4:
            raise Malformed("the file ends inside an element's header")
        return tag, struct.unpack(end + "L", more)[0], start + 12
    return tag, struct.unpack(end + "H", head[6:8])[0], start + 8


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
