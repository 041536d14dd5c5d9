"""A fault-injecting HTTP proxy on loopback, in front of a real S3 server
(SeaweedFS, tests/s3kit.py): the S3 faults SeaweedFS cannot be made to
produce on cue. Also in front of a real relay, answering the relay's own JSON
errors on cue (tests/e2e/test_send_finish_faults.py).

Why a proxy and not moto: the requests still reach the real storage engine,
so what the relay leaves behind after a fault (parts, uploads, objects) is
what SeaweedFS really holds, not a mock's idea of it. The proxy is a byte
pipe: it forwards each request exactly as signed (Host included, so SigV4
and presigned URLs stay valid), adding only ``Connection: close`` so that
every request comes on its own connection and passes through ``rules``.

A rule matches a method and a substring of the request target (the path
and query: ``partNumber=`` is UploadPart, ``uploadId=`` on a POST is
CompleteMultipartUpload, on a DELETE AbortMultipartUpload). Its action:

* ``fail``: answer an S3 error (``503 SlowDown``, ``500 InternalError``) as
  S3 does, after reading the request body; nothing reaches SeaweedFS.
* ``lose_answer``: forward the request, let SeaweedFS answer it whole (the
  part is stored), then never pass the answer on: the "timeout in the middle
  of UploadPart" where S3 took the bytes and the answer is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass

_CLOSE = b"Connection: close\r\n"


@dataclass
class Rule:
    method: str
    target: str  # a substring of the request target
    action: str  # "fail" | "lose_answer"
    status: int = 503
    code: str = "SlowDown"
    times: int | None = None  # None: until cleared
    hits: int = 0
    json: str | None = None  # answer this JSON body instead of S3's XML (the relay's errors)
    after: tuple[str, str] | None = None  # only once a (method, target) request was seen


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.rules: list[Rule] = []
        self.seen: list[tuple[str, str]] = []  # (method, target) of every request
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def fail(self, method: str, target: str, status: int = 503, code: str = "SlowDown",
             times: int | None = None, json: str | None = None,
             after: tuple[str, str] | None = None) -> Rule:
        rule = Rule(method, target, "fail", status, code, times, json=json, after=after)
        self.rules.append(rule)
        return rule

    def lose_answer(self, method: str, target: str, times: int | None = None) -> Rule:
        rule = Rule(method, target, "lose_answer", times=times)
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules = []
        self.seen = []

    def saw(self, method: str, target: str) -> bool:
        return any(m == method and target in t for m, t in list(self.seen))

    def _match(self, method: str, target: str) -> Rule | None:
        for rule in self.rules:
            if rule.method == method and rule.target in target and (
                rule.times is None or rule.hits < rule.times
            ) and (rule.after is None or self.saw(*rule.after)):
                rule.hits += 1
                return rule
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        lines = head.split(b"\r\n")
        method, target, _ = lines[0].decode("latin-1").split(" ", 2)
        headers = {}
        kept = [lines[0]]
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
            if name.strip().lower() not in ("connection", "keep-alive"):
                kept.append(line)
        self.seen.append((method, target))
        rule = self._match(method, target)
        try:
            if rule is not None and rule.action == "fail":
                await self._fail(rule, reader, writer, headers, target)
            else:
                await self._forward(b"\r\n".join(kept) + b"\r\n" + _CLOSE + b"\r\n",
                                    reader, writer, lose=rule is not None)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _fail(self, rule: Rule, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, headers: dict[str, str], target: str) -> None:
        # S3 reads the body before it answers (unless the client waits for
        # 100-continue, which it then never gets).
        length = int(headers.get("content-length", "0") or 0)
        if length and "100-continue" not in headers.get("expect", "").lower():
            await reader.readexactly(length)
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
            f"{rule.code}</Code><Message>injected by tests/s3proxy.py</Message>"
            f"<Resource>{target.split('?', 1)[0]}</Resource><RequestId>fault</RequestId>"
            "</Error>"
        ).encode() if rule.json is None else rule.json.encode()
        kind = "application/xml" if rule.json is None else "application/json"
        writer.write(
            f"HTTP/1.1 {rule.status} Fault\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
        )
        await writer.drain()

    async def _forward(self, head: bytes, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter, *, lose: bool) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        up_writer.write(head)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter | None) -> None:
            while data := await src.read(65536):
                if dst is not None:
                    dst.write(data)
                    await dst.drain()

        upstream = asyncio.create_task(pipe(reader, up_writer))
        answer = asyncio.create_task(pipe(up_reader, None if lose else writer))
        try:
            if lose:
                # The whole answer read (the upstream closes after it) and
                # dropped; the client's connection is held until it gives up.
                await answer
                await upstream
            else:
                # The client's side ends first only if the client went away
                # (it gave up waiting): then the upstream request is cut too.
                await asyncio.wait({upstream, answer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (upstream, answer):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await task
            up_writer.transport.abort()
