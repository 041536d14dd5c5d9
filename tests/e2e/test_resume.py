"""Interrupted sends and receives (kill -9, relay restart) resume; changed files cancel.

To interrupt a transfer midway it must be slow: the link between the CLI and
the relay is throttled (kit.Relay.throttled), and sends use small chunks
(--chunk-size) so that there are many of them to count.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.kit import RELAY, User, make_case, tree, wait_for

CHUNK = 64 * 1024
SMALL_CHUNKS = ("--chunk-size", str(CHUNK))
UP_RATE = 1024 * 1024  # bytes per second: a 2-3 MiB case takes seconds to upload
DOWN_RATE = 1024 * 1024


def _chunks_logged(user: User) -> int:
    logs = list((user.home / "outbox").glob("*.chunks"))
    return sum(len(p.read_text().splitlines()) for p in logs)


def _start_and_kill_send(user: User, case: Path, to: str, after_chunks: int = 8) -> None:
    with user.relay.throttled(up=UP_RATE):
        proc = user.popen("send", str(case), "--to", to, "--json", *SMALL_CHUNKS)
        wait_for(lambda: _chunks_logged(user) >= after_chunks, 60, "some chunks to upload")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        # The process is gone, and so are its connections: what the link still
        # buffered for the relay is cut off with them, never delivered late.
        user.relay.link.drop_connections()


def test_send_killed_mid_upload_resumes_without_resending(
    tmp_path: Path, pair: tuple[User, User]
) -> None:
    practice, lab = pair
    relay = practice.relay
    case = make_case(tmp_path / "src", big=3 * 1024 * 1024)
    before = relay.metric("sealdrop_upload_bytes_total")
    _start_and_kill_send(practice, case, lab.handle)
    time.sleep(0.3)  # a chunk in flight at the kill may still land; then nothing moves
    ((tid, committed, size, state),) = relay.sql(
        "select id, committed, size, state from transfers")
    assert state == "uploading" and 0 < committed < size
    assert committed % CHUNK == 0
    # the relay offers BLAKE3, so the send hashes its chunks with it, and resumes so
    records = [r[0] for r in relay.sql("select sha256 from transfer_chunks")]
    assert records and all(r.startswith("blake3:") and len(r) == 71 for r in records)
    st = practice.json("status")["transfers"][0]
    assert st["state"] == "interrupted"
    # the same command again: resumes; what the relay held is not sent again
    done = practice.json("send", str(case), "--to", lab.handle, *SMALL_CHUNKS)
    assert done["transfer_id"] == tid and done["resumed"] is True
    # the client PATCHed exactly what the relay lacked (it counts every PATCHed byte) ...
    assert done["skipped_bytes"] == committed
    assert done["uploaded_bytes"] == size - committed
    # ... and the relay committed the transfer's bytes once (metric printed to 6 digits)
    assert abs(relay.metric("sealdrop_upload_bytes_total") - before - size) < 0.01 * CHUNK
    assert relay.sql("select state from transfers") == [("complete",)]
    assert all(r[0].startswith("blake3:") for r in relay.sql("select sha256 from transfer_chunks"))
    verify = subprocess.run([RELAY, "verify", "--json", "--data", str(relay.data)],
                            env=relay.env, capture_output=True, text=True)
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"]
    assert not any((practice.home / "outbox").iterdir())
    dest = tmp_path / "in"
    dest.mkdir()
    got = lab.json("receive", tid, "--into", str(dest))
    assert got["failed"] == [] and tree(dest / case.name) == tree(case)


def test_files_changed_between_interrupted_send_and_resume(
    tmp_path: Path, pair: tuple[User, User]
) -> None:
    practice, lab = pair
    case = make_case(tmp_path / "src", big=2 * 1024 * 1024)
    _start_and_kill_send(practice, case, lab.handle, after_chunks=4)
    (tid,) = [r[0] for r in practice.relay.sql("select id from transfers")]
    big = case / "big.bin"
    with open(big, "r+b") as f:  # same size, new content, new mtime
        f.seek(100)
        f.write(b"changed!")
    os.utime(big, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    r = practice.run("send", str(case), "--to", lab.handle, check=False)
    assert r.returncode == 1
    assert ("the files changed since the send started; the interrupted send was cancelled, "
            "send again") in r.stderr
    assert practice.relay.sql("select count(*) from transfers where id = ?", tid) == [(0,)]
    assert not any((practice.home / "outbox").iterdir())
    # sending again works, as a new transfer
    again = practice.json("send", str(case), "--to", lab.handle)
    assert again["transfer_id"] != tid and again["resumed"] is False


def test_changed_bytes_with_the_same_stamp_are_caught_by_the_chunk_hashes(
    tmp_path: Path, pair: tuple[User, User]
) -> None:
    practice, lab = pair
    case = make_case(tmp_path / "src", big=2 * 1024 * 1024)
    big = case / "big.bin"
    st = os.stat(big)
    _start_and_kill_send(practice, case, lab.handle, after_chunks=6)
    with open(big, "r+b") as f:  # inside the committed part; size and mtime restored
        f.seek(1000)
        f.write(b"X" * 16)
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = practice.run("send", str(case), "--to", lab.handle, check=False)
    assert r.returncode == 1 and "the files changed since the send started" in r.stderr
    assert practice.relay.sql("select count(*) from transfers") == [(0,)]


def test_relay_restarted_mid_send(tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    relay = practice.relay
    case = make_case(tmp_path / "src", big=2 * 1024 * 1024)
    with relay.throttled(up=UP_RATE):
        proc = practice.popen("send", str(case), "--to", lab.handle, "--json", *SMALL_CHUNKS)
        wait_for(lambda: _chunks_logged(practice) >= 5, 60, "some chunks to upload")
        relay.kill()
        time.sleep(1.0)  # the client retries into a dead relay, backing off
        relay.start()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    dest = tmp_path / "in"
    dest.mkdir()
    lab.run("receive", "--all", "--into", str(dest))
    assert tree(dest / case.name) == tree(case)


@pytest.mark.parametrize("kill_at_mib", [1, 2, 5])
def test_receive_killed_mid_download_resumes(tmp_path: Path, pair: tuple[User, User],
                                             kill_at_mib: int) -> None:
    """One pass decrypts and stages while it downloads; the spool journals the
    ciphertext, so a kill -9 early, midway or near the end resumes from the
    relay where it stopped (only the rest is served) and the result verifies."""
    practice, lab = pair
    relay = practice.relay
    case = make_case(tmp_path / "src", big=6 * 1024 * 1024)
    tid = practice.json("send", str(case), "--to", lab.handle)["transfer_id"]
    dest = tmp_path / "in"
    dest.mkdir()
    spool = lab.home / "inbox-spool" / f"{tid}.age.partial"
    with relay.throttled(down=DOWN_RATE):
        proc = lab.popen("receive", tid, "--into", str(dest))
        wait_for(lambda: spool.exists() and spool.stat().st_size >= kill_at_mib * 1024 * 1024,
                 60, "part of the download")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        relay.link.drop_connections()
    assert list(dest.iterdir()) == []  # nothing placed, no staging folder
    have = spool.stat().st_size
    (size,) = [r[0] for r in relay.sql("select size from transfers")]
    assert 0 < have < size
    before = relay.metric("sealdrop_download_bytes_total")
    got = lab.json("receive", tid, "--into", str(dest))
    assert got["failed"] == [] and tree(dest / case.name) == tree(case)
    assert abs(relay.metric("sealdrop_download_bytes_total") - before - (size - have)) < 64 * 1024
    assert list((lab.home / "staging").iterdir()) == []  # the killed run's staging swept
    assert not spool.exists()


_KILLED_WHILE_PLACING = """
import os, signal, sys
from sealdrop.client.receive import place
real = place.Placer.place
def place_then_die(self, path):
    done = real(self, path)
    os.kill(os.getpid(), signal.SIGKILL)  # after the first file, mid-PLACE
    return done
place.Placer.place = place_then_die
from sealdrop.client.cli import main
sys.argv = ["sealdrop", *sys.argv[1:]]
sys.exit(main())
"""


def test_receive_killed_while_placing_downloads_nothing_again(
    tmp_path: Path, pair: tuple[User, User]
) -> None:
    """kill -9 after the first file moved into DEST: what is there is verified, no
    staging is left, the journal holds the whole ciphertext, and no later run
    downloads it again. The half-placed case is not finished for the user: the
    next run refuses the taken name (nothing is overwritten), and once it is
    moved away the same command places everything from the spool."""
    practice, lab = pair
    relay = practice.relay
    case = make_case(tmp_path / "src", big=2 * 1024 * 1024)
    tid = practice.json("send", str(case), "--to", lab.handle)["transfer_id"]
    dest = tmp_path / "in"
    dest.mkdir()
    spool = lab.home / "inbox-spool" / f"{tid}.age.partial"
    r = subprocess.run([sys.executable, "-c", _KILLED_WHILE_PLACING, "receive", tid,
                        "--into", str(dest)], env=lab.env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == -signal.SIGKILL, r.stderr
    placed = [p for p in (dest / case.name).rglob("*") if p.is_file()]
    assert len(placed) == 1  # the kill came mid-PLACE
    for p in placed:  # only verified bytes under real names
        assert p.read_bytes() == (case / p.relative_to(dest / case.name)).read_bytes()
    (size,) = [r[0] for r in relay.sql("select size from transfers")]
    assert spool.stat().st_size == size
    served = relay.metric("sealdrop_download_bytes_total")
    again = lab.run("receive", tid, "--into", str(dest), check=False)
    assert again.returncode != 0 and "already exists" in again.stderr
    assert list((lab.home / "staging").iterdir()) == []
    aside = tmp_path / "aside"
    (dest / case.name).rename(aside)
    got = lab.json("receive", tid, "--into", str(dest))
    assert got["failed"] == [] and tree(dest / case.name) == tree(case)
    assert relay.metric("sealdrop_download_bytes_total") == served  # never downloaded again
    assert not spool.exists()
