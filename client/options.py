"""Options and output helpers shared by the relay-facing commands."""

from __future__ import annotations

import json
from typing import Any

import click

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Machine-readable JSON on stdout (no progress bar).")


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, sort_keys=True, ensure_ascii=False))


def examples(*lines: str) -> str:
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)
