"""``sealdrop send`` and ``sealdrop status``: send files, and see what became of them."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import click

from sealdrop.crypto.manifest import MAX_NOTE_CHARS
from sealdrop.crypto.protocol import DEFAULT_CHUNK_SIZE

from .. import progress as prog
from ..dicom.deidentify import DeidOptions
from ..dicom.display import phi_free, summary_lines
from ..errors import ClientError
from ..profile.layout import resolve_home
from ..profile.session import open_session
from ..send.flow import send
from ..send.retract import retract
from ..send.status import transfer_status
from ..send.upload import MAX_CHUNK_SIZE, MIN_CHUNK_SIZE
from .caseline import local_time
from .complete import complete_handles, complete_sent_ids
from .deid import DEID_LIMITS, deid_options
from .format import claimed_size, claimed_time, human_size, parse_expiry
from .options import (
    EXAMPLE_RELAY_ID,
    binary_size,
    byte_size,
    emit_json,
    examples,
    home_option,
    json_option,
    json_phi_option,
    passphrase_file_option,
)
from .resume import TransferWatch
from .terminal import for_terminal as safe
from .textin import pick, read_text_file

NOTE_ENV = "SEALDROP_NOTE"
NOTE_FILE_ENV = "SEALDROP_NOTE_FILE"
LABEL_ENV = "SEALDROP_LABEL"
# What the PS3.15 profile leaves: printed after every de-identified send.
def _read_note(ctx: click.Context, note: str | None, note_file: Path | None) -> str:
    """The note from --note-file (``-``: stdin), $SEALDROP_NOTE or --note (textin.py)."""
    note, note_file = pick(ctx, "note", "note_file", note, note_file)
    if note_file is not None:
        # 4 bytes per character is UTF-8's worst case; the count is checked below.
        note = read_text_file(note_file, what="note", max_bytes=4 * MAX_NOTE_CHARS)
    note = note or ""
    if len(note) > MAX_NOTE_CHARS:
        raise ClientError(f"the note is too long ({len(note)} characters; at most "
                          f"{MAX_NOTE_CHARS})", hint="send a longer text as a file")
    return note


@click.command("send", epilog=examples(
    "sealdrop send ./Cas-Dupont/ --to lab-dupont --note-file note.txt",
    "echo 'Couronne 36, teinte A2' | sealdrop send ./Cas-Dupont/ --to lab-dupont --note-file -",
    "sealdrop send CBCT/ scan.stl prescription.pdf --to lab-dupont --to radiologue-b",
    "sealdrop send case/ --to lab-dupont --expires 3d --json",
    "sealdrop send case/ --to lab-dupont --chunk-size 4MiB   (a relay with small chunks)",
    "sealdrop send CBCT/ --to lab-dupont --strict   (refuse unreadable DICOM files)",
    "sealdrop send CBCT/ photos/ --to lab-dupont --deidentify --retain-patient-characteristics",
    "sealdrop send CBCT/ --to lab-dupont --label 'Couronne 36 DUPONT'",
    "",
    "Interrupted? Run the very same command again: it resumes where it stopped.",
))
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=False, path_type=Path))
@click.option("--to", "to", multiple=True, required=True, metavar="HANDLE",
              shell_complete=complete_handles,
              help="A recipient (repeat for several: one transfer, one upload).")
@click.option("--note", envvar=NOTE_ENV,
              help=f"A short note for the recipients (encrypted). Env {NOTE_ENV}. On the "
              "command line it is visible to other users of this computer (ps): prefer "
              "--note-file or the variable.")
@click.option("--note-file", envvar=NOTE_FILE_ENV, metavar="FILE",
              type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help=f"Read the note from this UTF-8 file; - reads standard input. "
              f"Env {NOTE_FILE_ENV}.")
@click.option("--label", envvar=LABEL_ENV, default="", metavar="TEXT",
              help="Your name for the case, shown on the lab's inbox line (sealed: the relay "
              f"never reads it). Default: the note's first line. Env {LABEL_ENV}.")
@click.option("--again", is_flag=True,
              help="Send even if you sent these very files to the same recipients within the "
              "last 24 hours (otherwise a terminal asks; --json and scripts are refused).")
@click.option("--expires", default="30d", show_default=True, metavar="DURATION",
              help="Delete from the relay after this long (e.g. 7d, 12h; at least 1 minute, "
              "at most what the relay allows, 30 days unless its operator changed it).")
@click.option("--allow-unverified", is_flag=True,
              help="Also send to contacts whose safety number was never compared.")
@click.option("--restart", is_flag=True,
              help="Cancel an interrupted send of the same files and start over.")
@click.option("--chunk-size", callback=byte_size(MIN_CHUNK_SIZE, MAX_CHUNK_SIZE),
              default=binary_size(DEFAULT_CHUNK_SIZE), show_default=True,
              envvar="SEALDROP_CHUNK_SIZE", metavar="SIZE",
              help=f"Upload in chunks of SIZE ({binary_size(MIN_CHUNK_SIZE)} to "
              f"{binary_size(MAX_CHUNK_SIZE)}); lowered to the relay's limit if that is "
              "smaller; a resumed send keeps its first size. Env SEALDROP_CHUNK_SIZE.")
@click.option("--strict", is_flag=True, envvar="SEALDROP_STRICT",
              help="Refuse the send, before anything is uploaded, if a file looks like "
              "DICOM (DICM magic, .dcm/.dicom name) but cannot be read whole (truncated, bad "
              "preamble, broken lengths). Without it such a file is sent as an opaque file, "
              "with a warning. Env SEALDROP_STRICT.")
@deid_options
# How long to ride out a relay outage before giving up (the send can then be
# run again). Hidden: a knob for services and tests, not for clinicians.
@click.option("--retry-for", type=click.FloatRange(0, 86400), default=300.0,
              envvar="SEALDROP_RETRY_FOR", hidden=True)
@home_option
@passphrase_file_option
@json_option
@click.pass_context
def send_cmd(ctx: click.Context, paths: tuple[Path, ...], to: tuple[str, ...], note: str | None,
             note_file: Path | None, label: str, again: bool, expires: str,
             allow_unverified: bool, restart: bool,
             chunk_size: int, strict: bool, deidentify: DeidOptions | None,
             retry_for: float, home: Path | None, passphrase_file: Path | None,
             as_json: bool) -> None:
    """Encrypt files and folders for one or more contacts and upload them."""
    text = _read_note(ctx, note, note_file)
    expires_in = parse_expiry(expires)
    show = prog.enabled(as_json)
    malformed: list[dict[str, str]] = []
    with open_session(resolve_home(home), passphrase_file) as session, \
            contextlib.ExitStack() as stack:
        bar: dict[str, prog.Progress] = {}
        watch = TransferWatch(upload=True)  # for Ctrl-C and outages: what is safe

        def on_start(size: int, resumed: bool) -> None:
            if resumed and not as_json:
                click.echo("sealdrop: resuming the interrupted send", err=True)
            bar["p"] = watch.bar = stack.enter_context(
                prog.progress_bar("sending", size, show=show))
            watch.start(size)

        def on_progress(n: int) -> None:
            watch.add(n)
            if "p" in bar:
                bar["p"].advance(n)

        def on_malformed(name: str, why: str) -> None:
            # The names are the sender's own files: fine in the sender's JSON.
            malformed.append({"path": name, "problem": why})
            if not as_json:
                click.echo(f"sealdrop: warning: {safe(name)} looks like DICOM but cannot be "
                           f"read ({safe(why)}); sent as an opaque file", err=True)

        with watch.resumable():
            result = send(session, list(paths), list(to), note=text, expires_in=expires_in,
                          allow_unverified=allow_unverified, restart=restart,
                          chunk_size=chunk_size, retry_for=retry_for,
                          on_start=on_start, on_progress=on_progress, on_retry=watch.retry,
                          strict=strict, on_malformed=on_malformed, deidentify=deidentify,
                          label=label, again=again,
                          confirm_again=None if as_json or not sys.stdin.isatty() else _ask)
    if as_json:
        emit_json({
            # "transfer_id" is the relay's id (what `status` and `receive` take).
            "transfer_id": result.relay_id, "size": result.size,
            "recipients": list(result.recipients),
            "files": [{"path": p, "size": s} for p, s in result.files],
            "resumed": result.resumed, "skipped_bytes": result.skipped,
            "uploaded_bytes": result.uploaded,
            # Files that looked like DICOM but were sent as opaque files.
            "malformed": malformed,
            "deidentified": None if deidentify is None else {
                "profile": deidentify.describe(),
                "options": list(deidentify.selected())},
        })
        return
    click.echo(f"Sent {len(result.files)} file(s), {human_size(result.size)} encrypted, "
               f"to {', '.join(result.recipients)}")
    click.echo(f"Transfer id: {result.relay_id}")
    if deidentify is not None:
        click.echo(f"De-identified: {deidentify.describe()}.")
        click.echo(DEID_LIMITS)


def _ask(question: str) -> bool:
    return click.confirm(f"sealdrop: {question}", default=False, err=True)


@click.command("status", epilog=examples(
    "sealdrop status", f"sealdrop status {EXAMPLE_RELAY_ID}", "sealdrop status --json"))
@click.argument("relay_id", metavar="[TRANSFER_ID]", required=False,
                shell_complete=complete_sent_ids)
@home_option
@passphrase_file_option
@json_option
@json_phi_option
def status_cmd(relay_id: str | None, home: Path | None, passphrase_file: Path | None,
               as_json: bool, json_phi: bool) -> None:
    """Your sent transfers: uploaded, downloaded and verified, per recipient."""
    with open_session(resolve_home(home), passphrase_file) as session:
        rows = transfer_status(session, relay_id)
    if as_json:
        if not json_phi:  # the label names patients too ("Couronne 36 DUPONT")
            rows = [{**row, "dicom": phi_free(row["dicom"]), "label": None} for row in rows]
        emit_json({"transfers": rows})
        return
    if not rows:
        click.echo("nothing sent")
    for row in rows:
        # Ids, handles, sizes and times here are the relay's word: shown terminal-safe.
        label = f"  {safe(row['label'])}" if row.get("label") else ""
        state = ("retracted " + local_time(row["retracted_at"]) if row["state"] == "retracted"
                 else "expired on the relay" if row["state"] == "gone" else row["state"])
        size = claimed_size(row["size"]) if row["size"] is not None else ""
        click.echo(f"{safe(row['id'])}  {state:<11} {size}  "
                   f"sent {claimed_time(row['created_at'])}{label}")
        for line in summary_lines(row["dicom"]):
            click.echo(f"    DICOM: {safe(line)}")
        for r in row["recipients"]:
            if row["state"] in ("retracted", "gone"):
                click.echo(f"    {safe(r['handle'])}")
                continue
            # Verified wins: a lab may dismiss what it already received, to tidy up.
            state = ("opened and verified " + local_time(r["verified_at"]) if r["verified"] else
                     "dismissed " + local_time(r["dismissed_at"]) if r["dismissed"] else
                     "downloaded " + local_time(r["downloaded_at"]) if r["downloaded"] else
                     "waiting" if r["uploaded"] else "not yet uploaded")
            click.echo(f"    {safe(r['handle']):<24} {_vouched(state, r)}")


def _vouched(state: str, r: dict[str, Any]) -> str:
    """The state, worded by who says so: the recipient's signed receipt, or the relay."""
    receipts = r.get("receipts")
    status = "verified" if r["verified"] else "downloaded" if r["downloaded"] and \
        not r["dismissed"] else None
    if receipts is None or status is None:
        return state
    if receipts.get(status) == "signed":
        return f"{state} (verified: signed receipt)"
    return f"relay says {state} (no signed receipt)"


@click.command("retract", epilog=examples(f"sealdrop retract {EXAMPLE_RELAY_ID}"))
@click.argument("relay_id", metavar="TRANSFER_ID")
@home_option
@passphrase_file_option
@json_option
def retract_cmd(relay_id: str, home: Path | None, passphrase_file: Path | None,
                as_json: bool) -> None:
    """Take a sent transfer back: the relay deletes it before recipients download it."""
    with open_session(resolve_home(home), passphrase_file) as session:
        done = retract(session, relay_id)
    if as_json:
        emit_json({"transfer_id": done.relay_id, "retracted_at": done.at,
                   "already_received_by": list(done.already_received_by)})
        return
    click.echo(f"Retracted {safe(done.relay_id)} at {local_time(done.at)}: recipients who "
               "had not downloaded it will not see it.")
    if done.already_received_by:
        click.echo("Already received (they keep their copy): "
                   + ", ".join(safe(h) for h in done.already_received_by))
