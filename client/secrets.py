"""Reading passphrases: from the environment for services, else the terminal.

Never from argv (visible in ``ps``), never logged, never echoed back.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from .errors import ClientError

PASSPHRASE_ENV = "SEALDROP_PASSPHRASE"  # noqa: S105 - the variable name, not a secret


def read_passphrase(*, confirm: bool, passphrase_file: Path | None = None,
                    prompt: str = "Passphrase") -> bytes:
    if passphrase_file is not None:
        try:
            text = passphrase_file.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ClientError(f"cannot read the passphrase file {passphrase_file}") from exc
        if not text:
            raise ClientError(f"the passphrase file {passphrase_file} is empty")
        return text.encode("utf-8")
    env = os.environ.get(PASSPHRASE_ENV)
    if env is not None:
        if not env:
            raise ClientError(f"{PASSPHRASE_ENV} is set but empty")
        return env.encode("utf-8")
    try:
        with open("/dev/tty"):  # noqa: SIM115 - only checking a terminal exists
            pass
    except OSError as exc:
        raise ClientError(
            "a passphrase is needed but there is no terminal to ask on",
            hint=f"set {PASSPHRASE_ENV} or use --passphrase-file",
        ) from exc
    text = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True)
    if not text:
        raise ClientError("the passphrase is empty")
    return str(text).encode("utf-8")
