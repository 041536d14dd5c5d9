"""``sealdrop audit --pdf``: the report as a PDF a DPO can file, one page per month.

Each page: a header (practice handle, relay origin, checkpoint size and root,
when it was verified), the month's key events, sent transfers with their
receipts and received transfers, and a footer with the report's failure count.
A month with more rows than a page holds says how many more there are and
where to read them (``--json``): the page count stays the number of months,
which is what a filed report is indexed by.

Built in memory with reportlab's canvas (no file I/O here: the CLI writes the
bytes atomically). ``invariant`` mode leaves out the creation date and the
random document id, so two runs over one report give the same bytes.
Only PDF's standard Helvetica is used: it covers the ASCII that handles, ids,
hashes and safety numbers are made of; anything else is replaced by "?".
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen import canvas

from .model import AuditReport, MonthView, SentTransfer, utc_day, utc_time

_MARGIN = 50.0
_LINE = 12.0
_FOOTER = 60.0  # the bottom band kept for the footer


def _ascii(text: str) -> str:
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text)


def _yes(flag: bool) -> str:
    return "verified" if flag else "NOT VERIFIED"


def _index(i: int | None) -> str:
    return "no log entry" if i is None else f"log entry {i}"


def _sent_lines(t: SentTransfer) -> Iterator[str]:
    yield (f"{utc_day(t.at)}  {t.relay_id}  to {', '.join(t.recipients)}  "
           f"commitment {_yes(t.commitment_verified)} ({_index(t.log_index)})")
    if t.own_record_only:
        yield "      deleted by the relay: checked from this practice's own record"
    for who in t.recipients:
        parts = []
        for status in ("downloaded", "verified"):
            r = t.receipt(who, status)
            if r is None:
                continue
            sig = "signature ok" if r.signature_verified else "SIGNATURE BAD"
            inc = "in the log" if r.inclusion_verified else "NOT IN THE LOG"
            kept = ("" if r.proof_verified is None else
                    ", kept proof ok" if r.proof_verified else ", KEPT PROOF BAD")
            parts.append(f"{status} {utc_day(r.at)} ({sig}, {inc}{kept})")
        yield f"      {who}: " + ("; ".join(parts) if parts else "no signed receipt")


def _month_lines(view: MonthView) -> list[tuple[str, str]]:
    """(style, text) rows of one page: "h" a section heading, "" a plain line."""
    rows: list[tuple[str, str]] = []
    if view.failures:  # first: what a DPO must act on is never cut off the page
        rows.append(("h", f"Did not verify ({len(view.failures)})"))
        rows.extend(("", f.text) for f in view.failures)
    rows.append(("h", "Key events"))
    for k in view.own_keys:
        day = "date unknown" if k.created is None else utc_day(k.created)
        rows.append(("", f"{day}  own key {k.bundle_digest[:16]}...  "
                         f"{_index(k.log_index)}, {_yes(k.verified)}"))
    for c in view.contacts:
        phone = "verified by phone" if c.verified_by_phone else "not verified by phone"
        rows.append(("", f"{utc_day(c.added)}  contact {c.handle} pinned ({phone}), "
                         f"{_index(c.log_index)}, {_yes(c.inclusion_verified)}"))
    if not view.own_keys and not view.contacts:
        rows.append(("", "none"))
    rows.append(("h", f"Sent transfers ({len(view.sent)})"))
    for t in view.sent:
        rows.extend(("", line) for line in _sent_lines(t))
    if not view.sent:
        rows.append(("", "none"))
    rows.append(("h", f"Received transfers ({len(view.received)})"))
    for r in view.received:
        rows.append(("", f"{utc_day(r.at)}  {r.relay_id}  from {r.sender}  "
                         f"{_index(r.log_index)}, {_yes(r.inclusion_verified)}"))
    if not view.received:
        rows.append(("", "none"))
    return rows


def _wrap(text: str, style: str, width: float) -> list[str]:
    """Lines that fit ``width``: split at spaces, and a word longer than a line (a
    relay URL, a hash) cut where it must."""
    font, size = ("Helvetica-Bold", 10) if style == "h" else ("Helvetica", 8.5)
    out: list[str] = []
    for line in simpleSplit(_ascii(text), font, size, width) or [""]:
        while stringWidth(line, font, size) > width:
            cut = len(line) - 1
            while cut > 1 and stringWidth(line[:cut], font, size) > width:
                cut -= 1
            out.append(line[:cut])
            line = line[cut:]
        out.append(line)
    return out


def _page(pdf: Any, report: AuditReport, view: MonthView, number: int, pages: int) -> None:
    width, height = A4
    cp = report.checkpoint
    y = height - _MARGIN
    pdf.setFont("Helvetica-Bold", 14)
    pdf.drawString(_MARGIN, y, _ascii(f"sealdrop audit: {report.handle}, {view.title}"))
    y -= 18
    pdf.setFont("Helvetica", 8.5)
    for line in (
        f"Relay: {report.relay}    Log origin: {cp.origin}",
        f"Checkpoint: size {cp.size}, root {base64.b64encode(cp.root).decode()}",
        f"Verified against it on {utc_time(cp.verified_at)}. All dates are UTC.",
        "This report names no patient: no labels, file names or notes (docs/transparency.md).",
    ):
        for piece in _wrap(line, "", width - 2 * _MARGIN):  # a long relay URL
            pdf.drawString(_MARGIN, y, piece)
            y -= _LINE
    y -= 6
    rows = [(style, piece) for style, text in _month_lines(view)
            for piece in _wrap(text, style, width - 2 * _MARGIN)]
    room = int((y - _FOOTER) // _LINE)
    if len(rows) > room:
        cut = room - 1
        rest = len(rows) - cut
        rows = [*rows[:cut], ("", f"... and {rest} more lines this month: "
                                  "run `sealdrop audit --json` for all of them")]
    for style, text in rows:
        if style == "h":
            pdf.setFont("Helvetica-Bold", 10)
            y -= 4
        else:
            pdf.setFont("Helvetica", 8.5)
        pdf.drawString(_MARGIN, y, _ascii(text))
        y -= _LINE
    pdf.setFont("Helvetica-Bold" if report.failures else "Helvetica", 9)
    verdict = (f"Failures: {len(report.failures)} in this report (listed in "
               "`sealdrop audit`): NOT everything verified." if report.failures
               else "Failures: 0. Everything listed verified against the checkpoint.")
    pdf.drawString(_MARGIN, _MARGIN, _ascii(verdict))
    pdf.setFont("Helvetica", 8)
    pdf.drawRightString(width - _MARGIN, _MARGIN - _LINE, f"page {number} of {pages}")


def render_pdf(report: AuditReport) -> bytes:
    """The report as PDF bytes: one A4 page per month of ``report.months()``."""
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4, invariant=1, pageCompression=0)
    pdf.setTitle(_ascii(f"sealdrop audit {report.handle}"))
    pdf.setAuthor("sealdrop")
    months = report.months()
    for n, (year, month) in enumerate(months, start=1):
        _page(pdf, report, report.in_month(year, month), n, len(months))
        pdf.showPage()
    pdf.save()
    return out.getvalue()
