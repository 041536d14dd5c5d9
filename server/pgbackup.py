"""Backup of a PostgreSQL + S3 relay: a pg_dump, and the bucket's versions.

Copying every blob out of the bucket each night would move the whole bucket;
the bucket's versioning already keeps every blob, deleted ones included,
for as long as its lifecycle rule says. So a backup is the database alone,
dumped in an exported snapshot (server.pgdump) with the snapshot's own time
and the relay id recorded beside it (``backup.json``); a restore
(server.pgrestore) brings back each blob the dump names as it was at that
time (server.restore_plan). The backup refuses a bucket without versioning:
an operator relying on it must know it would not work.

A backup folder: ``relay.dump`` (pg_dump's custom format), ``backup.json``,
and ``relay.toml`` as it was.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from .blobs import BlobStore
from .config import CONFIG_NAME, DB_NAME, LOG_KEY_NAME, RelayConfig
from .errors import ConfigError
from .metadata import SqlMetadataStore

DUMP_NAME = "relay.dump"
MANIFEST_NAME = "backup.json"
FORMAT = "sealdrop-relay-pg-backup-1"


@dataclass(frozen=True, slots=True)
class Manifest:
    relay_id: str
    taken_at: float  # the database's clock inside the dump's snapshot (epoch seconds)
    blobs: str  # where the blobs were: s3://bucket/prefix
    transfers: int
    complete: int
    format: str = FORMAT

    def write(self, folder: Path) -> None:
        (folder / MANIFEST_NAME).write_text(json.dumps(asdict(self), indent=1) + "\n", "utf-8")

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        """The manifest of a PostgreSQL backup folder; a sentence for anything else."""
        path = folder / MANIFEST_NAME
        if not folder.is_dir():
            raise ConfigError(f"{folder} is not a backup folder")
        if not path.exists():
            if (folder / DB_NAME).exists():
                raise ConfigError(
                    f"{folder} is a backup of a SQLite relay: it is a data folder, restored "
                    "by copying it (docs/operations.md, Restore drill)")
            raise ConfigError(f"{folder} holds no {MANIFEST_NAME}: it is not a sealdrop-relay "
                              "backup")
        try:
            raw = json.loads(path.read_text("utf-8"))
            m = cls(relay_id=str(raw["relay_id"]), taken_at=float(raw["taken_at"]),
                    blobs=str(raw["blobs"]), transfers=int(raw["transfers"]),
                    complete=int(raw["complete"]), format=str(raw["format"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path} is damaged; take the restore from another backup"
                              ) from exc
        if m.format != FORMAT:
            raise ConfigError(f"{path} is of format {m.format}, which this sealdrop-relay "
                              f"does not restore (it restores {FORMAT})")
        if not (folder / DUMP_NAME).exists():
            raise ConfigError(f"{folder} has no {DUMP_NAME}; take the restore from another "
                              "backup")
        return m


async def backup(store: SqlMetadataStore, blobs: BlobStore, cfg: RelayConfig,
                 dest: Path) -> Manifest:
    """Dump the database into ``dest`` (an empty folder) beside its manifest."""
    from . import pgdump, s3versions
    from .s3blobs import S3BlobStore

    if not isinstance(blobs, S3BlobStore) or cfg.s3 is None:
        raise ConfigError(
            "backup of a PostgreSQL relay needs its blobs in a versioned S3 bucket; with "
            "blobs in a folder, use pg_dump and copy the folder (docs/operations.md, Backups "
            "and retention)")
    await s3versions.require_versioning(blobs)
    if dest.exists() and any(dest.iterdir()):
        raise ConfigError(f"backup destination {dest} is not empty")
    relay_id = await store.relay_id()
    if relay_id is None:  # never: commands bind first (server.binding)
        raise ConfigError("the database has no relay id; run `sealdrop-relay init` first")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    async with pgdump.exported_snapshot(store.engine.raw) as snap:
        await pgdump.dump(cfg.db_url, dest / DUMP_NAME, snapshot=snap.id)
    manifest = Manifest(relay_id=relay_id, taken_at=snap.at, blobs=cfg.s3.url,
                        transfers=snap.transfers, complete=snap.complete)
    manifest.write(dest)
    conf = cfg.data_dir / CONFIG_NAME
    if conf.exists():
        shutil.copy2(conf, dest / CONFIG_NAME)
    # The log's key goes with the database it signs: a relay restored
    # without it is refused by its clients (docs/transparency.md).
    if cfg.log_key_path.exists():
        shutil.copy2(cfg.log_key_path, dest / LOG_KEY_NAME)
    return manifest
