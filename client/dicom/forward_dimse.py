"""C-STORE SCU: the instances of a verified transfer into a PACS (pynetdicom).

Each instance goes in its own SOP class and transfer syntax, compressed ones
included (JPEG, JPEG 2000, JPEG-LS, RLE, deflate): pynetdicom sends it as it is
encoded in the file, streamed from disk in PDU-sized pieces
(``STORE_SEND_CHUNKED_DATASET``), never decoded. Only an instance in a native
syntax (Explicit or Implicit VR Little Endian, or deflated) also offers the
other Little Endian syntaxes as a fallback: that one conversion re-encodes the
data set's elements, never its pixels. Big Endian and compressed instances are
offered in their own syntax only; a PACS that accepts none of them for an
instance reports it failed, by name.

At most 128 presentation contexts fit one association (PS3.8): the instances
are grouped, in order, into as many associations as their distinct (SOP
class, syntaxes) pairs need.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ClientError
from .instances import Instance
from .outcome import STORED_DIMSE, Attempt, Outcome

DEFAULT_CALLING_AET = "SEALDROP"
MAX_CONTEXTS = 128
_AET = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")  # PS3.5 AE VR: no backslash, no control
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_IMPLICIT_LE = "1.2.840.10008.1.2"
_DEFLATED = "1.2.840.10008.1.2.1.99"
_NATIVE = frozenset({_EXPLICIT_LE, _IMPLICIT_LE, _DEFLATED})


def check_aet(text: str, what: str) -> str:
    if not _AET.fullmatch(text) or not text.strip():
        raise ClientError(f"{what} {text[:40]!r} is not an AE title (1 to 16 characters, "
                          "no backslash)")
    return text


@dataclass(frozen=True, slots=True)
class PacsTarget:
    """``AET@HOST:PORT``: the PACS's (called) AE title, host and DICOM port."""

    aet: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> PacsTarget:
        aet, at, rest = text.rpartition("@")
        host, colon, port = rest.rpartition(":")
        if not at or not colon or not host or not port.isdigit() \
                or not 0 < int(port) < 65536:
            raise ClientError(f"{text[:80]!r} is not a PACS address",
                              hint="write AET@HOST:PORT, e.g. LAB_PACS@pacs.lab.local:104")
        return cls(check_aet(aet, "the PACS's AE title"), host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"{self.aet}@{self.host}:{self.port}"


def syntaxes_for(transfer_syntax: str) -> tuple[str, ...]:
    """What to propose for an instance encoded in ``transfer_syntax``: its own
    first, the Little Endian fallbacks only where no pixel is decoded."""
    if transfer_syntax in _NATIVE:
        rest = [ts for ts in (_EXPLICIT_LE, _IMPLICIT_LE) if ts != transfer_syntax]
        return (transfer_syntax, *rest)
    return (transfer_syntax,)


def _key(i: Instance) -> tuple[str, tuple[str, ...]]:
    return i.sop_class, syntaxes_for(i.transfer_syntax)


def group(instances: Sequence[Instance], limit: int = MAX_CONTEXTS) -> list[list[Instance]]:
    """The instances in order, cut into groups whose distinct contexts fit ``limit``."""
    groups: list[list[Instance]] = []
    keys: set[tuple[str, tuple[str, ...]]] = set()
    for i in instances:
        k = _key(i)
        if not groups or (k not in keys and len(keys) >= limit):
            groups.append([])
            keys = set()
        keys.add(k)
        groups[-1].append(i)
    return groups


def _status_text(code: int) -> str:
    from pynetdicom.status import code_to_category

    return f"0x{code:04X} ({code_to_category(code).lower()})"


def _refused(target: PacsTarget, assoc: Any) -> Attempt:
    prim = getattr(assoc.acceptor, "primitive", None)
    if prim is None:  # no A-ASSOCIATE answer at all: no connection, or silence
        return Attempt((), f"the PACS {target} cannot be reached (nothing answers on "
                           f"{target.host}:{target.port}, or the connection timed out)")
    if assoc.is_rejected:
        why = str(prim.reason_str).lower()
        return Attempt((), f"the PACS {target} refused the association: {why} "
                           f"({str(prim.result_str).lower()})", prim.result == 0x02)
    return Attempt((), f"the PACS {target} accepted the association but none of the SOP "
                       "classes and transfer syntaxes offered, or aborted it")


def _send(assoc: Any, i: Instance) -> tuple[Any, str]:
    """Send ``i`` on ``assoc``: (status data set, "") or (None, why it was not sent)."""
    accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
    if (i.sop_class, i.transfer_syntax) in accepted and i.meta_matches:
        return assoc.send_c_store(i.placed), ""  # streamed from the file as encoded
    fallback = [ts for ts in syntaxes_for(i.transfer_syntax) if (i.sop_class, ts) in accepted]
    if not fallback:
        from pydicom.uid import UID

        return None, (f"the PACS accepted no transfer syntax offered for it "
                      f"({UID(i.sop_class).name}, {UID(i.transfer_syntax).name})")
    import pydicom

    # A native syntax the PACS does not take: pynetdicom re-encodes the data
    # set's elements into the accepted Little Endian one (pixels are not decoded).
    # Or a file whose meta disagrees with its data set: sent from the data set,
    # in its own syntax (in memory: the one case that is).
    return assoc.send_c_store(pydicom.dcmread(i.placed)), ""


class _DeadLinkWatch:
    """Wakes a C-STORE that waits for an answer on an association whose link is gone.

    When the PACS dies while pynetdicom's link thread is writing a data set, that
    thread ends without telling the waiter, which then sleeps through the whole
    DIMSE timeout (120 s) for an answer nobody can send: a lab's receive hung two
    minutes per dead PACS. The empty item put here is the one pynetdicom itself
    queues when it sees a link close, so the C-STORE returns "no answer" at once.
    """

    def __init__(self, assoc: Any, period: float = 0.5) -> None:
        self._assoc = assoc
        self._period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pacs-link-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            if not self._assoc.dul.is_alive():
                self._assoc.dimse.msg_queue.put((None, None))
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def store(target: PacsTarget, instances: Sequence[Instance], *,
          calling_aet: str = DEFAULT_CALLING_AET, timeout: float = 60.0,
          on_outcome: Callable[[Outcome], None] | None = None) -> Attempt:
    """C-STORE every instance into ``target``; stops at the first association that fails."""
    from pynetdicom import AE, _config
    from pynetdicom.presentation import build_context

    _config.STORE_SEND_CHUNKED_DATASET = True  # stream files, never whole in memory
    outcomes: list[Outcome] = []

    def note(o: Outcome) -> None:
        outcomes.append(o)
        if on_outcome is not None:
            on_outcome(o)

    for batch in group(instances):
        ae = AE(ae_title=calling_aet)
        ae.acse_timeout = ae.network_timeout = timeout
        ae.dimse_timeout = max(timeout, 120.0)
        ae.connection_timeout = timeout
        contexts = [build_context(sop, list(ts)) for sop, ts in dict.fromkeys(map(_key, batch))]
        assoc = ae.associate(target.host, target.port, contexts=contexts, ae_title=target.aet)
        if not assoc.is_established:
            refused = _refused(target, assoc)
            return Attempt(tuple(outcomes), refused.error, refused.transient)
        watch = _DeadLinkWatch(assoc)
        try:
            for i in batch:
                try:
                    status, why = _send(assoc, i)
                except (RuntimeError, ValueError, AttributeError, OSError) as exc:
                    # pynetdicom's way of saying the association died under us.
                    return Attempt(tuple(outcomes), f"the PACS {target}: the association "
                                   f"failed while {i.path} was being stored "
                                   f"({str(exc)[:120]})")
                if status is None and why:
                    note(Outcome(i.index, False, "", why))
                    continue
                code = getattr(status, "Status", None) if status else None
                if code is None:
                    # No answer: the association broke (peer gone, timeout). The
                    # PACS may or may not have kept it: it is sent again later.
                    return Attempt(tuple(outcomes), f"the PACS {target} stopped answering "
                                   f"while {i.path} was being stored (association lost)")
                stored = int(code) in STORED_DIMSE
                note(Outcome(i.index, stored, _status_text(int(code)),
                             "" if stored else str(status.get("ErrorComment", "")
                                                   or "the PACS refused to store it")[:200]))
        finally:
            watch.stop()  # before release: a released link's thread ends too
            if assoc.is_established:
                assoc.release()
    return Attempt(tuple(outcomes))
