"""Reading a received DICOM summary for display, and its patient-free form for JSON.

The summary is signed, but by any sender: a hostile one can put any JSON there
(the manifest parser only bounds its depth and size). So it is read here with
every type checked, never trusted: a summary that does not parse becomes
``None`` and is shown as "DICOM summary unreadable", never an exception.
Both forms are read: version 2 (by study, ``summary.VERSION``) and the
per-series form of earlier senders (no ``"v"``).

``phi_free`` keeps what a log collector may see (modalities, series and
instance counts) and drops everything that identifies a patient or a study:
names, ids, dates, sex, accession numbers, descriptions and every UID.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .header import MAX_TEXT
from .summary import VERSION

UNREADABLE = "DICOM summary unreadable"
MAX_SHOWN = 100  # studies listed; more are counted
_MAX_LIST = 100_000
_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")
# A Modality value as DICOM allows it (a CS: capitals, digits, space, underscore;
# 16 at most). phi_free shows nothing else: a hostile sender's free text there
# could carry a name into a log collector.
_CS = re.compile(r"[A-Z0-9 _]{1,16}")


@dataclass(frozen=True, slots=True)
class SeriesView:
    modality: str
    instance_count: int


@dataclass(frozen=True, slots=True)
class StudyView:
    """One study as shown: sender-written text, not yet made terminal-safe."""

    modalities: tuple[str, ...]
    series_count: int
    instance_count: int
    patient_name: str
    study_date: str  # as the sender wrote it (DICOM: YYYYMMDD)
    series: tuple[SeriesView, ...]


class _Bad(Exception):
    pass


def _text(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise _Bad(key)
    return value[:MAX_TEXT]


def _count(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 53:
        raise _Bad(key)
    return value


def _dict(obj: object) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise _Bad("not an object")
    return obj


def _list(obj: object) -> list[Any]:
    if not isinstance(obj, list) or len(obj) > _MAX_LIST:
        raise _Bad("not a list")
    return obj


def _v2(obj: Mapping[str, Any]) -> list[StudyView]:
    studies = []
    for raw in _list(obj.get("studies")):
        s = _dict(raw)
        modalities = _list(s.get("modalities", []))
        if not all(isinstance(m, str) for m in modalities):
            raise _Bad("modalities")
        series = tuple(
            SeriesView(modality=_text(_dict(r), "modality"),
                       instance_count=_count(_dict(r), "instance_count"))
            for r in _list(s.get("series", [])))
        studies.append(StudyView(
            modalities=tuple(m[:MAX_TEXT] for m in modalities[:MAX_SHOWN]),
            series_count=_count(s, "series_count"),
            instance_count=_count(s, "instance_count"),
            patient_name=_text(s, "patient_name"),
            study_date=_text(s, "study_date"),
            series=series,
        ))
    return studies


def _v1(obj: Mapping[str, Any]) -> list[StudyView]:
    """The per-series form of earlier senders, grouped by study here."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for raw in _list(obj.get("series")):
        s = _dict(raw)
        grouped.setdefault(_text(s, "study_uid"), []).append(s)
    studies = []
    for group in grouped.values():
        series = tuple(SeriesView(modality=_text(s, "modality"),
                                  instance_count=_count(s, "instances")) for s in group)
        modalities = tuple(dict.fromkeys(s.modality for s in series if s.modality))
        studies.append(StudyView(
            modalities=modalities, series_count=len(series),
            instance_count=sum(s.instance_count for s in series),
            patient_name=_text(group[0], "patient_name"),
            study_date=_text(group[0], "study_date"), series=series))
    return studies


def read_studies(summary: object) -> list[StudyView] | None:
    """The studies of a manifest's ``dicom`` summary; [] if it has none; None if unreadable."""
    try:
        obj = _dict(summary)
        if not obj:
            return []
        if "v" not in obj:
            return _v1(obj)
        if obj["v"] == VERSION and not isinstance(obj["v"], bool):
            return _v2(obj)
        return None
    except _Bad:
        return None


def iso_date(dicom_date: str) -> str:
    """A DICOM date (YYYYMMDD) as an ISO date; anything else as it is."""
    m = _DATE.fullmatch(dicom_date.strip())
    if m is None:
        return dicom_date.strip()
    return f"{m[1]}-{m[2]}-{m[3]}"


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def describe_study(study: StudyView) -> str:
    """One line: ``CT, 1 series, 412 images, DUPONT^Marie, 2026-11-30``.

    The modality list is the DICOM Modality values as written (a CBCT says CT:
    DICOM has no CBCT modality, and nothing in the header tells a cone beam
    reliably, so none is guessed). Empty fields are left out. The caller makes
    the line terminal-safe: the text is the sender's.
    """
    parts = ["/".join(study.modalities) or "DICOM",
             _plural(study.series_count, "series", "series"),
             _plural(study.instance_count, "image", "images")]
    if study.patient_name:
        parts.append(study.patient_name)
    if study.study_date:
        parts.append(iso_date(study.study_date))
    return ", ".join(parts)


def summary_lines(summary: object) -> list[str]:
    """One line per study (at most ``MAX_SHOWN``, then a count), or the unreadable line."""
    studies = read_studies(summary)
    if studies is None:
        return [UNREADABLE]
    lines = [describe_study(s) for s in studies[:MAX_SHOWN]]
    if len(studies) > MAX_SHOWN:
        lines.append(f"… and {len(studies) - MAX_SHOWN} more studies")
    return lines


def phi_free(summary: object) -> dict[str, Any]:
    """The summary without anything that identifies a patient or a study (module text).

    ``{}`` if there is no DICOM; ``{"unreadable": true}`` if it does not parse.
    """
    studies = read_studies(summary)
    if studies is None:
        return {"unreadable": True}
    if not studies:
        return {}
    return {"studies": [
        {"modalities": [_cs(m) for m in s.modalities], "series_count": s.series_count,
         "instance_count": s.instance_count,
         "series": [{"modality": _cs(x.modality), "instance_count": x.instance_count}
                    for x in s.series]}
        for s in studies]}


def _cs(modality: str) -> str:
    return modality if not modality or _CS.fullmatch(modality) else "?"
