"""``sealdrop identity``: create, show and export the profile's identity."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sealdrop.crypto import safety
from sealdrop.crypto.age.scrypt import DEFAULT_WORK_FACTOR, MAX_WORK_FACTOR

from ..errors import ClientError
from ..profile.identity import create_identity, load_identity, load_public_bundle
from ..profile.layout import resolve_home
from ..secrets import read_passphrase
from .options import (
    emit_json,
    examples,
    home_option,
    json_output_option,
    passphrase_file_option,
)


@click.group("identity", epilog=examples(
    "sealdrop identity create --handle dr-martin",
    "sealdrop identity show",
    "sealdrop identity export --age > key.txt",
))
def identity() -> None:
    """Your keys: a signing key and the age keys it vouches for."""


@identity.command("create", epilog=examples(
    "sealdrop identity create --handle dr-martin",
    "sealdrop identity create --handle lab-dupont --home /srv/lab --passphrase-file pw",
))
@click.option("--handle", required=True, help="Your handle: 3-64 of a-z 0-9 . _ -")
@home_option
@passphrase_file_option
@click.option(
    "--work-factor",
    type=click.IntRange(10, MAX_WORK_FACTOR),
    default=DEFAULT_WORK_FACTOR,
    show_default=True,
    hidden=True,
    help="scrypt log2(N) protecting the identity file.",
)
def create_cmd(
    handle: str, home: Path | None, passphrase_file: Path | None, work_factor: int
) -> None:
    """Create a new identity in the profile folder, protected by a passphrase."""
    folder = resolve_home(home)
    passphrase = read_passphrase(
        confirm=True, passphrase_file=passphrase_file, prompt="New passphrase for your keys"
    )
    ident = create_identity(folder, handle, passphrase, work_factor=work_factor)
    click.echo(f"Created identity {ident.handle} in {folder}")
    click.echo(f"Safety number: {ident.safety_number}")
    click.echo("Read it to your contacts by phone so they can verify you.")


@identity.command("show", epilog=examples("sealdrop identity show --json", heading="Example"))
@home_option
@json_output_option
def show_cmd(home: Path | None, as_json: bool) -> None:
    """Show your handle, safety number and public keys (no passphrase needed)."""
    bundle = load_public_bundle(resolve_home(home))
    number = safety.safety_number(bundle.signing_key)
    if as_json:
        emit_json({
            "handle": bundle.handle,
            "safety_number": number,
            "safety_qr": safety.qr_payload(bundle.signing_key),
            "x25519": bundle.x25519,
            "pq": bundle.pq,
            "created": bundle.created,
            "bundle": bundle.to_json(),
        })
        return
    click.echo(f"Handle:        {bundle.handle}")
    click.echo(f"Safety number: {number}")
    click.echo(f"X25519 key:    {bundle.x25519}")
    click.echo(f"PQ key:        {bundle.pq[:40]}…")


@identity.command("export", epilog=examples(
    "sealdrop identity export --age > key.txt",
    "age -d -i key.txt transfer.age | tar -x",
    "sealdrop identity export --bundle > my-bundle.json",
))
@home_option
@passphrase_file_option
@click.option("--age", "as_age", is_flag=True, help="Print the secret AGE-SECRET-KEY-… lines.")
@click.option("--no-pq", is_flag=True, help="With --age: only the X25519 key (age < 1.3).")
@click.option("--bundle", "as_bundle", is_flag=True, help="Print the public key bundle (JSON).")
def export_cmd(
    home: Path | None, passphrase_file: Path | None, as_age: bool, no_pq: bool, as_bundle: bool
) -> None:
    """Export your secret age keys (--age) or your public key bundle (--bundle)."""
    folder = resolve_home(home)
    if as_age == as_bundle:
        raise click.UsageError("give exactly one of --age or --bundle")
    if as_bundle:
        click.echo(load_public_bundle(folder).dumps())
        return
    passphrase = read_passphrase(confirm=False, passphrase_file=passphrase_file)
    ident = load_identity(folder, passphrase)
    if sys.stdout.isatty():
        click.echo("warning: printing SECRET keys to the terminal", err=True)
    try:
        sys.stdout.write(ident.export_age(pq=not no_pq))
        sys.stdout.flush()
    except OSError as exc:
        raise ClientError(f"cannot write the keys: {exc.strerror}") from exc
