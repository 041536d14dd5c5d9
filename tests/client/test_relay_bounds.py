"""A hostile relay cannot make the client eat memory or wait forever (class 6).

Each test runs the real ``RelayClient`` against a raw-socket relay on
127.0.0.1 (``hostilekit``) that floods, nests, stalls or trickles. The
outcome is always one line the user can act on; memory stays bounded; a
stalled download keeps what arrived and resumes. Deadlines are passed small
(tenths of a second), so nothing here waits long; nothing asserts a duration.
"""

from __future__ import annotations

import io
import re
import socket
import threading
import time
import tracemalloc

import pytest
from nacl.signing import SigningKey

from sealdrop.client.relay_api import (
    MAX_JSON_ANSWER,
    RelayClient,
    RelayError,
    RelayProtocolError,
    RelayUnavailable,
)
from tests.client.hostilekit import HostileRelay, flood, hostile_relay, json_head, trickle

HUNDRED_MB = 100 * 1024 * 1024
KEY = SigningKey.generate()


def client(url: str, **kw: float) -> RelayClient:
    return RelayClient(url, handle="lab-dupont", signing_key=KEY, timeout=30, **kw)  # type: ignore[arg-type]


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text == text.strip() and text
    return text


def peak_while(fn: object) -> tuple[BaseException, int]:
    """Run ``fn`` (expected to raise); the exception and the peak traced memory."""
    tracemalloc.start()
    try:
        try:
            fn()  # type: ignore[operator]
        except BaseException as exc:  # noqa: BLE001 - returned to the test to inspect
            _, peak = tracemalloc.get_traced_memory()
            return exc, peak
        raise AssertionError("no error raised")
    finally:
        tracemalloc.stop()


# -- JSON answers are size-bounded ------------------------------------------------


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "close-delimited"])
def test_a_100_mb_json_answer_is_refused_in_bounded_memory(declared: bool) -> None:
    def behave(conn: socket.socket, head: bytes) -> None:
        relay.push(conn, json_head(HUNDRED_MB if declared else None) + b'{"transfers": [')
        flood(relay, conn, HUNDRED_MB, b'{"id": "aaaaaaaaaaaaaaaa"}, ' * 2000)

    with hostile_relay(behave) as relay:
        c = client(relay.url)
        exc, peak = peak_while(c.sent)
    assert isinstance(exc, RelayProtocolError)
    limit = MAX_JSON_ANSWER // 1024
    assert one_line(exc) == f"the relay's answer is larger than {limit} KiB; refused"
    assert exc.hint and "operator" in exc.hint
    # Never more than the bound (plus http.client's buffers) in memory at once.
    assert peak < 4 * MAX_JSON_ANSWER
    assert relay.sent < HUNDRED_MB


def test_json_under_the_bound_still_reads() -> None:
    body = b'{"transfers": [' + b",".join(b'{"id": "t%d"}' % i for i in range(20000)) + b"]}"
    assert len(body) < MAX_JSON_ANSWER

    def behave(conn: socket.socket, head: bytes) -> None:
        relay.push(conn, json_head(len(body)) + body)

    with hostile_relay(behave) as relay:
        rows = client(relay.url).sent()
    assert len(rows) == 20000 and rows[-1] == {"id": "t19999"}


def test_a_smaller_bound_is_a_parameter() -> None:
    body = b'{"transfers": [' + b'"x",' * 100 + b'"x"]}'

    def behave(conn: socket.socket, head: bytes) -> None:
        relay.push(conn, json_head(len(body)) + body)

    with hostile_relay(behave) as relay:
        with pytest.raises(RelayProtocolError, match="larger than 0 KiB"):
            client(relay.url, max_json=100).sent()
        assert len(client(relay.url, max_json=len(body)).sent()) == 101


def test_deeply_nested_json_is_malformed_not_a_crash() -> None:
    body = b"[" * 200_000 + b"]" * 200_000

    def behave(conn: socket.socket, head: bytes) -> None:
        relay.push(conn, json_head(len(body)) + body)

    with hostile_relay(behave) as relay, pytest.raises(RelayProtocolError) as info:
        client(relay.url).sent()
    assert one_line(info.value) == "the relay answered with malformed JSON"


def test_a_flooded_error_body_is_not_read() -> None:
    def behave(conn: socket.socket, head: bytes) -> None:
        relay.push(conn, json_head(None, "500 Internal Server Error") + b'{"error": "')
        flood(relay, conn, HUNDRED_MB, b"A" * 65536)

    with hostile_relay(behave) as relay:
        exc, peak = peak_while(client(relay.url).sent)
    assert isinstance(exc, RelayUnavailable)
    assert one_line(exc) == f"the relay at {relay.url} answered HTTP 500"
    assert peak < 4 * MAX_JSON_ANSWER


def test_a_relay_error_message_is_cut_short() -> None:
    body = b'{"error": "' + b"spam " * 5000 + b'", "code": "' + b"c" * 5000 + b'"}'

    def behave(conn: socket.socket, head: bytes) -> None:
        relay.push(conn, json_head(len(body), "400 Bad Request") + body)

    with hostile_relay(behave) as relay, pytest.raises(RelayError) as info:
        client(relay.url).sent()
    text = one_line(info.value)
    assert text.startswith("relay refused the request: spam spam") and text.endswith("…")
    assert len(text) < 400 and len(info.value.code) == 64


def test_a_malformed_upload_offset_is_refused() -> None:
    def behave(conn: socket.socket, head: bytes) -> None:
        while len(head) < head.index(b"\r\n\r\n") + 4 + 5:  # the 5-byte body
            head += conn.recv(65536)
        relay.push(conn, b"HTTP/1.1 204 No Content\r\nUpload-Offset: 1\xb2\r\n\r\n")

    with hostile_relay(behave) as relay, pytest.raises(RelayProtocolError) as info:
        client(relay.url).upload_chunk("t1", 0, b"hello")
    assert one_line(info.value) == "the relay answered a malformed upload offset"


# -- a download that stalls has an overall deadline -------------------------------


def blob_head(size: int, *, start: int = 0) -> bytes:
    if start:
        return (f"HTTP/1.1 206 Partial Content\r\nContent-Length: {size - start}\r\n"
                f"Content-Range: bytes {start}-{size - 1}/{size}\r\n\r\n").encode()
    return f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode()


BLOB = bytes(range(256)) * 40  # 10 240 bytes


def _range_start(head: bytes) -> int:
    m = re.search(rb"\r\nRange: bytes=(\d+)-", head, re.IGNORECASE)
    return int(m.group(1)) if m else 0


def test_headers_then_nothing_hits_the_deadline_and_keeps_what_arrived() -> None:
    hang = threading.Event()

    def behave(conn: socket.socket, head: bytes) -> None:
        start = _range_start(head)
        if start == 0:  # first try: 1000 bytes, then silence
            relay.push(conn, blob_head(len(BLOB)) + BLOB[:1000])
            hang.wait(30)
        else:  # the retry resumes from the Range and gets the rest
            relay.push(conn, blob_head(len(BLOB), start=start) + BLOB[start:])

    with hostile_relay(behave) as relay:
        c = client(relay.url)
        dst = io.BytesIO()
        # Generous, so a loaded machine still delivers the first 1000 bytes in time.
        with pytest.raises(RelayUnavailable) as info:
            c.download("t1", dst, deadline=1.5)
        hang.set()
        text = one_line(info.value)
        assert text == "download stalled: 1000 of 10240 bytes after 1.5 s; run it again to resume"
        assert dst.getvalue() == BLOB[:1000]
        assert c.download("t1", dst, offset=1000, deadline=30) == len(BLOB)
    assert dst.getvalue() == BLOB


def test_a_trickling_download_hits_the_deadline() -> None:
    def behave(conn: socket.socket, head: bytes) -> None:
        relay.push(conn, blob_head(len(BLOB)))
        trickle(relay, conn, BLOB, every=0.01)  # a socket timeout never trips on this

    with hostile_relay(behave) as relay:
        dst = io.BytesIO()
        with pytest.raises(RelayUnavailable) as info:
            client(relay.url).download("t1", dst, deadline=1.0)
    text = one_line(info.value)
    # How many bytes trickled in before the deadline depends on the machine's
    # load; that what arrived is kept is the test above's (it sends a fixed 1000).
    assert re.fullmatch(r"download stalled: \d+ (of 10240 )?bytes after 1\.0 s; run it "
                        r"again to resume", text)
    assert len(dst.getvalue()) < len(BLOB)
    assert dst.getvalue() == BLOB[:len(dst.getvalue())]


def test_trickled_headers_hit_the_deadline() -> None:
    def behave(conn: socket.socket, head: bytes) -> None:
        pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 50) for i in range(90))
        trickle(relay, conn, b"HTTP/1.1 200 OK\r\n" + pad, every=0.01)

    with hostile_relay(behave) as relay:
        dst = io.BytesIO()
        with pytest.raises(RelayUnavailable) as info:
            client(relay.url).download("t1", dst, deadline=0.3)
    assert one_line(info.value) == "download stalled: 0 bytes after 0.3 s; run it again to resume"
    assert dst.getvalue() == b""


def test_the_default_deadline_grows_with_the_size() -> None:
    # 0.2 s of grace alone would not do; 10 240 bytes at 100 B/s allows ~100 s.
    def behave(conn: socket.socket, head: bytes) -> None:
        relay.push(conn, blob_head(len(BLOB)))
        for i in range(0, len(BLOB), 1024):
            relay.push(conn, BLOB[i:i + 1024])
            threading.Event().wait(0.05)

    with hostile_relay(behave) as relay:
        dst = io.BytesIO()
        c = client(relay.url, download_grace=0.2, download_min_rate=100)
        assert c.download("t1", dst) == len(BLOB)
    assert dst.getvalue() == BLOB


def test_a_control_request_that_gets_no_answer_hits_its_deadline() -> None:
    hang = threading.Event()

    def behave(conn: socket.socket, head: bytes) -> None:
        hang.wait(30)

    with hostile_relay(behave) as relay:
        try:
            with pytest.raises(RelayUnavailable) as info:
                client(relay.url, call_deadline=0.3).sent()
        finally:
            hang.set()
    assert one_line(info.value) == f"the relay at {relay.url} did not answer within 0.3 s"
    assert len(relay.heads) == 1  # not retried behind the user's back


def test_a_relay_that_keeps_working_is_unaffected_by_the_watchdog() -> None:
    body = b'{"transfers": []}'

    def behave(conn: socket.socket, head: bytes) -> None:
        while True:  # keep-alive: several requests on one connection
            relay.push(conn, json_head(len(body)) + body)
            more = b""
            while b"\r\n\r\n" not in more:
                data = conn.recv(65536)
                if not data:
                    return
                more += data

    with hostile_relay(behave) as relay:
        c = client(relay.url, call_deadline=5)
        for _ in range(20):
            assert c.sent() == []
        # The relay thread counts a push after sendall returns, which can be
        # after the client already read the answer: let the count catch up.
        want = 20 * (len(json_head(len(body))) + len(body))
        end = time.monotonic() + 10
        while relay.sent != want and time.monotonic() < end:
            time.sleep(0.01)
    assert relay.sent == want


def test_a_closed_relay_still_reads_as_unavailable(tmp_path: object) -> None:
    relay = HostileRelay(lambda conn, head: None)
    relay.close()
    with pytest.raises(RelayUnavailable, match="cannot reach the relay"):
        client(relay.url).sent()
