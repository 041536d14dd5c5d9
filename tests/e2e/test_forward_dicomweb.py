"""Forwarding into a real Orthanc: STOW-RS through its DICOMweb plugin, and its REST
API (``POST /instances``) when the plugin is absent; credentials from a file;
a DIMSE association refused by its called AE title check.

Each Orthanc runs on free loopback ports with a temporary storage and index
and is stopped after. What Orthanc stored is read back through its REST API
(``/instances``, ``/instances/ID/file``) and compared with the originals, SOP
instance UID by UID and pixel data byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.kit import User, tree
from tests.e2e.pacs import DICOMWEB_PLUGIN, ORTHANC, dicom_case, orthanc

pytestmark = pytest.mark.skipif(
    not (Path(ORTHANC).exists() and Path(DICOMWEB_PLUGIN).exists()),
    reason="Orthanc or its DICOMweb plugin is not installed")


def _send_case(tmp_path: Path, practice: User, lab: User) -> tuple[str, Path, dict[str, Any]]:
    case, expected = dicom_case(tmp_path / "src")
    tid = practice.json("send", str(case), "--to", lab.handle)["transfer_id"]
    return tid, case, expected


def _assert_same(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert set(got) == set(expected)
    for uid, e in expected.items():
        assert got[uid]["ts"] == e["ts"], e["name"]  # stored as sent, never transcoded
        assert got[uid]["pixels"] == e["pixels"], e["name"]


@pytest.mark.parametrize("plugin", [True, False], ids=["stow-rs", "orthanc-rest"])
def test_receive_to_dicomweb_stores_every_instance(
        tmp_path: Path, pair: tuple[User, User], plugin: bool) -> None:
    practice, lab = pair
    tid, case, expected = _send_case(tmp_path, practice, lab)
    dest = tmp_path / "in"
    dest.mkdir()
    with orthanc(tmp_path / "orthanc", dicomweb=plugin) as o:
        url = f"{o.url}/dicom-web"
        r = lab.run("receive", "--into", str(dest), "--to-dicomweb", url, "--json", "--", tid)
        got = o.stored()
    (fwd,) = json.loads(r.stdout)["forwards"]
    assert fwd["state"] == "forwarded" and (fwd["stored"], fwd["total"]) == (10, 10)
    assert fwd["protocol"] == "dicomweb" and fwd["target"] == url
    statuses = {i["status"] for i in fwd["instances"]}
    assert statuses == ({"HTTP 200"} if plugin else {"HTTP 200 (Success)"})
    for uid in expected:
        assert uid not in r.stdout
    _assert_same(got, expected)
    assert tree(dest / case.name) == tree(case)


def test_dicomweb_credentials_come_from_a_file_never_the_url(
        tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    tid, _case, expected = _send_case(tmp_path, practice, lab)
    dest = tmp_path / "in"
    dest.mkdir()
    creds = tmp_path / "dicomweb-auth"
    creds.write_text("lab:s3cret-pass\n")
    with orthanc(tmp_path / "orthanc", dicomweb=True, users={"lab": "s3cret-pass"}) as o:
        url = f"{o.url}/dicom-web"
        # In the URL: refused before anything is received.
        bad = lab.run("receive", "--into", str(dest), "--to-dicomweb",
                      url.replace("http://", "http://lab:s3cret-pass@"), "--", tid, check=False)
        assert bad.returncode != 0 and "carries a user name or password" in bad.stderr
        assert not any(dest.iterdir())
        # No credentials: Orthanc answers 401, named, pending, files placed anyway.
        r = lab.run("receive", "--into", str(dest), "--to-dicomweb", url, "--", tid,
                    check=False)
        assert r.returncode == 1 and "refused our credentials (HTTP 401)" in r.stderr
        assert o.get("/instances") == []
        # From the file named by the environment: `sealdrop forward` completes it.
        r = lab.run("forward", "--json", env={"SEALDROP_DICOMWEB_AUTH_FILE": str(creds)})
        (fwd,) = json.loads(r.stdout)["forwards"]
        assert fwd["state"] == "forwarded" and fwd["stored"] == 10
        assert "s3cret" not in r.stdout + r.stderr
        _assert_same(o.stored(), expected)


def test_called_ae_title_not_recognised_is_named(
        tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    tid, case, _expected = _send_case(tmp_path, practice, lab)
    dest = tmp_path / "in"
    dest.mkdir()
    with orthanc(tmp_path / "orthanc", dicomweb=False) as o:
        target = f"LAB_PACS@127.0.0.1:{o.dicom}"  # Orthanc is ORTHANC, and checks it
        r = lab.run("receive", "--into", str(dest), "--to-pacs", target, "--", tid,
                    check=False)
        assert o.get("/instances") == []
        assert r.returncode == 1
        assert (f"the PACS {target} refused the association: called ae title not "
                "recognised") in r.stderr
        assert tree(dest / case.name) == tree(case)
        # The right title: stored through DIMSE too.
        r = lab.run("forward", tid, "--to-pacs", f"ORTHANC@127.0.0.1:{o.dicom}", "--json")
        assert json.loads(r.stdout)["forwards"][0]["stored"] == 10
        assert len(o.get("/instances")) == 10
