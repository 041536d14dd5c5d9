"""The log-state store: what a profile pinned and verified of the relay's log."""

from __future__ import annotations

import json
import multiprocessing
import stat
from pathlib import Path

import pytest

from sealdrop.client.errors import LogForkError
from sealdrop.client.profile.layout import LOGSTATE_FILE
from sealdrop.client.profile.logstate import LogState, LogStateError, LogStateStore
from sealdrop.crypto.tlog.checkpoint import Checkpoint
from sealdrop.crypto.tlog.note import NoteSigner, sign_note

D1 = "ab" * 32
D2 = "cd" * 32


def test_nothing_pinned_reads_as_none(tmp_path: Path) -> None:
    assert LogStateStore(tmp_path).load() is None
    with pytest.raises(LogStateError, match="no log is pinned"):
        LogStateStore(tmp_path).advance("note\n", size=1, scanned=1)
    with pytest.raises(LogStateError, match="no log is pinned"):
        LogStateStore(tmp_path).add_own(D1)


def test_pin_own_advance_round_trip(tmp_path: Path) -> None:
    store = LogStateStore(tmp_path)
    store.pin("sealdrop.invalid/r1", "sealdrop.invalid/r1+01020304+AQ==", now=1000)
    store.add_own(D1)
    store.add_own(D1)  # twice: kept once
    store.add_own(D2)
    store.advance("cp-5\n", size=5, scanned=5)
    got = LogStateStore(tmp_path).load()
    assert got == LogState(origin="sealdrop.invalid/r1", vkey="sealdrop.invalid/r1+01020304+AQ==",
                           checkpoint="cp-5\n", size=5, scanned=5, own=(D1, D2),
                           pinned_at=1000)
    assert stat.S_IMODE((tmp_path / LOGSTATE_FILE).stat().st_mode) == 0o600
    # the same pin again is a no-op; another log is refused and changes nothing
    store.pin("sealdrop.invalid/r1", "sealdrop.invalid/r1+01020304+AQ==")
    with pytest.raises(LogStateError, match="already pinned the log sealdrop.invalid/r1"):
        store.pin("evil.example/log", "evil.example/log+01020304+AQ==")
    assert store.load() == got


def test_advance_only_moves_forward(tmp_path: Path) -> None:
    store = LogStateStore(tmp_path)
    store.pin("o", "o+01020304+AQ==")
    store.advance("cp-9\n", size=9, scanned=4)
    # another process stored 9 first: its 7 must not overwrite (a false rollback next time)
    store.advance("cp-7\n", size=7, scanned=7)
    state = store.load()
    assert state is not None and (state.checkpoint, state.size, state.scanned) == ("cp-9\n", 9, 4)
    store.advance("cp-9\n", size=9, scanned=9)  # same size: the scan moves on
    state = store.load()
    assert state is not None and state.scanned == 9
    with pytest.raises(ValueError):
        store.advance("cp\n", size=3, scanned=4)
    with pytest.raises(ValueError):
        store.add_own("not hex")


@pytest.mark.parametrize("body", [
    b"not json",
    b'{"v": 1, "log": {"vkey": "k"}}',
    b'{"v": 1, "log": {"origin": "o", "vkey": "k", "size": -1}}',
    b'{"v": 1, "log": {"origin": "o", "vkey": "k", "own": ["XYZ"]}}',
    b'{"v": 1, "log": {"origin": "o", "vkey": "k", "checkpoint": 5}}',
    b'{"v": 2, "log": {"origin": "o", "vkey": "k"}}',
])
def test_damaged_file_is_refused_not_half_read(tmp_path: Path, body: bytes) -> None:
    (tmp_path / LOGSTATE_FILE).write_bytes(body)
    with pytest.raises(LogStateError, match="damaged") as info:
        LogStateStore(tmp_path).load()
    assert info.value.hint and "backup" in info.value.hint


def _add(home: str, digest: str) -> None:
    LogStateStore(Path(home)).add_own(digest)


def test_two_processes_keep_both_digests(tmp_path: Path) -> None:
    """Real processes (the lock is a flock between processes)."""
    LogStateStore(tmp_path).pin("o", "o+01020304+AQ==")
    digests = [f"{i:02x}" * 32 for i in range(6)]
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add, args=(str(tmp_path), d)) for d in digests]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    state = LogStateStore(tmp_path).load()
    assert state is not None and sorted(state.own) == sorted(digests)
    assert json.loads((tmp_path / LOGSTATE_FILE).read_text())["v"] == 1


def _note(signer: NoteSigner, size: int, root: bytes, *cosigners: NoteSigner) -> str:
    return sign_note(Checkpoint(signer.name, size, root).text(), [signer, *cosigners])


def test_two_processes_storing_two_trees_of_one_size_is_a_fork(tmp_path: Path) -> None:
    log = NoteSigner("sealdrop.invalid/r1", b"\x07" * 32)
    store = LogStateStore(tmp_path)
    store.pin(log.name, log.vkey)
    ours = _note(log, 5, b"\x01" * 32)
    store.advance(ours, size=5, scanned=5)
    # The same tree signed again with a witness's cosignature: not a fork.
    witness = NoteSigner("witness.invalid/w1", b"\x08" * 32)
    store.advance(_note(log, 5, b"\x01" * 32, witness), size=5, scanned=5)
    # Another process verified another tree of 5 entries: refused under the lock.
    with pytest.raises(LogForkError, match="two different trees of 5 entries"):
        store.advance(_note(log, 5, b"\x02" * 32), size=5, scanned=5)
    state = store.load()
    assert state is not None and state.checkpoint == ours


def test_the_pin_time_is_kept_and_given_to_a_file_without_it(tmp_path: Path) -> None:
    store = LogStateStore(tmp_path)
    assert store.pin("o", "o+01020304+AQ==", now=1000).pinned_at == 1000
    assert store.pin("o", "o+01020304+AQ==", now=2000).pinned_at == 1000  # never moved
    old = json.loads((tmp_path / LOGSTATE_FILE).read_text())
    del old["log"]["pinned_at"]  # a file written before the field
    (tmp_path / LOGSTATE_FILE).write_text(json.dumps(old))
    assert store.load() == LogState(origin="o", vkey="o+01020304+AQ==")
    assert store.pin("o", "o+01020304+AQ==", now=3000).pinned_at == 3000
