"""The client address behind trusted proxies, and the trusted_proxies setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealdrop.server.clientaddr import client_address, networks
from sealdrop.server.config import load_config
from sealdrop.server.errors import ConfigError

TRUSTED = networks(["127.0.0.1/32", "10.0.0.0/8", "::1/128"])


@pytest.mark.parametrize(
    ("peer", "xff", "want"),
    [
        # an untrusted peer: the header is the client's own words, ignored
        ("198.51.100.4", ["203.0.113.9"], "198.51.100.4"),
        # a trusted peer: the right-most untrusted entry
        ("127.0.0.1", ["203.0.113.9"], "203.0.113.9"),
        ("127.0.0.1", ["6.6.6.6, 203.0.113.9"], "203.0.113.9"),
        ("127.0.0.1", ["6.6.6.6", "203.0.113.9"], "203.0.113.9"),  # two headers, in order
        ("127.0.0.1", ["203.0.113.9, 10.0.0.7"], "203.0.113.9"),  # inner trusted hop skipped
        ("127.0.0.1", ["203.0.113.9:51234"], "203.0.113.9"),  # with a port
        ("127.0.0.1", ["[2001:db8::5]:443"], "2001:db8::5"),
        ("::1", ["2001:db8::5"], "2001:db8::5"),
        ("::ffff:127.0.0.1", ["203.0.113.9"], "203.0.113.9"),  # dual-stack peer
        # no header, or nothing but trusted hops: the left-most hop
        ("127.0.0.1", [], "127.0.0.1"),
        ("127.0.0.1", ["10.0.0.5, 10.0.0.7"], "10.0.0.5"),
        # garbage next to a trusted hop: the last address known, never the garbage
        ("127.0.0.1", ["not-an-ip"], "127.0.0.1"),
        ("127.0.0.1", ["203.0.113.9, junk, 10.0.0.7"], "10.0.0.7"),
        ("127.0.0.1", ["١٢٧.0.0.1"], "127.0.0.1"),
        (None, ["203.0.113.9"], "?"),
    ],
)
def test_client_address(peer: str | None, xff: list[str], want: str) -> None:
    assert client_address(peer, xff, TRUSTED) == want


def test_no_trusted_proxy_means_the_peer(tmp_path: Path) -> None:
    assert client_address("127.0.0.1", ["203.0.113.9"], ()) == "127.0.0.1"


def test_trusted_proxies_setting(tmp_path: Path) -> None:
    (tmp_path / "relay.toml").write_text('trusted_proxies = ["127.0.0.1", "10.1.2.3/8"]\n')
    cfg = load_config(tmp_path, env={})
    assert cfg.trusted_proxies == ("127.0.0.1/32", "10.0.0.0/8")
    env = {"SEALDROP_RELAY_TRUSTED_PROXIES": "::1, 192.0.2.0/24"}
    assert load_config(tmp_path, env=env).trusted_proxies == ("::1/128", "192.0.2.0/24")
    assert load_config(tmp_path / "none", env={}).trusted_proxies == ()


@pytest.mark.parametrize("value", ['["proxy.internal"]', "[1]", '["300.0.0.1"]', "7"])
def test_bad_trusted_proxies_are_refused(tmp_path: Path, value: str) -> None:
    (tmp_path / "relay.toml").write_text(f"trusted_proxies = {value}\n")
    with pytest.raises(ConfigError, match="trusted_proxies must be a list of network blocks"):
        load_config(tmp_path, env={})


@pytest.mark.parametrize(
    "name", ["header_timeout_seconds", "body_timeout_seconds", "s3_timeout_seconds"])
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_timeouts_must_be_positive_and_finite(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_config(tmp_path, env={f"SEALDROP_RELAY_{name.upper()}": value})
