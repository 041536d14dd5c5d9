"""tlog-proof@v1 bundles: the spec's example parsed, a real bundle made and
verified offline, and every altered part refused."""

from __future__ import annotations

import base64

import pytest

from sealdrop.crypto.errors import LogFormatError, LogProofError, NoteError
from sealdrop.crypto.tlog.checkpoint import Checkpoint
from sealdrop.crypto.tlog.cosignature import CosignatureSigner, CosignatureVerifier
from sealdrop.crypto.tlog.merkle import MemoryHashes, inclusion_proof, leaf_hash
from sealdrop.crypto.tlog.note import NoteSigner, NoteVerifier, sign_note
from sealdrop.crypto.tlog.proofbundle import ProofBundle, verify_bundle

# The example of C2SP tlog-proof.md (its signatures are elided there, so it
# is only parsed, not opened).
SPEC_EXAMPLE = """c2sp.org/tlog-proof@v1
extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ
index 73894
gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=
B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=
EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=
RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=
AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=

example.com/fancylog
109482
sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=

\u2014 example.com/fancylog hI2DJw[...]1roloI=
"""


def test_spec_example_parses() -> None:
    b = ProofBundle.parse(SPEC_EXAMPLE)
    assert b.index == 73894 and len(b.proof) == 5
    assert b.extra is not None and b.extra.startswith(b"age-v1.2.1-darwin-arm64.tar.gz")
    assert b.checkpoint_note.startswith("example.com/fancylog\n109482\n")
    assert b.text() == SPEC_EXAMPLE


ORIGIN = "sealdrop.invalid/relay-1"
LOG = NoteSigner(ORIGIN, b"\x05" * 32)
LOG_V = NoteVerifier.from_vkey(LOG.vkey)
WITNESS = CosignatureSigner("witness.example/w1", b"\x09" * 32)
WITNESS_V = CosignatureVerifier.from_vkey(WITNESS.vkey)
ENTRIES = [f"sealdrop/transfer/v1\n{i:064x}\n".encode() for i in range(11)]
TREE = MemoryHashes([leaf_hash(e) for e in ENTRIES])
CP = Checkpoint(ORIGIN, 11, TREE.root())
NOTE = sign_note(CP.text(), [LOG])


def _bundle(index: int = 6, note: str = NOTE, extra: bytes | None = None) -> ProofBundle:
    return ProofBundle(index, inclusion_proof(index, 11, TREE), note, extra)


def test_round_trip_and_verify() -> None:
    for extra in (None, b"", b"context"):
        b = _bundle(extra=extra)
        again = ProofBundle.parse(b.text())
        assert again == b
        assert verify_bundle(again, ENTRIES[6], ORIGIN, [LOG_V]) == CP
    single = ProofBundle(0, [], sign_note(Checkpoint(ORIGIN, 1, leaf_hash(b"x")).text(), [LOG]))
    assert ProofBundle.parse(single.text()) == single
    assert verify_bundle(single, b"x", ORIGIN, [LOG_V]).size == 1
    cosigned = NOTE + WITNESS.cosign(CP.text(), 1_700_000_000)
    verify_bundle(_bundle(note=cosigned), ENTRIES[6], ORIGIN, [LOG_V], cosigners=[WITNESS_V],
                  need=1)


def test_what_a_bundle_does_not_prove() -> None:
    b = _bundle()
    with pytest.raises(LogProofError):  # another entry
        verify_bundle(b, ENTRIES[5], ORIGIN, [LOG_V])
    with pytest.raises(LogProofError):  # the entry, said to be elsewhere
        verify_bundle(ProofBundle(7, b.proof, NOTE), ENTRIES[6], ORIGIN, [LOG_V])
    with pytest.raises(LogFormatError, match="pinned log"):
        verify_bundle(b, ENTRIES[6], "sealdrop.invalid/other", [LOG_V])
    other = NoteVerifier.from_vkey(NoteSigner(ORIGIN, b"\x06" * 32).vkey)
    with pytest.raises(NoteError, match="checkpoint does not check"):
        verify_bundle(b, ENTRIES[6], ORIGIN, [other])
    with pytest.raises(NoteError, match="0 valid cosignatures of the 1"):
        verify_bundle(b, ENTRIES[6], ORIGIN, [LOG_V], cosigners=[WITNESS_V], need=1)
    # A checkpoint of another tree, genuinely signed: the proof leads elsewhere.
    bigger = MemoryHashes([leaf_hash(e) for e in [*ENTRIES, b"more"]])
    note12 = sign_note(Checkpoint(ORIGIN, 12, bigger.root()).text(), [LOG])
    with pytest.raises(LogProofError):
        verify_bundle(_bundle(note=note12), ENTRIES[6], ORIGIN, [LOG_V])
    forged = NOTE.replace(CP.text(), Checkpoint(ORIGIN, 11, bytes(32)).text())
    with pytest.raises(NoteError):
        verify_bundle(_bundle(note=forged), ENTRIES[6], ORIGIN, [LOG_V])


GOOD = _bundle().text()
H0 = base64.b64encode(inclusion_proof(6, 11, TREE)[0]).decode()


@pytest.mark.parametrize(
    ("text", "what"),
    [
        (GOOD.replace("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2"), "must start"),
        (GOOD.replace("index 6", "index 06"), "index line"),
        (GOOD.replace("index 6", "index -6"), "index line"),
        (GOOD.replace("index 6", "Index 6"), "index line"),
        (GOOD.replace("index 6\n", ""), "index line"),
        (GOOD.replace(H0, H0[:-1]), "base64"),
        (GOOD.replace(H0, base64.b64encode(b"\x00" * 31).decode()), "not 32 bytes"),
        (GOOD.replace("index 6", "extra !!\nindex 6"), "extra data"),
        (GOOD.replace("index 6", "index 6\nextra AA=="), "base64"),
        (GOOD.split("\n\n")[0] + "\n", "no checkpoint"),
        ("", "no checkpoint"),
    ],
)
def test_bad_bundles_refused(text: str, what: str) -> None:
    assert ProofBundle.parse(GOOD) == _bundle()
    with pytest.raises(LogFormatError, match=what):
        ProofBundle.parse(text)


def test_a_blank_line_inside_the_proof_is_caught_at_verification() -> None:
    # The first empty line ends the proof, so the rest of it would be read as
    # the checkpoint's text, and the log's signature no longer covers it.
    cut = ProofBundle.parse(GOOD.replace(H0 + "\n", H0 + "\n\n"))
    assert len(cut.proof) == 1
    with pytest.raises(NoteError):
        verify_bundle(cut, ENTRIES[6], ORIGIN, [LOG_V])


def test_text_refuses_bad_fields() -> None:
    with pytest.raises(LogFormatError):
        ProofBundle(-1, [], NOTE).text()
    with pytest.raises(LogFormatError):
        ProofBundle(0, [b"short"], NOTE).text()
    with pytest.raises(LogFormatError):
        ProofBundle(0, [], "").text()
