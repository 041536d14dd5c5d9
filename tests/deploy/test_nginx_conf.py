"""deploy/nginx/sealdrop-relay.conf: nginx accepts it once its placeholders are
filled in, and its limits and timeouts agree with the relay's defaults
(server/config.py), so nginx never refuses or cuts off what the relay accepts.
tests/e2e/test_nginx.py runs it in front of real relays."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sealdrop.server.config import RelayConfig
from tests.e2e.nginxkit import PLACEHOLDER, TEMPLATE, Nginx, make_tls, render, site_values

DEFAULTS = RelayConfig(data_dir=Path("/var/lib/sealdrop-relay"))
_UNITS = {"": 1, "k": 1024, "m": 1024 * 1024, "g": 1024 * 1024 * 1024}


def directives(text: str) -> dict[str, list[str]]:
    """``{name: [arguments, ...]}`` for every simple directive (``name args;``)."""
    out: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        m = re.fullmatch(r"([a-z_0-9]+)\s+(.*?);", line)
        if m:
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


def size(value: str) -> int:
    m = re.fullmatch(r"(\d+)([kmg]?)", value.lower())
    assert m, value
    return int(m.group(1)) * _UNITS[m.group(2)]


def seconds(value: str) -> int:
    m = re.fullmatch(r"(\d+)s", value)
    assert m, value
    return int(m.group(1))


SHIPPED = directives(TEMPLATE.read_text("utf-8"))


@pytest.mark.parametrize("upstreams", [[8781], [8781, 8782, 8783]], ids=["one", "three"])
def test_nginx_accepts_the_shipped_config(tmp_path: Path, upstreams: list[int]) -> None:
    r = Nginx(tmp_path / "nginx", upstreams).check()
    assert r.returncode == 0 and "test is successful" in r.stderr, r.stderr


def test_nginx_t_refuses_an_upstream_without_servers(tmp_path: Path) -> None:
    """The check above can fail: no relay process listed is an error."""
    r = Nginx(tmp_path / "nginx", []).check()
    assert r.returncode != 0 and "no servers are inside upstream" in r.stderr, r.stderr


def test_every_placeholder_must_be_filled(tmp_path: Path) -> None:
    values = site_values(port=8443, upstreams=[8781], tls=make_tls(tmp_path / "tls"),
                         access_log=Path("/dev/null"))
    rendered = render(TEMPLATE.read_text("utf-8"), values)
    assert PLACEHOLDER.search(rendered) is None
    assert "server 127.0.0.1:8781;" in rendered
    with pytest.raises(AssertionError, match="placeholders"):
        render(TEMPLATE.read_text("utf-8"), {k: v for k, v in values.items() if k != "LISTEN"})
    with pytest.raises(AssertionError, match="placeholders"):
        render(TEMPLATE.read_text("utf-8"), {**values, "PORT": "1"})


def test_the_body_limit_is_the_relays_largest_request() -> None:
    [limit] = SHIPPED["client_max_body_size"]
    assert size(limit) == DEFAULTS.max_chunk_bytes  # a chunk the relay takes passes nginx
    assert size(limit) >= DEFAULTS.max_json_bytes


def test_nginx_waits_longer_than_the_relays_own_timeouts() -> None:
    """The relay's limits on slow clients are the ones that fire (a JSON 408 and a
    metric), not nginx's, and nginx waits for the slowest chunk the relay accepts."""
    [header] = SHIPPED["client_header_timeout"]
    assert seconds(header) == DEFAULTS.header_timeout_seconds
    for name in ("client_body_timeout", "proxy_send_timeout"):
        [pause] = SHIPPED[name]
        assert seconds(pause) > DEFAULTS.body_timeout_seconds, name
    # A part stalled in the object store stops the relay reading the chunk:
    # the relay's 503 (s3_timeout_seconds) comes before nginx's send timeout.
    [send] = SHIPPED["proxy_send_timeout"]
    assert seconds(send) > DEFAULTS.s3_timeout_seconds
    [read] = SHIPPED["proxy_read_timeout"]
    slowest_chunk = (DEFAULTS.body_timeout_seconds
                     + DEFAULTS.max_chunk_bytes / DEFAULTS.min_body_bytes_per_second)
    assert seconds(read) > slowest_chunk
    # nginx closes an idle upstream connection before the relay does
    [idle] = SHIPPED["keepalive_timeout"]
    assert seconds(idle) < DEFAULTS.header_timeout_seconds
    assert SHIPPED["keepalive"] and int(SHIPPED["keepalive"][0]) > 0


def test_bodies_stream_and_the_client_address_is_appended() -> None:
    assert SHIPPED["proxy_request_buffering"] == ["off"]
    assert SHIPPED["proxy_buffering"] == ["off"]
    assert SHIPPED["proxy_max_temp_file_size"] == ["0"]
    assert SHIPPED["proxy_http_version"] == ["1.1"]
    headers = SHIPPED["proxy_set_header"]
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in headers
    assert 'Connection ""' in headers  # upstream keepalive needs it
    # no URI part: the signed path and query reach the relay byte for byte
    assert SHIPPED["proxy_pass"] == ["http://sealdrop_relay"]
