"""The transparency log's key file (server.logkey): made once with mode 0600 in
the Go note private-key form, the same key read back by every later start,
and refused with a sentence when it is readable by others, is not a key, or
names another origin than the configured one. Its checkpoints open with the
vkey it serves."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from sealdrop.crypto.tlog.checkpoint import open_checkpoint
from sealdrop.crypto.tlog.note import NoteVerifier
from sealdrop.server.config import load_config
from sealdrop.server.errors import ConfigError
from sealdrop.server.logkey import load_or_create, open_log


def test_made_once_then_read_back(tmp_path: Path) -> None:
    path = tmp_path / "data" / "log-key"
    log, made = open_log("", path, "relay-1", None)
    assert made and log.origin == "sealdrop.invalid/relay-1"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("PRIVATE+KEY+sealdrop.invalid/relay-1+")
    again, made_again = open_log("", path, "relay-1", log.vkey)
    assert not made_again and again.vkey == log.vkey
    # no temporary file left beside it
    assert sorted(p.name for p in path.parent.iterdir()) == ["log-key"]
    root = hashlib.sha256(b"x").digest()
    note = log.checkpoint(5, root)
    assert log.checkpoint(5, root) == note  # cached, and deterministic anyway
    cp = open_checkpoint(note, log.origin, [NoteVerifier.from_vkey(again.vkey)])
    assert (cp.size, cp.root) == (5, root)


def test_the_database_holds_the_relay_to_its_key(tmp_path: Path) -> None:
    """A key file lost (a restore without it) or another host's own key is
    refused, never replaced: clients pinned the key the database recorded."""
    path = tmp_path / "a" / "log-key"
    first, _ = open_log("", path, "relay-1", None)
    with pytest.raises(ConfigError, match="missing.*restore the key file"):
        open_log("", tmp_path / "b" / "log-key", "relay-1", first.vkey)
    assert not (tmp_path / "b" / "log-key").exists()  # refused, and nothing made
    other, _ = open_log("", tmp_path / "c" / "log-key", "relay-1", None)
    with pytest.raises(ConfigError, match="not the key of the transparency log"):
        open_log("", tmp_path / "c" / "log-key", "relay-1", first.vkey)


def test_refusals(tmp_path: Path) -> None:
    path = tmp_path / "log-key"
    load_or_create(path, "relay.example.net/sealdrop")
    with pytest.raises(ConfigError, match="log_origin"):
        load_or_create(path, "sealdrop.invalid/other")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 0600"):
        load_or_create(path, "relay.example.net/sealdrop")
    os.chmod(path, 0o600)
    path.write_text("PRIVATE+KEY+relay.example.net/sealdrop+00000000+AAAA\n")
    with pytest.raises(ConfigError, match="not a transparency log key"):
        load_or_create(path, "relay.example.net/sealdrop")


@pytest.mark.parametrize("origin", ["https://relay.example.net/sealdrop", "relay.example.net/",
                                    "relay example", "relay+x.example.net"])
def test_log_origin_must_be_a_schemeless_prefix(tmp_path: Path, origin: str) -> None:
    assert load_config(tmp_path, env={}, overrides={
        "log_origin": "relay.example.net:8443/sealdrop"}).log_origin.endswith("/sealdrop")
    with pytest.raises(ConfigError, match="log_origin must be the relay's address"):
        load_config(tmp_path, env={}, overrides={"log_origin": origin})
