"""Photos without their metadata: EXIF (and its GPS), XMP, IPTC, comments, PNG text.

    JPEG/PNG bytes --> the same image, metadata segments or chunks dropped

Lossless on purpose: a lab matches a tooth's shade on these photos, so the
pixels are never decoded and re-compressed. A JPEG keeps its markers up to and
including the entropy-coded data byte for byte, minus every APPn segment but
JFIF (APP0), the ICC colour profile (APP2 ``ICC_PROFILE``) and Adobe's colour
transform flag (APP14), which decoding and colour need, and minus comments
(COM). Anything after the end-of-image marker (a phone's trailer, an MPF
second image with its own EXIF) is dropped. The EXIF orientation, and only it,
is written back as a minimal EXIF segment, so that a portrait photo is not
shown on its side. A PNG keeps its critical chunks and those that say how to
show the pixels (transparency, gamma, colour space, physical size, animation);
text, EXIF, time and unknown chunks go.

Pillow parses the orientation, builds the minimal EXIF, and checks that the
result still opens as an image.
"""

from __future__ import annotations

import io
import struct
import zlib

from ..errors import ClientError

JPEG = "image/jpeg"
PNG = "image/png"
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_ORIENTATION = 0x0112


class PhotoError(ClientError):
    """A photo's metadata could not be removed: it is never sent as it was."""


def photo_kind(head: bytes) -> str | None:
    """JPEG or PNG by the file's first bytes (not by its name), else None."""
    if head.startswith(_JPEG_MAGIC):
        return JPEG
    if head.startswith(_PNG_MAGIC):
        return PNG
    return None


def strip_metadata(data: bytes) -> bytes:
    """``data`` (a JPEG or PNG) without its metadata; PhotoError if it is neither or broken."""
    kind = photo_kind(data[:8])
    if kind == JPEG:
        out = strip_jpeg(data)
    elif kind == PNG:
        out = strip_png(data)
    else:
        raise PhotoError("not a JPEG or PNG image")
    _check_opens(out)
    return out


# --- JPEG -------------------------------------------------------------------------------

_SOI, _EOI, _SOS, _COM = 0xD8, 0xD9, 0xDA, 0xFE
_APP0, _APP2, _APP14 = 0xE0, 0xE2, 0xEE
# Markers without a length field: RSTn, SOI, EOI, TEM.
_STANDALONE = {*range(0xD0, 0xD8), _SOI, _EOI, 0x01}


def _keep_segment(marker: int, body: bytes) -> bool:
    if marker == _APP0:
        return body.startswith((b"JFIF\x00", b"JFXX\x00"))
    if marker == _APP2:
        return body.startswith(b"ICC_PROFILE\x00")
    if marker == _APP14:
        return body.startswith(b"Adobe")
    if 0xE0 <= marker <= 0xEF or marker == _COM:
        return False  # EXIF/XMP (APP1), MPF/FlashPix (APP2), IPTC (APP13), vendors, comments
    return True  # tables, frame and scan headers: what decoding needs


def strip_jpeg(data: bytes) -> bytes:
    """The JPEG without metadata segments and trailer; the coded image bytes unchanged."""
    if not data.startswith(b"\xff\xd8"):
        raise PhotoError("not a JPEG image")
    out = bytearray(b"\xff\xd8")
    orientation = _orientation(data)
    if orientation not in (None, 1):
        out += _exif_segment(orientation)
    pos, n = 2, len(data)
    in_scan = False
    while pos < n:
        if in_scan:
            # Entropy-coded data: a 0xFF is stuffed (FF00), a restart marker or fill.
            nxt = data.find(b"\xff", pos)
            if nxt < 0 or nxt + 1 >= n:
                raise PhotoError("the JPEG image is truncated (no end-of-image marker)")
            b = data[nxt + 1]
            if b == 0x00 or 0xD0 <= b <= 0xD7 or b == 0xFF:
                out += data[pos:nxt + (1 if b == 0xFF else 2)]
                pos = nxt + (1 if b == 0xFF else 2)
                continue
            out += data[pos:nxt]
            pos = nxt
            in_scan = False
            continue
        if data[pos] != 0xFF:
            raise PhotoError("the JPEG image is damaged (a marker was expected)")
        while pos < n and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= n:
            raise PhotoError("the JPEG image is truncated")
        marker = data[pos]
        pos += 1
        if marker == _EOI:
            out += b"\xff\xd9"
            return bytes(out)  # anything after is a trailer: dropped
        if marker in _STANDALONE:
            out += bytes((0xFF, marker))
            continue
        if pos + 2 > n:
            raise PhotoError("the JPEG image is truncated")
        (length,) = struct.unpack(">H", data[pos:pos + 2])
        if length < 2 or pos + length > n:
            raise PhotoError("the JPEG image is damaged (a segment overruns the file)")
        body = data[pos + 2:pos + length]
        if _keep_segment(marker, body):
            out += bytes((0xFF, marker)) + data[pos:pos + length]
        pos += length
        if marker == _SOS:
            in_scan = True
    raise PhotoError("the JPEG image is truncated (no end-of-image marker)")


def _orientation(data: bytes) -> int | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            value = im.getexif().get(_ORIENTATION)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PhotoError(f"the image cannot be read: {exc}") from exc
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def _exif_segment(orientation: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[_ORIENTATION] = orientation
    payload = exif.tobytes()  # starts with "Exif\0\0"
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


# --- PNG --------------------------------------------------------------------------------

# Critical chunks, and the ancillary ones that change how the pixels look.
_PNG_KEEP = {
    b"IHDR", b"PLTE", b"IDAT", b"IEND",
    b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT", b"bKGD", b"pHYs",
    b"cICP", b"mDCV", b"cLLI", b"acTL", b"fcTL", b"fdAT",
}


def strip_png(data: bytes) -> bytes:
    """The PNG with only the chunks in _PNG_KEEP, each byte for byte (CRC checked)."""
    if not data.startswith(_PNG_MAGIC):
        raise PhotoError("not a PNG image")
    out = bytearray(_PNG_MAGIC)
    pos, n = len(_PNG_MAGIC), len(data)
    while pos + 12 <= n:
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        ctype = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > n:
            raise PhotoError("the PNG image is truncated")
        chunk = data[pos:end]
        (crc,) = struct.unpack(">I", chunk[-4:])
        if zlib.crc32(chunk[4:-4]) != crc:
            raise PhotoError(f"the PNG image is damaged (bad checksum in {ctype!r} chunk)")
        if ctype in _PNG_KEEP:
            out += chunk
        pos = end
        if ctype == b"IEND":
            return bytes(out)  # anything after is a trailer: dropped
    raise PhotoError("the PNG image is truncated (no IEND chunk)")


def _check_opens(data: bytes) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        # A full decode (not verify(), which only checks checksums): what
        # leaves must be a photo the lab can open.
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PhotoError(f"the image cannot be read once its metadata is removed: {exc}") from exc
