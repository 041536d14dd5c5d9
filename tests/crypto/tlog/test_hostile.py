"""Everything read from the relay is hostile: random input to each parser of
the log either parses or raises a LogError, never anything else, and what
parses writes back to the same bytes. Round trips of valid values."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealdrop.crypto.errors import LogError
from sealdrop.crypto.tlog.checkpoint import Checkpoint
from sealdrop.crypto.tlog.entries import parse_entry
from sealdrop.crypto.tlog.note import NoteSigner, NoteVerifier, open_note, sign_note
from sealdrop.crypto.tlog.proofbundle import ProofBundle
from sealdrop.crypto.tlog.tiles import join_entry_bundle, parse_tile_path, split_entry_bundle

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SIGNER = NoteSigner("sealdrop.invalid/fuzz", b"\x03" * 32)
VERIFIER = NoteVerifier.from_vkey(SIGNER.vkey)
# Text near the formats: their keywords, newlines, base64 and the em dash.
near = st.lists(
    st.sampled_from([
        *"\n \u2014+=/0123456789abcxAQ", "index ", "extra ", "c2sp.org/tlog-proof@v1\n",
        "sealdrop/key/v1\n", "tile/", ".p/",
    ]),
    max_size=60,
).map("".join)


@FAST
@given(text=st.one_of(near, st.text(max_size=200)))
def test_text_parsers_raise_only_log_errors(text: str) -> None:
    for parse in (Checkpoint.parse, ProofBundle.parse, parse_tile_path,
                  lambda t: open_note(t, [VERIFIER])):
        try:
            parse(text)
        except LogError:
            pass
    try:
        cp = Checkpoint.parse(text)
    except LogError:
        return
    assert cp.text() == text


@FAST
@given(data=st.binary(max_size=600))
def test_byte_parsers_raise_only_log_errors(data: bytes) -> None:
    try:
        entries = split_entry_bundle(data)
    except LogError:
        pass
    else:
        assert join_entry_bundle(entries) == data
    try:
        entry = parse_entry(data)
    except LogError:
        pass
    else:
        assert entry.to_bytes() == data


@FAST
@given(
    lines=st.lists(
        st.text(
            alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=0, max_size=40
        ),
        min_size=1, max_size=6,
    )
)
def test_any_note_text_round_trips(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    opened = open_note(sign_note(text, [SIGNER]), [VERIFIER])
    assert opened.text == text and opened.signatures == (SIGNER.name,)


@FAST
@given(entries=st.lists(st.binary(max_size=70), min_size=1, max_size=256))
def test_entry_bundles_round_trip(entries: list[bytes]) -> None:
    assert split_entry_bundle(join_entry_bundle(entries)) == entries
