"""init, whoami, contacts, send to several recipients, inbox, receive, status: the real CLI."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.kit import Relay, User, make_case, tree


def test_init_whoami_and_contacts(tmp_path: Path, relay: Relay) -> None:
    a, b = User(tmp_path, "cabinet-a", relay), User(tmp_path, "labo-b", relay)
    me = a.init()
    assert me["handle"] == "cabinet-a" and me["relay"] == relay.url
    who = a.json("whoami")
    assert {"handle", "relay", "safety_number"} <= set(who)
    assert who["safety_number"] == me["safety_number"]
    b.init()
    # Fetched from the relay: pinned, unverified until the number is compared.
    added = a.json("contacts", "add", "labo-b")
    assert added["state"] == "unverified" and added["safety_number"] == b.safety_number
    bad = a.run("contacts", "verify", "labo-b", "11111 22222 33333 44444 55555 66666",
                check=False)
    assert bad.returncode == 1 and "does not match" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) <= 2  # one error line (+ one hint)
    a.run("contacts", "verify", "labo-b", b.safety_number)
    (entry,) = a.json("contacts", "list")
    assert entry["handle"] == "labo-b" and entry["state"] == "verified"
    a.run("contacts", "remove", "labo-b")
    assert a.json("contacts", "list") == []
    unknown = a.run("contacts", "add", "nobody-here", check=False)
    assert unknown.returncode == 1 and "no account 'nobody-here'" in unknown.stderr


def test_init_with_a_bad_invite_leaves_nothing_behind(tmp_path: Path, relay: Relay) -> None:
    u = User(tmp_path, "cabinet-c", relay)
    r = u.run("init", "--relay", relay.url, "--handle", "cabinet-c", "--invite", "NOPE-NOPE",
              "--work-factor", "10", check=False)
    assert r.returncode == 1 and r.stderr.startswith("sealdrop: error:")
    assert not (u.home / "identity.age").exists() and not (u.home / "config.json").exists()
    u.init()  # and it can simply be run again
    again = u.run("init", "--relay", relay.url, "--handle", "cabinet-c", "--invite", "X",
                  check=False)
    assert again.returncode == 1 and "already set up" in again.stderr


def test_commands_need_a_set_up_profile(tmp_path: Path, relay: Relay) -> None:
    u = User(tmp_path, "nobody", relay)
    for args in (["whoami"], ["inbox"], ["status"]):
        r = u.run(*args, check=False)
        assert r.returncode == 1 and "sealdrop init" in r.stderr, args


def test_send_to_several_recipients_each_receives_identical_files(
    tmp_path: Path, relay: Relay, practice: User, lab: User
) -> None:
    radio = User(tmp_path, "radiologue-b", relay)
    radio.init()
    for other in (lab, radio):
        practice.trust(other)
        other.trust(practice)
    case = make_case(tmp_path / "src")
    sent = practice.json("send", str(case), "--to", lab.handle, "--to", radio.handle,
                         "--note", "Couronne 36", "--expires", "2d")
    tid = sent["transfer_id"]
    assert sorted(sent["recipients"]) == [lab.handle, radio.handle]
    # one ciphertext on the relay, for both
    assert relay.sql("select count(*) from transfers") == [(1,)]
    assert sorted(r for (r,) in relay.sql("select recipient from transfer_recipients")) == sorted(
        [lab.handle, radio.handle])
    for who in (lab, radio):
        (item,) = who.json("inbox")["transfers"]
        assert item["id"] == tid and item["sender"] == practice.handle
        assert item["sender_state"] == "verified" and item["state"] == "new"
        dest = tmp_path / f"in-{who.handle}"
        dest.mkdir()
        got = who.json("receive", tid, "--into", str(dest), "--json-phi")
        assert got["failed"] == []
        (r,) = got["received"]
        assert r["sender"] == practice.handle and r["sender_verified"] is True
        assert r["note"] == "Couronne 36"
        assert r["dicom"]["studies"], "a DICOM summary travels in the manifest"
        assert tree(dest / case.name) == tree(case)
        assert who.json("inbox")["transfers"][0]["state"] == "received"
        # nothing left to receive, no spool left behind
        assert who.json("receive", "--all", "--into", str(dest))["received"] == []
        assert not any((who.home / "inbox-spool").iterdir())
    (st,) = practice.json("status", tid)["transfers"]
    assert st["state"] == "sent"
    assert {r["handle"]: (r["uploaded"], r["downloaded"], r["verified"])
            for r in st["recipients"]} == {lab.handle: (True, True, True),
                                           radio.handle: (True, True, True)}
    assert not any((practice.home / "outbox").iterdir())
    human = practice.run("status").stdout
    assert "opened and verified" in human


def test_send_refuses_unknown_or_unverified_recipients(
    tmp_path: Path, practice: User, lab: User
) -> None:
    case = make_case(tmp_path / "src")
    r = practice.run("send", str(case), "--to", lab.handle, check=False)
    assert r.returncode == 1 and "not among your contacts" in r.stderr
    practice.run("contacts", "add", lab.handle)  # pinned, not verified
    r = practice.run("send", str(case), "--to", lab.handle, check=False)
    assert r.returncode == 1 and "not verified" in r.stderr
    assert practice.relay.sql("select count(*) from transfers") == [(0,)]
    ok = practice.json("send", str(case), "--to", lab.handle, "--allow-unverified")
    assert ok["transfer_id"]


def test_receive_into_a_missing_folder_is_one_line(tmp_path: Path, pair: tuple[User, User]
                                                   ) -> None:
    practice, lab = pair
    tid = practice.json("send", str(make_case(tmp_path / "s")), "--to", lab.handle)[
        "transfer_id"]
    r = lab.run("receive", tid, "--into", str(tmp_path / "nope"), check=False)
    assert r.returncode == 1
    assert r.stderr.count("\n") <= 2 and "not an existing folder" in r.stderr
