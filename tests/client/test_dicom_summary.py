"""The DICOM summary signed into the manifest (client/dicom/summary.py), built from
real pydicom files re-filed into several studies and series by editing UIDs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from sealdrop.client.dicom import summary as summary_module
from sealdrop.client.dicom.header import MAX_TEXT, DicomHeader
from sealdrop.client.dicom.summary import summarise
from sealdrop.client.send.plan import plan_new_transfer
from sealdrop.client.send.scan import scan
from sealdrop.crypto.manifest import canonical_json
from tests.client.dicomkit import write_instance
from tests.client.receivekit import ALICE, BOB, NOW

STUDY_A, STUDY_B = generate_uid(), generate_uid()
SERIES_A1, SERIES_A2, SERIES_B1 = generate_uid(), generate_uid(), generate_uid()


@pytest.fixture
def case(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Study A: a CT series of 3 and a second series of 1 (SR-like, modality OT);
    study B: one MR instance of another patient; plus a non-DICOM file."""
    root = tmp_path / "case"
    uids = {}
    study_a = {"PatientBirthDate": "19800101", "PatientSex": "F", "AccessionNumber": "ACC-7",
               "StudyDescription": "CBCT maxillaire"}
    for i in range(3):
        uids[f"case/A/ct{i}.dcm"] = write_instance(
            root / "A" / f"ct{i}.dcm", study=STUDY_A, series=SERIES_A1,
            SeriesDescription="Axial 0.2 mm", **study_a)
    uids["case/A/IM0009"] = write_instance(root / "A" / "IM0009", study=STUDY_A,
                                           series=SERIES_A2, modality="OT",
                                           SeriesDescription="Report", **study_a)
    uids["case/B/mr.dcm"] = write_instance(
        root / "B" / "mr.dcm", source="MR_small.dcm", study=STUDY_B, series=SERIES_B1,
        modality="MR", patient="MARTIN^Paul", patient_id="PID-77", study_date="20251002")
    (root / "scan.stl").write_bytes(b"solid x\nendsolid\n")
    return root, uids


def test_studies_series_and_files(case: tuple[Path, dict[str, str]]) -> None:
    root, uids = case
    s = summarise((f.arcname, f.dicom) for f in scan([root]))
    assert s["v"] == 2 and s["truncated"] is False
    b, a = s["studies"]  # sorted by study date: B (2025) before A (2026)
    assert a == {
        "study_uid": STUDY_A, "patient_name": "DUPONT^Marie", "patient_id": "PID-0042",
        "birth_date": "19800101", "sex": "F", "study_date": "20261130",
        "description": "CBCT maxillaire", "accession_number": "ACC-7",
        "modalities": ["CT", "OT"], "series_count": 2, "instance_count": 4,
        "series": sorted([
            {"series_uid": SERIES_A1, "modality": "CT", "description": "Axial 0.2 mm",
             "instance_count": 3},
            {"series_uid": SERIES_A2, "modality": "OT", "description": "Report",
             "instance_count": 1},
        ], key=lambda x: str(x["series_uid"])),
    }
    assert b["patient_name"] == "MARTIN^Paul" and b["modalities"] == ["MR"]
    assert (b["series_count"], b["instance_count"]) == (1, 1)
    assert b["study_uid"] == STUDY_B and b["series"][0]["series_uid"] == SERIES_B1
    # per file: keyed by its path in the transfer; the STL is not there
    assert set(s["files"]) == set(uids)
    for path, uid in uids.items():
        assert s["files"][path]["sop_instance_uid"] == uid
    assert s["files"]["case/A/ct0.dcm"]["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.2"
    assert s["files"]["case/B/mr.dcm"]["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.4"


def test_the_summary_is_signed_into_the_manifest(case: tuple[Path, dict[str, str]]) -> None:
    root, _ = case
    plan, _ = plan_new_transfer(scan([root]), ALICE.bundle, [BOB.bundle], note="",
                                created=NOW)
    assert plan.dicom["v"] == 2 and len(plan.dicom["studies"]) == 2
    canonical_json(dict(plan.dicom))  # integers and strings only: signable


def test_no_dicom_no_summary(tmp_path: Path) -> None:
    (tmp_path / "x.stl").write_bytes(b"solid\n")
    assert summarise((f.arcname, f.dicom) for f in scan([tmp_path / "x.stl"])) == {}
    assert summarise([]) == {}


def test_malformed_files_are_not_summarised(tmp_path: Path) -> None:
    write_instance(tmp_path / "good.dcm", study=STUDY_A, series=SERIES_A1)
    data = (tmp_path / "good.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:len(data) - 40])
    s = summarise((f.arcname, f.dicom) for f in scan([tmp_path / "good.dcm",
                                                      tmp_path / "cut.dcm"]))
    assert list(s["files"]) == ["good.dcm"] and s["studies"][0]["instance_count"] == 1


def _header(i: int, *, study: str = "S", series: str | None = None, **kw: str) -> DicomHeader:
    base = DicomHeader(
        sop_instance_uid=f"1.{i}", sop_class_uid="1.2", study_uid=study,
        series_uid=f"{study}.{i}" if series is None else series, modality="CT",
        series_description="", study_description="", study_date="20260101",
        accession_number="", patient_name="P", patient_id="", birth_date="", sex="")
    return dataclasses.replace(base, **kw)


def test_caps_keep_counting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summary_module, "MAX_STUDIES", 2)
    monkeypatch.setattr(summary_module, "MAX_SERIES", 3)
    monkeypatch.setattr(summary_module, "MAX_FILE_ENTRIES", 5)
    files = [(f"f{i}", _header(i, study=f"S{i % 3}")) for i in range(9)]
    s = summarise(files)
    assert s["truncated"] is True
    assert len(s["studies"]) == 2 and len(s["files"]) == 5
    assert sum(len(st["series"]) for st in s["studies"]) == 3
    # counts go on past the list caps: 3 files each in the two studies kept
    assert [st["instance_count"] for st in s["studies"]] == [3, 3]
    assert [st["series_count"] for st in s["studies"]] == [3, 3]


def test_uncapped_is_not_truncated_and_missing_uids_group() -> None:
    s = summarise([("a", _header(1, study="", series="")),
                   ("b", _header(2, study="", series=""))])
    (st,) = s["studies"]
    assert s["truncated"] is False
    assert st["study_uid"] == "(no study uid)" and st["series_count"] == 1
    assert st["instance_count"] == 2


def test_text_is_cut(tmp_path: Path) -> None:
    write_instance(tmp_path / "long.dcm", study=STUDY_A, series=SERIES_A1,
                   StudyDescription="x" * 300, patient="N" * 300)
    (f,) = scan([tmp_path / "long.dcm"])
    assert f.dicom is not None
    assert len(f.dicom.study_description) == MAX_TEXT == len(f.dicom.patient_name)
