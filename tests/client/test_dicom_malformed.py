"""Malformed DICOM: what ``header.read_header`` refuses, and how a send treats it.

pydicom reads leniently (a file cut inside an element or its pixel data reads
"fine"), so these tests check sealdrop's own structural checks
(client/dicom/integrity.py) against pydicom's malformed test files and against
files broken here by hand: truncated at many offsets, a bad preamble, an
element length past the end of the file, broken compressed pixel data.
"""

from __future__ import annotations

import io
import struct
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from sealdrop.client.dicom.header import read_header
from sealdrop.client.dicom.integrity import Malformed
from sealdrop.client.errors import SealError
from sealdrop.client.send.scan import DICOM, OPAQUE, check_malformed, scan
from tests.client.dicomkit import TEST_FILES, pydicom_file
from tests.dcmtk import dcmtk

CT = pydicom_file("CT_small.dcm").read_bytes()
PIXEL_TAG = b"\xe0\x7f\x10\x00"
PIXEL_AT = CT.index(PIXEL_TAG + b"OW")


def read(data: bytes) -> None:
    read_header(io.BytesIO(data), len(data))


@pytest.mark.parametrize("name", [
    "CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "JPEG-lossy.dcm", "SC_rgb_jpeg_gdcm.dcm",
    "SC_rgb_rle_2frame.dcm", "rtplan.dcm", "ExplVR_BigEnd.dcm", "badVR.dcm",
    "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
])
def test_whole_files_read(name: str) -> None:
    """Including compressed pixel data (fragments walked) and odd but whole values."""
    data = pydicom_file(name).read_bytes()
    h = read_header(io.BytesIO(data), len(data))
    assert h.sop_instance_uid and h.sop_class_uid


@pytest.mark.parametrize(("name", "why"), [
    ("no_meta.dcm", "preamble"),  # a bare dataset: no preamble, no DICM
    ("ExplVR_LitEndNoMeta.dcm", "preamble"),
    ("meta_missing_tsyntax.dcm", "transfer syntax"),
    ("rtplan_truncated.dcm", r"element \(300A,00B0\) declares 976 bytes"),
    ("MR_truncated.dcm", "pixel data is truncated"),
    ("SC_rgb_jpeg.dcm", "truncated"),  # dcmdump agrees: "premature end of stream"
])
def test_pydicom_malformed_files(name: str, why: str) -> None:
    with pytest.raises(Malformed, match=why):
        read(pydicom_file(name).read_bytes())


@pytest.mark.parametrize("cut", [0, 100, 131, 132, 133, 200, 400, 900, 1000, 3000, 6000,
                                 PIXEL_AT + 2, PIXEL_AT + 10, PIXEL_AT + 13, len(CT) // 2,
                                 len(CT) - 1])
def test_truncated_anywhere_is_malformed(cut: int) -> None:
    with pytest.raises(Malformed):
        read(CT[:cut])


def test_the_whole_file_is_not_malformed_and_one_byte_short_is() -> None:
    read(CT)
    with pytest.raises(Malformed, match=r"element \(FFFC,FFFC\) is truncated: 126 bytes "
                       "declared, 125 in the file"):  # the trailing padding after the pixels
        read(CT[:-1])
    pixels_end = PIXEL_AT + 12 + 32768
    with pytest.raises(Malformed, match="pixel data is truncated: 32768 bytes declared, "
                       "32767 in the file"):
        read(CT[:pixels_end - 1])


def test_cut_between_two_elements_before_the_pixels() -> None:
    """pydicom sees a complete file without pixel data; an image must have them."""
    rows = CT.index(b"\x28\x00\x10\x00US")  # (0028,0010) Rows: cut just before it
    with pytest.raises(Malformed, match="image without pixel data"):
        read(CT[:rows])


def test_bad_preamble() -> None:
    with pytest.raises(Malformed, match="preamble"):
        read(CT[:128] + b"DICX" + CT[132:])


def test_element_length_past_the_end() -> None:
    at = CT.index(b"\x10\x00\x10\x00PN")  # PatientName, explicit VR little endian
    bad = bytearray(CT)
    bad[at + 6:at + 8] = struct.pack("<H", 0xFFF0)
    with pytest.raises(Malformed, match="runs past the end of the file"):
        read(bytes(bad))


def test_pixel_data_length_past_the_end() -> None:
    bad = bytearray(CT)
    bad[PIXEL_AT + 8:PIXEL_AT + 12] = struct.pack("<L", len(CT))
    with pytest.raises(Malformed, match="pixel data is truncated"):
        read(bytes(bad))


def _encapsulated(tmp_path: Path, frames: int) -> bytes:
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.NumberOfFrames = frames
    ds.PixelData = encapsulate([b"\xff\xd8" + bytes([i]) * 1000 + b"\xff\xd9"
                                for i in range(frames)])
    ds["PixelData"].VR = "OB"
    del ds[0xFFFCFFFC]  # CT_small's trailing padding: the cuts below are in the pixels
    path = tmp_path / "multi.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def test_compressed_fragments_walked_to_the_delimiter(tmp_path: Path) -> None:
    data = _encapsulated(tmp_path, 40)
    read(data)
    for cut in (len(data) - 1, len(data) - 8, len(data) - 500, len(data) // 2 + 3):
        with pytest.raises(Malformed, match="compressed pixel data is truncated"):
            read(data[:cut])


def test_compressed_fragment_with_a_broken_item_tag(tmp_path: Path) -> None:
    data = bytearray(_encapsulated(tmp_path, 3))
    last_item = data.rindex(b"\xfe\xff\x00\xe0")
    data[last_item:last_item + 4] = b"\x08\x00\x16\x00"
    with pytest.raises(Malformed, match="expected a fragment item"):
        read(bytes(data))


class CountingReader(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, n: int | None = -1, /) -> bytes:
        out = super().read(n)
        self.bytes_read += len(out)
        return out


def test_pixel_data_is_never_read(tmp_path: Path) -> None:
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.Rows = ds.Columns = 1024
    ds.PixelData = bytes(2 * 1024 * 1024)
    path = tmp_path / "big.dcm"
    ds.save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    f = CountingReader(data)
    read_header(f, len(data))
    assert f.bytes_read < 64 * 1024 < len(data)


def test_scan_sends_a_malformed_file_as_opaque(tmp_path: Path) -> None:
    case = tmp_path / "case"
    (case / "CBCT").mkdir(parents=True)
    (case / "CBCT" / "IM0001").write_bytes(CT)
    (case / "CBCT" / "IM0003").write_bytes(CT[:5000])  # DICM magic, no extension
    (case / "CBCT" / "old.dcm").write_bytes(pydicom_file("no_meta.dcm").read_bytes())
    (case / "notes.bin").write_bytes(CT[:128] + b"DICX" + CT[132:5000])  # not DICOM at all
    by_name = {f.arcname: f for f in scan([case])}
    good = by_name["case/CBCT/IM0001"]
    assert good.media_type == DICOM and good.dicom is not None and good.malformed is None
    for name in ("case/CBCT/IM0003", "case/CBCT/old.dcm"):
        bad = by_name[name]
        assert bad.media_type == OPAQUE and bad.dicom is None and bad.malformed
    plain = by_name["case/notes.bin"]
    assert plain.media_type == OPAQUE and plain.malformed is None

    warned: list[tuple[str, str]] = []
    check_malformed(by_name.values(), strict=False, warn=lambda n, w: warned.append((n, w)))
    assert [n for n, _ in warned] == ["case/CBCT/IM0003", "case/CBCT/old.dcm"]
    assert "truncated" in warned[0][1] or "declares" in warned[0][1]

    with pytest.raises(SealError, match=r"case/CBCT/IM0003 looks like DICOM but cannot be "
                       r"read \(.*\) \(and 1 more\); nothing was sent \(--strict\)"):
        check_malformed(by_name.values(), strict=True, warn=lambda n, w: warned.append((n, w)))
    assert len(warned) == 2  # strict refuses before warning about anything


def test_strict_passes_a_clean_case(tmp_path: Path) -> None:
    (tmp_path / "IM0001.dcm").write_bytes(CT)
    check_malformed(scan([tmp_path / "IM0001.dcm"]), strict=True,
                    warn=lambda n, w: pytest.fail("no warning expected"))


def test_deflated_dataset_is_checked_by_zlib() -> None:
    """A deflated transfer syntax is inflated into memory by pydicom: its offsets are
    not the file's, so the length checks are skipped and zlib refuses a cut stream."""
    data = pydicom_file("image_dfl.dcm").read_bytes()
    assert read_header(io.BytesIO(data), len(data)).sop_instance_uid
    with pytest.raises(Malformed, match="decompress"):
        read(data[:len(data) // 2])


# Where sealdrop is stricter than dcmdump, on purpose: an image without pixel
# data (these are pydicom's header-only fixtures; a real one was cut before its
# pixels, see test_cut_between_two_elements_before_the_pixels) and no transfer
# syntax (dcmdump guesses one; a PACS may not).
STRICTER_THAN_DCMDUMP = {"UN_sequence.dcm", "no_meta_group_length.dcm", "priv_SQ.dcm",
                         "meta_missing_tsyntax.dcm"}


@pytest.mark.skipif(dcmtk("dcmdump") is None, reason="dcmtk's dcmdump is not installed")
def test_verdicts_agree_with_dcmtk_on_every_pydicom_file() -> None:
    """A real peer's parser as the referee: dcmdump reads the whole file, pixels included."""
    checked = 0
    for path in sorted(TEST_FILES.iterdir()):
        data = path.read_bytes() if path.is_file() else b""
        if data[128:132] != b"DICM" or path.name in STRICTER_THAN_DCMDUMP:
            continue
        r = subprocess.run(["dcmdump", "-q", str(path)], capture_output=True, timeout=60)
        theirs = r.returncode == 0 and b"E:" not in r.stderr
        try:
            read(data)
            ours = True
        except Malformed:
            ours = False
        assert ours == theirs, f"{path.name}: sealdrop says {ours}, dcmdump {theirs}"
        checked += 1
    assert checked > 60
