"""`sealdrop send --deidentify` end to end: real relay, real CLI, the lab receives.

The case carries the patient's name and id in its DICOM headers and in a file
name, a phone photo with a GPS position, and a PDF (sent as it is, with a
notice). What the lab receives, and the DICOM summary in the manifest it
opens, must hold none of the original name, id or UIDs.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pydicom
from PIL import Image
from pydicom.data import get_testdata_file

from tests.e2e.kit import User, tree, wait_for

NAME, PID = "DUPONT^Marie", "P-98765"
GPS_IFD = 0x8825
CHUNK = 64 * 1024
UP_RATE = 1024 * 1024


def _case(root: Path, *, big: int = 0) -> tuple[Path, set[str]]:
    """A case folder; returns it and the original UIDs it holds."""
    case = root / "Cas-42"
    (case / "CBCT").mkdir(parents=True)
    uids: set[str] = set()
    for i, name in enumerate(("CT_small.dcm", "MR_small.dcm", "CT_small.dcm")):
        ds = pydicom.dcmread(get_testdata_file(name))
        ds.PatientName, ds.PatientID = NAME, PID
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{i}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        uids |= {ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID}
        # the first file's name gives the patient away
        fname = "DUPONT_Marie_0001.dcm" if i == 0 else f"IM{i:04d}.dcm"
        ds.save_as(case / "CBCT" / fname, enforce_file_format=True)
    exif = Image.Exif()
    exif[GPS_IFD] = {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)}
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 180, 160)).save(buf, "JPEG", exif=exif.tobytes())
    (case / "sourire.jpg").write_bytes(buf.getvalue())
    (case / "prescription.pdf").write_bytes(b"%PDF-1.4\nCouronne 36\n")
    if big:
        (case / "big.bin").write_bytes(os.urandom(big))
    return case, uids


def _receive(lab: User, tid: str, dest: Path) -> dict:
    dest.mkdir()
    # --json-phi: the summary with its patient fields, so the check below means something
    got = lab.json("receive", tid, "--into", str(dest), "--json-phi")
    assert got["failed"] == []
    return dict(got["received"][0])


def _assert_deidentified(received: dict, folder: Path, uids: set[str]) -> None:
    # the manifest the lab opened: its DICOM summary was made from the copies
    text = json.dumps(received)
    studies_seen = received["dicom"]["studies"]
    assert len(studies_seen) == 2
    assert all(st["patient_name"].startswith("DEID-") for st in studies_seen)
    for leak in ("DUPONT", "Dupont", PID, *uids):
        assert leak not in text, leak
    files = tree(folder)
    assert "CBCT/DUPONT_Marie_0001.dcm" not in files  # renamed: the name was the patient's
    dicoms = [k for k in files if k.startswith("CBCT/")]
    assert len(dicoms) == 3 and "CBCT/IM0001.dcm" in dicoms
    studies = set()
    for k in dicoms:
        raw = files[k]
        assert b"DUPONT" not in raw and PID.encode() not in raw
        ds = pydicom.dcmread(io.BytesIO(raw))
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.StudyInstanceUID.startswith("2.25.") and ds.StudyInstanceUID not in uids
        studies.add(ds.StudyInstanceUID)
    assert len(studies) == 2  # CT_small twice (one study), MR_small: two studies stay two
    with Image.open(io.BytesIO(files["sourire.jpg"])) as im:
        assert GPS_IFD not in im.getexif()
    assert files["prescription.pdf"] == b"%PDF-1.4\nCouronne 36\n"


def test_deidentified_send_received_without_identity(
    tmp_path: Path, pair: tuple[User, User]
) -> None:
    practice, lab = pair
    case, uids = _case(tmp_path / "src")
    r = practice.run("send", str(case), "--to", lab.handle, "--deidentify")
    assert "burned-in annotations" in r.stdout and "facial surface" in r.stdout
    assert "Basic Application Level Confidentiality Profile" in r.stdout
    # the PDF's content was not de-identified: said in one line, naming it
    notice = [line for line in r.stderr.splitlines() if "not de-identified" in line]
    assert len(notice) == 1 and "Cas-42/prescription.pdf" in notice[0]
    (tid,) = [row[0] for row in practice.relay.sql("select id from transfers")]
    received = _receive(lab, tid, tmp_path / "in")
    _assert_deidentified(received, tmp_path / "in" / "Cas-42", uids)
    # the originals are untouched, and the work copies are gone
    assert (case / "CBCT" / "DUPONT_Marie_0001.dcm").exists()
    assert not any((practice.home / "deid").iterdir())
    assert not any((practice.home / "outbox").iterdir())


def test_json_output_names_the_profile_and_no_patient(
    tmp_path: Path, pair: tuple[User, User]
) -> None:
    practice, lab = pair
    case, _ = _case(tmp_path / "src")
    out = practice.json("send", str(case), "--to", lab.handle, "--deidentify",
                        "--retain-patient-characteristics", "--retain-dates")
    assert out["deidentified"]["options"] == ["retain_dates", "retain_patient_characteristics"]
    assert "DUPONT" not in json.dumps(out)
    assert "CBCT/DUPONT_Marie_0001.dcm" not in [f["path"] for f in out["files"]]


def test_retain_uids_keeps_the_study(tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    case, uids = _case(tmp_path / "src")
    out = practice.json("send", str(case), "--to", lab.handle, "--deidentify", "--retain-uids")
    dest = tmp_path / "in"
    _receive(lab, out["transfer_id"], dest)
    got = pydicom.dcmread(dest / "Cas-42" / "CBCT" / "IM0001.dcm")
    assert got.StudyInstanceUID in uids and got.SOPInstanceUID in uids
    assert "DUPONT" not in str(got.PatientName)


def test_unreadable_dicom_refuses_the_send_naming_it(
    tmp_path: Path, pair: tuple[User, User]
) -> None:
    practice, lab = pair
    case, _ = _case(tmp_path / "src")
    good = (case / "CBCT" / "IM0001.dcm").read_bytes()
    broken = case / "CBCT" / "IM0009.dcm"
    broken.write_bytes(good[:132] + b"\x08\x00\x20\x00DA\xff\xff" + b"\x00" * 10)  # bad length
    r = practice.run("send", str(case), "--to", lab.handle, "--deidentify", check=False)
    assert r.returncode == 1
    assert "cannot de-identify" in r.stderr and "IM0009.dcm" in r.stderr
    assert "nothing was sent" in r.stderr
    assert practice.relay.sql("select count(*) from transfers") == [(0,)]
    deid = practice.home / "deid"
    assert not deid.exists() or not any(deid.iterdir())
    # without --deidentify the same case is sent as it is (the summary work's rules apply)


def test_options_need_deidentify(tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    case, _ = _case(tmp_path / "src")
    r = practice.run("send", str(case), "--to", lab.handle, "--retain-uids", check=False)
    assert r.returncode != 0 and "--retain-uids is an option of --deidentify" in r.stderr
    assert practice.relay.sql("select count(*) from transfers") == [(0,)]


def _chunks_logged(user: User) -> int:
    return sum(len(p.read_text().splitlines()) for p in (user.home / "outbox").glob("*.chunks"))


def _start_and_kill(user: User, case: Path, to: str) -> None:
    with user.relay.throttled(up=UP_RATE):
        proc = user.popen("send", str(case), "--to", to, "--deidentify", "--json",
                          "--chunk-size", str(CHUNK))
        wait_for(lambda: _chunks_logged(user) >= 8, 60, "some chunks to upload")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        user.relay.link.drop_connections()


def _resume_and_check(tmp_path: Path, practice: User, lab: User, case: Path,
                      uids: set[str]) -> None:
    time.sleep(0.3)  # a chunk in flight at the kill may still land
    ((tid, committed, size),) = practice.relay.sql("select id, committed, size from transfers")
    assert 0 < committed < size
    done = practice.json("send", str(case), "--to", lab.handle, "--deidentify",
                         "--chunk-size", str(CHUNK))
    # the same transfer, continued: the regenerated bytes matched the chunk log
    assert done["transfer_id"] == tid and done["resumed"] is True
    assert done["skipped_bytes"] == committed and done["uploaded_bytes"] == size - committed
    received = _receive(lab, tid, tmp_path / "in")
    _assert_deidentified(received, tmp_path / "in" / "Cas-42", uids)
    assert not any((practice.home / "deid").iterdir())


def test_interrupted_deidentified_send_resumes_the_same_transfer(
    tmp_path: Path, pair: tuple[User, User]
) -> None:
    practice, lab = pair
    case, uids = _case(tmp_path / "src", big=3 * 1024 * 1024)
    _start_and_kill(practice, case, lab.handle)
    assert len(list((practice.home / "deid").iterdir())) == 1  # kept for the resume
    _resume_and_check(tmp_path, practice, lab, case, uids)


def test_resume_remakes_lost_copies_identically(
    tmp_path: Path, pair: tuple[User, User]
) -> None:
    practice, lab = pair
    case, uids = _case(tmp_path / "src", big=3 * 1024 * 1024)
    _start_and_kill(practice, case, lab.handle)
    shutil.rmtree(practice.home / "deid")  # the copies are lost; the secret is in the record
    _resume_and_check(tmp_path, practice, lab, case, uids)


def test_changed_original_cancels_the_interrupted_deidentified_send(
    tmp_path: Path, pair: tuple[User, User]
) -> None:
    practice, lab = pair
    case, _ = _case(tmp_path / "src", big=3 * 1024 * 1024)
    _start_and_kill(practice, case, lab.handle)
    dcm = case / "CBCT" / "IM0001.dcm"
    ds = pydicom.dcmread(dcm)
    ds.PatientName = "MARTIN^Paul"
    ds.save_as(dcm)
    r = practice.run("send", str(case), "--to", lab.handle, "--deidentify",
                     "--chunk-size", str(CHUNK), check=False)
    assert r.returncode == 1 and "the files changed since the send started" in r.stderr
    assert practice.relay.sql("select count(*) from transfers") == [(0,)]
    assert not any((practice.home / "deid").iterdir())


def test_refused_recipient_leaves_no_copies(tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, _ = pair
    case, _ = _case(tmp_path / "src")
    r = practice.run("send", str(case), "--to", "labo-inconnu", "--deidentify", check=False)
    assert r.returncode != 0
    deid = practice.home / "deid"
    assert not deid.exists() or not any(deid.iterdir())
