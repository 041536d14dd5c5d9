"""The DICOM side of the listener: a pynetdicom Storage and Verification SCP.

What it accepts (docs/dicom.md, "Conformance"): every storage SOP class
pynetdicom knows (``AllStoragePresentationContexts``) in every transfer syntax
pynetdicom names except the JPIP ones (their pixel data lives on a server, not
in the data set, so the lab could never display them), plus Verification
(C-ECHO). The data set is never decoded: pynetdicom's
``STORE_RECV_CHUNKED_DATASET`` streams each C-STORE's fragments into a Part 10
file (preamble, file meta naming the accepted transfer syntax, the data set as
received) in ``<spool>/incoming``, so even a 500 MB multi-frame is never whole in
memory; the handler reads its header, then ``inbound.store`` fsyncs it and
renames it into its study. Only then is 0x0000 answered.

Statuses: 0x0000 stored; 0xA700 (out of resources) when the disk is below the
reserve or any write or fsync fails; 0xC000 (cannot understand) for a data set
without a StudyInstanceUID or SOPInstanceUID. An association calling an AE
title with no route is rejected (A-ASSOCIATE-RJ, permanent, called AE title not
recognised).
"""

from __future__ import annotations

import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from ..errors import ClientError
from .dispatch import Activity
from .inbound import InboundSpool, read_ids
from .routes import Route, RouteTable

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000

# JPIP: pixel data referenced by URL, not carried. Everything else is stored as sent.
_JPIP = {"1.2.840.10008.1.2.4.94", "1.2.840.10008.1.2.4.95",
         "1.2.840.10008.1.2.4.204", "1.2.840.10008.1.2.4.205"}
# pynetdicom accepts, in each proposed context, the first of OUR syntaxes that
# the peer proposed. A peer proposes its file's compressed syntax together with
# the uncompressed ones it could convert to, so compressed syntaxes come first
# (the data set arrives as the scanner holds it, nothing is decompressed), then
# the uncompressed ones in the order that spares the sender a conversion most often.
_UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2",
                 "1.2.840.10008.1.2")
TRANSFER_SYNTAXES: tuple[str, ...] = (
    *(t for t in ALL_TRANSFER_SYNTAXES if t not in _JPIP and t not in _UNCOMPRESSED),
    *_UNCOMPRESSED)

MAX_ASSOCIATIONS = 8  # scanners send one or two at a time; more is a misconfigured peer
MAX_PDU = 1024 * 1024  # what we accept per PDU (memory per association stays ~1 MiB)
NETWORK_TIMEOUT = 120.0  # a silent peer is dropped after this long
DIMSE_TIMEOUT = 120.0
ACSE_TIMEOUT = 30.0


class ScpError(ClientError):
    """The listener cannot start (port in use, bad TLS files)."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path | None = None  # given: clients must present a certificate it signed


def server_tls(files: TlsFiles) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2 or newer); with a CA, client certificates are required."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(files.cert, files.key)
        if files.ca is not None:
            ctx.load_verify_locations(cafile=files.ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ScpError(f"cannot load the TLS certificate, key or CA file: {exc}") from exc
    return ctx


@dataclass(slots=True)
class _Assoc:
    route: Route
    calling: str
    peer: str
    stored: int = 0
    refused: int = 0


class StorageScp:
    """Routes, spool and activity wired to pynetdicom's events."""

    def __init__(self, table: RouteTable, spool: InboundSpool, activity: Activity, *,
                 aet: str, min_free: int, log: Callable[[str], None]) -> None:
        self.table = table
        self.spool = spool
        self.activity = activity
        self.aet = aet
        self.min_free = min_free
        self.log = log
        self._assocs: dict[int, _Assoc] = {}
        self._lock = threading.Lock()
        self._server: ThreadedAssociationServer | None = None

    def make_ae(self) -> AE:
        ae = AE(ae_title=self.aet)
        for cx in AllStoragePresentationContexts:
            if cx.abstract_syntax is not None:
                ae.add_supported_context(cx.abstract_syntax, list(TRANSFER_SYNTAXES))
        ae.add_supported_context(Verification)
        ae.maximum_associations = MAX_ASSOCIATIONS
        ae.maximum_pdu_size = MAX_PDU
        ae.network_timeout = NETWORK_TIMEOUT
        ae.dimse_timeout = DIMSE_TIMEOUT
        ae.acse_timeout = ACSE_TIMEOUT
        return ae

    def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        # The received data set goes to a file, never to memory (pynetdicom
        # >= 2.0), and the file goes to the spool's filesystem so that moving it
        # into its study is a rename. Process-wide settings: the listener is
        # its own process.
        _config.STORE_RECV_CHUNKED_DATASET = True
        tempfile.tempdir = str(self.spool.incoming)
        handlers: list[Any] = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_ESTABLISHED, self._on_established),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_CONN_CLOSE, self._on_close),
        ]
        try:
            self._server = self.make_ae().start_server(
                (host, port), block=False, ssl_context=tls, evt_handlers=handlers)
        except OSError as exc:
            raise ScpError(f"cannot listen on {host}:{port}: {exc.strerror}",
                           hint="another program (or listener) uses that port; "
                           "choose another with --port") from exc

    @property
    def port(self) -> int:
        if self._server is None:
            raise ScpError("the listener is not started")
        return int(self._server.server_address[1])

    def stop_accepting(self) -> None:
        """Close the listening socket; open associations carry on."""
        if self._server is not None:
            self._server.shutdown()

    def open_associations(self) -> int:
        with self._lock:
            return len(self._assocs)

    def abort_all(self) -> None:
        if self._server is not None:
            for assoc in list(self._server.active_associations):
                assoc.abort()

    # -- events (pynetdicom's threads) ------------------------------------------------

    def _on_requested(self, event: Any) -> None:
        rq = event.assoc.requestor.primitive
        called, calling = str(rq.called_ae_title).strip(), str(rq.calling_ae_title).strip()
        route = self.table.for_called(called)
        peer = f"{event.assoc.requestor.address}:{event.assoc.requestor.port}"
        if route is None:
            self.log(f"refused association from {calling!r} at {peer} to {called!r}: "
                     "called AE title not recognised")
            event.assoc.acse.send_reject(0x01, 0x01, 0x07)
            # As pynetdicom's own rejections do: kill() waits for the DUL to
            # send the A-ASSOCIATE-RJ before the socket is closed.
            event.assoc.kill()
            return
        with self._lock:
            self._assocs[id(event.assoc)] = _Assoc(route, calling, peer)

    def _on_established(self, event: Any) -> None:
        self.activity.opened(id(event.assoc))

    def _on_echo(self, event: Any) -> int:
        return SUCCESS

    def _on_store(self, event: Any) -> int:
        with self._lock:
            info = self._assocs.get(id(event.assoc))
        if info is None:  # cannot happen: a store follows an accepted request
            return OUT_OF_RESOURCES
        status = self._store(event, info)
        with self._lock:
            if status == SUCCESS:
                info.stored += 1
            else:
                info.refused += 1
        return status

    def _store(self, event: Any, info: _Assoc) -> int:
        received = Path(event.dataset_path)
        ids = read_ids(received)
        if ids is None:
            return CANNOT_UNDERSTAND
        assoc = id(event.assoc)
        try:
            if self.spool.free_bytes() < self.min_free:
                return OUT_OF_RESOURCES
            study = self.spool.collecting(
                info.route.aet, info.route.to, ids.study,
                claim=lambda name: self.activity.stored(assoc, name))
            self.spool.store(study, received, ids)
        except (OSError, ClientError) as exc:
            self.log(f"could not store an instance from {info.calling!r}: {exc}")
            return OUT_OF_RESOURCES
        return SUCCESS

    def _on_close(self, event: Any) -> None:
        with self._lock:
            info = self._assocs.pop(id(event.assoc), None)
        self.activity.closed(id(event.assoc))
        if info is not None:
            self.log(f"association from {info.calling!r} at {info.peer} to "
                     f"{info.route.aet!r} closed: {info.stored} stored, {info.refused} refused")
