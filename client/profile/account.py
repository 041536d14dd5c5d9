"""Setting a profile up (``sealdrop init``) and describing it (``whoami``).

One identity, registered on one pinned relay. init is all or nothing: the
identity is created, registered with the invite, and only then is the relay
pinned in the config file. The relay's transparency log key is pinned too
(``profile/logstate.py``), and the log must hold our registered bundle. If
registration fails, the identity files just created are removed again, so
init can simply be re-run. An identity that already exists (created with
``sealdrop identity create``) is reused and registered instead of replaced.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from sealdrop.crypto import safety
from sealdrop.crypto.age.scrypt import DEFAULT_WORK_FACTOR
from sealdrop.crypto.bundle import KeyBundle

from ..errors import ClientError
from ..relay_api import RelayClient, RelayConflict, RelayError
from ..tlog.logclient import LogClient
from .config import (
    ProfileConfig,
    check_ca_file,
    check_relay_url,
    is_set_up,
    load_config,
    save_config,
)
from .contacts import ContactStore
from .identity import create_identity, load_identity, load_public_bundle
from .layout import BUNDLE_FILE, IDENTITY_FILE, LOGSTATE_FILE


@dataclass(frozen=True, slots=True)
class WhoAmI:
    handle: str
    relay: str
    safety_number: str
    home: Path

    def to_json(self) -> dict[str, str]:
        return {"handle": self.handle, "relay": self.relay,
                "safety_number": self.safety_number, "home": str(self.home)}


def init_profile(home: Path, *, relay: str, handle: str, invite: str, passphrase: bytes,
                 work_factor: int = DEFAULT_WORK_FACTOR, ca_file: Path | None = None) -> WhoAmI:
    """``ca_file``: a private certificate authority for the relay's TLS certificate,
    checked before anything is created and kept in the profile (``config.py``)."""
    url = check_relay_url(relay)
    ca = check_ca_file(ca_file) if ca_file is not None else None
    if is_set_up(home):
        cfg = load_config(home)
        raise ClientError(
            f"{home} is already set up as {cfg.handle!r} on {cfg.relay}",
            hint="use another --home (or SEALDROP_HOME) for a second identity",
        )
    created = not (home / IDENTITY_FILE).exists()
    if created:
        identity = create_identity(home, handle, passphrase, work_factor=work_factor)
    else:
        identity = load_identity(home, passphrase)
        if identity.handle != handle:
            raise ClientError(
                f"the identity in {home} is {identity.handle!r}, not {handle!r}",
                hint="use another --home for a new identity",
            )
    try:  # a bad SSL_CERT_FILE or proxy setting is refused here
        client = RelayClient(url, handle=handle, signing_key=identity.signing_key, ca_file=ca)
    except ClientError:
        _undo(home, created)
        raise
    log = LogClient(client, home, handle=handle, contacts=ContactStore(home))
    with contextlib.closing(client):
        index = _register(client, log, home, created, invite, identity.bundle)
        save_config(home, ProfileConfig(relay=url, handle=handle, ca_file=ca))
        # Registered and pinned: now the log must hold exactly our bundle, and
        # every entry from ours on is read (a key under our name after it).
        if log.pinned() is not None:
            log.advance(scan_from=index)
            log.check_bundle(identity.bundle, index)
    return WhoAmI(handle=handle, relay=url, safety_number=identity.safety_number, home=home)


def _register(client: RelayClient, log: LogClient, home: Path, created: bool, invite: str,
              bundle: KeyBundle) -> int | None:
    """Pin the log, then register ``bundle``: its key entry's index. Undone on failure."""
    handle = bundle.handle
    try:
        # The log key is pinned, and our bundle's digest recorded, BEFORE the
        # bundle is sent: our own key entry must never look foreign to us.
        if log.pin_at_init() is not None:
            log.record_own(bundle)
        return client.register(invite.strip(), bundle)
    except RelayConflict as exc:
        _undo(home, created)
        raise ClientError(f"the relay refused to register {handle!r}: {exc}",
                          hint="the handle may be taken: choose another") from exc
    except RelayError as exc:
        _undo(home, created)
        raise ClientError(f"registration failed: {exc}", hint=exc.hint or
                          "check the relay URL and the invite code (each works once)") from exc
    except BaseException:
        _undo(home, created)
        raise


def _undo(home: Path, created: bool) -> None:
    with contextlib.suppress(FileNotFoundError):  # pinned for a registration that failed
        (home / LOGSTATE_FILE).unlink()
    if not created:
        return
    for name in (IDENTITY_FILE, BUNDLE_FILE):
        with contextlib.suppress(FileNotFoundError):
            (home / name).unlink()


def whoami(home: Path) -> WhoAmI:
    cfg = load_config(home)
    bundle = load_public_bundle(home)
    return WhoAmI(handle=bundle.handle, relay=cfg.relay,
                  safety_number=safety.safety_number(bundle.signing_key), home=home)
