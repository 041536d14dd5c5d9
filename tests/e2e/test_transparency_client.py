"""The client's checks of the relay's transparency log, against a real relay whose
database the test edits behind its back (docs/transparency.md, "The client").

Each attack must stop the next command that talks to the relay, with its own
exit status and a sentence naming what the relay did; nothing is placed.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.e2e.kit import Relay, User, make_case, tree


def _log(user: User) -> dict[str, Any]:
    return dict(json.loads((user.home / "log.json").read_text())["log"])


def _refused(r: subprocess.CompletedProcess[str], status: int, *words: str) -> None:
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("sealdrop: error:"), r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def test_pinned_at_init_and_receipts_signed_then_a_forged_one_refused(
        tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    pinned = _log(practice)
    # init pinned the relay's log key and recorded our own bundle's digest
    assert pinned["origin"] and pinned["vkey"].startswith(pinned["origin"] + "+")
    assert len(pinned["own"]) == 1 and pinned["checkpoint"]
    first = pinned["size"]

    tid = practice.json("send", str(make_case(tmp_path / "s")), "--to",
                        lab.handle)["transfer_id"]
    dest = tmp_path / "in"
    dest.mkdir()
    lab.run("receive", tid, "--into", str(dest))
    assert tree(dest)
    (row,) = practice.json("status", tid)["transfers"]
    (rcpt,) = row["recipients"]
    assert rcpt["verified"] and rcpt["receipts"] == {"downloaded": "signed",
                                                     "verified": "signed"}
    assert "(verified: signed receipt)" in practice.run("status", tid).stdout
    # the second run advanced by consistency: a larger checkpoint, every entry read
    now = _log(practice)
    assert now["size"] > first and now["scanned"] == now["size"]

    # the relay alters the lab's "verified" receipt: status refuses, naming the lab
    (sig,) = practice.relay.sql(
        "select sig from tlog_receipts where transfer_id = ? and status = 'verified'", tid)[0]
    forged = bytearray(sig)
    forged[0] ^= 1
    practice.relay.sql("update tlog_receipts set sig = ? where transfer_id = ? and "
                       "status = 'verified'", bytes(forged), tid)
    r = practice.run("status", tid, check=False)
    _refused(r, 28, lab.handle, "did NOT sign", tid)


def _snapshot(relay: Relay) -> dict[str, list[tuple[Any, ...]]]:
    return {t: relay.sql(f"select * from {t}")  # noqa: S608 - fixed table names
            for t in ("tlog_head", "tlog_entries", "tlog_hashes")}


def _restore(relay: Relay, snap: dict[str, list[tuple[Any, ...]]]) -> None:
    with relay.db() as conn:
        for table, rows in snap.items():
            conn.execute(f"delete from {table}")  # noqa: S608 - fixed table names
            for row in rows:
                marks = ",".join("?" * len(row))
                conn.execute(f"insert into {table} values ({marks})", row)  # noqa: S608


def test_a_rolled_back_log_is_refused(tmp_path: Path, relay: Relay) -> None:
    practice = User(tmp_path, "cabinet-martin", relay)
    practice.init()
    before = _snapshot(relay)
    lab = User(tmp_path, "labo-dupont", relay)
    lab.init()  # the log grows by the lab's key entry
    practice.run("contacts", "add", lab.handle)  # the practice verifies the longer log
    grown = _log(practice)["size"]
    assert grown > int(before["tlog_head"][0][1])
    _restore(relay, before)  # the relay forgets the newest entries
    r = practice.run("inbox", check=False)
    _refused(r, 23, "ROLLED BACK", str(grown))
    assert _log(practice)["size"] == grown  # the verified checkpoint is kept


def test_a_key_under_our_own_handle_is_refused(tmp_path: Path, relay: Relay) -> None:
    import sqlalchemy as sa
    from nacl.signing import SigningKey

    from sealdrop.crypto.bundle import KeyBundle
    from sealdrop.crypto.tlog import entries
    from sealdrop.server import tlog

    practice = User(tmp_path, "cabinet-martin", relay)
    practice.init()
    ours = KeyBundle.loads((practice.home / "bundle.json").read_text())
    # A bundle for our handle made by someone else (the relay's operator, say).
    theirs = KeyBundle.create(handle=ours.handle, signing_key=SigningKey.generate(),
                              x25519=ours.x25519, pq=ours.pq, created=ours.created + 1)
    entry = entries.KeyEntry.for_bundle(theirs).to_bytes()

    def append() -> None:  # the relay's own append, in its database, while it runs
        engine = sa.create_engine(f"sqlite:///{relay.data / 'relay.db'}",
                                  connect_args={"timeout": 30})
        try:
            with engine.begin() as conn:
                tlog.append(conn, entry, now=int(time.time()))
        finally:
            engine.dispose()

    # A profile from before the log pins it at its next command, and says so once.
    (practice.home / "log.json").unlink()
    first = practice.run("inbox")
    assert first.stderr.count("pinned the relay's transparency log") == 1, first.stderr
    assert "pinned" not in practice.run("inbox").stderr
    kept = _log(practice)
    assert kept["own"] == [entries.bundle_digest(ours).hex()]
    append()
    r = practice.run("inbox", check=False)
    _refused(r, 26, f"the relay logged a key for {ours.handle} that this profile never made")
    assert _log(practice) == kept  # nothing stored from a log that failed a check
    r = practice.run("inbox", check=False)  # and it stays refused
    _refused(r, 26, ours.handle)
