"""A clinic's network through the real CLI: a relay behind TLS with a private CA,
trusted by SSL_CERT_FILE or by the profile's setting, reached through a proxy.

The TLS front and the CONNECT proxy are the tests' own (tests/client/netkit.py),
on loopback, in front of the real relay process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.netkit import CA_NAME, ConnectProxy, TLSFront, make_ca
from tests.e2e.kit import Relay, User

NO_PROXY_ENV = {"http_proxy": "", "HTTP_PROXY": "", "https_proxy": "", "HTTPS_PROXY": "",
                "no_proxy": "", "NO_PROXY": ""}


@pytest.fixture
def front(tmp_path: Path, relay: Relay) -> Iterator[tuple[TLSFront, Path]]:
    ca, cert, key = make_ca(tmp_path / "pki")
    with TLSFront(relay.port, cert, key) as f:
        yield f, ca


def _init(user: User, url: str, *extra: str, env: dict[str, str] | None = None,
          check: bool = True) -> tuple[int, str, str]:
    r = user.run("init", "--relay", url, "--handle", user.handle, "--invite",
                 user.relay.invite(), "--work-factor", "10", *extra,
                 env={**NO_PROXY_ENV, **(env or {})}, check=check)
    return r.returncode, r.stdout, r.stderr


def test_an_untrusted_relay_certificate_is_explained(
        tmp_path: Path, relay: Relay, front: tuple[TLSFront, Path]) -> None:
    f, _ = front
    user = User(tmp_path, "cabinet-martin", relay)
    code, _, err = _init(user, f.url, check=False)
    assert code == 1
    lines = err.splitlines()
    assert lines[0].startswith(
        f"sealdrop: error: registration failed: the relay at {f.url} presented a certificate "
        f"this computer does not trust (issuer CN={CA_NAME}: ")
    assert lines[1] == (
        "sealdrop: hint: if your clinic uses its own certificate authority, set it with "
        "`sealdrop config ca-file PATH` or SSL_CERT_FILE; otherwise someone may be "
        "intercepting the connection: tell the relay's operator")
    assert "invite" not in err and "CERTIFICATE_VERIFY_FAILED" not in err
    assert not (user.home / "config.json").exists()  # init stays all or nothing
    assert not (user.home / "identity.age").exists()


def test_trusted_by_ssl_cert_file(tmp_path: Path, relay: Relay,
                                  front: tuple[TLSFront, Path]) -> None:
    f, ca = front
    user = User(tmp_path, "cabinet-martin", relay)
    _init(user, f.url, env={"SSL_CERT_FILE": str(ca)})
    assert user.json("inbox", env={"SSL_CERT_FILE": str(ca), **NO_PROXY_ENV}) == {
        "transfers": [], "truncated": False}
    # Without it, the same profile is refused with the sentence, not a traceback.
    r = user.run("inbox", env={"SSL_CERT_FILE": "", **NO_PROXY_ENV}, check=False)
    assert r.returncode == 1 and "does not trust (issuer CN=" in r.stderr


def test_trusted_by_the_profile_setting_and_through_a_proxy(
        tmp_path: Path, relay: Relay, front: tuple[TLSFront, Path]) -> None:
    f, ca = front
    user = User(tmp_path, "labo-dupont", relay)
    _init(user, f.url, "--ca-file", str(ca))
    assert user.json("config", "ca-file") == {"ca_file": str(ca)}
    assert user.json("inbox", env=NO_PROXY_ENV)["transfers"] == []

    assert user.json("config", "ca-file", "--clear") == {"ca_file": None}
    r = user.run("inbox", env=NO_PROXY_ENV, check=False)
    assert r.returncode == 1 and "`sealdrop config ca-file PATH`" in r.stderr
    assert user.json("config", "ca-file", str(ca)) == {"ca_file": str(ca)}

    port = f.url.rsplit(":", 1)[1]
    with ConnectProxy() as proxy:
        env = {**NO_PROXY_ENV, "HTTPS_PROXY": proxy.url}
        assert user.json("inbox", env=env)["transfers"] == []
        assert proxy.tunnels == [f"127.0.0.1:{port}"]
        assert user.json("inbox", env={**env, "NO_PROXY": "127.0.0.1"})["transfers"] == []
        assert proxy.tunnels == [f"127.0.0.1:{port}"]  # bypassed: no new tunnel
    # The proxy gone: the message names it, and says how to bypass it.
    r = user.run("inbox", env=env, check=False)
    assert r.returncode == 1
    assert (f"sealdrop: error: cannot reach the proxy at {proxy.url} (set by HTTPS_PROXY) "
            f"on the way to the relay at {f.url}: connection refused") in r.stderr
    assert "NO_PROXY" in r.stderr


def test_a_ca_file_that_is_not_a_certificate_is_refused_at_once(
        tmp_path: Path, practice: User) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    r = practice.run("config", "ca-file", str(junk), check=False)
    assert r.returncode == 1
    assert f"cannot use the certificate authority file {junk}" in r.stderr
    assert practice.json("config", "ca-file") == {"ca_file": None}  # unchanged
