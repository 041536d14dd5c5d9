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


def open_log(configured_origin: str, key_path: Path, relay_id: str) -> tuple[LogSigner, bool]:
    """The relay's ``LogSigner`` (its key made now if missing; and whether it was)."""
    origin = origin_for(configured_origin, relay_id)
    signer, made = load_or_create(key_path, origin)
    return LogSigner(origin, signer), made
