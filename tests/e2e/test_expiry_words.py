"""``--expires`` out of bounds, said in days and hours: the client's own bounds before
anything is sent, and the relay's maximum (the operator's setting) when it refuses."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.kit import User, make_case


def test_expires_outside_the_clients_bounds_is_refused_before_any_upload(
    tmp_path: Path, pair: tuple[User, User]
) -> None:
    practice, lab = pair
    case = make_case(tmp_path)
    r = practice.run("send", str(case), "--to", lab.handle, "--expires", "30s", check=False)
    assert r.returncode == 1
    assert r.stderr.splitlines()[0] == ("sealdrop: error: --expires must be between 1 minute "
                                        "and 365 days (you gave 30 seconds)")
    assert "sealdrop: hint: write e.g. 30s, 5m, 12h or 7d" in r.stderr
    assert practice.json("status")["transfers"] == []


def test_the_relays_maximum_expiry_in_days(tmp_path: Path, pair: tuple[User, User]) -> None:
    practice, lab = pair
    relay = practice.relay
    # The operator keeps transfers 36 hours at most (default: 30 days).
    relay.stop()
    relay.env |= {"SEALDROP_RELAY_MAX_EXPIRY_SECONDS": "129600",
                  "SEALDROP_RELAY_DEFAULT_EXPIRY_SECONDS": "86400"}
    relay.start()
    case = make_case(tmp_path)
    r = practice.run("send", str(case), "--to", lab.handle, "--expires", "2d", check=False)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert "sealdrop: error: the relay keeps transfers at most 1 day 12 hours; --expires asked "\
        "for 2 days" in lines
    assert any(line.startswith("sealdrop: hint: give --expires 36h or less") for line in lines)
    assert "expires_in" not in r.stderr and "2592000" not in r.stderr
    assert practice.json("status")["transfers"] == []
    # What the hint says works.
    sent = practice.json("send", str(case), "--to", lab.handle, "--expires", "36h")
    assert sent["transfer_id"]
