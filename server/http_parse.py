"""Reading requests at the HTTP edge: bodies, size headers and ``Range``.

Handlers call these and pass the domain plain ints, tuples and dicts. The two
errors defined here exist only in HTTP (a missing ``Content-Length``, a
``Range`` past the end); the middleware maps them to 411 and 416 like every
other ``RelayError``. ``BodyTimeout`` (a client sending its body too slowly)
is the middleware's too: a 408 that closes the connection.

Bodies are read against the clock: a JSON body must arrive whole within
``body_timeout_seconds``; an upload chunk may pause at most that long and must
average ``min_body_bytes_per_second`` after that grace. So a client that
trickles a body (slowloris) holds a connection for a bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from sealdrop.crypto.protocol import EMPTY_SHA256, ErrorCode

from .errors import InvalidInput, RelayError, TooLarge
from .state import CONFIG_KEY

# [0-9], not \d: in a str pattern \d also matches other scripts' digits ("٣"),
# which int() then happily converts.
_RANGE_RE = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})")
_CHUNK_TYPES = ("application/octet-stream", "application/offset+octet-stream")


class LengthRequired(RelayError):
    """A body the relay must size up front came without ``Content-Length``."""

    code = ErrorCode.LENGTH_REQUIRED


class RangeNotSatisfiable(RelayError):
    """The ``Range`` selects nothing of the ``size``-byte blob."""

    code = ErrorCode.RANGE_NOT_SATISFIABLE

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message)
        self.size = size


class BodyTimeout(Exception):
    """The client sent its body too slowly; the answer is 408 and the connection closes."""


async def _read_whole(request: web.Request, limit: int) -> bytes:
    """The body up to EOF, at most ``limit + 1`` bytes (one more tells "too large").

    One ``read`` returns what has arrived so far, which for a body sent in
    several TCP segments is only its first part: so read until EOF."""
    parts: list[bytes] = []
    got = 0
    while got <= limit:
        piece = await request.content.read(limit + 1 - got)
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)


async def read_json(
    request: web.Request, limit: int, *, timeout: float | None = None
) -> tuple[dict[str, Any], str]:
    """A JSON object body of at most ``limit`` bytes and its SHA-256 (hex), for
    signing; the whole body must arrive within ``timeout`` seconds (default:
    the configured ``body_timeout_seconds``)."""
    if timeout is None:
        timeout = request.app[CONFIG_KEY].body_timeout_seconds
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"request body larger than {limit} bytes", code=ErrorCode.BODY_TOO_LARGE)
    if request.content_type != "application/json":
        raise InvalidInput(
            "Content-Type must be application/json", code=ErrorCode.BAD_CONTENT_TYPE
        )
    try:
        async with asyncio.timeout(timeout):
            body = await _read_whole(request, limit)
    except TimeoutError:
        raise BodyTimeout(f"the request body did not arrive within {timeout:g} s") from None
    if len(body) > limit:
        raise TooLarge(f"request body larger than {limit} bytes", code=ErrorCode.BODY_TOO_LARGE)
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidInput("request body is not valid JSON", code=ErrorCode.BAD_JSON) from None
    if not isinstance(obj, dict):
        raise InvalidInput("request body must be a JSON object", code=ErrorCode.BAD_JSON)
    return obj, hashlib.sha256(body).hexdigest()


def no_body(request: web.Request) -> str:
    """Refuse a body where none belongs; the SHA-256 of the empty body, for signing."""
    if request.content_length not in (None, 0) or request.headers.get("Transfer-Encoding"):
        raise InvalidInput(
            f"{request.method} requests must not have a body", code=ErrorCode.UNEXPECTED_BODY
        )
    return EMPTY_SHA256


def size_header(value: str | None, name: str) -> int:
    """A required header holding a non-negative integer (ASCII digits only)."""
    if value is None:
        raise InvalidInput(f"header {name} is required", code=ErrorCode.MISSING_HEADER)
    if not value.isdigit() or len(value) > 19 or not value.isascii():
        raise InvalidInput(
            f"header {name} must be a non-negative integer", code=ErrorCode.BAD_HEADER
        )
    return int(value)


def chunk_length(request: web.Request, limit: int) -> int:
    """The declared length of a chunk upload: required, at most ``limit``, binary."""
    if request.content_length is None:
        raise LengthRequired("chunk uploads need a Content-Length header")
    if request.content_length > limit:
        raise TooLarge(f"a chunk may be at most {limit} bytes", code=ErrorCode.CHUNK_TOO_LARGE)
    if request.content_type not in _CHUNK_TYPES:
        raise InvalidInput(
            "Content-Type must be application/octet-stream", code=ErrorCode.BAD_CONTENT_TYPE
        )
    return request.content_length


# Why batch the wake-ups of an upload: a relay that keeps up with its client is
# woken for every few dozen KiB that reach the socket, and each wake-up costs
# Python work in asyncio and aiohttp (measured: ~12,500 wake-ups and ~2 CPU-s
# per GiB from a `sealdrop send`). SO_RCVLOWAT has the kernel wake the loop only
# once this much is queued; the kernel still wakes it at end of stream or when
# the sender cannot send more.
# On loopback it changes little (reads are large already); over a slow link it
# is what matters: `scripts/bench_wan --size 64M` (50 Mbit/s, MTU 1500) measured
# the relay at 55 CPU-s per GiB ingested without it and 8.2 s with it.
RECV_BATCH = 256 * 1024
_LOWAT = getattr(socket, "SO_RCVLOWAT", None)


def _set_lowat(sock: socket.socket | None, n: int) -> None:
    if sock is not None and _LOWAT is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, _LOWAT, max(1, n))


def end_batching(request: web.Request) -> None:
    """Undo ``timed_body``'s wake-up batching: the connection's next request,
    however short, must wake the loop. Call when the body is done with, even
    on failure."""
    transport = request.transport
    if transport is not None:
        _set_lowat(transport.get_extra_info("socket"), 1)


async def timed_body(
    request: web.Request, length: int, *, idle: float, min_rate: int
) -> AsyncIterator[bytes]:
    """The body's pieces as they arrive; ``BodyTimeout`` when none comes for
    ``idle`` seconds, or when the whole ``length`` bytes take longer than
    ``idle + length / min_rate`` (a client trickling a byte at a time).

    The loop is woken once per ``RECV_BATCH`` bytes (or what is left of the
    body), at most ``min_rate * idle / 2``: a client at the slowest allowed rate
    still wakes it twice per ``idle``. The caller must call ``end_batching``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + idle + length / min_rate
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    batch = min(RECV_BATCH, int(min_rate * idle / 2))
    lowat = 0  # what the socket is set to; 0: not set yet
    while True:
        received = getattr(request.content, "total_bytes", None)
        if isinstance(received, int):
            # Only when it must change (at the start, then for the body's tail,
            # which must wake the loop though it is shorter than a batch): a
            # setsockopt per piece was ~4,000 system calls per GiB.
            want = max(1, min(batch, length - received))
            if lowat == 0 or want < lowat:
                lowat = want
                _set_lowat(sock, want)
        wait = min(idle, deadline - loop.time())
        try:
            if wait <= 0:
                raise TimeoutError
            async with asyncio.timeout(wait):
                piece = await request.content.readany()
        except TimeoutError:
            raise BodyTimeout("the upload chunk arrived too slowly") from None
        if not piece:
            return
        yield piece


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``Range`` → [start, end) or None for the whole blob; one range only."""
    if header is None:
        return None
    m = _RANGE_RE.fullmatch(header.strip(" \t"))
    if m is None or (m.group(1) == "" and m.group(2) == ""):
        raise InvalidInput(
            "Range must be a single byte range: bytes=START-END, bytes=START- or bytes=-N",
            code=ErrorCode.BAD_RANGE,
        )
    first, last = m.group(1), m.group(2)
    if first == "":
        n = int(last)
        if n == 0:
            raise RangeNotSatisfiable("an empty suffix range selects nothing", size=size)
        return max(0, size - n), size
    start = int(first)
    end = size if last == "" else int(last) + 1
    if last != "" and end <= start:
        raise InvalidInput("Range end is before its start", code=ErrorCode.BAD_RANGE)
    if start >= size:
        raise RangeNotSatisfiable(
            f"Range starts past the end of the {size}-byte blob", size=size
        )
    return start, min(end, size)
