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


@click.command("init", epilog=examples(
    "sealdrop init --relay https://relay.example.org --handle dr-martin \\",
    f"    --invite {EXAMPLE_INVITES[0]}",  # each code works once, hence two
    "SEALDROP_HOME=/srv/lab sealdrop init --relay https://relay.example.org \\",
    f"    --handle lab-dupont --invite {EXAMPLE_INVITES[1]} \\",
    "    --passphrase-file /etc/sealdrop/pass",
))
@click.option("--relay", required=True, envvar="SEALDROP_RELAY", metavar="URL",
              help="The relay's URL (pinned in the profile). Env SEALDROP_RELAY.")
@click.option("--handle", required=True, help="Your handle: 3-64 of a-z 0-9 . _ -")
@click.option("--invite", required=True, envvar="SEALDROP_INVITE", metavar="CODE",
              help="The invite code from the relay's operator. Env SEALDROP_INVITE.")
@home_option
@passphrase_file_option
@click.option("--work-factor", type=click.IntRange(10, MAX_WORK_FACTOR),
              default=DEFAULT_WORK_FACTOR, hidden=True)
@json_option
def init_cmd(relay: str, handle: str, invite: str, home: Path | None,
             passphrase_file: Path | None, work_factor: int, as_json: bool) -> None:
    """Create your keys, register them on the relay, and pin the relay."""
    folder = resolve_home(home)
    passphrase = read_passphrase(confirm=True, passphrase_file=passphrase_file,
                                 prompt="New passphrase for your keys")
    me = init_profile(folder, relay=relay, handle=handle, invite=invite,
                      passphrase=passphrase, work_factor=work_factor)
    if as_json:
        emit_json(me.to_json())
        return
    click.echo(f"Registered {me.handle} on {me.relay}")
    click.echo(f"Safety number: {me.safety_number}")
    click.echo("Read it to your contacts by phone so they can verify you.")


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
