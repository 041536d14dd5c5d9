"""The client's checks of the relay's transparency log, against a real relay whose
database the test edits behind its back (docs/transparency.md, "The client").

Each attack must stop the next command that talks to the relay, with its own
exit status and a sentence naming what the relay did; nothing is placed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from sealdrop.crypto.bundle import KeyBundle
from sealdrop.crypto.tlog import entries
from tests.e2e.kit import Relay, User, log_state, make_case, refused, tree


def test_pinned_at_init_and_receipts_signed_then_a_forged_one_refused(
        tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    pinned = log_state(practice)
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
    assert "opened and verified" in (out := practice.run("status", tid).stdout)
    assert "\u2014 signed receipt" in out and "relay says" not in out
    # the pinned contact keeps its tlog-proof; the relay logged both of the lab's receipts
    kept = json.loads((practice.home / "contacts.json").read_text())["contacts"][lab.handle]
    assert kept["log_proof"].startswith("c2sp.org/tlog-proof@v1\n")
    assert sorted(practice.relay.sql("select recipient, status from tlog_receipts")) == [
        (lab.handle, "downloaded"), (lab.handle, "verified")]
    # the second run advanced by consistency: a larger checkpoint, every entry read
    now = log_state(practice)
    assert now["size"] > first and now["scanned"] == now["size"]

    # the relay alters the lab's "verified" receipt: status refuses, naming the lab
    (sig,) = practice.relay.sql(
        "select sig from tlog_receipts where transfer_id = ? and status = 'verified'", tid)[0]
    forged = bytearray(sig)
    forged[0] ^= 1
    practice.relay.sql("update tlog_receipts set sig = ? where transfer_id = ? and "
                       "status = 'verified'", bytes(forged), tid)
    r = practice.run("status", tid, check=False)
    refused(r, 28, lab.handle, "did NOT sign", tid)


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
    grown = log_state(practice)["size"]
    assert grown > int(before["tlog_head"][0][1])
    _restore(relay, before)  # the relay forgets the newest entries
    r = practice.run("inbox", check=False)
    refused(r, 23, "ROLLED BACK", str(grown))
    assert log_state(practice)["size"] == grown  # the verified checkpoint is kept


def _append(relay: Relay, entry: bytes) -> None:
    """The relay's own append (server.tlog), in its database while it runs."""
    import sqlalchemy as sa

    from sealdrop.server import tlog

    engine = sa.create_engine(f"sqlite:///{relay.data / 'relay.db'}",
                              connect_args={"timeout": 30})
    try:
        with engine.begin() as conn:
            tlog.append(conn, entry, now=int(time.time()))
    finally:
        engine.dispose()


def _foreign_key_entry(user: User) -> tuple[KeyBundle, bytes]:
    """A key entry for ``user``'s handle whose bundle someone else made."""
    ours = KeyBundle.loads((user.home / "bundle.json").read_text())
    theirs = KeyBundle.create(handle=ours.handle, signing_key=SigningKey.generate(),
                              x25519=ours.x25519, pq=ours.pq, created=ours.created + 1)
    return ours, entries.KeyEntry.for_bundle(theirs).to_bytes()


def test_a_key_under_our_own_handle_is_refused(tmp_path: Path, relay: Relay) -> None:
    practice = User(tmp_path, "cabinet-martin", relay)
    practice.init()
    ours, entry = _foreign_key_entry(practice)
    # A profile from before the log pins it at its next command, and says so once.
    (practice.home / "log.json").unlink()
    first = practice.run("inbox")
    assert first.stderr.count("pinned the relay's transparency log") == 1, first.stderr
    assert "pinned" not in practice.run("inbox").stderr
    kept = log_state(practice)
    assert kept["own"] == [entries.bundle_digest(ours).hex()]
    _append(relay, entry)
    r = practice.run("inbox", check=False)
    refused(r, 26, f"the relay logged a key for {ours.handle} that this profile never made")
    assert log_state(practice) == kept  # nothing stored from a log that failed a check
    r = practice.run("inbox", check=False)  # and it stays refused
    refused(r, 26, ours.handle)
    # The relay now hides that entry: its entry tiles serve another in its place.
    hidden = entries.TransferEntry(bytes(32)).to_bytes()
    relay.sql("update tlog_entries set data = ? where idx = ?", hidden, kept["size"])
    r = practice.run("inbox", check=False)
    refused(r, 24, "hiding or changing entries")


def test_a_new_key_logged_for_a_pinned_contact_is_an_alert(
        tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    _, entry = _foreign_key_entry(lab)
    _append(practice.relay, entry)  # the relay keeps serving the lab's real bundle
    r = practice.run("inbox", check=False)
    refused(r, 27, f"NEW KEY for your contact {lab.handle}")
    assert "call labo-dupont by phone" in r.stderr
    # the lab's own client sees the same entry as a key it never made
    refused(lab.run("inbox", check=False), 26, lab.handle)
