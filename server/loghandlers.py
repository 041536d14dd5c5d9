"""The transparency log's HTTP edge: the signed checkpoint and the C2SP
tlog-tiles resources (tiles and entry bundles), unauthenticated so that
standard tooling and witnesses can read them (docs/transparency.md).

Paths are ``/v1/log/checkpoint`` and ``/v1/log/tile/...``: the log's URL
prefix is ``<relay>/v1/log``. Tiles never change once served (a partial tile
is a prefix of its full one), so full tiles are cacheable for good; the
checkpoint changes with every append and is never cached.
"""

from __future__ import annotations

from aiohttp import web

from sealdrop.crypto.errors import LogFormatError
from sealdrop.crypto.protocol import ErrorCode
from sealdrop.crypto.tlog.tiles import TILE_WIDTH, parse_tile_path

from . import logtiles
from .errors import InvalidInput, NotFound, StoreUnavailable
from .logkey import LogSigner
from .state import RELAY_KEY, Relay

NO_STORE = {"Cache-Control": "no-store"}
FULL_TILE_CACHE = "public, max-age=31536000, immutable"
# A partial tile's bytes never change either, but the relay promises it only
# for sizes it signed and a client asks for it only until the full one
# exists: a short life in caches is all it needs.
PARTIAL_TILE_CACHE = "public, max-age=60"


def _relay(request: web.Request) -> Relay:
    return request.app[RELAY_KEY]


def _signer(relay: Relay) -> LogSigner:
    if relay.log is None:  # set once the relay is bound to its database (server.app)
        raise StoreUnavailable("the transparency log is not open yet")
    return relay.log


async def checkpoint(request: web.Request) -> web.Response:
    relay = _relay(request)
    size, root = await relay.store.log_head()
    note = _signer(relay).checkpoint(size, root)
    return web.Response(text=note, content_type="text/plain", charset="utf-8",
                        headers=NO_STORE)


async def tile(request: web.Request) -> web.Response:
    relay = _relay(request)
    path = "tile/" + request.match_info["path"]
    try:
        level, index, width = parse_tile_path(path)
    except LogFormatError as exc:
        raise InvalidInput(f"not a tlog-tiles path: {exc}", code=ErrorCode.BAD_REQUEST) from None
    data = await relay.store.log_read(lambda conn: logtiles.read_tile(conn, level, index, width))
    if data is None:
        raise NotFound("the log does not have that tile yet", code=ErrorCode.NOT_FOUND)
    cache = FULL_TILE_CACHE if width == TILE_WIDTH else PARTIAL_TILE_CACHE
    return web.Response(body=data, content_type="application/octet-stream",
                        headers={"Cache-Control": cache})
