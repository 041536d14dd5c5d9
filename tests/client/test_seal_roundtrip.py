"""Sealing real files and receiving them back; interop with the real age and tar binaries.

Sealing goes through the path ``sealdrop send`` uses (scan, plan_new_transfer,
seal), into a file instead of the uploader.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pydicom
import pytest

from sealdrop.client.errors import SealError
from sealdrop.client.receive.staging import STAGING_PREFIX
from sealdrop.client.send.plan import plan_new_transfer
from sealdrop.client.send.scan import media_type, scan
from sealdrop.client.send.seal import seal
from sealdrop.crypto import age
from sealdrop.crypto.age.stream import Writer
from sealdrop.crypto.bundle import KeyBundle
from sealdrop.crypto.container import ContainerReader
from sealdrop.crypto.identity import SecretIdentity
from sealdrop.crypto.manifest import Manifest
from tests.client.receivekit import ALICE, BOB, CAROL, NOW, Profile, make_dest

DICOM_DIR = Path(pydicom.__file__).parent / "data" / "test_files"
AGE = shutil.which("age")
TAR = shutil.which("tar")


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def seal_files(paths: list[Path], sender: SecretIdentity, bundles: list[KeyBundle], note: str,
               dst: Writer, now: int, *, classical: bool = False) -> Manifest:
    """What `sealdrop send` does between reading the files and the upload."""
    plan, state = plan_new_transfer(scan(paths), sender.bundle, bundles, note=note, created=now,
                                    classical=classical)
    return seal(plan, sender, dst, state)


def sealed(paths: list[Path], *to: SecretIdentity, classical: bool = False,
           note: str = "") -> bytes:
    out = io.BytesIO()
    seal_files(paths, ALICE, [t.bundle for t in (to or (BOB,))], note, out, NOW,
               classical=classical)
    return out.getvalue()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src" / "Cas Müller 2024"
    (src / "CBCT").mkdir(parents=True)
    for name in ("CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "JPEG2000.dcm"):
        shutil.copy(DICOM_DIR / name, src / "CBCT" / name)
    shutil.copy(DICOM_DIR / "CT_small.dcm", src / "CBCT" / "IM0005")  # no extension
    (src / "empty.txt").write_bytes(b"")
    (src / "prescription ©.pdf").write_bytes(b"%PDF-1.4 " + os.urandom(3000))
    (src / "scan.stl").write_bytes(b"solid x\n" * 1000)
    deep = src.joinpath(*[f"niveau {i}" for i in range(40)])
    deep.mkdir(parents=True)
    (deep / "ファイル.ply").write_bytes(b"ply\n" + os.urandom(100))
    (deep / "empty").write_bytes(b"")
    (src / "empty folder").mkdir()
    return src


def test_round_trip_real_dicom_series_and_odd_names(tmp_path: Path, source: Path) -> None:
    data = sealed([source], note="Couronne 36, teinte A2")
    bob = Profile(tmp_path / "bob", BOB, verified=(ALICE,))
    dest = make_dest(tmp_path)
    got = bob.receive(data, dest)
    assert tree(dest / source.name) == tree(source)
    m = got.manifest
    assert m.note == "Couronne 36, teinte A2"
    types = {f.path.rsplit("/", 1)[-1]: f.media_type for f in m.files}
    assert types["CT_small.dcm"] == types["IM0005"] == "application/dicom"
    assert types["scan.stl"] == "model/stl" and types["prescription ©.pdf"] == "application/pdf"
    for f in m.files:
        assert f.sha256 == hashlib.sha256((source.parent / f.path).read_bytes()).digest()
    assert not [p for p in dest.iterdir() if p.name.startswith(STAGING_PREFIX)]
    pydicom.dcmread(dest / source.name / "CBCT" / "CT_small.dcm")


def test_several_paths_and_several_recipients(tmp_path: Path, source: Path) -> None:
    single = tmp_path / "note.txt"
    single.write_text("hello")
    data = sealed([source / "CBCT", single], BOB, CAROL)
    for who in (BOB, CAROL):
        p = Profile(tmp_path / who.handle, who, verified=(ALICE,))
        dest = tmp_path / f"dest-{who.handle}"
        dest.mkdir()
        p.receive(data, dest)
        assert (dest / "note.txt").read_text() == "hello"
        assert tree(dest / "CBCT") == tree(source / "CBCT")


def test_hybrid_is_used_for_pq_bundles(source: Path) -> None:
    header = sealed([source])[:4000]
    assert b"-> mlkem768x25519 " in header and b"-> X25519 " not in header
    classic = sealed([source], classical=True)[:400]
    assert b"-> X25519 " in classic


def test_no_fallback_when_pq_unavailable(source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sealdrop.crypto.age import hybrid

    def unavailable(text: str) -> object:
        raise age.RecipientError("post-quantum recipients are not supported yet")

    monkeypatch.setattr(hybrid.HybridRecipient, "parse", classmethod(lambda cls, t: unavailable(t)))
    out = io.BytesIO()
    with pytest.raises(SealError, match="refusing to fall back"):
        seal_files([source], ALICE, [BOB.bundle], "", out, NOW)
    assert out.getvalue() == b""


def test_symlinks_and_special_files_are_refused(tmp_path: Path, source: Path) -> None:
    (source / "link.dcm").symlink_to(source / "scan.stl")
    with pytest.raises(SealError, match="link.dcm is a symbolic link"):
        scan([source])
    (source / "link.dcm").unlink()
    os.mkfifo(source / "pipe")
    with pytest.raises(SealError, match="pipe is not a regular file"):
        scan([source])
    (source / "pipe").unlink()
    top_link = tmp_path / "toplink"
    top_link.symlink_to(source)
    with pytest.raises(SealError, match="symbolic link"):
        scan([top_link])


def test_name_collisions_between_given_paths(tmp_path: Path) -> None:
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "Scan.stl").write_bytes(b"x")
    with pytest.raises(SealError, match="twice"):
        scan([tmp_path / "a" / "Scan.stl", tmp_path / "b" / "Scan.stl"])


def test_unsendable_names(tmp_path: Path) -> None:
    bad = tmp_path / "a\\b.txt"
    bad.write_bytes(b"x")
    with pytest.raises(SealError, match="a\\\\\\\\b.txt"):
        scan([bad])


def test_nothing_to_send(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SealError, match="nothing to send"):
        scan([tmp_path / "empty"])


def test_each_file_is_scanned_once(source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One open per file gives size, mtime, media type and the DICOM header; the
    manifest's DICOM summary is built from that scan, not by reading again."""
    from sealdrop.client.send import scan as scan_module

    opened: list[str] = []
    real_open = os.open

    def counting_open(path: object, flags: int, *a: object) -> int:
        opened.append(str(path))
        return real_open(path, flags, *a)  # type: ignore[arg-type]

    monkeypatch.setattr(scan_module.os, "open", counting_open)
    files = scan([source])
    monkeypatch.undo()
    assert sorted(opened) == sorted(str(f.path) for f in files)
    by_name = {f.arcname.rsplit("/", 1)[-1]: f for f in files}
    assert by_name["IM0005"].media_type == "application/dicom"
    assert by_name["IM0005"].dicom is not None and by_name["scan.stl"].dicom is None
    assert by_name["scan.stl"].size == 8000 and by_name["scan.stl"].mtime_ns > 0
    plan, _ = plan_new_transfer(files, ALICE.bundle, [BOB.bundle], note="", created=NOW)
    dicom_files = plan.dicom["files"]
    im5 = next(v for k, v in dicom_files.items() if k.endswith("IM0005"))
    ct = next(v for k, v in dicom_files.items() if k.endswith("CT_small.dcm"))
    assert im5 == ct  # CT_small.dcm and its extension-less copy: one SOP instance
    (study,) = [s for s in plan.dicom["studies"] if "CT" in s["modalities"]]
    assert study["instance_count"] >= 2


def test_media_type_sniffs_dicom() -> None:
    assert media_type("IM0001", bytes(128) + b"DICM") == "application/dicom"
    assert media_type("x.bin", b"") == "application/octet-stream"


@pytest.mark.skipif(AGE is None or TAR is None, reason="needs /usr/bin/age and tar")
def test_stock_age_and_tar_recover_the_files(tmp_path: Path, source: Path) -> None:
    """`age -d -i exported_key transfer.age | tar -x` with the real binaries (X25519 only)."""
    (tmp_path / "transfer.age").write_bytes(sealed([source], classical=True))
    key = tmp_path / "key.txt"
    key.write_text(BOB.export_age(pq=False))
    out = tmp_path / "out"
    out.mkdir()
    cmd = f'"{AGE}" -d -i "{key}" "{tmp_path / "transfer.age"}" | "{TAR}" -x -C "{out}"'
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, capture_output=True)
    assert tree(out / "files" / source.name) == tree(source)
    assert (out / "manifest.json").exists() and (out / "manifest.sig").stat().st_size == 64


@pytest.mark.skipif(TAR is None, reason="needs tar")
def test_sealdrop_age_and_stock_tar_recover_a_pq_transfer(tmp_path: Path, source: Path) -> None:
    plain = io.BytesIO()
    age.decrypt(io.BytesIO(sealed([source])), plain, age.parse_identities(BOB.export_age()))
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run([TAR, "-x", "-C", str(out)], input=plain.getvalue(), check=True)  # type: ignore[list-item]
    assert tree(out / "files" / source.name) == tree(source)


def test_padding_hides_exact_size(tmp_path: Path) -> None:
    sizes = set()
    for n in range(300_000, 330_000, 3_000):
        f = tmp_path / "f.bin"
        f.write_bytes(bytes(n))
        sizes.add(len(sealed([f], classical=True)))
    assert len(sizes) <= 5  # ten distinct sizes, a few 8 KiB buckets


def test_memory_stays_flat_streaming_plaintext_reader(tmp_path: Path) -> None:
    # The reader never needs the whole archive: feed it through a pipe-like stream.
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(3 << 20))
    plain = io.BytesIO()
    age.decrypt(io.BytesIO(sealed([f])), plain, BOB.age_identities())
    plain.seek(0)
    reader = ContainerReader(plain)
    for m in reader.members():
        while m.read(1 << 20):
            pass
    assert reader.manifest.files[0].size == 3 << 20


LARGE_SCRIPT = textwrap.dedent(
    """
    import hashlib, io, os, resource, sys
    from pathlib import Path
    from sealdrop.client.send.plan import plan_new_transfer
    from sealdrop.client.send.scan import scan
    from sealdrop.client.send.seal import seal
    from tests.client.receivekit import ALICE, BOB, NOW, Profile

    tmp = Path(sys.argv[1])
    size = int(sys.argv[2])
    src = tmp / "big.bin"
    h = hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(src, "wb") as f:
        for i in range(size >> 20):
            chunk = hashlib.sha256(i.to_bytes(8, "big")).digest() + block[32:]
            h.update(chunk)
            f.write(chunk)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(tmp / "t.age", "wb") as out:
        plan, state = plan_new_transfer(scan([src]), ALICE.bundle, [BOB.bundle], note="",
                                        created=NOW)
        seal(plan, ALICE, out, state)
    bob = Profile(tmp / "home", BOB, verified=(ALICE,))
    dest = tmp / "dest"
    dest.mkdir()
    os.unlink(src)
    from sealdrop.client.receive.staging import receive_transfer
    with open(tmp / "t.age", "rb") as f:
        receive_transfer(
            f, identity=BOB, contacts=bob.contacts, replay=bob.replay, dest=dest, now=NOW
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    h2 = hashlib.sha256()
    with open(dest / "big.bin", "rb") as f:
        while b := f.read(1 << 20):
            h2.update(b)
    assert h.digest() == h2.digest(), "content differs"
    print((peak - base) // 1024)  # MiB (ru_maxrss is KiB on Linux)
    """
)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units")
def test_large_transfer_memory_is_flat(tmp_path: Path) -> None:
    """300 MiB sealed and received in a fresh process: peak RSS grows far less than 150 MB."""
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run(
        [sys.executable, "-c", LARGE_SCRIPT, str(tmp_path), str(300 << 20)],
        cwd=root, capture_output=True, text=True, timeout=280,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    grew_mib = int(res.stdout.strip().splitlines()[-1])
    assert grew_mib < 100, f"peak RSS grew by {grew_mib} MiB"
