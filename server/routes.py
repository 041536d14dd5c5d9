"""The route table: every URL the relay answers, and nothing else.

docs/openapi.json documents exactly these (a test compares the two).
"""

from __future__ import annotations

from aiohttp import web

from . import handlers as h
from . import loghandlers as log


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/healthz", h.healthz, allow_head=False)
    r.add_get("/readyz", h.readyz, allow_head=False)
    r.add_get("/metrics", h.metrics, allow_head=False)
    r.add_get("/openapi.json", h.openapi, allow_head=False)
    r.add_get("/v1/info", h.info, allow_head=False)

    r.add_post("/v1/accounts", h.register)
    r.add_get("/v1/accounts/{handle}/bundle", h.get_bundle, allow_head=False)
    r.add_put("/v1/accounts/{handle}/bundle", h.put_bundle)

    r.add_post("/v1/transfers", h.create_transfer)
    r.add_get("/v1/transfers", h.list_transfers, allow_head=False)
    r.add_get("/v1/transfers/{id}", h.get_transfer, allow_head=False)
    r.add_delete("/v1/transfers/{id}", h.delete_transfer)
    r.add_head("/v1/transfers/{id}/data", h.head_data)
    r.add_patch("/v1/transfers/{id}/data", h.patch_data)
    r.add_get("/v1/transfers/{id}/data", h.get_data, allow_head=False)
    r.add_put("/v1/transfers/{id}/card", h.put_card)
    r.add_post("/v1/transfers/{id}/complete", h.complete_transfer)
    r.add_post("/v1/transfers/{id}/ack", h.ack)
    r.add_post("/v1/transfers/{id}/dismiss", h.dismiss)

    r.add_get("/v1/inbox", h.inbox, allow_head=False)

    r.add_get("/v1/blocks", h.list_blocks, allow_head=False)
    r.add_put("/v1/blocks/{handle}", h.put_block)
    r.add_delete("/v1/blocks/{handle}", h.delete_block)

    # The transparency log (C2SP tlog-tiles under the prefix /v1/log).
    r.add_get("/v1/log/checkpoint", log.checkpoint, allow_head=False)
    r.add_get("/v1/log/tile/{path:.+}", log.tile, allow_head=False)
