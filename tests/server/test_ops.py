"""Operator commands: invites, accounts, gc, verify (fsck) and backup/restore."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from sealdrop.client.relay_api import RelayAuthError, RelayClient
from sealdrop.crypto import chunkhash
from sealdrop.server.cli import cli
from sealdrop.server.db import transfers

from .relaykit import RelayProcess, RunningRelay, make_identity, upload_blob

MiB = 1024 * 1024


def run_cli(relay: RunningRelay, *args: str, ok: bool = True) -> Result:
    env = {"SEALDROP_RELAY_DATABASE_URL": relay.config.database_url,
           "SEALDROP_RELAY_DATA": str(relay.config.data_dir)}
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=not ok)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_invite_commands(relay: RunningRelay) -> None:
    code = json.loads(run_cli(relay, "invite", "create", "--json").output)["code"]
    plain = run_cli(relay, "invite", "create").output.strip()
    listed = [json.loads(x) for x in run_cli(relay, "invite", "list", "--json").output.splitlines()]
    assert [i["state"] for i in listed] == ["open", "open"]
    assert code not in run_cli(relay, "invite", "list").output  # stored hashed
    run_cli(relay, "invite", "revoke", code)
    assert run_cli(relay, "invite", "revoke", code, ok=False).exit_code != 0
    ident = make_identity("clinic")
    with pytest.raises(RelayAuthError) as e:
        relay.client(ident).register(code, ident.bundle)
    assert e.value.code == "invalid_invite"
    relay.client(ident).register(plain, ident.bundle)
    states = sorted(json.loads(x)["state"]
                    for x in run_cli(relay, "invite", "list", "--json").output.splitlines())
    assert states == ["revoked", "used"]
    # revoke by the listed id
    run_cli(relay, "invite", "create")
    open_id = next(json.loads(x)["id"] for x in run_cli(relay, "invite", "list", "--json")
                   .output.splitlines() if json.loads(x)["state"] == "open")
    run_cli(relay, "invite", "revoke", open_id)


def test_account_commands(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    relay.user("bob-lab")
    out = run_cli(relay, "account", "list").output
    assert "alice  active" in out and "bob-lab  active" in out
    run_cli(relay, "account", "disable", "alice")
    assert json.loads(run_cli(relay, "account", "list", "--json").output.splitlines()[0]) \
        ["state"] == "disabled"
    with pytest.raises(RelayAuthError) as e:
        alice.inbox()
    assert e.value.code == "account_disabled"
    assert run_cli(relay, "account", "disable", "nobody", ok=False).exit_code != 0
    run_cli(relay, "account", "enable", "alice")
    assert alice.inbox() == []


def _complete(relay: RunningRelay, sender: RelayClient, blob: bytes, **kw: int) -> str:
    tid = sender.create_transfer(["bob-lab"], len(blob), **kw)["id"]
    upload_blob(sender, tid, blob)
    sender.complete(tid)
    return tid


def test_gc_command(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    relay.user("bob-lab")
    old = _complete(relay, alice, os.urandom(2000), expires_in=60)
    keep = _complete(relay, alice, os.urandom(2000))

    async def expire() -> None:
        async with relay.relay.store.engine.begin() as conn:
            await conn.execute(sa.update(transfers).where(transfers.c.id == old)
                               .values(expires_at=1))

    relay.run(expire())
    orphan = relay.config.blob_dir / "complete" / "zz" / ("zz" + "Q" * 20)
    orphan.parent.mkdir()
    orphan.write_bytes(b"orphan")
    counts = json.loads(run_cli(relay, "gc", "--json").stdout)
    assert counts["transfers_deleted"] == 1 and counts["orphan_blobs_deleted"] == 1
    assert [t["id"] for t in relay.rows()["transfers"]] == [keep]
    assert [b.key for b in relay.run(relay.relay.blobs.list())] == [keep]


def test_verify_finds_and_repairs(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    bob, _ = relay.user("bob-lab")
    good = _complete(relay, alice, os.urandom(3000))
    tampered = _complete(relay, alice, os.urandom(3000))
    missing = _complete(relay, alice, os.urandom(3000))
    longer = _complete(relay, alice, os.urandom(3000))
    shorter = _complete(relay, alice, os.urandom(3000))
    pending = alice.create_transfer(["bob-lab"], 3000)["id"]
    alice.upload_chunk(pending, 0, os.urandom(1000))
    blobs = relay.config.blob_dir
    p = blobs / "complete" / tampered[:2] / tampered
    data = bytearray(p.read_bytes())
    data[100] ^= 1
    p.write_bytes(bytes(data))
    (blobs / "complete" / missing[:2] / missing).unlink()
    # A complete blob has exactly its size: bytes past it, or too few, are damage.
    with (blobs / "complete" / longer[:2] / longer).open("ab") as f:
        f.write(b"past the end")
    os.truncate(blobs / "complete" / shorter[:2] / shorter, 2999)
    orphan = "O" * 22
    (blobs / "partial" / orphan).write_bytes(b"no row")
    # Past an upload's committed offset: information, as for a chunk being written.
    with (blobs / "partial" / pending).open("ab") as f:
        f.write(b"garbage past the committed offset")

    result = run_cli(relay, "verify", "--json", ok=False)
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert sorted(report["tampered"]) == sorted([tampered, longer, shorter])
    assert report["missing"] == [missing]
    assert report["orphans"] == [orphan] and report["trailing"] == [pending]
    assert "problems found" in run_cli(relay, "verify", ok=False).output

    run_cli(relay, "verify", "--repair")
    after = json.loads(run_cli(relay, "verify", "--json").output)
    assert after["ok"] and after["trailing"] == [pending]  # --repair leaves an upload alone
    ids = {t["id"] for t in relay.rows()["transfers"]}
    assert ids == {good, pending}
    assert {b.key for b in relay.run(relay.relay.blobs.list())} == {good, pending}
    assert (blobs / "partial" / pending).stat().st_size == 1000 + len(
        b"garbage past the committed offset")
    assert [t["id"] for t in bob.inbox()] == [good]


def test_verify_repair_rolls_a_short_upload_back_to_its_last_intact_chunk(
    relay: RunningRelay,
) -> None:
    alice, _ = relay.user("alice")
    relay.user("bob-lab")
    blob = os.urandom(3000)
    tid = alice.create_transfer(["bob-lab"], len(blob))["id"]
    alice.upload_chunk(tid, 0, blob[:1000])
    alice.upload_chunk(tid, 1000, blob[1000:2000])
    part = relay.config.blob_dir / "partial" / tid
    os.truncate(part, 1500)  # a power loss took the tail of the second chunk

    report = json.loads(run_cli(relay, "verify", "--json", ok=False).output)
    assert report["missing"] == [tid]
    run_cli(relay, "verify", "--repair")
    assert alice.upload_offset(tid) == 1000  # rolled back, not deleted
    assert part.stat().st_size == 1000
    alice.upload_chunk(tid, 1000, blob[1000:])
    assert alice.complete(tid)["state"] == "complete"


def test_backup_restores_into_a_working_relay(tmp_path: Path, db_url: str) -> None:
    if db_url:
        proc = RelayProcess(tmp_path / "data", db_url, tmp_path / "relay.log")
        proc.cli("init")
        r = proc.cli("backup", "--to", str(tmp_path / "b"), check=False)
        assert r.returncode == 1 and "pg_dump" in r.stderr
        return
    live = RelayProcess(tmp_path / "data", "", tmp_path / "relay.log")
    live.cli("init")
    live.start()
    try:
        a, b = make_identity("alice"), make_identity("bob-lab")
        alice = RelayClient(live.base_url, handle="alice", signing_key=a.signing_key)
        bob = RelayClient(live.base_url, handle="bob-lab", signing_key=b.signing_key)
        alice.register(json.loads(live.cli("invite", "create", "--json").stdout)["code"], a.bundle)
        bob.register(json.loads(live.cli("invite", "create", "--json").stdout)["code"], b.bundle)
        done_blob = os.urandom(2 * MiB + 5)
        done = alice.create_transfer(["bob-lab"], len(done_blob))["id"]
        # BLAKE3 chunk records (a current client) and SHA-256 ones (an older client)
        upload_blob(alice, done, done_blob, chunk_size=MiB, algorithm=chunkhash.BLAKE3)
        alice.complete(done)
        part_blob = os.urandom(3 * MiB)
        part = alice.create_transfer(["bob-lab"], len(part_blob))["id"]
        alice.upload_chunk(part, 0, part_blob[:MiB])
        # backup while the relay serves
        out = live.cli("backup", "--to", str(tmp_path / "backup")).stdout
        assert "backed up 2 transfer(s)" in out
        alice.upload_chunk(part, MiB, part_blob[MiB:2 * MiB])  # after the backup
    finally:
        live.stop()

    restored = RelayProcess(tmp_path / "backup", "", tmp_path / "restored.log")
    assert json.loads(restored.cli("verify", "--json").stdout)["ok"]
    restored.start()
    try:
        alice = RelayClient(restored.base_url, handle="alice", signing_key=a.signing_key)
        bob = RelayClient(restored.base_url, handle="bob-lab", signing_key=b.signing_key)
        assert [t["id"] for t in bob.inbox()] == [done]
        got = io.BytesIO()
        bob.download(done, got)
        assert got.getvalue() == done_blob
        assert alice.upload_offset(part) == MiB  # as of the backup
        upload_blob(alice, part, part_blob, chunk_size=MiB)
        alice.complete(part)
        got = io.BytesIO()
        bob.download(part, got)
        assert got.getvalue() == part_blob
    finally:
        restored.stop()


def test_init_twice_and_bad_config(tmp_path: Path) -> None:
    data = tmp_path / "d"
    runner = CliRunner()
    env = {"SEALDROP_RELAY_DATABASE_URL": ""}
    assert runner.invoke(cli, ["init", "--data", str(data)], env=env).exit_code == 0
    assert runner.invoke(cli, ["init", "--data", str(data)], env=env).exit_code == 0
    (data / "relay.toml").write_text("quota_bytes = -1\n")
    r = runner.invoke(cli, ["gc", "--data", str(data)], env=env)
    assert r.exit_code != 0 and "quota_bytes must be positive" in str(r.exception)
    (data / "relay.toml").write_text("qouta_bytes = 5\n")
    r = runner.invoke(cli, ["gc", "--data", str(data)], env=env)
    assert "unknown setting 'qouta_bytes'" in str(r.exception)
