"""``sealdrop watch`` keeps receiving across a relay restart, and stops on SIGTERM."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.e2e.kit import User, make_case, tree, wait_for


def test_watch_receives_survives_a_relay_restart_and_stops_cleanly(
    tmp_path: Path, pair: tuple[User, User]
) -> None:
    practice, lab = pair
    relay = practice.relay
    dest = tmp_path / "incoming"
    dest.mkdir()
    watcher = lab.popen("watch", "--into", str(dest), "--interval", "0.3",
                        "--max-backoff", "1", "--json")
    try:
        first = make_case(tmp_path / "one")
        practice.run("send", str(first), "--to", lab.handle)
        wait_for(lambda: (dest / "case").is_dir() and tree(dest / "case") == tree(first), 30,
                 "the first transfer to be placed")
        relay.kill()
        time.sleep(1.5)  # the watcher finds the relay gone and backs off
        relay.start()
        second = make_case(tmp_path / "two")
        (second / "extra.txt").write_text("second case")
        (second).rename(tmp_path / "two" / "case-two")
        second = tmp_path / "two" / "case-two"
        practice.run("send", str(second), "--to", lab.handle)
        wait_for(lambda: (dest / "case-two" / "extra.txt").exists(), 30,
                 "the second transfer after the restart")
    finally:
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [e["event"] for e in events] == ["received", "received"]
    assert "relay unreachable" in err
    assert tree(dest / "case-two") == tree(second)
    # both are acknowledged: the practice sees them verified
    rows = practice.json("status")["transfers"]
    assert all(r["recipients"][0]["verified"] for r in rows) and len(rows) == 2
