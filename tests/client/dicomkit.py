"""DICOM test files: pydicom's own (read from its package, never downloaded), and
studies built from them by editing UIDs and patient fields."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def pydicom_file(name: str) -> Path:
    path = TEST_FILES / name
    assert path.is_file(), f"pydicom no longer ships {name}"
    return path


def write_instance(dest: Path, *, source: str = "CT_small.dcm", study: str, series: str,
                   modality: str = "CT", patient: str = "DUPONT^Marie",
                   patient_id: str = "PID-0042", study_date: str = "20261130",
                   **more: str) -> str:
    """A copy of ``source`` placed in ``study``/``series`` with a new SOP instance UID;
    returns that UID."""
    ds = pydicom.dcmread(pydicom_file(source))
    uid = generate_uid()
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.Modality = modality
    ds.PatientName = patient
    ds.PatientID = patient_id
    ds.StudyDate = study_date
    for keyword, value in more.items():
        setattr(ds, keyword, value)
    dest.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dest, enforce_file_format=True)
    return uid
