"""``sealdrop config``: the profile's settings beyond the pinned relay (CA file, witnesses)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from ..profile.config import ProfileConfig, check_ca_file, load_config, save_config
from ..profile.layout import resolve_home
from .options import emit_json, examples, home_option, json_option
from .terminal import for_terminal


@click.group("config", epilog=examples(
    "sealdrop config ca-file /etc/clinic/ca.pem",
    "sealdrop config ca-file --clear",
    "sealdrop config ca-file",
))
def config_group() -> None:
    """Profile settings: the relay's certificate authority and the witnesses required."""


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


def _cosignature_vkey(vkey: str) -> str:
    from sealdrop.crypto.errors import SealdropCryptoError
    from sealdrop.crypto.tlog.cosignature import CosignatureVerifier

    try:
        CosignatureVerifier.from_vkey(vkey)
    except (SealdropCryptoError, ValueError) as exc:
        raise click.BadParameter(f"{vkey!r} is not a witness vkey "
                                 f"(NAME+ID+KEY, from `sealdrop witness init`): {exc}") from None
    return vkey


def _show_witnesses(cfg: ProfileConfig, as_json: bool) -> None:
    if as_json:
        emit_json({"witnesses": list(cfg.witnesses),
                   "require_cosignatures": cfg.require_cosignatures})
        return
    for vkey in cfg.witnesses:
        click.echo(f"witness: {for_terminal(vkey)}")
    click.echo(f"cosignatures required: {cfg.require_cosignatures} of {len(cfg.witnesses)}")


@config_group.command("witness", epilog=examples(
    "sealdrop config witness add 'witness.clinic-it.example/w1+1a2b3c4d+BH...'",
    "sealdrop config witness remove 'witness.clinic-it.example/w1+1a2b3c4d+BH...'",
    "sealdrop config witness",
))
@click.argument("action", required=False, type=click.Choice(["add", "remove"]))
@click.argument("vkey", required=False)
@home_option
@json_option
def witness_cmd(action: str | None, vkey: str | None, home: Path | None, as_json: bool) -> None:
    """Trust (add) or stop trusting (remove) a witness's VKEY; no ACTION lists them."""
    folder = resolve_home(home)
    cfg = load_config(folder)
    if action is not None and vkey is None:
        raise click.UsageError(f"give the witness's VKEY to {action}")
    if action is None and vkey is not None:
        raise click.UsageError("say what to do with VKEY: add or remove")
    if action == "add" and vkey is not None and vkey not in cfg.witnesses:
        cfg = dataclasses.replace(cfg, witnesses=(*cfg.witnesses, _cosignature_vkey(vkey)))
        save_config(folder, cfg)
    elif action == "remove" and vkey is not None:
        if vkey not in cfg.witnesses:
            raise click.BadParameter(f"{vkey!r} is not a witness of this profile",
                                     param_hint="VKEY")
        rest = tuple(w for w in cfg.witnesses if w != vkey)
        if cfg.require_cosignatures > len(rest):
            # Refused, not lowered silently: the practice chose that many witnesses.
            raise click.UsageError(
                f"this profile requires {cfg.require_cosignatures} cosignatures; lower it "
                f"first (sealdrop config require-cosignatures {len(rest)})")
        cfg = dataclasses.replace(cfg, witnesses=rest)
        save_config(folder, cfg)
    _show_witnesses(cfg, as_json)


@config_group.command("require-cosignatures", epilog=examples(
    "sealdrop config require-cosignatures 2",
    "sealdrop config require-cosignatures 0",
))
@click.argument("n", type=click.IntRange(min=0))
@home_option
@json_option
def require_cosignatures_cmd(n: int, home: Path | None, as_json: bool) -> None:
    """Refuse the relay's checkpoint unless N trusted witnesses cosigned it (0: off)."""
    folder = resolve_home(home)
    cfg = load_config(folder)
    if n > len(cfg.witnesses):
        raise click.UsageError(f"only {len(cfg.witnesses)} witnesses are configured; "
                               "add them first (sealdrop config witness add VKEY)")
    cfg = dataclasses.replace(cfg, require_cosignatures=n)
    save_config(folder, cfg)
    _show_witnesses(cfg, as_json)
