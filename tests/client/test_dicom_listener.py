"""The listener's loop in-process: it stops on request with stores finished, and a failing
spool folder is reported, not fatal. (The relay side is in tests/e2e/test_dicom_listen.py;
here the send is replaced, since no study must reach a relay.)"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import _config

from sealdrop.client.dicom import listener
from sealdrop.client.dicom.dispatch import SendOptions
from sealdrop.client.dicom.inbound import InboundSpool
from sealdrop.client.dicom.listener import ListenConfig, run
from sealdrop.client.dicom.routes import Route, RouteTable

from .listenkit import make_study
from .test_dicom_scp import store


@pytest.fixture(autouse=True)
def _restore_pynetdicom() -> Any:
    saved = (tempfile.tempdir, _config.STORE_RECV_CHUNKED_DATASET)
    yield
    tempfile.tempdir, _config.STORE_RECV_CHUNKED_DATASET = saved


def _config_for(tmp_path: Path, **kw: Any) -> ListenConfig:
    table = RouteTable({"SEALDROP": Route("SEALDROP", ("labo-dupont",))}, None)
    return ListenConfig(host="127.0.0.1", port=0, aet="SEALDROP", table=table,
                        spool=tmp_path / "spool", idle=3600, min_free=0,
                        options=SendOptions(), tick=0.05, **kw)


def _start(config: ListenConfig, logs: list[str]) -> tuple[threading.Thread, threading.Event,
                                                           list[int]]:
    stop = threading.Event()
    ports: list[int] = []
    thread = threading.Thread(target=run, args=(None, config), kwargs={
        "log": logs.append, "on_listening": ports.append, "stop": stop}, daemon=True)
    thread.start()
    end = time.monotonic() + 30
    while not ports and time.monotonic() < end:
        time.sleep(0.02)
    assert ports, logs
    return thread, stop, ports


def test_stop_keeps_pending_studies_and_frees_the_spool(tmp_path: Path) -> None:
    logs: list[str] = []
    config = _config_for(tmp_path)
    thread, stop, [port] = _start(config, logs)
    _, instances = make_study(tmp_path / "scan", count=3, series=1)
    assert store(port, [i.path for i in instances]) == [0] * 3
    stop.set()
    thread.join(30)
    assert not thread.is_alive()
    assert logs[-1] == "stopped; 1 study left in the spool"
    # The lock is released: a new listener (here: the spool itself) takes over.
    spool = InboundSpool(config.spool)
    with spool.owned():
        assert spool.studies()[0].counts() == (1, 3)


def test_a_failing_spool_folder_is_reported_and_the_loop_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A spool folder that cannot be read (a failing disk) is simulated: root ignores modes."""
    real = InboundSpool.studies
    calls = {"n": 0}

    def flaky(self: InboundSpool, on_damaged: Any = None) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(5, "Input/output error")
        return real(self, on_damaged)

    monkeypatch.setattr(InboundSpool, "studies", flaky)
    monkeypatch.setattr(listener, "_TROUBLE_PAUSE", 0.05)
    logs: list[str] = []
    thread, stop, _ = _start(_config_for(tmp_path), logs)
    end = time.monotonic() + 30
    while calls["n"] < 4 and time.monotonic() < end:
        time.sleep(0.02)
    stop.set()
    thread.join(30)
    assert "cannot look after the spool: [Errno 5] Input/output error" in logs
    assert calls["n"] >= 4 and logs[-1].startswith("stopped;")


def test_stopping_refuses_new_associations_and_lets_open_ones_finish(tmp_path: Path) -> None:
    import pydicom
    from pynetdicom import AE

    logs: list[str] = []
    thread, stop, [port] = _start(_config_for(tmp_path), logs)
    _, instances = make_study(tmp_path / "scan", count=2, series=1)
    ae = AE(ae_title="SCANNER")
    for i in instances:
        ds = pydicom.dcmread(i.path, stop_before_pixels=True)
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="SEALDROP")
    assert assoc.is_established
    assert assoc.send_c_store(pydicom.dcmread(instances[0].path)).Status == 0
    stop.set()
    end = time.monotonic() + 30
    while store(port, [instances[1].path]) is not None and time.monotonic() < end:
        time.sleep(0.05)
    assert store(port, [instances[1].path]) is None  # no longer listening
    assert thread.is_alive()  # waiting for the open association
    assert assoc.send_c_store(pydicom.dcmread(instances[1].path)).Status == 0
    assoc.release()
    thread.join(30)
    assert not thread.is_alive()
    assert logs[-1] == "stopped; 1 study left in the spool"
    assert any("2 stored, 0 refused" in line for line in logs)
