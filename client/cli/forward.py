"""``--to-pacs``/``--to-dicomweb`` of ``receive`` and ``watch``, and ``sealdrop forward``:
verified transfers into the lab's PACS, and their reports."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..errors import ClientError
from ..profile.layout import resolve_home
from ..receive.forward import Forwarder, ForwardReport, Target
from .options import (
    EXAMPLE_RELAY_ID,
    emit_json,
    examples,
    home_option,
    json_output_option,
    json_phi_option,
)
from .terminal import for_terminal as safe


def forward_options(f: click.decorators.FC) -> click.decorators.FC:
    """``--to-pacs``, ``--calling-aet``, ``--to-dicomweb`` (with their environment variables)."""
    f = click.option(
        "--to-dicomweb", metavar="URL", envvar="SEALDROP_TO_DICOMWEB",
        help="After verification, store every DICOM instance into this DICOMweb server "
        "(STOW-RS; Orthanc's REST API if it has no DICOMweb). Credentials: "
        "SEALDROP_DICOMWEB_AUTH_FILE (a file holding USER:PASSWORD) or "
        "SEALDROP_DICOMWEB_AUTH, never the command line. Env SEALDROP_TO_DICOMWEB.")(f)
    f = click.option(
        "--calling-aet", metavar="AET", default="SEALDROP", show_default=True,
        envvar="SEALDROP_CALLING_AET",
        help="Our AE title towards the PACS. Env SEALDROP_CALLING_AET.")(f)
    f = click.option(
        "--to-pacs", metavar="AET@HOST:PORT", envvar="SEALDROP_TO_PACS",
        help="After verification, C-STORE every DICOM instance into this PACS (its AE "
        "title, host, port). Env SEALDROP_TO_PACS.")(f)
    return f


def make_forwarder(home: Path, to_pacs: str | None, calling_aet: str, to_dicomweb: str | None,
                   *, interval: float = 30.0, max_backoff: float = 300.0) -> Forwarder:
    from ..dicom.forward_web import auth_from_env

    targets = []
    if to_pacs:
        targets.append(Target.pacs(to_pacs, calling_aet))
    if to_dicomweb:
        targets.append(Target.dicomweb(to_dicomweb))
    return Forwarder(home, targets, auth=auth_from_env(os.environ), interval=interval,
                     max_backoff=max_backoff)


def say_forward(rep: ForwardReport) -> None:
    """Human report: a line per instance not stored, a summary line, errors on stderr."""
    where = rep.target.describe()
    n, total = sum(rep.stored), len(rep.files)
    if rep.done:
        click.echo(f"  forwarded to {where}: {n} of {total} DICOM instances stored")
        return
    for path, ok, status, why in zip(rep.files, rep.stored, rep.status, rep.reason,
                                     strict=True):
        if not ok and (status or why):
            click.echo(f"  not stored in {where}: {safe(path)} ({safe(status or '-')}"
                       f"{': ' + safe(why) if why else ''})")
    click.echo(f"  forward to {where} PENDING: {n} of {total} DICOM instances stored")
    click.echo(f"sealdrop: error: transfer {safe(rep.relay_id)}: {safe(rep.error)}", err=True)
    if rep.hint:
        click.echo(f"sealdrop: hint: {safe(rep.hint)}", err=True)


@click.command("forward", epilog=examples(
    "sealdrop forward                     # retry every pending forward",
    f"sealdrop forward {EXAMPLE_RELAY_ID} --to-pacs LAB_PACS@pacs.lab.local:104",
    "sealdrop forward --to-dicomweb https://pacs.lab.local/dicom-web --json",
    "",
    "Only transfers received with --to-pacs or --to-dicomweb: their files' places "
    "are recorded.",
))
@click.argument("relay_ids", metavar="[IDS]...", nargs=-1)
@forward_options
@home_option
@json_output_option
@json_phi_option
def forward_cmd(relay_ids: tuple[str, ...], to_pacs: str | None, calling_aet: str,
                to_dicomweb: str | None, home: Path | None, as_json: bool,
                json_phi: bool) -> None:
    """Send received DICOM into a PACS again: pending forwards, or IDS to a new target."""
    fwd = make_forwarder(resolve_home(home), to_pacs, calling_aet, to_dicomweb)
    known = fwd.store.load()
    for rid in relay_ids:
        if rid not in known:
            raise ClientError(f"no forward recorded for transfer {safe(rid[:64])}",
                              hint="only transfers received here with --to-pacs or "
                              "--to-dicomweb can be forwarded again")
        if fwd.targets:
            fwd.add_targets(rid)
    reports = fwd.run_pending(relay_ids or None, only_mine=bool(fwd.targets))
    if as_json:
        emit_json({"forwards": [r.to_json(phi=json_phi) for r in reports]})
    else:
        if not reports:
            click.echo("no forward pending")
        for r in reports:
            click.echo(f"transfer {safe(r.relay_id)}:")
            say_forward(r)
    if any(not r.done for r in reports):
        raise SystemExit(1)
