"""Shell completion through click's protocol, in a subprocess, as bash, zsh and fish call it.

The installed ``sealdrop`` script is run with ``_SEALDROP_COMPLETE`` and
``COMP_WORDS``/``COMP_CWORD`` exactly as the sourced completion script does.
A profile pinned to a "relay" that is a listening socket proves that no Tab
press calls the relay (no connection ever arrives), and a closed stdin with
no passphrase anywhere proves none asks for one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealdrop.client.profile.contacts import ContactStore
from sealdrop.crypto import safety
from tests.client.receivekit import ALICE, BOB, NOW

SEALDROP = str(Path(sys.executable).parent / "sealdrop")
SENT_ID = "0123456789abcdef0123456789abcdef"
SPOOL_ID = "fedcba9876543210fedcba9876543210"
REFUSED_ID = "00112233445566778899aabbccddeeff"


@pytest.fixture()
def silent_relay() -> Iterator[socket.socket]:
    """A loopback port that listens and never answers: the profile's pinned relay."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.setblocking(False)
    yield s
    s.close()


def _no_connection(s: socket.socket) -> bool:
    try:
        conn, _ = s.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


@pytest.fixture()
def home(tmp_path: Path, silent_relay: socket.socket) -> Path:
    home = tmp_path / "profile"
    home.mkdir(mode=0o700)
    port = silent_relay.getsockname()[1]
    (home / "config.json").write_text(json.dumps(
        {"v": 1, "relay": f"http://127.0.0.1:{port}", "handle": "me.lab"}))
    store = ContactStore(home)
    store.add(ALICE.bundle, now=NOW, fingerprint=safety.safety_number(ALICE.bundle.signing_key))
    store.add(BOB.bundle, now=NOW)
    for folder, name in (("sent", f"{SENT_ID}.age"), ("inbox-spool", f"{SPOOL_ID}.age.partial"),
                         ("sent", "not-an-id.age"), ("sent", "notes.txt")):
        (home / folder).mkdir(exist_ok=True)
        (home / folder / name).write_bytes(b"")
    (home / "refused.json").write_text(json.dumps({"v": 1, "refused": {REFUSED_ID: "x"}}))
    return home


def complete(words: str, *, home: Path | None, shell: str = "bash",
             extra_env: dict[str, str] | None = None
             ) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    """What the shell would be offered for the last word of ``words``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALDROP")}
    env |= {"_SEALDROP_COMPLETE": f"{shell}_complete", "COMP_WORDS": words,
            "HOME": str(Path(home).parent if home else "/nonexistent")}
    if shell == "bash" or shell == "zsh":
        env["COMP_CWORD"] = str(len(words.split()) - (0 if words.endswith(" ") else 1))
    else:  # fish passes the word being completed
        env["COMP_CWORD"] = "" if words.endswith(" ") else words.split()[-1]
    if home is not None:
        env["SEALDROP_HOME"] = str(home)
    env |= extra_env or {}
    r = subprocess.run([SEALDROP], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # never a prompt, a warning or a traceback in the user's shell
    lines = [line for line in r.stdout.splitlines() if line]  # nothing offered: one "\n"
    if shell == "zsh":  # type, value, help: three lines each
        return [lines[i + 1] for i in range(0, len(lines), 3)], r
    if shell == "fish":  # type,value\thelp
        return [line.split(",", 1)[1].split("\t")[0] for line in lines], r
    return [line.split(",", 1)[1] for line in lines], r


def test_handles_complete_after_to(home: Path, silent_relay: socket.socket) -> None:
    assert complete("sealdrop send case/ --to ", home=home)[0] == ["alice.clinic", "bob.lab"]
    assert complete("sealdrop send case/ --to al", home=home)[0] == ["alice.clinic"]
    assert complete("sealdrop send case/ --to alice.clinic --to b", home=home)[0] == ["bob.lab"]
    assert complete("sealdrop dicom-listen --to ", home=home)[0] == ["alice.clinic", "bob.lab"]
    assert complete("sealdrop contacts verify ", home=home)[0] == ["alice.clinic", "bob.lab"]
    assert complete("sealdrop contacts remove b", home=home)[0] == ["bob.lab"]
    assert complete("sealdrop send case/ --to zz", home=home)[0] == []
    assert _no_connection(silent_relay)


def test_zsh_and_fish_get_the_state_as_help(home: Path) -> None:
    values, r = complete("sealdrop send x --to ", home=home, shell="zsh")
    assert values == ["alice.clinic", "bob.lab"]
    assert r.stdout.splitlines()[2] == "verified" and r.stdout.splitlines()[5] == "unverified"
    values, r = complete("sealdrop send x --to a", home=home, shell="fish")
    assert values == ["alice.clinic"] and r.stdout.strip().endswith("\tverified")


def test_home_typed_before_wins_over_the_environment(home: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    ContactStore(other).add(ALICE.bundle, now=NOW)
    got, _ = complete(f"sealdrop send x --home {home} --to ", home=other)
    assert got == ["alice.clinic", "bob.lab"]
    got, _ = complete("sealdrop send x --to ", home=other)
    assert got == ["alice.clinic"]


def test_transfer_ids_from_local_records(home: Path, silent_relay: socket.socket) -> None:
    assert complete("sealdrop status ", home=home)[0] == [SENT_ID]
    assert complete("sealdrop status 01", home=home)[0] == [SENT_ID]
    assert complete("sealdrop status ff", home=home)[0] == []
    assert complete("sealdrop receive ", home=home)[0] == [REFUSED_ID, SPOOL_ID]
    assert complete("sealdrop dismiss fe", home=home)[0] == [SPOOL_ID]
    assert _no_connection(silent_relay)


def test_a_missing_or_damaged_profile_completes_nothing_quietly(home: Path,
                                                                tmp_path: Path) -> None:
    assert complete("sealdrop send x --to ", home=tmp_path / "nowhere")[0] == []
    (home / "contacts.json").write_text("{not json")
    assert complete("sealdrop send x --to ", home=home)[0] == []
    (home / "contacts.json").write_text(json.dumps({"v": 1, "contacts": []}))
    assert complete("sealdrop send x --to ", home=home)[0] == []


def test_planted_entries_never_reach_the_command_line(home: Path) -> None:
    """Only strict handles and ids are offered: a planted name cannot inject shell text."""
    store = json.loads((home / "contacts.json").read_text())
    store["contacts"]["evil; rm -rf ~"] = {"state": "verified"}
    store["contacts"]["x\x1b[2J"] = {"state": "$(reboot)"}
    (home / "contacts.json").write_text(json.dumps(store))
    (home / "sent" / "$(reboot).age").write_bytes(b"")
    values, r = complete("sealdrop send x --to ", home=home, shell="zsh")
    assert values == ["alice.clinic", "bob.lab"] and "reboot" not in r.stdout
    assert complete("sealdrop status ", home=home)[0] == [SENT_ID]


def test_commands_and_options_complete_too(home: Path) -> None:
    got, _ = complete("sealdrop rec", home=home)
    assert got == ["receive"]
    got, _ = complete("sealdrop watch --on-rec", home=home)
    assert got == ["--on-receive", "--on-receive-timeout", "--on-receive-phi"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_source_scripts_the_docs_give(shell: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALDROP")}
    env["_SEALDROP_COMPLETE"] = f"{shell}_source"
    r = subprocess.run([SEALDROP], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "_SEALDROP_COMPLETE" in r.stdout
    assert f"{shell}_complete" in r.stdout
