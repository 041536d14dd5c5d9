"""The profile folder's relay settings, and a session: identity + relay client + stores.

``config.json`` (written by ``sealdrop init``) pins the relay URL and the handle
this identity registered there. The relay URL is pinned on purpose: a transfer
must never be sent to whatever relay an environment variable points at today.

    HOME/config.json       {"v": 1, "relay": "https://relay.example", "handle": "dr-martin"}
    HOME/outbox/           unfinished sends (client.outbox)
    HOME/inbox-spool/      ciphertext being downloaded (client.receive)
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from sealdrop.crypto.bundle import check_handle
from sealdrop.crypto.errors import BundleError
from sealdrop.crypto.identity import SecretIdentity

from .contacts import ContactStore
from .errors import ClientError, IdentityError
from .identity import load_identity
from .outfile import atomic_output
from .relay_api import RelayClient
from .replay import ReplayStore
from .secrets import read_passphrase

CONFIG_FILE = "config.json"
_NOT_SET_UP_HINT = "run: sealdrop init --relay URL --handle YOUR-HANDLE --invite CODE"


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    relay: str
    handle: str


def check_relay_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError(f"the relay URL must look like https://relay.example.org, not {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ClientError("the relay URL must not carry a query, fragment or credentials")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def load_config(home: Path) -> ProfileConfig:
    path = Path(home) / CONFIG_FILE
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ClientError(f"the profile {home} is not set up for a relay yet",
                          hint=_NOT_SET_UP_HINT) from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ClientError(f"cannot read {path}; it is damaged", hint=_NOT_SET_UP_HINT) from exc
    try:
        if obj.get("v") != 1:
            raise ValueError("unknown version")
        return ProfileConfig(relay=check_relay_url(str(obj["relay"])),
                             handle=check_handle(str(obj["handle"])))
    except (AttributeError, KeyError, ValueError, BundleError) as exc:
        raise ClientError(f"{path} is damaged: {exc}") from exc


def save_config(home: Path, config: ProfileConfig) -> None:
    data = json.dumps({"v": 1, "relay": config.relay, "handle": config.handle},
                      indent=1, sort_keys=True) + "\n"
    try:
        with atomic_output(Path(home) / CONFIG_FILE, mode=0o600) as f:
            f.write(data.encode("utf-8"))
    except OSError as exc:
        raise ClientError(f"cannot write {home / CONFIG_FILE}: {exc.strerror}") from exc


@dataclass
class Session:
    """An unlocked profile: what every relay-facing command needs."""

    home: Path
    config: ProfileConfig
    identity: SecretIdentity
    relay: RelayClient
    contacts: ContactStore
    replay: ReplayStore

    def close(self) -> None:
        self.relay.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def relay_client(config: ProfileConfig, identity: SecretIdentity) -> RelayClient:
    return RelayClient(config.relay, handle=identity.handle, signing_key=identity.signing_key)


def open_session(home: Path, passphrase_file: Path | None) -> Session:
    """Load the config, ask for the passphrase, unlock the identity, connect."""
    config = load_config(home)
    passphrase = read_passphrase(confirm=False, passphrase_file=passphrase_file)
    identity = load_identity(home, passphrase)
    if identity.handle != config.handle:
        raise IdentityError(
            f"the identity in {home} is {identity.handle!r} but the profile is set up "
            f"for {config.handle!r}"
        )
    return Session(home=home, config=config, identity=identity,
                   relay=relay_client(config, identity), contacts=ContactStore(home),
                   replay=ReplayStore(home))


_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """``7d``, ``12h``, ``30m``, ``2w`` or plain seconds."""
    m = _DURATION.match(text.lower())
    if not m:
        raise ClientError(f"cannot read the duration {text!r}; write e.g. 7d, 12h or 30m")
    return int(m.group(1)) * _UNITS[m.group(2)]


def when(ts: int | None) -> str:
    """A local time for people; '-' for none."""
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover
