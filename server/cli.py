"""``sealdrop-relay``: the operator's command. A thin click layer over ``server.ops``.

Every command takes ``--data DIR`` (or SEALDROP_RELAY_DATA): the one folder
holding relay.toml, the SQLite database and the blobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from sealdrop.crypto.alloc import tune_allocator

from . import binding, s3url, schema, serving
from .accounts import create_invite, invite_hash
from .blobs import BlobStore, LocalBlobStore
from .blobstores import blob_store
from .config import (
    BLOB_DIR,
    CONFIG_NAME,
    DEFAULT_CONFIG_TEXT,
    RelayConfig,
    async_url,
    load_config,
)
from .db import make_engine
from .errors import RelayError
from .logs import setup_logging
from .metadata import SqlMetadataStore

T = TypeVar("T")

data_option = click.option(
    "--data",
    "data_dir",
    envvar="SEALDROP_RELAY_DATA",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The relay's data folder (config, database, blobs). Env: SEALDROP_RELAY_DATA.",
)


def _config(data_dir: Path, **overrides: object) -> RelayConfig:
    if not (data_dir / CONFIG_NAME).exists() and not data_dir.is_dir():
        raise RelayError(f"{data_dir} is not a relay data folder; run `sealdrop-relay init` first")
    return load_config(data_dir, overrides=overrides)


def _with_store(
    cfg: RelayConfig,
    fn: Callable[[SqlMetadataStore, BlobStore], Awaitable[T]],
    *,
    adopt: bool = False,
) -> T:
    """Run ``fn`` on the relay's stores, once the database and the blob store are
    shown to be one relay's (``server.binding``): a mismatch refuses before ``fn``
    runs, so no command acts on a wrong database. ``adopt``: ``init`` binds an
    existing install."""
    async def run() -> T:
        engine = make_engine(cfg.db_url)
        blobs = blob_store(cfg)
        try:
            await blobs.open()
            # Never migrates: only `db upgrade` does (server.schema).
            await binding.require_schema(engine, blobs)
            await blobs.prepare()
            store = SqlMetadataStore(engine)
            await binding.bind(store, blobs, adopt=adopt)
            return await fn(store, blobs)
        finally:
            await blobs.close()
            await engine.dispose()

    return asyncio.run(run())


def _when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(None, "-V", "--version", package_name="sealdrop",
                      message="%(prog)s %(version)s")
def cli() -> None:
    """sealdrop-relay: the blind relay for sealdrop (stores ciphertext only).

    \b
    Examples:
      sealdrop-relay init --data /var/lib/sealdrop-relay
      sealdrop-relay serve --data /var/lib/sealdrop-relay --port 8780
      sealdrop-relay invite create --data /var/lib/sealdrop-relay
    """


@cli.command()
@data_option
def init(data_dir: Path) -> None:
    """Create the data folder, a commented relay.toml and the database schema."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    conf = data_dir / CONFIG_NAME
    if not conf.exists():
        conf.write_text(DEFAULT_CONFIG_TEXT, "utf-8")
        conf.chmod(0o600)
    cfg = load_config(data_dir)

    async def create_schema() -> None:
        engine = make_engine(cfg.db_url)
        try:
            # A new relay gets the schema; an existing one is only checked (in
            # _with_store), so `init` never upgrades behind the operator's back.
            current = await schema.current(engine)
            if current is None:
                # Never into the wrong database: a bound data folder beside an
                # empty database is refused, not given a fresh schema.
                blobs = blob_store(cfg)
                await blobs.open()
                try:
                    await binding.refuse_empty_beside_bound(engine, blobs, current)
                finally:
                    await blobs.close()
                await schema.upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(create_schema())

    async def relay_id(store: SqlMetadataStore, blobs: BlobStore) -> tuple[str | None, str]:
        from .logkey import open_relay_log

        # The log's key: made here for a new relay, checked for an existing one.
        log, made = await open_relay_log(store, cfg.log_origin, cfg.log_key_path)
        return await store.relay_id(), (
            f"transparency log {log.origin}: key {cfg.log_key_path} "
            + ("made now; back it up with the database" if made else "kept"))

    # Binds the database and the blob store (a new relay, or an existing install
    # whose database holds the rows of the blobs found); refuses a mismatch.
    rid, log_line = _with_store(cfg, relay_id, adopt=True)
    click.echo(f"relay data folder ready: {data_dir} (relay id {rid})")
    click.echo(log_line)


@cli.command()
@data_option
@click.option("--host", envvar="SEALDROP_RELAY_HOST", default=None, help="Listen address.")
@click.option("--port", envvar="SEALDROP_RELAY_PORT", type=int, default=None,
              help="Listen port (0 picks a free one; the chosen port is logged).")
def serve(data_dir: Path, host: str | None, port: int | None) -> None:
    """Run the relay (plain HTTP on loopback; put a TLS reverse proxy in front)."""
    cfg = _config(data_dir, host=host, port=port)
    logger = setup_logging(cfg.log_level)
    tune_allocator(os.environ)  # chunk bodies arrive in pieces: keep their memory (crypto.alloc)
    asyncio.run(_serve(cfg, logger))


async def _serve(cfg: RelayConfig, logger: Any) -> None:
    with contextlib.ExitStack() as held:
        if cfg.sqlite_path is not None:  # one server per SQLite database (server.serving)
            held.enter_context(serving.only_server(cfg.sqlite_path))
        await _run_site(cfg, logger)


async def _run_site(cfg: RelayConfig, logger: Any) -> None:
    from aiohttp import web

    from .app import create_app, make_runner

    # The application checks the schema as it starts (server.schema) and
    # refuses one it does not know; nothing here migrates.
    runner = make_runner(create_app(cfg))
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port)
    await site.start()
    server = getattr(site, "_server", None)
    sockets = getattr(server, "sockets", None) or []
    port = sockets[0].getsockname()[1] if sockets else cfg.port
    logger.info("listening", extra={"fields": {"host": cfg.host, "port": port}})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logger.info("stopping", extra={"fields": {}})
    await runner.cleanup()


@cli.group()
def invite() -> None:
    """Invite codes: registration needs one."""


@invite.command("create")
@data_option
@click.option("--json", "as_json", is_flag=True, help='Print {"code": ...}.')
def invite_create(data_dir: Path, as_json: bool) -> None:
    """Make a single-use invite code; hand it to the new clinic out of band."""
    cfg = _config(data_dir)

    async def run(store: SqlMetadataStore, blobs: BlobStore) -> str:
        return await create_invite(store, now=int(time.time()), ttl=cfg.invite_ttl_seconds)

    code = _with_store(cfg, run)
    click.echo(json.dumps({"code": code}) if as_json else code)


@invite.command("list")
@data_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def invite_list(data_dir: Path, as_json: bool) -> None:
    """List invites (by id: codes are stored hashed and cannot be shown again)."""
    cfg = _config(data_dir)
    rows = _with_store(cfg, lambda store, blobs: store.list_invites())
    now = int(time.time())
    for r in rows:
        state = (
            "revoked" if r.revoked else "used" if r.used_by else
            "expired" if r.expires_at <= now else "open"
        )
        item = {"id": r.code_hash[:12], "state": state, "created": _when(r.created_at),
                "expires": _when(r.expires_at), "used_by": r.used_by}
        click.echo(json.dumps(item) if as_json else
                   f"{item['id']}  {state:8} created {item['created']}  expires "
                   f"{item['expires']}  {r.used_by or ''}".rstrip())


@invite.command("revoke")
@data_option
@click.argument("code")
def invite_revoke(data_dir: Path, code: str) -> None:
    """Revoke an unused invite, by its code or by the id `invite list` shows."""
    cfg = _config(data_dir)
    is_id = len(code) == 12 and all(c in "0123456789abcdef" for c in code)
    key = code if is_id else invite_hash(code)
    n = _with_store(cfg, lambda store, blobs: store.revoke_invite(key))
    if n == 0:
        raise RelayError("no unused invite matches that code or id")
    click.echo(f"revoked {n} invite(s)")


@cli.group()
def account() -> None:
    """Registered accounts."""


@account.command("list")
@data_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def account_list(data_dir: Path, as_json: bool) -> None:
    """List accounts with their state."""
    cfg = _config(data_dir)
    rows = _with_store(cfg, lambda store, blobs: store.list_accounts())
    for a in rows:
        state = "disabled" if a.disabled else "active"
        if as_json:
            click.echo(json.dumps({"handle": a.handle, "state": state,
                                   "created": _when(a.created_at)}))
        else:
            click.echo(f"{a.handle}  {state}  registered {_when(a.created_at)}")


@account.command("disable")
@data_option
@click.argument("handle")
def account_disable(data_dir: Path, handle: str) -> None:
    """Disable an account: its requests are refused, it no longer receives, and its
    transfers leave every inbox (until it is enabled again)."""
    cfg = _config(data_dir)
    if not _with_store(cfg, lambda store, blobs: store.set_disabled(handle, True)):
        raise RelayError(f"no account {handle!r}")
    click.echo(f"disabled {handle}")


@account.command("enable")
@data_option
@click.argument("handle")
def account_enable(data_dir: Path, handle: str) -> None:
    """Re-enable a disabled account."""
    cfg = _config(data_dir)
    if not _with_store(cfg, lambda store, blobs: store.set_disabled(handle, False)):
        raise RelayError(f"no account {handle!r}")
    click.echo(f"enabled {handle}")


@account.command("usage")
@data_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def account_usage(data_dir: Path, as_json: bool) -> None:
    """Per account: transfers it sent that the relay still stores, their bytes, and
    its share of the quota (expired transfers count until gc removes them)."""
    cfg = _config(data_dir)
    rows = _with_store(cfg, lambda store, blobs: store.usage())
    for handle, count, stored in rows:
        if as_json:
            click.echo(json.dumps({"handle": handle, "transfers": count, "bytes": stored,
                                   "quota_bytes": cfg.quota_bytes}))
        else:
            pct = 100 * stored / cfg.quota_bytes
            click.echo(f"{handle}  {count} transfer(s)  {stored} bytes  {pct:.1f}% of quota")


@account.command("transfers")
@data_option
@click.argument("handle")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def account_transfers(data_dir: Path, handle: str, as_json: bool) -> None:
    """Transfers HANDLE sent or receives, oldest first: id, sender, state, size, expiry.
    Ids and sizes only: the relay never knows what a transfer holds."""
    cfg = _config(data_dir)

    async def run(store: SqlMetadataStore, blobs: BlobStore) -> list[Any]:
        if await store.get_account(handle) is None:
            raise RelayError(f"no account {handle!r}; `sealdrop-relay account list` shows them")
        return await store.transfers_of(handle)

    for t in _with_store(cfg, run):
        role = "sent" if t.sender == handle else "received"
        item = {"id": t.id, "role": role, "sender": t.sender, "state": t.state,
                "size": t.size, "stored": t.committed, "created": _when(t.created_at),
                "expires": _when(t.expires_at),
                "recipients": [r.handle for r in t.recipients]}
        click.echo(json.dumps(item) if as_json else
                   f"{t.id}  {role:8} from {t.sender}  {t.state:9} {t.size} bytes  "
                   f"expires {item['expires']}")


for_option = click.option(
    "--for", "recipient", required=True, metavar="HANDLE",
    help="The account that refuses the other (the lab being flooded, say).")


@account.command("block")
@data_option
@for_option
@click.argument("handle")
def account_block(data_dir: Path, recipient: str, handle: str) -> None:
    """Make --for refuse HANDLE: new transfers are refused, existing ones leave its inbox."""
    from . import blocking

    cfg = _config(data_dir)
    new = _with_store(cfg, lambda store, blobs: blocking.block(
        store, recipient, handle, now=int(time.time())))
    click.echo(f"{recipient} now blocks {handle}" if new
               else f"{recipient} already blocks {handle}")


@account.command("unblock")
@data_option
@for_option
@click.argument("handle")
def account_unblock(data_dir: Path, recipient: str, handle: str) -> None:
    """Lift a block: HANDLE's unexpired transfers show in --for's inbox again."""
    from . import blocking

    cfg = _config(data_dir)
    if not _with_store(cfg, lambda store, blobs: blocking.unblock(store, recipient, handle)):
        raise RelayError(f"{recipient} does not block {handle}")
    click.echo(f"{recipient} no longer blocks {handle}")


@account.command("blocks")
@data_option
@click.argument("handle")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def account_blocks(data_dir: Path, handle: str, as_json: bool) -> None:
    """The accounts HANDLE blocks (by its own request or the operator's)."""
    cfg = _config(data_dir)
    rows = _with_store(cfg, lambda store, blobs: store.blocks_of(handle))
    for blocked, since in rows:
        click.echo(json.dumps({"handle": blocked, "since": _when(since)}) if as_json
                   else f"{blocked}  since {_when(since)}")


@cli.command()
@data_option
@click.option("--json", "as_json", is_flag=True)
@click.option("--force", is_flag=True,
              help="Delete even more than half of the stored blobs in this run.")
def gc(data_dir: Path, as_json: bool, force: bool) -> None:
    """Delete expired, abandoned and dismissed transfers, orphan blobs and old nonces.

    Refuses (deleting nothing) a run that would delete more than half of the
    stored blobs, unless --force; each deletion is logged to stderr. If
    another gc is running on the same database (this command or a relay
    process's), says so and exits 0 without doing anything."""
    from . import ops
    from .leases import Leases

    cfg = _config(data_dir)
    setup_logging(cfg.log_level)
    report = _with_store(cfg, lambda store, blobs: ops.gc_as_leader(
        store, blobs, cfg, now=int(time.time()), force=force, leases=Leases(store)))
    if report is None:
        click.echo(json.dumps({"skipped": "another gc is running"}) if as_json else
                   "another gc is running on this database; nothing done")
        return
    counts = report.counts()
    click.echo(json.dumps(counts) if as_json else
               " ".join(f"{k}={v}" for k, v in counts.items()))


@cli.command()
@data_option
@click.option("--repair", is_flag=True, help="Delete broken transfers and orphan blobs.")
@click.option("--json", "as_json", is_flag=True)
def verify(data_dir: Path, repair: bool, as_json: bool) -> None:
    """Re-hash every complete blob along its recorded chunks (exit 1 on problems).

    Uploads holding bytes past their committed offset (a chunk being written)
    are listed as information, not as a problem; --repair leaves them."""
    from . import ops, verify_metrics

    cfg = _config(data_dir)
    setup_logging(cfg.log_level)
    report = _with_store(cfg, lambda store, blobs: ops.verify(store, blobs, repair=repair))
    # Every run, so that a stale timestamp shows a verify that stopped running.
    try:
        verify_metrics.write(cfg.data_dir, report, now=int(time.time()))
    except OSError as exc:
        # The findings below still count; the metric's staleness shows the rest.
        click.echo(f"sealdrop-relay: warning: could not write {verify_metrics.FILE_NAME} "
                   f"in {cfg.data_dir} ({exc.strerror}); run verify as the relay's user",
                   err=True)
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        click.echo(f"checked {report.checked} transfer(s)")
        for kind in ("tampered", "missing", "orphans"):
            for tid in getattr(report, kind):
                click.echo(f"{kind}: {tid}")
        if report.trailing:
            click.echo(ops.TRAILING_NOTE.format(n=len(report.trailing)))
            for tid in report.trailing:
                click.echo(f"trailing: {tid}")
        for r in report.removed:
            click.echo(f"removed: {r.transfer} sender={r.sender or '-'} "
                       f"problem={r.problem} action={r.action}")
        click.echo("ok" if report.ok else ("repaired" if repair else "problems found"))
    if not report.ok and not repair:
        sys.exit(1)


@cli.command()
@data_option
@click.option("--to", "dest", type=click.Path(file_okay=False, path_type=Path),
              help="An empty folder; it becomes a data folder you can serve.")
@click.option("--into", "target", type=click.Path(file_okay=False, path_type=Path),
              help="A backup target: each run writes TARGET/<UTC time>; created if missing.")
@click.option("--keep", type=click.IntRange(min=1), default=None,
              help="With --into: keep the newest N backups there, delete older ones.")
def backup(data_dir: Path, dest: Path | None, target: Path | None, keep: int | None) -> None:
    """Copy the database (SQLite online backup) and blobs, consistently, while serving.

    On PostgreSQL (blobs in a versioned S3 bucket): a pg_dump and its time; the
    blobs stay in the bucket's versions. `restore --from` brings both back."""
    from . import backup_rotation as rotation
    from . import ops, pgbackup

    if dest is not None and target is not None:
        raise click.UsageError("give either --to FOLDER or --into TARGET, not both")
    if keep is not None and target is None:
        raise click.UsageError("--keep needs --into TARGET (a folder of dated backups)")
    cfg = _config(data_dir)
    slot = None
    if target is not None:
        rotation.prepare_target(target)
        slot = rotation.new_slot(target)
        out = slot.partial
    elif dest is not None:
        out = dest
    else:
        raise click.UsageError("give --to FOLDER or --into TARGET")

    async def run(store: SqlMetadataStore,
                  blobs: BlobStore) -> ops.BackupReport | pgbackup.Manifest:
        if not cfg.is_sqlite:  # a dump; the blobs stay in the bucket's versions
            return await pgbackup.backup(store, blobs, cfg, out)
        report = await ops.backup(store, blobs, cfg, out)
        # The copy is the same relay: its blob store carries the id its database
        # snapshot holds, so `serve --data` on a restored copy accepts the pair.
        relay_id = await store.relay_id()
        if relay_id is not None:
            LocalBlobStore(out / BLOB_DIR).write_relay_id_now(relay_id)
        return report

    try:
        report = _with_store(cfg, run)
    except BaseException:
        if slot is not None:
            rotation.abandon(slot)  # a half-written backup must never count as one
        raise
    if slot is not None:
        rotation.finish(slot)
        out = slot.final
    if isinstance(report, pgbackup.Manifest):
        click.echo(f"dumped {report.transfers} transfer(s) ({report.complete} complete) as of "
                   f"{_when(int(report.taken_at))} to {out}; their blobs stay in the versions "
                   f"of {report.blobs}")
    else:
        click.echo(f"backed up {report.transfers} transfer(s), {report.bytes} bytes to {out}"
                   + (f" ({report.dropped} deleted during the backup)" if report.dropped else ""))
    if target is not None and keep is not None:
        for old in rotation.prune(target, keep):
            click.echo(f"removed old backup {old}")


@cli.command()
@data_option
@click.option("--from", "source", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A backup of a PostgreSQL relay (a folder `backup` wrote).")
@click.option("--drill", is_flag=True,
              help="A restore drill: into another prefix than the backup's, then verify, "
                   "then delete the drill's copies and empty its database again.")
def restore(data_dir: Path, source: Path, drill: bool) -> None:
    """Restore a PostgreSQL + S3 relay from a backup, then verify it.

    Loads the dump into the empty database named in DIR/relay.toml and makes
    each blob of the dump current again as it was at the backup (from the
    bucket's versions). Exit 1 if a complete transfer could not be restored.
    SQLite backups are data folders: copy one instead (docs/operations.md)."""
    from . import pgrestore, restore_report

    cfg = _config(data_dir)
    setup_logging(cfg.log_level)
    report = asyncio.run(pgrestore.restore(cfg, source, drill=drill, say=click.echo))
    try:
        checked = _with_store(cfg, lambda store, blobs: restore_report.check(store, blobs, report))
        for line in checked.lines():
            click.echo(line)
    finally:
        # The restore went through, so the database was empty and the prefix
        # not the live one: what is there now is the drill's alone, even when
        # verify could not run (a backup of an older schema, say).
        if drill:
            n = asyncio.run(pgrestore.discard_drill(cfg, report.manifest))
            click.echo(f"drill: deleted the {n} object version(s) it wrote under {cfg.blobs} "
                       "and emptied its database")
    if not checked.ok:
        sys.exit(1)


@cli.command()
@data_option
@click.option("--to", "to_url", envvar="SEALDROP_MIGRATE_TO", required=True,
              help="The target database URL, postgresql://USER@HOST/DB (its password in "
                   "PGPASSWORD or ~/.pgpass, never here). Env: SEALDROP_MIGRATE_TO.")
@click.option("--blobs", "blobs_spec", envvar="SEALDROP_MIGRATE_BLOBS", required=True,
              help="The target blob store: s3://BUCKET/PREFIX (credentials from the AWS "
                   "environment) or a folder. Env: SEALDROP_MIGRATE_BLOBS.")
@click.option("--s3-endpoint", envvar="SEALDROP_MIGRATE_S3_ENDPOINT", default="",
              help="With s3://: the object store's URL (empty for AWS). "
                   "Env: SEALDROP_MIGRATE_S3_ENDPOINT.")
@click.option("--s3-region", envvar="SEALDROP_MIGRATE_S3_REGION", default="",
              help="With s3://: its region. Env: SEALDROP_MIGRATE_S3_REGION.")
@click.option("--blobs-only", is_flag=True,
              help="Copy and verify blobs only, while the relay still serves; run again "
                   "without it once the relay is stopped.")
@click.option("--json", "as_json", is_flag=True)
def migrate(data_dir: Path, to_url: str, blobs_spec: str, s3_endpoint: str, s3_region: str,
            blobs_only: bool, as_json: bool) -> None:
    """Move this relay onto another database and blob store, verified blob by blob.

    Resumable: run it again after an interruption. The source is only read.
    Stop the relay before the run that moves the rows (docs/operations.md)."""
    from sqlalchemy.engine import make_url

    from . import migrate as mig

    ctx = click.get_current_context()
    if (make_url(to_url).password is not None
            and ctx.get_parameter_source("to_url") == click.core.ParameterSource.COMMANDLINE):
        raise click.UsageError(
            "put the database password in PGPASSWORD or ~/.pgpass, not on the command "
            "line: other users of this machine can read a process's arguments")
    cfg = _config(data_dir)
    if cfg.s3 is not None:
        raise click.UsageError("this relay already keeps its blobs in object storage; "
                               "migrate moves a relay whose blobs are files")
    if s3url.is_s3(blobs_spec):
        target: RelayConfig = cfg.replace(blobs=blobs_spec, s3_endpoint=s3_endpoint,
                                          s3_region=s3_region)
        target_blobs = blob_store(target)
    else:
        folder = Path(blobs_spec).absolute()
        if folder == cfg.blob_dir.absolute():
            raise click.UsageError("the target blob store is the relay's own; give another one")
        target_blobs = LocalBlobStore(folder)

    def say(line: str) -> None:
        if not as_json:
            click.echo(line, err=True)

    async def run(store: SqlMetadataStore, blobs: BlobStore) -> mig.MigrateReport:
        assert isinstance(blobs, LocalBlobStore)
        engine = make_engine(async_url(to_url))
        try:
            await target_blobs.open()
            return await mig.migrate(store, blobs, engine, target_blobs, progress=say,
                                     rows=not blobs_only)
        finally:
            await target_blobs.close()
            await engine.dispose()

    report = _with_store(cfg, run)
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        click.echo(f"copied {report.copied} blob(s) ({report.bytes} bytes), "
                   f"{report.skipped} already there; all verified")
        if report.cut_back:
            click.echo(f"{report.cut_back} upload(s) in progress keep whole parts only; "
                       "their senders re-send the rest when they run send again")
        click.echo("blobs only: stop the relay and run again without --blobs-only" if blobs_only
                   else "rows already moved by an earlier run" if report.already
                   else "rows moved: point relay.toml at the target (docs/operations.md)")


@cli.group()
def log() -> None:
    """The transparency log of keys, transfers and receipts (docs/transparency.md)."""


@log.command("verify")
@data_option
@click.option("--json", "as_json", is_flag=True)
def log_verify(data_dir: Path, as_json: bool) -> None:
    """Recompute the log from its entries and check it against its stored hashes,
    its head and the relay's rows (bundles, transfers, receipts); exit 1 and
    name each entry that does not match."""
    from . import logverify

    cfg = _config(data_dir)
    rows = _with_store(cfg, lambda store, blobs: store.log_read(logverify.read_rows))
    report = logverify.check(rows)
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        for line in report.lines():
            click.echo(line)
    if not report.ok:
        sys.exit(1)


@log.command("publish")
@data_option
@click.option("--to", "to", envvar="SEALDROP_LOG_PUBLISH_TO", required=True,
              help="A folder (served by nginx) or s3://BUCKET/PREFIX (not the blobs' own "
                   "prefix; credentials from the AWS environment). Env: "
                   "SEALDROP_LOG_PUBLISH_TO.")
@click.option("--s3-endpoint", envvar="SEALDROP_LOG_PUBLISH_S3_ENDPOINT", default=None,
              help="With s3://: the object store's URL (default: the relay's s3_endpoint; "
                   "empty for AWS). Env: SEALDROP_LOG_PUBLISH_S3_ENDPOINT.")
@click.option("--s3-region", envvar="SEALDROP_LOG_PUBLISH_S3_REGION", default=None,
              help="With s3://: its region (default: the relay's s3_region). "
                   "Env: SEALDROP_LOG_PUBLISH_S3_REGION.")
@click.option("--json", "as_json", is_flag=True)
def log_publish(data_dir: Path, to: str, s3_endpoint: str | None, s3_region: str | None,
                as_json: bool) -> None:
    """Write the log as static C2SP tlog-tiles files: every tile not yet there,
    then the checkpoint. Idempotent; run it from a timer (docs/transparency.md)."""
    from sealdrop.crypto.tlog.checkpoint import Checkpoint

    from . import logpublish, tlog
    from .logkey import VKEY_META, open_relay_log
    from .witnessing import CosignedCheckpoints

    cfg = _config(data_dir)
    location = None
    if s3url.is_s3(to):
        location = s3url.parse(
            to, endpoint=cfg.s3_endpoint if s3_endpoint is None else s3_endpoint,
            region=cfg.s3_region if s3_region is None else s3_region)
        blobs = cfg.s3
        if (blobs is not None and blobs.bucket == location.bucket
                and (blobs.prefix.startswith(location.prefix)
                     or location.prefix.startswith(blobs.prefix))):
            # A public bucket policy or CDN for the log must not reach the blobs.
            raise click.UsageError(
                f"{to} overlaps the relay's blob store {blobs.url}; publish the log to "
                "another bucket, or a prefix beside the blobs' (not above or inside it)")
    else:
        folder = Path(to).absolute()
        if folder == data_dir.absolute() or data_dir.absolute() in folder.parents:
            raise click.UsageError(
                f"{to} is inside the relay's data folder, which holds its private key; "
                "publish the log to a folder of its own, e.g. /var/www/sealdrop-log")

    async def run(store: SqlMetadataStore, blobs: BlobStore) -> logpublish.PublishReport:
        if await store.meta(VKEY_META) is None:
            raise RelayError("this relay's log has no key yet; start the relay once "
                             "(or run `sealdrop-relay init`) before publishing its log")
        log, _ = await open_relay_log(store, cfg.log_origin, cfg.log_key_path)
        witnesses = CosignedCheckpoints(cfg.witness)

        async def cosigned(note: str, cp: Checkpoint) -> str:
            # As the relay's checkpoint endpoint does: a witness that fails
            # costs its cosignature (a warning), never the publish.
            async def proof_for(old: int) -> list[bytes]:
                return await store.log_read(lambda conn: tlog.consistency(conn, old, cp.size))
            return await witnesses.note_for(note, cp, proof_for)

        cosign = cosigned if cfg.witness else None

        if location is None:
            with logpublish.open_dir(Path(to)) as folder:
                return await logpublish.publish(store, log, folder, cosign=cosign)
        async with logpublish.open_s3(location, cfg.s3_timeout_seconds) as target:
            return await logpublish.publish(store, log, target, cosign=cosign)

    report = _with_store(cfg, run)
    click.echo(json.dumps(report.to_json()) if as_json else report.line())


@cli.group()
def db() -> None:
    """The database schema: only `db upgrade` ever changes it.

    \b
    Upgrade: stop the relay, back up, install the new version, `db upgrade`, start.
    Roll back: stop, `db downgrade REV` with the NEW version, reinstall the old one.
    """


def _engine_run(cfg: RelayConfig, fn: Callable[[Any], Awaitable[T]]) -> T:
    async def run() -> T:
        engine = make_engine(cfg.db_url)
        try:
            return await fn(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


@db.command("current")
@data_option
@click.option("--json", "as_json", is_flag=True, help='Print {"current": ..., "head": ...}.')
def db_current(data_dir: Path, as_json: bool) -> None:
    """Show the database's schema revision and this relay's; exit 1 if they differ."""
    cfg = _config(data_dir)
    current = _engine_run(cfg, schema.current)
    head = schema.head()
    state = "current" if current == head else "mismatch"
    click.echo(json.dumps({"current": current, "head": head, "state": state}) if as_json
               else f"database {current or 'empty'}, relay {head}: {state}")
    if current != head:
        sys.exit(1)


@db.command("upgrade")
@data_option
def db_upgrade(data_dir: Path) -> None:
    """Migrate the schema to this version's newest revision (stop the relay first)."""
    cfg = _config(data_dir)
    before, after = _engine_run(cfg, schema.upgrade)
    click.echo(f"schema already at {after}" if before == after
               else f"schema upgraded from {before or 'empty'} to {after}")


@db.command("downgrade")
@data_option
@click.argument("revision")
def db_downgrade(data_dir: Path, revision: str) -> None:
    """Migrate the schema down to REVISION, before reinstalling an older version.

    Run it with the version that upgraded the schema (it knows the way down).
    Columns and tables newer than REVISION are dropped with their data."""
    cfg = _config(data_dir)
    before, after = _engine_run(cfg, lambda engine: schema.downgrade(engine, revision))
    click.echo(f"schema already at {after}" if before == after
               else f"schema downgraded from {before} to {after}")


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("sealdrop-relay: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except RelayError as exc:
        click.echo(f"sealdrop-relay: error: {exc.message}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
