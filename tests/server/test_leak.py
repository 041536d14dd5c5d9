"""The relay is blind: a marker inside the plaintext of real age files never
appears in its data folder, its database or its logs, in plain, base64 or hex."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
from pathlib import Path

import sqlalchemy as sa

from sealdrop.client.relay_api import RelayClient
from sealdrop.crypto.age import Encryptor
from sealdrop.server.config import async_url
from sealdrop.server.db import make_engine, metadata

from .relaykit import RelayProcess, invite_via_cli, make_identity, upload_blob

MARKER = b"PATIENT-DOE-JANE-1970-01-01-MARKER-7f3a"


def forms(secret: bytes) -> list[bytes]:
    """Plain, hex (both cases) and base64 at each of the three byte alignments."""
    out = [secret, secret.hex().encode(), secret.hex().upper().encode()]
    for shift in range(3):
        enc = base64.b64encode(b"\0" * shift + secret)
        std = enc[4 if shift else 0: -4]  # drop blocks touched by padding or the prefix
        out += [std, std.replace(b"+", b"-").replace(b"/", b"_")]
    return out


def _dump(url: str, data_dir: Path) -> bytes:
    async def run() -> bytes:
        engine = make_engine(async_url(url) if url else
                             async_url(f"sqlite:///{data_dir / 'relay.db'}"))
        chunks = []
        try:
            async with engine.connect() as conn:
                for table in metadata.sorted_tables:
                    for row in await conn.execute(sa.select(table)):
                        chunks.append(json.dumps(dict(row._mapping), default=str))
        finally:
            await engine.dispose()
        return "\n".join(chunks).encode()

    return asyncio.run(run())


def test_relay_never_holds_the_plaintext(tmp_path: Path, db_url: str) -> None:
    proc = RelayProcess(tmp_path / "data", db_url, tmp_path / "relay.log")
    proc.cli("init")
    proc.start()
    try:
        a, b, c = make_identity("alice"), make_identity("bob-lab"), make_identity("carol-rad")
        clients = {}
        for ident in (a, b, c):
            cl = RelayClient(proc.base_url, handle=ident.handle, signing_key=ident.signing_key)
            cl.register(invite_via_cli(proc), ident.bundle)
            clients[ident.handle] = cl
        alice = clients["alice"]
        for i, size in enumerate((200, 70_000, 300_000)):
            plain = (MARKER + os.urandom(16)) * (size // (len(MARKER) + 16) + 1)
            buf = io.BytesIO()
            with Encryptor(buf, [b.x25519.recipient(), c.x25519.recipient()]) as enc:
                enc.write(plain[:size])
            blob = buf.getvalue()
            tid = alice.create_transfer(["bob-lab", "carol-rad"], len(blob), expires_in=86400)["id"]
            upload_blob(alice, tid, blob, chunk_size=64 * 1024)
            alice.complete(tid)
            got = io.BytesIO()
            clients["bob-lab"].download(tid, got)
            assert got.getvalue() == blob
            clients["bob-lab"].ack(tid, "verified")
            if i == 0:
                alice.delete(tid)
        alice.status(tid)
        proc.cli("gc")
        proc.cli("verify")
        proc.cli("backup", "--to", str(tmp_path / "data" / "backup-inside"), check=False)
    finally:
        proc.stop()

    haystacks: dict[str, bytes] = {}
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            haystacks[str(path)] = path.read_bytes()
    haystacks["database dump"] = _dump(db_url, tmp_path / "data")
    log = (tmp_path / "relay.log").read_bytes()
    haystacks["log"] = log
    hits = [(name, f) for name, data in haystacks.items() for f in forms(MARKER) if f in data]
    assert hits == []
    assert sum("/blobs/complete/" in name for name in haystacks) >= 2  # really searched blobs
    # the logs are JSON lines without handles
    for line in log.splitlines():
        json.loads(line)
    for handle in (b"alice", b"bob-lab", b"carol-rad"):
        assert handle not in log
