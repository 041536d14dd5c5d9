"""``sealdrop dicom-listen``: a DICOM node the scanner's software sends studies to."""

from __future__ import annotations

import datetime
from pathlib import Path

import click

from sealdrop.crypto.protocol import DEFAULT_CHUNK_SIZE

from ..dicom.deidentify import DeidOptions
from ..dicom.dispatch import SendOptions
from ..dicom.listener import ListenConfig, check_recipients, default_spool, run
from ..dicom.routes import RouteTable, build_table, load_routes
from ..dicom.scp import TlsFiles, server_tls
from ..durations import DAY
from ..errors import ClientError
from ..profile.layout import resolve_home
from ..profile.session import open_session
from ..send.upload import MAX_CHUNK_SIZE, MIN_CHUNK_SIZE
from .complete import complete_handles
from .deid import DEID_LIMITS, deid_options
from .format import parse_duration, parse_expiry
from .options import binary_size, byte_size, examples, home_option, passphrase_file_option
from .terminal import for_terminal as safe

_GIB = 1024 * 1024 * 1024


def _log(message: str) -> None:
    stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    # AE titles and error texts come from the network: terminal-safe.
    click.echo(f"{stamp} sealdrop: {safe(message)}", err=True)


@click.command("dicom-listen", epilog=examples(
    "sealdrop dicom-listen --to labo-dupont",
    "sealdrop dicom-listen --bind 0.0.0.0 --port 11112 --aet SEALDROP --to labo-dupont --idle 60s",
    "sealdrop dicom-listen --routes /etc/sealdrop/dicom-routes.toml --bind 192.168.1.20",
    "sealdrop dicom-listen --to labo-dupont --tls-cert node.pem --tls-key node.key "
    "--tls-ca scanners-ca.pem",
    "",
    "Point the scanner's \"send to PACS\" at this host, port and AE title. Each study",
    "becomes one transfer once its association is released and it was idle for --idle.",
))
@click.option("--port", type=click.IntRange(0, 65535), default=11112, show_default=True,
              envvar="SEALDROP_DICOM_PORT", help="TCP port (0: any free port). "
              "Env SEALDROP_DICOM_PORT.")
@click.option("--bind", "host", default="127.0.0.1", show_default=True,
              envvar="SEALDROP_DICOM_BIND", metavar="ADDR",
              help="Address to listen on; the default accepts only this computer. Give the "
              "LAN address (or 0.0.0.0) for a scanner on the network. Env SEALDROP_DICOM_BIND.")
@click.option("--aet", default="SEALDROP", show_default=True, envvar="SEALDROP_DICOM_AET",
              help="This node's AE title; studies sent to it go to --to. "
              "Env SEALDROP_DICOM_AET.")
@click.option("--to", "to", multiple=True, metavar="HANDLE", envvar="SEALDROP_DICOM_TO",
              shell_complete=complete_handles,
              help="A recipient of studies sent to --aet (repeat for several). "
              "Env SEALDROP_DICOM_TO (handles separated by spaces).")
@click.option("--routes", "routes_file", envvar="SEALDROP_DICOM_ROUTES", metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="TOML file routing other called AE titles to recipients "
              "([routes.AET] to = [...], optional [default]). Env SEALDROP_DICOM_ROUTES.")
@click.option("--idle", default="30s", show_default=True, envvar="SEALDROP_DICOM_IDLE",
              metavar="DURATION",
              help="Send a study once nothing arrived for it for this long (e.g. 30s, 5m; 1 "
              "second to 1 day).")
@click.option("--spool", type=click.Path(file_okay=False, path_type=Path),
              envvar="SEALDROP_DICOM_SPOOL", metavar="DIR",
              help="Where received instances wait (default: dicom-listen/ in the profile "
              "folder). Env SEALDROP_DICOM_SPOOL.")
@click.option("--min-free", callback=byte_size(0, 1 << 50), default="1024MiB",
              show_default=True, metavar="SIZE",
              help="Refuse instances (status A700) when the spool's disk has less free space.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              envvar="SEALDROP_DICOM_TLS_CERT", help="DICOM TLS: this node's certificate (PEM).")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              envvar="SEALDROP_DICOM_TLS_KEY", help="DICOM TLS: its private key (PEM).")
@click.option("--tls-ca", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              envvar="SEALDROP_DICOM_TLS_CA",
              help="DICOM TLS: accept only clients with a certificate signed by this CA.")
@click.option("--expires", default="30d", show_default=True, metavar="DURATION",
              help="Delete each transfer from the relay after this long.")
@click.option("--allow-unverified", is_flag=True,
              help="Also send to contacts whose safety number was never compared.")
@click.option("--chunk-size", callback=byte_size(MIN_CHUNK_SIZE, MAX_CHUNK_SIZE),
              default=binary_size(DEFAULT_CHUNK_SIZE), show_default=True,
              envvar="SEALDROP_CHUNK_SIZE", metavar="SIZE",
              help="Upload in chunks of SIZE, as for send. Env SEALDROP_CHUNK_SIZE.")
# How long one send attempt rides out a relay outage before the study is
# retried later with backoff. Hidden: a knob for services and tests.
@click.option("--retry-for", type=click.FloatRange(0, 86400), default=60.0,
              envvar="SEALDROP_RETRY_FOR", hidden=True)
@deid_options
@home_option
@passphrase_file_option
def dicom_listen_cmd(port: int, host: str, aet: str, to: tuple[str, ...],
                     routes_file: Path | None, idle: str, spool: Path | None, min_free: int,
                     tls_cert: Path | None, tls_key: Path | None, tls_ca: Path | None,
                     expires: str, allow_unverified: bool, chunk_size: int,
                     deidentify: DeidOptions | None, retry_for: float, home: Path | None,
                     passphrase_file: Path | None) -> None:
    """Receive studies from a scanner (DICOM C-STORE) and send each as one transfer."""
    file_table: RouteTable | None = load_routes(routes_file) if routes_file else None
    table = build_table(aet, to, file_table)
    if (tls_cert is None) != (tls_key is None):
        raise ClientError("give both --tls-cert and --tls-key for DICOM TLS")
    if tls_ca is not None and tls_cert is None:
        raise ClientError("--tls-ca needs --tls-cert and --tls-key")
    tls = server_tls(TlsFiles(tls_cert, tls_key, tls_ca)) if tls_cert and tls_key else None
    options = SendOptions(expires_in=parse_expiry(expires), allow_unverified=allow_unverified,
                          retry_for=retry_for, chunk_size=chunk_size, deidentify=deidentify)
    profile = resolve_home(home)
    config = ListenConfig(host=host, port=port, aet=aet.strip(), table=table,
                          spool=spool if spool is not None else default_spool(profile),
                          idle=float(parse_duration(idle, name="--idle", high=DAY)),
                          min_free=min_free, options=options,
                          tls=tls)
    with open_session(profile, passphrase_file) as session:
        check_recipients(session, table, allow_unverified=allow_unverified)

        def listening(bound: int) -> None:
            routes = "; ".join(f"{r.aet} -> {', '.join(r.to)}" for r in table.routes.values())
            if table.default is not None:
                routes += f"; any other -> {', '.join(table.default.to)}"
            _log(f"listening for DICOM on {host}:{bound}{' (TLS)' if tls else ''} as "
                 f"{config.aet}; routes: {routes}; spool {config.spool}")
            if deidentify is not None:
                _log(f"every study is sent de-identified: {deidentify.describe()}. "
                     f"{DEID_LIMITS}")

        run(session, config, log=_log, on_listening=listening)
