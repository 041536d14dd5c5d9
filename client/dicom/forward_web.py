"""STOW-RS into a DICOMweb server, or Orthanc's REST API where it has no DICOMweb.

One ``POST URL/studies`` per study, cut into batches of at most
``BATCH_FILES`` instances and ``BATCH_BYTES`` bytes, the body streamed from
the files (``stow``). A server that answers 404 or 405 there has no STOW-RS:
if it is an Orthanc, each instance goes to its REST ``POST .../instances``
(tried at ``URL/instances``, then, for a URL ending in ``/dicom-web``, at the
same path without it, where Orthanc's REST API lives).

https uses the system's trust store (``ssl.create_default_context``). HTTP
basic credentials come from the environment or a file (``BasicAuth``), never
from the command line where every user of the machine reads them (``ps``);
a URL carrying ``user:password@`` is refused.
"""

from __future__ import annotations

import base64
import http.client
import ssl
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..errors import ClientError
from . import stow
from .instances import Instance
from .outcome import Attempt, Outcome

BATCH_FILES = 100
BATCH_BYTES = 256 * 1024 * 1024
AUTH_ENV = "SEALDROP_DICOMWEB_AUTH"
AUTH_FILE_ENV = "SEALDROP_DICOMWEB_AUTH_FILE"


@dataclass(frozen=True, slots=True)
class BasicAuth:
    user: str
    password: str = field(repr=False)

    def header(self) -> str:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode("ascii")
        return f"Basic {token}"


def auth_from_env(env: Mapping[str, str]) -> BasicAuth | None:
    """``USER:PASSWORD`` from $SEALDROP_DICOMWEB_AUTH_FILE (a file) or $SEALDROP_DICOMWEB_AUTH."""
    text = None
    if env.get(AUTH_FILE_ENV):
        try:
            text = Path(env[AUTH_FILE_ENV]).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ClientError(f"cannot read the DICOMweb credentials file named by "
                              f"{AUTH_FILE_ENV}") from exc
    elif env.get(AUTH_ENV):
        text = env[AUTH_ENV].strip()
    if text is None:
        return None
    user, colon, password = text.partition(":")
    if not colon or not user:
        raise ClientError("the DICOMweb credentials are not USER:PASSWORD",
                          hint=f"write one line USER:PASSWORD in the file {AUTH_FILE_ENV} names")
    return BasicAuth(user, password)


@dataclass(frozen=True, slots=True)
class WebTarget:
    url: str  # scheme://host[:port]/path, no trailing slash

    @classmethod
    def parse(cls, text: str) -> WebTarget:
        u = urllib.parse.urlsplit(text.strip())
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ClientError(f"{text[:80]!r} is not a DICOMweb URL",
                              hint="write e.g. https://pacs.lab.local/dicom-web")
        if u.username or u.password:
            raise ClientError("the DICOMweb URL carries a user name or password",
                              hint=f"remove it from the URL; put USER:PASSWORD in a file "
                              f"named by {AUTH_FILE_ENV} (or in {AUTH_ENV})")
        if u.query or u.fragment:
            raise ClientError(f"the DICOMweb URL {text[:80]!r} has a query or fragment")
        return cls(urllib.parse.urlunsplit((u.scheme, u.netloc, u.path.rstrip("/"), "", "")))

    def __str__(self) -> str:
        return self.url

    def at(self, suffix: str) -> str:
        return self.url + suffix

    def rest_candidates(self) -> list[str]:
        out = [self.at("/instances")]
        base = self.url.rstrip("/")
        if base.endswith("/dicom-web"):
            out.append(base[: -len("/dicom-web")] + "/instances")
        return out


class _Http:
    """One connection per request: simple, and a dead keep-alive never misleads us."""

    def __init__(self, auth: BasicAuth | None, timeout: float) -> None:
        self.auth, self.timeout = auth, timeout

    def post(self, url: str, ctype: str, length: int, pieces: Iterable[bytes],
             accept: str) -> tuple[int, str, bytes]:
        u = urllib.parse.urlsplit(url)
        conn: http.client.HTTPConnection
        if u.scheme == "https":
            conn = http.client.HTTPSConnection(u.hostname or "", u.port, timeout=self.timeout,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(u.hostname or "", u.port, timeout=self.timeout)
        try:
            conn.putrequest("POST", u.path or "/")
            conn.putheader("Content-Type", ctype)
            conn.putheader("Content-Length", str(length))
            conn.putheader("Accept", accept)
            if self.auth is not None:
                conn.putheader("Authorization", self.auth.header())
            conn.endheaders()
            for piece in pieces:  # lazy: each file opened as its part is sent
                conn.send(piece)
            r = conn.getresponse()
            return r.status, r.getheader("Content-Type", ""), r.read(stow.MAX_RESPONSE)
        finally:
            conn.close()


def batches(instances: Sequence[Instance]) -> list[list[Instance]]:
    """Per study, in order of first appearance, cut to the batch bounds."""
    studies: dict[str, list[Instance]] = {}
    for i in instances:
        studies.setdefault(i.study, []).append(i)
    out: list[list[Instance]] = []
    for members in studies.values():
        cur: list[Instance] = []
        size = 0
        for i in members:
            if cur and (len(cur) >= BATCH_FILES or size + i.size > BATCH_BYTES):
                out.append(cur)
                cur, size = [], 0
            cur.append(i)
            size += i.size
        out.append(cur)
    return out


def _opener(path: Path) -> Callable[[], BinaryIO]:
    return lambda: open(path, "rb")  # closed by stow.body


def store(target: WebTarget, instances: Sequence[Instance], *, auth: BasicAuth | None = None,
          timeout: float = 120.0, on_outcome: Callable[[Outcome], None] | None = None
          ) -> Attempt:
    """STOW-RS every instance into ``target`` (Orthanc REST where it has no STOW-RS)."""
    http_ = _Http(auth, timeout)
    outcomes: list[Outcome] = []

    def note(os_: list[Outcome]) -> None:
        outcomes.extend(os_)
        if on_outcome is not None:
            for o in os_:
                on_outcome(o)

    todo = batches(instances)
    for n, batch in enumerate(todo):
        boundary = stow.new_boundary()
        sizes = [i.size for i in batch]
        try:
            status, ctype, raw = http_.post(
                target.at("/studies"), stow.content_type(boundary),
                stow.body_length(sizes, boundary),
                stow.body([_opener(i.placed) for i in batch], sizes, boundary),
                "application/dicom+json")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return Attempt(tuple(outcomes), f"the DICOMweb server {target} cannot be reached "
                           f"or dropped the request ({type(exc).__name__}: {str(exc)[:100]})")
        if status in (404, 405) and n == 0:
            return _orthanc_rest(target, http_, instances, note, outcomes)
        if status in (401, 403):
            return Attempt(tuple(outcomes), f"the DICOMweb server {target} refused our "
                           f"credentials (HTTP {status})",
                           transient=False)
        note(stow.parse_response(status, ctype, raw, [(i.index, i.sop_instance)
                                                      for i in batch]))
        if status >= 500:
            return Attempt(tuple(outcomes), f"the DICOMweb server {target} failed "
                           f"(HTTP {status})")
    return Attempt(tuple(outcomes))


def _orthanc_rest(target: WebTarget, http_: _Http, instances: Sequence[Instance],
                  note: Callable[[list[Outcome]], None], outcomes: list[Outcome]) -> Attempt:
    urls = target.rest_candidates()
    for url in urls:
        for k, i in enumerate(instances):
            try:
                status, _ctype, raw = http_.post(
                    url, "application/dicom", i.size,
                    _single(i), "application/json")
            except (OSError, http.client.HTTPException, ValueError) as exc:
                return Attempt(tuple(outcomes), f"the Orthanc server behind {target} cannot "
                               f"be reached ({type(exc).__name__}: {str(exc)[:100]})")
            if k == 0 and status in (404, 405):
                break  # no REST API here: the next candidate
            note([stow.parse_orthanc(status, raw, i.index)])
            if status >= 500 or status in (401, 403):
                return Attempt(tuple(outcomes), f"the Orthanc server behind {target} "
                               f"failed (HTTP {status})", transient=status >= 500)
        else:
            return Attempt(tuple(outcomes))
    return Attempt(tuple(outcomes), f"{target} has neither STOW-RS (POST /studies) nor "
                   "Orthanc's REST API (POST /instances): 404", transient=False)


def _single(i: Instance) -> Iterator[bytes]:
    sent = 0
    with open(i.placed, "rb") as f:
        while block := f.read(1 << 20):
            sent += len(block)
            yield block
    if sent != i.size:
        raise ValueError("a file changed size while it was being sent")
