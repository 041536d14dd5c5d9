"""A DICOM summary for the manifest: which studies and series a transfer carries.

Read from the headers only (pixel data skipped), during the scan and before
sealing, so the summary is part of the signed manifest and the receiver sees
"CT, 3 images, patient X" before opening anything. The summary travels inside
the encrypted payload only. Best effort: a file pydicom cannot read is still
sent, just not summarised.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

_MAX_SERIES = 1000
_MAX_FILES_PER_SERIES = 10_000
_MAX_TEXT = 128


@dataclass(frozen=True, slots=True)
class DicomHeader:
    """The few header fields the summary shows, each cut to 128 characters."""

    series_uid: str
    study_uid: str
    modality: str
    description: str
    study_date: str
    patient_name: str
    patient_id: str


def _text(ds: Any, keyword: str) -> str:
    value = getattr(ds, keyword, "")
    return str(value or "")[:_MAX_TEXT]


def read_header(f: BinaryIO) -> DicomHeader | None:
    """The header of the DICOM file open in ``f`` (read from its start), or None."""
    # Imported here, not at the top: pydicom alone costs ~0.2 s, paid only by
    # sends that carry DICOM.
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        f.seek(0)
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        return DicomHeader(
            series_uid=_text(ds, "SeriesInstanceUID"),
            study_uid=_text(ds, "StudyInstanceUID"),
            modality=_text(ds, "Modality"),
            description=_text(ds, "SeriesDescription"),
            study_date=_text(ds, "StudyDate"),
            patient_name=_text(ds, "PatientName"),
            patient_id=_text(ds, "PatientID"),
        )
    except (InvalidDicomError, OSError, ValueError, TypeError, AttributeError, KeyError):
        return None


def summarise(files: Iterable[tuple[str, DicomHeader | None]]) -> dict[str, Any]:
    """``{"series": [...]}`` grouped by SeriesInstanceUID; ``{}`` if no DICOM.

    ``files`` pairs each transfer path with its header (None: not DICOM, or
    unreadable).
    """
    series: dict[str, dict[str, Any]] = {}
    for arcname, h in files:
        if h is None:
            continue
        uid = h.series_uid or f"(no series uid) {arcname}"
        entry = series.get(uid)
        if entry is None:
            if len(series) >= _MAX_SERIES:
                continue
            entry = series[uid] = {
                "series_uid": uid,
                "study_uid": h.study_uid,
                "modality": h.modality,
                "description": h.description,
                "study_date": h.study_date,
                "patient_name": h.patient_name,
                "patient_id": h.patient_id,
                "instances": 0,
                "files": [],
            }
        entry["instances"] += 1
        if len(entry["files"]) < _MAX_FILES_PER_SERIES:
            entry["files"].append(arcname)
    if not series:
        return {}
    return {"series": [series[k] for k in sorted(series)]}
