"""Forwarding received transfers into a real PACS: dcmtk's storescp (C-STORE).

A multi-study, multi-series case in ten transfer syntaxes (compressed ones
included) goes practice -> relay -> lab, and the lab's ``receive --to-pacs``
stores it into storescp. What storescp wrote is compared with the originals,
SOP instance UID by UID and pixel data byte for byte. Then the bad paths: the
PACS killed half-way (pending, nothing unstored marked stored, completed by
the next receive), a refused association, an unreachable port, a file
changed in the receive folder. Nothing is mocked: the peers are dcmtk's own
programs, started on free loopback ports and killed after.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.kit import User, free_port, tree, wait_for
from tests.e2e.pacs import STORESCP, Storescp, dicom_case, stored_in, storescp

pytestmark = pytest.mark.skipif(not Path(STORESCP).exists(),
                                reason="dcmtk's storescp is not installed")

# Instances stored in an Implicit VR syntax come back from storescp as Explicit VR
# (its default output encoding); pixels stay byte for byte the same.
_REWRITTEN_BY_STORESCP = {"1.2.840.10008.1.2"}


@pytest.fixture(autouse=True)
def _case_folders(pair: tuple[User, User]) -> None:
    # The lab receives as shipped, a folder per case: forwarding must find the
    # placed files there (the paths it records are the case folder's).
    pair[1].default_layout()


def _placed(dest: Path) -> Path:
    """The one case folder a receive made under ``dest``."""
    (folder,) = dest.iterdir()
    assert folder.is_dir()
    return folder


def _send_case(tmp_path: Path, practice: User, lab: User) -> tuple[str, Path, dict[str, Any]]:
    case, expected = dicom_case(tmp_path / "src")
    tid = practice.json("send", str(case), "--to", lab.handle)["transfer_id"]
    return tid, case, expected


def _forwards(lab: User) -> dict[str, Any]:
    return dict(json.loads((lab.home / "forwards.json").read_text())["forwards"])


def _assert_all_stored(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert set(got) == set(expected)
    for uid, e in expected.items():
        assert got[uid]["pixels"] == e["pixels"], e["name"]
        if e["ts"] not in _REWRITTEN_BY_STORESCP:
            assert got[uid]["ts"] == e["ts"], e["name"]


def test_receive_to_pacs_stores_every_instance_in_its_own_syntax(
        tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    tid, case, expected = _send_case(tmp_path, practice, lab)
    dest = tmp_path / "in"
    dest.mkdir()
    with storescp(tmp_path / "pacs") as pacs:
        r = lab.run("receive", "--into", str(dest), "--to-pacs", pacs.target, "--json",
                    "--", tid)
        got = stored_in(pacs.out)
    out = json.loads(r.stdout)
    (fwd,) = out["forwards"]
    assert fwd["state"] == "forwarded" and fwd["error"] is None
    assert (fwd["stored"], fwd["total"]) == (10, 10)
    assert fwd["target"] == pacs.target and fwd["protocol"] == "dimse"
    # Paths only with --json-phi (docs/dicom.md); the forwards store records
    # them, and each is the file placed in the case folder.
    assert [i["index"] for i in fwd["instances"]] == list(range(1, 11))
    assert all("path" not in i for i in fwd["instances"])
    recorded = _forwards(lab)[tid]["files"]
    assert sorted(f["path"] for f in recorded) == sorted(
        f"{case.name}/{e['name']}" for e in expected.values())
    for f in recorded:
        assert Path(f["placed"]) == (_placed(dest) / f["path"]).absolute()
    assert all(i["state"] == "stored" and i["status"].startswith("0x0000")
               for i in fwd["instances"])
    # PS3.15: SOP instance UIDs identify a patient's study: not in the JSON output.
    for uid in expected:
        assert uid not in r.stdout and uid not in r.stderr
    _assert_all_stored(got, expected)
    assert tree(_placed(dest) / case.name) == tree(case)  # the files stay received, as sent
    # The profile records it done; a second receive has nothing left to do.
    rec = _forwards(lab)[tid]
    (t,) = rec["targets"].values()
    assert t["done"] is True and all(t["stored"]) and len(t["stored"]) == 10
    again = lab.run("receive", "--into", str(dest), "--to-pacs", pacs.target, "--", tid,
                    check=False)
    # Asked again: not a failure, and it says where the case went.
    assert again.returncode == 0, again.stderr
    assert "already received on " in again.stdout
    assert str(_placed(dest).absolute()) in again.stdout


def test_human_report_names_the_pacs(tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    tid, _case, _expected = _send_case(tmp_path, practice, lab)
    dest = tmp_path / "in"
    dest.mkdir()
    with storescp(tmp_path / "pacs") as pacs:
        r = lab.run("receive", "--into", str(dest), "--to-pacs", pacs.target,
                    "--calling-aet", "LABO_DUPONT", "--", tid)
    assert f"forwarded to the PACS {pacs.target}: 10 of 10 DICOM instances stored" in r.stdout
    assert len(pacs.files()) == 10
    assert "Received" in r.stdout and "Traceback" not in r.stderr and r.stderr == ""


def test_pacs_killed_mid_forward_is_completed_by_the_next_receive(
        tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    tid, case, expected = _send_case(tmp_path, practice, lab)
    dest = tmp_path / "in"
    dest.mkdir()
    # storescp waits a second after each store, so the forward is slow enough to
    # kill the PACS after two instances arrived and before the last.
    pacs = Storescp(tmp_path / "pacs", "--sleep-after", "1")
    pacs.start()
    try:
        proc = lab.popen("receive", "--into", str(dest), "--to-pacs", pacs.target, "--json",
                         "--json-phi", "--", tid)
        wait_for(lambda: len(pacs.files()) >= 2, 120, "two instances in the PACS")
        pacs.kill()
        # Killed while pynetdicom writes a data set, its link thread ends without
        # waking the C-STORE that waits for an answer; forward_dimse's watch
        # does, else this waited out the 120 s DIMSE timeout. The deadline stays
        # above that timeout so a regression shows as a slow pass here, and as a
        # hang in the log's durations, not as a flaky failure.
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, err
        (fwd,) = json.loads(out)["forwards"]
        assert fwd["state"] == "pending"
        assert f"the PACS {pacs.target}" in fwd["error"]
        assert 0 < fwd["stored"] < 10
        # Nothing marked stored that the PACS does not hold.
        in_pacs = stored_in(pacs.out)
        names = {f"{case.name}/{e['name']}": uid for uid, e in expected.items()}
        # Without --json-phi an instance is its index in the recorded files.
        recorded = _forwards(lab)[tid]["files"]
        marked = {recorded[i["index"] - 1]["path"] for i in fwd["instances"]
                  if i["state"] == "stored"}
        assert {names[p] for p in marked} <= set(in_pacs)
        (t,) = _forwards(lab)[tid]["targets"].values()
        assert t["done"] is False and sum(t["stored"]) == fwd["stored"]
        assert tree(_placed(dest) / case.name) == tree(case)  # received files untouched
        # The PACS comes back on the same port: the next receive completes it.
        pacs.start("--sleep-after", "0")
        r = json.loads(lab.run("receive", "--into", str(dest), "--to-pacs", pacs.target,
                               "--json", "--", tid).stdout)
        (fwd,) = r["forwards"]
        assert fwd["state"] == "forwarded" and (fwd["stored"], fwd["total"]) == (10, 10)
        assert r["received"] == [] and r["failed"] == []  # forwarded, not received again
        _assert_all_stored(stored_in(pacs.out), expected)
        assert lab.json("forward")["forwards"] == []  # nothing pending any more
    finally:
        pacs.kill()


def test_refused_association_and_unreachable_pacs_are_named_and_stay_pending(
        tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    tid, case, _expected = _send_case(tmp_path, practice, lab)
    dest = tmp_path / "in"
    dest.mkdir()
    with storescp(tmp_path / "pacs", "--refuse") as pacs:
        r = lab.run("receive", "--into", str(dest), "--to-pacs", pacs.target, "--", tid,
                    check=False)
        assert not pacs.files()
    assert r.returncode == 1
    assert f"the PACS {pacs.target} refused the association" in r.stderr
    assert "PENDING: 0 of 10" in r.stdout
    assert "sealdrop: hint:" in r.stderr and "Traceback" not in r.stderr
    assert tree(_placed(dest) / case.name) == tree(case)  # received and placed all the same
    # Another target by hand, nothing listening there: named as unreachable.
    dead = f"OTHER_PACS@127.0.0.1:{free_port()}"
    r = lab.run("forward", tid, "--to-pacs", dead, "--json", check=False)
    assert r.returncode == 1
    (fwd,) = json.loads(r.stdout)["forwards"]
    assert fwd["state"] == "pending" and fwd["stored"] == 0
    assert f"the PACS {dead} cannot be reached" in fwd["error"]
    # Both stay pending in the profile, nothing marked stored.
    targets = _forwards(lab)[tid]["targets"]
    assert sorted(targets) == sorted([f"dimse:{pacs.target}", f"dimse:{dead}"])
    assert not any(any(t["stored"]) for t in targets.values())
    # Once the PACS accepts, `sealdrop forward` (no target) completes every pending one
    # it can; the dead one stays pending and says so.
    with storescp(tmp_path / "pacs2") as ok:
        lab.run("forward", tid, "--to-pacs", ok.target)
        assert len(stored_in(ok.out)) == 10


def test_a_file_changed_in_the_receive_folder_forwards_nothing(
        tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    tid, case, expected = _send_case(tmp_path, practice, lab)
    dest = tmp_path / "in"
    dest.mkdir()
    with storescp(tmp_path / "pacs", "--refuse") as pacs:
        lab.run("receive", "--into", str(dest), "--to-pacs", pacs.target, "--", tid,
                check=False)
    name = next(iter(expected.values()))["name"]
    victim = _placed(dest) / case.name / name
    victim.write_bytes(victim.read_bytes()[:-100])  # cut short after verification
    with storescp(tmp_path / "pacs2") as pacs2:
        r = lab.run("forward", tid, "--to-pacs", pacs2.target, check=False)
        assert r.returncode == 1
        assert f"{case.name}/{name} cannot be forwarded" in r.stderr
        assert "changed since it was received" in r.stderr
        assert not pacs2.files()  # a study arrives whole or not at all
    shutil.rmtree(_placed(dest) / case.name)
    r = lab.run("forward", check=False)
    assert r.returncode == 1 and "no longer where it was received" in r.stderr


def test_watch_forwards_and_retries_a_pacs_that_was_down(
        tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    dest = tmp_path / "in"
    dest.mkdir()
    pacs = Storescp(tmp_path / "pacs")  # not started yet: the PACS is down
    watcher = lab.popen("watch", "--into", str(dest), "--interval", "0.2", "--max-backoff",
                        "1", "--to-pacs", pacs.target, "--json")
    try:
        tid, case, expected = _send_case(tmp_path, practice, lab)
        key = f"dimse:{pacs.target}"

        def failed_once() -> bool:
            path = lab.home / "forwards.json"
            return path.exists() and _forwards(lab)[tid]["targets"][key]["rounds"] >= 1

        wait_for(failed_once, 120, "a failed forward round")
        pacs.start()
        wait_for(lambda: len(stored_in(pacs.out)) == 10, 120, "every instance in the PACS")
        wait_for(lambda: _forwards(lab)[tid]["targets"][key]["done"],
                 60, "the forward recorded done")
        assert watcher.poll() is None  # a failed forward never stops watch
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=60)
        pacs.kill()
    assert watcher.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "received" and "forward_pending" in kinds
    assert kinds[-1] == "forwarded" and kinds.count("forwarded") == 1
    assert kinds.index("forward_pending") < kinds.index("forwarded")
    pending = next(e for e in events if e["event"] == "forward_pending")
    assert "cannot be reached" in pending["error"]
    _assert_all_stored(stored_in(pacs.out), expected)
    for uid in expected:
        assert uid not in out
    assert tree(_placed(dest) / case.name) == tree(case)


def test_a_study_with_one_unreadable_instance_is_not_forwarded_at_all(
        tmp_path: Path, pair: tuple[User, User]) -> None:
    """The sender's case holds a truncated DICOM file (pydicom's MR_truncated.dcm:
    its header reads, its pixel data is cut): the transfer is received and
    placed, and not one instance of it reaches the PACS."""
    from pydicom.data import get_testdata_file

    practice, lab = pair
    case, expected = dicom_case(tmp_path / "src")
    shutil.copy(get_testdata_file("MR_truncated.dcm"), case / "studyA" / "series2" / "IM9999")
    tid = practice.json("send", str(case), "--to", lab.handle)["transfer_id"]
    dest = tmp_path / "in"
    dest.mkdir()
    with storescp(tmp_path / "pacs") as pacs:
        r = lab.run("receive", "--into", str(dest), "--to-pacs", pacs.target, "--json",
                    "--", tid, check=False)
        assert pacs.files() == []  # whole or not at all
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert [x["transfer_id"] for x in out["received"]] == [tid]
    (fwd,) = out["forwards"]
    assert fwd["state"] == "pending" and fwd["stored"] == 0 and fwd["total"] == 11
    assert f"{case.name}/studyA/series2/IM9999 cannot be forwarded" in fwd["error"]
    assert tree(_placed(dest) / case.name) == tree(case)
    assert len(expected) == 10
