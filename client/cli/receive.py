"""``sealdrop inbox``, ``receive``, ``watch``, ``dismiss``, ``block`` and ``unblock``:
what waits, taking it, and refusing it."""

from __future__ import annotations

import contextlib
import datetime
import functools
from pathlib import Path

import click

from sealdrop.crypto.bundle import HANDLE_RE
from sealdrop.crypto.protocol import is_transfer_id

from .. import progress as prog
from ..dicom.display import summary_lines
from ..errors import ClientError, LogVerificationError
from ..profile.layout import resolve_home
from ..profile.session import Session, open_session
from ..receive.cards import card_json
from ..receive.forward import Forwarder, ForwardReport
from ..receive.hook import Hook
from ..receive.inbox import list_inbox, pending
from ..receive.interrupt import Signals, stop_requested
from ..receive.layout import DEFAULT_LAYOUT, Layout, LayoutError
from ..receive.transfer import (
    DEFAULT_MAX_UNVERIFIED_SIZE,
    AlreadyReceivedError,
    ReceiveResult,
    flush_acks,
    receive_one,
)
from ..receive.watch import watch
from .caseline import case_line
from .complete import complete_inbox_ids
from .format import Seconds, claimed_time, human_size
from .forward import forward_options, make_forwarder, say_forward
from .hook import on_receive_options, run_on_receive
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
from .resume import TransferWatch, retry_for_from_env, with_retries
from .terminal import for_terminal as safe
from .terminal import lines_for_terminal

into_option = click.option(
    "--into", required=True, envvar="SEALDROP_INTO",
    type=click.Path(file_okay=False, path_type=Path),
    help="Existing folder to receive into: each case gets a folder of its own inside "
    "(see --layout). Env SEALDROP_INTO.")
allow_option = click.option(
    "--allow-unverified", is_flag=True,
    help="Accept senders whose safety number was never compared (says so loudly).")
keep_refused_option = click.option(
    "--keep-refused", is_flag=True,
    help="Keep the downloaded ciphertext of a refused transfer in the spool (default: "
    "delete it).")
max_unverified_option = click.option(
    "--max-unverified-size", default=binary_size(DEFAULT_MAX_UNVERIFIED_SIZE),
    show_default=True, envvar="SEALDROP_MAX_UNVERIFIED_SIZE",
    callback=byte_size(0, 1 << 50),
    help="Largest transfer downloaded from a sender you have not verified (with "
    "--allow-unverified); larger ones are refused before download. "
    "Env SEALDROP_MAX_UNVERIFIED_SIZE.")
staging_option = click.option(
    "--staging", type=click.Path(file_okay=False, path_type=Path), envvar="SEALDROP_STAGING",
    help="Private folder to verify transfers in before placing them: same filesystem as "
    "--into, outside it (default: the profile's staging/, else .sealdrop-staging beside "
    "--into). Env SEALDROP_STAGING.")




def _layout(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Layout:
    try:
        return Layout.parse(value)
    except LayoutError as exc:
        raise click.BadParameter(str(exc)) from exc


layout_option = click.option(
    "--layout", metavar="TEMPLATE", envvar="SEALDROP_LAYOUT", callback=_layout,
    help=f"Folder each case lands in under --into (default '{DEFAULT_LAYOUT}', e.g. "
    "'2026-11-30 cabinet-martin 3f9a2c1e'). Placeholders {date} {time} {sender} {id} "
    "{label}; '/' nests folders; '{flat}' puts files straight into --into. Without {id} "
    "two cases can collide: that is refused before the download. Env SEALDROP_LAYOUT.")


def _receive_options(f: click.decorators.FC) -> click.decorators.FC:
    return keep_refused_option(max_unverified_option(staging_option(layout_option(f))))


def _say_received(r: ReceiveResult) -> None:
    who = "verified" if r.sender_verified else "NOT VERIFIED (accepted with --allow-unverified)"
    # Ids, handles, file names and the note come from the sender or the relay:
    # each passes the terminal gate (terminal.py) before it is printed.
    click.echo(f"Received {safe(r.relay_id)} from {safe(r.sender)} — safety number {who}")
    for line in summary_lines(r.manifest.dicom):
        click.echo(f"  DICOM: {safe(line)}")
    click.echo(f"  signed by {r.safety_number}; every file's SHA-256 and the signature "
               "verified")
    if r.folder != r.into:
        click.echo(f"  into {safe(r.folder)}")
    for f, p in zip(r.manifest.files, r.files, strict=True):
        click.echo(f"  {human_size(f.size):>9}  {safe(p)}")
    if r.manifest.note:
        first, *more = lines_for_terminal(r.manifest.note)
        click.echo(f"  note: {first}")
        for line in more:  # indented, so no line of a note passes for one of ours
            click.echo(f"      | {line}")


@click.command("inbox", epilog=examples("sealdrop inbox", "sealdrop inbox --json",
                                        "sealdrop inbox --json --json-phi"))
@home_option
@passphrase_file_option
@json_option
@json_phi_option
def inbox_cmd(home: Path | None, passphrase_file: Path | None, as_json: bool,
              json_phi: bool) -> None:
    """What is waiting for you on the relay (sender as the relay claims it).

    One line per case, from the sender's sealed case card when it verifies
    (label, patient, modality, images, size); a card that does not verify is
    marked. Transfers from your verified contacts come first, however many others wait.
    """
    with open_session(resolve_home(home), passphrase_file) as session:
        flush_acks(session)
        listed = list_inbox(session)
    items = listed.items
    if listed.truncated:
        click.echo(f"sealdrop: warning: the inbox holds more than {len(items)} transfers; "
                   "only these were read", err=True)
        click.echo("sealdrop: hint: a flood? `sealdrop block HANDLE` refuses an account, "
                   "`sealdrop dismiss ID` removes a transfer", err=True)
    if as_json:
        emit_json({"transfers": [{**t, "card": card_json(listed.cards[t["id"]], phi=json_phi)}
                                 for t in items],
                   "truncated": listed.truncated})
        return
    if not items:
        click.echo("inbox empty")
    for t in items:
        click.echo(f"{safe(t['id'])}  {t['state']:<10} {case_line(t, listed.cards[t['id']])}")


def _receive_many(session: Session, relay_ids: list[str], into: Path, allow_unverified: bool,
                  as_json: bool, json_phi: bool, options: dict[str, object],
                  forwarder: Forwarder | None = None, forward_all: bool = False) -> int:
    results, failed, already = [], [], []
    # Pending forwards first (of these ids, or all with --all): an id already
    # received is forwarded, not received again.
    forwards = forwarder.run_pending(None if forward_all else relay_ids) if forwarder else []
    for rep in forwards if not as_json else []:
        click.echo(f"Pending forward of {safe(rep.relay_id)}:")
        say_forward(rep)
    done = {rep.relay_id for rep in forwards}  # already received: forwarded, not received
    relay_ids = [rid for rid in relay_ids if rid not in done]
    show = prog.enabled(as_json)
    retry_for = retry_for_from_env()
    for rid in relay_ids:
        if stop_requested():
            raise KeyboardInterrupt("stopping")  # a signal came while one was placed
        try:
            with contextlib.ExitStack() as stack:
                bar: dict[str, prog.Progress] = {}
                watch = TransferWatch(upload=False)  # for Ctrl-C: what is kept

                def on_progress(done: int, total: int, _rid: str = rid,
                                _bar: dict[str, prog.Progress] = bar,
                                _stack: contextlib.ExitStack = stack,
                                _watch: TransferWatch = watch) -> None:
                    if "p" not in _bar:
                        _bar["p"] = _watch.bar = _stack.enter_context(
                            prog.progress_bar(f"receiving {_rid[:8]}", total, show=show))
                    _watch.set(done, total)
                    _bar["p"].set(done)

                with watch.resumable():  # a download cut midway is tried again
                    r = with_retries(functools.partial(
                        receive_one, session, rid, into, allow_unverified=allow_unverified,
                        on_progress=on_progress, **options),  # type: ignore[arg-type]
                        watch, retry_for=retry_for, stop=stop_requested)
            results.append(r)
            if not as_json:
                _say_received(r)
            for rep in forwarder.after_receive(r) if forwarder else []:
                forwards.append(rep)
                if not as_json:
                    say_forward(rep)
        except AlreadyReceivedError as exc:
            # Not a failure: what the caller asked for is here (a script that
            # asks again, after a crash or by habit, must not stop on it).
            already.append(exc)
            if not as_json:
                click.echo(safe(str(exc)))
        except LogVerificationError:
            raise  # the relay's log, not this transfer: stop, with the log's exit status
        except ClientError as exc:
            failed.append({"transfer_id": rid, "error": str(exc)})
            click.echo(f"sealdrop: error: {safe(str(exc))}", err=True)
            if exc.hint:
                click.echo(f"sealdrop: hint: {safe(exc.hint)}", err=True)
    if as_json:
        emit_json({"received": [r.to_json(phi=json_phi) for r in results], "failed": failed,
                   "already_received": [a.to_json(phi=json_phi) for a in already],
                   **({"forwards": [f.to_json(phi=json_phi) for f in forwards]}
                      if forwarder else {})})
    elif not relay_ids:
        click.echo("nothing new to receive")
    return 1 if failed or any(not f.done for f in forwards) else 0


@click.command("receive", epilog=examples(
    f"sealdrop receive {EXAMPLE_RELAY_ID} --into ~/Cases",
    "sealdrop receive --all --into /srv/lab/incoming --layout '{sender}/{date} {id}'",
    "sealdrop receive --all --into /srv/lab/incoming --json",
    "sealdrop receive --all --into /srv/lab/incoming --json --json-phi   (names, paths)",
    "",
    "Interrupted? Run it again: the download resumes where it stopped.",
))
@click.argument("relay_ids", metavar="[IDS]...", nargs=-1, shell_complete=complete_inbox_ids)
@click.option("--all", "all_", is_flag=True, help="Everything not yet received.")
@into_option
@allow_option
@_receive_options
@forward_options
@home_option
@passphrase_file_option
@json_option
@json_phi_option
def receive_cmd(relay_ids: tuple[str, ...], all_: bool, into: Path, allow_unverified: bool,
                keep_refused: bool, max_unverified_size: int, staging: Path | None,
                layout: Layout, to_pacs: str | None, calling_aet: str, to_dicomweb: str | None,
                home: Path | None, passphrase_file: Path | None, as_json: bool,
                json_phi: bool) -> None:
    """Download, verify and place transfers into --into (all or nothing each)."""
    if bool(relay_ids) == all_:
        raise click.UsageError("give transfer ids or --all (not both)")
    if not into.is_dir():
        raise ClientError(f"the destination {into} is not an existing folder",
                          hint="create it first, or give another --into")
    options: dict[str, object] = {"keep_refused": keep_refused,
                                  "max_unverified_size": max_unverified_size,
                                  "staging": staging, "layout": layout}
    forwarder = make_forwarder(resolve_home(home), to_pacs, calling_aet, to_dicomweb)
    with open_session(resolve_home(home), passphrase_file) as session, \
            Signals().installed():
        # From here SIGTERM, like Ctrl-C, interrupts a download or staging (the
        # staging folder goes, the spool stays), never a transfer being placed.
        flush_acks(session)
        todo = [t["id"] for t in pending(session)] if all_ else list(relay_ids)
        code = _receive_many(session, todo, into, allow_unverified, as_json, json_phi, options,
                             forwarder if forwarder.targets else None, forward_all=all_)
    if code:
        raise SystemExit(code)


@click.command("watch", epilog=examples(
    "sealdrop watch --into /srv/lab/incoming",
    "SEALDROP_HOME=/var/lib/sealdrop SEALDROP_PASSPHRASE_FILE=… sealdrop watch --into /srv/in",
    "",
    "As a service: deploy/sealdrop-watch.service (systemd).",
))
@into_option
@click.option("--interval", type=Seconds(0.1, 86400), default="30s", show_default=True,
              envvar="SEALDROP_WATCH_INTERVAL",
              help="Time between inbox checks, in seconds or e.g. 30s, 5m (0.1 seconds to "
              "1 day). Env SEALDROP_WATCH_INTERVAL.")
@click.option("--max-backoff", type=Seconds(0.1, 86400), default="5m", show_default=True,
              envvar="SEALDROP_WATCH_MAX_BACKOFF",
              help="Longest wait between retries while the relay is unreachable, in seconds "
              "or e.g. 5m (0.1 seconds to 1 day). Env SEALDROP_WATCH_MAX_BACKOFF.")
@allow_option
@_receive_options
@forward_options
@home_option
@passphrase_file_option
@json_option
@json_phi_option
@on_receive_options
def watch_cmd(into: Path, interval: float, max_backoff: float, allow_unverified: bool,
              keep_refused: bool, max_unverified_size: int, staging: Path | None,
              layout: Layout, to_pacs: str | None, calling_aet: str,
              to_dicomweb: str | None, home: Path | None, passphrase_file: Path | None,
              as_json: bool, json_phi: bool, on_receive: Hook | None) -> None:
    """Keep receiving into --into as transfers arrive (one JSON line each with --json)."""
    if not into.is_dir():
        raise ClientError(f"the destination {into} is not an existing folder")

    def stamp() -> str:
        return datetime.datetime.now().astimezone().isoformat(timespec="seconds")

    def on_received(r: ReceiveResult) -> None:
        if as_json:
            emit_json({"event": "received", **r.to_json(phi=json_phi)})
        else:
            _say_received(r)
        run_on_receive(on_receive, r, as_json=as_json)  # never raises; logs one line

    def on_refused(relay_id: str, exc: ClientError) -> None:
        if as_json:
            emit_json({"event": "refused", "transfer_id": relay_id, "error": str(exc)})
        else:
            click.echo(f"{stamp()} sealdrop: error: {safe(str(exc))}", err=True)

    def on_forward(rep: ForwardReport) -> None:
        if as_json:
            emit_json({"event": "forwarded" if rep.done else "forward_pending",
                       **rep.to_json(phi=json_phi)})
        else:
            click.echo(f"{stamp()} transfer {safe(rep.relay_id)}:")
            say_forward(rep)

    def on_forward_error(exc: ClientError) -> None:
        if as_json:
            emit_json({"event": "forward_error", "error": str(exc)})
        else:
            click.echo(f"{stamp()} sealdrop: error: {safe(str(exc))}", err=True)

    forwarder = make_forwarder(resolve_home(home), to_pacs, calling_aet, to_dicomweb,
                               interval=interval, max_backoff=max_backoff)

    def on_offline(msg: str, delay: float) -> None:
        click.echo(f"{stamp()} sealdrop: relay unreachable ({safe(msg)}); retrying in "
                   f"{delay:.0f} s", err=True)

    with open_session(resolve_home(home), passphrase_file) as session:
        if not as_json:
            click.echo(f"watching {session.config.relay} for {session.identity.handle}; "
                       f"receiving into {into}", err=True)
        watch(session, into, interval=interval, max_backoff=max_backoff,
              allow_unverified=allow_unverified, on_received=on_received,
              on_refused=on_refused, on_offline=on_offline, keep_refused=keep_refused,
              max_unverified_size=max_unverified_size, staging=staging, layout=layout,
              forwarder=forwarder if forwarder.targets else None, on_forward=on_forward,
              on_forward_error=on_forward_error)


@click.command("dismiss", epilog=examples(
    f"sealdrop dismiss {EXAMPLE_RELAY_ID}",
    "",
    "The sender sees that you dismissed it. To refuse everything from someone: "
    "sealdrop block HANDLE",
))
@click.argument("relay_ids", metavar="IDS...", nargs=-1, required=True,
                shell_complete=complete_inbox_ids)
@home_option
@passphrase_file_option
@json_option
def dismiss_cmd(relay_ids: tuple[str, ...], home: Path | None, passphrase_file: Path | None,
                as_json: bool) -> None:
    """Refuse or dismiss transfers: they leave your inbox on the relay for good."""
    for rid in relay_ids:
        if not is_transfer_id(rid):
            raise click.BadParameter(f"{rid[:40]!r} is not a transfer id (32 hex digits, as "
                                     "`sealdrop inbox` lists them)", param_hint="IDS")
    with open_session(resolve_home(home), passphrase_file) as session:
        for rid in relay_ids:
            session.relay.dismiss(rid)
            session.spool.drop(rid)  # a download kept for a retry is not wanted any more
            if not as_json:
                click.echo(f"dismissed {rid}")
    if as_json:
        emit_json({"dismissed": list(relay_ids)})


def _handles(handles: tuple[str, ...]) -> None:
    for h in handles:
        if not HANDLE_RE.fullmatch(h):
            raise click.BadParameter(f"{h[:70]!r} is not a handle", param_hint="HANDLE")


@click.command("block", epilog=examples(
    "sealdrop block spam-account",
    "sealdrop block            # list the accounts you block",
))
@click.argument("handles", metavar="[HANDLE]...", nargs=-1)
@home_option
@passphrase_file_option
@json_option
def block_cmd(handles: tuple[str, ...], home: Path | None, passphrase_file: Path | None,
              as_json: bool) -> None:
    """Refuse an account's transfers on the relay (no HANDLE: list whom you block)."""
    _handles(handles)
    with open_session(resolve_home(home), passphrase_file) as session:
        if not handles:
            rows = session.relay.blocks()
            if as_json:
                emit_json({"blocks": rows})
            elif not rows:
                click.echo("you block no one")
            for b in rows if not as_json else []:
                # The relay's text, shown only if it is a handle (no terminal escapes).
                h = str(b.get("handle"))
                since = b.get("since")
                click.echo(f"{h if HANDLE_RE.fullmatch(h) else '?'}  since "
                           f"{claimed_time(since)}")
            return
        for h in handles:
            new = session.relay.block(h)
            if not as_json:
                click.echo(f"blocked {h}: its transfers leave your inbox and new ones are "
                           "refused" if new else f"{h} was already blocked")
    if as_json:
        emit_json({"blocked": list(handles)})


@click.command("unblock", epilog=examples("sealdrop unblock cabinet-martin"))
@click.argument("handles", metavar="HANDLE...", nargs=-1, required=True)
@home_option
@passphrase_file_option
@json_option
def unblock_cmd(handles: tuple[str, ...], home: Path | None, passphrase_file: Path | None,
                as_json: bool) -> None:
    """Accept an account's transfers again (its unexpired ones reappear)."""
    _handles(handles)
    with open_session(resolve_home(home), passphrase_file) as session:
        for h in handles:
            session.relay.unblock(h)
            if not as_json:
                click.echo(f"unblocked {h}")
    if as_json:
        emit_json({"unblocked": list(handles)})
