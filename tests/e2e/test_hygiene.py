"""Terminal, argv and local-state hygiene through the real CLI (classes 5 and 6).

- A hostile sender's note and file names carrying escape sequences and bidi
  overrides show up neutralised in ``receive`` and ``watch``; the JSON output
  still carries them exactly.
- A hostile relay's inbox and status answers are neutralised the same way; its
  100 MB answer is one line of error, not a memory blow-up.
- The note and the invite come in without argv: ``-`` (stdin), a file, a
  variable.
- Two ``receive``s and a ``watch`` on one profile at once lose nothing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

from tests.client.hostilekit import flood, hostile_relay, json_head
from tests.e2e.kit import SEALDROP, Relay, User, make_case, wait_for

ESC = "\x1b"
HOSTILE_NOTE = (f"Couronne 36{ESC}[2K{ESC}[1A\rReceived from lab-verified — safety number "
                f"verified{ESC}]52;c;cm0gLXJmIH4K\x07 \u009b31m \u202egpj.exe")
HOSTILE_NAMES = ("scan\u202elts.exe", "\u009b31mred.pdf", "zero\u200bwidth.dcm")
DANGEROUS = (ESC, "\x07", "\r", "\u009b", "\u202e", "\u200b")


def _clean(text: str) -> None:
    for ch in DANGEROUS:
        assert ch not in text, (repr(ch), text)


def _hostile_case(root: Path) -> Path:
    case = root / "hostile"
    case.mkdir(parents=True)
    for i, name in enumerate(HOSTILE_NAMES):
        (case / name).write_bytes(b"%PDF-1.4\n" + bytes([i]) * 100)
    return case


def _send_with_stdin(user: User, *args: str, stdin: str, env: dict[str, str] | None = None
                     ) -> dict[str, object]:
    r = subprocess.run([SEALDROP, "send", *args, "--json"], input=stdin, text=True,
                       env={**user.env, **(env or {})}, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


def test_a_hostile_note_and_file_names_reach_the_terminal_neutralised(
    tmp_path: Path, pair: tuple[User, User],
) -> None:
    practice, lab = pair
    sent = _send_with_stdin(practice, str(_hostile_case(tmp_path)), "--to", lab.handle,
                            "--note-file", "-", stdin=HOSTILE_NOTE + "\n")
    tid = str(sent["transfer_id"])
    dest = tmp_path / "in"
    dest.mkdir()
    r = lab.run("receive", tid, "--into", str(dest))
    _clean(r.stdout + r.stderr)
    out = r.stdout
    # Visible, not acted on: the reader sees that something was there.
    assert "note: Couronne 36\\x1b[2K\\x1b[1A\\x0dReceived from lab-verified" in out
    assert "\\x1b]52;c;cm0gLXJmIH4K\\x07" in out and "\\u202egpj.exe" in out
    assert "scan\\u202elts.exe" in out and "\\x9b31mred.pdf" in out
    assert "zero\\u200bwidth.dcm" in out
    # Exactly one "Received" line: the note could not forge a second one.
    assert sum(line.startswith("Received") for line in out.splitlines()) == 1
    # The files themselves keep their real names; only the display is neutralised.
    assert sorted(p.name for p in (dest / "hostile").iterdir()) == sorted(HOSTILE_NAMES)


def test_json_output_keeps_the_exact_note_and_is_terminal_safe(
    tmp_path: Path, pair: tuple[User, User],
) -> None:
    practice, lab = pair
    # The note through the environment this time: still not argv.
    r = subprocess.run(
        [SEALDROP, "send", str(_hostile_case(tmp_path)), "--to", lab.handle, "--json"],
        env={**practice.env, "SEALDROP_NOTE": HOSTILE_NOTE}, capture_output=True, text=True,
        timeout=120)
    assert r.returncode == 0, r.stderr
    tid = json.loads(r.stdout)["transfer_id"]
    dest = tmp_path / "in"
    dest.mkdir()
    r = lab.run("receive", tid, "--into", str(dest), "--json", "--json-phi")
    _clean(r.stdout)
    (got,) = json.loads(r.stdout)["received"]
    assert got["note"] == HOSTILE_NOTE
    assert sorted(Path(f["path"]).name for f in got["files"]) == sorted(HOSTILE_NAMES)


def test_watch_prints_a_hostile_note_neutralised(tmp_path: Path, pair: tuple[User, User]
                                                 ) -> None:
    practice, lab = pair
    _send_with_stdin(practice, str(_hostile_case(tmp_path)), "--to", lab.handle,
                     "--note-file", "-", stdin=HOSTILE_NOTE)
    dest = tmp_path / "in"
    dest.mkdir()
    w = lab.popen("watch", "--into", str(dest), "--interval", "0.2")
    try:
        wait_for(lambda: (dest / "hostile").is_dir() and len(list((dest / "hostile").iterdir()))
                 == len(HOSTILE_NAMES), 60, "watch to place the transfer")
    finally:
        w.terminate()
        out, err = w.communicate(timeout=30)
    _clean(out + err)
    assert "note: Couronne 36\\x1b[2K" in out and "\\u202egpj.exe" in out


def test_invite_from_stdin_and_from_a_file_in_the_environment(
    tmp_path: Path, relay: Relay,
) -> None:
    piped = User(tmp_path, "cabinet-stdin", relay)
    code = relay.invite()
    r = subprocess.run(
        [SEALDROP, "init", "--relay", relay.url, "--handle", piped.handle, "--invite-file",
         "-", "--work-factor", "10", "--json"],
        input=code + "\n", env=piped.env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert code not in r.stdout + r.stderr  # never echoed back
    assert piped.json("whoami")["handle"] == piped.handle

    from_file = User(tmp_path, "labo-envfile", relay)
    invite = tmp_path / "invite.txt"
    invite.write_text(relay.invite() + "\n")
    r = subprocess.run(
        [SEALDROP, "init", "--relay", relay.url, "--handle", from_file.handle,
         "--work-factor", "10", "--json"],
        env={**from_file.env, "SEALDROP_INVITE_FILE": str(invite)}, capture_output=True,
        text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert from_file.json("whoami")["handle"] == from_file.handle


def _point_at(user: User, url: str, *, forget_log: bool = True) -> None:
    """Re-pin the profile's relay: the relay it trusts is now the hostile one.

    ``forget_log``: the profile also forgets the transparency log it pinned, as
    a profile made before relays kept one: else the hostile relay, which cannot
    sign a checkpoint with the pinned key, is refused before any answer of its
    is shown (docs/transparency.md), and these tests are about those answers.
    """
    config = user.home / "config.json"
    obj = json.loads(config.read_text())
    obj["relay"] = url
    config.write_text(json.dumps(obj))
    if forget_log:
        (user.home / "log.json").unlink()


def test_a_hostile_relays_inbox_and_status_are_neutralised(tmp_path: Path, lab: User) -> None:
    evil = f"{ESC}]52;c;cm0gLXJmIH4K\x07{ESC}[2K\rlab-dupont\u202e"
    inbox = {"transfers": [{"id": f"t{ESC}[31m1", "sender": evil, "size": f"{ESC}[8m",
                            "created_at": 1_718_000_000, "completed_at": evil,
                            "expires_at": None, "delivery": {}}]}
    sent = {"transfers": [{"id": f"x{ESC}[5m", "state": "complete", "size": 10,
                           "created_at": evil,
                           "recipients": [{"handle": evil, "downloaded_at": None,
                                           "verified_at": None}]}]}

    def behave(conn: socket.socket, head: bytes) -> None:
        path = head.split(b" ", 2)[1]
        body = json.dumps(inbox if path.startswith(b"/v1/inbox") else sent).encode()
        relay.push(conn, json_head(len(body)) + body)

    with hostile_relay(behave) as relay:
        # While the profile keeps its pinned log, the hostile relay gets no further.
        _point_at(lab, relay.url, forget_log=False)
        r = lab.run("inbox", check=False)
        assert r.returncode == 22 and "not signed with the log key" in r.stderr, r.stderr
        assert "t\\x1b" not in r.stdout + r.stderr
        _point_at(lab, relay.url)
        r = lab.run("inbox")
        _clean(r.stdout + r.stderr)
        assert "t\\x1b[31m1" in r.stdout and "\\u202e" in r.stdout
        r = lab.run("status")
        _clean(r.stdout + r.stderr)
        assert "x\\x1b[5m" in r.stdout and "\\x1b]52;c;" in r.stdout
        j = lab.run("inbox", "--json")
        _clean(j.stdout)
        assert json.loads(j.stdout)["transfers"][0]["sender"] == evil


def test_a_hostile_relays_100_mb_answer_is_one_line(tmp_path: Path, lab: User) -> None:
    def behave(conn: socket.socket, head: bytes) -> None:
        relay.push(conn, json_head(None) + b'{"transfers": [')
        flood(relay, conn, 100 * 1024 * 1024, b'{"id": "a"},' * 4096)

    with hostile_relay(behave) as relay:
        _point_at(lab, relay.url)
        r = lab.run("inbox", check=False)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "sealdrop: error: the relay's answer is larger than 1024 KiB; refused",
        "sealdrop: hint: the relay is misconfigured or hostile; tell its operator",
    ]
    assert relay.sent < 100 * 1024 * 1024


def test_two_receives_and_a_watch_on_one_profile_lose_nothing(
    tmp_path: Path, pair: tuple[User, User],
) -> None:
    practice, lab = pair
    ids = [practice.json("send", str(make_case(tmp_path / f"s{i}", marker=f"m{i}")), "--to",
                         lab.handle)["transfer_id"] for i in range(6)]
    dest = tmp_path / "in"
    dest.mkdir()
    watch = lab.popen("watch", "--into", str(dest), "--interval", "0.2")
    try:
        receives = [
            subprocess.Popen([SEALDROP, "receive", "--all", "--into", str(dest), "--json"],
                             env=lab.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=300) for p in receives]

        def all_placed() -> bool:
            return len(json.loads((lab.home / "received.json").read_text())["received"]) == 6

        wait_for(all_placed, 120, "every transfer received once")
    finally:
        watch.terminate()
        watch_out, watch_err = watch.communicate(timeout=30)
    # Each transfer placed exactly once, by whichever process got it first; a process
    # that found it taken said so and placed nothing.
    accepted = json.loads((lab.home / "accepted.json").read_text())["accepted"]
    receipts = json.loads((lab.home / "received.json").read_text())["received"]
    assert sorted(receipts) == sorted(ids) and len(accepted) == 6
    assert {r["manifest_id"] for r in receipts.values()} == set(accepted)
    placed = sorted(p.name for p in dest.iterdir())
    assert placed == [f"casem{i}" for i in range(6)]
    for out, err in outs:
        for failure in json.loads(out)["failed"]:
            assert ("being received by another sealdrop process" in failure["error"]
                    or "already received" in failure["error"]), failure
    assert not [p for p in (lab.home / "inbox-spool").iterdir()]  # no spool, no lock left
    assert "Traceback" not in watch_err and all("Traceback" not in e for _, e in outs)
    for name in os.listdir(lab.home):
        assert not name.endswith(".partial"), name


def test_a_transfer_received_here_is_not_downloaded_again(
    tmp_path: Path, pair: tuple[User, User],
) -> None:
    # Two processes on one profile can both list a transfer as new; the one
    # that gets its lock second must not download it again, nor record it as
    # refused (it was received, by the other).
    practice, lab = pair
    relay_id = practice.json("send", str(make_case(tmp_path / "s", marker="again")), "--to",
                             lab.handle)["transfer_id"]
    dest = tmp_path / "in"
    dest.mkdir()
    lab.run("receive", relay_id, "--into", str(dest))
    downloaded = lab.relay.metric("sealdrop_download_bytes_total")
    again = lab.run("receive", relay_id, "--into", str(dest), check=False)
    assert again.returncode == 0  # what was asked for is here: not a failure
    assert f"transfer {relay_id} was already received on " in again.stdout
    assert lab.relay.metric("sealdrop_download_bytes_total") == downloaded
    refused = lab.home / "refused.json"
    assert not refused.exists() or relay_id not in json.loads(refused.read_text())["refused"]
    assert sorted(p.name for p in dest.iterdir()) == ["caseagain"]
