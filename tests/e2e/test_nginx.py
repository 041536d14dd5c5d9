"""The relay behind a real nginx configured from deploy/nginx/sealdrop-relay.conf:
TLS with a clinic's own CA, chunks streamed to the relay as they arrive, the
proxy's body limit answered in the relay's words, and the relay keying its
limits on the real client behind the proxy.

One relay process here; the list of upstreams takes more once the processes
share object storage (tests/e2e/nginxkit.py).

Distinct clients need distinct addresses: they connect from 127.0.0.2,
127.0.0.3, ... (Linux answers the whole 127.0.0.0/8 on the loopback
interface), while nginx reaches the relay from 127.0.0.1, the one trusted proxy.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sealdrop.client.relay_api import RelayClient
from sealdrop.crypto import chunkhash, protocol
from tests.server.relaykit import Identity, make_identity, sign_headers

from .kit import Relay, free_port, make_case, tree, wait_for
from .nginxkit import FrontedUser, Nginx

MiB = 1024 * 1024
IO_BLOCK = MiB  # the relay writes a chunk to its partial blob in blocks of this (server/blobs.py)
BackendFactory = Callable[..., Relay]
# nginx's warning when it writes a body to a temp file ("a client request body
# is buffered ...", "an upstream response is buffered ..."). It unlinks the file
# as soon as it opens it, so the folder itself always looks empty.
SPOOLED = "is buffered to a temporary file"


@pytest.fixture
def backend(tmp_path: Path, relay_template: tuple[Path, list[str]]
            ) -> Iterator[BackendFactory]:
    """Relay processes that believe X-Forwarded-For from 127.0.0.1 (nginx) only;
    ``settings`` become SEALDROP_RELAY_* variables."""
    made: list[Relay] = []

    def start(**settings: str) -> Relay:
        n = len(made)
        relay = Relay(tmp_path / f"relay-data-{n}", tmp_path / f"relay-{n}.log",
                      template=relay_template)
        relay.env["SEALDROP_RELAY_TRUSTED_PROXIES"] = "127.0.0.1/32"
        relay.env.update({f"SEALDROP_RELAY_{k.upper()}": v for k, v in settings.items()})
        made.append(relay)
        relay.start()
        return relay

    yield start
    for relay in made:
        relay.close()


@pytest.fixture
def front(tmp_path: Path) -> Iterator[Callable[..., Nginx]]:
    made: list[Nginx] = []

    def start(upstreams: list[int], edit: Callable[[str], str] | None = None) -> Nginx:
        nginx = Nginx(tmp_path / f"nginx-{len(made)}", upstreams, edit=edit)
        made.append(nginx)
        nginx.start()
        return nginx

    yield start
    for nginx in made:
        nginx.stop()


def https(nginx: Nginx, *, source: str = "127.0.0.1") -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("127.0.0.1", nginx.port, context=nginx.ssl_context(),
                                       timeout=60, source_address=(source, 0))


def call(conn: http.client.HTTPConnection, method: str, path: str, body: bytes = b"",
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def register(conn: http.client.HTTPConnection, ident: Identity, invite: str,
             forwarded_for: str | None = None) -> tuple[int, dict[str, str]]:
    """A signed registration, made by the protocol module, on ``conn``."""
    body = json.dumps({"handle": ident.handle, "invite": invite,
                       "bundle": ident.bundle.to_json()}).encode()
    headers = {"Content-Type": "application/json",
               **sign_headers(ident.signing_key, ident.handle, "POST", "/v1/accounts",
                              hashlib.sha256(body).hexdigest())}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    status, _, data = call(conn, "POST", "/v1/accounts", body, headers)
    return status, json.loads(data) if data else {}


# -- a real send and receive ----------------------------------------------------------


def test_send_and_receive_a_multi_chunk_case_through_nginx(
        tmp_path: Path, backend: BackendFactory, front: Callable[..., Nginx]) -> None:
    relay = backend()
    nginx = front([relay.port])
    practice = FrontedUser(tmp_path, "cabinet-martin", relay, nginx)
    lab = FrontedUser(tmp_path, "labo-dupont", relay, nginx)
    practice.init()
    lab.init()
    practice.trust(lab)
    lab.trust(practice)
    case = make_case(tmp_path, big=5 * MiB + 12345)
    sent = practice.json("send", str(case), "--to", lab.handle, "--chunk-size", "1MiB")
    dest = tmp_path / "in"
    dest.mkdir()
    got = lab.json("receive", sent["transfer_id"], "--into", str(dest))
    assert got["failed"] == [] and len(got["received"]) == 1, got
    assert tree(dest / case.name) == tree(case)
    # Every chunk went through nginx (its access log), at least six of them, and
    # the relay stored them all; nginx spooled none of them to its disk.
    patches = [line for line in (nginx.folder / "access.log").read_text().splitlines()
               if '"PATCH /v1/transfers/' in line and '" 20' in line]
    assert len(patches) >= 6, patches
    assert relay.metric("sealdrop_upload_bytes_total") > 5 * MiB
    assert SPOOLED not in nginx.log()  # neither a request nor a response body


def test_the_client_refuses_nginx_without_the_clinics_ca(
        tmp_path: Path, backend: BackendFactory, front: Callable[..., Nginx]) -> None:
    relay = backend()
    nginx = front([relay.port])
    user = FrontedUser(tmp_path, "cabinet-martin", relay, nginx)
    r = user.run("init", "--relay", nginx.url, "--handle", user.handle,
                 "--invite", relay.invite(), "--work-factor", "10", check=False)
    assert r.returncode != 0
    assert "certificate" in r.stderr and "ca-file" in r.stderr, r.stderr
    assert not (user.home / "bundle.json").exists()


# -- bodies are streamed ----------------------------------------------------------------


def _start_chunk(nginx: Nginx, tmp_path: Path, relay: Relay, size: int
                 ) -> tuple[http.client.HTTPSConnection, bytes, str]:
    """Register two accounts and create a transfer through nginx, then send the
    headers and the first half of its one chunk, and stop there."""
    clients = {}
    for handle in ("cabinet-martin", "labo-dupont"):
        ident = make_identity(handle)
        client = RelayClient(nginx.url, handle=handle, signing_key=ident.signing_key,
                             ca_file=str(nginx.tls.ca))
        client.register(relay.invite(), ident.bundle)
        clients[handle] = (client, ident)
    client, ident = clients["cabinet-martin"]
    transfer_id = str(client.create_transfer(["labo-dupont"], size)["id"])
    chunk = os.urandom(size)
    digest = chunkhash.hex_digest(chunkhash.SHA256, chunk)
    path = f"/v1/transfers/{transfer_id}/data"
    conn = https(nginx)
    conn.putrequest("PATCH", path, skip_accept_encoding=True)
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size),
               protocol.H_UPLOAD_OFFSET: "0", chunkhash.HEADERS[chunkhash.SHA256]: digest,
               **sign_headers(ident.signing_key, ident.handle, "PATCH", path,
                              chunkhash.tag(chunkhash.SHA256, digest))}
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    conn.send(chunk[: size // 2])
    return conn, chunk, transfer_id


def _partial(relay: Relay, transfer_id: str) -> int:
    path = relay.data / "blobs" / "partial" / transfer_id
    return path.stat().st_size if path.exists() else 0


def test_a_chunk_reaches_the_relay_while_it_is_being_sent(
        tmp_path: Path, backend: BackendFactory, front: Callable[..., Nginx]) -> None:
    relay = backend()
    nginx = front([relay.port])
    size = 4 * MiB
    conn, chunk, transfer_id = _start_chunk(nginx, tmp_path, relay, size)
    # Half the chunk sent, the rest held back: the relay already writes it.
    wait_for(lambda: _partial(relay, transfer_id) >= IO_BLOCK, 60,
             "the relay to write part of a chunk still being sent")
    assert SPOOLED not in nginx.log()  # and nginx keeps none of it on disk
    conn.send(chunk[size // 2:])
    resp = conn.getresponse()
    assert resp.status in (200, 204), resp.read()
    assert resp.getheader(protocol.H_UPLOAD_OFFSET) == str(size)
    conn.close()


def test_with_request_buffering_on_the_relay_would_see_nothing_until_the_end(
        tmp_path: Path, backend: BackendFactory, front: Callable[..., Nginx]) -> None:
    """The check above can fail: the same config with buffering turned back on
    spools the chunk to nginx's disk, and the relay sees none of it meanwhile."""
    relay = backend()
    nginx = front([relay.port], edit=lambda site: site.replace(
        "proxy_request_buffering off;", "proxy_request_buffering on;"))
    size = 4 * MiB
    conn, chunk, transfer_id = _start_chunk(nginx, tmp_path, relay, size)
    wait_for(lambda: SPOOLED in nginx.log(), 60, "nginx to spool the chunk")
    assert _partial(relay, transfer_id) == 0
    conn.send(chunk[size // 2:])
    resp = conn.getresponse()
    assert resp.status in (200, 204), resp.read()
    assert resp.getheader(protocol.H_UPLOAD_OFFSET) == str(size)  # then all of it at once
    conn.close()


# -- the proxy's limits, in the relay's words ----------------------------------------------


def test_a_chunk_over_the_shipped_limit_is_refused_by_nginx(
        tmp_path: Path, backend: BackendFactory, front: Callable[..., Nginx]) -> None:
    """A chunk one byte over max_chunk_bytes (16 MiB, nginx's 16m): refused by
    nginx before the relay sees a byte, in the relay's JSON error shape."""
    relay = backend()
    nginx = front([relay.port])
    size = 16 * MiB + 1
    status, headers, body = call(https(nginx), "PATCH", "/v1/transfers/x/data",
                                 b"\0" * size, {"Content-Type": "application/octet-stream"})
    assert status == 413 and headers["Content-Type"] == "application/json", body
    answer = json.loads(body)
    assert answer["code"] == "chunk_too_large"
    assert "client_max_body_size" in answer["error"]
    assert "client intended to send too large body: 16777217 bytes" in nginx.log()
    assert relay.metric("sealdrop_upload_bytes_total") == 0
    # The largest chunk the relay accepts passes nginx (and is judged by the relay).
    status, _, body = call(https(nginx), "PATCH", "/v1/transfers/x/data",
                           b"\0" * (size - 1), {"Content-Type": "application/octet-stream"})
    assert status != 413 and json.loads(body)["code"] != "chunk_too_large", body


def test_a_proxy_limit_below_the_relays_is_a_sentence_from_the_client(
        tmp_path: Path, backend: BackendFactory, front: Callable[..., Nginx]) -> None:
    """An operator dropped client_max_body_size (nginx's default is 1 MiB):
    `sealdrop send` of 12 MiB chunks stops with what to change, not "HTTP 413"."""
    relay = backend()
    nginx = front([relay.port], edit=lambda site: site.replace(
        "client_max_body_size 16m;", ""))
    practice = FrontedUser(tmp_path, "cabinet-martin", relay, nginx)
    lab = FrontedUser(tmp_path, "labo-dupont", relay, nginx)
    practice.init()
    lab.init()
    practice.trust(lab)
    case = make_case(tmp_path, big=3 * MiB)
    r = practice.run("send", str(case), "--to", lab.handle, check=False,
                     env={"SEALDROP_RETRY_FOR": "0"})
    assert r.returncode != 0
    assert "client_max_body_size" in r.stderr and "max_chunk_bytes" in r.stderr, r.stderr
    assert "HTTP 413" not in r.stderr, r.stderr  # a sentence, not a status code
    assert relay.metric("sealdrop_upload_bytes_total") == 0  # the relay never saw it
    assert "client intended to send too large body" in nginx.log()


def test_no_relay_process_behind_nginx_is_a_json_503(
        backend: BackendFactory, front: Callable[..., Nginx]) -> None:
    relay = backend()
    nginx = front([relay.port])
    assert call(https(nginx), "GET", "/v1/info")[0] == 200
    relay.stop()
    status, _, body = call(https(nginx), "GET", "/v1/info")
    assert status == 503
    answer = json.loads(body)
    assert answer["code"] == "store_unavailable"
    assert "no relay process answered" in answer["error"]
    assert "Connection refused" in nginx.log()


def test_a_process_that_is_down_is_skipped(
        tmp_path: Path, backend: BackendFactory, front: Callable[..., Nginx]) -> None:
    """Two upstreams, one of them a port where no process listens (a relay
    stopped for an upgrade): every request, POSTs included, reaches the live one."""
    relay = backend()
    dead = free_port()
    nginx = front([dead, relay.port])
    practice = FrontedUser(tmp_path, "cabinet-martin", relay, nginx)
    lab = FrontedUser(tmp_path, "labo-dupont", relay, nginx)
    practice.init()
    lab.init()
    practice.trust(lab)
    lab.trust(practice)
    case = make_case(tmp_path)
    sent = practice.json("send", str(case), "--to", lab.handle)
    dest = tmp_path / "in"
    dest.mkdir()
    assert lab.json("receive", sent["transfer_id"], "--into", str(dest))["failed"] == []
    assert tree(dest / case.name) == tree(case)
    # nginx did try the dead one, and moved on
    assert "connect() failed (111: Connection refused) while connecting to upstream" in nginx.log()
    assert f"127.0.0.1:{dead}" in nginx.log()


def test_metrics_are_not_served_through_nginx(
        backend: BackendFactory, front: Callable[..., Nginx]) -> None:
    relay = backend()
    nginx = front([relay.port])
    assert call(https(nginx), "GET", "/metrics")[0] == 404
    assert relay.metric("sealdrop_upload_bytes_total") == 0  # served on the relay's own port


# -- the real client address --------------------------------------------------------------


def test_the_relay_limits_each_real_client_behind_nginx(
        backend: BackendFactory, front: Callable[..., Nginx]) -> None:
    """One registration per client address (burst 1): through nginx, each
    client has its own bucket, and what a client writes in X-Forwarded-For
    does not buy it another."""
    relay = backend(rate_burst="1", rate_per_second="0.001")
    nginx = front([relay.port])
    assert register(https(nginx, source="127.0.0.2"), make_identity("clinic-a"),
                    relay.invite())[0] == 201
    status, answer = register(https(nginx, source="127.0.0.2"), make_identity("clinic-b"),
                              relay.invite())
    assert status == 429 and answer["code"] == "rate_limited", answer
    # Another client: its own bucket. (Had the relay keyed on its peer, nginx
    # at 127.0.0.1, every client would have shared one and this would be 429.)
    assert register(https(nginx, source="127.0.0.3"), make_identity("clinic-c"),
                    relay.invite())[0] == 201
    # A forged entry from the same client: nginx appends the address it saw,
    # the relay reads from the right, the forgery is ignored.
    for forged in ("203.0.113.9", "203.0.113.9, 127.0.0.1"):
        status, answer = register(https(nginx, source="127.0.0.3"), make_identity("clinic-d"),
                                  relay.invite(), forwarded_for=forged)
        assert status == 429 and answer["code"] == "rate_limited", (forged, answer)


def test_forwarded_for_from_an_untrusted_peer_is_ignored(
        backend: BackendFactory, front: Callable[..., Nginx]) -> None:
    """A client reaching the relay's port directly (not through the trusted
    proxy) cannot choose its address with the header."""
    relay = backend(rate_burst="1", rate_per_second="0.001")
    front([relay.port])

    def direct() -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", relay.port, timeout=60,
                                          source_address=("127.0.0.4", 0))

    assert register(direct(), make_identity("clinic-a"), relay.invite(),
                    forwarded_for="203.0.113.1")[0] == 201
    status, answer = register(direct(), make_identity("clinic-b"), relay.invite(),
                              forwarded_for="203.0.113.2")
    assert status == 429 and answer["code"] == "rate_limited", answer
