"""Real PACS peers for the forwarding tests: dcmtk's storescp and Orthanc, on loopback.

Each runs as a child process on a free 127.0.0.1 port with its own temporary
folders, and is killed by the fixture that started it. ``dicom_case`` builds a
multi-study, multi-series case from pydicom's own test files in their
original transfer syntaxes (compressed ones included), each given fresh UIDs
so that no two share a SOP instance UID.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.e2e.kit import free_port, wait_for

STORESCP = "/usr/bin/storescp"  # dcmtk's; .venv/bin/storescp is pynetdicom's app
ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"

# (study, series, pydicom test file): explicit and implicit LE, big endian,
# deflate, RLE, JPEG baseline and extended, JPEG 2000, JPEG-LS.
CASE = [
    ("A", "1", "CT_small.dcm"),            # Explicit VR LE
    ("A", "1", "693_J2KI.dcm"),            # JPEG 2000
    ("A", "2", "MR_small_RLE.dcm"),        # RLE
    ("A", "2", "MR_small_implicit.dcm"),   # Implicit VR LE
    ("A", "2", "MR_small_jpeg_ls_lossless.dcm"),  # JPEG-LS
    ("A", "2", "MR_small_expb.dcm"),       # Explicit VR Big Endian
    ("B", "3", "SC_rgb_jpeg_dcmtk.dcm"),   # JPEG baseline
    ("B", "3", "JPEG-lossy.dcm"),          # JPEG extended
    ("B", "4", "image_dfl.dcm"),           # Deflated Explicit VR LE
    ("B", "4", "SC_rgb_rle.dcm"),          # RLE
]


def dicom_case(root: Path) -> tuple[Path, dict[str, dict[str, Any]]]:
    """The case folder (DICOM in two studies, four series, plus an STL), and per SOP
    instance UID: {"ts", "pixels", "name"} of the original."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    case = root / "case-pacs"
    expected: dict[str, dict[str, Any]] = {}
    studies = {s: generate_uid() for s in {s for s, _, _ in CASE}}
    series = {s: generate_uid() for s in {s for _, s, _ in CASE}}
    for n, (study, ser, name) in enumerate(CASE):
        ds = pydicom.dcmread(get_testdata_file(name))
        uid = generate_uid()
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.StudyInstanceUID = studies[study]
        ds.SeriesInstanceUID = series[ser]
        out = case / f"study{study}" / f"series{ser}" / f"IM{n:04d}"
        out.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(out)
        back = pydicom.dcmread(out)
        assert back.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
        expected[uid] = {"ts": str(back.file_meta.TransferSyntaxUID),
                         "pixels": back.PixelData, "name": out.relative_to(case).as_posix()}
    (case / "scan.stl").write_bytes(b"solid t\nendsolid\n")
    return case, expected


def stored_in(folder: Path) -> dict[str, dict[str, Any]]:
    """What a PACS wrote to ``folder``: per SOP instance UID, its transfer syntax and pixels."""
    import pydicom

    out = {}
    for p in folder.rglob("*"):
        if p.is_file():
            with contextlib.suppress(Exception):
                ds = pydicom.dcmread(p)
                out[str(ds.SOPInstanceUID)] = {"ts": str(ds.file_meta.TransferSyntaxUID),
                                               "pixels": ds.PixelData}
    return out


class Storescp:
    """dcmtk's storescp as a PACS: ``LAB_PACS`` on a free port, accepting every syntax."""

    def __init__(self, root: Path, *extra: str, aet: str = "LAB_PACS") -> None:
        self.out = root / "storescp-out"
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = root / "storescp.log"
        self.port = free_port()
        self.aet = aet
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"{self.aet}@127.0.0.1:{self.port}"

    def start(self, *extra: str) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [STORESCP, "-od", str(self.out), "-aet", self.aet, "+xa", "-pm",
                 *(extra or self.extra), str(self.port)], stdout=log, stderr=log)

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text(errors="replace"))
            with contextlib.suppress(OSError):
                import socket

                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            return False

        wait_for(listening, 30, "storescp to listen")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def files(self) -> list[Path]:
        return [p for p in self.out.rglob("*") if p.is_file()]


@contextlib.contextmanager
def storescp(root: Path, *extra: str) -> Iterator[Storescp]:
    s = Storescp(root, *extra)
    s.start()
    try:
        yield s
    finally:
        s.kill()


class Orthanc:
    """Orthanc on free loopback ports with a temporary storage, with or without DICOMweb."""

    def __init__(self, root: Path, *, dicomweb: bool, users: dict[str, str] | None = None
                 ) -> None:
        self.root = root
        self.users = users or {}
        self.http = free_port()
        self.dicom = free_port()
        storage = root / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        self.config = root / "orthanc.json"
        self.config.write_text(json.dumps({
            "Name": "sealdrop-test", "HttpPort": self.http, "DicomPort": self.dicom,
            "StorageDirectory": str(storage), "IndexDirectory": str(storage),
            "RemoteAccessAllowed": False, "AuthenticationEnabled": bool(users),
            "RegisteredUsers": users or {},
            # Rejects an association whose called AE title is not ORTHANC.
            "DicomAet": "ORTHANC", "DicomCheckCalledAet": True,
            "Plugins": [DICOMWEB_PLUGIN] if dicomweb else [],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }))
        self.log = root / "orthanc.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([ORTHANC, str(self.config)], stdout=log, stderr=log)

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text(errors="replace")[-3000:])
            with contextlib.suppress(OSError):
                self.get("/system")
                return True
            return False

        wait_for(up, 60, "Orthanc to answer")

    def get(self, path: str) -> Any:
        req = urllib.request.Request(self.url + path)
        if self.users:
            import base64

            user, password = next(iter(self.users.items()))
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
            body = r.read()
        return json.loads(body) if body[:1] in (b"{", b"[") else body

    def stored(self) -> dict[str, dict[str, Any]]:
        """Per SOP instance UID, the transfer syntax and pixels of the file Orthanc keeps."""
        out = self.root / "fetched"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        for oid in self.get("/instances"):
            (out / oid).write_bytes(self.get(f"/instances/{oid}/file"))
        return stored_in(out)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


@contextlib.contextmanager
def orthanc(root: Path, *, dicomweb: bool, users: dict[str, str] | None = None
            ) -> Iterator[Orthanc]:
    o = Orthanc(root, dicomweb=dicomweb, users=users)
    o.start()
    try:
        yield o
    finally:
        o.stop()
