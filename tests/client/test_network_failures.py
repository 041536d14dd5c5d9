"""Every way of not reaching the relay is a sentence that names it, with a hint.

Real sockets on 127.0.0.1 for each failure (a closed port, a silent server, a
reset mid-upload, a plain-HTTP port spoken to in TLS, an untrusted and a
trusted certificate, a proxy that is down or wants a password). DNS is the
one thing faked (``socket.getaddrinfo`` raises): the tests run on loopback
only, without a resolver to ask.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from sealdrop.client.errors import ClientError
from sealdrop.client.relay_api import (
    RelayClient,
    RelayError,
    RelayTLSError,
    RelayUnavailable,
)
from sealdrop.client.transport import (
    ProxyRefused,
    bypassed,
    explain,
    proxy_for,
    tls_context,
)
from tests.client.hostilekit import hostile_relay
from tests.client.netkit import CA_NAME, ConnectProxy, TLSFront, _Server, make_ca
from tests.e2e.kit import free_port

KEY = SigningKey(b"\x07" * 32)
PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy",
              "NO_PROXY", "SSL_CERT_FILE")


@pytest.fixture(autouse=True)
def _no_ambient_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)


def client(url: str, **kw: object) -> RelayClient:
    return RelayClient(url, handle="lab-dupont", signing_key=KEY, **kw)  # type: ignore[arg-type]


def failure(url: str, call: str = "sent", **kw: object) -> RelayError:
    with pytest.raises(RelayError) as info:
        c = client(url, **kw)
        if call == "upload":
            c.upload_chunk("t1", 0, b"x" * (4 * 1024 * 1024))
        else:
            c.sent()
    exc = info.value
    text = str(exc)
    assert "\n" not in text
    assert "Errno" not in text and "[SSL" not in text  # never raw text without a sentence
    assert exc.hint, "every network failure has a hint"
    return exc


def closed_port() -> int:
    """A port where nothing listens, and nothing else in the run will."""
    return free_port()


@pytest.fixture
def plain_relay() -> Iterator[str]:
    """Answers every request with an empty transfer list (HTTP/1.1, kept alive)."""
    body = b'{"transfers": []}'
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)

    def behave(conn: socket.socket, head: bytes) -> None:
        conn.sendall(answer)
        while conn.recv(65536):
            conn.sendall(answer)

    with hostile_relay(behave) as relay:
        yield relay.url


# -- the sentences ---------------------------------------------------------------------


def test_connection_refused_names_the_relay_and_asks_if_it_runs() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    exc = failure(url)
    assert isinstance(exc, RelayUnavailable)
    assert str(exc) == f"cannot reach the relay at {url}: connection refused"
    assert exc.hint is not None and exc.hint.startswith("Is the relay running?")


def test_a_name_that_does_not_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_name(*a: object, **k: object) -> object:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    exc = failure("https://relay.cabinet-martin.example")
    assert str(exc) == ("cannot reach the relay at https://relay.cabinet-martin.example: "
                        "the name relay.cabinet-martin.example was not found")
    assert exc.hint is not None and "spelling" in exc.hint


def test_a_silent_relay_times_out_with_a_sentence() -> None:
    hang = threading.Event()
    with hostile_relay(lambda conn, head: hang.wait(30)) as relay:
        try:
            exc = failure(relay.url, timeout=0.3)
        finally:
            hang.set()
    assert str(exc) == f"cannot reach the relay at {relay.url}: no answer within 0.3 s"
    assert exc.hint is not None and "network" in exc.hint


def test_a_connection_reset_mid_upload() -> None:
    def reset(conn: socket.socket, head: bytes) -> None:
        conn.recv(65536)  # some of the chunk, then a hard reset (RST, not FIN)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    with hostile_relay(reset) as relay:
        exc = failure(relay.url, call="upload")
    assert isinstance(exc, RelayUnavailable)
    assert str(exc).startswith(f"the connection to the relay at {relay.url} was cut ")
    assert "reset" in str(exc) or "broken pipe" in str(exc)
    assert len(relay.heads) == 2  # retried once on a fresh connection, then told


def test_a_5xx_names_the_relay_and_says_try_later() -> None:
    def busy(conn: socket.socket, head: bytes) -> None:
        body = b'{"error": "the database is not answering", "code": "unavailable"}'
        conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)

    with hostile_relay(busy) as relay:
        exc = failure(relay.url)
    assert isinstance(exc, RelayUnavailable)
    assert str(exc) == (f"the relay at {relay.url} answered HTTP 503: "
                        "the database is not answering")
    assert exc.hint is not None and "try again in a few minutes" in exc.hint


class _PlainHttpPort(_Server):
    """A plain HTTP server's answer to anything, a TLS hello included."""

    def serve(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


def test_https_to_a_plain_http_port() -> None:
    with _PlainHttpPort() as server:
        url = f"https://127.0.0.1:{server.port}"
        exc = failure(url, timeout=10)
    assert str(exc).startswith(f"cannot open a secure connection to the relay at {url} "
                               "(TLS failed: ")
    assert exc.hint is not None and "scheme and port" in exc.hint


# -- certificates ---------------------------------------------------------------------


@pytest.fixture
def tls_relay(tmp_path: Path, plain_relay: str) -> Iterator[tuple[str, Path]]:
    ca, cert, key = make_ca(tmp_path / "pki")
    with TLSFront(int(plain_relay.rsplit(":", 1)[1]), cert, key) as front:
        yield front.url, ca


def test_an_untrusted_certificate_says_so_and_points_to_the_setting(
        tls_relay: tuple[str, Path]) -> None:
    url, _ = tls_relay
    exc = failure(url)
    assert isinstance(exc, RelayTLSError) and not isinstance(exc, RelayUnavailable)
    assert str(exc).startswith(
        f"the relay at {url} presented a certificate this computer does not trust "
        f"(issuer CN={CA_NAME}: ")
    assert exc.hint is not None
    assert "`sealdrop config ca-file PATH`" in exc.hint and "SSL_CERT_FILE" in exc.hint
    assert "invite" not in exc.hint


def test_the_ca_file_setting_and_ssl_cert_file_are_trusted(
        tls_relay: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    url, ca = tls_relay
    assert client(url, ca_file=str(ca)).sent() == []
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    assert client(url).sent() == []


def test_a_certificate_for_another_name(tls_relay: tuple[str, Path]) -> None:
    url, ca = tls_relay
    other = url.replace("127.0.0.1", "localhost")  # the certificate names 127.0.0.1 only
    exc = failure(other, ca_file=str(ca))
    assert str(exc).startswith(f"the relay at {other} presented a certificate for another name")


def test_a_ca_file_that_is_not_one_is_refused_loudly(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ClientError, match=r"cannot use the certificate authority file .*ca\.pem"):
        tls_context(str(junk), env={})
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(ClientError, match=r"\(set with SSL_CERT_FILE\): no such file"):
        client("https://relay.example")


# -- proxies ---------------------------------------------------------------------------


def test_requests_go_through_the_proxy_and_no_proxy_bypasses_it(
        tls_relay: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    url, ca = tls_relay
    port = url.rsplit(":", 1)[1]
    with ConnectProxy() as proxy:
        monkeypatch.setenv("https_proxy", proxy.url)
        c = client(url, ca_file=str(ca))
        assert c.proxy is not None and c.proxy.source == "https_proxy"
        assert c.sent() == [] and c.sent() == []
        assert proxy.tunnels == [f"127.0.0.1:{port}"]  # one tunnel, kept alive, TLS inside
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.0/8")
        assert client(url, ca_file=str(ca)).sent() == []
        assert proxy.tunnels == [f"127.0.0.1:{port}"]


def test_a_proxy_that_is_down_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    exc = failure("https://relay.example")
    assert str(exc) == (f"cannot reach the proxy at {proxy} (set by HTTPS_PROXY) on the way "
                        "to the relay at https://relay.example: connection refused")
    assert exc.hint is not None and "NO_PROXY" in exc.hint


def test_a_proxy_that_wants_a_password(tls_relay: tuple[str, Path],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    url, ca = tls_relay
    with ConnectProxy(credentials="clinic:s3cret") as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        exc = failure(url, ca_file=str(ca))
        assert str(exc) == (f"the proxy at {proxy.url} would not connect to the relay at "
                            f"{url}: 407 Proxy Authentication Required")
        assert exc.hint is not None and "user name and password" in exc.hint
        assert isinstance(exc.__cause__, ProxyRefused) and exc.__cause__.status == 407
        monkeypatch.setenv("HTTPS_PROXY", f"http://clinic:s3cret@127.0.0.1:{proxy.port}")
        c = client(url, ca_file=str(ca))
        assert c.sent() == []
        assert "s3cret" not in repr(c.proxy and c.proxy.shown)


@pytest.mark.parametrize(("refuse", "hint"), [
    # A reason phrase in the proxy's own words: the hint follows the status alone.
    ("407 Anmeldung erforderlich", "user name and password"),
    ("403 Forbidden", "ask whoever runs the proxy"),
])
def test_a_proxy_refusal_is_told_by_its_status(monkeypatch: pytest.MonkeyPatch,
                                                refuse: str, hint: str) -> None:
    with ConnectProxy(refuse=refuse) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        exc = failure("https://relay.example")
    assert str(exc) == (f"the proxy at {proxy.url} would not connect to the relay at "
                        f"https://relay.example: {refuse}")
    assert exc.hint is not None and hint in exc.hint
    cause = exc.__cause__
    assert isinstance(cause, ProxyRefused)
    assert f"{cause.status} {cause.reason}" == refuse


def test_a_relay_whose_reason_phrase_reads_like_a_proxy_refusal_is_the_relay(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def odd(conn: socket.socket, head: bytes) -> None:
        conn.sendall(b"HTTP/1.1 502 Tunnel connection failed: 407 Proxy Authentication "
                     b"Required\r\nContent-Length: 0\r\n\r\n")

    with hostile_relay(odd) as relay, ConnectProxy() as proxy:
        monkeypatch.setenv("http_proxy", proxy.url)
        exc = failure(relay.url)
        assert proxy.tunnels == [f"127.0.0.1:{relay.port}"]  # the proxy let us through
    assert str(exc) == f"the relay at {relay.url} answered HTTP 502"
    assert exc.hint is not None and "proxy" not in exc.hint
    # Nor is an OSError worded like http.client's refusal: only ProxyRefused is one.
    why = explain(OSError("Tunnel connection failed: 407 Proxy Authentication Required"),
                  url=relay.url, scheme="http", host="127.0.0.1", port=relay.port,
                  proxy=proxy_for("http", "127.0.0.1", relay.port, {"http_proxy": proxy.url}),
                  timeout=5, sending=False)
    assert not why.message.startswith("the proxy") and "password" not in why.hint


def test_proxy_settings_as_curl_reads_them() -> None:
    env = {"HTTPS_PROXY": "proxy.clinic:3128", "https_proxy": "http://lower:8080",
           "HTTP_PROXY": "http://plain:80"}
    p = proxy_for("https", "relay.example", 443, env)
    assert p is not None and (p.host, p.port, p.source) == ("lower", 8080, "https_proxy")
    p = proxy_for("https", "relay.example", 443, {"HTTPS_PROXY": "proxy.clinic:3128"})
    assert p is not None and (p.host, p.port) == ("proxy.clinic", 3128)
    assert proxy_for("https", "relay.example", 443, {"HTTP_PROXY": "http://plain:80"}) is None
    with pytest.raises(ClientError, match="must be a proxy's http://host:port"):
        proxy_for("https", "relay.example", 443, {"HTTPS_PROXY": "socks5://p:1080"})
    no = "localhost, .clinic.lan,relay.example:8443,10.0.0.0/8,[::1]"
    assert bypassed("a.clinic.lan", 443, no) and bypassed("clinic.lan", 443, no)
    assert not bypassed("otherclinic.lan", 443, no)
    assert bypassed("relay.example", 8443, no) and not bypassed("relay.example", 443, no)
    assert bypassed("10.1.2.3", 443, no) and not bypassed("11.1.2.3", 443, no)
    assert bypassed("::1", 443, no) and bypassed("anything", 1, "*")
    assert not bypassed("relay.example", 443, "")

