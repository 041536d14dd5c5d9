"""The witness's key file and state file (client.witness.keyfile, .state), and the
pure judgement of one request (client.witness.verdict) on the cases a process
test does not reach cheaply."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from sealdrop.client.errors import WitnessError
from sealdrop.client.witness.keyfile import create_key_file, load_key_file
from sealdrop.client.witness.state import Head, exclusive, load_state, save_state
from sealdrop.client.witness.verdict import Accept, Refuse, judge
from sealdrop.crypto.errors import LogFormatError
from sealdrop.crypto.tlog.note import NoteVerifier
from sealdrop.crypto.witness import AddCheckpoint, parse_add_checkpoint
from tests.witnesskit import LOG_KEY, ORIGIN, Tree, seed

LOGS = {ORIGIN: [NoteVerifier.from_vkey(LOG_KEY.vkey)]}


def test_key_file_round_trip_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "w.key"
    made = create_key_file(path, "witness.test/w1", seed=seed("w-plus"))
    assert "+" in made.vkey.split("+", 2)[2]  # a key whose base64 holds '+' (see note.py)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_key_file(path).vkey == made.vkey
    with pytest.raises(WitnessError, match="already exists; a witness key is never overwritten"):
        create_key_file(path, "witness.test/w2")
    assert load_key_file(path).vkey == made.vkey
    with pytest.raises(WitnessError, match="must be non-empty, without spaces"):
        create_key_file(tmp_path / "x.key", "bad name")


def test_an_edited_or_foreign_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.key"
    create_key_file(path, "witness.test/w1", seed=seed("w1"))
    text = path.read_text()
    path.write_text(text.replace("witness.test/w1", "witness.test/w9"))
    with pytest.raises(WitnessError, match="key id that does not match"):
        load_key_file(path)
    path.write_text(LOG_KEY.private_key_text())  # a log key (type 0x01), not a cosigner's
    with pytest.raises(WitnessError, match="not a type 0x04") as e:
        load_key_file(path)
    assert LOG_KEY.private_key_text().rsplit("+", 1)[1] not in str(e.value)  # never the key


def test_state_round_trip_and_damage_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    assert load_state(path) == {}
    heads = {ORIGIN: Head(7, bytes(range(32)))}
    save_state(path, heads)
    assert load_state(path) == heads
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    obj = json.loads(path.read_text())
    obj["logs"][ORIGIN]["size"] = -1
    path.write_text(json.dumps(obj))
    with pytest.raises(WitnessError, match="is damaged"):
        load_state(path)
    path.write_text("{")
    with pytest.raises(WitnessError, match="it is damaged") as e:
        load_state(path)
    assert e.value.hint == "restore it from a backup; never delete it"


def test_one_witness_per_state_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with exclusive(path):
        with pytest.raises(WitnessError, match="another witness is already serving"):
            with exclusive(path):
                pass
    with exclusive(path):  # released
        pass


def test_judge_in_the_specs_order() -> None:
    six, nine = Tree(6), Tree(9)
    at6 = {ORIGIN: Head(6, six.checkpoint.root)}
    proof = tuple(_proof(nine, 6))
    accepted = judge(AddCheckpoint(6, proof, nine.note), LOGS, at6)
    cp = nine.checkpoint
    assert accepted == Accept(cp, cp.text(), Head(9, cp.root))
    # the same tree again: cosigned again, no move
    assert isinstance(judge(AddCheckpoint(6, (), six.note), LOGS, at6), Accept)
    # a proof from 6 that is one hash short, or tampered
    for bad in (proof[:-1], (bytes(32),) + proof[1:]):
        refusal = judge(AddCheckpoint(6, bad, nine.note), LOGS, at6)
        assert isinstance(refusal, Refuse) and (refusal.status, refusal.evidence) == (422, True)
    # a proof for a tree this witness never knew at that size: 409 first, before any proof
    assert judge(AddCheckpoint(5, (), nine.note), LOGS, at6) == Refuse(
        409, f"this witness last cosigned size 6 of {ORIGIN!r}, not 5", size=6)
    # the first checkpoint of a log: trusted on first use, old size 0 only
    assert isinstance(judge(AddCheckpoint(0, (), nine.note), LOGS, {}), Accept)
    assert judge(AddCheckpoint(3, (), nine.note), LOGS, {}).status == 409  # type: ignore[union-attr]


def test_malformed_requests() -> None:
    note = Tree(3).note.encode()
    for body, what in [
        (b"old 1\n" + b"AAAA\n" + b"\n" + note, "not a 32-byte hash"),
        (b"old 0\n" + b"A" * 43 + b"=\n\n" + note, "from size 0 must be empty"),
        (b"old -1\n\n" + note, "not a decimal size"),
        (b"old 1\n" + b"A" * 43 + b"=\n" * 64 + b"\n" + note, "more than 63 lines"),
        (b"new 1\n\n" + note, "does not start with an 'old N' line"),
        (b"old 1\n" + b"A" * 43 + b"=\n", "no empty line"),
        (b"old 1\n" + note, "proof line is not base64"),  # the note without its blank line
        (b"old 1\n\n", "carries no checkpoint"),
        (b"old 1\n\n\xff", "not UTF-8"),
    ]:
        with pytest.raises(LogFormatError, match=what):
            parse_add_checkpoint(body)


def _proof(tree: Tree, old: int) -> list[bytes]:
    from sealdrop.crypto.tlog.merkle import consistency_proof

    return consistency_proof(old, tree.checkpoint.size, tree.hashes)
