"""The listener's spool: durable layout, one owner, crash leftovers, damaged state, bad input."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pydicom
import pytest

from sealdrop.client.dicom import inbound
from sealdrop.client.dicom.inbound import (
    InboundSpool,
    InstanceIds,
    SpoolError,
    StudyState,
    read_ids,
)
from sealdrop.client.outfile import fsync_path
from sealdrop.client.profile.filelock import StoreLockedError

from .listenkit import make_study, source


def _rx(spool: InboundSpool, path: Path) -> Path:
    tmp = spool.incoming / f"rx-{path.name}"
    tmp.write_bytes(path.read_bytes())
    return tmp


def test_layout_is_private_and_free_of_uids(tmp_path: Path) -> None:
    spool = InboundSpool(tmp_path / "spool")
    with spool.owned():
        assert stat.S_IMODE(os.stat(spool.root).st_mode) == 0o700
        study_uid, instances = make_study(tmp_path / "scan", count=2, series=2)
        for i in instances:
            rx = _rx(spool, i.path)
            ids = read_ids(rx)
            assert ids == InstanceIds(study_uid, i.series, i.sop)
            study = spool.collecting("SEALDROP", ("labo-dupont",), ids.study)
            placed = spool.store(study, rx, ids)
            assert placed.read_bytes() == i.path.read_bytes()  # stored as received
            assert not rx.exists()
        [study] = spool.studies()
        assert study.counts() == (2, 2)
        state = json.loads((study.path / "state.json").read_bytes())
        assert state["route"] == "SEALDROP" and state["recipients"] == ["labo-dupont"]
        assert state["status"] == "collecting" and state["first"] <= state["last"]
        for p in spool.root.rglob("*"):
            assert study_uid not in str(p) and instances[0].sop not in str(p)
            if p.is_dir():
                assert stat.S_IMODE(p.stat().st_mode) == 0o700


def test_one_listener_per_spool(tmp_path: Path) -> None:
    first = InboundSpool(tmp_path / "spool")
    with first.owned():
        with pytest.raises(StoreLockedError), InboundSpool(tmp_path / "spool").owned():
            pass


def test_a_restart_sweeps_what_was_never_acknowledged(tmp_path: Path) -> None:
    spool = InboundSpool(tmp_path / "spool")
    with spool.owned():
        _, instances = make_study(tmp_path / "scan", count=1, series=1)
        rx = _rx(spool, instances[0].path)
        ids = read_ids(rx)
        assert ids is not None
        study = spool.collecting("SEALDROP", ("labo-dupont",), ids.study)
        kept = spool.store(study, rx, ids)
        # What a SIGKILL leaves: a C-STORE half-received, a half-written copy,
        # a sent study half-deleted.
        (spool.incoming / "tmpabc.dcm").write_bytes(b"half")
        (kept.parent / f".{kept.name}.partial").write_bytes(b"half")
        done = spool.studies_dir / ".deadbeef.1.done"
        (done / "x").mkdir(parents=True)
    with spool.owned():
        assert list(spool.incoming.iterdir()) == []
        assert [p.name for p in kept.parent.iterdir()] == [kept.name]
        assert not done.exists()
        assert len(spool.studies()) == 1


def test_a_damaged_state_file_is_named_with_a_way_out(tmp_path: Path) -> None:
    spool = InboundSpool(tmp_path / "spool")
    with spool.owned():
        study = spool.collecting("SEALDROP", ("labo-dupont",), "1.2.3")
        for bad in (b"{not json", b'{"v": 2}', b"x" * (70 * 1024),
                    json.dumps({"v": 1, "route": "A", "recipients": "labo", "folder": "f",
                                "first": 1, "last": 1, "status": "collecting",
                                "note": ""}).encode(),
                    StudyState("A", ("b",), "../up", 1, 1).to_json(),
                    StudyState("A", ("b",), "f", 1, 1, status="gone").to_json()):
            (study.path / "state.json").write_bytes(bad)
            with pytest.raises(SpoolError, match="damaged state file") as info:
                spool.studies()
            assert info.value.hint and "sealdrop send" in info.value.hint


def test_read_ids_refuses_what_cannot_be_grouped(tmp_path: Path) -> None:
    assert read_ids(source("CT_small.dcm")) is not None
    text = tmp_path / "note.txt"
    text.write_text("not DICOM at all")
    assert read_ids(text) is None
    assert read_ids(tmp_path / "missing.dcm") is None
    for tag in ("StudyInstanceUID", "SOPInstanceUID"):
        ds = pydicom.dcmread(source("CT_small.dcm"))
        delattr(ds, tag)
        path = tmp_path / f"no-{tag}.dcm"
        ds.save_as(path)
        assert read_ids(path) is None, tag
    ds = pydicom.dcmread(source("CT_small.dcm"))
    del ds.SeriesInstanceUID
    ds.save_as(tmp_path / "no-series.dcm")
    ids = read_ids(tmp_path / "no-series.dcm")
    assert ids is not None and ids.series == ""


def _full_for_files(path: Path) -> None:
    """A file's fsync fails as on a full disk; folders' still work."""
    if path.is_file():
        raise OSError(errno.ENOSPC, "No space left on device")
    fsync_path(path)


def test_a_failing_disk_leaves_nothing_behind_that_looks_stored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk cannot be made here without root: fsync is made to fail as it would."""
    spool = InboundSpool(tmp_path / "spool")
    with spool.owned():
        _, instances = make_study(tmp_path / "scan", count=1, series=1)
        rx = _rx(spool, instances[0].path)
        ids = read_ids(rx)
        assert ids is not None
        study = spool.collecting("SEALDROP", ("labo-dupont",), ids.study)

        monkeypatch.setattr(inbound, "fsync_path", _full_for_files)
        with pytest.raises(OSError):
            spool.store(study, rx, ids)
        assert study.counts() == (0, 0)


def test_the_scp_answers_out_of_resources_on_a_failing_disk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same fault, seen from the scanner: status A700, nothing acknowledged."""
    import tempfile

    from pynetdicom import _config

    from .test_dicom_scp import Node, store

    saved = (tempfile.tempdir, _config.STORE_RECV_CHUNKED_DATASET)
    node = Node(tmp_path / "node")
    try:
        with node.spool.owned():
            node.scp.start("127.0.0.1", 0)

            monkeypatch.setattr(inbound, "fsync_path", _full_for_files)
            _, instances = make_study(tmp_path / "scan", count=1, series=1)
            assert store(node.scp.port, [instances[0].path]) == [0xA700]
            node.scp.stop_accepting()
            assert node.studies_on_disk() == {}
            assert any("No space left" in line for line in node.logs)
    finally:
        tempfile.tempdir, _config.STORE_RECV_CHUNKED_DATASET = saved
