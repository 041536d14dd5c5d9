"""The DICOM summary end to end: a multi-study, multi-series case sent through a
real relay; ``receive`` and ``status`` show one line per study; ``receive --json``,
``watch --json`` and ``status --json`` name no patient unless ``--json-phi``;
malformed DICOM is warned about and delivered, or refused with ``send --strict``
before anything reaches the relay."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from pydicom.uid import generate_uid

from tests.client.dicomkit import write_instance
from tests.e2e.kit import User, tree, wait_for

LINE_A = "CT/OT, 2 series, 4 images, DUPONT^Marie, 2026-11-30"
LINE_B = "MR, 1 series, 1 image, MARTIN^Paul, 2025-10-02"
PHI = ("DUPONT", "MARTIN", "PID-0042", "PID-77", "Couronne", "CBCT maxillaire")


def make_studies(root: Path) -> Path:
    """Study A: a CT series of 3 and an OT series of 1; study B: one MR instance."""
    case = root / "Cas-DUPONT"
    study_a, study_b = generate_uid(), generate_uid()
    ct, ot = generate_uid(), generate_uid()
    for i in range(3):
        write_instance(case / "CBCT" / f"IM{i:04d}", study=study_a, series=ct,
                       StudyDescription="CBCT maxillaire")
    write_instance(case / "CBCT" / "IM0009", study=study_a, series=ot, modality="OT")
    write_instance(case / "IRM" / "mr.dcm", source="MR_small.dcm", study=study_b,
                   series=generate_uid(), modality="MR", patient="MARTIN^Paul",
                   patient_id="PID-77", study_date="20251002")
    (case / "scan.stl").write_bytes(b"solid t\nendsolid\n")
    return case


def _no_phi(text: str) -> None:
    for needle in PHI:
        assert needle not in text, needle


def test_summary_shown_by_receive_and_status_and_kept_out_of_json(
    tmp_path: Path, pair: tuple[User, User],
) -> None:
    practice, lab = pair
    case = make_studies(tmp_path / "src")
    sent = practice.run("send", str(case), "--to", lab.handle, "--note", "Couronne 36",
                        "--json")
    tid = json.loads(sent.stdout)["transfer_id"]
    assert "warning" not in sent.stderr

    # The sender's status: one human line per study; JSON without patients unless asked.
    human = practice.run("status", tid).stdout
    assert f"DICOM: {LINE_A}" in human and f"DICOM: {LINE_B}" in human
    plain = practice.run("status", tid, "--json").stdout
    _no_phi(plain)
    (row,) = json.loads(plain)["transfers"]
    assert sorted(s["instance_count"] for s in row["dicom"]["studies"]) == [1, 4]
    full = json.loads(practice.run("status", tid, "--json", "--json-phi").stdout)
    assert "DUPONT^Marie" in json.dumps(full["transfers"][0]["dicom"])

    # The lab: the human line after "Received ..."; JSON without patients.
    dest = tmp_path / "in"
    dest.mkdir()
    out = lab.run("receive", tid, "--into", str(dest)).stdout
    lines = out.splitlines()
    assert lines[0].startswith("Received ")
    assert lines[1:3] == [f"  DICOM: {LINE_B}", f"  DICOM: {LINE_A}"]  # by study date
    assert tree(dest / case.name) == tree(case)


def test_receive_json_and_watch_json_name_no_patient_unless_asked(
    tmp_path: Path, pair: tuple[User, User],
) -> None:
    practice, lab = pair

    def send(i: int) -> str:
        return str(json.loads(practice.run(
            "send", str(make_studies(tmp_path / f"src{i}")), "--to", lab.handle, "--note",
            "Couronne 36", "--json").stdout)["transfer_id"])

    tids = [send(i) for i in range(3)]
    dests = []
    for i in range(4):
        dests.append(tmp_path / f"in{i}")
        dests[-1].mkdir()

    r = lab.run("receive", tids[0], "--into", str(dests[0]), "--json")
    _no_phi(r.stdout)
    (got,) = json.loads(r.stdout)["received"]
    assert got["file_count"] == 6 and "note" not in got
    assert all("path" not in f for f in got["files"])
    assert sorted(m for s in got["dicom"]["studies"] for m in s["modalities"]) == [
        "CT", "MR", "OT"]

    r = lab.run("receive", tids[1], "--into", str(dests[1]), "--json", "--json-phi")
    (got,) = json.loads(r.stdout)["received"]
    assert got["note"] == "Couronne 36" and "DUPONT^Marie" in json.dumps(got["dicom"])
    assert any(f["path"].startswith("Cas-DUPONT/") for f in got["files"])

    for phi_flag, dest in (([], dests[2]), (["--json-phi"], dests[3])):
        if phi_flag:
            send(3)  # only now: each watch finds exactly one transfer waiting
        watcher = lab.popen("watch", "--into", str(dest), "--interval", "0.2", "--json",
                            *phi_flag)
        try:
            wait_for(lambda d=dest: (d / "Cas-DUPONT" / "scan.stl").exists(), 60,
                     "the watch to place a transfer")
        finally:
            watcher.send_signal(signal.SIGTERM)
            out, err = watcher.communicate(timeout=60)
        assert watcher.returncode == 0, err
        events = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert [e["event"] for e in events] == ["received"], out
        received = events
        if phi_flag:
            assert "DUPONT^Marie" in out and received[0]["note"] == "Couronne 36"
        else:
            _no_phi(out)
            assert received[0]["dicom"]["studies"][0]["series_count"] >= 1


def _case_with_a_broken_file(root: Path) -> Path:
    case = make_studies(root)
    good = (case / "CBCT" / "IM0001").read_bytes()
    (case / "CBCT" / "IM0003").write_bytes(good[:len(good) - 1000])  # cut in the pixels
    return case


def test_malformed_dicom_is_warned_and_delivered(tmp_path: Path,
                                                 pair: tuple[User, User]) -> None:
    practice, lab = pair
    case = _case_with_a_broken_file(tmp_path / "src")
    r = practice.run("send", str(case), "--to", lab.handle)
    warnings = [line for line in r.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith("sealdrop: warning: Cas-DUPONT/CBCT/IM0003 looks like DICOM "
                                  "but cannot be read (the pixel data is truncated")
    assert warnings[0].endswith("; sent as an opaque file")
    tid = r.stdout.split("Transfer id: ")[1].split()[0]
    dest = tmp_path / "in"
    dest.mkdir()
    got = lab.json("receive", tid, "--into", str(dest), "--json-phi")["received"][0]
    assert tree(dest / case.name) == tree(case)  # delivered byte for byte
    types = {f["path"]: f["media_type"] for f in got["files"]}
    assert types["Cas-DUPONT/CBCT/IM0003"] == "application/octet-stream"
    assert types["Cas-DUPONT/CBCT/IM0001"] == "application/dicom"
    assert "Cas-DUPONT/CBCT/IM0003" not in got["dicom"]["files"]

    # --json: the same as a field of the output (the sender's own file names).
    again = make_studies(tmp_path / "src2")
    (again / "CBCT" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    out = practice.json("send", str(again), "--to", lab.handle)
    assert [m["path"] for m in out["malformed"]] == ["Cas-DUPONT/CBCT/broken.dcm"]


def test_strict_refuses_before_anything_reaches_the_relay(tmp_path: Path,
                                                          pair: tuple[User, User]) -> None:
    practice, lab = pair
    relay = practice.relay
    case = _case_with_a_broken_file(tmp_path / "src")
    before = relay.sql("select count(*) from transfers")
    r = practice.run("send", str(case), "--to", lab.handle, "--strict", check=False)
    assert r.returncode != 0
    assert ("sealdrop: error: Cas-DUPONT/CBCT/IM0003 looks like DICOM but cannot be read"
            in r.stderr)
    assert "nothing was sent (--strict)" in r.stderr and "Traceback" not in r.stderr
    assert relay.sql("select count(*) from transfers") == before == [(0,)]
    assert not (practice.home / "outbox").exists() or not any(
        (practice.home / "outbox").iterdir())
    assert lab.json("inbox")["transfers"] == []
    # The same case without the broken file goes through with --strict.
    (case / "CBCT" / "IM0003").unlink()
    practice.run("send", str(case), "--to", lab.handle, "--strict")
    assert relay.sql("select count(*) from transfers") == [(1,)]
