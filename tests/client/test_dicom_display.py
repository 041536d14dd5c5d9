"""Showing a received DICOM summary (client/dicom/display.py), and the JSON that
names no patient unless asked (``ReceiveResult.to_json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sealdrop.client.dicom.display import (
    UNREADABLE,
    StudyView,
    describe_study,
    iso_date,
    phi_free,
    read_studies,
    summary_lines,
)
from sealdrop.client.dicom.summary import summarise
from sealdrop.client.receive.transfer import ReceiveResult
from sealdrop.client.send.scan import scan
from sealdrop.crypto.manifest import FileEntry, Manifest, recipient_entries
from tests.client.dicomkit import write_instance
from tests.client.receivekit import ALICE, BOB, NOW

NAME = "DUPONT^Marie"


def study(**kw: Any) -> dict[str, Any]:
    base = {"study_uid": "1.2.3", "patient_name": NAME, "patient_id": "PID-0042",
            "birth_date": "19800101", "sex": "F", "study_date": "20261130",
            "description": "CBCT maxillaire", "accession_number": "ACC-7",
            "modalities": ["CT"], "series_count": 1, "instance_count": 412,
            "series": [{"series_uid": "1.2.3.4", "modality": "CT",
                        "description": "Axial 0.2 mm", "instance_count": 412}]}
    return base | kw


def v2(*studies: dict[str, Any]) -> dict[str, Any]:
    return {"v": 2, "studies": list(studies), "truncated": False,
            "files": {"CBCT/IM0001": {"sop_instance_uid": "1.2.3.4.5",
                                      "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2"}}}


def test_the_line_of_the_issue() -> None:
    assert summary_lines(v2(study())) == ["CT, 1 series, 412 images, DUPONT^Marie, 2026-11-30"]


def test_several_studies_modalities_and_plurals() -> None:
    lines = summary_lines(v2(
        study(modalities=["CT", "SR"], series_count=2, instance_count=1),
        study(modalities=[], patient_name="", study_date="", series_count=3,
              instance_count=2)))
    assert lines == ["CT/SR, 2 series, 1 image, DUPONT^Marie, 2026-11-30",
                     "DICOM, 3 series, 2 images"]


def test_describe_study_is_pure_and_keeps_odd_dates() -> None:
    s = StudyView(modalities=("MR",), series_count=1, instance_count=5, patient_name="X^Y",
                  study_date="2026", series=())
    assert describe_study(s) == "MR, 1 series, 5 images, X^Y, 2026"
    assert iso_date("20261130") == "2026-11-30" and iso_date(" 19991231 ") == "1999-12-31"
    assert iso_date("2026-11-30") == "2026-11-30" and iso_date("") == ""


def test_the_per_series_form_of_earlier_senders_is_shown() -> None:
    old = {"series": [
        {"series_uid": "a", "study_uid": "S1", "modality": "CT", "description": "",
         "study_date": "20240102", "patient_name": "OLD^One", "patient_id": "1",
         "instances": 3, "files": ["x/1", "x/2", "x/3"]},
        {"series_uid": "b", "study_uid": "S1", "modality": "SR", "description": "",
         "study_date": "20240102", "patient_name": "OLD^One", "patient_id": "1",
         "instances": 1, "files": ["x/4"]},
        {"series_uid": "c", "study_uid": "S2", "modality": "MR", "description": "",
         "study_date": "", "patient_name": "", "patient_id": "", "instances": 2,
         "files": ["y/1", "y/2"]},
    ]}
    assert summary_lines(old) == ["CT/SR, 2 series, 4 images, OLD^One, 2024-01-02",
                                  "MR, 1 series, 2 images"]
    assert phi_free(old) == {"studies": [
        {"modalities": ["CT", "SR"], "series_count": 2, "instance_count": 4,
         "series": [{"modality": "CT", "instance_count": 3},
                    {"modality": "SR", "instance_count": 1}]},
        {"modalities": ["MR"], "series_count": 1, "instance_count": 2,
         "series": [{"modality": "MR", "instance_count": 2}]}]}


def test_no_dicom_no_line() -> None:
    assert summary_lines({}) == [] and phi_free({}) == {}


HOSTILE: list[object] = [
    None, [], "x", 7,
    {"v": 3, "studies": []},
    {"v": True, "studies": []},
    {"v": "2", "studies": []},
    {"v": 2},
    {"v": 2, "studies": "CT"},
    {"v": 2, "studies": [1]},
    {"v": 2, "studies": [study(series_count="1")]},
    {"v": 2, "studies": [study(instance_count=True)]},
    {"v": 2, "studies": [study(instance_count=-1)]},
    {"v": 2, "studies": [study(instance_count=1 << 60)]},
    {"v": 2, "studies": [study(modalities="CT")]},
    {"v": 2, "studies": [study(modalities=[["CT"]])]},
    {"v": 2, "studies": [study(patient_name={"x": 1})]},
    {"v": 2, "studies": [study(study_date=20261130)]},
    {"v": 2, "studies": [study(series=[{"modality": 1, "instance_count": 1}])]},
    {"v": 2, "studies": [study(series=[None])]},
    {"series": "x"},
    {"series": [{"instances": "3"}]},
    {"series": [{"instances": 1, "study_uid": 5}]},
    {"other": 1},
]


@pytest.mark.parametrize("hostile", HOSTILE, ids=[json.dumps(h)[:40] for h in HOSTILE])
def test_a_hostile_summary_is_unreadable_never_an_exception(hostile: object) -> None:
    assert read_studies(hostile) is None
    assert summary_lines(hostile) == [UNREADABLE]
    assert phi_free(hostile) == {"unreadable": True}


def test_long_texts_are_cut_and_many_studies_counted() -> None:
    lines = summary_lines(v2(*[study(patient_name="N" * 10_000)] * 150))
    assert len(lines) == 101 and lines[-1] == "… and 50 more studies"
    assert len(lines[0]) < 300


def test_phi_free_keeps_modalities_and_counts_only() -> None:
    s = v2(study(modalities=["CT", "DUPONT^Marie"]))
    out = phi_free(s)
    assert out == {"studies": [{"modalities": ["CT", "?"], "series_count": 1,
                                "instance_count": 412,
                                "series": [{"modality": "CT", "instance_count": 412}]}]}
    text = json.dumps(out)
    for needle in ("DUPONT", "PID-0042", "19800101", "20261130", "ACC-7", "1.2.3",
                   "maxillaire", "Axial", "IM0001"):
        assert needle not in text


def _result(tmp_path: Path) -> ReceiveResult:
    write_instance(tmp_path / "src" / "DUPONT_Marie" / "IM0001.dcm", study="1.2.3",
                   series="1.2.3.4", patient=NAME, StudyDescription="CBCT maxillaire")
    files = scan([tmp_path / "src" / "DUPONT_Marie"])
    manifest = Manifest(
        transfer_id=bytes(16), created=NOW, sender=ALICE.bundle,
        recipients=recipient_entries([BOB.bundle]),
        files=tuple(FileEntry(path=f.arcname, size=f.size, sha256=bytes(32),
                              media_type=f.media_type) for f in files),
        note="Couronne 36 pour Mme DUPONT",
        dicom=summarise((f.arcname, f.dicom) for f in files))
    # The case folder is named from the sender's label, which may name the patient.
    folder = tmp_path / "in" / "2026-11-30 alice.clinic DUPONT abababab"
    return ReceiveResult(relay_id="ab" * 16, manifest=manifest, sender="alice.clinic",
                         sender_verified=True, safety_number="12345",
                         files=(folder / files[0].arcname,), into=tmp_path / "in",
                         folder=folder)


def test_receive_json_names_no_patient_unless_asked(tmp_path: Path) -> None:
    r = _result(tmp_path)
    plain = r.to_json()
    text = json.dumps(plain)
    assert "DUPONT" not in text and "maxillaire" not in text and "1.2.3" not in text
    assert "note" not in plain and "case_folder" not in plain
    assert plain["file_count"] == 1 and plain["total_size"] == r.manifest.files[0].size
    assert plain["files"] == [{"size": r.manifest.files[0].size, "sha256": "00" * 32,
                               "media_type": "application/dicom"}]
    assert plain["dicom"]["studies"][0]["modalities"] == ["CT"]
    assert plain["sender"] == "alice.clinic" and plain["sender_verified"] is True
    assert plain["transfer_id"] == "ab" * 16 and plain["into"] == str(tmp_path / "in")

    full = r.to_json(phi=True)
    assert full["note"] == "Couronne 36 pour Mme DUPONT"
    assert full["case_folder"] == str(r.folder)
    assert full["files"][0]["path"] == "DUPONT_Marie/IM0001.dcm"
    assert full["files"][0]["placed_at"].endswith("DUPONT_Marie/IM0001.dcm")
    assert full["dicom"]["studies"][0]["patient_name"] == NAME
    assert full["dicom"] == dict(r.manifest.dicom)


def test_the_cli_line_passes_the_terminal_gate(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from sealdrop.client.cli.receive import _say_received

    r = _result(tmp_path)
    hostile = v2(study(patient_name="EVIL\x1b]0;owned\x07\x1b[2J", modalities=["CT\u202e"]))
    manifest = Manifest(**{**{f: getattr(r.manifest, f)
                              for f in r.manifest.__dataclass_fields__}, "dicom": hostile})
    _say_received(ReceiveResult(**{**{f: getattr(r, f) for f in r.__dataclass_fields__},
                                   "manifest": manifest}))
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "DICOM:" in x)
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert line.startswith("  DICOM: CT") and "EVIL" in line and "412 images" in line
