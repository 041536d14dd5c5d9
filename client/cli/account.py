"""``sealdrop init`` and ``sealdrop whoami``: set the profile up, and say who it is."""

from __future__ import annotations

from pathlib import Path

import click

from sealdrop.crypto.age.scrypt import DEFAULT_WORK_FACTOR, MAX_WORK_FACTOR

from ..profile.account import init_profile, whoami
from ..profile.layout import resolve_home
from ..secrets import read_passphrase
from .options import (
    EXAMPLE_INVITES,
    emit_json,
    examples,
    home_option,
    json_option,
    passphrase_file_option,
)
from .textin import pick, read_text_file

INVITE_ENV = "SEALDROP_INVITE"
INVITE_FILE_ENV = "SEALDROP_INVITE_FILE"
# An invite code is 32 hex digits; a file much longer than that is not one.
_MAX_INVITE_BYTES = 4096


@click.command("init", epilog=examples(
    "sealdrop init --relay https://relay.example.org --handle dr-martin --invite-file -",
    f"    (paste the invite code, e.g. {EXAMPLE_INVITES[0]}, Enter, then Ctrl-D)",
    "SEALDROP_HOME=/srv/lab sealdrop init --relay https://relay.example.org \\",
    "    --handle lab-dupont --invite-file /root/invite.txt \\",
    "    --passphrase-file /etc/sealdrop/pass",
    "",
    "Each invite works once. Typed on the command line, a code is",
    f"visible to other users of this computer (ps): use --invite-file or {INVITE_ENV}.",
))
@click.option("--relay", required=True, envvar="SEALDROP_RELAY", metavar="URL",
              help="The relay's URL (pinned in the profile). Env SEALDROP_RELAY.")
@click.option("--handle", required=True, help="Your handle: 3-64 of a-z 0-9 . _ -")
@click.option("--invite", envvar=INVITE_ENV, metavar="CODE",
              help=f"The invite code from the relay's operator. Env {INVITE_ENV}.")
@click.option("--invite-file", envvar=INVITE_FILE_ENV, metavar="FILE",
              type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help=f"Read the invite code from this file; - reads standard input. "
              f"Env {INVITE_FILE_ENV}.")
@click.option("--ca-file", metavar="PEM",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Trust this certificate authority for the relay (a clinic's own CA); "
              "kept in the profile. SSL_CERT_FILE works too.")
@home_option
@passphrase_file_option
@click.option("--work-factor", type=click.IntRange(10, MAX_WORK_FACTOR),
              default=DEFAULT_WORK_FACTOR, hidden=True)
@json_option
@click.pass_context
def init_cmd(ctx: click.Context, relay: str, handle: str, invite: str | None,
             invite_file: Path | None, ca_file: Path | None, home: Path | None,
             passphrase_file: Path | None, work_factor: int, as_json: bool) -> None:
    """Create your keys, register them on the relay, and pin the relay."""
    invite = _read_invite(ctx, invite, invite_file)
    folder = resolve_home(home)
    passphrase = read_passphrase(confirm=True, passphrase_file=passphrase_file,
                                 prompt="New passphrase for your keys")
    me = init_profile(folder, relay=relay, handle=handle, invite=invite,
                      passphrase=passphrase, work_factor=work_factor, ca_file=ca_file)
    if as_json:
        emit_json(me.to_json())
        return
    click.echo(f"Registered {me.handle} on {me.relay}")
    click.echo(f"Safety number: {me.safety_number}")
    click.echo("Read it to your contacts by phone so they can verify you.")


def _read_invite(ctx: click.Context, invite: str | None, invite_file: Path | None) -> str:
    """The invite from --invite-file (``-``: stdin), $SEALDROP_INVITE or --invite."""
    invite, invite_file = pick(ctx, "invite", "invite_file", invite, invite_file)
    if invite_file is not None:
        invite = read_text_file(invite_file, what="invite code", max_bytes=_MAX_INVITE_BYTES)
    if not invite or not invite.strip():
        raise click.UsageError(
            f"give the invite code: --invite-file FILE (- for standard input), {INVITE_ENV}, "
            "or --invite CODE")
    return invite.strip()


@click.command("whoami", epilog=examples("sealdrop whoami", "sealdrop whoami --json"))
@home_option
@json_option
def whoami_cmd(home: Path | None, as_json: bool) -> None:
    """Your handle, relay and safety number (no passphrase needed)."""
    me = whoami(resolve_home(home))
    if as_json:
        emit_json(me.to_json())
        return
    click.echo(f"Handle:        {me.handle}")
    click.echo(f"Relay:         {me.relay}")
    click.echo(f"Safety number: {me.safety_number}")
