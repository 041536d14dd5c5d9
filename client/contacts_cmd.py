"""``sealdrop contacts``: pin, verify, list and remove contacts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from crypto.bundle import KeyBundle
from crypto.errors import BundleError

from .contacts import ContactStore
from .errors import ContactError
from .identity import resolve_home
from .identity_cmd import home_option


def _store(home: Path | None) -> ContactStore:
    return ContactStore(resolve_home(home))


@click.group(
    "contacts",
    epilog="\b\nExamples:\n  sealdrop contacts add lab-dupont --bundle-file lab.json\n"
    "  sealdrop contacts verify lab-dupont '12345 67890 ...'\n  sealdrop contacts list",
)
def contacts() -> None:
    """People you send to and receive from, with their pinned keys."""


@contacts.command("add")
@click.argument("handle")
@click.option(
    "--bundle-file",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The contact's key bundle (from `sealdrop identity export --bundle`).",
)
@click.option("--fingerprint", metavar="SAFETY_NUMBER",
              help="Their safety number, compared by phone: marks the contact verified.")
@home_option
def add_cmd(handle: str, bundle_file: Path, fingerprint: str | None, home: Path | None) -> None:
    """Pin HANDLE's key bundle (unverified unless --fingerprint matches)."""
    try:
        bundle = KeyBundle.loads(bundle_file.read_bytes())
    except OSError as exc:
        raise ContactError(f"cannot read {bundle_file}: {exc.strerror}") from exc
    except BundleError as exc:
        raise ContactError(f"{bundle_file}: {exc}") from exc
    if bundle.handle != handle:
        raise ContactError(f"{bundle_file} is the key bundle of {bundle.handle!r}, not {handle!r}")
    contact = _store(home).add(bundle, now=int(time.time()), fingerprint=fingerprint)
    click.echo(f"{contact.handle}: {contact.state.value}")
    if not contact.verified:
        click.echo(f"Safety number: {contact.safety_number}")
        click.echo(
            f"Compare it with {handle} by phone, then: sealdrop contacts verify {handle} NUMBER"
        )


@contacts.command("verify")
@click.argument("handle")
@click.argument("safety_number", nargs=-1, required=True)
@home_option
def verify_cmd(handle: str, safety_number: tuple[str, ...], home: Path | None) -> None:
    """Mark HANDLE verified: SAFETY_NUMBER is what they read to you (spaces allowed)."""
    contact = _store(home).verify(handle, " ".join(safety_number), now=int(time.time()))
    click.echo(f"{contact.handle}: verified")


@contacts.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@home_option
def list_cmd(as_json: bool, home: Path | None) -> None:
    """List contacts with their state and safety number."""
    items = _store(home).list()
    if as_json:
        click.echo(json.dumps([
            {
                "handle": c.handle,
                "state": c.state.value,
                "safety_number": c.safety_number,
                "added": c.added,
                "verified_at": c.verified_at,
                "bundle": c.bundle.to_json(),
            }
            for c in items
        ], sort_keys=True))
        return
    if not items:
        click.echo("no contacts yet")
    for c in items:
        click.echo(f"{c.handle:<24} {c.state.value:<10} {c.safety_number}")


@contacts.command("remove")
@click.argument("handle")
@home_option
def remove_cmd(handle: str, home: Path | None) -> None:
    """Forget HANDLE and its pinned key."""
    _store(home).remove(handle)
    click.echo(f"removed {handle}")
