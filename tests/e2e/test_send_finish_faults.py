"""A send whose bytes are all on the relay does not stop at its last steps
because the relay's database is away for a moment: ``complete`` and the log
check after it ride out 503 ``store_unavailable`` and 429 as the chunks do,
then the send finishes and the lab receives the case whole.

The receiving side has its last step too: once the files are placed and
recorded, checking that the relay logged our receipt needs the relay again.
An outage there must not undo the report of a placed transfer (``watch`` once
lost its "received" event that way, under CI load): the receive stands and
the receipt is left to ``sealdrop audit``.

CI met it under load (tests/e2e/test_pg_restart.py): a send finished its last
chunk just before PostgreSQL crashed, and ``complete`` answered 503. Here the
fault is put on cue by a loopback proxy (tests/s3proxy.py) in front of the
real relay, answering the relay's own JSON error for the matching requests;
every other request reaches the relay unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from tests.e2e.kit import Relay, User, make_case, tree
from tests.s3proxy import FaultProxy

DB_AWAY = json.dumps({"error": "the relay's database is unreachable; try again in a few "
                               "minutes", "code": "store_unavailable"})
BUSY = json.dumps({"error": "too many requests", "code": "rate_limited"})


@dataclass
class _Front:
    """What a ``User`` pins: the proxy's URL, the relay's invites."""

    relay: Relay
    proxy: FaultProxy

    @property
    def url(self) -> str:
        return self.proxy.endpoint

    def invite(self) -> str:
        return self.relay.invite()


@pytest.fixture
def proxied(tmp_path: Path, relay: Relay) -> Iterator[tuple[FaultProxy, User, User]]:
    proxy = FaultProxy(relay.link.port)
    proxy.start()
    try:
        front = cast(Relay, _Front(relay, proxy))
        practice, lab = User(tmp_path, "cabinet-martin", front), User(tmp_path, "lab-dupont",
                                                                         front)
        practice.init()
        lab.init()
        practice.trust(lab)
        lab.trust(practice)
        yield proxy, practice, lab
    finally:
        proxy.stop()


def test_complete_answered_503_then_429_is_tried_again(
        tmp_path: Path, proxied: tuple[FaultProxy, User, User]) -> None:
    proxy, practice, lab = proxied
    case = make_case(tmp_path / "src")
    proxy.fail("POST", "/complete", 503, json=DB_AWAY, times=2)
    proxy.fail("POST", "/complete", 429, json=BUSY, times=1)
    r = practice.run("send", str(case), "--to", lab.handle, "--json", check=False)
    assert r.returncode == 0, r.stderr
    assert sum(1 for m, t in proxy.seen if m == "POST" and t.endswith("/complete")) == 4
    tid = json.loads(r.stdout)["transfer_id"]
    assert practice.json("status", tid)["transfers"][0]["state"] == "sent"
    dest = tmp_path / "in"
    dest.mkdir()
    lab.run("receive", "--all", "--into", str(dest))
    assert tree(dest / case.name) == tree(case)


def test_the_log_check_after_complete_rides_out_the_outage(
        tmp_path: Path, proxied: tuple[FaultProxy, User, User]) -> None:
    proxy, practice, lab = proxied
    case = make_case(tmp_path / "src")
    # Once the transfer is complete, the log reads of its check fail twice.
    checkpoint = proxy.fail("GET", "/v1/log/", 503, json=DB_AWAY, times=2,
                            after=("POST", "/complete"))
    r = practice.run("send", str(case), "--to", lab.handle, "--json", check=False)
    assert r.returncode == 0, r.stderr
    assert checkpoint.hits == 2
    # The record keeps the log entry of a checked transfer: the audit verifies it.
    audit = practice.run("audit", "--json", check=False)
    assert audit.returncode == 0, audit.stderr


def test_an_outage_longer_than_the_retries_stops_with_the_resume_hint(
        tmp_path: Path, proxied: tuple[FaultProxy, User, User]) -> None:
    proxy, practice, lab = proxied
    case = make_case(tmp_path / "src")
    proxy.fail("POST", "/complete", 503, json=DB_AWAY)  # until cleared
    r = practice.run("send", str(case), "--to", lab.handle, check=False,
                     env={"SEALDROP_RETRY_FOR": "2"})
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "the relay's database is unreachable" in r.stderr
    assert "Your upload is safe: run the same command again to resume." in r.stderr
    proxy.clear()
    again = practice.run("send", str(case), "--to", lab.handle, "--json")
    assert json.loads(again.stdout)["skipped_bytes"] > 0  # nothing uploaded twice
    dest = tmp_path / "in"
    dest.mkdir()
    lab.run("receive", "--all", "--into", str(dest))
    assert tree(dest / case.name) == tree(case)


def test_a_receive_stands_when_the_receipt_check_meets_an_outage(
        tmp_path: Path, proxied: tuple[FaultProxy, User, User]) -> None:
    proxy, practice, lab = proxied
    case = make_case(tmp_path / "src")
    practice.run("send", str(case), "--to", lab.handle)
    dest = tmp_path / "in"
    dest.mkdir()
    # Once the lab acknowledged, every log read fails: the receipt cannot be checked.
    proxy.fail("GET", "/v1/log/", 503, json=DB_AWAY, after=("POST", "/ack"))
    r = lab.run("receive", "--all", "--into", str(dest), "--json", check=False,
                env={"SEALDROP_RETRY_FOR": "1"})
    assert r.returncode == 0, r.stderr
    assert proxy.saw("POST", "/ack")
    acked = next(i for i, (m, t) in enumerate(proxy.seen) if m == "POST" and "/ack" in t)
    assert any(m == "GET" and "/v1/log/" in t for m, t in proxy.seen[acked:]), proxy.seen
    assert tree(dest / case.name) == tree(case)
    assert "Traceback" not in r.stderr
    # Back: the audit reads the whole log and finds the receipt where it belongs.
    proxy.clear()
    audit = lab.run("audit", "--json", check=False)
    assert audit.returncode == 0, audit.stderr


def test_an_ack_lost_to_an_outage_is_told_later_with_its_checked_receipt(
        tmp_path: Path, proxied: tuple[FaultProxy, User, User]) -> None:
    from sealdrop.client.profile.receipts import ReceiptStore

    proxy, practice, lab = proxied
    case = make_case(tmp_path / "src")
    tid = practice.json("send", str(case), "--to", lab.handle)["transfer_id"]
    dest = tmp_path / "in"
    dest.mkdir()
    proxy.fail("POST", "/ack", 503, json=DB_AWAY)  # every ack, until cleared
    r = lab.run("receive", "--all", "--into", str(dest), check=False,
                env={"SEALDROP_RETRY_FOR": "1"})
    assert r.returncode == 0, r.stderr
    assert tree(dest / case.name) == tree(case)
    entry = ReceiptStore(lab.home).load()[tid]
    assert entry["acked"] is False and not entry.get("receipts", {}).get("verified")
    proxy.clear()
    lab.run("inbox")  # tells the relay now, and checks the receipt it logged
    entry = ReceiptStore(lab.home).load()[tid]
    assert entry["acked"] is True
    kept = entry["receipts"]["verified"]
    assert kept["proof"] and isinstance(kept["log_index"], int)
    # The sender sees the lab's own signature, not the relay's word.
    row = practice.json("status", tid)["transfers"][0]
    assert row["recipients"][0]["receipts"]["verified"] == "signed"
