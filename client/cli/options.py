"""Options and output helpers shared by the commands: defined once, used everywhere.

``--home`` and ``--passphrase-file`` (with their environment variables),
``--json``, the ``--chunk-size`` type, JSON output and the "Examples:" epilog.
Importing this module costs click only: the command modules import it, the
top-level ``sealdrop --help`` does not need to.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..profile.layout import DEFAULT_HOME, HOME_ENV
from .terminal import json_for_terminal

F = TypeVar("F", bound=Callable[..., Any])

home_option = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=HOME_ENV,
    help=f"Profile folder (env {HOME_ENV}; default {DEFAULT_HOME}).",
)
passphrase_file_option = click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="SEALDROP_PASSPHRASE_FILE",
    help="Read the passphrase from this file (env SEALDROP_PASSPHRASE_FILE; else "
    "SEALDROP_PASSPHRASE, else the terminal).",
)


def json_flag(help: str) -> Callable[[F], F]:
    """A ``--json`` flag (parameter ``as_json``) with its own help text."""
    return click.option("--json", "as_json", is_flag=True, help=help)


# The commands that can show a progress bar say that --json turns it off.
json_option = json_flag("Machine-readable JSON on stdout (no progress bar).")
json_output_option = json_flag("Machine-readable output.")
# Without it, --json output names no patient (docs/dicom.md, "Patient data in JSON").
json_phi_option = click.option(
    "--json-phi", "json_phi", is_flag=True, envvar="SEALDROP_JSON_PHI",
    help="With --json, also output patient-identifying data: the note, file paths (the "
    "sender's names, which often name the patient) and the full DICOM summary (names, "
    "ids, dates, UIDs). Without it, JSON holds only modalities, counts, sizes, digests, "
    "ids and the sender. Env SEALDROP_JSON_PHI.")


def emit_json(obj: Any) -> None:
    # Terminal-safe: notes, names and ids inside come from senders and the relay.
    click.echo(json_for_terminal(obj))


# Ids as the examples show them: relay ids and invite codes are both 32
# lowercase hex digits (crypto.protocol.new_transfer_id, new_invite_code).
EXAMPLE_RELAY_ID = "3f9a0c1e5b7d42a8916e0d2c4b8a7f10"
EXAMPLE_INVITES = ("5d0b8e2f9a3c4e7f8a1b2c3d4e5f6a7b", "c41e97a05b3d4f2e8d6a1b0c9f8e7d6c")


def examples(*lines: str, heading: str = "Examples") -> str:
    """An epilog of example command lines, kept as written (click's \\b)."""
    return f"\b\n{heading}:\n" + "\n".join(f"  {line}" for line in lines)


_SIZE = re.compile(r"^\s*(\d+)\s*(|b|k|kb|kib|m|mb|mib)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024,
               "m": 1024 * 1024, "mb": 1024 * 1024, "mib": 1024 * 1024}


def byte_size(minimum: int, maximum: int) -> Callable[[click.Context, click.Parameter, Any], int]:
    """An option callback reading a number of bytes within bounds: ``65536``,
    ``64KiB``, ``12MiB`` (also k/K and M; binary units)."""

    def convert(ctx: click.Context, param: click.Parameter, value: Any) -> int:
        if isinstance(value, int):
            n = value
        else:
            m = _SIZE.match(str(value))
            if not m:
                raise click.BadParameter(
                    f"{value!r} is not a size; write e.g. 65536, 64KiB or 12MiB", ctx, param)
            n = int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
        if not minimum <= n <= maximum:
            raise click.BadParameter(
                f"{value} is not between {binary_size(minimum)} and {binary_size(maximum)}",
                ctx, param)
        return n

    return convert


def binary_size(n: int) -> str:
    """``12MiB``, ``64KiB`` or ``1000 bytes``: how ByteSize reads it back."""
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return f"{n} bytes"
