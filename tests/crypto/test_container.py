"""The transfer archive: writer round trips, padding, and every hostile archive we could think of.

Reader tests run on plaintext tar bytes (the age layer is tested elsewhere);
tests/client/test_staging.py repeats the attacks through age and the stager.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
import unicodedata

import pytest

from sealdrop.crypto.container import (
    BLOCK,
    ContainerReader,
    ContainerWriter,
    check_path,
    padded_size,
    padme,
)
from sealdrop.crypto.errors import (
    ContainerError,
    HostileArchiveError,
    IntegrityError,
    ManifestError,
    SignatureError,
    UnsafePathError,
)
from tests.crypto.transferkit import (
    TRANSFER_ID,
    Archive,
    build_archive,
    identity,
    raw_member,
    recipients_of,
)

ALICE = identity("alice.clinic")
BOB = identity("bob.lab")
CAROL = identity("carol.lab")

FILES = [
    ("case/ct/IM0001.dcm", b"DICM" * 300),
    ("case/empty.txt", b""),
    ("case/scan ü.stl", bytes(range(256)) * 5),
]


def read_all(data: bytes) -> tuple[dict[str, bytes], ContainerReader]:
    reader = ContainerReader(io.BytesIO(data))
    out: dict[str, bytes] = {}
    for m in reader.members():
        buf = bytearray()
        while chunk := m.read(7777):
            buf += chunk
        out[m.path] = bytes(buf)
    return out, reader


def write(files: list[tuple[str, bytes]] = FILES, **kw: object) -> bytes:
    out = io.BytesIO()
    w = ContainerWriter(out, mtime=1_718_000_000)
    for path, data in files:
        w.add_file(path, io.BytesIO(data), len(data), "application/octet-stream")
    w.finish(
        signing_key=ALICE.signing_key,
        sender=ALICE.bundle,
        recipients=recipients_of(BOB),
        transfer_id=TRANSFER_ID,
        created=1_718_000_000,
        note="for the lab",
        **kw,  # type: ignore[arg-type]
    )
    return out.getvalue()


# --- writer and reader ------------------------------------------------------------


def test_round_trip() -> None:
    data = write()
    files, reader = read_all(data)
    assert files == dict(FILES)
    m = reader.manifest
    assert [f.path for f in m.files] == [p for p, _ in FILES]
    assert m.files[0].sha256 == hashlib.sha256(FILES[0][1]).digest()
    assert m.note == "for the lab" and m.sender == ALICE.bundle
    assert reader.offset == len(data)


def test_layout_manifest_last_and_padded() -> None:
    data = write()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tf:
        names = [m.name for m in tf]
    assert names == [f"files/{p}" for p, _ in FILES] + ["manifest.json", "manifest.sig"]
    assert len(data) % BLOCK == 0
    assert len(data) in {padded_size(n) for n in range(len(data) - 20 * BLOCK, len(data))}


def test_gnu_tar_extracts_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "t.tar").write_bytes(write())
    subprocess.run(["tar", "-xf", "t.tar"], cwd=tmp_path, check=True, capture_output=True)
    for path, content in FILES:
        assert (tmp_path / "files" / path).read_bytes() == content
    assert (tmp_path / "manifest.sig").stat().st_size == 64


def test_no_files_and_long_unicode_names() -> None:
    assert read_all(write([]))[0] == {}
    deep = "/".join(["dossier-é"] * 40) + "/ファイル.dcm"
    files = [(deep, b"x" * 1000), ("a" * 255, b"y")]
    assert read_all(write(files))[0] == dict(files)


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 65535, 65536, 1 << 20, (1 << 20) + 1])
def test_sizes_around_block_boundaries(size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    assert read_all(write([("f", data)]))[0] == {"f": data}


def test_padme() -> None:
    for n in [2, 3, 100, 1000, 10**6, 3 * 10**8, 4 << 30]:
        p = padme(n)
        assert n <= p <= n + n // 8 + 1
    assert padme(1 << 20) == 1 << 20
    sizes = {padded_size(n) for n in range(1_000_000, 1_100_000, 512)}
    assert len(sizes) < 10  # many sizes share a bucket


def test_writer_refuses_file_that_shrinks_or_grows() -> None:
    w = ContainerWriter(io.BytesIO(), mtime=0)
    with pytest.raises(ContainerError, match="shorter"):
        w.add_file("a", io.BytesIO(b"abc"), 4, "text/plain")
    w = ContainerWriter(io.BytesIO(), mtime=0)
    with pytest.raises(ContainerError, match="grew"):
        w.add_file("a", io.BytesIO(b"abcde"), 4, "text/plain")


def test_writer_refuses_colliding_and_unsafe_names() -> None:
    w = ContainerWriter(io.BytesIO(), mtime=0)
    w.add_file("Scan.stl", io.BytesIO(b""), 0, "model/stl")
    with pytest.raises(UnsafePathError):
        w.add_file("scan.STL", io.BytesIO(b""), 0, "model/stl")
    with pytest.raises(UnsafePathError):
        w.add_file("../x", io.BytesIO(b""), 0, "model/stl")


# --- path rules --------------------------------------------------------------------

UNSAFE_PATHS = [
    "",
    "/etc/passwd",
    "../escape",
    "a/../../escape",
    "a/..",
    "./a",
    "a//b",
    "a/",
    "a\\..\\b",
    "C:evil",
    "a\x00b",
    "a\nb",
    unicodedata.normalize("NFD", "café"),
    "x" * 256,
    ("d/" * 3000) + "f",
]


@pytest.mark.parametrize("path", UNSAFE_PATHS)
def test_check_path_refuses(path: str) -> None:
    with pytest.raises(UnsafePathError):
        check_path(path)


# --- attacks on the archive (each yields no verified manifest) -----------------------


def good() -> Archive:
    return build_archive(FILES, sender=ALICE, recipients=[BOB])[0]


def refused(arch: Archive | bytes, exc: type[Exception], match: str | None = None) -> None:
    data = arch if isinstance(arch, bytes) else arch.to_bytes()
    with pytest.raises(exc, match=match):
        read_all(data)


def test_hand_built_archive_is_accepted() -> None:
    files, reader = read_all(good().to_bytes())
    assert files == dict(FILES) and reader.manifest.transfer_id == TRANSFER_ID


def test_attack_tampered_file_content() -> None:
    arch = good()
    arch.members[0] = raw_member("files/" + FILES[0][0], b"DICX" + FILES[0][1][4:])
    refused(arch, IntegrityError, "IM0001.dcm.*SHA-256")


def test_attack_swapped_file_between_transfers() -> None:
    other, _ = build_archive(
        [(FILES[0][0], b"another patient")], sender=ALICE, recipients=[BOB],
        transfer_id=b"\x01" * 16,
    )
    arch = good()
    arch.members[0] = other.members[0]
    refused(arch, IntegrityError, "IM0001.dcm")


def test_attack_dropped_file() -> None:
    arch = good()
    del arch.members[2]
    refused(arch, IntegrityError, "missing")


def test_attack_added_file() -> None:
    arch = good()
    arch.members.append(raw_member("files/case/extra.exe", b"MZ"))
    refused(arch, IntegrityError, "extra.exe.*not in the signed manifest")


def test_attack_reordered_members() -> None:
    arch = good()
    arch.members[0], arch.members[1] = arch.members[1], arch.members[0]
    refused(arch, HostileArchiveError, "order")


def test_attack_manifest_edited() -> None:
    arch = good()
    arch.manifest = arch.manifest.replace(b"bob.lab", b"bob.lax")
    refused(arch, SignatureError)


def test_attack_manifest_not_canonical() -> None:
    arch = good()
    arch.manifest = arch.manifest + b" "
    refused(arch, ManifestError, "canonical")


def test_attack_signature_from_another_key() -> None:
    arch, _ = build_archive(FILES, sender=ALICE, recipients=[BOB], signer=CAROL)
    refused(arch, SignatureError, "alice.clinic")


def test_attack_signature_missing_or_short() -> None:
    arch = good()
    arch.sig = arch.sig[:32]
    refused(arch, HostileArchiveError, "64-byte")
    arch = good()
    body = b"".join(arch.members) + raw_member("manifest.json", arch.manifest)
    refused(body + bytes(4 * BLOCK), HostileArchiveError, "manifest.sig")


def test_attack_manifest_dropped() -> None:
    arch = good()
    refused(b"".join(arch.members) + bytes(4 * BLOCK), ContainerError, "without a manifest")


def test_attack_member_after_manifest() -> None:
    arch = good()
    arch.after = [raw_member("files/late.txt", b"late")]
    refused(arch, HostileArchiveError, "follows the signed manifest")


def test_attack_second_manifest() -> None:
    arch = good()
    arch.after = [raw_member("manifest.json", arch.manifest)]
    refused(arch, HostileArchiveError)


def test_attack_sig_before_manifest() -> None:
    arch = good()
    arch.members.append(raw_member("manifest.sig", arch.sig))
    refused(arch, HostileArchiveError, "before")


def test_attack_trailing_garbage_and_overlong_padding() -> None:
    arch = good()
    body = Archive(members=arch.members, manifest=arch.manifest, sig=arch.sig, trailer=b"")
    n = len(body.to_bytes())
    arch.trailer = bytes(padded_size(n) - n - 1) + b"\x01"
    refused(arch, HostileArchiveError, "follows")
    arch.trailer = bytes(padded_size(n) - n + 64 * BLOCK)
    refused(arch, HostileArchiveError, "padding")


def test_padding_missing_end_marker_is_truncation() -> None:
    arch = good()
    arch.trailer = b""
    refused(arch, ContainerError, "truncated")


def test_attack_truncated_inside_a_file() -> None:
    data = good().to_bytes()
    refused(data[: BLOCK * 2 + 100], ContainerError, "truncated")


def test_attack_size_larger_than_manifest() -> None:
    arch = good()
    path, content = FILES[0]
    arch.members[0] = raw_member("files/" + path, content + b"more data than announced")
    refused(arch, IntegrityError, "bytes but the signed manifest says")


def test_attack_hidden_data_in_block_padding() -> None:
    arch = good()
    m = bytearray(arch.members[2])
    m[-1] = 0x41
    arch.members[2] = bytes(m)
    refused(arch, HostileArchiveError, "padding")


def test_attack_bad_header_checksum() -> None:
    arch = good()
    m = bytearray(arch.members[0])
    m[0] ^= 1
    arch.members[0] = bytes(m)
    refused(arch, HostileArchiveError, "malformed tar header")


@pytest.mark.parametrize(
    "name",
    [
        "/etc/cron.d/evil",
        "files//etc/passwd",
        "../evil",
        "files/../evil",
        "files/a/../../evil",
        "files/./a",
        "./files/a",
        "files/a\\..\\..\\evil",
        "evil.txt",
        "files",
        "files/",
    ],
)
def test_attack_path_traversal_names(name: str) -> None:
    arch = good()
    arch.members.insert(0, raw_member(name, b"x"))
    refused(arch, (UnsafePathError, HostileArchiveError))  # type: ignore[arg-type]


def test_attack_traversal_via_pax_path() -> None:
    arch = good()
    arch.members.insert(0, raw_member("files/innocent", b"x", pax={"path": "files/../../evil"}))
    refused(arch, UnsafePathError, "traversal")


@pytest.mark.parametrize(
    ("kind", "linkname"),
    [
        (tarfile.SYMTYPE, "/etc/passwd"),
        (tarfile.LNKTYPE, "files/case/empty.txt"),
        (tarfile.CHRTYPE, ""),
        (tarfile.BLKTYPE, ""),
        (tarfile.FIFOTYPE, ""),
        (tarfile.DIRTYPE, ""),
        (tarfile.CONTTYPE, ""),
        (tarfile.GNUTYPE_SPARSE, ""),
        (b"Z", ""),
    ],
)
def test_attack_special_members(kind: bytes, linkname: str) -> None:
    arch = good()
    arch.members.insert(0, raw_member("files/case/x", type=kind, linkname=linkname))
    refused(arch, HostileArchiveError, "only regular files|malformed")


def test_attack_link_target_on_a_regular_file() -> None:
    arch = good()
    arch.members.insert(0, raw_member("files/x", linkname="/etc/passwd"))
    refused(arch, HostileArchiveError, "link")


@pytest.mark.parametrize(
    "pax",
    [{"linkpath": "/etc/passwd"}, {"GNU.sparse.map": "0,1"}, {"hdrcharset": "BINARY"}],
)
def test_attack_unsupported_pax_fields(pax: dict[str, str]) -> None:
    arch = good()
    arch.members.insert(0, raw_member("files/x", b"x", pax=pax))
    refused(arch, HostileArchiveError, "pax")


def test_attack_gnu_longname_and_global_header() -> None:
    arch = good()
    arch.members.insert(0, raw_member("files/" + "a" * 120, b"x", fmt=tarfile.GNU_FORMAT))
    refused(arch, HostileArchiveError, "GNU long-name")
    arch = good()
    arch.members.insert(0, raw_member("pax_global_header", b"9 a=bcd\n", type=tarfile.XGLTYPE))
    refused(arch, HostileArchiveError, "global")


def test_attack_huge_pax_header() -> None:
    arch = good()
    arch.members.insert(0, raw_member("x", bytes(100_000), type=tarfile.XHDTYPE))
    refused(arch, HostileArchiveError, "pax header")


@pytest.mark.parametrize(
    "names",
    [
        ["files/a.dcm", "files/a.dcm"],
        ["files/Scan.STL", "files/scan.stl"],
        ["files/STRASSE", "files/straße"],  # casefold collision
        ["files/a", "files/a/b"],
        ["files/a/b", "files/A"],
    ],
)
def test_attack_duplicate_and_colliding_names(names: list[str]) -> None:
    arch = good()
    arch.members[:0] = [raw_member(n, b"x") for n in names]
    refused(arch, UnsafePathError)


def test_attack_nfd_name() -> None:
    arch = good()
    arch.members.insert(0, raw_member("files/" + unicodedata.normalize("NFD", "café"), b"x"))
    refused(arch, UnsafePathError, "NFC")


def test_reader_is_one_shot_and_manifest_needs_the_end() -> None:
    reader = ContainerReader(io.BytesIO(write()))
    with pytest.raises(ContainerError):
        _ = reader.manifest
    it = reader.members()
    next(it)
    with pytest.raises(ContainerError):
        _ = reader.manifest


def test_unconsumed_members_are_drained_and_still_hashed() -> None:
    reader = ContainerReader(io.BytesIO(write()))
    for _ in reader.members():
        pass
    assert len(reader.manifest.files) == len(FILES)
    arch = good()
    arch.members[0] = raw_member("files/" + FILES[0][0], b"DICX" + FILES[0][1][4:])
    reader = ContainerReader(io.BytesIO(arch.to_bytes()))
    with pytest.raises(IntegrityError):
        for _ in reader.members():
            pass
