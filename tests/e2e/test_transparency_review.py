"""Findings of the security review of the client's log checks (docs/transparency.md,
"When"), each against a real relay whose database the test edits behind its back:

- a contact's swapped key logged in one batch with its pinned key again;
- a key logged under our own handle before we registered, or before a profile
  from before the log pinned it;
- a larger checkpoint another process on the profile stored meanwhile, which
  must extend this process's;
- a relay that drops a transfer's log entry from its answer, for the sender's
  ``status`` and for the recipient's ``receive``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from nacl.signing import SigningKey

from sealdrop.client.errors import LogForkError
from sealdrop.client.profile.contacts import ContactStore
from sealdrop.client.profile.logstate import LogStateStore
from sealdrop.client.relay_api import RelayClient
from sealdrop.client.tlog.logclient import LogClient
from sealdrop.crypto.bundle import KeyBundle
from sealdrop.crypto.tlog import entries
from sealdrop.crypto.tlog.checkpoint import Checkpoint
from sealdrop.crypto.tlog.note import NoteSigner, sign_note
from sealdrop.server import tlog
from tests.e2e.kit import Relay, User, make_case, refused


def _append(relay: Relay, *logged: bytes) -> None:
    """The relay's own append (server.tlog), in its database while it runs."""
    engine = sa.create_engine(f"sqlite:///{relay.data / 'relay.db'}",
                              connect_args={"timeout": 30})
    try:
        with engine.begin() as conn:
            for entry in logged:
                tlog.append(conn, entry, now=int(time.time()))
    finally:
        engine.dispose()


def _someone_elses_key(handle: str) -> bytes:
    """A key entry for ``handle`` whose bundle nobody of that handle made."""
    return entries.KeyEntry(handle, os.urandom(32)).to_bytes()


def test_a_swapped_key_logged_with_the_pinned_one_in_one_batch_is_an_alert(
        tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    real = KeyBundle.loads((lab.home / "bundle.json").read_text())
    swapped = KeyBundle.create(handle=real.handle, signing_key=SigningKey.generate(),
                               x25519=real.x25519, pq=real.pq, created=real.created + 1)
    # Between two of the practice's commands: [a swapped key, the pinned key again].
    _append(practice.relay, entries.KeyEntry.for_bundle(swapped).to_bytes(),
            entries.KeyEntry.for_bundle(real).to_bytes())
    r = practice.run("inbox", check=False)
    refused(r, 27, f"NEW KEY for your contact {lab.handle}", after_notice=True)
    # The relay now answers another account's bundle for the lab: the new key
    # cannot be checked, and that is said as a log refusal, not a relay error.
    (ours,) = practice.relay.sql("select bundle from accounts where handle = ?",
                                 practice.handle)[0]
    practice.relay.sql("update accounts set bundle = ? where handle = ?", ours, lab.handle)
    refused(practice.run("inbox", check=False), 25,
             f"new key for your contact {lab.handle}", "the new key cannot be checked",
             after_notice=True)


class _OtherProcessMeanwhile(RelayClient):
    """A real client of the real relay; between this process's checkpoint GET and
    its store, "another process" on the profile stores ``meanwhile()``: the one
    interleaving that cannot be produced on demand with two real processes."""

    meanwhile: Callable[[], None] = staticmethod(lambda: None)

    def log_checkpoint(self) -> str:
        note = super().log_checkpoint()
        self.meanwhile()
        return note


def test_a_larger_checkpoint_stored_meanwhile_must_extend_ours(
        tmp_path: Path, relay: Relay) -> None:
    practice = User(tmp_path, "cabinet-martin", relay)
    practice.init()
    store = LogStateStore(practice.home)
    client = _OtherProcessMeanwhile(relay.url, handle=practice.handle,
                                    signing_key=SigningKey.generate())
    log = LogClient(client, practice.home, handle=practice.handle,
                    contacts=ContactStore(practice.home))
    size = store.load().size  # type: ignore[union-attr]

    def grown() -> None:  # the other process verified the relay's grown log
        _append(relay, entries.TransferEntry(bytes(32)).to_bytes())
        store.advance(RelayClient.log_checkpoint(client), size=size + 1, scanned=size + 1)
    client.meanwhile = grown
    log.advance()
    assert store.load().size == size + 1  # type: ignore[union-attr]

    # The other process was shown a fork, larger than what this one is shown.
    signer = NoteSigner.from_private_key_text((relay.data / "log-key").read_text())
    fork = sign_note(Checkpoint(signer.name, size + 3, os.urandom(32)).text(), [signer])
    client.meanwhile = lambda: store.advance(fork, size=size + 3, scanned=size + 3)
    with pytest.raises(LogForkError, match=f"extends the {size + 1} this profile verified"):
        LogClient(client, practice.home, handle=practice.handle,
                  contacts=ContactStore(practice.home)).advance()


def test_a_key_under_our_handle_before_registration_or_the_pin_is_refused(
        tmp_path: Path, relay: Relay) -> None:
    # The relay logs a key for the practice's handle, then registers the practice
    # (its key at the next index, the index it answers).
    _append(relay, _someone_elses_key("cabinet-martin"))
    practice = User(tmp_path, "cabinet-martin", relay)
    r = practice.run("init", "--relay", relay.url, "--handle", practice.handle,
                     "--invite", relay.invite(), "--work-factor", "10", check=False)
    refused(r, 26, "the relay logged a key for cabinet-martin that this profile never made",
             "log entry 0", after_notice=True)

    # A profile from before the log pins it at its next command: the log before
    # the pin is read for our handle too.
    lab = User(tmp_path, "labo-dupont", relay)
    lab.init()
    _append(relay, _someone_elses_key(lab.handle))
    (lab.home / "log.json").unlink()
    refused(lab.run("inbox", check=False), 26,
             f"the relay logged a key for {lab.handle} that this profile never made",
             after_notice=True)


def test_a_transfer_answered_without_its_log_entry_is_refused(
        tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    # The lab pinned its log two hours ago (its own file: the relay cannot change
    # it); the practice pinned it at init, before it sent.
    kept = json.loads((lab.home / "log.json").read_text())
    kept["log"]["pinned_at"] -= 7200
    (lab.home / "log.json").write_text(json.dumps(kept))
    tid = practice.json("send", str(make_case(tmp_path / "s")), "--to",
                        lab.handle)["transfer_id"]
    # The relay drops "log" from the transfer's JSON, to skip the checks.
    practice.relay.sql("update transfers set log_salt = NULL where id = ?", tid)
    refused(practice.run("status", tid, check=False), 25,
             f"the relay did not log transfer {tid}", after_notice=True)
    dest = tmp_path / "in"
    dest.mkdir()
    refused(lab.run("receive", tid, "--into", str(dest), check=False), 25,
             f"the relay did not log transfer {tid}", after_notice=True)
    assert not list(dest.iterdir())  # nothing placed
