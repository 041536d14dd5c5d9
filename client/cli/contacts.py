"""``sealdrop contacts``: pin, verify, list and remove contacts."""

from __future__ import annotations

import time
from pathlib import Path

import click

from sealdrop.crypto.bundle import KeyBundle
from sealdrop.crypto.errors import BundleError

from ..errors import ContactError
from ..profile.contacts import ContactStore
from ..profile.layout import resolve_home
from ..profile.session import open_session
from ..tlog.pin import add_from_relay
from .complete import complete_handles
from .options import (
    emit_json,
    examples,
    home_option,
    json_option,
    json_output_option,
    passphrase_file_option,
)


def _store(home: Path | None) -> ContactStore:
    return ContactStore(resolve_home(home))


@click.group("contacts", epilog=examples(
    "sealdrop contacts add lab-dupont",
    "sealdrop contacts verify lab-dupont '12345 67890 ...'",
    "sealdrop contacts list",
))
def contacts() -> None:
    """People you send to and receive from, with their pinned keys."""


@contacts.command("add", epilog=examples(
    "sealdrop contacts add lab-dupont",
    "sealdrop contacts add lab-dupont --fingerprint '12345 67890 …'",
    "sealdrop contacts add lab-dupont --bundle-file lab.json   (offline)",
))
@click.argument("handle")
@click.option(
    "--bundle-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The contact's key bundle file (from `sealdrop identity export --bundle`); "
    "without it, the bundle is fetched from your relay.",
)
@click.option("--fingerprint", metavar="SAFETY_NUMBER",
              help="Their safety number, compared by phone: marks the contact verified.")
@home_option
@passphrase_file_option
@json_option
def add_cmd(handle: str, bundle_file: Path | None, fingerprint: str | None, home: Path | None,
            passphrase_file: Path | None, as_json: bool) -> None:
    """Pin HANDLE's key bundle (unverified unless --fingerprint matches)."""
    store = _store(home)
    if bundle_file is not None:
        try:
            bundle = KeyBundle.loads(bundle_file.read_bytes())
        except OSError as exc:
            raise ContactError(f"cannot read {bundle_file}: {exc.strerror}") from exc
        except BundleError as exc:
            raise ContactError(f"{bundle_file}: {exc}") from exc
        if bundle.handle != handle:
            raise ContactError(
                f"{bundle_file} is the key bundle of {bundle.handle!r}, not {handle!r}")
        contact = store.add(bundle, now=int(time.time()), fingerprint=fingerprint)
    else:
        with open_session(resolve_home(home), passphrase_file) as session:
            contact = add_from_relay(session, handle, fingerprint)
    if as_json:
        emit_json({"handle": contact.handle, "state": contact.state.value,
                   "safety_number": contact.safety_number})
        return
    click.echo(f"{contact.handle}: {contact.state.value}")
    if not contact.verified:
        click.echo(f"Safety number: {contact.safety_number}")
        click.echo(
            f"Compare it with {handle} by phone, then: sealdrop contacts verify {handle} NUMBER"
        )


@contacts.command("verify", epilog=examples(
    "sealdrop contacts verify lab-dupont 12345 67890 12345 67890 12345 67890")
)
@click.argument("handle", shell_complete=complete_handles)
@click.argument("safety_number", nargs=-1, required=True)
@home_option
def verify_cmd(handle: str, safety_number: tuple[str, ...], home: Path | None) -> None:
    """Mark HANDLE verified: SAFETY_NUMBER is what they read to you (spaces allowed)."""
    contact = _store(home).verify(handle, " ".join(safety_number), now=int(time.time()))
    click.echo(f"{contact.handle}: verified")


@contacts.command(
    "list", epilog=examples("sealdrop contacts list", "sealdrop contacts list --json")
)
@json_output_option
@home_option
def list_cmd(as_json: bool, home: Path | None) -> None:
    """List contacts with their state and safety number."""
    items = _store(home).list()
    if as_json:
        emit_json([
            {
                "handle": c.handle,
                "state": c.state.value,
                "safety_number": c.safety_number,
                "added": c.added,
                "verified_at": c.verified_at,
                "bundle": c.bundle.to_json(),
            }
            for c in items
        ])
        return
    if not items:
        click.echo("no contacts yet")
    for c in items:
        click.echo(f"{c.handle:<24} {c.state.value:<10} {c.safety_number}")


@contacts.command("remove", epilog=examples("sealdrop contacts remove old-lab"))
@click.argument("handle", shell_complete=complete_handles)
@home_option
def remove_cmd(handle: str, home: Path | None) -> None:
    """Forget HANDLE and its pinned key."""
    _store(home).remove(handle)
    click.echo(f"removed {handle}")
