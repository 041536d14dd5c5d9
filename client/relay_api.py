"""The relay's HTTP API, client side: a small synchronous client on ``http.client``.

Synchronous on purpose: the ``sealdrop`` commands are synchronous, there is
one request in flight at a time, and ``http.client`` streams request and
response bodies without a dependency. One connection is kept alive and
re-opened transparently when the relay or a proxy closed it.

Every request is signed (docs/protocol.md, "Signed requests") with the
account's Ed25519 key. Bundles fetched from the relay are verified here
(self-signature, handle) before they are returned; pinning them is the
caller's job.

``upload_chunk`` sends one checksummed chunk at an offset and
``upload_offset`` asks for the committed offset (HEAD): ``sealdrop send``
builds its resumable, two-lane upload on them (``send.upload``), the one
upload path. Downloads resume with HTTP Range from however many bytes the
caller already holds.

Every ``relay_id`` here is the relay's id of a transfer (what its URLs name),
never the manifest id signed inside the ciphertext.

The relay may be hostile (docs/threat-model.md), so what it answers is bounded
before it is believed: a JSON answer is read up to ``max_json`` bytes (1 MiB)
and an error body up to 64 KiB, so no answer can exhaust memory; a control
request has an overall deadline (``call_deadline``) and a download one that
grows with its size (``download_grace`` + bytes / ``download_min_rate``), so a
relay that sends headers and then nothing, or trickles a byte a minute, cannot
hold ``receive`` or ``watch`` forever. Deadlines are enforced by a watchdog
(``_Deadline``) that shuts the socket down, which a per-read socket timeout
alone cannot do against a trickle.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from nacl.signing import SigningKey

from sealdrop.crypto import chunkhash, protocol
from sealdrop.crypto.bundle import KeyBundle
from sealdrop.crypto.errors import BundleError

from . import transport
from .durations import expiry_refused
from .errors import ClientError

EMPTY_SHA256 = protocol.EMPTY_SHA256
DEFAULT_CHUNK = protocol.DEFAULT_CHUNK_SIZE
IO_BLOCK = 1024 * 1024
# What this client accepts as an inbox cursor: opaque, but short and URL-safe.
_CURSOR_RE = re.compile(r"[A-Za-z0-9_-]{1,96}")

# Bounds on what a relay can make this client read or wait for (see the top).
MAX_JSON_ANSWER = 1024 * 1024  # a control answer: an inbox page, a transfer, a bundle
MAX_ERROR_BODY = 64 * 1024
MAX_ERROR_TEXT = 300  # characters of the relay's error message shown to the user
CALL_DEADLINE = 120.0  # seconds for one control request, answer included
DOWNLOAD_GRACE = 300.0  # seconds a download may take beyond its size's share
DOWNLOAD_MIN_RATE = 32 * 1024  # bytes per second a download is allowed to fall to
MAX_CHECKPOINT = 64 * 1024  # a signed note: C2SP signed-note caps it far below
MAX_TILE = 256 * (2 + 512)  # the largest tile: 256 entries of at most 512 bytes each


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


# -- errors ------------------------------------------------------------------


class RelayError(ClientError):
    """The relay refused a request or could not be reached.

    ``status`` is the HTTP status (0 when there was no answer) and ``code`` the
    relay's machine-readable error code (docs/protocol.md, "Errors").
    """

    def __init__(
        self, message: str, *, status: int = 0, code: str = "", hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code


class RelayUnavailable(RelayError):
    """No answer, or a 5xx: worth retrying later."""


class RelayAuthError(RelayError):
    """401/403: bad signature, clock skew, replay, disabled account, bad invite."""


class RelayNotFound(RelayError):
    """404: unknown, expired, or not yours (the relay does not say which)."""


class RelayConflict(RelayError):
    """409: e.g. an upload offset that does not match the relay's."""

    def __init__(self, message: str, *, offset: int | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.offset = offset


class RelayRateLimited(RelayError):
    """429: slow down; ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: int = 1, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class RelayProtocolError(RelayError):
    """The relay answered something this client cannot accept (malformed, bad bundle)."""


class RelayTLSError(RelayError):
    """The relay's certificate is not trusted or not valid: never retried, since
    waiting does not change it (the message says what to set)."""


# -- signing -----------------------------------------------------------------


def sign_headers(
    signing_key: SigningKey,
    handle: str,
    method: str,
    path_qs: str,
    body_sha256: str,
    *,
    now: float,
) -> dict[str, str]:
    """The four signature headers for one request, with a fresh random nonce."""
    return protocol.sign_request(
        signing_key, handle, method, path_qs, body_sha256,
        timestamp=int(now), nonce=os.urandom(protocol.NONCE_BYTES),
    )


def _error_from(status: int, headers: Any, body: bytes, url: str = "") -> RelayError:
    where = f"the relay at {url}" if url else "the relay"
    code, message = "", f"{where} answered HTTP {status}"
    try:
        obj = json.loads(body)
        if isinstance(obj, dict):
            code = str(obj.get("code", ""))[:64]
            text = str(obj.get("error", message))
            if len(text) > MAX_ERROR_TEXT:
                text = text[:MAX_ERROR_TEXT] + "…"
            message = f"relay refused the request: {text}"
            if status >= 500:
                message = f"{where} answered HTTP {status}: {text}"
    except (ValueError, RecursionError):
        pass
    kw: dict[str, Any] = {"status": status, "code": code}
    if status == 409:
        off = headers.get(protocol.H_UPLOAD_OFFSET)
        return RelayConflict(message, offset=int(off) if off and off.isdigit() else None, **kw)
    if status == 429:
        ra = headers.get("Retry-After", "1")
        return RelayRateLimited(message, retry_after=int(ra) if ra.isdigit() else 1, **kw)
    if status in (401, 403):
        hint = (
            "check the computer's clock" if code == protocol.ErrorCode.STALE_TIMESTAMP else None
        )
        return RelayAuthError(message, hint=hint, **kw)
    if status == 404:
        return RelayNotFound(message, **kw)
    if status >= 500 or status == 408:  # 408: the body came too slowly; may be sent again
        return RelayUnavailable(message, hint=(
            "the relay is having trouble: try again in a few minutes; if it lasts, tell "
            "the relay's operator"), **kw)
    return RelayError(message, **kw)


def _log_index(obj: object) -> int | None:
    """The ``log_index`` of an answer (a key entry's place in the log), if any."""
    index = obj.get("log_index") if isinstance(obj, dict) else None
    if index is None:
        return None
    if type(index) is not int or index < 0:
        raise RelayProtocolError("the relay answered a malformed log index")
    return index


# -- deadlines ---------------------------------------------------------------


def _seconds(x: float) -> str:
    return f"{round(x)} s" if x >= 10 else f"{x:.1f} s"


def _too_slow(deadline: _Deadline, url: str = "") -> RelayUnavailable:
    where = f"the relay at {url}" if url else "the relay"
    return RelayUnavailable(
        f"{where} did not answer within {_seconds(deadline.seconds)}",
        hint="try again later; if it keeps happening, tell the relay's operator",
    )


def _shut_down(client: RelayClient) -> None:
    """Make a read blocked on ``client``'s connection, on another thread, fail now.
    The plain socket's shutdown, also for TLS: SSLSocket.shutdown would tear
    down TLS state under the reading thread's feet."""
    conn = client._conn
    sock = conn.sock if conn is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Deadline:
    """A watchdog for one request: at its end it shuts the connection's socket
    down, so a read blocked on a silent or trickling relay returns at once.

    Why not a socket timeout: that bounds each read, and a relay sending one
    byte just before every timeout would never trip it. ``fired`` tells the
    reader that the failure it sees is the deadline's doing.
    """

    def __init__(self, client: RelayClient, seconds: float) -> None:
        self._client = client
        self._start = time.monotonic()
        self.seconds = seconds
        self.fired = threading.Event()
        self._lock = threading.Lock()
        self._timer = self._arm(seconds)

    def _arm(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(max(seconds, 0.0), self._fire)
        timer.daemon = True
        timer.start()
        return timer

    def _fire(self) -> None:
        with self._lock:
            self.fired.set()
            _shut_down(self._client)

    def extend(self, seconds: float) -> None:
        """Move the end to ``seconds`` after the start (if it has not passed)."""
        with self._lock:
            if self.fired.is_set():
                return
            self._timer.cancel()
            self.seconds = seconds
            self._timer = self._arm(self._start + seconds - time.monotonic())

    def cancel(self) -> None:
        with self._lock:
            self._timer.cancel()


class BlobReader:
    """A download's body as a reader: ``readinto`` until it returns 0 at the blob's end.

    ``done`` counts the blob's bytes so far (from the resumed offset), ``size``
    is the whole blob. A read that fails, or an end before ``size``, raises
    RelayUnavailable ("run it again to resume"), never returns a short end.
    """

    def __init__(self, client: RelayClient, resp: http.client.HTTPResponse,
                 watchdog: _Deadline, *, done: int, size: int) -> None:
        self._client, self._resp, self._watchdog = client, resp, watchdog
        self.done = done
        self.size = size
        self.finished = False

    def readinto(self, buf: bytearray | memoryview, /) -> int:
        if self.finished:
            return 0
        view = memoryview(buf).cast("B")[:IO_BLOCK]
        try:
            n = self._resp.readinto(view) if view else 0
        except (http.client.HTTPException, OSError) as exc:
            self._client.close()
            raise self._client._interrupted(self.done, self.size, self._watchdog) from exc
        self.done += n
        if self.done > self.size:
            self._client.close()
            raise RelayProtocolError(
                f"the relay sent more than the {self.size} bytes it announced; download stopped")
        if n == 0:  # what came before a cut was returned first: the caller keeps it
            if self.done != self.size or self._watchdog.fired.is_set():
                self._client.close()
                raise self._client._interrupted(self.done, self.size, self._watchdog)
            self.finished = True
        elif self.done == self.size and self._resp.isclosed():
            self.finished = True
        return n

    def abort(self) -> None:
        """Make a ``readinto`` blocked on another thread fail now (receive's
        read-ahead, stopped): the socket is shut down, as the deadline does."""
        _shut_down(self._client)


# -- the client --------------------------------------------------------------


class RelayClient:
    def __init__(
        self,
        base_url: str,
        *,
        handle: str,
        signing_key: SigningKey,
        timeout: float = 60.0,
        clock: Callable[[], float] = time.time,
        max_json: int = MAX_JSON_ANSWER,
        call_deadline: float = CALL_DEADLINE,
        download_grace: float = DOWNLOAD_GRACE,
        download_min_rate: float = DOWNLOAD_MIN_RATE,
        ca_file: str | None = None,
    ) -> None:
        """``timeout``: seconds for each connect or read; ``max_json``: the
        largest answer read as JSON; ``call_deadline``: seconds for a whole
        control request; a download may take ``download_grace`` seconds plus
        one second per ``download_min_rate`` bytes. ``ca_file``: a certificate
        authority trusted besides the system's and SSL_CERT_FILE (the profile's
        setting). Proxies come from the environment (``transport``)."""
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise RelayError(f"relay URL must be http(s)://host[:port], not {base_url!r}")
        self._scheme = url.scheme
        self._host = url.hostname
        self._port = url.port
        self._prefix = url.path.rstrip("/")
        # What messages name: the URL as pinned, never with credentials (none are allowed).
        self.url = urllib.parse.urlunsplit((url.scheme, url.netloc, self._prefix, "", ""))
        self._proxy = transport.proxy_for(url.scheme, url.hostname,
                                          url.port or (443 if url.scheme == "https" else 80))
        self._tls = transport.tls_context(ca_file) if url.scheme == "https" else None
        self.handle = handle
        self._key = signing_key
        self._timeout = timeout
        self._clock = clock
        self._max_json = max_json
        self._call_deadline = call_deadline
        self._download_grace = download_grace
        self._download_min_rate = download_min_rate
        self._conn: http.client.HTTPConnection | None = None

    def __repr__(self) -> str:
        return f"RelayClient({self._scheme}://{self._host}, handle={self.handle!r})"

    @property
    def proxy(self) -> transport.Proxy | None:
        """The proxy requests go through (from the environment), or None."""
        return self._proxy

    def clone(self) -> RelayClient:
        """Another client for the same relay and account, with its own connection
        (one per thread: a connection carries one request at a time)."""
        c = RelayClient("http://placeholder", handle=self.handle, signing_key=self._key,
                        timeout=self._timeout, clock=self._clock, max_json=self._max_json,
                        call_deadline=self._call_deadline,
                        download_grace=self._download_grace,
                        download_min_rate=self._download_min_rate)
        c._scheme, c._host, c._port, c._prefix = self._scheme, self._host, self._port, self._prefix
        c.url, c._proxy, c._tls = self.url, self._proxy, self._tls
        return c

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> RelayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -----------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = transport.open_connection(
                self._scheme, self._host, self._port, timeout=self._timeout,
                context=self._tls, proxy=self._proxy)
        return self._conn

    def _unreachable(self, exc: BaseException, *, sending: bool) -> RelayError:
        """The error for a request that got no answer: a sentence naming the relay."""
        why = transport.explain(exc, url=self.url, scheme=self._scheme, host=self._host,
                                port=self._port, proxy=self._proxy, timeout=self._timeout,
                                sending=sending)
        cls = RelayTLSError if why.tls else RelayUnavailable
        return cls(why.message, hint=why.hint)

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: bytes | bytearray | memoryview | None = None,
        body_sha256: str | None = None,
        headers: dict[str, str] | None = None,
        signed: bool = True,
        sign_as: tuple[str, SigningKey] | None = None,
        deadline: _Deadline | None = None,
    ) -> http.client.HTTPResponse:
        full = self._prefix + path
        sha = body_sha256 or (hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256)
        hdrs = dict(headers or {})
        if signed:
            handle, key = sign_as or (self.handle, self._key)
            hdrs.update(sign_headers(key, handle, method, full, sha, now=self._clock()))
        if body is not None:
            hdrs.setdefault("Content-Length", str(memoryview(body).nbytes))
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, full, body=body, headers=hdrs)
                resp = conn.getresponse()
                if deadline is not None and deadline.fired.is_set():
                    # Cut mid-headers, http.client may take the cut for their end.
                    raise TimeoutError("deadline")
                return resp
            except (ConnectionError, http.client.HTTPException, TimeoutError, OSError) as exc:
                self.close()
                if deadline is not None and deadline.fired.is_set():
                    raise _too_slow(deadline, self.url) from exc
                # A kept-alive connection the server already closed fails on first
                # use; retrying once on a fresh one is safe because it is re-signed.
                if attempt == 2 or not isinstance(
                    exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
                ):
                    raise self._unreachable(exc, sending=body is not None) from exc
                if signed:
                    handle, key = sign_as or (self.handle, self._key)
                    hdrs.update(sign_headers(key, handle, method, full, sha, now=self._clock()))
        raise RelayUnavailable(f"cannot reach the relay at {self.url}")  # pragma: no cover

    def _read_body(self, resp: http.client.HTTPResponse, limit: int,
                   deadline: _Deadline | None = None) -> bytes | None:
        """The whole body if it is at most ``limit`` bytes, else None (and the
        connection is dropped, since the rest of the body is never read)."""
        length = resp.getheader("Content-Length", "")
        if length.isdigit() and int(length) > limit:
            self.close()
            return None
        try:
            data = resp.read(limit + 1)
        except (http.client.HTTPException, OSError) as exc:
            self.close()
            if deadline is not None and deadline.fired.is_set():
                raise _too_slow(deadline, self.url) from exc
            raise RelayUnavailable(
                f"the answer of the relay at {self.url} was cut off",
                hint="the relay restarted or the network dropped; try again") from exc
        if deadline is not None and deadline.fired.is_set():
            self.close()
            raise _too_slow(deadline, self.url)  # the cut may read as a short, whole body
        if len(data) > limit:
            self.close()
            return None
        return data

    def _error(self, resp: http.client.HTTPResponse,
               deadline: _Deadline | None = None) -> RelayError:
        body = self._read_body(resp, MAX_ERROR_BODY, deadline)
        return _error_from(resp.status, resp.headers, body or b"", self.url)

    def _call(self, method: str, path: str, obj: Any = None, **kw: Any) -> tuple[Any, Any]:
        body = None
        headers = kw.pop("headers", {})
        if obj is not None:
            body = json.dumps(obj, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        deadline = _Deadline(self, self._call_deadline)
        try:
            resp = self._send(method, path, body=body, headers=headers, deadline=deadline,
                              **kw)
            if resp.status >= 400:
                raise self._error(resp, deadline)
            data = self._read_body(resp, self._max_json, deadline)
        finally:
            deadline.cancel()
        if deadline.fired.is_set():
            self.close()  # cut after the last read: the next request needs a fresh socket
        if data is None:
            raise RelayProtocolError(
                f"the relay's answer is larger than {self._max_json // 1024} KiB; refused",
                hint="the relay is misconfigured or hostile; tell its operator",
            )
        if not data:
            return None, resp.headers
        try:
            return json.loads(data), resp.headers
        except (ValueError, RecursionError) as exc:
            raise RelayProtocolError("the relay answered with malformed JSON") from exc

    # -- the relay itself ----------------------------------------------------

    def info(self) -> dict[str, Any] | None:
        """``GET /v1/info`` (unsigned), the one place it is read: the relay's
        terms and its log, or None from an older relay without it (404)."""
        try:
            obj, _ = self._call("GET", "/v1/info", signed=False)
        except RelayNotFound:
            return None
        return obj if isinstance(obj, dict) else {}

    def max_chunk_bytes(self) -> int | None:
        """The largest chunk the relay accepts (``GET /v1/info``, unsigned), or None
        from an older relay that does not say (it answers 404)."""
        return self.upload_terms()[0]

    def upload_terms(self) -> tuple[int | None, str]:
        """From one ``GET /v1/info`` (unsigned): the largest chunk the relay
        accepts (None from an older relay: it answers 404) and the chunk hash
        to upload with (crypto.chunkhash.pick: SHA-256 from a relay that does
        not list ``chunk_hashes``, as every relay before BLAKE3)."""
        limit, _, algorithm = self.upload_bounds()
        return limit, algorithm

    def upload_bounds(self) -> tuple[int | None, int | None, str]:
        """``upload_terms`` with, in the middle, the smallest chunk but a
        transfer's last that the relay accepts (``min_chunk_bytes``: a relay
        storing blobs in S3 says 5 MiB; None when it says nothing)."""
        obj = self.info()
        if obj is None:
            return None, None, chunkhash.SHA256
        limit = obj.get("max_chunk_bytes")
        if type(limit) is not int or limit <= 0:
            raise RelayProtocolError("the relay did not say its largest chunk size")
        least = obj.get("min_chunk_bytes")
        if least is not None and (type(least) is not int or not 0 < least <= limit):
            raise RelayProtocolError("the relay said a smallest chunk size it cannot take")
        return limit, least, chunkhash.pick(obj.get("chunk_hashes"))

    def expiry_bounds(self) -> tuple[int, int] | None:
        """The relay's shortest and longest transfer expiry in seconds, from
        ``GET /v1/info`` (``expiry_seconds``), or None from a relay that does
        not state them (older) or cannot be asked just now: only a refusal's
        wording depends on it."""
        try:
            obj = self.info()
        except ClientError:  # unreachable now: the sentence goes without bounds
            return None
        span = obj.get("expiry_seconds") if obj is not None else None
        low = span.get("min") if isinstance(span, dict) else None
        high = span.get("max") if isinstance(span, dict) else None
        if type(low) is not int or type(high) is not int or not 0 < low <= high:
            return None
        return low, high

    # -- the transparency log (docs/transparency.md) -----------------------------

    def log_key(self) -> tuple[str, str] | None:
        """The log's origin and verifier key from ``GET /v1/info`` (unsigned), or
        None from a relay that serves no log."""
        obj = self.info()
        log = obj.get("log") if obj is not None else None
        if log is None:
            return None
        origin = log.get("origin") if isinstance(log, dict) else None
        vkey = log.get("vkey") if isinstance(log, dict) else None
        if not (isinstance(origin, str) and isinstance(vkey, str) and origin and vkey
                and len(origin) + len(vkey) < 1024):
            raise RelayProtocolError("the relay described its log in a malformed way")
        return origin, vkey

    def log_checkpoint(self) -> str:
        """The log's current signed checkpoint (``GET /v1/log/checkpoint``), as text."""
        data = self._get_bytes("/v1/log/checkpoint", MAX_CHECKPOINT)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RelayProtocolError("the relay's log checkpoint is not UTF-8 text") from exc

    def log_tile(self, path: str) -> bytes:
        """One tile of the log (``path``: ``tile/…``, crypto.tlog.tiles), unverified."""
        if not path.startswith("tile/") or ".." in path:
            raise ValueError("not a tile path")
        return self._get_bytes(f"/v1/log/{path}", MAX_TILE)

    def _get_bytes(self, path: str, limit: int) -> bytes:
        """An unsigned GET's body, bounded by ``limit`` (the log is public)."""
        deadline = _Deadline(self, self._call_deadline)
        try:
            resp = self._send("GET", path, signed=False, deadline=deadline)
            if resp.status >= 400:
                raise self._error(resp, deadline)
            data = self._read_body(resp, limit, deadline)
        finally:
            deadline.cancel()
        if deadline.fired.is_set():
            self.close()
        if data is None:
            raise RelayProtocolError(f"the relay's answer to {path} is too large; refused",
                                     hint="the relay is misconfigured or hostile; tell its "
                                     "operator")
        return data

    # -- accounts ------------------------------------------------------------

    def register(self, invite: str, bundle: KeyBundle) -> int | None:
        """Register ``bundle`` (signed by this client's key) with an invite code.
        Returns the log index of its key entry (None from a relay without a log)."""
        if bundle.handle != self.handle:
            raise RelayError("the bundle names a different handle than this client")
        obj, _ = self._call(
            "POST", "/v1/accounts",
            {"handle": self.handle, "invite": invite, "bundle": bundle.to_json()},
        )
        return _log_index(obj)

    def get_bundle(self, handle: str) -> KeyBundle:
        """A contact's key bundle, its signature and handle checked (not pinned)."""
        return self.get_logged_bundle(handle)[0]

    def get_logged_bundle(self, handle: str) -> tuple[KeyBundle, int | None]:
        """``get_bundle`` and the log index the relay gives for that bundle's key
        entry (None from a relay without a log). The index is a claim:
        ``client.tlog.LogClient.check_bundle`` checks it."""
        obj, _ = self._call("GET", f"/v1/accounts/{urllib.parse.quote(handle, safe='')}/bundle")
        try:
            bundle = KeyBundle.from_json(obj.get("bundle") if isinstance(obj, dict) else None)
            bundle.verify()
        except BundleError as exc:
            raise RelayProtocolError(f"the relay served a bad key bundle: {exc}") from exc
        if bundle.handle != handle:
            raise RelayProtocolError("the relay served a key bundle for a different handle")
        return bundle, _log_index(obj)

    def rotate_bundle(self, bundle: KeyBundle) -> None:
        self._call("PUT", f"/v1/accounts/{self.handle}/bundle", {"bundle": bundle.to_json()})

    # -- sending -------------------------------------------------------------

    def create_transfer(
        self, recipients: list[str], size: int, *, expires_in: int | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"recipients": recipients, "size": size}
        if expires_in is not None:
            body["expires_in"] = expires_in
        try:
            obj, _ = self._call("POST", "/v1/transfers", body)
        except RelayError as exc:
            if exc.code != protocol.ErrorCode.BAD_EXPIRY or expires_in is None:
                raise
            # The relay's bounds in days and hours, from what it states as data.
            message, hint = expiry_refused(self.expiry_bounds(), expires_in)
            raise RelayError(message, status=exc.status, code=exc.code, hint=hint) from exc
        return dict(obj["transfer"])

    def upload_offset(self, relay_id: str) -> int:
        resp = self._send("HEAD", f"/v1/transfers/{relay_id}/data")
        resp.read()  # a HEAD answer has no body: nothing is read
        if resp.status >= 400:
            raise _error_from(resp.status, resp.headers, b"", self.url)
        value = resp.headers.get(protocol.H_UPLOAD_OFFSET, "")
        if not value.isdigit():
            raise RelayProtocolError("the relay did not say the upload offset")
        return int(value)

    def upload_chunk(
        self, relay_id: str, offset: int, data: bytes | bytearray | memoryview,
        *, hex_digest: str | None = None, algorithm: str = chunkhash.SHA256,
    ) -> int:
        """Send one chunk at ``offset``; returns the new committed offset.

        ``algorithm``: the transfer's chunk hash (``upload_terms``);
        ``hex_digest``: the chunk's hash if the caller already has it (it
        hashed the chunk for its own log), so the bytes are not hashed twice;
        the relay verifies it either way. The signature covers the tagged hash.
        """
        digest = hex_digest or chunkhash.hex_digest(algorithm, data)
        resp = self._send(
            "PATCH", f"/v1/transfers/{relay_id}/data", body=data,
            body_sha256=chunkhash.tag(algorithm, digest),
            headers={
                "Content-Type": "application/octet-stream",
                protocol.H_UPLOAD_OFFSET: str(offset),
                chunkhash.HEADERS[algorithm]: digest,
            },
        )
        if resp.status >= 400:
            raise self._error(resp)
        self._read_body(resp, MAX_ERROR_BODY)  # the answer's body is not used
        value = resp.headers.get(protocol.H_UPLOAD_OFFSET)
        if value is None:
            return offset + len(data)
        if not (value.isascii() and value.isdigit()):
            raise RelayProtocolError("the relay answered a malformed upload offset")
        return int(value)

    def complete(self, relay_id: str) -> dict[str, Any]:
        obj, _ = self._call("POST", f"/v1/transfers/{relay_id}/complete", {})
        return dict(obj["transfer"])

    def sent(self) -> list[dict[str, Any]]:
        obj, _ = self._call("GET", "/v1/transfers")
        return list(obj["transfers"])

    def status(self, relay_id: str) -> dict[str, Any]:
        """The transfer as the relay sees it; for the sender, with per-recipient
        ``downloaded_at``/``verified_at`` (the delivery status)."""
        obj, _ = self._call("GET", f"/v1/transfers/{relay_id}")
        return dict(obj["transfer"])

    def delete(self, relay_id: str) -> None:
        self._call("DELETE", f"/v1/transfers/{relay_id}")

    def put_card(self, relay_id: str, card: bytes) -> bool:
        """Store the transfer's sealed case card (docs/card.md); False from a relay
        that has no card endpoint (an older one answers 404 without our code, or 405)."""
        try:
            self._call("PUT", f"/v1/transfers/{relay_id}/card",
                       {"card": base64.b64encode(card).decode("ascii")})
        except RelayError as exc:
            if exc.status == 405 or (
                    exc.status == 404 and exc.code != protocol.ErrorCode.TRANSFER_NOT_FOUND):
                return False
            raise
        return True

    # -- receiving -----------------------------------------------------------

    def inbox_page(
        self,
        *,
        cursor: str | None = None,
        senders: tuple[str, ...] = (),
        limit: int | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the inbox and the cursor of the next (None: the last page).

        ``senders``: only their transfers (at most ``INBOX_MAX_SENDERS``). What
        the relay answers is checked for shape only: the senders it names are
        claims, and the caller filters on them again (a relay may ignore the filter).
        """
        if len(senders) > protocol.INBOX_MAX_SENDERS:
            raise ValueError(f"at most {protocol.INBOX_MAX_SENDERS} senders per request")
        params: list[tuple[str, str]] = [("sender", h) for h in senders]
        if cursor is not None:
            params.append(("cursor", cursor))
        if limit is not None:
            params.append(("limit", str(limit)))
        path = "/v1/inbox" + ("?" + urllib.parse.urlencode(params) if params else "")
        obj, _ = self._call("GET", path)
        items = obj.get("transfers") if isinstance(obj, dict) else None
        nxt = obj.get("next_cursor") if isinstance(obj, dict) else None
        if not isinstance(items, list) or not all(
            isinstance(t, dict) and isinstance(t.get("id"), str) for t in items
        ):
            raise RelayProtocolError("the relay answered a malformed inbox page")
        if nxt is not None and not (isinstance(nxt, str) and _CURSOR_RE.fullmatch(nxt)):
            raise RelayProtocolError("the relay answered a malformed inbox cursor")
        return [dict(t) for t in items], nxt

    def inbox(
        self, *, senders: tuple[str, ...] = (), max_items: int = 100_000,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Every page of the inbox (or of ``senders``' transfers), in the relay's order.

        Bounded: stops after ``max_items`` transfers, and refuses a relay whose
        cursors go round in a circle, so a hostile relay or a flood cannot keep
        the walk going for ever. An older relay answers one page and no cursor.
        """
        out: list[dict[str, Any]] = []
        seen_cursors: set[str] = set()
        cursor: str | None = None
        while len(out) < max_items:
            page, cursor = self.inbox_page(cursor=cursor, senders=senders, limit=limit)
            out += page
            if cursor is None or not page:
                break
            if cursor in seen_cursors:
                raise RelayProtocolError("the relay's inbox cursors go round in a circle")
            seen_cursors.add(cursor)
        return out[:max_items]

    def dismiss(self, relay_id: str) -> None:
        """Refuse or dismiss a transfer: it leaves this account's inbox for good."""
        self._call("POST", f"/v1/transfers/{relay_id}/dismiss", {})

    def block(self, handle: str) -> bool:
        """Refuse ``handle``'s transfers from now on; False if already blocked."""
        resp = self._send("PUT", f"/v1/blocks/{urllib.parse.quote(handle, safe='')}")
        data = resp.read()
        if resp.status >= 400:
            raise _error_from(resp.status, resp.headers, data, self.url)
        return resp.status == 201

    def unblock(self, handle: str) -> None:
        self._call("DELETE", f"/v1/blocks/{urllib.parse.quote(handle, safe='')}")

    def blocks(self) -> list[dict[str, Any]]:
        obj, _ = self._call("GET", "/v1/blocks")
        items = obj.get("blocks") if isinstance(obj, dict) else None
        if not isinstance(items, list) or not all(isinstance(b, dict) for b in items):
            raise RelayProtocolError("the relay answered a malformed list of blocks")
        return [dict(b) for b in items]

    def download(
        self,
        relay_id: str,
        dst: Sink,
        *,
        offset: int = 0,
        progress: Callable[[int, int], None] | None = None,
        deadline: float | None = None,
    ) -> int:
        """Append the blob from ``offset`` on to ``dst``; returns the blob size.

        To resume, pass the number of bytes already written. The relay's
        SHA-256 of the blob is not trusted for anything: the age payload
        authenticates itself when decrypted.

        ``deadline``: seconds for the whole download; by default
        ``download_grace`` plus one second per ``download_min_rate`` bytes
        still to come. Past it the download stops with RelayUnavailable; what
        arrived stays in ``dst``, so running it again resumes.
        """
        buf = bytearray(IO_BLOCK)
        view = memoryview(buf)
        with self.open_download(relay_id, offset=offset, deadline=deadline) as blob:
            while n := blob.readinto(view):
                dst.write(bytes(view[:n]))
                if progress is not None:
                    progress(blob.done, blob.size)
            return blob.size

    @contextlib.contextmanager
    def open_download(self, relay_id: str, *, offset: int = 0,
                      deadline: float | None = None) -> Iterator[BlobReader]:
        """The blob from ``offset`` on, as a reader (``BlobReader``), while the
        caller consumes it: for ``receive``, which decrypts as the bytes arrive.

        The same bounds as ``download``: the deadline watchdog runs until the
        block is left; a body cut short raises RelayUnavailable, never an early
        end (a truncated blob must read as "resume", not as a damaged transfer).
        """
        watchdog = _Deadline(self, self._download_grace if deadline is None else deadline)
        try:
            try:
                headers = {"Range": f"bytes={offset}-"} if offset else {}
                resp = self._send("GET", f"/v1/transfers/{relay_id}/data", headers=headers,
                                  deadline=watchdog)
                if resp.status >= 400:
                    raise self._error(resp, watchdog)
                if offset and resp.status != 206:
                    self.close()
                    raise RelayProtocolError("the relay ignored the Range of a resumed download")
                total_text = (resp.headers.get("Content-Range", "").rpartition("/")[2]
                              if offset else resp.headers.get("Content-Length", ""))
                if not (total_text.isascii() and total_text.isdigit()):
                    self.close()
                    raise RelayProtocolError("the relay did not say the blob size")
            except RelayUnavailable as exc:
                if watchdog.fired.is_set():
                    raise self._interrupted(offset, None, watchdog) from exc
                raise
            total = int(total_text)
            if deadline is None:  # now that the size is known, allow for it
                watchdog.extend(self._download_grace
                                + max(total - offset, 0) / self._download_min_rate)
            blob = BlobReader(self, resp, watchdog, done=offset, size=total)
            try:
                yield blob
            finally:
                if not blob.finished:
                    self.close()  # the rest of the body was not read: the connection is spent
        finally:
            watchdog.cancel()

    def _interrupted(self, done: int, total: int | None, watchdog: _Deadline
                     ) -> RelayUnavailable:
        got = f"{done} of {total} bytes" if total is not None else f"{done} bytes"
        if watchdog.fired.is_set():
            return RelayUnavailable(
                f"download stalled: {got} after {_seconds(watchdog.seconds)}; "
                "run it again to resume",
                hint="the relay or the network is too slow; what arrived is kept",
            )
        return RelayUnavailable(
            f"the download from the relay at {self.url} was cut after {got}; "
            "run it again to resume",
            hint="the relay restarted or the network dropped; what arrived is kept: run the "
                 "same command again to resume")

    def ack(self, relay_id: str, status: str,
            receipt: tuple[int, bytes] | None = None) -> dict[str, Any]:
        """Tell the sender: ``downloaded`` or ``verified`` (decrypted and checked).
        ``receipt``: (unix time, Ed25519 signature) of our signed receipt for it
        (crypto.tlog.entries.sign_receipt), which the relay logs."""
        if status not in ("downloaded", "verified"):
            raise ValueError("status must be 'downloaded' or 'verified'")
        body: dict[str, Any] = {"status": status}
        if receipt is not None:
            body["receipt"] = {"at": receipt[0],
                               "sig": base64.b64encode(receipt[1]).decode("ascii")}
        obj, _ = self._call("POST", f"/v1/transfers/{relay_id}/ack", body)
        return dict(obj["transfer"])
