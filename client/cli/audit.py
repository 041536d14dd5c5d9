"""``sealdrop audit``: the verified history of this practice on the relay, for its DPO."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from ..audit.gather import current_checkpoint, gather, read_log
from ..audit.model import AuditReport, parse_since, utc_day, utc_time
from ..audit.render_json import to_json
from ..audit.splitview import MAX_NOTE, compare
from ..errors import ClientError, LogVerificationError
from ..outfile import atomic_output
from ..profile.layout import resolve_home
from ..profile.session import open_session
from .options import emit_json, examples, home_option, json_output_option, passphrase_file_option
from .terminal import for_terminal as safe
from .textin import read_text_file


@click.command("audit", epilog=examples(
    "sealdrop audit",
    "sealdrop audit --since 2026-01-01 --pdf audit-2026.pdf",
    "sealdrop audit --json > audit.json",
    "sealdrop audit --compare checkpoint-from-lab-dupont.txt",
    "",
    "Exit status 0: everything listed verified against the relay's signed log;",
    "20: something did not (each named on stderr); 21-28: the log itself failed",
    "a check (docs/transparency.md). No patient is named: no labels, file names",
    "or notes, in any output.",
))
@click.option("--since", metavar="DATE",
              help="Only what happened from this day on (YYYY-MM-DD, UTC).")
@click.option("--pdf", "pdf_path", metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a PDF for filing: one page per month.")
@click.option("--compare", "compare_path", metavar="CHECKPOINT_FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A checkpoint note another client verified (`checkpoint.note` of its "
              "`audit --json`): both must be one history of the log.")
@home_option
@passphrase_file_option
@json_output_option
def audit_cmd(since: str | None, pdf_path: Path | None, compare_path: Path | None,
              home: Path | None, passphrase_file: Path | None, as_json: bool) -> None:
    """Verify your keys, contacts, transfers and receipts against the relay's log."""
    try:
        since_ts = None if since is None else parse_since(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    theirs = None if compare_path is None else read_text_file(
        compare_path, what="checkpoint", max_bytes=MAX_NOTE)
    with open_session(resolve_home(home), passphrase_file) as session:
        note, checkpoint, vkey = current_checkpoint(session)
        log = read_log(session.relay.log_tile, note, checkpoint)
        report = gather(session, log)
    if theirs is not None:
        seen, failure = compare(note, theirs, vkey, log.entries)
        report = dataclasses.replace(report, comparison=seen, failures=(
            *report.failures, *(() if failure is None else (failure,))))
    if since_ts is not None:
        report = report.filtered(since_ts)
    if pdf_path is not None:
        from ..audit.render_pdf import render_pdf  # reportlab: only when asked

        try:
            with atomic_output(pdf_path, mode=0o600) as f:
                f.write(render_pdf(report))
        except OSError as exc:
            raise ClientError(f"cannot write the PDF {pdf_path}: {exc.strerror}") from exc
    if as_json:
        emit_json(to_json(report))
    else:
        _show(report)
    if not report.ok:
        n = len(report.failures)
        raise LogVerificationError(
            f"{n} thing{'s' if n > 1 else ''} did not verify against the relay's log: "
            f"{report.failures[0].text}" + ("" if n == 1 else " (and more, listed above)"),
            hint="keep this report; tell the relay's operator and your data protection "
                 "officer (docs/transparency.md)")


def _yes(ok: bool) -> str:
    return "verified" if ok else "NOT VERIFIED"


def _show(r: AuditReport) -> None:
    cp = r.checkpoint
    click.echo(f"{safe(r.handle)} on {safe(r.relay)}: log {safe(cp.origin)}, "
               f"{cp.size} entries, verified {utc_time(cp.verified_at)}")
    for k in r.own_keys:
        when = "?" if k.created is None else utc_day(k.created)
        where = "not logged" if k.log_index is None else f"entry {k.log_index}"
        click.echo(f"  own key   {when}  {k.bundle_digest[:16]}…  {where}  {_yes(k.verified)}")
    for c in r.contacts:
        phone = "by phone" if c.verified_by_phone else "not by phone"
        click.echo(f"  contact   {utc_day(c.added)}  {safe(c.handle)} ({phone})  "
                   f"{_yes(c.inclusion_verified)}")
    for t in r.sent:
        click.echo(f"  sent      {utc_day(t.at)}  {safe(t.relay_id)} to "
                   f"{safe(', '.join(t.recipients))}  {_yes(t.commitment_verified)}")
        for rc in t.receipts:
            click.echo(f"              {safe(rc.recipient)} {safe(rc.status)} "
                       f"{utc_day(rc.at)}: signed receipt {_yes(rc.verified)}")
    for g in r.received:
        click.echo(f"  received  {utc_day(g.at)}  {safe(g.relay_id)} from {safe(g.sender)}  "
                   f"{_yes(g.inclusion_verified)}")
    if r.comparison is not None:
        click.echo(f"  compared with a checkpoint of {r.comparison.size} entries: "
                   + ("one history" if r.comparison.consistent else "TWO HISTORIES"))
    for f in r.failures:
        click.echo(f"  FAILED: {safe(f.text)}")
    click.echo("everything verified" if r.ok else f"{len(r.failures)} failure(s)")
