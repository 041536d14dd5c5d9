"""The relay id that binds a blob store to its database.

Why: the relay's blobs are only safe while the database that names them is
the right one. A data folder pointed at a fresh or foreign database (a
PostgreSQL move half done, a database URL the gc unit does not read) looks
like a relay full of orphan blobs, and gc would delete them all. So each side
holds the same random id: the database in ``relay_meta``, the blob store in
its marker file (``blobs/relay-id``). Every command that touches both checks
the pair first and refuses a mismatch with a sentence; nothing is written
then.

Binding an unbound pair is explicit (``sealdrop-relay init``), except for a
brand-new relay where both sides are empty and there is nothing to lose.
An existing install from before the binding is adopted only when the
database holds the rows of the blobs found, never by guess.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from . import schema
from .blobs import RELAY_ID_FILE, BlobStore
from .errors import ConfigError
from .metadata import SqlMetadataStore

INIT_HINT = "run `sealdrop-relay init --data DIR` once to bind them"
FIX_HINT = (
    "check database_url in relay.toml and SEALDROP_RELAY_DATABASE_URL in "
    "/etc/sealdrop-relay/env (every command and unit reads both); nothing was changed"
)


class BindingError(ConfigError):
    """The database and the blob store do not belong to the same relay."""


@dataclass(frozen=True, slots=True)
class Binding:
    relay_id: str
    outcome: str  # "bound" (already), "new" (fresh relay), "adopted" (existing install)


def _db_name(store: SqlMetadataStore) -> str:
    # The URL without its password: this sentence goes to a terminal or the journal.
    return store.engine.url.render_as_string(hide_password=True)


async def refuse_empty_beside_bound(
    engine: AsyncEngine, local: BlobStore, current: str | None
) -> None:
    """A database with no schema at all beside a blob store that belongs to a
    relay is the wrong database: say so, rather than "run init"."""
    blob_id = await local.read_relay_id()
    if current is None and blob_id is not None:
        db = engine.url.render_as_string(hide_password=True)
        raise BindingError(
            f"the blob store {local.where} belongs to relay {blob_id} but the database {db} "
            f"holds no relay schema: it is a fresh or foreign database, not this relay's; "
            f"{FIX_HINT}"
        )


async def require_schema(engine: AsyncEngine, local: BlobStore) -> None:
    """The schema check every command and ``serve`` run first (``schema.judge``),
    with the wrong-database case named for what it is."""
    current = await schema.current(engine)
    await refuse_empty_beside_bound(engine, local, current)
    schema.judge(current)


async def check(store: SqlMetadataStore, local: BlobStore) -> str:
    """The relay id both sides share; ``BindingError`` (with why) otherwise."""
    db_id = await store.relay_id()
    blob_id = await local.read_relay_id()
    if db_id is not None and db_id == blob_id:
        return db_id
    db, folder = _db_name(store), local.where
    if db_id is not None and blob_id is not None:
        raise BindingError(
            f"the database {db} belongs to relay {db_id} but the blob store {folder} to relay "
            f"{blob_id}: they are two different relays; {FIX_HINT}"
        )
    if blob_id is not None:
        raise BindingError(
            f"the blob store {folder} belongs to relay {blob_id} but the database {db} has no "
            f"relay id: it is a fresh or foreign database, not this relay's; {FIX_HINT} "
            f"(if it is this relay's, after a schema rollback, `sealdrop-relay init --data DIR` "
            f"binds it again once its rows match the blobs)"
        )
    if db_id is not None:
        raise BindingError(
            f"the database {db} belongs to relay {db_id} but the blob store {folder} has no "
            f"relay id: wrong data folder, or its relay-id file was lost; point --data at the "
            f"relay's data folder or restore {local.where}/{RELAY_ID_FILE} from a backup"
        )
    raise BindingError(
        f"the database {db} and the blob store {folder} are not bound to each other yet; "
        f"{INIT_HINT}"
    )


async def _adoptable(store: SqlMetadataStore, local: BlobStore) -> str | None:
    """Why this unbound pair must not be bound as one relay; None if it may."""
    listed = await local.list()
    ids = await store.ids()
    rows = await store.all_transfers()
    with_bytes = [t.id for t in rows if t.committed > 0]
    keys = {b.key for b in listed}
    if keys and not keys & ids:
        return (
            f"the blob store {local.where} holds {len(keys)} blob(s) but the database "
            f"{_db_name(store)} holds none of their transfers: it is not this relay's database"
        )
    # A few orphans (a crash between row delete and blob delete) are normal;
    # most blobs without rows are not.
    if len(keys - ids) * 2 > len(keys):
        return (
            f"{len(keys - ids)} of the {len(keys)} blob(s) in {local.where} have no transfer in "
            f"the database {_db_name(store)}: it is not this relay's database"
        )
    missing = [tid for tid in with_bytes if tid not in keys]
    if missing and len(missing) * 2 >= len(with_bytes):
        return (
            f"the database {_db_name(store)} records {len(with_bytes)} transfer(s) with data "
            f"but {len(missing)} of their blobs are not in {local.where}: wrong data folder"
        )
    return None


async def bind(store: SqlMetadataStore, local: BlobStore, *, adopt: bool) -> Binding:
    """Check the pair, binding it first if it is unbound and safe to bind.

    A brand-new relay (no blob, no transfer, no id on either side) is bound
    with a new id. ``adopt`` (``init``): an existing install, or a binding
    half written, is bound once the database is shown to hold the rows of
    the blobs found. Anything else raises ``BindingError`` and writes nothing.
    """
    db_id = await store.relay_id()
    blob_id = await local.read_relay_id()
    if db_id is not None and db_id == blob_id:
        return Binding(db_id, "bound")
    if db_id is not None and blob_id is not None:
        await check(store, local)  # raises the mismatch sentence
    unmarked = db_id is None and blob_id is None
    fresh = not await local.list() and await store.count_transfers() == 0
    if not adopt and not (fresh and unmarked):
        await check(store, local)  # raises: unbound or half bound
    if not fresh:
        why = await _adoptable(store, local)
        if why is not None:
            raise BindingError(f"{why}; {FIX_HINT}")
    # Database first: a crash before the marker is written leaves a half
    # binding that the next `init` completes after the same checks.
    relay_id = await store.set_relay_id(db_id or blob_id or secrets.token_hex(16))
    if blob_id is None:
        await local.write_relay_id(relay_id)
    return Binding(relay_id, "new" if fresh and unmarked else "adopted")
