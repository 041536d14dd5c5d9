"""Signed notes, checkpoints and cosignatures: the Go reference vectors byte
for byte, and every malformed or mis-signed note refused."""

from __future__ import annotations

import base64

import pytest

from sealdrop.crypto.errors import LogFormatError, NoteError
from sealdrop.crypto.tlog.checkpoint import Checkpoint, open_checkpoint
from sealdrop.crypto.tlog.cosignature import CosignatureSigner, CosignatureVerifier
from sealdrop.crypto.tlog.note import (
    MAX_SIGNATURES,
    NoteSigner,
    NoteVerifier,
    key_id,
    open_note,
    sign_note,
)

EM = "\u2014"
# The example key and notes of golang.org/x/mod/sumdb/note (note.go's package
# documentation, example_test.go, note_test.go), the reference implementation
# of C2SP signed-note. Only the values are copied.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    f"{EM} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqf"
    "qdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    f"{EM} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGw"
    "nWLox33WWd1RvMc+QQ=\n"
)
# The verifier-key example of C2SP signed-note.md.
FOO_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
FOO_NOTE = (
    f"This is an example message.\n\n{EM} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6"
    "TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)

PETER = NoteSigner.from_private_key_text(PETER_SKEY)
PETER_V = NoteVerifier.from_vkey(PETER_VKEY)
ENOCH_V = NoteVerifier.from_vkey(ENOCH_VKEY)


def test_go_reference_key_and_note_byte_for_byte() -> None:
    assert PETER.vkey == PETER_VKEY
    assert PETER.private_key_text() == PETER_SKEY
    assert PETER.key_id.hex() == "c74f20a3" == PETER_V.key_id.hex()
    assert PETER_V.name == "PeterNeumann"
    assert key_id("PeterNeumann", 1, PETER.public_key) == bytes.fromhex("c74f20a3")
    assert sign_note(TEXT, [PETER]) == TEXT + "\n" + PETER_SIG
    both = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    opened = open_note(both, [PETER_V, ENOCH_V])
    assert opened.text == TEXT and opened.signatures == ("PeterNeumann", "EnochRoot")
    assert open_note(both, [ENOCH_V]).signatures == ("EnochRoot",)  # Peter's unknown: ignored
    assert "AYEKFALV" not in repr(PETER)


def test_c2sp_example_note() -> None:
    v = NoteVerifier.from_vkey(FOO_VKEY)
    opened = open_note(FOO_NOTE, [v])
    assert opened.text == "This is an example message.\n"
    assert opened.signatures == ("example.com/foo",)
    assert v.vkey == FOO_VKEY


def _manglings(key: str) -> list[str]:
    """Go's TestNewVerifier/TestNewSigner: every proper substring and every
    single-byte increment of a key must be refused."""
    out = {key[i:j] for i in range(len(key) + 1) for j in range(i + 1, len(key) + 1)}
    out |= {key[:i] + chr(ord(key[i]) + 1) + key[i + 1 :] for i in range(len(key))}
    out.discard(key)
    return sorted(out)


def test_mangled_keys_refused() -> None:
    for bad in _manglings(PETER_VKEY):
        with pytest.raises(NoteError):
            NoteVerifier.from_vkey(bad)
    for bad in _manglings(PETER_SKEY):
        with pytest.raises(NoteError):
            NoteSigner.from_private_key_text(bad)
    # From Go's note_test.go: a wrong-length key and an unknown algorithm, each
    # with a key id adjusted to match.
    for bad in (
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ):
        with pytest.raises(NoteError):
            NoteVerifier.from_vkey(bad)
    with pytest.raises(NoteError, match="type 0x04"):  # a note key is no cosigner key
        CosignatureVerifier.from_vkey(PETER_VKEY)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\there", "nbsp\u00a0x"])
def test_bad_key_names_refused(name: str) -> None:
    with pytest.raises(NoteError, match="key name"):
        NoteSigner(name, b"\x01" * 32)


def test_signing_refuses_bad_text() -> None:
    with pytest.raises(NoteError, match="newline"):
        sign_note("no newline", [PETER])
    with pytest.raises(NoteError, match="control"):
        sign_note("bell\a\n", [PETER])
    with pytest.raises(NoteError, match="at least one"):
        sign_note(TEXT, [])


NOTE = TEXT + "\n" + PETER_SIG


def _resign(sig_line: str, raw: bytes) -> str:
    name = sig_line.split(" ")[1]
    return f"{EM} {name} {base64.b64encode(raw).decode()}\n"


@pytest.mark.parametrize(
    ("note", "what"),
    [
        (TEXT.replace("answer", "ANSWER") + "\n" + PETER_SIG, "does not verify"),
        (NOTE.replace("ZJkuBS9", "ZJkuBS8"), "does not verify"),
        (TEXT + "\n" + ENOCH_SIG, "not signed by any"),
        (TEXT + "\n" + PETER_SIG[:-1], "newline"),
        (TEXT + PETER_SIG, "blank line"),
        (TEXT + "\n", "empty"),
        (TEXT + "\n" + PETER_SIG.replace(EM, "-"), "malformed signature line"),
        (TEXT + "\n" + PETER_SIG.replace(" x08", "  x08"), "base64"),
        (TEXT + "\n" + PETER_SIG.replace("nAM=\n", "nAM\n"), "base64"),
        (TEXT + "\n" + _resign(PETER_SIG, bytes.fromhex("c74f20a3")), "too short"),
        ("bell\a\n" + "\n" + PETER_SIG, "control"),
        # The last blank line splits: the first signature line becomes text.
        (TEXT + "\n" + PETER_SIG + "\n" + PETER_SIG, "does not verify"),
        (TEXT + "\n" + f"{EM} Unknown AAAAAAA=\n" * (MAX_SIGNATURES + 1), "more than 100"),
        ("x" * 70000 + "\n\n" + PETER_SIG, "longer than"),
    ],
)
def test_bad_notes_refused(note: str, what: str) -> None:
    with pytest.raises(NoteError, match=what):
        open_note(note, [PETER_V])


def test_unknown_and_repeated_signatures() -> None:
    # Same name, other key id; same key id, other name: both unknown, ignored.
    other_id = _resign(PETER_SIG, b"\x00\x00\x00\x00" + b"\x01" * 64)
    other_name = PETER_SIG.replace("PeterNeumann", "PeterNeumanN")
    opened = open_note(NOTE + other_id + other_name, [PETER_V])
    assert opened.signatures == ("PeterNeumann",)
    # A repeated line by a known key counts once (Go drops repeats unverified).
    assert open_note(NOTE + PETER_SIG, [PETER_V]).signatures == ("PeterNeumann",)
    # The last blank line separates text from signatures: text may hold blank lines.
    text = "para one\n\npara two\n"
    assert open_note(sign_note(text, [PETER]), [PETER_V]).text == text
    with pytest.raises(NoteError, match="share"):
        open_note(NOTE, [PETER_V, NoteVerifier.from_vkey(PETER_VKEY)])


ORIGIN = "sealdrop.invalid/relay-1"
LOG = NoteSigner(ORIGIN, b"\x05" * 32)
LOG_V = NoteVerifier.from_vkey(LOG.vkey)
CP = Checkpoint(ORIGIN, 7, bytes(range(32)))


def test_checkpoint_text_and_parse() -> None:
    text = f"{ORIGIN}\n7\n{base64.b64encode(bytes(range(32))).decode()}\n"
    assert CP.text() == text
    assert Checkpoint.parse(text) == CP
    ext = Checkpoint(ORIGIN, 0, bytes(32), ("ext one",))
    assert Checkpoint.parse(ext.text()) == ext and ext.text().endswith("\next one\n")
    # The C2SP tlog-checkpoint example.
    example = (
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )
    assert Checkpoint.parse(example).size == 20852163
    assert Checkpoint.parse(example).text() == example


ROOT64 = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize(
    "text",
    [
        f"{ORIGIN}\n07\n{ROOT64}\n",
        f"{ORIGIN}\n-1\n{ROOT64}\n",
        f"{ORIGIN}\n+7\n{ROOT64}\n",
        f"{ORIGIN}\n7 \n{ROOT64}\n",
        f"{ORIGIN}\n{2**63}\n{ROOT64}\n",
        f"{ORIGIN}\n7\n{ROOT64[:-2]}\n",
        f"{ORIGIN}\n7\n{base64.b64encode(bytes(31)).decode()}\n",
        f"{ORIGIN}\n7\n{ROOT64}",
        f"{ORIGIN}\n7\n",
        f"\n7\n{ROOT64}\n",
        f"{ORIGIN}\n7\n{ROOT64}\n\n",
        f"{ORIGIN}\n7\n{ROOT64.replace('=', '')}\n",
    ],
)
def test_bad_checkpoints_refused(text: str) -> None:
    with pytest.raises(LogFormatError):
        Checkpoint.parse(text)


WITNESS = CosignatureSigner("witness.example/w1", b"\x09" * 32)
WITNESS_V = CosignatureVerifier.from_vkey(WITNESS.vkey)


def test_cosignature_round_trip() -> None:
    assert WITNESS.vkey.startswith("witness.example/w1+")
    assert base64.b64decode(WITNESS.vkey.split("+")[2])[0] == 0x04
    assert WITNESS.key_id == key_id("witness.example/w1", 4, WITNESS.public_key)
    line = WITNESS.cosign(CP.text(), 1_700_000_000)
    raw = base64.b64decode(line.split(" ")[2])
    assert line.startswith(f"{EM} witness.example/w1 ") and line.endswith("\n")
    assert raw[:4] == WITNESS.key_id and raw[4:12] == (1_700_000_000).to_bytes(8, "big")
    assert len(raw) == 4 + 8 + 64
    note = sign_note(CP.text(), [LOG]) + line
    opened = open_note(note, [LOG_V, WITNESS_V])
    assert opened.signatures == (ORIGIN, "witness.example/w1")
    assert opened.timestamps == {"witness.example/w1": 1_700_000_000}
    assert open_checkpoint(note, ORIGIN, [LOG_V], cosigners=[WITNESS_V], need=1) == CP
    again = CosignatureSigner.from_private_key_text(WITNESS.private_key_text())
    assert again.vkey == WITNESS.vkey


def test_cosignature_forgeries_refused() -> None:
    signed = sign_note(CP.text(), [LOG])
    line = WITNESS.cosign(CP.text(), 1_700_000_000)
    raw = bytearray(base64.b64decode(line.split(" ")[2]))
    raw[11] ^= 1  # the time moved: the signature covers it
    moved = f"{EM} witness.example/w1 {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(NoteError, match="witness.example/w1 does not verify"):
        open_note(signed + moved, [LOG_V, WITNESS_V])
    other = Checkpoint(ORIGIN, 8, bytes(32))
    with pytest.raises(NoteError, match="does not verify"):  # cosigned another head
        open_note(signed + WITNESS.cosign(other.text(), 1), [LOG_V, WITNESS_V])
    with pytest.raises(LogFormatError):  # only checkpoints are cosigned
        WITNESS.cosign("not a checkpoint\n", 1)
    with pytest.raises(NoteError, match="2\\*\\*63"):
        WITNESS.cosign(CP.text(), 2**63)


def test_open_checkpoint_policy() -> None:
    signed = sign_note(CP.text(), [LOG])
    assert open_checkpoint(signed, ORIGIN, [LOG_V]) == CP
    with pytest.raises(LogFormatError, match="not the pinned log"):
        open_checkpoint(signed, "sealdrop.invalid/other", [LOG_V])
    with pytest.raises(NoteError, match="0 valid cosignatures of the 1"):
        open_checkpoint(signed, ORIGIN, [LOG_V], cosigners=[WITNESS_V], need=1)
    # Only a witness signed: the log's own signature is required.
    witness_only = CP.text() + "\n" + WITNESS.cosign(CP.text(), 5)
    with pytest.raises(NoteError, match="log's key"):
        open_checkpoint(witness_only, ORIGIN, [LOG_V], cosigners=[WITNESS_V])
    # A cosigner that takes the log's name is still not the log.
    impostor = CosignatureSigner(ORIGIN, b"\x0a" * 32)
    forged = CP.text() + "\n" + impostor.cosign(CP.text(), 5)
    with pytest.raises(NoteError, match="log's key"):
        open_checkpoint(
            forged, ORIGIN, [LOG_V],
            cosigners=[CosignatureVerifier.from_vkey(impostor.vkey)],
        )
    another_log = NoteSigner(ORIGIN, b"\x06" * 32)
    with pytest.raises(NoteError, match="not signed by any"):
        open_checkpoint(sign_note(CP.text(), [another_log]), ORIGIN, [LOG_V])
