"""The DICOM node end to end, with every part real: a scanner (dcmtk's dcmsend)
stores a study into the practice's ``sealdrop dicom-listen --deidentify``; the
study crosses the relay as one transfer; the lab's ``sealdrop watch --to-pacs``
verifies it and stores it into its PACS (dcmtk's storescp).

What is proved: every instance the scanner sent reaches the PACS, as one study
under a new study UID (a pseudonym), without the patient's name or id, with
the de-identification recorded, and with pixel data byte for byte as the
scanner sent it; the watch's JSON events name no patient and no UID.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import pydicom
import pytest

from tests.client.listenkit import make_study
from tests.dcmtk import dcmtk
from tests.e2e.kit import User, wait_for
from tests.e2e.pacs import STORESCP, Storescp
from tests.e2e.test_dicom_listen import Listener, dcmsend

pytestmark = pytest.mark.skipif(
    dcmtk("dcmsend") is None or not Path(STORESCP).exists(),
    reason="dcmtk (dcmsend, storescp) is not installed")


def test_scanner_to_pacs_de_identified_whole_and_pixel_exact(
        pair: tuple[User, User], tmp_path: Path) -> None:
    practice, lab = pair
    pacs = Storescp(tmp_path / "pacs")
    pacs.start()
    listener = Listener(practice, tmp_path, "--to", lab.handle, "--idle", "1", "--deidentify")
    dest = tmp_path / "lab-in"
    dest.mkdir()
    watcher = lab.popen("watch", "--into", str(dest), "--interval", "0.3", "--to-pacs",
                        pacs.target, "--json")
    try:
        listener.start()
        study_uid, instances = make_study(tmp_path / "scanner", count=14, series=2)
        dcmsend(listener.port, [i.path for i in instances])
        wait_for(lambda: listener.sent() == 1, 180, "the study to be sent")
        assert "de-identified" in listener.text()
        wait_for(lambda: len(pacs.files()) == len(instances), 180, "every instance in the PACS")
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=60)
        listener.stop()
        pacs.kill()
    assert watcher.returncode == 0, err

    stored = [pydicom.dcmread(p) for p in pacs.files()]
    original_sops = {i.sop for i in instances}
    assert {str(ds.StudyInstanceUID) for ds in stored} != {study_uid}
    assert len({str(ds.StudyInstanceUID) for ds in stored}) == 1  # still one study
    assert len({str(ds.SeriesInstanceUID) for ds in stored}) == 2  # still two series
    for ds in stored:
        assert ds.PatientIdentityRemoved == "YES"
        assert str(ds.PatientName) != "Doe^Jane" and "Doe" not in str(ds.PatientName)
        assert ds.PatientID != "SD-TEST-0001"
        assert str(ds.SOPInstanceUID) not in original_sops
        assert "113100" in {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
    # Pixel data untouched, instance for instance (UIDs changed, so compared as
    # multisets of the encoded PixelData values).
    assert Counter(bytes(ds.PixelData) for ds in stored) == Counter(i.pixels for i in instances)

    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [e["event"] for e in events] == ["received", "forwarded"]
    assert events[1]["stored"] == events[1]["total"] == len(instances)
    for needle in ("Doe", "SD-TEST-0001", study_uid, *original_sops):
        assert needle not in out
