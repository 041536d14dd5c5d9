"""Reading one DICOM file's header: the fields the summary needs, or why it cannot be read.

Only the header is read (``stop_before_pixels``), with large values deferred
(``defer_size``: pydicom seeks past them instead of loading them), so a
multi-gigabyte multi-frame file costs a few kilobytes of memory. Then the
structural checks of ``integrity`` run: pydicom alone would accept a file cut
off in the middle of an element or of its pixel data.

A file that looks like DICOM (the ``DICM`` magic, or a .dcm/.dicom name) and
fails any of this is *malformed*: ``read_header`` raises ``Malformed`` with a
short reason that names no patient data (pydicom's messages name tags and
offsets, never values). The caller decides what that means (scan: a warning,
or a refusal with --strict).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, BinaryIO

from .integrity import Malformed, check_lengths, check_tail, require_pixel_data

MAX_TEXT = 128  # every text field of the summary is cut to this many characters
_DEFER = 16 * 1024  # values larger than this are seeked past, not read

# Why a file is malformed when it is a bare data set (no preamble, or no file
# meta to say its encoding): the malformations de-identification repairs, as
# it reads the data set and writes a proper Part 10 file (send/deidwork.py).
NO_PREAMBLE = "no DICOM preamble and 'DICM' prefix"
NO_TRANSFER_SYNTAX = "its file meta information has no transfer syntax"
BARE_DATA_SET = frozenset({NO_PREAMBLE, NO_TRANSFER_SYNTAX})


@dataclass(frozen=True, slots=True)
class DicomHeader:
    """The header fields the summary holds, each cut to ``MAX_TEXT`` characters."""

    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    modality: str
    series_description: str
    study_description: str
    study_date: str  # as in the file: YYYYMMDD
    accession_number: str
    patient_name: str
    patient_id: str
    birth_date: str  # as in the file: YYYYMMDD
    sex: str


def _text(ds: Any, keyword: str, fallback: Any = None) -> str:
    try:
        value = ds.get(keyword)
        if not value and fallback is not None:
            value = fallback.get(keyword.replace("SOP", "MediaStorageSOP"))
    except Exception:  # noqa: BLE001 - a value pydicom cannot decode is left out
        return ""
    return str(value or "")[:MAX_TEXT]


def _raw_lengths(ds: Any, raw_type: type) -> list[tuple[int, int, int]]:
    """(tag, value offset, declared length) of the top-level elements still raw."""
    out = []
    for tag in ds.keys():
        item = ds.get_item(tag)
        if isinstance(item, raw_type):
            raw: Any = item  # pydicom's RawDataElement: offsets as the file declared them
            out.append((int(raw.tag), int(raw.value_tell), int(raw.length)))
    return out


def _header(ds: Any, meta: Any) -> DicomHeader:
    return DicomHeader(
        sop_instance_uid=_text(ds, "SOPInstanceUID", meta),
        sop_class_uid=_text(ds, "SOPClassUID", meta),
        study_uid=_text(ds, "StudyInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        modality=_text(ds, "Modality"),
        series_description=_text(ds, "SeriesDescription"),
        study_description=_text(ds, "StudyDescription"),
        study_date=_text(ds, "StudyDate"),
        accession_number=_text(ds, "AccessionNumber"),
        patient_name=_text(ds, "PatientName"),
        patient_id=_text(ds, "PatientID"),
        birth_date=_text(ds, "PatientBirthDate"),
        sex=_text(ds, "PatientSex"),
    )


def _uid_name(uid: Any) -> str:
    """pydicom's name for a UID ("CT Image Storage"), or "" if it has none."""
    try:
        return str(uid.name) if uid else ""
    except Exception:  # noqa: BLE001 - a value pydicom cannot decode has no name
        return ""


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:100]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def read_header(f: BinaryIO, size: int) -> DicomHeader:
    """The header of the DICOM file open in ``f`` (``size`` bytes), read from its start.

    Raises ``Malformed`` if it cannot be read whole.
    """
    # Imported here, not at the top: pydicom alone costs ~0.2 s, paid only by
    # sends that carry DICOM.
    import pydicom
    from pydicom.dataelem import RawDataElement

    f.seek(0)
    try:
        with warnings.catch_warnings():
            # pydicom warns about every odd value; a malformed file gets one line
            # from us instead, and a merely odd one is not our business.
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(f, stop_before_pixels=True, defer_size=_DEFER)
            meta = ds.file_meta
            if not meta.get("TransferSyntaxUID"):
                raise Malformed(NO_TRANSFER_SYNTAX)
            if len(ds) == 0:
                raise Malformed("it holds no data elements")
            if getattr(meta.TransferSyntaxUID, "is_deflated", False):
                # The dataset was inflated into memory: offsets are not the file's,
                # and zlib itself refuses a cut stream.
                return _header(ds, meta)
            if f.tell() > size:  # pydicom seeked past a deferred value that is not there
                raise Malformed("an element runs past the end of the file")
            check_lengths(_raw_lengths(ds, RawDataElement), size)
            implicit, little = ds.original_encoding
            if implicit is None or little is None:
                raise Malformed("its encoding cannot be told")
            has_pixels = f.tell() < size  # pydicom stopped at pixel data, not at the end
            check_tail(f, size, implicit_vr=bool(implicit), little_endian=bool(little))
            # The file meta's class too: a file cut early lost the dataset's.
            sop_class = ds.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID")
            require_pixel_data(sop_class_name=_uid_name(sop_class),
                               has_rows="Rows" in ds, has_pixels=has_pixels)
            return _header(ds, meta)
    except Malformed:
        raise
    except pydicom.errors.InvalidDicomError as exc:
        raise Malformed(NO_PREAMBLE) from exc
    except Exception as exc:  # noqa: BLE001 - pydicom meets hostile bytes: any error
        raise Malformed(_reason(exc)) from exc
