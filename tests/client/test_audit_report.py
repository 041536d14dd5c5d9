"""The audit report model and its JSON (client/audit/model.py, render_json.py): pure."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path

import pytest

from sealdrop.client.audit.model import (
    AuditReport,
    CheckpointInfo,
    ContactKey,
    Failure,
    KeyEvent,
    ReceiptCheck,
    ReceivedTransfer,
    SentTransfer,
    parse_since,
)
from sealdrop.client.audit.render_json import to_json

ROOT = bytes(range(32))


def ts(day: str) -> int:
    return parse_since(day) + 3600  # 01:00 UTC that day


def report(*, failures: tuple[Failure, ...] = (), verified_at: str = "2026-12-02"
           ) -> AuditReport:
    """A practice with a key rotated in October, a lab pinned in September, one
    case sent in October (both receipts) and one in December, one received."""
    ok = ReceiptCheck(recipient="lab-dupont", status="downloaded", at=ts("2026-10-05"),
                      log_index=12, signature_verified=True, inclusion_verified=True)
    return AuditReport(
        handle="dr-martin", relay="https://relay.example",
        checkpoint=CheckpointInfo(origin="relay.example/log", size=40, root=ROOT,
                                  note="relay.example/log\n40\n...\n", verified_at=ts(verified_at)),
        own_keys=(KeyEvent(bundle_digest="aa" * 32, created=ts("2026-09-01"), log_index=0,
                           verified=True),
                  KeyEvent(bundle_digest="bb" * 32, created=ts("2026-10-20"), log_index=20,
                           verified=True)),
        contacts=(ContactKey(handle="lab-dupont", safety_number="12345 67890",
                             verified_by_phone=True, added=ts("2026-09-02"), log_index=1,
                             inclusion_verified=True),),
        sent=(SentTransfer(relay_id="a" * 32, at=ts("2026-10-05"), recipients=("lab-dupont",),
                           log_index=11, commitment_verified=True,
                           receipts=(ok, dataclasses.replace(ok, status="verified",
                                                             log_index=13))),
              SentTransfer(relay_id="b" * 32, at=ts("2026-12-01"), recipients=("lab-dupont",),
                           log_index=30, commitment_verified=True)),
        received=(ReceivedTransfer(relay_id="c" * 32, at=ts("2026-11-10"), sender="lab-dupont",
                                   log_index=25, inclusion_verified=True),),
        failures=failures,
    )


def test_months_run_from_the_first_event_to_the_verification_without_gaps() -> None:
    assert report().months() == [(2026, 9), (2026, 10), (2026, 11), (2026, 12)]
    # A year boundary, and a month with no event in between still has its page.
    later = report(verified_at="2027-02-01")
    assert later.months()[-3:] == [(2026, 12), (2027, 1), (2027, 2)]
    assert later.in_month(2027, 1).sent == ()


def test_an_empty_profile_is_one_month() -> None:
    empty = dataclasses.replace(report(), own_keys=(), contacts=(), sent=(), received=())
    assert empty.months() == [(2026, 12)]


def test_since_drops_older_items_and_their_failures_but_keeps_the_key_in_force() -> None:
    failures = (Failure(text="old receipt forged", at=ts("2026-10-05")),
                Failure(text="new transfer missing", at=ts("2026-12-01")),
                Failure(text="the relay rolled the log back"))
    r = report(failures=failures).filtered(parse_since("2026-11-01"))
    assert [t.relay_id for t in r.sent] == ["b" * 32]
    assert [t.relay_id for t in r.received] == ["c" * 32]
    assert r.contacts == ()
    # The October rotation is the key in force on November 1st: still listed.
    assert [k.bundle_digest for k in r.own_keys] == ["bb" * 32]
    assert [f.text for f in r.failures] == ["new transfer missing",
                                            "the relay rolled the log back"]
    assert not r.ok
    assert r.months() == [(2026, 11), (2026, 12)]


def test_ok_only_without_failures() -> None:
    assert report().ok
    assert not report(failures=(Failure(text="x"),)).ok


def test_a_transfer_is_verified_only_if_its_commitment_and_every_receipt_are() -> None:
    t = report().sent[0]
    assert t.verified
    forged = dataclasses.replace(t.receipts[1], signature_verified=False)
    assert not forged.verified
    assert not dataclasses.replace(t, receipts=(t.receipts[0], forged)).verified
    assert not dataclasses.replace(t, commitment_verified=False).verified
    assert t.receipt("lab-dupont", "verified") == t.receipts[1]
    assert t.receipt("lab-other", "verified") is None


@pytest.mark.parametrize("bad", ["2026-13-01", "yesterday", "", "01/12/2026"])
def test_since_must_be_a_day(bad: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_since(bad)


def test_since_is_midnight_utc() -> None:
    assert parse_since("1970-01-02") == 86400


def test_json_keys_are_the_documented_ones_and_round_trip() -> None:
    out = json.loads(json.dumps(to_json(report(failures=(Failure(text="it broke"),)))))
    assert set(out) == {"version", "ok", "handle", "relay", "since", "checkpoint", "own_keys",
                        "contacts", "sent", "received", "compared_with", "failures"}
    assert out["version"] == 1 and out["ok"] is False and out["failures"] == ["it broke"]
    assert base64.b64decode(out["checkpoint"]["root"]) == ROOT
    assert out["checkpoint"]["size"] == 40
    sent = out["sent"][0]
    assert set(sent) == {"id", "at", "recipients", "log_index", "commitment_verified",
                         "verified", "receipts", "own_record_only"}
    assert set(sent["receipts"][0]) == {"recipient", "status", "at", "log_index",
                                        "signature_verified", "inclusion_verified",
                                        "verified", "proof_verified"}
    assert [(r["recipient"], r["status"], r["verified"]) for r in sent["receipts"]] == [
        ("lab-dupont", "downloaded", True), ("lab-dupont", "verified", True)]
    assert set(out["contacts"][0]) == {"handle", "safety_number", "verified_by_phone",
                                       "added", "log_index", "inclusion_verified"}
    assert out["received"][0]["sender"] == "lab-dupont"
    assert out["compared_with"] is None


def test_json_names_no_patient() -> None:
    """The model has no field for a label, file name or note: nothing to leak."""
    fields = {f.name for cls in (AuditReport, SentTransfer, ReceivedTransfer)
              for f in dataclasses.fields(cls)}
    assert not fields & {"label", "files", "note", "dicom", "paths"}


def test_the_command_refuses_a_since_that_is_not_a_day(tmp_path: Path) -> None:
    """Before the profile is even opened: click's usage error, exit status 2."""
    from click.testing import CliRunner

    from sealdrop.client.cli.audit import audit_cmd

    r = CliRunner().invoke(audit_cmd, ["--since", "2026-13-01", "--home", str(tmp_path)])
    assert r.exit_code == 2 and "YYYY-MM-DD" in r.output
