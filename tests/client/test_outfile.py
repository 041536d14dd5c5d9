"""atomic_output: all-or-nothing for files, straight writes for what is not one.

The bug these pin: `sealdrop age -o /dev/null`, run as root, renamed its
temporary file over /dev/null, leaving a regular file there for every process
on the machine. A FIFO stands in for the device here (a test must not risk
the real /dev/null): it must stay a FIFO and its reader must get the bytes.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sealdrop.client.outfile import atomic_output


def _drain(fifo: Path, got: list[bytes]) -> threading.Thread:
    def run() -> None:
        with fifo.open("rb") as f:
            got.append(f.read())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_a_fifo_is_written_into_and_stays_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = _drain(fifo, got)
    with atomic_output(fifo) as f:
        f.write(b"ciphertext")
    reader.join(10)
    assert got == [b"ciphertext"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]  # no temporary left


def test_a_regular_file_is_replaced_only_when_the_block_completes(tmp_path: Path) -> None:
    out = tmp_path / "out.age"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(out) as f:
        f.write(b"half")
        raise RuntimeError("interrupted")
    assert out.read_bytes() == b"old"
    with atomic_output(out) as f:
        f.write(b"new")
    assert out.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.age"]


def test_age_encrypt_to_a_fifo_leaves_the_fifo_in_place(tmp_path: Path) -> None:
    # The real CLI, as `sealdrop age -r KEY -o /dev/null FILE` ran it.
    sealdrop = str(Path(sys.executable).parent / "sealdrop")
    key = tmp_path / "key.txt"
    subprocess.run([sealdrop, "age", "keygen", "-o", str(key)], check=True, capture_output=True)
    recipient = next(line.split(": ")[1] for line in key.read_text().splitlines()
                     if line.startswith("# public key: "))
    plain = tmp_path / "plain.bin"
    plain.write_bytes(os.urandom(200_000))
    fifo = tmp_path / "sink"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = _drain(fifo, got)
    subprocess.run([sealdrop, "age", "-r", recipient, "-o", str(fifo), str(plain)],
                   check=True, capture_output=True, timeout=60)
    reader.join(10)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert got and got[0].startswith(b"age-encryption.org/v1\n")
    assert len(got[0]) > 200_000
