"""The DPO's PDF (client/audit/render_pdf.py), read back with pypdf: one page per
month, the header, the month's events and the failure count on each page."""

from __future__ import annotations

import dataclasses
import io

from pypdf import PdfReader

from sealdrop.client.audit.model import Failure, SentTransfer
from sealdrop.client.audit.render_pdf import render_pdf

from .test_audit_report import report, ts


def pages(data: bytes) -> list[str]:
    return [p.extract_text() for p in PdfReader(io.BytesIO(data)).pages]


def test_one_page_per_month_with_the_header_and_the_months_events() -> None:
    text = pages(render_pdf(report()))
    assert len(text) == 4  # September to December 2026
    for page, month in zip(text, ["September", "October", "November", "December"],
                           strict=True):
        assert f"dr-martin, {month} 2026" in page
        assert "relay.example/log" in page and "size 40" in page
        assert "2026-12-02 01:00 UTC" in page
        assert "Failures: 0" in page
    sept, octo, nov, dec = text
    assert "contact lab-dupont pinned (verified by phone)" in sept
    assert "a" * 32 in octo and "a" * 32 not in nov
    assert "downloaded 2026-10-05 (signature ok, in the log)" in octo
    assert "own key bbbbbbbbbbbbbbbb" in octo
    assert "from lab-dupont" in nov and "Sent transfers (0)" in nov
    assert "b" * 32 in dec and "no signed receipt" in dec


def test_failures_are_counted_on_every_page_and_listed_in_their_month() -> None:
    r = report(failures=(Failure(text="the receipt of lab-dupont does not verify",
                                 at=ts("2026-10-05")),))
    text = pages(render_pdf(r))
    assert all("Failures: 1" in p and "NOT everything verified" in p for p in text)
    assert ["the receipt of lab-dupont does not verify" in p for p in text] == [
        False, True, False, False]


def test_a_busy_month_stays_one_page_and_says_where_the_rest_is() -> None:
    base = report()
    many = tuple(SentTransfer(relay_id=f"{i:032x}", at=ts("2026-12-01"),
                              recipients=("lab-dupont",), log_index=100 + i,
                              commitment_verified=True) for i in range(150))
    text = pages(render_pdf(dataclasses.replace(base, sent=base.sent + many)))
    assert len(text) == 4
    assert "Sent transfers (151)" in text[3]
    assert "more lines this month" in text[3] and "--json" in text[3]


def test_the_same_report_gives_the_same_bytes() -> None:
    assert render_pdf(report()) == render_pdf(report())


def test_text_outside_ascii_is_replaced_not_dropped() -> None:
    r = dataclasses.replace(report(), handle="dr-m\u00e9\u202e")
    assert "dr-m??, September 2026" in pages(render_pdf(r))[0]


def test_a_long_relay_url_is_wrapped_not_cut() -> None:
    long = "https://relay." + "x" * 150 + ".example"
    text = pages(render_pdf(dataclasses.replace(report(), relay=long)))[0]
    assert long in text.replace("\n", "")  # all of it, on two lines
    assert "x" * 150 not in text
