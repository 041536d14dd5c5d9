"""``sealdrop-relay log publish``: the log as static C2SP tlog-tiles files, in
a folder (for nginx) or an S3 bucket, so standard tooling reads it without
the relay (docs/transparency.md, "Publishing the tiles").

The layout is the one the relay serves under ``/v1/log``: ``checkpoint``
(the signed note, with the witnesses' cosignatures when configured),
``tile/<L>/<N>[.p/<W>]`` and ``tile/entries/<N>[.p/<W>]``.

Why the order matters: a reader fetches the checkpoint, then the tiles of its
size. So every tile of the size is written, and made durable, before the
checkpoint that needs it; the checkpoint is written last, atomically. A run
that stops half-way leaves tiles no checkpoint names yet, which is harmless.

Why a file is never rewritten: a tile's path fixes its bytes (a full tile
never changes; a partial ``.p/W`` is the first W hashes of its full tile), so
one that exists is skipped. That makes a run cheap (only new tiles are read
from the database) and idempotent, and caches may keep full tiles for good.

Before anything is written, a checkpoint already published there is checked:
it must be this log's (origin and key) and the database's tree must extend
it. A database restored from an older backup, or another relay's log, would
otherwise publish a tree that contradicts what readers already saw.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from sealdrop.crypto.errors import SealdropCryptoError
from sealdrop.crypto.tlog.checkpoint import Checkpoint, open_checkpoint
from sealdrop.crypto.tlog.merkle import verify_consistency
from sealdrop.crypto.tlog.note import NoteVerifier
from sealdrop.crypto.tlog.tiles import TILE_WIDTH, entries_path, tile_path, tiles_for_size

from . import logtiles, tlog
from .errors import ConfigError, RelayError, StoreUnavailable
from .logkey import LogSigner
from .metadata import SqlMetadataStore
from .s3url import CREDENTIALS_HINT, S3Location

CHECKPOINT = "checkpoint"
# What a web server or a bucket should send with each file (docs/operations.md):
# the same as the relay's own log endpoints (server.loghandlers).
FULL_TILE_CACHE = "public, max-age=31536000, immutable"
PARTIAL_TILE_CACHE = "public, max-age=60"
CHECKPOINT_CACHE = "no-store"
# Tiles read from the database per read transaction.
_BATCH = 64

Cosign = Callable[[str, Checkpoint], Awaitable[str]]


class PublishError(RelayError):
    """The target holds something this log must not overwrite or contradict."""


class Target(Protocol):
    """Where the files go. ``write`` of a tile may return before it is durable;
    ``sync`` makes every write so far durable (the checkpoint comes after)."""

    where: str

    async def exists(self, path: str) -> bool: ...
    async def read(self, path: str) -> bytes | None: ...
    async def write(self, path: str, data: bytes, cache: str) -> None: ...
    async def sync(self) -> None: ...


@dataclass
class PublishReport:
    size: int
    written: int  # tiles and entry bundles written now
    present: int  # already published (skipped)
    checkpoint: bool  # whether the checkpoint changed
    where: str

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "written": self.written, "present": self.present,
                "checkpoint_written": self.checkpoint, "where": self.where}

    def line(self) -> str:
        cp = "checkpoint updated" if self.checkpoint else "checkpoint unchanged"
        return (f"published the log at size {self.size} to {self.where}: {self.written} "
                f"tile(s) written, {self.present} already there, {cp}")


def files_for_size(size: int) -> Iterator[tuple[str, int | str, int, int]]:
    """(path, level or "entries", index, width) of every tile and entry bundle
    of a tree of ``size`` leaves: level 0 first, each entry bundle next to its
    hash tile."""
    for level, index, width in tiles_for_size(size):
        if level == 0:
            yield entries_path(index, width), "entries", index, width
        yield tile_path(level, index, width), level, index, width


async def publish(store: SqlMetadataStore, log: LogSigner, target: Target, *,
                  cosign: Cosign | None = None) -> PublishReport:
    """Publish the tree as last committed to ``target``: its missing tiles,
    then its checkpoint. Safe to run again, and concurrently with the relay."""
    # One (size, root) for the whole run: tiles are read at this size even if
    # the relay appends meanwhile (rows are only ever added), so the
    # checkpoint written at the end names exactly the tiles written before it.
    size, root = await store.log_head()
    old = await target.read(CHECKPOINT)
    if old is not None:
        await _check_extends(store, log, target.where, old, size, root)

    todo: list[tuple[str, int | str, int, int]] = []
    present = 0
    for f in files_for_size(size):
        if await target.exists(f[0]):
            present += 1
        else:
            todo.append(f)
    for at in range(0, len(todo), _BATCH):
        batch = todo[at:at + _BATCH]
        datas = await store.log_read(functools.partial(_read_tiles, batch=batch))
        for (path, _, _, width), data in zip(batch, datas, strict=True):
            await target.write(path, data,
                               FULL_TILE_CACHE if width == TILE_WIDTH else PARTIAL_TILE_CACHE)
    await target.sync()

    note = log.checkpoint(size, root)
    if cosign is not None:
        note = await cosign(note, Checkpoint(log.origin, size, root))
    changed = old != note.encode()
    if changed and await _overtaken(target, log, old, size):
        changed = False
    if changed:
        await target.write(CHECKPOINT, note.encode(), CHECKPOINT_CACHE)
        await target.sync()
    return PublishReport(size, len(todo), present, changed, target.where)


async def _overtaken(target: Target, log: LogSigner, old: bytes | None, size: int) -> bool:
    """Whether another publish (a second host, a run that overlapped this one)
    wrote a checkpoint of a larger tree meanwhile: writing ours over it would
    show readers a log that went back."""
    now = await target.read(CHECKPOINT)
    if now is None or now == old:
        return False
    try:
        cp = open_checkpoint(now.decode("utf-8"), log.origin, [NoteVerifier.from_vkey(log.vkey)])
    except (SealdropCryptoError, UnicodeDecodeError):
        return True  # not this log's: left alone; the next run refuses it, saying why
    return cp.size > size


def _read_tiles(conn: sa.Connection, *, batch: list[tuple[str, int | str, int, int]]
                ) -> list[bytes]:
    out = []
    for path, level, index, width in batch:
        data = logtiles.read_tile(conn, level, index, width)
        if data is None:  # cannot happen: the tree only grows past the size read
            raise StoreUnavailable(f"the transparency log lost {path}; run "
                                   "`sealdrop-relay log verify`")
        out.append(data)
    return out


async def _check_extends(store: SqlMetadataStore, log: LogSigner, where: str,
                         old_note: bytes, size: int, root: bytes) -> None:
    """Refuse to publish over a checkpoint of another log, or of a tree this
    database's does not extend."""
    try:
        old = open_checkpoint(old_note.decode("utf-8"), log.origin,
                              [NoteVerifier.from_vkey(log.vkey)])
    except (SealdropCryptoError, UnicodeDecodeError) as exc:
        raise PublishError(
            f"{where}/{CHECKPOINT} is not a checkpoint of this relay's log {log.origin} "
            f"({exc}); publish to an empty folder or prefix, or remove what is there if "
            "it was never served to anyone"
        ) from None
    if old.size > size:
        raise PublishError(
            f"{where} already holds this log at {old.size} entries, but the database "
            f"holds only {size}: was the database restored from an older backup? "
            "Publishing now would show readers a log that went back; restore the "
            "newest backup, or run `sealdrop-relay log verify`"
        )
    if old.size == size:
        good = old.root == root
    elif old.size == 0:
        good = True
    else:
        proof = await store.log_read(lambda conn: tlog.consistency(conn, old.size, size))
        try:
            verify_consistency(old.size, size, proof, old.root, root)
            good = True
        except SealdropCryptoError:
            good = False
    if not good:
        raise PublishError(
            f"the log published at {where} (size {old.size}) is not a prefix of the "
            "database's log: the database holds a different history than readers "
            "already saw. Do not publish; run `sealdrop-relay log verify` and restore "
            "the database that matches the published log"
        )


# -- a folder -----------------------------------------------------------------


class DirTarget:
    """Files under ``root``: each written to a temporary name, fsynced and
    renamed into place, so a reader (nginx) sees a whole file or none. The
    folders written into are fsynced by ``sync``. Blocking I/O: this runs in
    the one-shot ``log publish`` command, nothing else shares its loop."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = str(root)
        self._dirty: set[Path] = set()

    def _path(self, path: str) -> Path:
        return self.root.joinpath(*path.split("/"))

    async def exists(self, path: str) -> bool:
        return self._path(path).is_file()

    async def read(self, path: str) -> bytes | None:
        try:
            return self._path(path).read_bytes()
        except FileNotFoundError:
            return None

    async def write(self, path: str, data: bytes, cache: str) -> None:
        dest = self._path(path)
        made = _mkdirs(dest.parent, self.root)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            # Readable by the web server that serves the folder, whatever the
            # umask (the relay's units set 0077): the log is public.
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self._dirty.add(dest.parent)
        self._dirty.update(made)

    async def sync(self) -> None:
        # Deepest first does not matter: each folder's own entries are what
        # its fsync makes durable, and every folder touched is in the set.
        for d in sorted(self._dirty, key=lambda p: len(p.parts), reverse=True):
            fd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._dirty.clear()


def _mkdirs(folder: Path, root: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the parents whose entries
    changed (to fsync)."""
    made: list[Path] = []
    missing = []
    p = folder
    while not p.is_dir():
        missing.append(p)
        if p == root or p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        d.chmod(0o755)  # as the files: whatever the umask, the web server reads them
        made.append(d.parent)
    return made


LOCK_NAME = ".publish.lock"


@contextlib.contextmanager
def open_dir(root: Path) -> Iterator[DirTarget]:
    """A ``DirTarget`` on ``root``, held by this run alone: an overlapping run
    (a slow one and the next from the timer) waits for this one to finish, so
    the checkpoint only ever moves forward."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write into the folder {root} to publish the log "
                          f"({exc.strerror}); publish as the relay's user into a folder "
                          "it owns") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield DirTarget(root)
    finally:
        os.close(fd)  # releases the lock


# -- an S3 bucket ---------------------------------------------------------------


class S3Target:
    """Objects ``PREFIX<path>`` in one bucket, each with its Cache-Control, so
    that the bucket (or a CDN in front) serves the log as is. A PUT is atomic
    and durable once acknowledged, so ``sync`` has nothing left to do. What
    exists is listed once when opened."""

    def __init__(self, location: S3Location, client: Any, keys: set[str]) -> None:
        self.location = location
        self.where = location.url
        self._client = client
        self._keys = keys

    async def exists(self, path: str) -> bool:
        return self.location.prefix + path in self._keys

    async def read(self, path: str) -> bytes | None:
        from .s3faults import get_small

        return await get_small(self._client, self.location.bucket,
                               self.location.prefix + path, f"read {path}")

    async def write(self, path: str, data: bytes, cache: str) -> None:
        from .s3faults import s3_call

        content_type = ("text/plain; charset=utf-8" if path == CHECKPOINT
                        else "application/octet-stream")
        async with s3_call(f"store {path}"):
            await self._client.put_object(
                Bucket=self.location.bucket, Key=self.location.prefix + path, Body=data,
                ContentType=content_type, CacheControl=cache)
        self._keys.add(self.location.prefix + path)

    async def sync(self) -> None:
        pass


@contextlib.asynccontextmanager
async def open_s3(location: S3Location, timeout: float) -> Any:
    """An ``S3Target`` on a client built as the blob store builds its own
    (server.s3blobs): credentials from the environment only."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session
    from botocore.exceptions import ClientError, NoCredentialsError

    from .s3faults import DENIED, MISSING, NETWORK_ERRORS, code_of, s3_call

    config = AioConfig(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path" if location.endpoint else "auto"},
        signature_version="s3v4",
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"max_attempts": 3, "mode": "standard"},
    )
    at = location.endpoint or "AWS"
    async with get_session().create_client(
        "s3", endpoint_url=location.endpoint or None,
        region_name=location.region or ("us-east-1" if location.endpoint else None),
        config=config,
    ) as client:
        keys: set[str] = set()
        try:
            paginator = client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=location.bucket,
                                                 Prefix=location.prefix + "tile/"):
                keys.update(o["Key"] for o in page.get("Contents", []))
        except NoCredentialsError as exc:
            raise ConfigError(
                f"no S3 credentials to publish the log to {location.url}: {CREDENTIALS_HINT}"
            ) from exc
        except ClientError as exc:
            code = code_of(exc)
            if code in MISSING or code == "NoSuchBucket":
                raise ConfigError(f"the bucket {location.bucket} does not exist at {at}; "
                                  "create it or correct --to") from exc
            if code in DENIED:
                raise ConfigError(
                    f"the S3 server at {at} refused access to the bucket {location.bucket} "
                    f"({code}); {CREDENTIALS_HINT}") from exc
            async with s3_call(f"list {location.url}"):
                raise
        except NETWORK_ERRORS as exc:
            raise ConfigError(f"cannot reach the S3 server at {at} to publish the log; "
                              "check --s3-endpoint") from exc
        yield S3Target(location, client, keys)
