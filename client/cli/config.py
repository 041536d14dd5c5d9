"""``sealdrop config``: the profile's settings beyond the pinned relay (the CA file)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from ..profile.config import check_ca_file, load_config, save_config
from ..profile.layout import resolve_home
from .options import emit_json, examples, home_option, json_option
from .terminal import for_terminal


@click.group("config", epilog=examples(
    "sealdrop config ca-file /etc/clinic/ca.pem",
    "sealdrop config ca-file --clear",
    "sealdrop config ca-file",
))
def config_group() -> None:
    """Profile settings: the certificate authority the relay's certificate comes from."""


@config_group.command("ca-file")
@click.argument("path", required=False,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--clear", is_flag=True, help="Trust only the system's authorities again.")
@home_option
@json_option
def ca_file_cmd(path: Path | None, clear: bool, home: Path | None, as_json: bool) -> None:
    """Trust PATH (a PEM CA certificate) for the relay; no PATH shows the setting."""
    if path is not None and clear:
        raise click.UsageError("give a PATH or --clear, not both")
    folder = resolve_home(home)
    cfg = load_config(folder)
    if path is not None:
        cfg = dataclasses.replace(cfg, ca_file=check_ca_file(path))
    elif clear:
        cfg = dataclasses.replace(cfg, ca_file=None)
    if path is not None or clear:
        save_config(folder, cfg)
    if as_json:
        emit_json({"ca_file": cfg.ca_file})
    elif cfg.ca_file is None:
        click.echo("CA file: none (the system's authorities and SSL_CERT_FILE)")
    else:
        click.echo(f"CA file: {for_terminal(cfg.ca_file)}")
