"""The ``sealdrop`` command: a thin click layer over one module per job."""

from __future__ import annotations

import importlib
import sys

import click

from sealdrop.crypto.errors import SealdropCryptoError

from .errors import ClientError

# name -> (module, attribute). Commands are imported only when used, so that
# `sealdrop age` (the recovery tool, and the one benchmarked against age) does
# not pay for the relay client, rich and the rest at every start.
_COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("account_cmd", "init_cmd"),
    "whoami": ("account_cmd", "whoami_cmd"),
    "contacts": ("contacts_cmd", "contacts"),
    "send": ("transfer_cmd", "send_cmd"),
    "inbox": ("receive_cmd", "inbox_cmd"),
    "receive": ("receive_cmd", "receive_cmd"),
    "watch": ("receive_cmd", "watch_cmd"),
    "status": ("transfer_cmd", "status_cmd"),
    "identity": ("identity_cmd", "identity"),
    "age": ("age_cmd", "age_command"),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module = importlib.import_module(f"{__package__}.{target[0]}")
        command = getattr(module, target[1])
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sealdrop")
def cli() -> None:
    """sealdrop: end-to-end encrypted clinical file exchange."""


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("sealdrop: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (ClientError, SealdropCryptoError) as exc:
        click.echo(f"sealdrop: error: {exc}", err=True)
        if getattr(exc, "hint", None):
            click.echo(f"sealdrop: hint: {exc.hint}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("sealdrop: interrupted", err=True)
        sys.exit(130)
