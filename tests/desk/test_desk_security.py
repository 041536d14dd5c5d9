"""Who may talk to a running desk (client/desk/guard.py), tried against the real
``sealdrop desk`` process: a wrong launch key, no cookie, a DNS-rebinding Host,
another origin (by hand and from a real page of another origin in chromium),
a missing CSRF token. Each refusal is a 403 and changes nothing."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.desk.browserkit import browser, needs_browser, serve
from tests.desk.deskkit import Desk, desk
from tests.e2e.kit import PASSPHRASE, User

pytestmark = needs_browser


@pytest.fixture
def running(practice: User) -> Iterator[Desk]:
    with desk(practice) as d:
        yield d


def _request(d: Desk, method: str, path: str, *, headers: dict[str, str] | None = None,
             body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def _cookie(d: Desk) -> str:
    """The session cookie the launch address gives."""
    status, headers, _ = _request(d, "GET", d.url[len(d.origin):])
    assert status == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    return cookie.split(";", 1)[0]


def _csrf(d: Desk, cookie: str) -> str:
    status, _, raw = _request(d, "GET", "/api/session", headers={"Cookie": cookie})
    assert status == 200
    return str(json.loads(raw)["csrf"])


def test_a_wrong_launch_key_gets_no_cookie(running: Desk) -> None:
    status, headers, raw = _request(running, "GET", "/?token=not-this-launchs-key")
    assert status == 403 and "set-cookie" not in headers
    assert b"not this launch's" in raw
    # Without the cookie the API answers nothing; the page itself says what to do.
    status, _, raw = _request(running, "GET", "/api/session")
    assert status == 403 and b"open the address sealdrop desk printed" in raw
    status, _, _ = _request(running, "GET", "/api/contacts", headers={
        "Cookie": f"sealdrop_desk_{running.port}=guessed"})
    assert status == 403


def test_a_rebound_host_is_refused_even_with_the_cookie(running: Desk) -> None:
    cookie = _cookie(running)
    for host in (f"evil.example:{running.port}", "127.0.0.1", f"127.0.0.2:{running.port}"):
        status, _, raw = _request(running, "GET", "/api/session",
                                  headers={"Host": host, "Cookie": cookie})
        assert status == 403 and b"csrf" not in raw, host
    status, _, _ = _request(running, "GET", "/", headers={"Host": "evil.example"})
    assert status == 403


def test_a_state_change_needs_the_desks_origin_and_token(running: Desk) -> None:
    cookie = _cookie(running)
    csrf = _csrf(running, cookie)
    body = json.dumps({"passphrase": PASSPHRASE}).encode()
    base = {"Cookie": cookie, "Content-Type": "application/json"}
    for headers in (
        {**base, "Origin": "http://evil.example", "X-Sealdrop-CSRF": csrf},
        {**base, "X-Sealdrop-CSRF": csrf},  # no Origin
        {**base, "Origin": running.origin},  # no token
        {**base, "Origin": running.origin, "X-Sealdrop-CSRF": "guessed"},
    ):
        status, _, _ = _request(running, "POST", "/api/unlock", headers=headers, body=body)
        assert status == 403, headers
    status, _, raw = _request(running, "GET", "/api/session", headers={"Cookie": cookie})
    assert json.loads(raw)["unlocked"] is False  # nothing of the above got through
    status, _, raw = _request(running, "POST", "/api/unlock", body=body, headers={
        **base, "Origin": running.origin, "X-Sealdrop-CSRF": csrf})
    assert status == 200 and json.loads(raw)["unlocked"] is True, running.stderr()


def test_every_answer_carries_the_strict_policy(running: Desk) -> None:
    for path in ("/", "/static/desk.js", "/api/session", "/?token=wrong"):
        _, headers, _ = _request(running, "GET", path)
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe" not in csp and "default-src 'none'" in csp
        assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer"


def test_a_page_of_another_origin_cannot_use_the_desk(running: Desk, tmp_path: Path) -> None:
    cookie = _cookie(running)
    csrf = _csrf(running, cookie)
    target = running.origin
    attacker = web.Application()

    async def page(_: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>other</title><p>other site</p>",
                            content_type="text/html")

    attacker.router.add_get("/", page)
    with serve(attacker) as other, browser() as b:
        ctx = b.new_context()
        p = ctx.new_page()
        # The user has the desk open in this browser: it holds the cookie.
        p.goto(running.url)
        p.wait_for_selector("#passphrase")
        p.goto(other)
        outcome = p.evaluate("""async ([target, csrf, pass]) => {
            const out = {};
            try {
              const r = await fetch(target + "/api/unlock", {method: "POST", credentials: "include",
                headers: {"Content-Type": "application/json", "X-Sealdrop-CSRF": csrf},
                body: JSON.stringify({passphrase: pass})});
              out.unlock = r.status;
            } catch (e) { out.unlock = "blocked"; }
            try {
              const r = await fetch(target + "/api/session", {credentials: "include"});
              out.read = await r.text();
            } catch (e) { out.read = "blocked"; }
            try {
              await fetch(target + "/api/unlock", {method: "POST", mode: "no-cors",
                credentials: "include", headers: {"Content-Type": "text/plain"},
                body: JSON.stringify({passphrase: pass})});
              out.simple = "sent";
            } catch (e) { out.simple = "blocked"; }
            return out;
        }""", [target, csrf, PASSPHRASE])
        ctx.close()
    # Neither the preflighted nor the "simple" request unlocked anything, and
    # nothing could be read (no CORS headers: the browser hides the answer).
    assert outcome["read"] == "blocked", outcome
    assert outcome["unlock"] == "blocked", outcome
    status, _, raw = _request(running, "GET", "/api/session", headers={"Cookie": cookie})
    assert json.loads(raw)["unlocked"] is False
