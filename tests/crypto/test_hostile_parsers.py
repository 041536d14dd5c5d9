"""Every parser that runs before the signature check refuses hostile bytes with the
project's error (a SealdropCryptoError naming what failed), never another exception.

Issue 10, class 1: tar and pax headers with absurd numbers, manifest strings
that are not Unicode, JSON numbers and nesting no sealdrop sender writes.
"""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealdrop.crypto.container import BLOCK, ContainerReader
from sealdrop.crypto.errors import (
    ContainerError,
    HostileArchiveError,
    ManifestError,
    SealdropCryptoError,
)
from sealdrop.crypto.manifest import parse_manifest, verify_manifest
from tests.crypto.transferkit import identity, raw_member

from .transferkit import build_archive

ALICE = identity("alice.clinic")
BOB = identity("bob.lab")
FILES = [("case/IM0001.dcm", b"DICM" + bytes(3000)), ("case/scan.stl", b"solid x\n")]


def read_all(data: bytes) -> None:
    reader = ContainerReader(io.BytesIO(data))
    for member in reader.members():
        while member.read(1 << 20):
            pass
    reader.manifest  # noqa: B018 - the check is that it exists


def good_manifest() -> dict[str, object]:
    arch, _ = build_archive(FILES, sender=ALICE, recipients=[BOB])
    return dict(json.loads(arch.manifest))


def manifest_bytes(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=True).encode("utf-8", "surrogatepass")


# --- manifest JSON -------------------------------------------------------------------


@pytest.mark.parametrize("where", ["note", "path", "handle", "dicom_key", "dicom_value",
                                   "media_type"])
def test_lone_surrogate_anywhere_is_a_manifest_error(where: str) -> None:
    obj = good_manifest()
    files = obj["files"]
    assert isinstance(files, list)
    if where == "note":
        obj["note"] = "crown \ud800 36"
    elif where == "path":
        files[0]["path"] = "case/\udcff.dcm"
    elif where == "handle":
        obj["recipients"][0]["handle"] = "bob\ud834"  # type: ignore[index]
    elif where == "dicom_key":
        obj["dicom"] = {"\udfff": 1}
    elif where == "dicom_value":
        obj["dicom"] = {"series": [{"description": "\ud800"}]}
    else:
        files[0]["media_type"] = "application/\ud800"
    # Both spellings a hostile sender can use: the JSON escape, and raw CESU bytes.
    escaped = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    raw = manifest_bytes(obj)
    for data in (escaped, raw):
        with pytest.raises(ManifestError, match="Unicode|UTF-8|canonical"):
            parse_manifest(data)
        with pytest.raises(ManifestError):
            verify_manifest(data, bytes(64))


@pytest.mark.parametrize("number", ["1e999", "-1e999", "NaN", "Infinity", "-Infinity",
                                    "1.0", "1E3", "9" * 5000, "-" + "9" * 5000,
                                    str(1 << 64), "-1"])
def test_json_numbers_no_sender_writes_are_refused(number: str) -> None:
    base = manifest_bytes(good_manifest()).decode()
    data = base.replace('"created":1718000000', f'"created":{number}').encode()
    assert data != base.encode()
    with pytest.raises(ManifestError):
        parse_manifest(data)


@pytest.mark.parametrize("depth", [17, 100, 5000, 200_000])
def test_deep_nesting_is_refused(depth: int) -> None:
    base = manifest_bytes(good_manifest()).decode()
    nested = "[" * depth + "]" * depth
    data = base.replace('"dicom":{}', f'"dicom":{{"x":{nested}}}').encode()
    with pytest.raises(ManifestError):
        parse_manifest(data)


@pytest.mark.parametrize("bundle", [None, [], "x", 1, {"v": []}, {"v": 1},
                                    {"v": 1, "handle": 5, "signing_key": 1, "x25519": "age1",
                                     "pq": "age1pq1", "created": 1, "sig": "AAAA"},
                                    {"v": 1, "handle": "a.b", "signing_key": "\ud800",
                                     "x25519": "age1x", "pq": "age1pq1x", "created": 1,
                                     "sig": "AAAA"}])
def test_hostile_sender_bundle_is_a_manifest_error(bundle: object) -> None:
    obj = good_manifest()
    obj["sender"]["bundle"] = bundle  # type: ignore[index]
    with pytest.raises(ManifestError):
        parse_manifest(manifest_bytes(obj))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_manifest_mutations_only_refuse_with_the_projects_error(data: st.DataObject) -> None:
    good = manifest_bytes(good_manifest())
    buf = bytearray(good)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "splice"]))
        pos = data.draw(st.integers(0, len(buf)))
        if op == "flip" and pos < len(buf):
            buf[pos] = data.draw(st.integers(0, 255))
        elif op == "insert":
            buf[pos:pos] = data.draw(st.sampled_from(
                [b"\\ud800", b"\xed\xa0\x80", b"1e999", b"[", b"{", b"\"", b"\x00", b"9" * 50,
                 b"NaN", b",\"v\":1", b"\xff"]))
        elif op == "delete":
            del buf[pos:pos + data.draw(st.integers(1, 40))]
        else:
            buf[pos:pos] = good[data.draw(st.integers(0, len(good))):][:60]
    try:
        parsed = parse_manifest(bytes(buf))
    except SealdropCryptoError:
        return
    # Parsed (a change inside a string can be valid): then it is canonical, the one
    # reading of those bytes, and the signature check that follows decides.
    assert parsed.canonical_bytes() == bytes(buf)
    if bytes(buf) != good:
        with pytest.raises(SealdropCryptoError):
            verify_manifest(bytes(buf), build_archive(FILES, sender=ALICE,
                                                      recipients=[BOB])[0].sig)


# --- tar and pax headers -----------------------------------------------------------


def archive_with(members: list[bytes]) -> bytes:
    arch, _ = build_archive(FILES, sender=ALICE, recipients=[BOB])
    arch.members = members + arch.members
    return arch.to_bytes()


def header_with(field_at: int, width: int, value: bytes) -> bytes:
    head = bytearray(raw_member("files/x", b"")[:BLOCK])
    head[field_at:field_at + width] = value.ljust(width, b"\0")[:width]
    head[148:156] = b" " * 8
    head[148:156] = b"%06o\0 " % sum(head)
    return bytes(head)


@pytest.mark.parametrize("size_field", [
    b"\x80" + b"\xff" * 11,           # base-256, the largest positive
    b"\xff" * 12,                     # base-256 negative
    b"\x80" + bytes(10) + b"\x01",    # base-256 tiny
    b"77777777777",                   # 8 GiB - 1 in octal, no data behind it
    b"99999999999",                   # not octal
    b"-1",
])
def test_absurd_header_sizes_are_refused(size_field: bytes) -> None:
    with pytest.raises(ContainerError):
        read_all(archive_with([header_with(124, 12, size_field)]))


@pytest.mark.parametrize("records", [
    b"99999999999999999999 path=x\n",                 # length beyond the header
    b"0 path=x\n",                                    # zero length
    b"5 path=x\n",                                    # shorter than its own prefix
    b"12 path=x\nX",                                  # not newline-terminated
    "\u0663\u0664 path=x\n".encode(),                 # non-ASCII digits
    "11 size=\u0663\n".encode(),                      # non-ASCII digits in a size value
    b"30 size=" + b"9" * 21 + b"\n",                  # absurd size
    b"5008 size=" + b"9" * 4998 + b"\n",              # past Python's int() digit limit
    b"14 path=\xff\xfex\n",                           # not UTF-8
    b"16 path=\xed\xa0\x80x\n",                       # a UTF-8-encoded surrogate
    b"13 pathx\n",                                    # no '='
    b"13 path=a\n13 path=b\n",                        # a key twice
    b"20 linkpath=/etc/x\n",                          # a key we never write
])
def test_malformed_pax_records_are_refused(records: bytes) -> None:
    pax = raw_member("././@PaxHeader", records, type=tarfile.XHDTYPE, fmt=tarfile.USTAR_FORMAT)
    with pytest.raises(HostileArchiveError):
        read_all(archive_with([pax + raw_member("files/y", b"data")]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_archive_mutations_only_refuse_with_the_projects_error(data: st.DataObject) -> None:
    """Any damage to a real archive: accepted unchanged, or refused with our error."""
    good = build_archive(FILES, sender=ALICE, recipients=[BOB])[0].to_bytes()
    buf = bytearray(good)
    for _ in range(data.draw(st.integers(1, 3))):
        if not buf:
            break
        op = data.draw(st.sampled_from(["byte", "number", "truncate", "insert", "block"]))
        pos = data.draw(st.integers(0, len(buf) - 1))
        if op == "byte":
            buf[pos] = data.draw(st.integers(0, 255))
        elif op == "number":  # a header's numeric fields: size, mode, mtime, checksum
            block = pos - pos % BLOCK
            at = block + data.draw(st.sampled_from([100, 108, 116, 124, 136, 148, 156]))
            buf[at:at + 12] = data.draw(st.binary(min_size=12, max_size=12))
        elif op == "truncate":
            del buf[pos:]
        elif op == "insert":
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=BLOCK + 1))
        else:
            buf[pos:pos + BLOCK] = good[data.draw(st.integers(0, len(good) - 1)):][:BLOCK]
    try:
        read_all(bytes(buf))
    except SealdropCryptoError:
        return
    # Accepted: then what was read is what was signed (the only accepted archive).
    reader = ContainerReader(io.BytesIO(bytes(buf)))
    seen = [(m.path, b"".join(iter(lambda m=m: m.read(1 << 20), b""))) for m in reader.members()]
    assert seen == FILES
