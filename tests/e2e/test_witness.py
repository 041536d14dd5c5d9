"""`sealdrop witness serve`, a real process on loopback, fed by the relay's
`collect_cosignatures` with logs built in memory (tests/witnesskit.py).

What a witness must guarantee: it cosigns only trees consistent with the last
one it cosigned, remembers that across a restart, and answers the C2SP
tlog-witness status codes that relays rely on (409 with its size, 403, 404).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealdrop.client.witness.policy import check_cosignatures
from sealdrop.crypto.tlog.note import NoteSigner, NoteVerifier
from sealdrop.crypto.witness import SIZE_CONTENT_TYPE, format_add_checkpoint
from sealdrop.server.config import WitnessConfig
from sealdrop.server.witnessing import CosignedCheckpoints, collect_cosignatures
from tests.e2e.kit import SEALDROP, free_port, kill_process, stop_process, wait_for
from tests.witnesskit import LOG_KEY, ORIGIN, WITNESS_KEY, Tree, seed

LOG_VERIFIER = NoteVerifier.from_vkey(LOG_KEY.vkey)
OTHER_LOG = NoteSigner("other.invalid/log", seed("other"))  # followed too


class WitnessProcess:
    def __init__(self, tmp: Path, key_file: Path, vkey: str) -> None:
        self.key_file = key_file
        self.vkey = vkey
        self.state = tmp / "witness-state.json"
        self.log = tmp / "witness.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        start_at = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            # The log keys from the environment, as a service unit would set them.
            env = {**os.environ, "SEALDROP_WITNESS_LOG": f"{LOG_KEY.vkey} {OTHER_LOG.vkey}"}
            self.proc = subprocess.Popen(
                [SEALDROP, "witness", "serve", "--key-file", str(self.key_file),
                 "--state", str(self.state), "--listen", f"127.0.0.1:{self.port}"],
                stdout=log, stderr=log, env=env)

        def serving() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text(errors="replace"))
            return b"serving http://" in self.log.read_bytes()[start_at:]

        wait_for(serving, 60, "the witness to serve")

    def stop(self) -> None:
        stop_process(self.proc)

    def crash(self) -> None:
        kill_process(self.proc)  # SIGKILL: no clean-up, only what reached the disk

    def config(self) -> WitnessConfig:
        return WitnessConfig(url=self.url, vkey=self.vkey)

    def post(self, body: bytes) -> tuple[int, str, bytes]:
        req = urllib.request.Request(self.url + "/add-checkpoint", data=body, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - loopback
                return r.status, r.headers.get_content_type(), r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get_content_type(), e.read()


@pytest.fixture(scope="module")
def witness_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One `sealdrop witness init` for the module: the key, and the vkey it printed."""
    key_file = tmp_path_factory.mktemp("witness-key") / "witness.key"
    out = subprocess.run([SEALDROP, "witness", "init", "--name", "witness.test/w1",
                          "--key-file", str(key_file)],
                         capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.startswith("witness.test/w1+")
    return key_file, out.stdout.strip()


@pytest.fixture
def witness(tmp_path: Path, witness_key: tuple[Path, str]) -> Iterator[WitnessProcess]:
    w = WitnessProcess(tmp_path, *witness_key)
    w.start()
    try:
        yield w
    finally:
        w.stop()


def collect(w: WitnessProcess, tree: Tree, sizes: dict[str, int] | None = None) -> list[str]:
    return asyncio.run(collect_cosignatures(
        [w.config()], tree.note, tree.checkpoint, tree.proof_for, 20.0, sizes=sizes))


def cosigned(w: WitnessProcess, tree: Tree, lines: list[str]) -> bool:
    """The lines make the note pass a client's policy of one required witness."""
    return check_cosignatures(tree.note + "".join(lines), LOG_VERIFIER, [w.vkey], 1) == [
        "witness.test/w1"]


def test_cosigns_extensions_learning_its_size_from_409(witness: WitnessProcess) -> None:
    first = Tree(5)
    sizes: dict[str, int] = {}
    lines = collect(witness, first, sizes)
    assert len(lines) == 1 and cosigned(witness, first, lines)
    assert sizes == {witness.vkey: 5}
    # A relay process that knows nothing (no sizes): asks with old 0, learns 5 from
    # the 409, and retries once with a proof from 5 to 9.
    second = Tree(9)
    lines = collect(witness, second)
    assert cosigned(witness, second, lines)
    # The same tree again is cosigned again (a cache-less relay process asks twice).
    assert cosigned(witness, second, collect(witness, second, {witness.vkey: 9}))
    # ... but an older one is not: the witness is at 9 now.
    assert collect(witness, first, {witness.vkey: 5}) == []
    state = json.loads(witness.state.read_text())
    assert state["logs"][ORIGIN]["size"] == 9
    status, ctype, body = witness.post(format_add_checkpoint(0, [], second.note))
    assert (status, ctype, body) == (409, SIZE_CONTENT_TYPE, b"9\n")


def test_refuses_forks_and_keeps_refusing_after_a_crash(
        witness: WitnessProcess, caplog: pytest.LogCaptureFixture) -> None:
    honest = Tree(6)
    assert cosigned(witness, honest, collect(witness, honest))
    same_size_fork = Tree(6, fork_at=5)  # size 6, another root
    larger_fork = Tree(10, fork_at=2)  # size 10, not an extension of the cosigned 6
    with caplog.at_level(logging.WARNING, logger="sealdrop.relay"):
        assert collect(witness, same_size_fork, {witness.vkey: 6}) == []
        assert collect(witness, larger_fork, {witness.vkey: 6}) == []
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "cosigned another tree of size 6" in said  # the operator's sentence
    assert "with status 422" in said
    log = witness.log.read_text()
    assert "FORK: the log 'sealdrop.invalid/test-relay' signed two different trees" in log
    assert same_size_fork.note in log  # the evidence, signed by the log, is kept
    assert json.loads(witness.state.read_text())["logs"][ORIGIN]["size"] == 6

    witness.crash()
    witness.start()
    assert collect(witness, same_size_fork) == []
    assert collect(witness, larger_fork) == []
    honest_extension = Tree(10)
    assert cosigned(witness, honest_extension, collect(witness, honest_extension))


def test_refuses_unknown_logs_bad_signatures_and_malformed_requests(
        witness: WitnessProcess) -> None:
    tree = Tree(3)
    impostor = Tree(3, signer=NoteSigner(ORIGIN, seed("not the log")))
    assert collect(witness, impostor) == []
    status, _, body = witness.post(format_add_checkpoint(0, [], impostor.note))
    assert status == 403 and b"no valid signature" in body
    unknown = NoteSigner("unknown.invalid/log", seed("unknown"))
    status, _, _ = witness.post(format_add_checkpoint(
        0, [], Tree(3, signer=unknown, origin="unknown.invalid/log").note))
    assert status == 404
    other = Tree(3, signer=OTHER_LOG, origin=OTHER_LOG.name)  # the second --log: its own head
    assert witness.post(format_add_checkpoint(0, [], other.note))[0] == 200
    status, _, _ = witness.post(format_add_checkpoint(4, [], tree.note))
    assert status == 400  # old size above the checkpoint's
    status, _, body = witness.post(b"old 01\n\n" + tree.note.encode())
    assert status == 400 and b"not a decimal size" in body
    assert set(json.loads(witness.state.read_text())["logs"]) == {OTHER_LOG.name}
    assert cosigned(witness, tree, collect(witness, tree))


def test_an_unreachable_witness_never_blocks(caplog: pytest.LogCaptureFixture) -> None:
    tree = Tree(2)
    gone = WitnessConfig(url=f"http://127.0.0.1:{free_port()}", vkey=WITNESS_KEY.vkey)
    with caplog.at_level(logging.WARNING, logger="sealdrop.relay"):
        lines = asyncio.run(collect_cosignatures([gone], tree.note, tree.checkpoint,
                                                 tree.proof_for, 5.0))
    assert lines == []
    assert "did not answer" in caplog.text and "served without its cosignature" in caplog.text


def test_the_relays_cache_asks_once_per_size_and_again_for_a_missing_witness(
        witness: WitnessProcess) -> None:
    gone = WitnessConfig(url=f"http://127.0.0.1:{free_port()}", vkey=WITNESS_KEY.vkey)
    now = [0.0]
    tree = Tree(4)

    def asked() -> int:
        return witness.log.read_text().count(f"cosigned {ORIGIN} at size 4")

    async def run(cache: CosignedCheckpoints) -> str:
        return await cache.note_for(tree.note, tree.checkpoint, tree.proof_for)

    partial = CosignedCheckpoints([witness.config(), gone], retry_seconds=60,
                                  clock=lambda: now[0])
    note = asyncio.run(run(partial))
    assert note.startswith(tree.note) and cosigned(witness, tree, [note[len(tree.note):]])
    assert asked() == 1
    now[0] = 59.0
    assert asyncio.run(run(partial)) == note and asked() == 1  # from memory
    now[0] = 61.0
    asyncio.run(run(partial))
    assert asked() == 2  # `gone` may be back by now: both are asked again
    whole = CosignedCheckpoints([witness.config()], clock=lambda: now[0])
    asyncio.run(run(whole))
    now[0] = 1e9
    asyncio.run(run(whole))
    assert asked() == 3  # every witness cosigned: never asked again at this size
    assert asyncio.run(CosignedCheckpoints([]).note_for(tree.note, tree.checkpoint,
                                                        tree.proof_for)) == tree.note
