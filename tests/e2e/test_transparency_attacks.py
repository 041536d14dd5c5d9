"""Two more of issue 15's attacks, by a real relay whose database the test edits
behind its back (docs/transparency.md, "The attacks and their tests"):

- a contact's key replaced, without a log entry, for a practice that has not
  verified that contact yet;
- a log entry removed from the middle of the tree, the tree rebuilt around the
  gap and grown back to the size the practice last verified.

Each must stop the next command with its exit status and a sentence naming it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import sqlalchemy as sa
from nacl.signing import SigningKey

from sealdrop.crypto.bundle import KeyBundle
from sealdrop.crypto.tlog import entries
from sealdrop.server import tlog
from tests.e2e.kit import Relay, User, make_case, refused


def _size(user: User) -> int:
    return int(json.loads((user.home / "log.json").read_text())["log"]["size"])


def test_a_contacts_key_swapped_without_a_log_entry_is_refused(
        tmp_path: Path, relay: Relay) -> None:
    practice = User(tmp_path, "cabinet-martin", relay)
    practice.init()
    lab = User(tmp_path, "labo-dupont", relay)
    lab.init()
    # The relay serves a bundle it made for the lab (a valid self-signature by a
    # key the relay holds), under the lab's real log index.
    real = KeyBundle.loads((lab.home / "bundle.json").read_text())
    fake = KeyBundle.create(handle=real.handle, signing_key=SigningKey.generate(),
                            x25519=real.x25519, pq=real.pq, created=real.created + 1)
    relay.sql("update accounts set bundle = ?, signing_key = ? where handle = ?",
              fake.dumps(), json.loads(fake.dumps())["signing_key"], lab.handle)
    r = practice.run("contacts", "add", lab.handle, check=False)
    refused(r, 25, f"the key of {lab.handle} is not what the relay's log holds",
             "serves something it did not log")
    # nothing pinned from a bundle that failed the check
    contacts = practice.home / "contacts.json"
    assert not contacts.exists() or lab.handle not in json.loads(
        contacts.read_text()).get("contacts", {})


def test_an_entry_removed_from_the_middle_is_refused(tmp_path: Path, relay: Relay) -> None:
    practice = User(tmp_path, "cabinet-martin", relay)
    practice.init()
    for handle in ("labo-dupont", "labo-bernard", "cabinet-roux"):
        User(tmp_path, handle, relay).init()
    practice.run("inbox")  # the practice verifies the grown log
    verified = _size(practice)
    kept = [bytes(row[0]) for row in relay.sql("select data from tlog_entries order by idx")]
    assert len(kept) == verified >= 4
    gone = kept.pop(2)  # labo-bernard's key entry, say
    assert entries.parse_entry(gone)
    # The relay rebuilds its tree without that entry, then grows it back to the
    # size the practice verified, so that no rollback shows.
    engine = sa.create_engine(f"sqlite:///{relay.data / 'relay.db'}",
                              connect_args={"timeout": 30})
    try:
        with engine.begin() as conn:
            for table in ("tlog_entries", "tlog_hashes"):
                conn.execute(sa.text(f"delete from {table}"))  # noqa: S608 - fixed names
            conn.execute(sa.text("update tlog_head set size = 0, root = :r"),
                         {"r": bytes.fromhex(
                             "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")})
            for entry in kept + [entries.TransferEntry(bytes(32)).to_bytes()]:
                tlog.append(conn, entry, now=int(time.time()))
    finally:
        engine.dispose()
    assert relay.sql("select size from tlog_head")[0][0] == verified
    r = practice.run("inbox", check=False)
    refused(r, 24, "REWROTE its transparency log", f"two different trees of {verified}")
    assert _size(practice) == verified  # the verified checkpoint is kept


def test_a_sent_transfer_the_relay_stops_listing_is_still_audited(
        tmp_path: Path, pair: tuple[User, User]) -> None:
    """The sender's record keeps the transfer's log entry from the moment the
    send checked it (no `status` needed), so a relay that drops the transfer
    from the sender's list cannot take it out of the DPO's audit."""
    practice, lab = pair
    tid = practice.json("send", str(make_case(tmp_path / "s")), "--to",
                        lab.handle)["transfer_id"]
    ((index,),) = practice.relay.sql("select log_index from transfers where id = ?", tid)
    practice.relay.sql("delete from transfers where id = ?", tid)
    report = practice.json("audit")
    (sent,) = [t for t in report["sent"] if t["id"] == tid]
    assert sent["own_record_only"] and sent["commitment_verified"], sent
    assert sent["log_index"] == index
    assert report["ok"], report["failures"]

