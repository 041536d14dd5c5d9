"""A SQLite relay runs as one process (server/serving.py): its upload locks live in
that process's memory, so a second `serve` on the same database is refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.e2e.kit import RELAY, Relay, free_port


def test_a_second_serve_on_the_same_sqlite_database_is_refused(relay: Relay) -> None:
    second = subprocess.run(
        [RELAY, "serve", "--data", str(relay.data), "--host", "127.0.0.1", "--port",
         str(free_port())], env=relay.env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert "another sealdrop-relay serve is already running" in second.stderr
    assert "PostgreSQL" in second.stderr and "Traceback" not in second.stderr
    # Commands other than serve still work beside it.
    out = subprocess.run([RELAY, "invite", "create", "--data", str(relay.data)],
                         env=relay.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_the_lock_goes_with_a_killed_server(relay: Relay, tmp_path: Path) -> None:
    relay.kill()  # SIGKILL: nothing is cleaned up, the kernel drops the lock
    relay.start()
    assert relay.proc is not None and relay.proc.poll() is None
