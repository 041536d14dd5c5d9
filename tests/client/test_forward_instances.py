"""Before anything is forwarded, every DICOM file of the transfer is read back
(client/dicom/instances.py): changed, truncated, meta-less or inconsistent files
stop the whole forward, named by their path in the transfer."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from sealdrop.client.dicom.instances import (
    InstancesError,
    PlacedFile,
    read_instance,
    read_instances,
)

GOOD = ["CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "image_dfl.dcm",
        "MR_small_implicit.dcm", "MR_small_expb.dcm", "SC_rgb_jpeg_dcmtk.dcm",
        "rtplan.dcm", "waveform_ecg.dcm"]


def _placed(path: Path, name: str = "case/IM0001") -> PlacedFile:
    return PlacedFile(name, path, hashlib.sha256(path.read_bytes()).hexdigest())


def _copy(tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copy(get_testdata_file(name), dst)
    return dst


@pytest.mark.parametrize("name", GOOD)
def test_real_files_are_read_with_their_own_syntax(tmp_path: Path, name: str) -> None:
    p = _copy(tmp_path, name)
    ds = pydicom.dcmread(p)
    i = read_instance(3, _placed(p))
    assert i.index == 3 and i.path == "case/IM0001" and i.placed == p
    assert i.sop_class == ds.SOPClassUID and i.sop_instance == ds.SOPInstanceUID
    assert i.transfer_syntax == ds.file_meta.TransferSyntaxUID
    assert i.size == p.stat().st_size


@pytest.mark.parametrize("name", ["MR_truncated.dcm", "rtplan_truncated.dcm"])
def test_pydicoms_truncated_files_are_refused(tmp_path: Path, name: str) -> None:
    p = _copy(tmp_path, name)
    with pytest.raises(InstancesError, match="case/IM0001 cannot be forwarded"):
        read_instance(0, _placed(p))


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm",
                                  "image_dfl.dcm", "MR_small_expb.dcm"])
@pytest.mark.parametrize("keep", [0.25, 0.5, 0.9, -10, -1])
def test_cut_files_are_refused(tmp_path: Path, name: str, keep: float) -> None:
    if name == "image_dfl.dcm" and keep == -1:
        # 8 bytes follow its deflate stream's end: one byte off leaves the data
        # set whole (test_cut_deflated_stream covers the stream itself).
        keep = -9
    data = Path(get_testdata_file(name)).read_bytes()
    n = int(len(data) * keep) if keep > 0 else len(data) + int(keep)
    p = tmp_path / "cut.dcm"
    p.write_bytes(data[:n])
    with pytest.raises(InstancesError, match="cannot be forwarded") as e:
        read_instance(0, _placed(p))
    assert "none of the transfer's files was sent" in str(e.value)
    assert e.value.hint and "sealdrop forward" in e.value.hint


@pytest.mark.parametrize("name", ["no_meta.dcm", "meta_missing_tsyntax.dcm",
                                  "ExplVR_LitEndNoMeta.dcm", "rtstruct.dcm"])
def test_files_without_usable_meta_are_refused(tmp_path: Path, name: str) -> None:
    p = _copy(tmp_path, name)
    with pytest.raises(InstancesError, match="cannot be forwarded"):
        read_instance(0, _placed(p))


def test_not_dicom_at_all(tmp_path: Path) -> None:
    p = tmp_path / "x.dcm"
    p.write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 50)
    with pytest.raises(InstancesError, match="cannot be forwarded"):
        read_instance(0, _placed(p))
    p.write_bytes(b"")
    with pytest.raises(InstancesError):
        read_instance(0, _placed(p))


def test_an_element_length_past_the_end(tmp_path: Path) -> None:
    p = _copy(tmp_path, "CT_small.dcm")
    ds = pydicom.dcmread(p)
    ds.add_new(0x00091010, "OB", b"\x01" * 64)  # a private element near the front
    ds.save_as(p)
    data = bytearray(p.read_bytes())
    at = data.find(b"\x09\x00\x10\x10OB")
    assert at > 0
    data[at + 8:at + 12] = (10**8).to_bytes(4, "little")  # its length: 100 MB
    p.write_bytes(bytes(data))
    with pytest.raises(InstancesError, match="cannot be forwarded"):
        read_instance(0, _placed(p))


def test_uid_disagreeing_with_meta_is_flagged_not_refused(tmp_path: Path) -> None:
    p = _copy(tmp_path, "CT_small.dcm")
    ds = pydicom.dcmread(p)
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds.save_as(p)
    i = read_instance(0, _placed(p))
    assert i.sop_instance == ds.SOPInstanceUID  # the data set's, what the PACS keeps
    assert i.meta_matches is False
    assert read_instance(0, _placed(_copy(tmp_path, "MR_small.dcm"))).meta_matches


def test_data_set_without_sop_uids(tmp_path: Path) -> None:
    p = _copy(tmp_path, "CT_small.dcm")
    ds = pydicom.dcmread(p)
    del ds.SOPInstanceUID
    ds.save_as(p)
    with pytest.raises(InstancesError, match="no SOP class or SOP instance UID"):
        read_instance(0, _placed(p))


def test_image_without_pixels(tmp_path: Path) -> None:
    p = _copy(tmp_path, "CT_small.dcm")
    ds = pydicom.dcmread(p)
    del ds.PixelData
    ds.save_as(p)
    with pytest.raises(InstancesError, match="no pixel data"):
        read_instance(0, _placed(p))


def test_changed_since_received_and_gone(tmp_path: Path) -> None:
    p = _copy(tmp_path, "CT_small.dcm")
    placed = _placed(p)
    data = bytearray(p.read_bytes())
    data[-1] ^= 1  # one bit of pixel data: still valid DICOM, not what was signed
    p.write_bytes(bytes(data))
    with pytest.raises(InstancesError, match="changed since it was received"):
        read_instance(0, placed)
    p.unlink()
    with pytest.raises(InstancesError, match="no longer where it was received"):
        read_instance(0, placed)


def test_one_bad_file_and_none_is_forwarded(tmp_path: Path) -> None:
    good = [_placed(_copy(tmp_path, n), f"case/{n}") for n in GOOD[:3]]
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes()[:5000])
    files = [*good[:2], _placed(bad, "case/bad.dcm"), good[2]]
    with pytest.raises(InstancesError, match="case/bad.dcm"):
        read_instances(files)
    assert [i.index for i in read_instances(good)] == [0, 1, 2]


def test_cut_deflated_stream(tmp_path: Path) -> None:
    from pynetdicom.dsutils import split_dataset

    src = Path(get_testdata_file("image_dfl.dcm"))
    _meta, offset = split_dataset(src)
    data = src.read_bytes()
    for end in (offset + 10, offset + 500, len(data) - 9):
        p = tmp_path / f"cut{end}.dcm"
        p.write_bytes(data[:end])
        with pytest.raises(InstancesError, match="cannot be forwarded"):
            read_instance(0, _placed(p))
