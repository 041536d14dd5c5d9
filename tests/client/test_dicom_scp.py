"""The listener's SCP over real loopback DICOM (pynetdicom as the scanner), without a relay.

Statuses, routing by called AE title, C-ECHO, every transfer syntax stored as
sent, duplicates, the disk reserve, and DICOM TLS with and without client
certificates (certificates made here with ``cryptography``).
"""

from __future__ import annotations

import datetime
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydicom.uid import generate_uid
from pynetdicom import AE, _config
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from sealdrop.client.dicom.dispatch import Activity
from sealdrop.client.dicom.inbound import InboundSpool
from sealdrop.client.dicom.routes import Route, RouteTable
from sealdrop.client.dicom.scp import (
    CANNOT_UNDERSTAND,
    OUT_OF_RESOURCES,
    SUCCESS,
    TRANSFER_SYNTAXES,
    StorageScp,
    TlsFiles,
    server_tls,
)
from tests.dcmtk import dcmtk

from .listenkit import expected, make_study, received

ECHOSCU = dcmtk("echoscu")
DCMSEND = dcmtk("dcmsend")


class Node:
    def __init__(self, root: Path, *, table: RouteTable | None = None, min_free: int = 0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.spool = InboundSpool(root / "spool")
        self.activity = Activity()
        self.logs: list[str] = []
        self.table = table or RouteTable({"SEALDROP": Route("SEALDROP", ("labo-dupont",))}, None)
        self.scp = StorageScp(self.table, self.spool, self.activity, aet="SEALDROP",
                              min_free=min_free, log=self.logs.append)
        self.tls = tls

    def studies_on_disk(self) -> dict[str, tuple[str, str, bytes]]:
        return received(self.spool.studies_dir)


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[object]:
    started: list[Node] = []
    saved = (tempfile.tempdir, _config.STORE_RECV_CHUNKED_DATASET)

    def make(**kw: object) -> Node:
        node = Node(tmp_path / f"n{len(started)}", **kw)  # type: ignore[arg-type]
        ctx = node.spool.owned()
        ctx.__enter__()
        node.scp.start("127.0.0.1", 0, node.tls)
        started.append(node)
        node._ctx = ctx  # type: ignore[attr-defined]
        return node

    yield make
    for node in started:
        node.scp.stop_accepting()
        node.scp.abort_all()
        node._ctx.__exit__(None, None, None)  # type: ignore[attr-defined]
    tempfile.tempdir, _config.STORE_RECV_CHUNKED_DATASET = saved


def store(port: int, paths: list[Path], *, called: str = "SEALDROP",
          tls: tuple[ssl.SSLContext, str] | None = None) -> list[int] | None:
    """C-STORE ``paths`` in one association; each status, or None if not associated."""
    ae = AE(ae_title="SCANNER")
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=called, tls_args=tls)
    if not assoc.is_established:
        return None
    try:
        return [int(assoc.send_c_store(pydicom.dcmread(p)).Status) for p in paths]
    finally:
        assoc.release()


def wait_closed(node: Node) -> None:
    import time

    end = time.monotonic() + 30
    while node.scp.open_associations() and time.monotonic() < end:
        time.sleep(0.02)
    assert node.scp.open_associations() == 0


def test_every_transfer_syntax_is_stored_as_sent_grouped_by_series(
        node_factory: object, tmp_path: Path) -> None:
    node = node_factory()  # type: ignore[operator]
    study, instances = make_study(tmp_path / "study", count=16, series=3)
    assert store(node.scp.port, [i.path for i in instances]) == [SUCCESS] * 16
    wait_closed(node)
    assert node.studies_on_disk() == expected(instances)
    [one] = node.spool.studies()
    assert one.state.route == "SEALDROP" and one.state.recipients == ("labo-dupont",)
    assert one.counts() == (3, 16)
    # No UID and no patient data in any name in the spool.
    names = " ".join(str(p.relative_to(node.spool.root)) for p in node.spool.root.rglob("*"))
    assert study not in names and instances[0].sop not in names and "Doe" not in names
    assert list(node.spool.incoming.iterdir()) == []  # nothing left half-written
    assert any("16 stored, 0 refused" in line for line in node.logs)
    assert not any(study in line or "Doe" in line for line in node.logs)


def test_a_resent_instance_replaces_its_copy(node_factory: object, tmp_path: Path) -> None:
    node = node_factory()  # type: ignore[operator]
    _, instances = make_study(tmp_path / "study", count=3, series=1)
    assert store(node.scp.port, [i.path for i in instances]) == [SUCCESS] * 3
    # The scanner resends the first one, now in another series.
    ds = pydicom.dcmread(instances[0].path)
    ds.SeriesInstanceUID = generate_uid()
    ds.save_as(instances[0].path)
    assert store(node.scp.port, [instances[0].path]) == [SUCCESS]
    wait_closed(node)
    on_disk = node.studies_on_disk()
    assert sorted(on_disk) == sorted(i.sop for i in instances)
    assert on_disk[instances[0].sop][0] == str(ds.SeriesInstanceUID)


def test_two_studies_two_folders(node_factory: object, tmp_path: Path) -> None:
    node = node_factory()  # type: ignore[operator]
    _, a = make_study(tmp_path / "a", count=2, series=1)
    _, b = make_study(tmp_path / "b", count=2, series=1)
    assert store(node.scp.port, [i.path for i in a + b]) == [SUCCESS] * 4
    assert len(node.spool.studies()) == 2


def test_a_data_set_without_study_or_instance_uid_is_not_understood(
        node_factory: object, tmp_path: Path) -> None:
    node = node_factory()  # type: ignore[operator]
    _, instances = make_study(tmp_path / "study", count=2, series=1)
    ds = pydicom.dcmread(instances[0].path)
    del ds.StudyInstanceUID
    ds.save_as(instances[0].path)
    assert store(node.scp.port, [i.path for i in instances]) == [CANNOT_UNDERSTAND, SUCCESS]
    wait_closed(node)
    assert list(node.studies_on_disk()) == [instances[1].sop]
    assert any("1 stored, 1 refused" in line for line in node.logs)


def test_below_the_disk_reserve_nothing_is_acknowledged(
        node_factory: object, tmp_path: Path) -> None:
    node = node_factory(min_free=1 << 60)  # type: ignore[operator]
    _, instances = make_study(tmp_path / "study", count=2, series=1)
    assert store(node.scp.port, [i.path for i in instances]) == [OUT_OF_RESOURCES] * 2
    wait_closed(node)
    assert node.spool.studies() == []
    assert list(node.spool.incoming.iterdir()) == []


def test_echo_and_routing_by_called_ae_title(node_factory: object) -> None:
    table = RouteTable({"SEALDROP": Route("SEALDROP", ("labo-dupont",)),
                        "LAB_DUPONT": Route("LAB_DUPONT", ("labo-dupont",))}, None)
    node = node_factory(table=table)  # type: ignore[operator]
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context(Verification)
    for called in ("SEALDROP", "LAB_DUPONT"):
        assoc = ae.associate("127.0.0.1", node.scp.port, ae_title=called)
        assert assoc.is_established, called
        assert assoc.send_c_echo().Status == SUCCESS
        assoc.release()
    assoc = ae.associate("127.0.0.1", node.scp.port, ae_title="TYPO")
    assert assoc.is_rejected
    rj = assoc.acceptor.primitive
    assert (rj.result, rj.result_source, rj.diagnostic) == (0x01, 0x01, 0x07)
    assert any("'TYPO'" in line and "not recognised" in line for line in node.logs)


def test_a_default_route_accepts_any_called_title(node_factory: object, tmp_path: Path) -> None:
    table = RouteTable({}, Route("*", ("radiologue-b",)))
    node = node_factory(table=table)  # type: ignore[operator]
    _, instances = make_study(tmp_path / "study", count=1, series=1)
    assert store(node.scp.port, [instances[0].path], called="ANYTHING") == [SUCCESS]
    [study] = node.spool.studies()
    assert study.state.recipients == ("radiologue-b",)


def test_conformance_lists_compressed_syntaxes_and_no_jpip() -> None:
    for ts in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.80",
               "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2"):
        assert ts in TRANSFER_SYNTAXES
    assert "1.2.840.10008.1.2.4.94" not in TRANSFER_SYNTAXES


# -- DICOM TLS -----------------------------------------------------------------------


def _cert(name: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, object],
          *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer[0])
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
    return builder.sign(issuer[1], hashes.SHA256())  # type: ignore[arg-type]


def _write(folder: Path, stem: str, cert: x509.Certificate,
           key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    c, k = folder / f"{stem}.pem", folder / f"{stem}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return c, k


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "pki"
    folder.mkdir()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "practice CA")])
    ca = _cert("practice CA", ca_key, (ca_name, ca_key), ca=True)
    out: dict[str, Path] = {}
    out["ca"], _ = _write(folder, "ca", ca, ca_key)
    for who in ("server", "scanner"):
        key = ec.generate_private_key(ec.SECP256R1())
        out[who], out[f"{who}-key"] = _write(folder, who, _cert(who, key, (ca_name, ca_key),
                                                                 ca=False), key)
    return out


def _client(pki: dict[str, Path], *, with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki["ca"]))
    if with_cert:
        ctx.load_cert_chain(pki["scanner"], pki["scanner-key"])
    return ctx


def test_tls_with_client_certificates(node_factory: object, pki: dict[str, Path],
                                      tmp_path: Path) -> None:
    tls = server_tls(TlsFiles(pki["server"], pki["server-key"], pki["ca"]))
    node = node_factory(tls=tls)  # type: ignore[operator]
    _, instances = make_study(tmp_path / "study", count=2, series=1)
    paths = [i.path for i in instances]
    assert store(node.scp.port, paths, tls=(_client(pki, with_cert=True), "localhost")) \
        == [SUCCESS] * 2
    # No client certificate, or no TLS at all: no association, nothing stored.
    assert store(node.scp.port, paths, tls=(_client(pki, with_cert=False), "localhost")) is None
    assert store(node.scp.port, paths) is None
    wait_closed(node)
    assert sorted(node.studies_on_disk()) == sorted(i.sop for i in instances)


def test_tls_without_a_ca_accepts_any_client(node_factory: object, pki: dict[str, Path],
                                             tmp_path: Path) -> None:
    tls = server_tls(TlsFiles(pki["server"], pki["server-key"]))
    node = node_factory(tls=tls)  # type: ignore[operator]
    _, instances = make_study(tmp_path / "study", count=1, series=1)
    assert store(node.scp.port, [instances[0].path],
                 tls=(_client(pki, with_cert=False), "localhost")) == [SUCCESS]


def test_unreadable_tls_files_are_named(tmp_path: Path, pki: dict[str, Path]) -> None:
    from sealdrop.client.dicom.scp import ScpError

    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ScpError, match="cannot load the TLS"):
        server_tls(TlsFiles(bad, pki["server-key"]))


@pytest.mark.skipif(ECHOSCU is None, reason="dcmtk's echoscu is not installed")
def test_dcmtk_echoes_over_mutual_tls(node_factory: object, pki: dict[str, Path]) -> None:
    """dcmtk (Debian's build has TLS) with its default BCP 195 profile, as a scanner would."""
    tls = server_tls(TlsFiles(pki["server"], pki["server-key"], pki["ca"]))
    node = node_factory(tls=tls)  # type: ignore[operator]
    base = [str(ECHOSCU), "-aec", "SEALDROP", "+tls", str(pki["scanner-key"]), str(pki["scanner"]),
            "+cf", str(pki["ca"])]
    ok = subprocess.run([*base, "127.0.0.1", str(node.scp.port)],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    plain = subprocess.run([str(ECHOSCU), "-aec", "SEALDROP", "127.0.0.1", str(node.scp.port)],
                           capture_output=True, text=True, timeout=60)
    assert plain.returncode != 0


@pytest.mark.skipif(DCMSEND is None, reason="dcmtk's dcmsend is not installed")
def test_a_large_instance_is_never_whole_in_memory(node_factory: object, tmp_path: Path) -> None:
    """48 MiB of pixel data cross the SCP while Python's allocations stay far below that:
    pynetdicom writes the data set to the spool as it arrives (STORE_RECV_CHUNKED_DATASET).
    The sender is dcmtk, another process, so only the listener's memory is measured."""
    import tracemalloc

    from .listenkit import source

    node = node_factory()  # type: ignore[operator]
    ds = pydicom.dcmread(source("CT_small.dcm"))
    ds.Rows, ds.Columns, ds.NumberOfFrames = 512, 512, 96  # 16-bit: 48 MiB
    ds.PixelData = bytes(range(256)) * (512 * 512 * 2 * 96 // 256)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    big = tmp_path / "big.dcm"
    ds.save_as(big, enforce_file_format=True)
    del ds
    size = big.stat().st_size
    tracemalloc.start()
    try:
        r = subprocess.run([str(DCMSEND), "-aec", "SEALDROP", "127.0.0.1", str(node.scp.port),
                            str(big)], capture_output=True, text=True, timeout=300)
        wait_closed(node)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    [study] = node.spool.studies()
    [stored] = list(study.files.rglob("*.dcm"))
    assert stored.stat().st_size >= size - 1024  # all of it arrived (file meta may differ)
    assert peak < size // 4, f"peak {peak} bytes for a {size}-byte instance"
