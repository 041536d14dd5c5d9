"""What acks reveal (issue 10, class 8): the relay can tell an accepted
transfer from a refused one, and so whether the recipient trusts the sender.

The protocol keeps it so (docs/protocol.md, "What the relay learns"): the
sender's delivery status is the feature, and the relay would see the same
thing from the recipient's later traffic anyway. This test pins the documented
claim to what the real client and relay do, so that a change to the acks must
change the documents with it."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.kit import Relay, User, make_case


def _delivery(relay: Relay, tid: str, who: User) -> tuple[bool, bool]:
    ((downloaded, verified),) = relay.sql(
        "select downloaded_at, verified_at from transfer_recipients "
        "where transfer_id = ? and recipient = ?", tid, who.handle)
    return downloaded is not None, verified is not None


def test_the_relay_sees_whether_a_transfer_was_accepted(
    tmp_path: Path, relay: Relay, practice: User, lab: User
) -> None:
    stranger = User(tmp_path, "cabinet-inconnu", relay)
    stranger.init()
    practice.trust(lab)
    lab.trust(practice)
    stranger.trust(lab)
    lab.run("contacts", "add", stranger.handle)  # pinned, never compared: not trusted
    trusted = practice.json("send", str(make_case(tmp_path / "a")), "--to", lab.handle)[
        "transfer_id"]
    untrusted = stranger.json("send", str(make_case(tmp_path / "b")), "--to", lab.handle)[
        "transfer_id"]
    dest = tmp_path / "in"
    dest.mkdir()
    assert lab.run("receive", trusted, "--into", str(dest)).returncode == 0
    refused = lab.run("receive", untrusted, "--into", str(dest), check=False)
    assert refused.returncode == 1 and "not verified" in refused.stderr
    # Only the accepted one is acknowledged as verified: the relay sees which.
    assert _delivery(relay, trusted, lab) == (True, True)
    assert _delivery(relay, untrusted, lab)[1] is False
