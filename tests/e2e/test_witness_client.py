"""A practice that requires witness cosignatures, against a real relay configured
with a real `sealdrop witness serve` (docs/transparency.md, "The client's side:
requiring cosignatures").

* required from the relay's witness: init, send and status work, and the
  checkpoint the profile keeps carries the witness's cosignature;
* required from a witness the relay does not use: exit 29, naming how many
  valid cosignatures there were, from whom, and whose are missing;
* the witness stopped: the relay serves its next checkpoint without the
  cosignature, and the practice's next command refuses it (29) and keeps the
  last cosigned one (the relay offers no older cosigned checkpoint to fall
  back on).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from sealdrop.crypto.tlog.note import NoteSigner
from tests.e2e.kit import (
    RELAY,
    SEALDROP,
    Relay,
    User,
    free_port,
    make_case,
    stop_process,
    wait_for,
)


def _witness_init(tmp: Path, name: str) -> tuple[Path, str]:
    key_file = tmp / f"{name.replace('/', '_')}.key"
    out = subprocess.run([SEALDROP, "witness", "init", "--name", name, "--key-file",
                          str(key_file)], capture_output=True, text=True, check=True, timeout=60)
    return key_file, out.stdout.strip()


def _witness_serve(tmp: Path, key_file: Path, port: int, log_vkey: str,
                   env: dict[str, str]) -> subprocess.Popen[bytes]:
    wlog = tmp / "witness.log"
    start_at = wlog.stat().st_size if wlog.exists() else 0
    with wlog.open("ab") as out:
        proc = subprocess.Popen(
            [SEALDROP, "witness", "serve", "--key-file", str(key_file),
             "--state", str(tmp / "witness-state.json"), "--listen", f"127.0.0.1:{port}"],
            stdout=out, stderr=out, env={**env, "SEALDROP_WITNESS_LOG": log_vkey})

    def serving() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(wlog.read_text(errors="replace"))
        return b"serving http://" in wlog.read_bytes()[start_at:]

    wait_for(serving, 60, "the witness to serve")
    return proc


def _kept(user: User) -> dict[str, Any]:
    return dict(json.loads((user.home / "log.json").read_text())["log"])


def _require(user: User, vkey: str) -> None:
    user.run("config", "witness", "add", vkey)
    user.run("config", "require-cosignatures", "1")


def _refused_29(r: subprocess.CompletedProcess[str], *words: str) -> None:
    assert r.returncode == 29, (r.returncode, r.stdout, r.stderr)
    first, hint = r.stderr.splitlines()[:2]
    assert first.startswith("sealdrop: error: the relay's checkpoint carries 0 valid "
                            "witness cosignatures (from: none); this profile requires 1"), first
    for w in words:
        assert w in first, first
    assert hint.startswith("sealdrop: hint: ") and "relay's operator" in hint, hint
    assert "[[witness]]" in hint, hint


def test_a_practice_requiring_a_cosignature(
        tmp_path: Path, relay_template: tuple[Path, list[str]]) -> None:
    relay = Relay(tmp_path / "relay-data", tmp_path / "relay.log", template=relay_template)
    # The relay's log key is made at its init: the witness follows it from the start.
    log_vkey = NoteSigner.from_private_key_text(
        (relay.data / "log-key").read_text("ascii").strip()).vkey
    key_file, wvkey = _witness_init(tmp_path, "witness.test/w9")
    _, unused_vkey = _witness_init(tmp_path, "witness.test/not-the-relays")
    port = free_port()
    witness = _witness_serve(tmp_path, key_file, port, log_vkey, relay.env)
    try:
        relay.env["SEALDROP_RELAY_WITNESS"] = f"http://127.0.0.1:{port} {wvkey}"
        relay.start()

        # Required from the relay's own witness: init, send and status work.
        practice, lab = User(tmp_path, "cabinet-w", relay), User(tmp_path, "labo-w", relay)
        practice.init()
        _require(practice, wvkey)
        lab.init()
        practice.trust(lab)
        tid = practice.json("send", str(make_case(tmp_path / "s")), "--to",
                            lab.handle)["transfer_id"]
        (row,) = practice.json("status", tid)["transfers"]
        assert row["recipients"][0]["handle"] == lab.handle
        kept = _kept(practice)
        assert "\n\u2014 witness.test/w9 " in kept["checkpoint"]

        # Required (here by the lab) from a witness the relay does not use: refused.
        _require(lab, unused_vkey)
        _refused_29(lab.run("status", check=False), "none from: witness.test/not-the-relays")

        # The witness stops; the log grows: the relay serves the next checkpoint
        # without its cosignature, and the practice refuses it, keeping the last one.
        stop_process(witness)
        User(tmp_path, "labo-late", relay).init()
        _refused_29(practice.run("status", check=False), "none from: witness.test/w9")
        assert _kept(practice) == kept
    finally:
        stop_process(witness)
        relay.close()


def test_log_publish_carries_the_witness_cosignature_and_outlives_a_silent_witness(
        tmp_path: Path, relay_template: tuple[Path, list[str]]) -> None:
    relay = Relay(tmp_path / "relay-data", tmp_path / "relay.log", template=relay_template)
    log_vkey = NoteSigner.from_private_key_text(
        (relay.data / "log-key").read_text("ascii").strip()).vkey
    key_file, wvkey = _witness_init(tmp_path, "witness.test/wp")
    port = free_port()
    witness = _witness_serve(tmp_path, key_file, port, log_vkey, relay.env)
    relay.env["SEALDROP_RELAY_WITNESS"] = f"http://127.0.0.1:{port} {wvkey}"
    folder = tmp_path / "published"

    def publish() -> subprocess.CompletedProcess[str]:
        return subprocess.run([RELAY, "log", "publish", "--data", str(relay.data),
                               "--to", str(folder), "--json"], env=relay.env,
                              capture_output=True, text=True, timeout=120)

    try:
        relay.start()
        User(tmp_path, "cabinet-p", relay).init()  # a key entry: the log is not empty
        r = publish()
        assert r.returncode == 0, r.stderr
        assert "\n\u2014 witness.test/wp " in (folder / "checkpoint").read_text()
    finally:
        stop_process(witness)
    # The witness is gone: the log is still published (newer), without its line.
    User(tmp_path, "labo-p", relay).init()
    try:
        r = publish()
    finally:
        relay.close()
    assert r.returncode == 0, r.stderr
    text = (folder / "checkpoint").read_text()
    assert "witness.test/wp" not in text and "Traceback" not in r.stderr
    assert json.loads(r.stdout)["size"] >= 2
