"""docs/openapi.json is true to the code: the same routes, no more, no fewer."""

from __future__ import annotations

import json
from pathlib import Path

from sealdrop.crypto.protocol import ErrorCode
from sealdrop.server.app import create_app
from sealdrop.server.config import load_config
from sealdrop.server.middleware import HttpCode

from .relaykit import RunningRelay

ROOT = Path(__file__).resolve().parents[2]


def _router_routes(tmp_path: Path) -> set[tuple[str, str]]:
    app = create_app(load_config(tmp_path, env={}))
    out = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        out.add((route.method.lower(), path))
    return out


def _documented(doc: dict) -> set[tuple[str, str]]:  # type: ignore[type-arg]
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return {(m, p) for p, item in doc["paths"].items() for m in item if m in methods}


def test_docs_copy_is_identical() -> None:
    assert (ROOT / "docs" / "openapi.json").read_bytes() == \
        (ROOT / "server" / "openapi.json").read_bytes()


def test_every_route_is_documented_and_vice_versa(tmp_path: Path) -> None:
    doc = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert doc["openapi"].startswith("3.")
    assert _router_routes(tmp_path) == _documented(doc)


def test_served_document(relay: RunningRelay) -> None:
    st, h, data = relay.raw("GET", "/openapi.json")
    assert st == 200 and h["Content-Type"].startswith("application/json")
    assert json.loads(data) == json.loads((ROOT / "docs" / "openapi.json").read_text())


def test_error_codes_are_documented() -> None:
    """Every error code the server can send appears in docs/protocol.md: the
    protocol's ``ErrorCode`` and the HTTP layer's own ``HttpCode`` (the server
    spells codes only as members of these; test_layering checks that)."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    codes = {c.value for c in ErrorCode} | {c.value for c in HttpCode}
    missing = sorted(c for c in codes if f"`{c}`" not in text)
    assert missing == []
