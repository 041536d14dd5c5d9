"""Photos lose their metadata, losslessly (client/dicom/photos.py).

The photos are built here with Pillow: a JPEG with EXIF (GPS position, camera,
date, orientation), XMP, a comment and a phone's trailer after the image; a
PNG with text, compressed text, international text (XMP) and EXIF chunks.
"""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image, PngImagePlugin

from sealdrop.client.dicom.photos import (
    JPEG,
    PNG,
    PhotoError,
    photo_kind,
    strip_jpeg,
    strip_metadata,
    strip_png,
)

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def _image() -> Image.Image:
    im = Image.new("RGB", (64, 48))
    im.putdata([((x * 4) % 256, (y * 5) % 256, (x * y) % 256)
                for y in range(48) for x in range(64)])
    return im


def _jpeg_with_gps(orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0132] = "2026:11:30 10:00:00"  # DateTime
    exif[ORIENTATION] = orientation
    exif[GPS_IFD] = {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)}
    buf = io.BytesIO()
    _image().save(buf, "JPEG", exif=exif.tobytes(), quality=90,
                  comment=b"DUPONT Marie", icc_profile=b"fake-icc" * 4)
    data = buf.getvalue()
    # an XMP packet (APP1) after the EXIF, and a trailer after end-of-image
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>DUPONT</x:xmpmeta>"
    app1 = b"\xff\xe1" + struct.pack(">H", len(xmp) + 2) + xmp
    return data[:2] + app1 + data[2:] + b"TRAILER-with-GPS-48.85"


def test_jpeg_loses_exif_gps_xmp_comment_and_trailer_keeps_coded_image() -> None:
    src = _jpeg_with_gps()
    out = strip_metadata(src)
    with Image.open(io.BytesIO(src)) as im:
        assert GPS_IFD in im.getexif()  # the test photo does carry a position
    with Image.open(io.BytesIO(out)) as im:
        exif = im.getexif()
        assert dict(exif) == {ORIENTATION: 6}  # orientation only: no GPS, make, date
        assert "comment" not in im.info
        assert im.info.get("icc_profile") == b"fake-icc" * 4  # colour kept
        pixels = im.convert("RGB").tobytes()
    for leak in (b"DUPONT", b"PhoneMaker", b"2026:11:30", b"TRAILER", b"xmpmeta"):
        assert leak not in out
    # the bytes after the metadata (tables, frame, scan, coded data) are identical
    start_src, start_out = src.index(b"\xff\xdb"), out.index(b"\xff\xdb")
    end_src = src.index(b"TRAILER")
    assert out[start_out:] == src[start_src:end_src]
    with Image.open(io.BytesIO(src)) as im:
        assert im.convert("RGB").tobytes() == pixels


def test_jpeg_without_orientation_gets_no_exif_at_all() -> None:
    out = strip_jpeg(_jpeg_with_gps(orientation=1))
    assert b"Exif" not in out


def test_strip_is_idempotent() -> None:
    once = strip_metadata(_jpeg_with_gps())
    assert strip_metadata(once) == once


def _png_with_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Dr DUPONT")
    info.add_text("Comment", "patient DUPONT Marie", zip=True)
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>GPS 48.85</x:xmpmeta>")
    exif = Image.Exif()
    exif[GPS_IFD] = {1: "N", 2: (48.0, 51.0, 24.0)}
    buf = io.BytesIO()
    _image().save(buf, "PNG", pnginfo=info, exif=exif.tobytes(), dpi=(300, 300))
    return buf.getvalue()


def test_png_loses_text_and_exif_chunks_pixels_identical() -> None:
    src = _png_with_text()
    out = strip_metadata(src)
    for chunk in (b"tEXt", b"zTXt", b"iTXt", b"eXIf"):
        assert chunk in src and chunk not in out
    for leak in (b"DUPONT", b"xmpmeta"):
        assert leak not in out
    with Image.open(io.BytesIO(src)) as a, Image.open(io.BytesIO(out)) as b:
        assert a.tobytes() == b.tobytes() and a.size == b.size and a.mode == b.mode
        assert not b.getexif()
        assert round(b.info["dpi"][0]) == 300  # pHYs: how to show the pixels, kept
        assert not {"Author", "Comment", "XML:com.adobe.xmp"} & set(b.info)


def test_kind_by_content_not_name() -> None:
    assert photo_kind(_jpeg_with_gps()[:8]) == JPEG
    assert photo_kind(_png_with_text()[:8]) == PNG
    assert photo_kind(b"%PDF-1.4") is None


@pytest.mark.parametrize("data, what", [
    (b"%PDF-1.4 not an image", "not a JPEG or PNG"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "(?i)truncated"),
    # Pillow (reading the orientation) or our parser: either refuses, loudly
    (b"\xff\xd8\xff\xe1\xff\xffExif", "overruns|cannot be read"),
    (b"\xff\xd8\xff\xdb\x00\x04\x00\x00\x00\x00", "marker was expected|cannot be read"),
])
def test_bad_jpegs_refused(data: bytes, what: str) -> None:
    with pytest.raises(PhotoError, match=what):
        strip_metadata(data)


def test_truncated_jpeg_scan_refused() -> None:
    src = _jpeg_with_gps()
    cut = src[: src.index(b"TRAILER") - 200]  # end-of-image marker gone
    with pytest.raises(PhotoError, match="truncated"):
        strip_jpeg(cut)


def test_bad_pngs_refused() -> None:
    src = _png_with_text()
    with pytest.raises(PhotoError, match="truncated"):
        strip_png(src[:-20])
    # a flipped byte inside the IHDR chunk: its CRC no longer matches
    bad = bytearray(src)
    bad[20] ^= 0xFF
    with pytest.raises(PhotoError, match="checksum"):
        strip_png(bytes(bad))
    # a PNG whose image data is garbage (valid CRCs) does not open afterwards
    ihdr_end = 8 + 12 + 13
    junk = b"IDAT" + b"\x00" * 10
    idat = struct.pack(">I", 10) + junk + struct.pack(">I", zlib.crc32(junk))
    broken = src[:ihdr_end] + idat + b"\x00\x00\x00\x00IEND\xaeB`\x82"
    with pytest.raises(PhotoError):
        strip_metadata(broken)
