"""``sealdrop witness``: cosign a relay's checkpoints as an independent third party."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

import click

from .options import examples

_key_file = click.option(
    "--key-file", required=True, type=click.Path(dir_okay=False, path_type=Path),
    envvar="SEALDROP_WITNESS_KEY_FILE",
    help="The witness's private cosignature key (env SEALDROP_WITNESS_KEY_FILE).")


@click.group("witness", epilog=examples(
    "sealdrop witness init --name witness.clinic-it.example/w1 --key-file /var/lib/w/key",
    "sealdrop witness serve --key-file /var/lib/w/key --state /var/lib/w/state.json "
    "--log 'sealdrop.invalid/relay1+1a2b3c4d+AXk...' --listen 127.0.0.1:8790",
))
def witness_group() -> None:
    """Cosign a relay's log checkpoints as an independent witness (C2SP tlog-witness)."""


@witness_group.command("init")
@click.option("--name", required=True,
              help="The witness's name, a URL without scheme (e.g. witness.example/w1).")
@_key_file
def init_cmd(name: str, key_file: Path) -> None:
    """Make a new cosignature key; prints the vkey that relays and clients configure."""
    from ..witness.keyfile import create_key_file

    signer = create_key_file(key_file, name)
    click.echo(signer.vkey)


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8790)")
    return host.strip("[]"), int(port)


@witness_group.command("serve")
@_key_file
@click.option("--log", "log_vkeys", multiple=True, required=True, metavar="VKEY",
              envvar="SEALDROP_WITNESS_LOG",
              help="A log key to follow (the relay's vkey from /v1/info); repeatable "
              "(env SEALDROP_WITNESS_LOG, space-separated).")
@click.option("--state", "state_file", required=True,
              type=click.Path(dir_okay=False, path_type=Path), envvar="SEALDROP_WITNESS_STATE",
              help="What this witness cosigned, per log (env SEALDROP_WITNESS_STATE). "
              "Back it up; never delete it.")
@click.option("--listen", default="127.0.0.1:8790", show_default=True,
              envvar="SEALDROP_WITNESS_LISTEN",
              help="HOST:PORT to serve POST /add-checkpoint on (env SEALDROP_WITNESS_LISTEN).")
def serve_cmd(key_file: Path, log_vkeys: tuple[str, ...], state_file: Path, listen: str) -> None:
    """Serve the C2SP tlog-witness API: cosign each checkpoint consistent with the last."""
    from sealdrop.crypto.errors import SealdropCryptoError
    from sealdrop.crypto.tlog.note import NoteVerifier

    from ..witness.keyfile import load_key_file
    from ..witness.service import LOGGER_NAME, Witness, serve
    from ..witness.state import exclusive

    host, port = _listen(listen)
    logs: dict[str, list[NoteVerifier]] = {}
    for vkey in log_vkeys:
        try:
            verifier = NoteVerifier.from_vkey(vkey)
        except (SealdropCryptoError, ValueError) as exc:
            raise click.BadParameter(f"{vkey!r} is not a log vkey: {exc}",
                                     param_hint="--log") from None
        logs.setdefault(verifier.name, []).append(verifier)
    signer = load_key_file(key_file)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def ready(url: str) -> None:
        click.echo(f"sealdrop witness: {signer.vkey}", err=True)
        click.echo(f"sealdrop witness: serving {url} for {', '.join(sorted(logs))}", err=True)

    async def main() -> None:
        task = asyncio.current_task()
        if task is None:  # never: asyncio.run runs main() as a task
            raise RuntimeError("no running task")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        await serve(Witness(signer, logs, state_file), host, port, ready)

    with exclusive(state_file), contextlib.suppress(asyncio.CancelledError):
        asyncio.run(main())
