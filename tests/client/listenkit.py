"""A multi-series study built from pydicom's own test files, and what to compare on arrival.

Each source file keeps its encoding (explicit/implicit VR, RLE,
JPEG baseline, JPEG-LS, JPEG 2000, deflate): only the study, series and
instance UIDs change, so one study spans several transfer syntaxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

# (file in pydicom's test data, its transfer syntax): local files only.
SOURCES = (
    "CT_small.dcm",  # Explicit VR Little Endian
    "MR_small_implicit.dcm",  # Implicit VR Little Endian
    "MR_small_RLE.dcm",  # RLE Lossless
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG Baseline
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS Lossless
    "JPEG2000.dcm",  # JPEG 2000
    "image_dfl.dcm",  # Deflated Explicit VR Little Endian
)


@dataclass(frozen=True)
class Instance:
    path: Path
    sop: str
    series: str
    transfer_syntax: str
    pixels: bytes  # the PixelData value as encoded (compressed or not)


def source(name: str) -> Path:
    found = get_testdata_file(name, download=False)
    if found is None:
        raise FileNotFoundError(name)
    return Path(str(found))


def make_study(folder: Path, *, count: int = 30, series: int = 3,
               study_uid: str | None = None) -> tuple[str, list[Instance]]:
    """``count`` instances of one study in ``series`` series, cycling through SOURCES."""
    folder.mkdir(parents=True, exist_ok=True)
    study = study_uid or generate_uid()
    series_uids = [generate_uid() for _ in range(series)]
    out = []
    for i in range(count):
        ds = pydicom.dcmread(source(SOURCES[i % len(SOURCES)]))
        sop = generate_uid()
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series_uids[i % series]
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.PatientName = "Doe^Jane"
        ds.PatientID = "SD-TEST-0001"  # one patient: PACS such as Orthanc key studies by it
        path = folder / f"IM{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        back = pydicom.dcmread(path)
        out.append(Instance(path, sop, series_uids[i % series],
                            str(back.file_meta.TransferSyntaxUID), bytes(back.PixelData)))
    return study, out


# A sender may turn one uncompressed little-endian syntax into another on the
# way (dcmsend proposes them all in one context; the listener picks explicit
# VR): the pixel bytes stay identical. Compressed syntaxes must arrive unchanged.
_LITTLE_ENDIAN = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


def _syntax(uid: str) -> str:
    return "uncompressed little endian" if uid in _LITTLE_ENDIAN else uid


def received(root: Path) -> dict[str, tuple[str, str, bytes]]:
    """Every DICOM file under ``root``: SOP instance UID -> (series, syntax, pixel bytes)."""
    found = {}
    for path in sorted(root.rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        found[str(ds.SOPInstanceUID)] = (str(ds.SeriesInstanceUID),
                                         _syntax(str(ds.file_meta.TransferSyntaxUID)),
                                         bytes(ds.PixelData))
    return found


def expected(instances: list[Instance]) -> dict[str, tuple[str, str, bytes]]:
    return {i.sop: (i.series, _syntax(i.transfer_syntax), i.pixels) for i in instances}
