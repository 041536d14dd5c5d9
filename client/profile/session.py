"""A session: an unlocked profile, what every relay-facing command needs.

Opening one reads the relay pin, asks for the passphrase, unlocks the identity
and connects a relay client signing as it; the profile's stores come along.
Then, before any other relay work, it follows the relay's transparency log
(``log.advance``: client/tlog/logclient.py), so every command that talks to
the relay first checks that the relay's history only grew.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sealdrop.crypto.identity import SecretIdentity

from ..errors import IdentityError
from ..relay_api import RelayClient
from ..secrets import read_passphrase
from ..tlog.logclient import LogClient
from .config import ProfileConfig, load_config
from .contacts import ContactStore
from .identity import load_identity
from .outbox import Outbox
from .receipts import ReceiptStore
from .replay import ReplayStore
from .spool import Spool


@dataclass
class Session:
    home: Path
    config: ProfileConfig
    identity: SecretIdentity
    relay: RelayClient
    contacts: ContactStore
    replay: ReplayStore
    receipts: ReceiptStore
    spool: Spool
    outbox: Outbox
    log: LogClient

    def close(self) -> None:
        self.relay.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_session(home: Path, passphrase_file: Path | None, *, follow_log: bool = True
                 ) -> Session:
    """Load the config, ask for the passphrase, unlock the identity, connect, and
    (``follow_log``) check the relay's log; a LogVerificationError stops here."""
    config = load_config(home)
    passphrase = read_passphrase(confirm=False, passphrase_file=passphrase_file)
    return session_for(home, unlock(home, config, passphrase), follow_log=follow_log)


def unlock(home: Path, config: ProfileConfig, passphrase: bytes) -> SecretIdentity:
    """The profile's identity, opened with ``passphrase`` and checked against its config."""
    identity = load_identity(home, passphrase)
    if identity.handle != config.handle:
        raise IdentityError(
            f"the identity in {home} is {identity.handle!r} but the profile is set up "
            f"for {config.handle!r}"
        )
    return identity


def session_for(home: Path, identity: SecretIdentity, *, follow_log: bool = True) -> Session:
    """A session for an identity already unlocked: ``sealdrop desk`` opens one per
    job from the keys it unlocked once, without asking the passphrase again."""
    config = load_config(home)
    relay = RelayClient(config.relay, handle=identity.handle, signing_key=identity.signing_key,
                        ca_file=config.ca_file)
    contacts = ContactStore(home)
    session = Session(home=home, config=config, identity=identity, relay=relay,
                      contacts=contacts, replay=ReplayStore(home),
                      receipts=ReceiptStore(home), spool=Spool(home),
                      outbox=Outbox(home, identity),
                      log=LogClient(relay, home, handle=identity.handle, contacts=contacts,
                                    own=identity.bundle, witnesses=config.witnesses,
                                    require_cosignatures=config.require_cosignatures))
    if follow_log:
        try:
            session.log.advance()
        except BaseException:
            session.close()
            raise
    return session
