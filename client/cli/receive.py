"""``sealdrop inbox``, ``sealdrop receive`` and ``sealdrop watch``: what waits, and taking it."""

from __future__ import annotations

import contextlib
import datetime
from pathlib import Path

import click

from .. import progress as prog
from ..errors import ClientError
from ..profile.layout import resolve_home
from ..profile.session import Session, open_session
from ..receive.inbox import list_inbox, pending
from ..receive.transfer import ReceiveResult, flush_acks, receive_one
from ..receive.watch import watch
from .format import claimed_size, claimed_time, human_size
from .options import (
    EXAMPLE_RELAY_ID,
    emit_json,
    examples,
    home_option,
    json_option,
    passphrase_file_option,
)
from .terminal import for_terminal as safe
from .terminal import lines_for_terminal

into_option = click.option(
    "--into", required=True, envvar="SEALDROP_INTO",
    type=click.Path(file_okay=False, path_type=Path),
    help="Existing folder to place received files in. Env SEALDROP_INTO.")
allow_option = click.option(
    "--allow-unverified", is_flag=True,
    help="Accept senders whose safety number was never compared (says so loudly).")


def _say_received(r: ReceiveResult) -> None:
    who = "verified" if r.sender_verified else "NOT VERIFIED (accepted with --allow-unverified)"
    # Ids, handles, file names and the note come from the sender or the relay:
    # each passes the terminal gate (terminal.py) before it is printed.
    click.echo(f"Received {safe(r.relay_id)} from {safe(r.sender)} — safety number {who}")
    click.echo(f"  signed by {r.safety_number}; every file's SHA-256 and the signature "
               "verified")
    for f, p in zip(r.manifest.files, r.files, strict=True):
        click.echo(f"  {human_size(f.size):>9}  {safe(p)}")
    if r.manifest.note:
        first, *more = lines_for_terminal(r.manifest.note)
        click.echo(f"  note: {first}")
        for line in more:  # indented, so no line of a note passes for one of ours
            click.echo(f"      | {line}")


@click.command("inbox", epilog=examples("sealdrop inbox", "sealdrop inbox --json"))
@home_option
@passphrase_file_option
@json_option
def inbox_cmd(home: Path | None, passphrase_file: Path | None, as_json: bool) -> None:
    """What is waiting for you on the relay (sender as the relay claims it)."""
    with open_session(resolve_home(home), passphrase_file) as session:
        flush_acks(session)
        items = list_inbox(session)
    if as_json:
        emit_json({"transfers": items})
        return
    if not items:
        click.echo("inbox empty")
    for t in items:
        click.echo(f"{safe(t['id'])}  {t['state']:<10} from {safe(t['sender'])} "
                   f"({t['sender_state']})  {claimed_size(t['size'])}  "
                   f"{claimed_time(t['sent_at'])}")


def _receive_many(session: Session, relay_ids: list[str], into: Path, allow_unverified: bool,
                  as_json: bool) -> int:
    results, failed = [], []
    show = prog.enabled(as_json)
    for rid in relay_ids:
        try:
            with contextlib.ExitStack() as stack:
                bar: dict[str, prog.Progress] = {}

                def on_progress(done: int, total: int, _rid: str = rid,
                                _bar: dict[str, prog.Progress] = bar,
                                _stack: contextlib.ExitStack = stack) -> None:
                    if "p" not in _bar:
                        _bar["p"] = _stack.enter_context(
                            prog.progress_bar(f"receiving {_rid[:8]}", total, show=show))
                    _bar["p"].set(done)

                r = receive_one(session, rid, into, allow_unverified=allow_unverified,
                                on_progress=on_progress)
            results.append(r)
            if not as_json:
                _say_received(r)
        except ClientError as exc:
            failed.append({"transfer_id": rid, "error": str(exc)})
            click.echo(f"sealdrop: error: {safe(str(exc))}", err=True)
            if exc.hint:
                click.echo(f"sealdrop: hint: {safe(exc.hint)}", err=True)
    if as_json:
        emit_json({"received": [r.to_json() for r in results], "failed": failed})
    elif not relay_ids:
        click.echo("nothing new to receive")
    return 1 if failed else 0


@click.command("receive", epilog=examples(
    f"sealdrop receive {EXAMPLE_RELAY_ID} --into ~/Cases",
    "sealdrop receive --all --into /srv/lab/incoming --json",
    "",
    "Interrupted? Run it again: the download resumes where it stopped.",
))
@click.argument("relay_ids", metavar="[IDS]...", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Everything not yet received.")
@into_option
@allow_option
@home_option
@passphrase_file_option
@json_option
def receive_cmd(relay_ids: tuple[str, ...], all_: bool, into: Path, allow_unverified: bool,
                home: Path | None, passphrase_file: Path | None, as_json: bool) -> None:
    """Download, verify and place transfers into --into (all or nothing each)."""
    if bool(relay_ids) == all_:
        raise click.UsageError("give transfer ids or --all (not both)")
    if not into.is_dir():
        raise ClientError(f"the destination {into} is not an existing folder",
                          hint="create it first, or give another --into")
    with open_session(resolve_home(home), passphrase_file) as session:
        flush_acks(session)
        todo = [t["id"] for t in pending(session)] if all_ else list(relay_ids)
        code = _receive_many(session, todo, into, allow_unverified, as_json)
    if code:
        raise SystemExit(code)


@click.command("watch", epilog=examples(
    "sealdrop watch --into /srv/lab/incoming",
    "SEALDROP_HOME=/var/lib/sealdrop SEALDROP_PASSPHRASE_FILE=… sealdrop watch --into /srv/in",
    "",
    "As a service: deploy/sealdrop-watch.service (systemd).",
))
@into_option
@click.option("--interval", type=click.FloatRange(0.1, 86400), default=30.0, show_default=True,
              envvar="SEALDROP_WATCH_INTERVAL", help="Seconds between inbox checks.")
@click.option("--max-backoff", type=click.FloatRange(0.1, 86400), default=300.0,
              show_default=True, envvar="SEALDROP_WATCH_MAX_BACKOFF",
              help="Longest wait between retries while the relay is unreachable.")
@allow_option
@home_option
@passphrase_file_option
@json_option
def watch_cmd(into: Path, interval: float, max_backoff: float, allow_unverified: bool,
              home: Path | None, passphrase_file: Path | None, as_json: bool) -> None:
    """Keep receiving into --into as transfers arrive (one JSON line each with --json)."""
    if not into.is_dir():
        raise ClientError(f"the destination {into} is not an existing folder")

    def stamp() -> str:
        return datetime.datetime.now().astimezone().isoformat(timespec="seconds")

    def on_received(r: ReceiveResult) -> None:
        if as_json:
            emit_json({"event": "received", **r.to_json()})
        else:
            _say_received(r)

    def on_refused(relay_id: str, exc: ClientError) -> None:
        if as_json:
            emit_json({"event": "refused", "transfer_id": relay_id, "error": str(exc)})
        else:
            click.echo(f"{stamp()} sealdrop: error: {safe(str(exc))}", err=True)

    def on_offline(msg: str, delay: float) -> None:
        click.echo(f"{stamp()} sealdrop: relay unreachable ({safe(msg)}); retrying in "
                   f"{delay:.0f} s", err=True)

    with open_session(resolve_home(home), passphrase_file) as session:
        if not as_json:
            click.echo(f"watching {session.config.relay} for {session.identity.handle}; "
                       f"receiving into {into}", err=True)
        watch(session, into, interval=interval, max_backoff=max_backoff,
              allow_unverified=allow_unverified, on_received=on_received,
              on_refused=on_refused, on_offline=on_offline)
