"""Every name under the profile folder, in one place.

The profile folder is ``--home``, else ``SEALDROP_HOME``, else ``~/.sealdrop``;
it is created with mode 0700 and holds::

    identity.age    the secret keys, age-encrypted to the passphrase (scrypt), 0600
    bundle.json     the public signed KeyBundle, readable without the passphrase
    config.json     the pinned relay URL and the handle registered there
    contacts.json   pinned contacts and whether each was verified
    accepted.json   manifest ids of transfers accepted here (replay protection)
    received.json   relay ids received here, and whether the relay was told
    refused.json    relay ids refused here, and why (so watch and receive --all move on)
    forwards.json   forwards into a PACS: per relay id and target, each instance stored or not
    log.json        the relay's transparency log: its pinned key, the last verified
                    checkpoint, the digests of our own key bundles (profile/logstate.py)
    forwarding-<hash>.lock          held while one forward runs (removed after)
    outbox/<relay id>.age           an unfinished send's record (to resume it)
    outbox/<relay id>.chunks        its chunk log
    sent/<relay id>.age             a sent transfer's DICOM summary, for status
                                    (age-encrypted to the user's own key)
    inbox-spool/<relay id>.age.partial   ciphertext being downloaded (never plaintext)
    staging/<random>/files/…        files of one transfer being verified (0700), when
                                    the profile shares the destination's filesystem
    dicom-listen/…                  DICOM instances received by ``dicom-listen``,
                                    by study, until sent (0700; client/dicom/inbound.py)
    deid/<job key>/…                de-identified copies of an unfinished
                                    `send --deidentify` (0700), removed with its send record
    desk.json       `sealdrop desk` settings: receive folder, layout, watch on or off
    desk-outgoing/<random>/…        files dropped into the desk's send screen (0700),
                                    removed once their send completes or is discarded

No other module spells these names: they import them from here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import ClientError

HOME_ENV = "SEALDROP_HOME"
DEFAULT_HOME = "~/.sealdrop"

IDENTITY_FILE = "identity.age"
BUNDLE_FILE = "bundle.json"
CONFIG_FILE = "config.json"
CONTACTS_FILE = "contacts.json"
ACCEPTED_FILE = "accepted.json"
RECEIPTS_FILE = "received.json"
REFUSED_FILE = "refused.json"
FORWARDS_FILE = "forwards.json"
LOGSTATE_FILE = "log.json"
FORWARD_LOCK_PREFIX = "forwarding-"
STAGING_DIR = "staging"
OUTBOX_DIR = "outbox"
OUTBOX_RECORD = ".age"
OUTBOX_CHUNK_LOG = ".chunks"
SENT_DIR = "sent"
SENT_FILE = ".age"
SPOOL_DIR = "inbox-spool"
SPOOL_FILE = ".age.partial"
DICOM_LISTEN_DIR = "dicom-listen"
DEID_DIR = "deid"
DESK_FILE = "desk.json"
DESK_OUTGOING_DIR = "desk-outgoing"

# A relay id as it may become part of a file name: never a separator or a dot.
# Looser than the relay's format (crypto.protocol) on purpose: an id the relay
# made up is refused by the relay or by decryption, never by a file name.
_RELAY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def resolve_home(home: Path | str | None = None) -> Path:
    """The profile folder: ``home`` if given, else $SEALDROP_HOME, else ~/.sealdrop."""
    if home is not None and str(home):
        return Path(home).expanduser()
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    return Path(DEFAULT_HOME).expanduser()


def _checked(relay_id: str) -> str:
    if not _RELAY_ID.fullmatch(relay_id):
        raise ClientError(f"{relay_id!r} is not a transfer id")
    return relay_id


def outbox_files(home: Path, relay_id: str) -> tuple[Path, Path]:
    """(send record, chunk log) of the unfinished send ``relay_id``."""
    folder = Path(home) / OUTBOX_DIR
    name = _checked(relay_id)
    return folder / f"{name}{OUTBOX_RECORD}", folder / f"{name}{OUTBOX_CHUNK_LOG}"


def deid_folder(home: Path, job_key: str) -> Path:
    """Where the de-identified copies of the send ``job_key`` (a SHA-256 hex) are made."""
    if not re.fullmatch(r"[0-9a-f]{64}", job_key):
        raise ClientError(f"{job_key!r} is not a send's key")
    return Path(home) / DEID_DIR / job_key


def spool_file(home: Path, relay_id: str) -> Path:
    """Where the ciphertext of ``relay_id`` is spooled while it downloads."""
    return Path(home) / SPOOL_DIR / f"{_checked(relay_id)}{SPOOL_FILE}"


def sent_file(home: Path, relay_id: str) -> Path:
    """Where the DICOM summary of the sent transfer ``relay_id`` is kept (``sent``)."""
    return Path(home) / SENT_DIR / f"{_checked(relay_id)}{SENT_FILE}"
