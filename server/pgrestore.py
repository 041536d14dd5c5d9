"""Restore of a PostgreSQL + S3 relay from a backup (server.pgbackup).

1. The dump goes into the configured database, which must be empty
   (``pg_restore`` in one transaction: a failure leaves it empty).
2. Every complete transfer of the dump gets its blob back as it was at the
   dump's snapshot (server.restore_plan): in place, the version is already
   current, or its delete markers are removed, or it is copied back; into
   another place (a drill), it is copied there. A transfer whose blob has
   no such version is named, with its sender, and left for ``verify``.
3. The relay id marker: the dump's relay id is written beside the blobs if
   none is there; a marker of another relay refuses the restore before
   anything is written, so the binding (server.binding) stays true.

Uploads in progress at the backup cannot come back from versions (S3 keeps
no version of a multipart upload's parts): if their upload survived in the
bucket they resume; otherwise ``verify`` names them missing and
``verify --repair`` rolls them back to their start, and their senders send
again.

A drill (``drill=True``) restores beside the live relay, never over it: the
data folder's ``blobs`` must be another prefix (or bucket) than the
backup's, and empty. Nothing of the live relay is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import pgdump, restore_plan, s3url, s3versions
from .config import RelayConfig
from .db import make_engine
from .errors import ConfigError
from .metadata import COMPLETE, UPLOADING, SqlMetadataStore
from .pgbackup import DUMP_NAME, Manifest
from .s3blobs import S3BlobStore


@dataclass(frozen=True, slots=True)
class Missing:
    transfer: str
    sender: str
    why: str


@dataclass(slots=True)
class RestoreReport:
    manifest: Manifest
    in_place: bool
    current: int = 0  # blobs that were already as at the backup
    restored: int = 0  # blobs made current again (copied or unmarked)
    missing: list[Missing] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)  # uploads in progress at the backup


def _same_place(a: s3url.S3Location, b: s3url.S3Location) -> bool:
    return (a.bucket, a.prefix) == (b.bucket, b.prefix)


def source_location(cfg: RelayConfig, manifest: Manifest) -> s3url.S3Location:
    """Where the backup's blobs are: its bucket and prefix, on this relay's S3 server."""
    return s3url.parse(manifest.blobs, endpoint=cfg.s3_endpoint, region=cfg.s3_region)


async def restore(cfg: RelayConfig, source: Path, *, drill: bool = False,
                  say: Callable[[str], None] = lambda _: None) -> RestoreReport:
    manifest = Manifest.read(source)
    target = cfg.s3
    if cfg.is_sqlite or target is None:
        raise ConfigError(
            "restore loads a PostgreSQL backup: the data folder's relay.toml must name an "
            "empty PostgreSQL database (database_url) and the S3 bucket (blobs)")
    origin = source_location(cfg, manifest)
    in_place = _same_place(origin, target)
    if drill and in_place:
        raise ConfigError(
            f"a drill restores beside the live relay, never over its blobs: set blobs in "
            f"{cfg.data_dir}/relay.toml to another prefix than {origin.url}, e.g. "
            f"s3://{origin.bucket}/drill; nothing was changed")
    engine = make_engine(cfg.db_url)
    blobs = S3BlobStore(target)
    try:
        await blobs.open()
        await pgdump.require_empty(engine, cfg.db_url)
        marker = await blobs.read_relay_id()
        if marker is not None and marker != manifest.relay_id:
            raise ConfigError(
                f"the blob store {target.url} belongs to relay {marker}, the backup to relay "
                f"{manifest.relay_id}: restore into this relay's bucket and prefix, or an "
                "empty one; nothing was changed")
        if drill and (marker is not None or await blobs.list()):
            raise ConfigError(
                f"the drill's blob store {target.url} is not empty (an earlier drill's?): "
                "choose another prefix; nothing was changed")
        say(f"restoring the database from {source / DUMP_NAME}")
        await pgdump.restore(cfg.db_url, source / DUMP_NAME)
        store = SqlMetadataStore(engine)
        rows = await store.all_transfers()
        report = RestoreReport(manifest, in_place)
        report.partial = [t.id for t in rows if t.state == UPLOADING and t.committed > 0]
        senders = {t.id: t.sender for t in rows}
        wanted = [(t.id, t.size) for t in rows if t.state == COMPLETE]
        say(f"bringing back {len(wanted)} blob(s) as of the backup from {origin.url}")
        versions = await s3versions.list_versions(blobs, origin)
        steps = restore_plan.plan(wanted, versions, manifest.taken_at, in_place=in_place)
        for step in steps.steps:
            if step.action == restore_plan.CURRENT:
                report.current += 1
            elif step.action == restore_plan.UNMARK:
                await s3versions.unmark(blobs, step.transfer, step.markers)
                report.restored += 1
            elif step.action == restore_plan.COPY and step.version is not None:
                await s3versions.copy_version(blobs, origin, step.transfer, step.version)
                report.restored += 1
            else:
                report.missing.append(Missing(step.transfer, senders[step.transfer], step.why))
        if marker is None:
            await blobs.write_relay_id(manifest.relay_id)
        return report
    finally:
        await blobs.close()
        await engine.dispose()


async def discard_drill(cfg: RelayConfig, manifest: Manifest) -> int:
    """Delete every version the drill wrote under the data folder's prefix and
    drop what it restored into its database (empty before: ``restore`` checked),
    so the next drill starts from the same place."""
    target, origin = cfg.s3, source_location(cfg, manifest)
    if target is None or _same_place(target, origin):
        raise ConfigError("refusing to discard the live relay's blobs")
    blobs = S3BlobStore(target)
    engine = make_engine(cfg.db_url)
    try:
        await blobs.open()
        n = await s3versions.purge(blobs)
        await pgdump.empty(engine)
        return n
    finally:
        await blobs.close()
        await engine.dispose()
