"""The relay pin: which relay this profile registered on, and under which handle.

The config file of the profile folder (``layout.CONFIG_FILE``), written by
``sealdrop init``::

    {"v": 1, "relay": "https://relay.example", "handle": "dr-martin",
     "ca_file": "/etc/clinic/ca.pem"}

The relay URL is pinned on purpose: a transfer must never be sent to whatever
relay an environment variable points at today.

``ca_file`` (optional): a clinic's own certificate authority, trusted for the
relay's TLS certificate besides the system's (``sealdrop init --ca-file`` or
``sealdrop config ca-file``). An absolute path: the file is read at each
connection, so a renewed CA certificate needs no new setting.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from sealdrop.crypto.bundle import check_handle
from sealdrop.crypto.errors import BundleError

from ..errors import ClientError
from ..outfile import atomic_output
from .layout import CONFIG_FILE

_NOT_SET_UP_HINT = "run: sealdrop init --relay URL --handle YOUR-HANDLE --invite-file -"


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    relay: str
    handle: str
    ca_file: str | None = None


def is_set_up(home: Path) -> bool:
    return (Path(home) / CONFIG_FILE).exists()


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
        ca_file = obj.get("ca_file")
        if ca_file is not None and not (isinstance(ca_file, str) and Path(ca_file).is_absolute()):
            raise ValueError("ca_file must be an absolute path")
        return ProfileConfig(relay=check_relay_url(str(obj["relay"])),
                             handle=check_handle(str(obj["handle"])), ca_file=ca_file)
    except (AttributeError, KeyError, ValueError, BundleError) as exc:
        raise ClientError(f"{path} is damaged: {exc}") from exc


def save_config(home: Path, config: ProfileConfig) -> None:
    path = Path(home) / CONFIG_FILE
    obj = {"v": 1, "relay": config.relay, "handle": config.handle}
    if config.ca_file is not None:
        obj["ca_file"] = config.ca_file
    data = json.dumps(obj, indent=1, sort_keys=True) + "\n"
    try:
        with atomic_output(path, mode=0o600) as f:
            f.write(data.encode("utf-8"))
    except OSError as exc:
        raise ClientError(f"cannot write {path}: {exc.strerror}") from exc


def check_ca_file(path: Path) -> str:
    """The absolute path of a readable PEM file of CA certificates, or a ClientError."""
    from ..transport import tls_context

    full = Path(path).expanduser().absolute()
    tls_context(str(full), env={})  # loads it: a wrong file is refused now, not at send time
    return str(full)
