"""HTTP handlers: parse and check the request, call the domain, shape the answer.

Requests are read with ``server.http_parse``; the domain gets plain values.
Domain errors (``server.errors``) propagate to the error middleware in
``server.middleware``, which turns them into ``{"error": ..., "code": ...}``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from pathlib import Path
from typing import Any

from aiohttp import web

from sealdrop.crypto import chunkhash
from sealdrop.crypto.protocol import (
    H_BLOB_DIGEST,
    H_CHUNK_BLAKE3,
    H_CHUNK_SHA256,
    H_TRANSFER_STATE,
    H_UPLOAD_OFFSET,
    MAX_CARD_BYTES,
    MIN_EXPIRY_SECONDS,
    ErrorCode,
)

from . import accounts, auth, blocking, schema, transfers
from .errors import Conflict, InvalidInput, NotFound, NotPermitted, StoreUnavailable, TooLarge
from .http_parse import (
    chunk_length,
    end_batching,
    no_body,
    parse_range,
    read_json,
    size_header,
    timed_body,
)
from .inbox import encode_cursor, parse_query
from .metadata import COMPLETE
from .middleware import HttpCode
from .state import RELAY_KEY, Relay

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
NO_STORE = {"Cache-Control": "no-store"}


def _relay(request: web.Request) -> Relay:
    return request.app[RELAY_KEY]


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers={**NO_STORE, **(headers or {})})


# -- service -----------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    relay = _relay(request)
    problems = {}
    try:
        await relay.store.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        problems["database"] = type(exc).__name__
    else:
        # A schema changed under the running relay (a newer version's `db
        # upgrade`, a restored backup) makes it unfit to serve: say so.
        try:
            schema.judge(await relay.store.schema_revision())
        except StoreUnavailable as exc:  # gone since the ping: the database, not the schema
            problems["database"] = type(exc).__name__
        except Exception as exc:  # noqa: BLE001
            problems["schema"] = type(exc).__name__
    try:
        await relay.blobs.ready()
    except Exception as exc:  # noqa: BLE001
        problems["blob_store"] = type(exc).__name__
    if problems:
        return _json(
            {"error": "relay not ready", "code": HttpCode.NOT_READY, "failing": sorted(problems)},
            status=503,
        )
    return _json({"status": "ready"})


# How long /metrics waits for the database: well within Prometheus' default
# 10 s scrape timeout, so a database that hangs still gives an answer.
METRICS_DB_TIMEOUT = 3.0


async def metrics(request: web.Request) -> web.Response:
    relay = _relay(request)
    try:
        stats: dict[str, int] | None = await asyncio.wait_for(
            relay.store.stats(), METRICS_DB_TIMEOUT
        )
    except Exception as exc:  # noqa: BLE001 - the metrics must answer while the database is down
        stats = None
        relay.logger.warning(
            "metrics_database_unreachable", extra={"fields": {"exception": type(exc).__name__}}
        )
    relay.metrics.set_store_stats(stats)
    body, content_type = relay.metrics.expose(request.headers.get("Accept", ""))
    return web.Response(
        body=body,
        headers={"Content-Type": content_type, "X-Content-Type-Options": "nosniff", **NO_STORE},
    )


async def info(request: web.Request) -> web.Response:
    """What a client needs to know before it sends: unauthenticated, the same for all."""
    relay = _relay(request)
    out: dict[str, object] = {"max_chunk_bytes": relay.config.max_chunk_bytes,
                              "chunk_hashes": list(chunkhash.ALGORITHMS),
                              # So that a client words a refused --expires from data,
                              # never from the refusal's text.
                              "expiry_seconds": {"min": MIN_EXPIRY_SECONDS,
                                                 "max": relay.config.max_expiry_seconds}}
    if relay.blobs.min_chunk_bytes > 1:  # S3 blobs: every chunk but the last is a part
        out["min_chunk_bytes"] = relay.blobs.min_chunk_bytes
    if relay.log is not None:  # what a client pins at init (docs/transparency.md)
        out["log"] = {"origin": relay.log.origin, "vkey": relay.log.vkey}
    return _json(out)


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=OPENAPI_PATH.read_bytes(), content_type="application/json")


# -- accounts ----------------------------------------------------------------


async def register(request: web.Request) -> web.Response:
    relay = _relay(request)
    body, body_sha = await read_json(request, relay.config.max_json_bytes)
    handle, invite, unchecked = accounts.parse_registration(body)
    # Why the invite first: anyone may send registrations, and until one names
    # an open invite the relay spends nothing on it: no key check, no nonce
    # row, no rate-limit token (a flood of bad invites would otherwise drain
    # the bucket real clinics behind the same address register from).
    await accounts.check_invite(relay, invite)
    bundle = accounts.verified_bundle(unchecked)
    signed = auth.parse_headers(request)
    if signed.handle != handle:
        raise InvalidInput(
            "Sealdrop-Handle must be the handle being registered", code=ErrorCode.BAD_HANDLE
        )
    # Why: the request must be signed by the bundle's own key, proving the
    # registrant holds it (a copied bundle cannot be registered elsewhere).
    auth.check_signature(relay, request, signed, accounts.signing_key_b64(bundle), body_sha)
    auth.take_registration_token(relay, auth.client_of(request))
    # One transaction claims the invite, remembers the nonce and adds the account.
    index = await accounts.register(
        relay, handle, invite, bundle,
        nonce=signed.nonce, nonce_expires_at=auth.nonce_expiry(relay, signed),
    )
    relay.logger.info("account_registered", extra={"fields": {}})
    return _json({"handle": handle, "bundle": bundle.to_json(), "log_index": index},
                 status=201)


async def get_bundle(request: web.Request) -> web.Response:
    relay = _relay(request)
    await auth.authenticate(request, no_body(request))
    handle = request.match_info["handle"]
    account = await relay.store.get_account(handle)
    if account is None or account.disabled:
        raise NotFound("no such account", code=ErrorCode.ACCOUNT_NOT_FOUND)
    out: dict[str, object] = {"handle": handle, "bundle": json.loads(account.bundle)}
    if account.log_index is not None:  # its key entry (docs/transparency.md)
        out["log_index"] = account.log_index
    return _json(out)


async def put_bundle(request: web.Request) -> web.Response:
    relay = _relay(request)
    body, body_sha = await read_json(request, relay.config.max_json_bytes)
    me = await auth.authenticate(request, body_sha)
    if request.match_info["handle"] != me.handle:
        raise NotPermitted("you can only rotate your own keys", code=ErrorCode.NOT_YOUR_ACCOUNT)
    bundle, index = await accounts.rotate(relay, me, body)
    relay.logger.info("bundle_rotated", extra={"fields": {}})
    return _json({"handle": me.handle, "bundle": bundle.to_json(), "log_index": index})


# -- transfers ---------------------------------------------------------------


def _location(tid: str) -> str:
    return f"/v1/transfers/{tid}"


async def create_transfer(request: web.Request) -> web.Response:
    relay = _relay(request)
    body, body_sha = await read_json(request, relay.config.max_json_bytes)
    me = await auth.authenticate(request, body_sha)
    t = await transfers.create(relay, me, body)
    relay.logger.info("transfer_created", extra={"fields": {"transfer": t.id, "size": t.size}})
    return _json(
        {"transfer": transfers.to_json(t, me.handle), "upload_url": _location(t.id) + "/data"},
        status=201,
        headers={"Location": _location(t.id)},
    )


async def list_transfers(request: web.Request) -> web.Response:
    relay = _relay(request)
    me = await auth.authenticate(request, no_body(request))
    sent = await relay.store.list_sent(me.handle, now=relay.now())
    signed = await relay.store.receipts_of([t.id for t in sent if t.log_index is not None])
    return _json({"transfers": [transfers.to_json(t, me.handle, signed.get(t.id, []))
                                for t in sent]})


async def inbox(request: web.Request) -> web.Response:
    relay = _relay(request)
    me = await auth.authenticate(request, no_body(request))
    query = parse_query({k: request.query.getall(k) for k in request.query})
    got, more = await relay.store.inbox_page(
        me.handle, now=relay.now(), limit=query.limit, after=query.after, senders=query.senders
    )
    last = got[-1] if got else None
    cursor = (
        encode_cursor(last.completed_at or 0, last.id) if more and last is not None else None
    )
    # Cards inline, one query for the page: a lab's `inbox` of thirty cases is
    # one request, not thirty-one (docs/protocol.md, "Case cards").
    cards = await relay.store.cards_of([t.id for t in got])
    items = []
    for t in got:
        item = transfers.to_json(t, me.handle)
        card = cards.get(t.id)
        item["card"] = None if card is None else base64.b64encode(card).decode("ascii")
        items.append(item)
    return _json({"transfers": items, "next_cursor": cursor})


async def put_card(request: web.Request) -> web.Response:
    """The sender stores the transfer's sealed case card, or replaces it before
    ``complete``. Opaque bytes: the relay checks only who sends it and its size."""
    relay = _relay(request)
    body, body_sha = await read_json(request, relay.config.max_json_bytes)
    me = await auth.authenticate(request, body_sha)
    t = await transfers.visible(relay, me, request.match_info["id"], sender_only=True)
    if set(body) != {"card"} or not isinstance(body["card"], str):
        raise InvalidInput('the body must be {"card": "<base64>"}', code=ErrorCode.BAD_CARD)
    try:
        card = base64.b64decode(body["card"], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("the card is not valid base64", code=ErrorCode.BAD_CARD) from None
    if not card:
        raise InvalidInput("the card is empty", code=ErrorCode.BAD_CARD)
    if len(card) > MAX_CARD_BYTES:
        raise TooLarge(f"a case card may be at most {MAX_CARD_BYTES} bytes",
                       code=ErrorCode.CARD_TOO_LARGE)
    if t.state == COMPLETE:
        raise Conflict("the transfer is complete; its card can no longer change",
                       code=ErrorCode.ALREADY_COMPLETE)
    await relay.store.put_card(t.id, card, now=relay.now())
    relay.logger.info("card_stored", extra={"fields": {"transfer": t.id, "size": len(card)}})
    return web.Response(status=204, headers=NO_STORE)


async def dismiss(request: web.Request) -> web.Response:
    relay = _relay(request)
    body, body_sha = await read_json(request, relay.config.max_json_bytes)
    me = await auth.authenticate(request, body_sha)
    if body:
        raise InvalidInput("the body must be an empty JSON object", code=ErrorCode.BAD_JSON)
    t = await transfers.visible(
        relay, me, request.match_info["id"], sender_only=False, dismissed_too=True
    )
    await transfers.dismiss(relay, me, t)
    relay.logger.info("transfer_dismissed", extra={"fields": {"transfer": t.id}})
    return web.Response(status=204, headers=NO_STORE)


# -- blocks ------------------------------------------------------------------


async def list_blocks(request: web.Request) -> web.Response:
    relay = _relay(request)
    me = await auth.authenticate(request, no_body(request))
    rows = await relay.store.blocks_of(me.handle)
    return _json({"blocks": [{"handle": h, "since": at} for h, at in rows]})


async def put_block(request: web.Request) -> web.Response:
    relay = _relay(request)
    me = await auth.authenticate(request, no_body(request))
    new = await blocking.block(relay.store, me.handle, request.match_info["handle"],
                               now=relay.now())
    relay.logger.info("account_blocked", extra={"fields": {}})
    return web.Response(status=201 if new else 204, headers=NO_STORE)


async def delete_block(request: web.Request) -> web.Response:
    relay = _relay(request)
    me = await auth.authenticate(request, no_body(request))
    if not await blocking.unblock(relay.store, me.handle, request.match_info["handle"]):
        raise NotFound("you do not block that account", code=ErrorCode.ACCOUNT_NOT_FOUND)
    relay.logger.info("account_unblocked", extra={"fields": {}})
    return web.Response(status=204, headers=NO_STORE)


async def get_transfer(request: web.Request) -> web.Response:
    relay = _relay(request)
    me = await auth.authenticate(request, no_body(request))
    t = await transfers.visible(relay, me, request.match_info["id"], sender_only=False)
    signed = (await relay.store.receipts_of([t.id])).get(t.id, []) if (
        t.sender == me.handle and t.log_index is not None) else None
    out = transfers.to_json(t, me.handle, signed)
    if t.recipient(me.handle) is not None:
        # The recipient names the case folder from the card's label before it
        # downloads anything (docs/card.md): the same opaque bytes as its inbox.
        card = (await relay.store.cards_of([t.id])).get(t.id)
        out["card"] = None if card is None else base64.b64encode(card).decode("ascii")
    return _json({"transfer": out})


async def delete_transfer(request: web.Request) -> web.Response:
    relay = _relay(request)
    me = await auth.authenticate(request, no_body(request))
    t = await transfers.visible(relay, me, request.match_info["id"], sender_only=True)
    await transfers.delete(relay, t)
    relay.logger.info("transfer_deleted", extra={"fields": {"transfer": t.id}})
    return web.Response(status=204, headers=NO_STORE)


async def head_data(request: web.Request) -> web.Response:
    relay = _relay(request)
    me = await auth.authenticate(request, no_body(request))
    t = await transfers.visible(relay, me, request.match_info["id"], sender_only=False)
    headers = {
        **NO_STORE,
        H_UPLOAD_OFFSET: str(t.committed),
        "Upload-Length": str(t.size),
        H_TRANSFER_STATE: t.state,
    }
    if t.state == COMPLETE:
        headers["Accept-Ranges"] = "bytes"
    return web.Response(status=200, headers=headers)


def chunk_digest(request: web.Request) -> str:
    """The chunk's tagged digest (crypto.chunkhash) from its one hash header:
    what the signature covers and the body must hash to."""
    given = [(h, a) for a, h in chunkhash.HEADERS.items() if h in request.headers]
    if len(given) != 1:
        raise InvalidInput(
            f"a chunk needs exactly one of the headers {H_CHUNK_BLAKE3} or {H_CHUNK_SHA256}",
            code=ErrorCode.BAD_CHECKSUM,
        )
    header, algorithm = given[0]
    values = request.headers.getall(header)
    if len(values) != 1 or not chunkhash.HEX_RE.fullmatch(values[0]):
        raise InvalidInput(
            f"header {header} must be 64 lowercase hex digits", code=ErrorCode.BAD_CHECKSUM
        )
    return chunkhash.tag(algorithm, values[0])


async def patch_data(request: web.Request) -> web.Response:
    relay = _relay(request)
    offset = size_header(request.headers.get(H_UPLOAD_OFFSET), H_UPLOAD_OFFSET)
    length = chunk_length(request, relay.config.max_chunk_bytes)
    digest = chunk_digest(request)
    me = await auth.authenticate(request, digest)
    t = await transfers.visible(relay, me, request.match_info["id"], sender_only=True)
    try:
        result = await transfers.upload_chunk(
            relay,
            me,
            t,
            offset=offset,
            length=length,
            digest=digest,
            source=timed_body(
                request, length, idle=relay.config.body_timeout_seconds,
                min_rate=relay.config.min_body_bytes_per_second,
            ),
        )
    finally:
        end_batching(request)
    return web.Response(
        status=204,
        headers={**NO_STORE, H_UPLOAD_OFFSET: str(result.committed),
                 "Upload-Length": str(result.size)},
    )


async def complete_transfer(request: web.Request) -> web.Response:
    relay = _relay(request)
    body, body_sha = await read_json(request, relay.config.max_json_bytes)
    me = await auth.authenticate(request, body_sha)
    if body:
        raise InvalidInput("the body must be an empty JSON object", code=ErrorCode.BAD_JSON)
    t = await transfers.visible(relay, me, request.match_info["id"], sender_only=True)
    done = await transfers.complete(relay, t)
    relay.logger.info("transfer_completed", extra={"fields": {"transfer": t.id, "size": t.size}})
    signed = None
    if done.log_index is not None:
        # Just completed: nobody can have signed a receipt yet (no read).
        signed = [] if t.state != COMPLETE else (
            await relay.store.receipts_of([t.id])).get(t.id, [])
    return _json({"transfer": transfers.to_json(done, me.handle, signed)})


async def get_data(request: web.Request) -> web.StreamResponse:
    relay = _relay(request)
    me = await auth.authenticate(request, no_body(request))
    t = await transfers.visible(relay, me, request.match_info["id"], sender_only=False)
    if t.state != COMPLETE:
        raise NotFound("the transfer is still being uploaded", code=ErrorCode.TRANSFER_NOT_FOUND)
    span = parse_range(request.headers.get("Range"), t.size)
    start, end = span if span is not None else (0, t.size)
    resp = web.StreamResponse(status=206 if span is not None else 200)
    resp.headers.update(NO_STORE)
    resp.headers["Content-Type"] = "application/octet-stream"
    resp.headers["Accept-Ranges"] = "bytes"
    resp.headers["ETag"] = f'"{t.digest}"'
    resp.headers[H_BLOB_DIGEST] = t.digest or ""
    if span is not None:
        resp.headers["Content-Range"] = f"bytes {start}-{end - 1}/{t.size}"
    resp.content_length = end - start
    # A missing (or short) blob fails here, before the headers go out.
    blob = await relay.blobs.open_file(t.id, end)
    if blob is None:  # a store without local files
        return await _stream_blob(request, resp, relay, t.id, start, end)
    try:
        await resp.prepare(request)
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("the client went away")
        try:
            # Why sendfile: the kernel copies the blob from the page cache to the
            # socket; serving it through Python cost about 1 CPU-second per GiB.
            await asyncio.get_running_loop().sendfile(transport, blob, start, end - start)
        finally:
            # The loop leaves the file at the end of what it sent, even on failure.
            relay.metrics.inc("sealdrop_download_bytes_total", max(0, blob.tell() - start))
    finally:
        blob.close()
    await resp.write_eof()
    return resp


async def _stream_blob(
    request: web.Request, resp: web.StreamResponse, relay: Relay, key: str, start: int, end: int
) -> web.StreamResponse:
    stream = relay.blobs.read(key, start, end)
    first = await anext(stream, b"")  # a missing blob fails here, before headers go out
    await resp.prepare(request)
    sent = 0
    try:
        if first:
            await resp.write(first)
            sent += len(first)
        async for block in stream:
            await resp.write(block)
            sent += len(block)
    finally:
        await stream.aclose()
        relay.metrics.inc("sealdrop_download_bytes_total", sent)
    await resp.write_eof()
    return resp


async def ack(request: web.Request) -> web.Response:
    relay = _relay(request)
    body, body_sha = await read_json(request, relay.config.max_json_bytes)
    me = await auth.authenticate(request, body_sha)
    t = await transfers.visible(relay, me, request.match_info["id"], sender_only=False)
    fresh = await transfers.ack(relay, me, t, body)
    # With a receipt, the answer says where it is in the log (the recipient's
    # own receipts only), so the recipient can check its inclusion itself.
    signed = (await relay.store.receipts_of([t.id])).get(t.id, []) if (
        isinstance(body, dict) and "receipt" in body and fresh.log_index is not None) else None
    return _json({"transfer": transfers.to_json(fresh, me.handle, signed)})
