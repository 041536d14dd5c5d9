"""The ``sealdrop`` command: a thin click layer over one module per job."""

from __future__ import annotations

import sys

import click

from crypto.errors import SealdropCryptoError

from .errors import ClientError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sealdrop")
def cli() -> None:
    """sealdrop: end-to-end encrypted clinical file exchange."""


def _register() -> None:
    from .account_cmd import init_cmd, whoami_cmd
    from .age_cmd import age_command
    from .contacts_cmd import contacts
    from .identity_cmd import identity
    from .receive_cmd import inbox_cmd, receive_cmd, watch_cmd
    from .transfer_cmd import send_cmd, status_cmd

    for command in (init_cmd, whoami_cmd, contacts, send_cmd, inbox_cmd, receive_cmd,
                    watch_cmd, status_cmd, identity, age_command):
        cli.add_command(command)


_register()


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
