"""The transparency log's signing key: one Ed25519 note key per relay, in a
file beside the data (``log_key_file``, default ``DATA/log-key``).

Its form is the Go ``note`` private key line, ``PRIVATE+KEY+<origin>+<key
id>+<base64>`` (``sealdrop.crypto.tlog.note``): the key is named by the log's
origin, so a key file and an origin that disagree are refused at start
instead of signing checkpoints that every pinned client would reject. Made by
``sealdrop-relay init`` and, if missing, by the first start; never overwritten
(an existing file wins any race between processes starting together). Only
its public half (the vkey) ever leaves the relay's disk.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from sealdrop.crypto.errors import SealdropCryptoError
from sealdrop.crypto.tlog.checkpoint import Checkpoint
from sealdrop.crypto.tlog.note import NoteSigner, sign_note

from .errors import ConfigError
from .metadata import SqlMetadataStore

ORIGIN_PREFIX = "sealdrop.invalid/"


def origin_for(configured: str, relay_id: str) -> str:
    """The log's origin: the configured one, else one named by the relay id."""
    return configured or ORIGIN_PREFIX + relay_id


def _read(path: Path, origin: str) -> NoteSigner:
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            # Whoever reads it can sign checkpoints as this relay.
            raise ConfigError(
                f"{path}: the transparency log key is readable by other users; "
                f"chmod 0600 {path} (and chown it to the relay's user)"
            )
        text = path.read_text("ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the transparency log's key: {exc}") from exc
    try:
        signer = NoteSigner.from_private_key_text(text)
    except (SealdropCryptoError, ValueError) as exc:
        raise ConfigError(
            f"{path}: not a transparency log key (PRIVATE+KEY+... line); restore it from "
            "the backup (a new key makes every client refuse this relay's log)"
        ) from exc
    if signer.name != origin:
        raise ConfigError(
            f"{path}: the transparency log key is for origin {signer.name!r}, but "
            f"log_origin is {origin!r}; set log_origin back (clients pinned that log) "
            "or point log_key_file at the key of this origin"
        )
    return signer


def load_or_create(path: Path, origin: str) -> tuple[NoteSigner, bool]:
    """The key in ``path`` for ``origin``, made if the file does not exist;
    and whether it was made now."""
    if path.exists():
        return _read(path, origin), False
    signer = NoteSigner(origin, os.urandom(32))
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(signer.private_key_text() + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            # link, not rename: it fails if another process made the file
            # meanwhile, and then that one's key is the log's.
            os.link(tmp, path)
        except FileExistsError:
            return _read(path, origin), False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return signer, True


class LogSigner:
    """The log's identity as served: origin, vkey, and checkpoints signed on
    request. Ed25519 signatures are deterministic, so every process holding
    the key signs a size's checkpoint into the same bytes; the last one is
    kept, since most requests ask for a size already signed."""

    def __init__(self, origin: str, signer: NoteSigner) -> None:
        self.origin = origin
        self._signer = signer
        self._last: tuple[int, bytes, str] | None = None

    @property
    def vkey(self) -> str:
        return self._signer.vkey

    def checkpoint(self, size: int, root: bytes) -> str:
        """The signed note (C2SP tlog-checkpoint) of the tree (size, root)."""
        last = self._last
        if last is not None and last[0] == size and last[1] == root:
            return last[2]
        note = sign_note(Checkpoint(self.origin, size, root).text(), [self._signer])
        self._last = (size, root, note)
        return note


# Where the database keeps the log's public key, so that every process (and
# every restore) is held to the one key clients pinned.
VKEY_META = "log_vkey"


def _key_id(vkey: str) -> str:
    return vkey.split("+")[1] if vkey.count("+") >= 2 else "?"


def open_log(
    configured_origin: str, key_path: Path, relay_id: str, expected_vkey: str | None
) -> tuple[LogSigner, bool]:
    """The relay's ``LogSigner`` and whether its key was made now.

    ``expected_vkey``: the log's public key as the database recorded it when
    the log began (None: a log without one yet, which may get a new key).
    A key file that is missing or another key then is refused: the log
    clients pinned is signed with that key and no other."""
    origin = origin_for(configured_origin, relay_id)
    if expected_vkey is not None and not key_path.exists():
        raise ConfigError(
            f"{key_path}: the transparency log key is missing, but this database's log is "
            f"signed with key {_key_id(expected_vkey)}; restore the key file from the backup "
            "or copy it from the relay host that first served this database (a new key "
            "would make every client refuse the log)"
        )
    signer, made = load_or_create(key_path, origin)
    if expected_vkey is not None and signer.vkey != expected_vkey:
        raise ConfigError(
            f"{key_path}: this is not the key of the transparency log this database holds "
            f"(key {_key_id(signer.vkey)} for {signer.name}; the log's is "
            f"{_key_id(expected_vkey)}); copy the key file of the relay host that first "
            "served this database here, or point log_key_file at it, and check log_origin"
        )
    return LogSigner(origin, signer), made


async def open_relay_log(store: SqlMetadataStore, configured_origin: str,
                         key_path: Path) -> tuple[LogSigner, bool]:
    """``open_log`` for the database of ``store``, recording the log's public
    key there the first time (the first process to record one wins; another
    that made a different key meanwhile is refused)."""
    relay_id = await store.relay_id()
    if relay_id is None:
        raise ConfigError("the database holds no relay id; run `sealdrop-relay init`")
    log, made = open_log(configured_origin, key_path, relay_id, await store.meta(VKEY_META))
    stored = await store.set_meta_once(VKEY_META, log.vkey)
    if stored != log.vkey:
        raise ConfigError(
            f"{key_path}: another relay process made this database's transparency log key "
            f"({_key_id(stored)}) at the same time; delete {key_path} and copy that "
            "process's key file here"
        )
    return log, made
