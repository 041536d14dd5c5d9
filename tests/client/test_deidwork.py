"""The work folder of `send --deidentify` (client/send/deidwork.py), without a relay."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from sealdrop.client.dicom.deidentify import DeidOptions
from sealdrop.client.errors import SealError
from sealdrop.client.send import deidwork
from sealdrop.client.send.scan import scan

KEY = "ab" * 32
SECRET = b"s" * 32


def _case(root: Path) -> Path:
    case = root / "Cas-7"
    (case / "CBCT").mkdir(parents=True)
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID = "MARTIN^Paul", "ID-4711"
    ds.save_as(case / "CBCT" / "Martin_Paul.dcm", enforce_file_format=True)
    ds.save_as(case / "CBCT" / "IM0002.dcm", enforce_file_format=True)
    shutil.copy(get_testdata_file("DICOMDIR"), case / "DICOMDIR")
    (case / "model.stl").write_bytes(b"solid x\nendsolid\n")
    (case / "Martin-consent.pdf").write_bytes(b"%PDF-1.4\n")
    (case / "Martin_photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # a broken photo
    return case


def test_copies_notices_and_private_folder(tmp_path: Path) -> None:
    case = _case(tmp_path / "src")
    (case / "Martin_photo.png").unlink()
    home = tmp_path / "home"
    copies = deidwork.make_copies(home, KEY, scan([case]), DeidOptions(), SECRET)
    root = deidwork.folder(home, KEY)
    assert copies.tops == (root / "Cas-7",)
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert "Cas-7/CBCT/Martin_Paul.dcm" not in names and "Cas-7/CBCT/IM0002.dcm" in names
    assert "Cas-7/DICOMDIR" not in names  # an index of patient names: left out
    assert (copies.dicom, copies.photos, copies.renamed) == (2, 0, 1)
    renamed = [n for n in names if n.startswith("Cas-7/CBCT/2.25.")]
    assert len(renamed) == 1 and renamed[0].endswith(".dcm")
    text = " | ".join(copies.notices)
    assert "not de-identified, sent as they are: Cas-7/Martin-consent.pdf, Cas-7/model.stl" in text
    assert "left out: Cas-7/DICOMDIR" in text
    # the PDF's name holds the patient's name: the sender is told, not silently renamed
    assert "contain the patient's name or id" in text and "Martin-consent.pdf" in text
    for n in names:
        assert b"MARTIN" not in (root / n).read_bytes() or n.endswith(".pdf")
    # the same secret gives the same bytes (what a resumed send relies on)
    first = {n: (root / n).read_bytes() for n in names}
    deidwork.make_copies(home, KEY, scan([case]), DeidOptions(), SECRET)
    assert {n: (root / n).read_bytes() for n in names} == first
    deidwork.remove(home, KEY)
    assert not root.exists()


def test_a_broken_photo_refuses_and_leaves_no_folder(tmp_path: Path) -> None:
    case = _case(tmp_path / "src")
    home = tmp_path / "home"
    with pytest.raises(SealError, match="cannot remove the metadata of .*Martin_photo.png"):
        deidwork.make_copies(home, KEY, scan([case]), DeidOptions(), SECRET)
    assert not deidwork.folder(home, KEY).exists()


def test_sweep_removes_only_old_orphans(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for key in ("01" * 32, "02" * 32, "03" * 32):
        deidwork.folder(home, key).mkdir(parents=True)
    now = os.stat(deidwork.folder(home, "01" * 32)).st_mtime
    later = now + deidwork.SWEEP_AFTER_S + 1
    deidwork.sweep(home, keep={"02" * 32}, now=now)  # nothing is old yet
    assert all(deidwork.folder(home, k).exists() for k in ("01" * 32, "02" * 32, "03" * 32))
    deidwork.sweep(home, keep={"02" * 32}, now=later)
    assert [deidwork.folder(home, k).exists() for k in ("01" * 32, "02" * 32, "03" * 32)] == [
        False, True, False]


def test_a_bad_key_is_no_folder_name(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="not a send's key"):
        deidwork.folder(tmp_path, "../../etc")


def test_data_sets_without_preamble_are_de_identified_too(tmp_path: Path) -> None:
    """An older export: a DICOM data set with no preamble and no extension, or a .dcm one."""
    case = tmp_path / "src" / "Export"
    case.mkdir(parents=True)
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID = "MARTIN^Paul", "ID-4711"
    del ds.file_meta
    for name in ("IM0001", "IM0002.dcm"):
        pydicom.dcmwrite(case / name, ds, implicit_vr=True, little_endian=True,
                         enforce_file_format=False)
    (case / "notes.bin").write_bytes(b"\x08\x00garbage that is no DICOM")
    home = tmp_path / "home"
    copies = deidwork.make_copies(home, KEY, scan([case]), DeidOptions(), SECRET)
    root = deidwork.folder(home, KEY)
    assert copies.dicom == 2
    for name in ("IM0001", "IM0002.dcm"):
        raw = (root / "Export" / name).read_bytes()
        assert raw[128:132] == b"DICM" and b"MARTIN" not in raw and b"ID-4711" not in raw
        assert pydicom.dcmread(root / "Export" / name).PatientIdentityRemoved == "YES"
    # a file that merely starts like one is sent as it is, with the notice
    assert (root / "Export" / "notes.bin").read_bytes() == b"\x08\x00garbage that is no DICOM"
    assert any("Export/notes.bin" in n for n in copies.notices)


def test_folder_named_after_the_patient_is_reported(tmp_path: Path) -> None:
    case = tmp_path / "src" / "Martin Paul"
    case.mkdir(parents=True)
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID = "MARTIN^Paul", "ID-4711"
    ds.save_as(case / "IM0001.dcm", enforce_file_format=True)
    copies = deidwork.make_copies(tmp_path / "home", KEY, scan([case]), DeidOptions(), SECRET)
    assert any("Martin Paul/" in n and "patient's name" in n for n in copies.notices)


def test_a_cut_dicom_file_refuses_the_copies_instead_of_travelling_as_it_is(
        tmp_path: Path) -> None:
    """The scan sends a DICOM file it cannot read whole as an opaque file; with
    --deidentify that would carry its header, patient name included, as it is."""
    case = tmp_path / "src" / "Cas"
    case.mkdir(parents=True)
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = "MARTIN^Paul"
    ds.save_as(case / "IM0001.dcm", enforce_file_format=True)
    whole = (case / "IM0001.dcm").read_bytes()
    (case / "IM0001.dcm").write_bytes(whole[: len(whole) - 1000])  # cut in the pixel data
    scanned = scan([case])
    assert scanned[0].malformed is not None  # what the scan alone would send opaque
    home = tmp_path / "home"
    with pytest.raises(SealError, match="IM0001.dcm: it looks like DICOM but cannot be read"):
        deidwork.make_copies(home, KEY, scanned, DeidOptions(), SECRET)
    folder = deidwork.folder(home, KEY)
    assert not folder.exists() or not any(folder.rglob("*.dcm"))
