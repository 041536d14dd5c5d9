"""C-STORE SCU (client/dicom/forward_dimse.py) and the forward step's retries
(client/receive/forward.py) against a real DICOM peer: a pynetdicom Storage SCP
in this process, on a free loopback port, whose answers the test scripts (PACS
statuses storescp cannot be made to give: warnings, out of resources, refusal
of one syntax). Nothing is mocked below the network."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, MRImageStorage

from sealdrop.client.dicom import forward_dimse
from sealdrop.client.dicom.forward_dimse import PacsTarget, group, syntaxes_for
from sealdrop.client.dicom.instances import Instance, PlacedFile, read_instances
from sealdrop.client.errors import ClientError
from sealdrop.client.profile.forwards import ForwardStore
from sealdrop.client.receive.forward import Forwarder, Target

EXPLICIT, IMPLICIT, J2K = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.4.90"


class Scp:
    """A Storage SCP answering each C-STORE with the next scripted status (then 0x0000)."""

    def __init__(self, syntaxes: list[str]) -> None:
        self.statuses: list[int] = []
        self.received: list[str] = []
        self.callers: list[str] = []
        self.lock = threading.Lock()
        ae = AE(ae_title="TEST_PACS")
        for sop in (CTImageStorage, MRImageStorage):
            ae.add_supported_context(sop, syntaxes)
        self.server = ae.start_server(("127.0.0.1", 0), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        self.port = int(self.server.server_address[1])
        self.target = PacsTarget("TEST_PACS", "127.0.0.1", self.port)

    def _on_store(self, event: Any) -> int:
        with self.lock:
            self.received.append(str(event.request.AffectedSOPInstanceUID))
            self.callers.append(str(event.assoc.requestor.ae_title).strip())
            return self.statuses.pop(0) if self.statuses else 0x0000


@pytest.fixture
def scp() -> Iterator[Scp]:
    s = Scp([EXPLICIT, IMPLICIT, J2K])
    try:
        yield s
    finally:
        s.server.shutdown()


def _instances(tmp_path: Path, names: list[str]) -> list[Instance]:
    files = []
    for n, name in enumerate(names):
        ds = pydicom.dcmread(get_testdata_file(name))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.{n + 1}"
        p = tmp_path / f"IM{n}"
        ds.save_as(p)
        files.append(PlacedFile(f"case/IM{n}", p, hashlib.sha256(p.read_bytes()).hexdigest()))
    return read_instances(files)


@pytest.mark.parametrize("text,want", [
    ("LAB_PACS@127.0.0.1:11112", ("LAB_PACS", "127.0.0.1", 11112)),
    ("A@pacs.lab.local:104", ("A", "pacs.lab.local", 104)),
    ("X Y@[::1]:4242", ("X Y", "::1", 4242)),
])
def test_target_parses(text: str, want: tuple[str, str, int]) -> None:
    t = PacsTarget.parse(text)
    assert (t.aet, t.host, t.port) == want


@pytest.mark.parametrize("text", ["", "LAB_PACS", "LAB_PACS@host", "@host:104", "A@:104",
                                  "A@host:0", "A@host:70000", "A@host:x", "A" * 17 + "@h:1",
                                  "A\\B@h:1", "A\x1b@h:1", "   @h:1"])
def test_bad_targets_are_refused(text: str) -> None:
    with pytest.raises(ClientError):
        PacsTarget.parse(text)


def test_syntaxes_offer_fallbacks_only_without_decoding() -> None:
    assert syntaxes_for(EXPLICIT) == (EXPLICIT, IMPLICIT)
    assert syntaxes_for(IMPLICIT) == (IMPLICIT, EXPLICIT)
    assert syntaxes_for("1.2.840.10008.1.2.1.99")[0] == "1.2.840.10008.1.2.1.99"
    for compressed in (J2K, "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.5",
                       "1.2.840.10008.1.2.2"):
        assert syntaxes_for(compressed) == (compressed,)


def test_groups_fit_the_context_limit() -> None:
    def inst(n: int, sop: str) -> Instance:
        return Instance(n, f"f{n}", Path("x"), sop, f"1.2.{n}", J2K, "s", 1)

    many = [inst(n, f"1.2.840.10008.5.1.4.1.1.{n % 5}") for n in range(20)]
    groups = group(many, limit=2)
    assert [i.index for g in groups for i in g] == list(range(20))  # order kept
    for g in groups:
        assert len({i.sop_class for i in g}) <= 2
    assert len(group(many)) == 1  # five contexts fit one association


def test_store_every_status_is_read_per_instance(tmp_path: Path, scp: Scp) -> None:
    inst = _instances(tmp_path, ["CT_small.dcm"] * 7)
    scp.statuses = [0x0000, 0xB000, 0xB006, 0xB007, 0xA700, 0xA900, 0xC123]
    a = forward_dimse.store(scp.target, inst, calling_aet="ME")
    assert a.error is None
    assert [o.stored for o in a.outcomes] == [True] * 4 + [False] * 3
    assert a.outcomes[1].status.startswith("0xB000") and "warning" in a.outcomes[1].status
    assert a.outcomes[4].status.startswith("0xA700") and a.outcomes[4].reason
    assert scp.received == [i.sop_instance for i in inst]
    assert set(scp.callers) == {"ME"}  # --calling-aet is what the PACS sees


def test_a_syntax_the_pacs_refuses_is_named_and_native_ones_fall_back(tmp_path: Path) -> None:
    only_implicit = Scp([IMPLICIT])
    try:
        inst = _instances(tmp_path, ["CT_small.dcm", "MR_small_jp2klossless.dcm"])
        a = forward_dimse.store(only_implicit.target, inst)
    finally:
        only_implicit.server.shutdown()
    explicit, j2k = a.outcomes
    assert explicit.stored  # Explicit VR LE file, re-encoded as Implicit: no pixel decoded
    assert not j2k.stored and "accepted no transfer syntax" in j2k.reason
    assert "JPEG 2000" in j2k.reason
    assert only_implicit.received == [inst[0].sop_instance]


def test_nothing_listening_is_named(tmp_path: Path) -> None:
    from tests.e2e.kit import free_port

    target = PacsTarget("GONE", "127.0.0.1", free_port())
    a = forward_dimse.store(target, _instances(tmp_path, ["CT_small.dcm"]), timeout=5)
    assert a.outcomes == () and a.transient
    assert a.error == (f"the PACS {target} cannot be reached (nothing answers on "
                       f"127.0.0.1:{target.port}, or the connection timed out)")


def _forwarder(tmp_path: Path, scp: Scp, waits: list[float]) -> tuple[Forwarder, str]:
    names = ["CT_small.dcm", "MR_small.dcm", "CT_small.dcm"]
    inst = _instances(tmp_path, names)
    fwd = Forwarder(tmp_path / "home", [Target("dimse", str(scp.target))], attempts=3,
                    base_delay=0.5, interval=10, max_backoff=25, clock=lambda: 1000.0)
    fwd.store.begin("rid1", into=tmp_path, files=[
        {"path": i.path, "placed": str(i.placed),
         "sha256": hashlib.sha256(i.placed.read_bytes()).hexdigest()} for i in inst],
        targets=[{"key": t.key, "kind": t.kind, "address": t.address,
                  "calling_aet": t.calling_aet} for t in fwd.targets])
    return fwd, "rid1"


def test_forward_retries_only_what_was_not_stored_with_backoff(tmp_path: Path,
                                                               scp: Scp) -> None:
    waits: list[float] = []
    fwd, rid = _forwarder(tmp_path, scp, waits)
    scp.statuses = [0x0000, 0xA700, 0xA700, 0xA700]  # IM1 fails twice, then is stored
    rep = fwd.run(rid, fwd.targets[0], wait=waits.append)
    assert rep.done and rep.stored == (True, True, True) and rep.error is None
    assert waits == [0.5, 1.0]  # exponential backoff inside the run
    # IM0 once; IM1 and IM2 on the first attempt, IM1 twice more... only what lacked.
    assert scp.received.count("1.2.826.0.1.1") == 1
    assert scp.received.count("1.2.826.0.1.2") == 3
    assert fwd.pending() == []


def test_forward_still_failing_stays_pending_with_its_next_round(tmp_path: Path,
                                                                scp: Scp) -> None:
    fwd, rid = _forwarder(tmp_path, scp, [])
    scp.statuses = [0x0000] + [0xA700] * 100
    rep = fwd.run(rid, fwd.targets[0], wait=lambda s: None)
    assert not rep.done and rep.stored == (True, False, False)
    assert "did not store 2 of 3" in (rep.error or "")
    assert [j["state"] for j in rep.to_json()["instances"]] == ["stored", "not stored",
                                                                  "not stored"]
    rec = ForwardStore(tmp_path / "home").load()[rid]["targets"][fwd.targets[0].key]
    assert rec["next_at"] == 1000.0 + 10 and rec["rounds"] == 1
    assert fwd.pending(due=True) == []  # not yet due at t=1000
    rep = fwd.run(rid, fwd.targets[0], wait=lambda s: None)
    rec = ForwardStore(tmp_path / "home").load()[rid]["targets"][fwd.targets[0].key]
    assert rec["next_at"] == 1000.0 + 20  # doubled
    rep = fwd.run(rid, fwd.targets[0], wait=lambda s: None)
    rep = fwd.run(rid, fwd.targets[0], wait=lambda s: None)
    rec = ForwardStore(tmp_path / "home").load()[rid]["targets"][fwd.targets[0].key]
    assert rec["next_at"] == 1000.0 + 25  # capped at max_backoff
    assert rec["stored"] == [True, False, False]
    scp.statuses = []
    assert fwd.run(rid, fwd.targets[0], wait=lambda s: None).done


def test_store_never_unmarks_a_stored_instance(tmp_path: Path) -> None:
    s = ForwardStore(tmp_path)
    s.begin("r", into=tmp_path, files=[{"path": "a", "placed": "/a", "sha256": "0"}] * 2,
            targets=[{"key": "dimse:X@h:1", "kind": "dimse", "address": "X@h:1",
                      "calling_aet": "S"}])
    t = s.update("r", "dimse:X@h:1", stored={0: (True, "0x0000", "")}, error=None, next_at=5)
    assert t["stored"] == [True, False] and not t["done"] and t["next_at"] == 5
    t = s.update("r", "dimse:X@h:1", stored={0: (False, "0xA700", "no"),
                                             1: (True, "0x0000", "")}, error=None, next_at=9)
    assert t["stored"] == [True, True] and t["done"] and t["status"][0] == "0x0000"
    assert s.pending() == []
    (tmp_path / "forwards.json").write_text("{broken")
    with pytest.raises(ClientError, match="damaged"):
        s.load()


def test_done_forwards_are_dropped_after_a_while_pending_ones_never(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time as time_mod

    from sealdrop.client.profile import forwards

    s = ForwardStore(tmp_path)
    target = {"key": "dimse:X@h:1", "kind": "dimse", "address": "X@h:1", "calling_aet": "S"}
    files = [{"path": "a", "placed": "/a", "sha256": "0"}]
    for rid in ("done", "pending"):
        s.begin(rid, into=tmp_path, files=files, targets=[target])
    s.update("done", "dimse:X@h:1", stored={0: (True, "0x0000", "")}, error=None, next_at=0)
    s.begin("new", into=tmp_path, files=files, targets=[target])
    assert set(s.load()) == {"done", "pending", "new"}  # done just now: kept
    later = time_mod.time() + forwards.KEEP_DONE + 10
    monkeypatch.setattr(forwards.time, "time", lambda: later)
    s.begin("newer", into=tmp_path, files=files, targets=[target])
    assert set(s.load()) == {"pending", "new", "newer"}


def test_one_process_forwards_a_transfer_at_a_time(tmp_path: Path, scp: Scp) -> None:
    from sealdrop.client.profile.filelock import locked

    fwd, rid = _forwarder(tmp_path, scp, [])
    with locked(fwd.lock_for(rid, fwd.targets[0]), wait=False):  # "another process"
        rep = fwd.run(rid, fwd.targets[0], wait=lambda s: None)
    assert not rep.done and "another sealdrop process" in (rep.error or "")
    assert scp.received == []
    assert fwd.run(rid, fwd.targets[0], wait=lambda s: None).done
    assert not list((tmp_path / "home").glob("forwarding-*"))  # lock removed after
