"""Series thumbnails of a received case folder (client/desk/thumbs.py), from pydicom's
own test files and hostile copies of them."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels import get_decoder
from pydicom.uid import generate_uid

from sealdrop.client.desk.thumbs import series_thumbnails

from .dicomkit import pydicom_file


def _png(data: bytes | None) -> Image.Image:
    assert data is not None
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.load()
    return image


def _by_uid(folder: Path, **kw: int) -> dict[str, object]:
    return {t.series_uid: t for t in series_thumbnails(folder, **kw)}


def _uid(name: str) -> str:
    return str(pydicom.dcmread(pydicom_file(name), stop_before_pixels=True).SeriesInstanceUID)


def _copy(dest: Path, name: str, **edit: object) -> Path:
    """``name`` copied to ``dest`` with its own series UID (pydicom's files share some)."""
    ds = pydicom.dcmread(pydicom_file(name))
    ds.SeriesInstanceUID = edit.pop("SeriesInstanceUID", generate_uid())
    for keyword, value in edit.items():
        setattr(ds, keyword, value)
    dest.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dest)
    return dest


def test_one_thumbnail_per_series_each_a_small_png(tmp_path: Path) -> None:
    ct = _copy(tmp_path / "ct.dcm", "CT_small.dcm")
    mr = _copy(tmp_path / "sub" / "mr.dcm", "MR_small.dcm")
    rgb = _copy(tmp_path / "rgb.dcm", "SC_rgb_rle_2frame.dcm")  # RGB, 2 frames, RLE
    dose = _copy(tmp_path / "dose.dcm", "rtdose.dcm")  # grayscale multi-frame
    (tmp_path / "notes.txt").write_text("not DICOM")
    thumbs = series_thumbnails(tmp_path, size=64)
    assert len(thumbs) == 4
    uids = {str(pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID): p
            for p in (ct, mr, rgb, dose)}
    for t in thumbs:
        assert t.series_uid in uids
        assert t.problem is None and t.images == 1
        image = _png(t.png)
        assert max(image.size) <= 64
    by = {t.modality: t for t in thumbs}
    assert _png(by["OT"].png).mode == "RGB"
    assert _png(by["CT"].png).mode == "L"
    assert max(_png(by["CT"].png).size) == 64  # 128 x 128 shrunk to the bound


def test_the_middle_slice_is_shown(tmp_path: Path) -> None:
    series = generate_uid()
    middle = 3
    for number in (5, 1, 4, 2, 3):  # written out of order: the sort must put 3 in the middle
        ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = number
        ds.WindowCenter, ds.WindowWidth = 0, 100
        arr = ds.pixel_array.copy()
        value = 32000 if number == middle else -2000  # white middle, black others
        arr[:] = value
        ds.PixelData = arr.astype(arr.dtype).tobytes()
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        ds.save_as(tmp_path / f"slice{number}.dcm")
    (t,) = series_thumbnails(tmp_path)
    assert t.images == 5 and t.problem is None
    assert np.asarray(_png(t.png)).min() == 255


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    _copy(tmp_path / "a" / "m2.dcm", "CT_small.dcm", SeriesInstanceUID="1.2.3.2")
    _copy(tmp_path / "b" / "m1.dcm", "CT_small.dcm", SeriesInstanceUID="1.2.3.1",
          PhotometricInterpretation="MONOCHROME1")
    by = _by_uid(tmp_path)
    m1 = np.asarray(_png(by["1.2.3.1"].png)).astype(int)  # type: ignore[attr-defined]
    m2 = np.asarray(_png(by["1.2.3.2"].png)).astype(int)  # type: ignore[attr-defined]
    assert m1.std() > 10
    assert np.abs((255 - m1) - m2).max() <= 1


def test_compressed_without_a_decoder_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    path = _copy(tmp_path / "jls.dcm", "MR_small_jpeg_ls_lossless.dcm")
    syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    (t,) = series_thumbnails(tmp_path)
    if get_decoder(syntax).is_available:  # a JPEG-LS plugin is installed here
        assert t.png is not None and t.problem is None
    else:
        assert t.png is None
        assert t.problem == ("compressed pixel data this computer cannot decode "
                             "(JPEG-LS Lossless Image Compression)")


def test_truncated_pixel_data_is_a_problem(tmp_path: Path) -> None:
    path = _copy(tmp_path / "ct.dcm", "CT_small.dcm")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 5000])
    (t,) = series_thumbnails(tmp_path)
    assert t.png is None and t.images == 1
    assert t.problem is not None and t.problem.startswith("its pixel data cannot be read")


def test_absurd_dimensions_are_refused_before_decoding(tmp_path: Path) -> None:
    _copy(tmp_path / "big.dcm", "CT_small.dcm", Rows=65535, Columns=65535)
    (t,) = series_thumbnails(tmp_path)
    assert t.png is None
    assert t.problem == "its image is too large to preview (65,535 x 65,535 x 1 frames)"


def test_a_series_without_images(tmp_path: Path) -> None:
    shutil.copy(pydicom_file("test-SR.dcm"), tmp_path / "sr.dcm")
    (t,) = series_thumbnails(tmp_path)
    assert (t.png, t.problem, t.modality) == (None, "this series holds no image", "SR")


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _copy(outside / "ct.dcm", "CT_small.dcm")
    case = tmp_path / "case"
    case.mkdir()
    os.symlink(outside / "ct.dcm", case / "link.dcm")
    os.symlink(outside, case / "linked-folder")
    assert series_thumbnails(case) == []
    _copy(case / "mr.dcm", "MR_small.dcm")
    assert [t.modality for t in series_thumbnails(case)] == ["MR"]


def test_non_dicom_and_junk_files_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "a.dcm").write_bytes(b"\0" * 128 + b"DICM" + os.urandom(500))
    (tmp_path / "b.dcm").write_bytes(b"")
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff" + b"x" * 100)
    assert series_thumbnails(tmp_path) == []


def test_over_max_files_stops_and_says_so(tmp_path: Path) -> None:
    for i in range(4):
        _copy(tmp_path / f"{i}.dcm", "CT_small.dcm", SeriesInstanceUID=f"1.2.{i}")
    thumbs = series_thumbnails(tmp_path, max_files=2)
    assert [t.series_uid for t in thumbs] == ["1.2.0", "1.2.1", ""]
    assert thumbs[-1].problem == ("this folder holds more than 2 files: only the first 2 "
                                  "were looked at")
    assert len(series_thumbnails(tmp_path, max_files=4)) == 4


def test_deep_folders_are_bounded(tmp_path: Path) -> None:
    deep = tmp_path
    for _ in range(40):
        deep = deep / "d"
    _copy(deep / "ct.dcm", "CT_small.dcm")
    thumbs = series_thumbnails(tmp_path)
    assert [t.series_uid for t in thumbs] == [""]
    assert thumbs[0].problem is not None


@pytest.mark.parametrize("size", [16, 192])
def test_size_bound(tmp_path: Path, size: int) -> None:
    _copy(tmp_path / "mr.dcm", "MR_small.dcm")
    (t,) = series_thumbnails(tmp_path, size=size)
    assert max(_png(t.png).size) == min(size, 64)
