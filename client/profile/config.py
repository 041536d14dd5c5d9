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

``witnesses`` and ``require_cosignatures`` (optional): the cosignature vkeys of
the witnesses this practice trusts, and how many of them must have cosigned
the relay's checkpoint (``sealdrop config witness add``, ``require-cosignatures``;
``client.witness.policy``). Absent: no witness required.
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
    witnesses: tuple[str, ...] = ()
    require_cosignatures: int = 0


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
        witnesses = obj.get("witnesses", [])
        need = obj.get("require_cosignatures", 0)
        if not isinstance(witnesses, list) or not all(isinstance(w, str) for w in witnesses):
            raise ValueError("witnesses must be a list of vkeys")
        if not isinstance(need, int) or isinstance(need, bool) or not 0 <= need <= len(witnesses):
            raise ValueError("require_cosignatures must be 0 to the number of witnesses")
        return ProfileConfig(relay=check_relay_url(str(obj["relay"])),
                             handle=check_handle(str(obj["handle"])), ca_file=ca_file,
                             witnesses=tuple(witnesses), require_cosignatures=need)
    except (AttributeError, KeyError, ValueError, BundleError) as exc:
        raise ClientError(f"{path} is damaged: {exc}") from exc


def save_config(home: Path, config: ProfileConfig) -> None:
    path = Path(home) / CONFIG_FILE
    obj: dict[str, object] = {"v": 1, "relay": config.relay, "handle": config.handle}
    if config.ca_file is not None:
        obj["ca_file"] = config.ca_file
    if config.witnesses:
        obj["witnesses"] = list(config.witnesses)
    if config.require_cosignatures:
        obj["require_cosignatures"] = config.require_cosignatures
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
