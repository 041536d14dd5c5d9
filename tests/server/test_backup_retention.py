"""`sealdrop-relay backup --into TARGET --keep N`: the command creates its target,
writes dated backups there, keeps the newest N, and a failed run neither counts
as a backup nor costs a good one (docs/operations.md, "Backups and retention")."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
from pathlib import Path

import pytest

from sealdrop.client.relay_api import RelayClient
from sealdrop.server import backup_rotation as rotation
from sealdrop.server.errors import ConfigError

from .relaykit import Identity, RelayProcess, make_identity, upload_blob

MiB = 1024 * 1024
SLOT = re.compile(r"\d{8}T\d{6}\.\d{6}Z")


def _relay_with_a_transfer(tmp_path: Path) -> tuple[RelayProcess, str, bytes, Identity]:
    """A SQLite relay data folder holding one complete transfer, relay stopped."""
    live = RelayProcess(tmp_path / "data", "", tmp_path / "relay.log")
    live.cli("init")
    live.start()
    try:
        a, b = make_identity("alice"), make_identity("bob-lab")
        alice = RelayClient(live.base_url, handle="alice", signing_key=a.signing_key)
        bob = RelayClient(live.base_url, handle="bob-lab", signing_key=b.signing_key)
        alice.register(json.loads(live.cli("invite", "create", "--json").stdout)["code"], a.bundle)
        bob.register(json.loads(live.cli("invite", "create", "--json").stdout)["code"], b.bundle)
        blob = os.urandom(MiB + 17)
        tid = alice.create_transfer(["bob-lab"], len(blob))["id"]
        upload_blob(alice, tid, blob, chunk_size=MiB)
        alice.complete(tid)
    finally:
        live.stop()
    return live, tid, blob, b


def _backed_up_to(stdout: str) -> Path:
    m = re.search(r"backed up \d+ transfer\(s\), \d+ bytes to (\S+)", stdout)
    assert m, stdout
    return Path(m.group(1))


def _slots(target: Path) -> list[str]:
    return sorted(p.name for p in target.iterdir() if SLOT.fullmatch(p.name))


def test_backup_into_creates_the_target_and_keeps_the_newest(tmp_path: Path) -> None:
    relay, tid, blob, b = _relay_with_a_transfer(tmp_path)
    target = tmp_path / "backups" / "sealdrop-relay"  # neither folder exists yet
    made = []
    for _ in range(2):
        out = relay.cli("backup", "--into", str(target), "--keep", "2").stdout
        made.append(_backed_up_to(out))
        assert "removed old backup" not in out
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    # whatever else the operator keeps there is never pruned
    (target / "README").write_text("offsite copy runs at 04:00\n")
    (target / "before-upgrade").mkdir()
    (target / "before-upgrade" / "relay.db").write_bytes(b"kept")
    out = relay.cli("backup", "--into", str(target), "--keep", "2").stdout
    made.append(_backed_up_to(out))
    assert f"removed old backup {made[0]}" in out
    assert _slots(target) == sorted(p.name for p in made[1:])
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [*_slots(target), "README", "before-upgrade"])
    assert not [p for p in target.iterdir() if p.name.startswith(rotation.PARTIAL_PREFIX)]
    # the newest backup is a data folder that serves the transfer
    restored = RelayProcess(made[-1], "", tmp_path / "restored.log")
    report = json.loads(restored.cli("verify", "--json").stdout)
    assert report["ok"] and report["checked"] == 1
    restored.start()
    try:
        bob = RelayClient(restored.base_url, handle="bob-lab", signing_key=b.signing_key)
        assert [t["id"] for t in bob.inbox()] == [tid]
        got = io.BytesIO()
        bob.download(tid, got)
        assert got.getvalue() == blob
    finally:
        restored.stop()


def test_without_keep_every_backup_stays(tmp_path: Path) -> None:
    relay, _, _, _ = _relay_with_a_transfer(tmp_path)
    target = tmp_path / "backups"
    for _ in range(3):
        relay.cli("backup", "--into", str(target))
    assert len(_slots(target)) == 3


def test_a_failed_backup_neither_counts_nor_prunes(tmp_path: Path) -> None:
    relay, tid, _, _ = _relay_with_a_transfer(tmp_path)
    target = tmp_path / "backups"
    good = [_backed_up_to(relay.cli("backup", "--into", str(target), "--keep", "2").stdout)
            for _ in range(2)]
    # a blob the copy cannot read: the run fails half-way, after writing the database
    blob = next((tmp_path / "data" / "blobs" / "complete").rglob(tid))
    blob.rename(tmp_path / "blob.saved")
    blob.mkdir()
    r = relay.cli("backup", "--into", str(target), "--keep", "1", check=False)
    assert r.returncode != 0
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in good)
    assert all((p / "relay.db").is_file() for p in good)


def test_backup_target_mistakes_are_sentences(tmp_path: Path) -> None:
    relay, _, _, _ = _relay_with_a_transfer(tmp_path)
    (tmp_path / "a-file").write_text("x")
    r = relay.cli("backup", "--into", str(tmp_path / "a-file"), check=False)
    assert r.returncode == 2 and "is a file" in r.stderr
    r = relay.cli("backup", "--into", str(tmp_path / "a-file" / "sub"), check=False)
    assert r.returncode == 1
    [line] = r.stderr.strip().splitlines()
    assert line.startswith(f"sealdrop-relay: error: cannot create backup target "
                           f"{tmp_path / 'a-file' / 'sub'}: ")
    assert "install -d -m 0700" in line
    r = relay.cli("backup", "--to", str(tmp_path / "x"), "--keep", "3", check=False)
    assert r.returncode == 2 and "--keep needs --into" in r.stderr
    assert not (tmp_path / "x").exists()
    r = relay.cli("backup", "--into", str(tmp_path / "t"), "--keep", "0", check=False)
    assert r.returncode == 2 and "--keep" in r.stderr
    r = relay.cli("backup", check=False)
    assert r.returncode == 2 and "--to FOLDER or --into TARGET" in r.stderr
    r = relay.cli("backup", "--to", str(tmp_path / "y"), "--into", str(tmp_path / "t"),
                  check=False)
    assert r.returncode == 2 and "not both" in r.stderr


def test_prune_only_touches_complete_slots(tmp_path: Path) -> None:
    names = ["20260101T000000.000000Z", "20260102T000000.000000Z", "20260103T000000.000000Z"]
    for n in names:
        (tmp_path / n).mkdir()
    (tmp_path / f"{rotation.PARTIAL_PREFIX}20250101T000000.000000Z").mkdir()  # older, partial
    (tmp_path / "20250101").mkdir()  # not a slot name
    (tmp_path / "19990101T000000.000000Z").write_text("a file, not a backup")
    shutil.copytree(tmp_path / names[0], tmp_path / "keepme")
    gone = rotation.prune(tmp_path, 1)
    assert [p.name for p in gone] == names[:2]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["19990101T000000.000000Z", "20250101", names[2], "keepme",
         f"{rotation.PARTIAL_PREFIX}20250101T000000.000000Z"])


def test_prepare_target_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is not a folder"):
        rotation.prepare_target(tmp_path / "f")
    assert (tmp_path / "f").read_text() == "x"


def test_abandon_removes_the_partial_backup(tmp_path: Path) -> None:
    slot = rotation.new_slot(tmp_path)
    slot.partial.mkdir()
    (slot.partial / "relay.db").write_bytes(b"half")
    assert rotation.backups(tmp_path) == []  # a partial never counts
    rotation.abandon(slot)
    assert list(tmp_path.iterdir()) == []
