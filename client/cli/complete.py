"""Shell completion values from the profile folder: contact handles and local transfer ids.

Completion runs at every Tab press, inside the user's shell, so it must be
instant and silent: it reads only what the profile keeps unencrypted
(``contacts.json``, and file names in ``sent/``, ``outbox/``, ``inbox-spool/``,
``refused.json``), never asks for the passphrase, never calls the relay, and
never raises (a missing or damaged profile completes nothing). Its values are
handles and relay ids, both checked against their strict formats here, so a
damaged or planted file cannot put anything else on the user's command line.

Which profile: ``--home`` if it was typed before the word being completed,
else ``$SEALDROP_HOME``, else ``~/.sealdrop`` (``layout.resolve_home``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import click
from click.shell_completion import CompletionItem

from sealdrop.crypto.bundle import HANDLE_RE
from sealdrop.crypto.protocol import is_transfer_id

from ..errors import ClientError
from ..profile import layout
from ..profile.jsonstore import read_section

_MAX_STORE = 64 * 1024 * 1024
_MAX_LISTED = 1000  # a shell shows no more usefully


def _home(ctx: click.Context) -> Path:
    home = ctx.params.get("home")
    return layout.resolve_home(home if isinstance(home, (str, Path)) else None)


def _section(path: Path, section: str) -> dict[str, object]:
    try:
        return read_section(path, section, what="completion", max_bytes=_MAX_STORE)
    except ClientError:
        return {}


def _names(folder: Path, suffix: str) -> list[str]:
    """Relay ids from ``<id><suffix>`` file names in ``folder`` (none if it is missing)."""
    try:
        with os.scandir(folder) as it:
            names = [e.name[: -len(suffix)] for e in it if e.name.endswith(suffix)]
    except OSError:
        return []
    return names


def contact_handles(home: Path) -> dict[str, str]:
    """Pinned contacts' handles and their state, from ``contacts.json`` (no passphrase)."""
    out: dict[str, str] = {}
    for handle, entry in _section(home / layout.CONTACTS_FILE, "contacts").items():
        state = entry.get("state") if isinstance(entry, dict) else None
        if HANDLE_RE.fullmatch(handle):
            out[handle] = state if state in ("verified", "unverified") else ""
    return out


def _items(values: Iterable[str], incomplete: str, help_of: dict[str, str] | None = None
           ) -> list[CompletionItem]:
    chosen = sorted({v for v in values if v.startswith(incomplete)})[:_MAX_LISTED]
    return [CompletionItem(v, help=(help_of or {}).get(v) or None) for v in chosen]


def complete_handles(ctx: click.Context, param: click.Parameter,
                     incomplete: str) -> list[CompletionItem]:
    """``--to`` and contact arguments: the pinned contacts, each with its state."""
    try:
        handles = contact_handles(_home(ctx))
    except Exception:  # noqa: BLE001 - a Tab press never shows a traceback
        return []
    return _items(handles, incomplete, handles)


def _ids(values: Iterable[str]) -> list[str]:
    return [v for v in values if is_transfer_id(v)]


def sent_ids(home: Path) -> list[str]:
    """Transfers this profile sent or is sending (``sent/``, ``outbox/``)."""
    return _ids(_names(home / layout.SENT_DIR, layout.SENT_FILE)
                + _names(home / layout.OUTBOX_DIR, layout.OUTBOX_RECORD))


def inbox_ids(home: Path) -> list[str]:
    """Transfers known here that may still wait on the relay: interrupted downloads
    (``inbox-spool/``) and those refused here (``refused.json``)."""
    return _ids(_names(home / layout.SPOOL_DIR, layout.SPOOL_FILE)
                + list(_section(home / layout.REFUSED_FILE, "refused")))


def complete_sent_ids(ctx: click.Context, param: click.Parameter,
                      incomplete: str) -> list[CompletionItem]:
    """``status ID``: this profile's sent transfers."""
    try:
        return _items(sent_ids(_home(ctx)), incomplete)
    except Exception:  # noqa: BLE001 - a Tab press never shows a traceback
        return []


def complete_inbox_ids(ctx: click.Context, param: click.Parameter,
                       incomplete: str) -> list[CompletionItem]:
    """``receive`` / ``dismiss`` IDS: what local records know of the inbox (the relay
    is not asked: a Tab press must not wait on the network)."""
    try:
        return _items(inbox_ids(_home(ctx)), incomplete)
    except Exception:  # noqa: BLE001 - a Tab press never shows a traceback
        return []
