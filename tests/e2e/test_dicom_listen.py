"""``sealdrop dicom-listen`` between real peers: dcmtk's dcmsend/echoscu as the scanner,
a real relay, and the lab receiving with the real CLI.

What is proved: a multi-series study in seven transfer syntaxes becomes ONE
transfer whose instances (SOP instance UIDs, series, transfer syntax, pixel data)
arrive at the lab as they left the scanner; SIGKILL in the middle of a study loses
nothing that was acknowledged, and a restart sends it; a relay outage keeps the
study in the spool until the relay is back; SIGTERM exits 0 with pending studies
kept; C-ECHO and routing by called AE title, with dcmtk's own tools.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE

from tests.client.listenkit import Instance, expected, make_study, received
from tests.dcmtk import dcmtk
from tests.e2e.kit import SEALDROP, User, free_port, wait_for

DCMSEND = dcmtk("dcmsend")
ECHOSCU = dcmtk("echoscu")
pytestmark = pytest.mark.skipif(
    DCMSEND is None or ECHOSCU is None, reason="dcmtk (dcmsend, echoscu) is not installed")


class Listener:
    """``sealdrop dicom-listen`` run by ``user`` as a process, its log in a file."""

    def __init__(self, user: User, tmp: Path, *args: str) -> None:
        self.user = user
        self.port = free_port()
        self.args = ["dicom-listen", "--port", str(self.port), *args]
        self.log = tmp / f"listen-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.spool = user.home / "dicom-listen"

    def start(self) -> Listener:
        start_at = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([SEALDROP, *self.args], env=self.user.env,
                                         stdout=log, stderr=log)

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(self.text())
            return "listening for DICOM" in self.text()[start_at:]

        wait_for(listening, 60, "the listener to listen")
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def sent(self) -> int:
        return self.text().count("sent study from")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(60)

    def spooled(self) -> int:
        return sum(1 for _ in (self.spool / "studies").rglob("*.dcm"))


@pytest.fixture
def listeners() -> Iterator[list[Listener]]:
    running: list[Listener] = []
    yield running
    for listener in running:
        if listener.proc is not None and listener.proc.poll() is None:
            listener.proc.kill()
            listener.proc.wait(30)


def dcmsend(port: int, files: list[Path], *, called: str = "SEALDROP",
            check: bool = True) -> subprocess.CompletedProcess[str]:
    assert DCMSEND is not None
    # -dn: each file in its own transfer syntax (compressed ones included),
    # never decompressed on the way: what the listener stores is what was sent.
    r = subprocess.run([DCMSEND, "-dn", "-aet", "CBCT_SCANNER", "-aec", called,
                        "127.0.0.1", str(port), *map(str, files)],
                       capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def receive_all(lab: User, into: Path) -> dict[str, object]:
    into.mkdir(exist_ok=True)
    return dict(lab.json("receive", "--all", "--into", str(into)))


def pixels_of(instances: list[Instance]) -> dict[str, tuple[str, str, bytes]]:
    return expected(instances)


def test_a_study_from_dcmsend_arrives_whole_as_one_transfer(
        pair: tuple[User, User], tmp_path: Path, listeners: list[Listener]) -> None:
    practice, lab = pair
    listener = Listener(practice, tmp_path, "--to", lab.handle, "--idle", "1")
    listeners.append(listener.start())
    _, instances = make_study(tmp_path / "scanner", count=30, series=3)
    dcmsend(listener.port, [i.path for i in instances])
    wait_for(lambda: listener.sent() == 1, 120, "the study to be sent")
    assert listener.spooled() == 0  # removed once the relay confirmed it
    got = receive_all(lab, tmp_path / "lab")
    assert len(got["received"]) == 1  # type: ignore[arg-type]
    assert received(tmp_path / "lab") == pixels_of(instances)
    [folder] = (tmp_path / "lab").iterdir()
    assert folder.name.startswith("dicom-")
    assert len([p for p in folder.iterdir() if p.is_dir()]) == 3  # one folder per series
    # The note names the study generically; the log carries no patient data or UID.
    text = listener.text()
    assert "(3 series, 30 instances)" in text
    assert "Doe" not in text and instances[0].sop not in text
    assert listener.stop() == 0


def test_sigkill_mid_study_loses_nothing_acknowledged(
        pair: tuple[User, User], tmp_path: Path, listeners: list[Listener]) -> None:
    practice, lab = pair
    # A long idle time: nothing is sent before the kill.
    first = Listener(practice, tmp_path, "--to", lab.handle, "--idle", "1h")
    listeners.append(first.start())
    _, instances = make_study(tmp_path / "scanner", count=30, series=3)
    # dcmsend stores the first two series' worth and releases its association...
    dcmsend(first.port, [i.path for i in instances[:15]])
    # ...then a second association is in the middle of the study when the
    # listener is killed: five more acknowledged, the rest never sent.
    ae = AE(ae_title="CBCT_SCANNER")
    for i in instances[15:]:
        ds = pydicom.dcmread(i.path, stop_before_pixels=True)
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", first.port, ae_title="SEALDROP")
    assert assoc.is_established
    acked = list(instances[:15])
    for i in instances[15:20]:
        assert assoc.send_c_store(pydicom.dcmread(i.path)).Status == 0x0000
        acked.append(i)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assoc.abort()
    assert first.sent() == 0 and first.spooled() == 20

    # Restarted with a short idle time and no resend from the scanner.
    second = Listener(practice, tmp_path, "--to", lab.handle, "--idle", "1")
    second.port = first.port
    second.args = ["dicom-listen", "--port", str(first.port), "--to", lab.handle, "--idle", "1"]
    listeners.append(second.start())
    wait_for(lambda: second.sent() == 1, 120, "the pending study to be sent")
    receive_all(lab, tmp_path / "lab")
    assert received(tmp_path / "lab") == pixels_of(acked)
    assert "(3 series, 20 instances)" in second.text()
    assert second.stop() == 0


def test_relay_down_keeps_the_study_and_retries(
        pair: tuple[User, User], tmp_path: Path, listeners: list[Listener]) -> None:
    practice, lab = pair
    listener = Listener(practice, tmp_path, "--to", lab.handle, "--idle", "1",
                        "--retry-for", "0")
    listeners.append(listener.start())
    _, instances = make_study(tmp_path / "scanner", count=6, series=2)
    practice.relay.stop()
    try:
        dcmsend(listener.port, [i.path for i in instances])
        wait_for(lambda: "not sent" in listener.text(), 60, "a failed send")
        assert listener.spooled() == 6 and listener.sent() == 0
    finally:
        practice.relay.start()
    wait_for(lambda: listener.sent() == 1, 120, "the retried send")
    assert listener.spooled() == 0
    receive_all(lab, tmp_path / "lab")
    assert received(tmp_path / "lab") == pixels_of(instances)


def test_sigterm_keeps_pending_studies_and_a_later_instance_is_a_new_transfer(
        pair: tuple[User, User], tmp_path: Path, listeners: list[Listener]) -> None:
    practice, lab = pair
    listener = Listener(practice, tmp_path, "--to", lab.handle, "--idle", "1h")
    listeners.append(listener.start())
    study, instances = make_study(tmp_path / "scanner", count=4, series=1)
    dcmsend(listener.port, [i.path for i in instances[:3]])
    assert listener.stop() == 0
    assert listener.spooled() == 3 and "1 study left in the spool" in listener.text()

    again = Listener(practice, tmp_path, "--to", lab.handle, "--idle", "1")
    listeners.append(again.start())
    wait_for(lambda: again.sent() == 1, 120, "the pending study")
    # The scanner sends one more instance of the same study: a second transfer.
    dcmsend(again.port, [instances[3].path])
    wait_for(lambda: again.sent() == 2, 120, "the late instance")
    got = receive_all(lab, tmp_path / "lab")
    assert len(got["received"]) == 2  # type: ignore[arg-type]
    assert received(tmp_path / "lab") == pixels_of(instances)
    assert len(list((tmp_path / "lab").iterdir())) == 2  # two folders, no collision
    assert again.stop() == 0


def test_sigterm_mid_upload_resumes_the_same_transfer(
        pair: tuple[User, User], tmp_path: Path, listeners: list[Listener]) -> None:
    """The send flow's record resumes a study's send: same paths, recipients and note."""
    practice, lab = pair
    args = ("--to", lab.handle, "--idle", "1", "--chunk-size", "64KiB")
    listener = Listener(practice, tmp_path, *args)
    listeners.append(listener.start())
    _, instances = make_study(tmp_path / "scanner", count=30, series=3)

    def chunks_logged() -> int:
        logs = (practice.home / "outbox").glob("*.chunks")
        return sum(len(p.read_text().splitlines()) for p in logs)

    with practice.relay.throttled(up=256 * 1024):
        dcmsend(listener.port, [i.path for i in instances])
        wait_for(lambda: chunks_logged() >= 3, 120, "the upload to start")
        assert listener.stop() == 0
        practice.relay.link.drop_connections()
    assert listener.sent() == 0 and listener.spooled() == 30
    [(tid, state)] = practice.relay.sql("select id, state from transfers")
    assert state == "uploading"

    again = Listener(practice, tmp_path, *args)
    listeners.append(again.start())
    wait_for(lambda: again.sent() == 1, 120, "the resumed send")
    assert f"resumed the interrupted send of a study from SEALDROP (transfer {tid}" in again.text()
    assert f"transfer {tid}" in again.text().splitlines()[-1]
    assert practice.relay.sql("select id, state from transfers") == [(tid, "complete")]
    got = receive_all(lab, tmp_path / "lab")
    assert len(got["received"]) == 1  # type: ignore[arg-type]
    assert received(tmp_path / "lab") == pixels_of(instances)


def test_echo_and_called_ae_titles_with_dcmtk(
        pair: tuple[User, User], tmp_path: Path, listeners: list[Listener]) -> None:
    practice, lab = pair
    routes = tmp_path / "routes.toml"
    routes.write_text(f'[routes.LAB_DUPONT]\nto = ["{lab.handle}"]\n')
    listener = Listener(practice, tmp_path, "--routes", str(routes))
    listeners.append(listener.start())
    assert ECHOSCU is not None
    ok = subprocess.run([ECHOSCU, "-aec", "LAB_DUPONT", "127.0.0.1", str(listener.port)],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # The listener's own title has no route here (no --to): refused, like a typo.
    for called in ("SEALDROP", "LAB_DUPOND"):
        bad = subprocess.run([ECHOSCU, "-aec", called, "127.0.0.1", str(listener.port)],
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode != 0
        assert "Called AE Title Not Recognized" in bad.stdout + bad.stderr
    _, instances = make_study(tmp_path / "scanner", count=2, series=1)
    r = dcmsend(listener.port, [i.path for i in instances], called="LAB_DUPOND", check=False)
    assert r.returncode != 0 and listener.spooled() == 0
    dcmsend(listener.port, [i.path for i in instances], called="LAB_DUPONT")
    assert listener.spooled() == 2


def test_bad_configuration_fails_before_listening(pair: tuple[User, User], tmp_path: Path
                                                  ) -> None:
    practice, lab = pair
    cases = {
        ("--to", "Not A Handle"): "is not a sealdrop handle",
        ("--to", "nobody-known"): "is not among your contacts",
        (): "no route",
        ("--to", lab.handle, "--aet", "WAY_TOO_LONG_AE_TITLE"): "--aet",
        ("--to", lab.handle, "--tls-cert", str(tmp_path)): "tls-cert",
    }
    routes = tmp_path / "bad.toml"
    routes.write_text('[routes.LAB]\nto = "labo-dupont"\n')
    cases[("--routes", str(routes))] = "to must be a list"
    for args, message in cases.items():
        r = practice.run("dicom-listen", "--port", str(free_port()), *args, check=False,
                         timeout=60)
        assert r.returncode != 0, args
        assert message in r.stderr, (args, r.stderr)
    # Refused before the spool was even created.
    assert not (practice.home / "dicom-listen").exists()


ORTHANC = shutil.which("Orthanc") or next(
    (p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if Path(p).is_file()), None)


@pytest.mark.skipif(ORTHANC is None, reason="Orthanc is not installed (Debian package orthanc)")
def test_orthanc_sends_a_study_with_send_to_modality(
        pair: tuple[User, User], tmp_path: Path, listeners: list[Listener]) -> None:
    """The set-up docs/dicom.md gives: a DicomModalities entry and "Send to modality"."""
    import json
    import urllib.request

    practice, lab = pair
    listener = Listener(practice, tmp_path, "--to", lab.handle, "--idle", "5")
    listeners.append(listener.start())
    http = free_port()
    folder = tmp_path / "orthanc"
    folder.mkdir()
    config = folder / "orthanc.json"
    config.write_text(json.dumps({
        "Name": "practice-pacs", "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"), "HttpPort": http, "DicomPort": free_port(),
        "DicomAet": "PRACTICE_PACS", "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "Plugins": [],
        "DicomModalities": {"sealdrop": ["SEALDROP", "127.0.0.1", listener.port]},
    }))
    assert ORTHANC is not None
    with (folder / "orthanc.log").open("wb") as log:
        orthanc = subprocess.Popen([ORTHANC, str(config)], stdout=log, stderr=log)
    base = f"http://127.0.0.1:{http}"

    def call(path: str, body: bytes | None = None) -> object:
        req = urllib.request.Request(base + path, data=body,
                                     method="POST" if body is not None else "GET")
        with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310 - loopback
            return json.loads(r.read() or b"null")

    def up() -> bool:
        try:
            call("/system")
            return True
        except OSError:
            assert orthanc.poll() is None, (folder / "orthanc.log").read_text()
            return False

    try:
        wait_for(up, 60, "Orthanc")
        _, instances = make_study(tmp_path / "scanner", count=12, series=2)
        studies = {str(call("/instances", i.path.read_bytes())["ParentStudy"])  # type: ignore[index]
                   for i in instances}
        assert len(studies) == 1
        call("/modalities/sealdrop/echo", b"{}")
        call("/modalities/sealdrop/store", studies.pop().encode())
        wait_for(lambda: listener.sent() == 1, 120, "the study from Orthanc to be sent")
    finally:
        orthanc.terminate()
        orthanc.wait(60)
    receive_all(lab, tmp_path / "lab")
    assert received(tmp_path / "lab") == pixels_of(instances)
    # Orthanc opens a new association whenever the transfer syntax changes: the
    # study is still one transfer, since they follow each other within --idle.
    closed = re.findall(r"association from 'PRACTICE_PACS' .* closed: (\d+) stored, 0 refused",
                        listener.text())
    assert sum(map(int, closed)) == 12
