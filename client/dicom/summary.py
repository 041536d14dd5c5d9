"""The DICOM summary signed into the manifest: which studies, series and instances a
transfer carries (docs/dicom.md, "The summary in the manifest", gives the JSON).

Built on the sender's machine from the headers the scan read (pixel data never
read), before sealing: it travels only inside the encrypted payload, signed
with the rest of the manifest, so the receiver sees "CT, 1 series, 412
images, DUPONT^Marie, 2026-11-30" before opening a file. Version 2 (``"v":
2``) groups by study; version 1 (no ``"v"``: one entry per series) is what
earlier senders wrote, and ``display`` still reads it.

Bounded, so a huge send cannot push the manifest past its size limit: at most
``MAX_STUDIES`` studies, ``MAX_SERIES`` series in all and ``MAX_FILE_ENTRIES``
per-file entries; counts keep counting past the caps, and ``"truncated":
true`` says that lists were cut. Text fields are cut to ``header.MAX_TEXT``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .header import DicomHeader

VERSION = 2
MAX_STUDIES = 100
MAX_SERIES = 1000
MAX_FILE_ENTRIES = 20_000
MAX_MODALITIES = 32


def _study_entry(h: DicomHeader, uid: str) -> dict[str, Any]:
    return {
        "study_uid": uid,
        "patient_name": h.patient_name,
        "patient_id": h.patient_id,
        "birth_date": h.birth_date,
        "sex": h.sex,
        "study_date": h.study_date,
        "description": h.study_description,
        "accession_number": h.accession_number,
        "modalities": [],
        "series_count": 0,
        "instance_count": 0,
        "series": {},  # series uid -> entry while building; a sorted list at the end
    }


def summarise(files: Iterable[tuple[str, DicomHeader | None]]) -> dict[str, Any]:
    """The version 2 summary of ``files``: ``{}`` if none is readable DICOM.

    ``files`` pairs each path in the transfer with its header (None: not DICOM,
    or malformed: such files are sent as opaque files and not summarised).
    """
    studies: dict[str, dict[str, Any]] = {}
    per_file: dict[str, dict[str, str]] = {}
    series_total = 0
    truncated = False
    for arcname, h in files:
        if h is None:
            continue
        if len(per_file) < MAX_FILE_ENTRIES:
            per_file[arcname] = {"sop_instance_uid": h.sop_instance_uid,
                                 "sop_class_uid": h.sop_class_uid}
        else:
            truncated = True
        study_uid = h.study_uid or "(no study uid)"
        study = studies.get(study_uid)
        if study is None:
            if len(studies) >= MAX_STUDIES:
                truncated = True
                continue
            study = studies[study_uid] = _study_entry(h, study_uid)
        study["instance_count"] += 1
        series_uid = h.series_uid or "(no series uid)"
        series = study["series"].get(series_uid)
        if series is None:
            study["series_count"] += 1
            modality = h.modality
            if modality and modality not in study["modalities"]:
                if len(study["modalities"]) < MAX_MODALITIES:
                    study["modalities"].append(modality)
                else:
                    truncated = True
            if series_total >= MAX_SERIES:
                truncated = True
                continue
            series_total += 1
            series = study["series"][series_uid] = {
                "series_uid": series_uid, "modality": modality,
                "description": h.series_description, "instance_count": 0}
        series["instance_count"] += 1
    if not studies and not per_file:
        return {}
    out_studies = []
    for uid in sorted(studies, key=lambda u: (studies[u]["study_date"], u)):
        study = studies[uid]
        study["series"] = [study["series"][k] for k in sorted(study["series"])]
        study["modalities"] = sorted(study["modalities"])
        out_studies.append(study)
    return {"v": VERSION, "studies": out_studies, "files": per_file, "truncated": truncated}
