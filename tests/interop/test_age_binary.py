"""Interop with the reference age CLI (Go, Debian package ``age``), both ways."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

import sealdrop.crypto.age as age
from sealdrop.crypto.age import ScryptIdentity, ScryptRecipient
from tests.interop.tools import AGE, AGE_KEYGEN, SIZES, needs_age, run, run_tty

pytestmark = needs_age


def data_of(size: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha512(i.to_bytes(8, "big")).digest()
        i += 1
    return bytes(out[:size])


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    """Three age-keygen identities: (identity file, recipient)."""
    d = tmp_path_factory.mktemp("keys")
    out = []
    for n in range(3):
        path = d / f"key{n}.txt"
        run([AGE_KEYGEN, "-o", str(path)])  # type: ignore[list-item]
        recipient = run([AGE_KEYGEN, "-y", str(path)]).stdout.decode().strip()  # type: ignore[list-item]
        out.append((path, recipient))
    return out


def ours_encrypt(pt: bytes, recipients: list[str], armor: bool = False) -> bytes:
    out = io.BytesIO()
    age.encrypt(io.BytesIO(pt), out, [age.parse_recipient(r) for r in recipients], armor=armor)
    return out.getvalue()


def ours_decrypt(ct: bytes, identity_file: Path) -> bytes:
    out = io.BytesIO()
    age.decrypt(io.BytesIO(ct), out, age.parse_identities(identity_file.read_text()))
    return out.getvalue()


def test_keygen_keys_parse_and_match(keys: list[tuple[Path, str]]) -> None:
    for path, recipient in keys:
        ids = age.parse_identities(path.read_text())
        assert len(ids) == 1
        assert str(ids[0].recipient()) == recipient  # type: ignore[attr-defined]
        assert ids[0].encode() in path.read_text()  # type: ignore[attr-defined]


def test_our_keys_work_with_age_keygen(tmp_path: Path) -> None:
    ident = age.X25519Identity.generate(__import__("os").urandom)
    key = tmp_path / "k.txt"
    key.write_text(f"# ours\n{ident.encode()}\n")
    assert run([AGE_KEYGEN, "-y", str(key)]).stdout.decode().strip() == str(ident.recipient())  # type: ignore[list-item]


@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armor"])
@pytest.mark.parametrize("size", SIZES)
def test_we_encrypt_age_decrypts(tmp_path: Path, keys, size: int, armor: bool) -> None:  # type: ignore[no-untyped-def]
    pt = data_of(size)
    (tmp_path / "ct").write_bytes(ours_encrypt(pt, [keys[0][1]], armor=armor))
    got = run([AGE, "-d", "-i", str(keys[0][0]), str(tmp_path / "ct")]).stdout  # type: ignore[list-item]
    assert got == pt


@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armor"])
@pytest.mark.parametrize("size", SIZES)
def test_age_encrypts_we_decrypt(tmp_path: Path, keys, size: int, armor: bool) -> None:  # type: ignore[no-untyped-def]
    pt = data_of(size)
    (tmp_path / "pt").write_bytes(pt)
    argv = [AGE, "-r", keys[0][1], "-o", str(tmp_path / "ct")]
    if armor:
        argv.append("-a")
    run([*argv, str(tmp_path / "pt")])  # type: ignore[list-item]
    ct = (tmp_path / "ct").read_bytes()
    assert ct.startswith(b"-----BEGIN") == armor
    assert ours_decrypt(ct, keys[0][0]) == pt


def test_several_recipients_both_ways(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    pt = data_of(200_000)
    recipients = [r for _, r in keys]
    ours = tmp_path / "ours.age"
    ours.write_bytes(ours_encrypt(pt, recipients))
    (tmp_path / "pt").write_bytes(pt)
    theirs = tmp_path / "theirs.age"
    argv = [AGE, "-o", str(theirs)]
    for r in recipients:
        argv += ["-r", r]
    run([*argv, str(tmp_path / "pt")])  # type: ignore[list-item]
    for key, _ in keys:
        assert run([AGE, "-d", "-i", str(key), str(ours)]).stdout == pt  # type: ignore[list-item]
        assert ours_decrypt(theirs.read_bytes(), key) == pt


def test_recipients_file_and_multi_identity_file(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    pt = data_of(1000)
    rfile = tmp_path / "recipients.txt"
    rfile.write_text("# team\n" + "\n".join(r for _, r in keys[1:]) + "\n")
    (tmp_path / "pt").write_bytes(pt)
    run([AGE, "-R", str(rfile), "-o", str(tmp_path / "ct"), str(tmp_path / "pt")])  # type: ignore[list-item]
    both = tmp_path / "ids.txt"
    both.write_text(keys[0][0].read_text() + keys[2][0].read_text())
    assert ours_decrypt((tmp_path / "ct").read_bytes(), both) == pt
    assert len(age.parse_recipients_file(rfile.read_text())) == 2


def test_age_rejects_our_tampered_file(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    ct = bytearray(ours_encrypt(data_of(1000), [keys[0][1]]))
    ct[-5] ^= 1
    (tmp_path / "ct").write_bytes(bytes(ct))
    proc = run([AGE, "-d", "-i", str(keys[0][0]), str(tmp_path / "ct")], check=False)  # type: ignore[list-item]
    assert proc.returncode != 0


def test_age_passphrase_file_we_decrypt(tmp_path: Path) -> None:
    pt = data_of(70_000)
    (tmp_path / "pt").write_bytes(pt)
    code, transcript = run_tty(
        [AGE, "-p", "-o", str(tmp_path / "ct"), str(tmp_path / "pt")],  # type: ignore[list-item]
        [(b"passphrase", b"correct horse battery"), (b"Confirm", b"correct horse battery")],
    )
    assert code == 0, transcript
    ct = (tmp_path / "ct").read_bytes()
    assert b"\n-> scrypt " in ct
    out = io.BytesIO()
    age.decrypt(io.BytesIO(ct), out, [ScryptIdentity(b"correct horse battery")])
    assert out.getvalue() == pt
    with pytest.raises(age.NoIdentityMatchError):
        age.decrypt(io.BytesIO(ct), io.BytesIO(), [ScryptIdentity(b"wrong")])


def test_our_passphrase_file_age_decrypts(tmp_path: Path) -> None:
    pt = data_of(70_000)
    out = io.BytesIO()
    age.encrypt(io.BytesIO(pt), out, [ScryptRecipient(b"tr0ub4dor&3", work_factor=12)])
    (tmp_path / "ct").write_bytes(out.getvalue())
    code, transcript = run_tty(
        [AGE, "-d", "-o", str(tmp_path / "pt"), str(tmp_path / "ct")],  # type: ignore[list-item]
        [(b"passphrase", b"tr0ub4dor&3")],
    )
    assert code == 0, transcript
    assert (tmp_path / "pt").read_bytes() == pt
