"""``watch --on-receive CMD``: the three options, and the one log line per run.

The runner is ``receive/hook.py``; this module only parses the options into a
``Hook`` (one parameter for the command, ``on_receive``) and reports each run.

``--on-receive-phi`` is its own flag rather than ``--json-phi``: the JSON
lines of ``watch`` usually go to a log collector, the hook to the lab's own
program (a LIMS wants the patient's name; the log must not have it), so
either can be chosen without the other.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable
from typing import Any

import click

from ..durations import DAY
from ..receive.hook import DEFAULT_TIMEOUT, Hook, HookOutcome, parse_command, run_hook
from ..receive.transfer import ReceiveResult
from .format import Seconds
from .options import emit_json
from .terminal import for_terminal

_OPTIONS = (
    click.option(
        "--on-receive", "on_receive_cmd", envvar="SEALDROP_ON_RECEIVE", metavar="CMD",
        help="Run CMD once per verified and placed case (no shell: write sh -c '…' for "
        "one), with the case in SEALDROP_* variables (docs/usage.md). Its failure or hang "
        "never stops watch. Env SEALDROP_ON_RECEIVE."),
    click.option(
        "--on-receive-timeout", type=Seconds(1, DAY), default=f"{DEFAULT_TIMEOUT:.0f}s",
        show_default=True, envvar="SEALDROP_ON_RECEIVE_TIMEOUT",
        help="Kill the --on-receive command (and its children) after this long, in seconds "
        "or e.g. 2m. Env SEALDROP_ON_RECEIVE_TIMEOUT."),
    click.option(
        "--on-receive-phi", is_flag=True, envvar="SEALDROP_ON_RECEIVE_PHI",
        help="Also give the command the patient's name, study date, note's first line, "
        "label and case folder (patient data). Env SEALDROP_ON_RECEIVE_PHI."),
)


def on_receive_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add the three options to a click command; it gets ``on_receive: Hook | None``."""

    @functools.wraps(f)
    def command(*args: Any, on_receive_cmd: str | None, on_receive_timeout: float,
                on_receive_phi: bool, **kwargs: Any) -> Any:
        return f(*args, on_receive=chosen(on_receive_cmd, on_receive_timeout, on_receive_phi),
                 **kwargs)

    wrapped: Callable[..., Any] = command
    for option in reversed(_OPTIONS):
        wrapped = option(wrapped)
    return wrapped


def chosen(command: str | None, timeout: float, phi: bool) -> Hook | None:
    if command is None:
        if phi:
            raise click.UsageError("--on-receive-phi needs --on-receive CMD")
        return None
    return Hook(argv=parse_command(command), timeout=timeout, phi=phi)


def run_on_receive(hook: Hook | None, r: ReceiveResult, *, as_json: bool) -> None:
    """Run the hook for a placed case and log the run in one line (stderr), or one JSON
    event; nothing of the case but its relay id."""
    if hook is None:
        return
    try:
        outcome = run_hook(hook, r)
    except Exception as exc:  # noqa: BLE001 - the case is placed: never report it refused
        outcome = HookOutcome(relay_id=r.relay_id, status=None, seconds=0.0,
                              not_started=f"unexpected {type(exc).__name__}")
    if as_json:
        emit_json({"event": "on_receive", **outcome.to_json()})
        return
    stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    level = "" if outcome.ok else "warning: "
    click.echo(f"{stamp} sealdrop: {level}{for_terminal(outcome.line(hook.timeout))}", err=True)
