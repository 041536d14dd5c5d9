"""``sealdrop desk``: the local web app for the front desk (client/desk/)."""

from __future__ import annotations

from pathlib import Path

import click

from ..profile.config import load_config
from ..profile.layout import resolve_home
from .options import examples, home_option


@click.command("desk", epilog=examples(
    "sealdrop desk", "sealdrop desk --no-browser --port 8710"))
@click.option("--no-browser", is_flag=True,
              help="Do not open a browser: print the address (with its key) and serve.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default="a free one",
              help="The port on 127.0.0.1 to serve on.")
@home_option
def desk_cmd(no_browser: bool, port: int, home: Path | None) -> None:
    """Open the desk: send, inbox, contacts and status in your browser, on this computer."""
    from ..desk.app import serve

    resolved = resolve_home(home)
    load_config(resolved)  # not set up: say so here, not in the page
    serve(resolved, port=port, open_browser=not no_browser)
