"""``sealdrop desk``: the local web app, served by the client on 127.0.0.1.

The relay never serves code: the page, its script and its styles are files of
this package (``static/``), served from this process, so the blind-relay
promise holds and the app works offline. The launch address carries a token
(``guard``); the first visit trades it for a cookie and lands on ``/``. The
keys are unlocked in this process by the passphrase typed in the page, once
per launch (``api.post_unlock``), and never leave it.
"""

from __future__ import annotations

import socket
import sys
import threading
import webbrowser
from importlib import resources
from pathlib import Path

from aiohttp import web

from . import api
from .guard import HEADERS, Keys, refusal, same
from .state import Desk

_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
          ".svg": "image/svg+xml", ".png": "image/png"}


def _static(name: str) -> bytes | None:
    if "/" in name or name.startswith(".") or Path(name).suffix not in _TYPES:
        return None
    ref = resources.files("sealdrop.client.desk").joinpath("static", name)
    return ref.read_bytes() if ref.is_file() else None


def _refused_page(why: str) -> web.Response:
    # Plain text: nothing of the request is echoed.
    return web.Response(status=403, text=f"sealdrop desk: {why}\n", content_type="text/plain")


@web.middleware
async def guard(request: web.Request, handler: api.Handler) -> web.StreamResponse:
    desk = request.app[api.DESK]
    why = refusal(desk.keys, method=request.method, path=request.path,
                  host=request.headers.get("Host"), origin=request.headers.get("Origin"),
                  cookie=request.cookies.get(desk.keys.cookie_name),
                  csrf=request.headers.get("X-Sealdrop-CSRF"))
    if why is not None:
        if request.path.startswith("/api/"):
            return web.json_response({"error": {"message": why, "hint": None,
                                                "kind": "Refused"}}, status=403)
        return _refused_page(why)
    return await handler(request)


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(HEADERS)


async def index(request: web.Request) -> web.StreamResponse:
    desk = request.app[api.DESK]
    token = request.query.get("token")
    if token is not None:
        if not same(token, desk.keys.token):
            return _refused_page("this address's key is not this launch's: open the address "
                                 "sealdrop desk printed when it started")
        resp = web.HTTPSeeOther("/")
        resp.set_cookie(desk.keys.cookie_name, desk.keys.cookie, httponly=True,
                        samesite="Strict", path="/")
        return resp
    page = _static("index.html")
    assert page is not None
    return web.Response(body=page, content_type="text/html", charset="utf-8")


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    data = _static(name)
    if data is None:
        raise web.HTTPNotFound()
    return web.Response(body=data, content_type=_TYPES[Path(name).suffix])


def make_app(desk: Desk) -> web.Application:
    # No body cap for the dropped files (a CBCT is gigabytes); JSON bodies are
    # read with their own cap (api.body).
    app = web.Application(middlewares=[guard, api.client_errors], client_max_size=0)
    app[api.DESK] = desk
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.add_routes(api.routes)
    app.on_response_prepare.append(_headers)

    async def close(_app: web.Application) -> None:
        desk.close()

    app.on_cleanup.append(close)
    return app


def serve(home: Path, *, port: int = 0, open_browser: bool = True) -> None:
    """Serve until SIGTERM or Ctrl-C; the address with its token first on stdout."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))  # never another interface
    sock.listen(128)  # before the address is printed: a caller may connect at once
    keys = Keys(port=sock.getsockname()[1])
    desk = Desk(home=home, keys=keys)
    print(keys.url(), flush=True)
    print("sealdrop: the desk runs until you close this window or press Ctrl-C",
          file=sys.stderr, flush=True)
    if open_browser:
        threading.Timer(0.5, webbrowser.open, args=(keys.url(),)).start()
    web.run_app(make_app(desk), sock=sock, print=None, handle_signals=True,
                access_log=None, shutdown_timeout=5)
