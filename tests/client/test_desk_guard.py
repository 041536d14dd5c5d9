"""The desk's request checks as pure functions (client/desk/guard.py); the same
refusals against the running process are in tests/desk/test_desk_security.py."""

from __future__ import annotations

import pytest

from sealdrop.client.desk.guard import CSP, Keys, refusal

K = Keys(port=8710)
ORIGIN = "http://127.0.0.1:8710"


def _why(**kw: object) -> str | None:
    args: dict[str, object] = {"method": "GET", "path": "/api/inbox", "host": "127.0.0.1:8710",
                               "origin": None, "cookie": K.cookie, "csrf": None}
    args.update(kw)
    return refusal(K, **args)  # type: ignore[arg-type]


def test_the_desks_own_requests_pass() -> None:
    assert _why() is None
    assert _why(host="localhost:8710") is None
    assert _why(method="POST", origin=ORIGIN, csrf=K.csrf) is None
    assert _why(method="DELETE", origin="http://localhost:8710", csrf=K.csrf) is None
    # The page and its files need no cookie (they hold no secret).
    assert _why(path="/", cookie=None) is None
    assert _why(path="/static/desk.js", cookie=None) is None


@pytest.mark.parametrize("host", [
    None, "", "127.0.0.1", "127.0.0.1:8711", "evil.example:8710", "evil.example",
    "127.0.0.1:8710.evil.example", "[::1]:8710", "0.0.0.0:8710"])
def test_any_other_host_is_refused(host: str | None) -> None:
    assert "not the desk's" in (_why(host=host) or "")
    assert _why(host=host, path="/") is not None


@pytest.mark.parametrize("origin", [
    None, "null", "http://evil.example", "http://127.0.0.1:8711", "https://127.0.0.1:8710",
    "http://127.0.0.1:8710/"])
def test_a_change_from_another_origin_is_refused(origin: str | None) -> None:
    assert "did not come from the desk" in (_why(method="POST", origin=origin, csrf=K.csrf)
                                            or "")


# Ids, not the random values: every xdist worker must collect the same names.
BAD_CSRF = {"none": None, "empty": "", "short": "x", "cookie": K.cookie, "token": K.token,
            "cut": K.csrf[:-1]}
BAD_COOKIE = {"none": None, "empty": "", "token": K.token, "csrf": K.csrf,
              "longer": K.cookie + "x"}


@pytest.mark.parametrize("name", sorted(BAD_CSRF))
def test_a_change_without_the_csrf_token_is_refused(name: str) -> None:
    csrf = BAD_CSRF[name]
    assert "security token" in (_why(method="POST", origin=ORIGIN, csrf=csrf) or "")


@pytest.mark.parametrize("name", sorted(BAD_COOKIE))
def test_the_api_needs_the_cookie(name: str) -> None:
    cookie = BAD_COOKIE[name]
    assert "not been let in" in (_why(cookie=cookie) or "")


def test_each_launch_has_its_own_keys_and_the_cookie_names_the_port() -> None:
    other = Keys(port=8710)
    assert {K.token, K.cookie, K.csrf}.isdisjoint({other.token, other.cookie, other.csrf})
    assert len({K.token, K.cookie, K.csrf}) == 3
    assert K.cookie_name == "sealdrop_desk_8710"
    assert K.url() == f"http://127.0.0.1:8710/?token={K.token}"


def test_the_policy_allows_no_inline_code_and_no_other_origin() -> None:
    assert "'unsafe" not in CSP and "*" not in CSP and "http" not in CSP
    assert "script-src 'self'" in CSP and "frame-ancestors 'none'" in CSP
