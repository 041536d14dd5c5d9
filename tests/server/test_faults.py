"""No partial state: a client gone mid-chunk, a relay killed with SIGKILL
mid-upload and restarted, and a full disk all leave the committed offset equal
to the bytes really stored, and no row without a blob or blob without a row."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sealdrop.client.relay_api import RelayClient, RelayError
from sealdrop.crypto import chunkhash
from sealdrop.server.blobs import LocalBlobStore

from .relaykit import (
    Identity,
    RelayProcess,
    RunningRelay,
    blob_digest,
    invite_via_cli,
    make_identity,
    sign_headers,
    upload_blob,
)

MiB = 1024 * 1024


def _start_partial_chunk(host: str, port: int, ident: Identity, tid: str, offset: int,
                         chunk: bytes, send: int) -> socket.socket:
    """Send the headers and the first ``send`` bytes of a chunk, then stall."""
    sha = hashlib.sha256(chunk).hexdigest()
    path = f"/v1/transfers/{tid}/data"
    h = sign_headers(ident.signing_key, ident.handle, "PATCH", path, sha)
    h.update({"Content-Type": "application/octet-stream", "Upload-Offset": str(offset),
              "Sealdrop-Chunk-Sha256": sha, "Content-Length": str(len(chunk))})
    head = f"PATCH {path} HTTP/1.1\r\nHost: relay\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(head.encode() + chunk[:send])
    return s


def _wait_for(pred, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def _partial(data_dir: Path, tid: str) -> Path:
    return data_dir / "blobs" / "partial" / tid


def test_client_disconnect_mid_chunk(relay: RunningRelay) -> None:
    alice, a = relay.user("alice")
    bob, _ = relay.user("bob-lab")
    blob = os.urandom(12 * MiB)
    tid = alice.create_transfer(["bob-lab"], len(blob))["id"]
    alice.upload_chunk(tid, 0, blob[:MiB])
    part = _partial(relay.config.data_dir, tid)
    # more than one IO block (4 MiB) of the chunk, so that some of it is written
    s = _start_partial_chunk(relay.host, relay.port, a, tid, MiB, blob[MiB:11 * MiB], 6 * MiB + 5)
    _wait_for(lambda: part.stat().st_size > MiB)  # the relay is writing past the offset
    s.close()  # the client vanishes mid-chunk
    _wait_for(lambda: part.stat().st_size == MiB)  # ...and the relay cut the garbage off
    assert alice.upload_offset(tid) == MiB
    assert relay.rows()["transfers"][0]["committed"] == MiB
    upload_blob(alice, tid, blob, chunk_size=2 * MiB)
    alice.complete(tid)
    out = io.BytesIO()
    bob.download(tid, out)
    assert out.getvalue() == blob


@pytest.fixture
def relay_proc(tmp_path: Path, db_url: str) -> Iterator[RelayProcess]:
    proc = RelayProcess(tmp_path / "data", db_url, tmp_path / "relay.log")
    proc.cli("init")
    yield proc
    proc.stop()


@pytest.mark.parametrize("algorithm", chunkhash.ALGORITHMS)
def test_sigkill_mid_upload_then_restart_and_resume(relay_proc: RelayProcess,
                                                    algorithm: str) -> None:
    relay_proc.start()
    a, b = make_identity("alice"), make_identity("bob-lab")
    alice = RelayClient(relay_proc.base_url, handle="alice", signing_key=a.signing_key)
    alice.register(invite_via_cli(relay_proc), a.bundle)
    bob = RelayClient(relay_proc.base_url, handle="bob-lab", signing_key=b.signing_key)
    bob.register(invite_via_cli(relay_proc), b.bundle)
    blob = os.urandom(14 * MiB + 123)
    tid = alice.create_transfer(["bob-lab"], len(blob))["id"]
    alice.upload_chunk(tid, 0, blob[: 2 * MiB], algorithm=algorithm)
    part = _partial(relay_proc.data_dir, tid)
    s = _start_partial_chunk("127.0.0.1", relay_proc.port, a, tid, 2 * MiB,
                             blob[2 * MiB: 12 * MiB], 7 * MiB)
    _wait_for(lambda: part.stat().st_size > 2 * MiB)
    relay_proc.kill()  # SIGKILL while the chunk is half written
    s.close()
    assert part.stat().st_size > 2 * MiB  # garbage past the committed offset is on disk

    relay_proc.start()
    alice = RelayClient(relay_proc.base_url, handle="alice", signing_key=a.signing_key)
    bob = RelayClient(relay_proc.base_url, handle="bob-lab", signing_key=b.signing_key)
    assert part.stat().st_size == 2 * MiB  # start-up recovery truncated it
    assert alice.upload_offset(tid) == 2 * MiB
    upload_blob(alice, tid, blob, chunk_size=3 * MiB, algorithm=algorithm)
    done = alice.complete(tid)
    ends = [2 * MiB, 5 * MiB, 8 * MiB, 11 * MiB, 14 * MiB, len(blob)]
    assert done["digest"] == blob_digest(blob, ends, algorithm)
    out = io.BytesIO()
    bob.download(tid, out)
    assert out.getvalue() == blob
    report = json.loads(relay_proc.cli("verify", "--json").stdout)
    assert report["ok"] and report["checked"] == 1


def _registered(relay_proc: RelayProcess, a: Identity, b: Identity) -> tuple[RelayClient,
                                                                           RelayClient]:
    alice = RelayClient(relay_proc.base_url, handle=a.handle, signing_key=a.signing_key)
    bob = RelayClient(relay_proc.base_url, handle=b.handle, signing_key=b.signing_key)
    return alice, bob


@pytest.mark.parametrize("algorithm", chunkhash.ALGORITHMS)
@pytest.mark.parametrize("damage", ["truncated", "zeroed", "missing"])
def test_power_loss_rolls_the_offset_back_to_the_last_intact_chunk(
    relay_proc: RelayProcess, damage: str, algorithm: str
) -> None:
    """Chunks are not fsynced as they arrive: after a power loss the partial blob
    may lack bytes the database counts as committed. Simulated here by damaging
    the file behind the stopped relay's back; start-up recovery must re-hash it
    along the recorded chunks, roll the offset back, and the client resume."""
    relay_proc.start()
    a, b = make_identity("alice"), make_identity("bob-lab")
    alice, bob = _registered(relay_proc, a, b)
    alice.register(invite_via_cli(relay_proc), a.bundle)
    bob.register(invite_via_cli(relay_proc), b.bundle)
    blob = os.urandom(7 * MiB + 11)
    tid = alice.create_transfer(["bob-lab"], len(blob))["id"]
    for off in range(0, 6 * MiB, 2 * MiB):  # chunks ending at 2, 4 and 6 MiB
        alice.upload_chunk(tid, off, blob[off:off + 2 * MiB], algorithm=algorithm)
    assert alice.upload_offset(tid) == 6 * MiB
    relay_proc.kill()
    part = _partial(relay_proc.data_dir, tid)
    if damage == "truncated":  # the last chunk's tail never reached the disk
        os.truncate(part, 5 * MiB)
        expected = 4 * MiB
    elif damage == "zeroed":  # the file has its size, the data blocks are zeros
        with part.open("r+b") as f:
            f.seek(3 * MiB)
            f.write(bytes(4096))
        expected = 2 * MiB
    else:
        part.unlink()
        expected = 0

    relay_proc.start()
    alice, bob = _registered(relay_proc, a, b)
    assert alice.upload_offset(tid) == expected  # rolled back, never forward
    assert part.exists() is (expected > 0) and (not part.exists() or
                                                part.stat().st_size == expected)
    with pytest.raises(RelayError) as e:
        alice.complete(tid)
    assert e.value.code == "incomplete_upload"
    upload_blob(alice, tid, blob, chunk_size=2 * MiB, algorithm=algorithm)
    done = alice.complete(tid)
    ends = [*range(2 * MiB, len(blob), 2 * MiB), len(blob)]
    assert done["digest"] == blob_digest(blob, ends, algorithm)
    out = io.BytesIO()
    bob.download(tid, out)
    assert out.getvalue() == blob
    report = json.loads(relay_proc.cli("verify", "--json").stdout)
    assert report["ok"] and report["checked"] == 1


@pytest.mark.parametrize("algorithm", chunkhash.ALGORITHMS)
def test_verify_finds_a_damaged_chunk_of_a_complete_blob(relay_proc: RelayProcess,
                                                         algorithm: str) -> None:
    relay_proc.start()
    a, b = make_identity("alice"), make_identity("bob-lab")
    alice, bob = _registered(relay_proc, a, b)
    alice.register(invite_via_cli(relay_proc), a.bundle)
    bob.register(invite_via_cli(relay_proc), b.bundle)
    blob = os.urandom(3 * MiB)
    tid = alice.create_transfer(["bob-lab"], len(blob))["id"]
    upload_blob(alice, tid, blob, chunk_size=MiB, algorithm=algorithm)
    alice.complete(tid)
    assert json.loads(relay_proc.cli("verify", "--json").stdout)["ok"]
    relay_proc.stop()
    done = relay_proc.data_dir / "blobs" / "complete" / tid[:2] / tid
    with done.open("r+b") as f:
        f.seek(2 * MiB + 5)
        f.write(b"\x00")
    run = relay_proc.cli("verify", "--json", check=False)
    report = json.loads(run.stdout)
    assert run.returncode != 0 and report["tampered"] == [tid] and not report["ok"]


# -- a full disk ----------------------------------------------------------------------


class EnospcBlobStore(LocalBlobStore):
    """Fallback when a small filesystem cannot be mounted: the disk 'fills up'
    after ``capacity`` bytes of partial blobs."""

    def __init__(self, root: Path, capacity: int) -> None:
        super().__init__(root)
        self.capacity = capacity

    async def write_chunk(self, key: str, offset: int, source: AsyncIterator[bytes], *,
                          length: int, digest: str) -> None:
        cap = self.capacity

        async def limited() -> AsyncIterator[bytes]:
            seen = offset
            async for piece in source:
                seen += len(piece)
                if seen > cap:
                    raise OSError(errno.ENOSPC, "No space left on device")
                yield piece

        await super().write_chunk(key, offset, limited(), length=length, digest=digest)


@pytest.fixture
def small_blob_dir(tmp_path: Path) -> Iterator[tuple[Path, bool]]:
    blob_dir = tmp_path / "data" / "blobs"
    blob_dir.mkdir(parents=True)
    mounted = False
    if os.geteuid() == 0:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(blob_dir)],
                           capture_output=True)
        mounted = r.returncode == 0
    yield blob_dir, mounted
    if mounted:
        subprocess.run(["umount", "-l", str(blob_dir)], check=False)


def test_full_disk(relay_factory, small_blob_dir: tuple[Path, bool]) -> None:  # type: ignore[no-untyped-def]
    blob_dir, mounted = small_blob_dir
    kw = {} if mounted else {"blobs": EnospcBlobStore(blob_dir, 2 * MiB)}
    relay = relay_factory(**kw)
    alice, _ = relay.user("alice")
    bob, _ = relay.user("bob-lab")
    blob = os.urandom(3 * MiB)
    tid = alice.create_transfer(["bob-lab"], len(blob))["id"]
    alice.upload_chunk(tid, 0, blob[:MiB])
    with pytest.raises(RelayError) as e:
        alice.upload_chunk(tid, MiB, blob[MiB:3 * MiB])
    assert e.value.status == 507 and e.value.code == "insufficient_storage"
    assert alice.upload_offset(tid) == MiB
    assert _partial(relay.config.data_dir, tid).stat().st_size == MiB
    with pytest.raises(RelayError):
        alice.complete(tid)
    assert bob.inbox() == []
    # a smaller transfer still fits after the sender gives up on the big one
    alice.delete(tid)
    assert relay.rows()["transfers"] == [] and relay.run(relay.relay.blobs.list()) == []
    small = os.urandom(MiB)
    t2 = alice.create_transfer(["bob-lab"], len(small))["id"]
    upload_blob(alice, t2, small)
    alice.complete(t2)
    out = io.BytesIO()
    bob.download(t2, out)
    assert out.getvalue() == small
