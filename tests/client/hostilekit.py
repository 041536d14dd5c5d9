"""A hostile relay on 127.0.0.1: raw sockets, so it can break HTTP in ways aiohttp won't.

Each accepted connection reads one request head and hands the socket to the
test's ``behave(sock, head)``; the server counts the bytes each behaviour
managed to push, so a test can show the client stopped reading.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

Behaviour = Callable[[socket.socket, bytes], None]


class HostileRelay:
    def __init__(self, behave: Behaviour) -> None:
        self.behave = behave
        self.sent = 0  # bytes of answer pushed into the sockets, all connections
        self.heads: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            try:
                while b"\r\n\r\n" not in head:
                    data = conn.recv(65536)
                    if not data:
                        return
                    head += data
                with self._lock:
                    self.heads.append(head)
                self.behave(conn, head)
            except OSError:
                pass  # the client hung up: what a behaviour hopes for

    def push(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        with self._lock:
            self.sent += len(data)

    def stopped(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        self._stop.set()
        self._server.close()


@contextlib.contextmanager
def hostile_relay(behave: Behaviour) -> Iterator[HostileRelay]:
    relay = HostileRelay(behave)
    try:
        yield relay
    finally:
        relay.close()


def json_head(length: int | None, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", "Content-Type: application/json"]
    lines.append(f"Content-Length: {length}" if length is not None else "Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def flood(relay: HostileRelay, conn: socket.socket, total: int, block: bytes) -> None:
    """Push up to ``total`` bytes of ``block`` repeated; stops when the client hangs up."""
    pushed = 0
    while pushed < total and not relay.stopped():
        relay.push(conn, block)
        pushed += len(block)


def trickle(relay: HostileRelay, conn: socket.socket, data: bytes, every: float) -> None:
    """One byte of ``data`` at a time, ``every`` seconds apart, until done or hung up."""
    for i in range(len(data)):
        if relay.stopped():
            return
        relay.push(conn, data[i:i + 1])
        time.sleep(every)
