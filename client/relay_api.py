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
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, Protocol

from nacl.signing import SigningKey

from sealdrop.crypto import protocol
from sealdrop.crypto.bundle import KeyBundle
from sealdrop.crypto.errors import BundleError

from .errors import ClientError

EMPTY_SHA256 = protocol.EMPTY_SHA256
DEFAULT_CHUNK = protocol.DEFAULT_CHUNK_SIZE
IO_BLOCK = 1024 * 1024


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


def _error_from(status: int, headers: Any, body: bytes) -> RelayError:
    code, message = "", f"the relay answered HTTP {status}"
    try:
        obj = json.loads(body)
        if isinstance(obj, dict):
            code = str(obj.get("code", ""))
            message = f"relay refused the request: {obj.get('error', message)}"
    except ValueError:
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
        return RelayUnavailable(message, **kw)
    return RelayError(message, **kw)


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
    ) -> None:
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise RelayError(f"relay URL must be http(s)://host[:port], not {base_url!r}")
        self._scheme = url.scheme
        self._host = url.hostname
        self._port = url.port
        self._prefix = url.path.rstrip("/")
        self.handle = handle
        self._key = signing_key
        self._timeout = timeout
        self._clock = clock
        self._conn: http.client.HTTPConnection | None = None

    def __repr__(self) -> str:
        return f"RelayClient({self._scheme}://{self._host}, handle={self.handle!r})"

    def clone(self) -> RelayClient:
        """Another client for the same relay and account, with its own connection
        (one per thread: a connection carries one request at a time)."""
        c = RelayClient("http://placeholder", handle=self.handle, signing_key=self._key,
                        timeout=self._timeout, clock=self._clock)
        c._scheme, c._host, c._port, c._prefix = self._scheme, self._host, self._port, self._prefix
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
            cls = (
                http.client.HTTPSConnection if self._scheme == "https"
                else http.client.HTTPConnection
            )
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn

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
                return conn.getresponse()
            except (ConnectionError, http.client.HTTPException, TimeoutError, OSError) as exc:
                self.close()
                # A kept-alive connection the server already closed fails on first
                # use; retrying once on a fresh one is safe because it is re-signed.
                if attempt == 2 or not isinstance(
                    exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
                ):
                    raise RelayUnavailable(f"cannot reach the relay: {exc}") from exc
                if signed:
                    handle, key = sign_as or (self.handle, self._key)
                    hdrs.update(sign_headers(key, handle, method, full, sha, now=self._clock()))
        raise RelayUnavailable("cannot reach the relay")  # pragma: no cover

    def _call(self, method: str, path: str, obj: Any = None, **kw: Any) -> tuple[Any, Any]:
        body = None
        headers = kw.pop("headers", {})
        if obj is not None:
            body = json.dumps(obj, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        resp = self._send(method, path, body=body, headers=headers, **kw)
        data = resp.read()
        if resp.status >= 400:
            raise _error_from(resp.status, resp.headers, data)
        if not data:
            return None, resp.headers
        try:
            return json.loads(data), resp.headers
        except ValueError as exc:
            raise RelayProtocolError("the relay answered with malformed JSON") from exc

    # -- accounts ------------------------------------------------------------

    def register(self, invite: str, bundle: KeyBundle) -> None:
        """Register ``bundle`` (signed by this client's key) with an invite code."""
        if bundle.handle != self.handle:
            raise RelayError("the bundle names a different handle than this client")
        self._call(
            "POST", "/v1/accounts",
            {"handle": self.handle, "invite": invite, "bundle": bundle.to_json()},
        )

    def get_bundle(self, handle: str) -> KeyBundle:
        """A contact's key bundle, its signature and handle checked (not pinned)."""
        obj, _ = self._call("GET", f"/v1/accounts/{urllib.parse.quote(handle, safe='')}/bundle")
        try:
            bundle = KeyBundle.from_json(obj.get("bundle") if isinstance(obj, dict) else None)
            bundle.verify()
        except BundleError as exc:
            raise RelayProtocolError(f"the relay served a bad key bundle: {exc}") from exc
        if bundle.handle != handle:
            raise RelayProtocolError("the relay served a key bundle for a different handle")
        return bundle

    def rotate_bundle(self, bundle: KeyBundle) -> None:
        self._call("PUT", f"/v1/accounts/{self.handle}/bundle", {"bundle": bundle.to_json()})

    # -- sending -------------------------------------------------------------

    def create_transfer(
        self, recipients: list[str], size: int, *, expires_in: int | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"recipients": recipients, "size": size}
        if expires_in is not None:
            body["expires_in"] = expires_in
        obj, _ = self._call("POST", "/v1/transfers", body)
        return dict(obj["transfer"])

    def upload_offset(self, relay_id: str) -> int:
        resp = self._send("HEAD", f"/v1/transfers/{relay_id}/data")
        resp.read()
        if resp.status >= 400:
            raise _error_from(resp.status, resp.headers, b"")
        value = resp.headers.get(protocol.H_UPLOAD_OFFSET, "")
        if not value.isdigit():
            raise RelayProtocolError("the relay did not say the upload offset")
        return int(value)

    def upload_chunk(
        self, relay_id: str, offset: int, data: bytes | bytearray | memoryview,
        *, sha256_hex: str | None = None,
    ) -> int:
        """Send one chunk at ``offset``; returns the new committed offset.

        ``sha256_hex``: the chunk's SHA-256 if the caller already has it (it
        hashed the chunk for its own log), so the bytes are not hashed twice;
        the relay verifies it either way.
        """
        sha = sha256_hex or hashlib.sha256(data).hexdigest()
        resp = self._send(
            "PATCH", f"/v1/transfers/{relay_id}/data", body=data, body_sha256=sha,
            headers={
                "Content-Type": "application/octet-stream",
                protocol.H_UPLOAD_OFFSET: str(offset),
                protocol.H_CHUNK_SHA256: sha,
            },
        )
        payload = resp.read()
        if resp.status >= 400:
            raise _error_from(resp.status, resp.headers, payload)
        return int(resp.headers.get(protocol.H_UPLOAD_OFFSET, offset + len(data)))

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

    # -- receiving -----------------------------------------------------------

    def inbox(self) -> list[dict[str, Any]]:
        obj, _ = self._call("GET", "/v1/inbox")
        return list(obj["transfers"])

    def download(
        self,
        relay_id: str,
        dst: Sink,
        *,
        offset: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Append the blob from ``offset`` on to ``dst``; returns the blob size.

        To resume, pass the number of bytes already written. The relay's
        SHA-256 of the blob is not trusted for anything: the age payload
        authenticates itself when decrypted.
        """
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self._send("GET", f"/v1/transfers/{relay_id}/data", headers=headers)
        if resp.status >= 400:
            raise _error_from(resp.status, resp.headers, resp.read())
        if offset and resp.status != 206:
            resp.read()
            raise RelayProtocolError("the relay ignored the Range of a resumed download")
        total_text = (resp.headers.get("Content-Range", "").rpartition("/")[2]
                      if offset else resp.headers.get("Content-Length", ""))
        if not total_text.isdigit():
            resp.read()
            raise RelayProtocolError("the relay did not say the blob size")
        total = int(total_text)
        done = offset
        while True:
            try:
                block = resp.read(IO_BLOCK)
            except (http.client.IncompleteRead, ConnectionError, TimeoutError) as exc:
                self.close()
                raise RelayUnavailable(
                    f"download interrupted after {done} of {total} bytes; run it again to resume"
                ) from exc
            if not block:
                break
            dst.write(block)
            done += len(block)
            if progress is not None:
                progress(done, total)
        if done != total:
            self.close()
            raise RelayUnavailable(
                f"download interrupted after {done} of {total} bytes; run it again to resume"
            )
        return total

    def ack(self, relay_id: str, status: str) -> dict[str, Any]:
        """Tell the sender: ``downloaded`` or ``verified`` (decrypted and checked)."""
        if status not in ("downloaded", "verified"):
            raise ValueError("status must be 'downloaded' or 'verified'")
        obj, _ = self._call("POST", f"/v1/transfers/{relay_id}/ack", {"status": status})
        return dict(obj["transfer"])
