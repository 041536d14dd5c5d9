"""Interop with typage (the ``age-encryption`` npm package, by age's author):
the post-quantum mlkem768x25519 recipient type both ways, plus X25519 and scrypt.

The Debian age 1.1.1 CLI predates the hybrid type, so typage is the reference
implementation here. tests/interop/age_js.mjs is a tiny CLI over it.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

import sealdrop.crypto.age as age
from sealdrop.crypto.age import RecipientError, ScryptRecipient
from sealdrop.crypto.age.hybrid import HybridIdentity, HybridRecipient
from tests.interop.tools import age_js, needs_typage

pytestmark = needs_typage

HYBRID_SIZES = [0, 1, 64 * 1024, 64 * 1024 + 1, 3 * 1024 * 1024]


def data_of(size: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha512(b"typage" + i.to_bytes(8, "big")).digest()
        i += 1
    return bytes(out[:size])


def js_keygen(tmp: Path, name: str, pq: bool) -> tuple[Path, str]:
    lines = age_js("keygen", *(["--pq"] if pq else [])).stdout.decode().split()
    ident, recipient = lines
    path = tmp / f"{name}.key"
    path.write_text(f"# typage\n{ident}\n")
    return path, recipient


def ours_encrypt(pt: bytes, recipients: list[str], armor: bool = False) -> bytes:
    out = io.BytesIO()
    age.encrypt(io.BytesIO(pt), out, [age.parse_recipient(r) for r in recipients], armor=armor)
    return out.getvalue()


def ours_decrypt(ct: bytes, identity_text: str) -> bytes:
    out = io.BytesIO()
    age.decrypt(io.BytesIO(ct), out, age.parse_identities(identity_text))
    return out.getvalue()


@pytest.fixture(scope="module")
def js_pq(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    d = tmp_path_factory.mktemp("typage-keys")
    return [js_keygen(d, f"pq{i}", pq=True) for i in range(2)]


@pytest.fixture(scope="module")
def our_pq(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, HybridIdentity]:
    ident = HybridIdentity.generate(os.urandom)
    path = tmp_path_factory.mktemp("our-keys") / "pq.key"
    path.write_text(f"# sealdrop\n{ident.encode()}\n")
    return path, ident


# --- keys ---------------------------------------------------------------------


def test_typage_hybrid_keys_parse_and_match(js_pq) -> None:  # type: ignore[no-untyped-def]
    for path, recipient in js_pq:
        assert recipient.startswith("age1pq1")
        ids = age.parse_identities(path.read_text())
        assert str(ids[0].recipient()) == recipient  # type: ignore[attr-defined]
        assert str(HybridRecipient.parse(recipient)) == recipient
        assert ids[0].encode() in path.read_text()  # type: ignore[attr-defined]


def test_our_hybrid_keys_match_typage(our_pq) -> None:  # type: ignore[no-untyped-def]
    path, ident = our_pq
    assert ident.encode().startswith("AGE-SECRET-KEY-PQ-1")
    assert age_js("recipient", str(path)).stdout.decode().strip() == str(ident.recipient())


# --- hybrid both ways ------------------------------------------------------------


@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armor"])
@pytest.mark.parametrize("size", HYBRID_SIZES)
def test_we_encrypt_typage_decrypts(tmp_path: Path, js_pq, size: int, armor: bool) -> None:  # type: ignore[no-untyped-def]
    pt = data_of(size)
    ct = ours_encrypt(pt, [js_pq[0][1]], armor=armor)
    if not armor:
        assert b"\n-> mlkem768x25519 " in ct
    (tmp_path / "ct").write_bytes(ct)
    age_js("decrypt", "-i", str(js_pq[0][0]), str(tmp_path / "ct"), str(tmp_path / "pt"))
    assert (tmp_path / "pt").read_bytes() == pt


@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armor"])
@pytest.mark.parametrize("size", HYBRID_SIZES)
def test_typage_encrypts_we_decrypt(tmp_path: Path, our_pq, size: int, armor: bool) -> None:  # type: ignore[no-untyped-def]
    path, ident = our_pq
    pt = data_of(size)
    (tmp_path / "pt").write_bytes(pt)
    args = ["encrypt", "-r", str(ident.recipient())] + (["-a"] if armor else [])
    age_js(*args, str(tmp_path / "pt"), str(tmp_path / "ct"))
    ct = (tmp_path / "ct").read_bytes()
    if not armor:
        assert b"\n-> mlkem768x25519 " in ct
    assert ours_decrypt(ct, path.read_text()) == pt


def test_typage_keys_our_recipients_round_trip(tmp_path: Path, js_pq) -> None:  # type: ignore[no-untyped-def]
    """typage's identity, typage encrypts, we decrypt (key parsing + unwrap)."""
    pt = data_of(5000)
    (tmp_path / "pt").write_bytes(pt)
    age_js("encrypt", "-r", js_pq[1][1], str(tmp_path / "pt"), str(tmp_path / "ct"))
    assert ours_decrypt((tmp_path / "ct").read_bytes(), js_pq[1][0].read_text()) == pt


def test_several_hybrid_recipients_both_ways(tmp_path: Path, js_pq, our_pq) -> None:  # type: ignore[no-untyped-def]
    path, ident = our_pq
    recipients = [js_pq[0][1], js_pq[1][1], str(ident.recipient())]
    pt = data_of(100_000)
    (tmp_path / "ours").write_bytes(ours_encrypt(pt, recipients))
    (tmp_path / "pt").write_bytes(pt)
    args = ["encrypt"]
    for r in recipients:
        args += ["-r", r]
    age_js(*args, str(tmp_path / "pt"), str(tmp_path / "theirs"))
    for key, _ in js_pq:
        age_js("decrypt", "-i", str(key), str(tmp_path / "ours"), str(tmp_path / "out"))
        assert (tmp_path / "out").read_bytes() == pt
    assert ours_decrypt((tmp_path / "theirs").read_bytes(), path.read_text()) == pt


def test_typage_rejects_our_tampered_hybrid_file(tmp_path: Path, js_pq) -> None:  # type: ignore[no-untyped-def]
    ct = bytearray(ours_encrypt(data_of(1000), [js_pq[0][1]]))
    ct[-3] ^= 1
    (tmp_path / "ct").write_bytes(bytes(ct))
    proc = age_js(
        "decrypt", "-i", str(js_pq[0][0]), str(tmp_path / "ct"), str(tmp_path / "o"), check=False
    )
    assert proc.returncode != 0


def test_wrong_hybrid_identity_is_no_match(js_pq, our_pq) -> None:  # type: ignore[no-untyped-def]
    ct = ours_encrypt(b"for pq0 only", [js_pq[0][1]])
    with pytest.raises(age.NoIdentityMatchError):
        ours_decrypt(ct, our_pq[0].read_text())


def test_hybrid_and_classical_never_mix_on_encrypt(js_pq) -> None:  # type: ignore[no-untyped-def]
    classical = str(age.X25519Identity.generate(os.urandom).recipient())
    with pytest.raises(RecipientError):
        ours_encrypt(b"x", [js_pq[0][1], classical])


def test_mixed_header_from_a_custom_encoder_decrypts(tmp_path: Path, js_pq, our_pq) -> None:  # type: ignore[no-untyped-def]
    """Decryption accepts a header with both kinds (the spec only forbids it on encrypt)."""
    from sealdrop.crypto.age.core import Encryptor

    x = age.X25519Identity.generate(os.urandom)
    hybrid = age.parse_recipient(js_pq[0][1])

    class Both:
        pq = True

        def wrap(self, file_key: bytes, rand):  # type: ignore[no-untyped-def]
            return hybrid.wrap(file_key, rand) + x.recipient().wrap(file_key, rand)

    out = io.BytesIO()
    with Encryptor(out, [Both()]) as enc:
        enc.write(b"mixed")
    (tmp_path / "ct").write_bytes(out.getvalue())
    assert ours_decrypt(out.getvalue(), x.encode()) == b"mixed"
    age_js("decrypt", "-i", str(js_pq[0][0]), str(tmp_path / "ct"), str(tmp_path / "o"))
    assert (tmp_path / "o").read_bytes() == b"mixed"


# --- classical types through typage too ------------------------------------------


@pytest.mark.parametrize("size", [0, 64 * 1024, 128 * 1024 + 7])
def test_x25519_both_ways(tmp_path: Path, size: int) -> None:
    key, recipient = js_keygen(tmp_path, "x", pq=False)
    assert not recipient.startswith("age1pq")
    pt = data_of(size)
    (tmp_path / "ours").write_bytes(ours_encrypt(pt, [recipient]))
    age_js("decrypt", "-i", str(key), str(tmp_path / "ours"), str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == pt
    (tmp_path / "pt").write_bytes(pt)
    age_js("encrypt", "-r", recipient, str(tmp_path / "pt"), str(tmp_path / "theirs"))
    assert ours_decrypt((tmp_path / "theirs").read_bytes(), key.read_text()) == pt


def test_scrypt_both_ways(tmp_path: Path) -> None:
    pt = data_of(70_000)
    env = {"AGE_JS_PASSPHRASE": "shared secret words", "AGE_JS_WORK_FACTOR": "12"}
    out = io.BytesIO()
    age.encrypt(io.BytesIO(pt), out, [ScryptRecipient(b"shared secret words", work_factor=12)])
    (tmp_path / "ours").write_bytes(out.getvalue())
    age_js("decrypt", "-p", str(tmp_path / "ours"), str(tmp_path / "out"), env=env)
    assert (tmp_path / "out").read_bytes() == pt
    (tmp_path / "pt").write_bytes(pt)
    age_js("encrypt", "-p", str(tmp_path / "pt"), str(tmp_path / "theirs"), env=env)
    got = io.BytesIO()
    age.decrypt(
        io.BytesIO((tmp_path / "theirs").read_bytes()),
        got,
        [age.ScryptIdentity(b"shared secret words")],
    )
    assert got.getvalue() == pt
