"""Asking the configured witnesses to cosign a checkpoint (C2SP tlog-witness).

``collect_cosignatures`` posts the signed checkpoint with a consistency proof
from the size each witness last cosigned, and returns the cosignature lines
that verify with that witness's vkey over this exact checkpoint: nothing a
witness (or whatever answers at its URL) sends is served unchecked.

A witness's size is learnt from its 409 (``text/x.tlog.size``) and the request
retried once; ``sizes`` (one dict per relay process) remembers it, so that the
next checkpoint needs one request per witness, not two.

Witnesses are a second opinion, never a dependency: every failure (timeout,
refusal, a witness that cosigned a larger tree than this process signed) is
one warning an operator can act on, and the checkpoint is served without
that witness's cosignature.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence

import aiohttp

from sealdrop.crypto.errors import LogFormatError, NoteError, SealdropCryptoError
from sealdrop.crypto.tlog.checkpoint import Checkpoint
from sealdrop.crypto.tlog.cosignature import CosignatureVerifier
from sealdrop.crypto.tlog.note import open_note
from sealdrop.crypto.witness import (
    PATH,
    SIZE_CONTENT_TYPE,
    format_add_checkpoint,
    parse_size,
    split_signature_lines,
)

from .config import WitnessConfig
from .logs import LOGGER_NAME

_log = logging.getLogger(LOGGER_NAME)
ProofFor = Callable[[int], Awaitable[list[bytes]]]


class _Refused(Exception):
    """One witness did not cosign; the message is the operator's sentence."""


async def collect_cosignatures(
    witnesses: Sequence[WitnessConfig],
    note: str,
    checkpoint: Checkpoint,
    proof_for: ProofFor,
    timeout: float,
    *,
    sizes: MutableMapping[str, int] | None = None,
    session: aiohttp.ClientSession | None = None,
) -> list[str]:
    """The valid cosignature lines for ``note`` (the relay-signed ``checkpoint``).

    ``proof_for(old)`` is the consistency proof from size ``old`` to
    ``checkpoint.size`` in this relay's tree. Never raises for a witness's fault.
    """
    answers = await _each(witnesses, note, checkpoint, proof_for, timeout, sizes, session)
    return [line for lines in answers for line in lines]


async def _each(witnesses: Sequence[WitnessConfig], note: str, checkpoint: Checkpoint,
                proof_for: ProofFor, timeout: float, sizes: MutableMapping[str, int] | None,
                session: aiohttp.ClientSession | None) -> list[list[str]]:
    """Each witness's valid cosignature lines, in the order of ``witnesses``."""
    if not witnesses:
        return []
    sizes = {} if sizes is None else sizes
    own = session is None
    http = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
    try:
        return list(await asyncio.gather(*(
            _one(http, w, note, checkpoint, proof_for, sizes, timeout) for w in witnesses)))
    finally:
        if own:
            await http.close()


async def _one(http: aiohttp.ClientSession, witness: WitnessConfig, note: str,
               checkpoint: Checkpoint, proof_for: ProofFor,
               sizes: MutableMapping[str, int], timeout: float) -> list[str]:
    where = f"witness {witness.vkey.split('+', 1)[0]} at {witness.url}"
    try:
        async with asyncio.timeout(timeout):
            old = sizes.get(witness.vkey, 0)
            for attempt in (1, 2):
                if old > checkpoint.size:
                    raise _Refused(
                        f"{where} has cosigned size {old}, larger than this checkpoint's "
                        f"{checkpoint.size}; another relay process is ahead, nothing to do")
                if old == checkpoint.size or old == 0:
                    proof: list[bytes] = []
                else:
                    proof = await proof_for(old)
                body = format_add_checkpoint(old, proof, note)
                async with http.post(witness.url + PATH, data=body) as resp:
                    data = await resp.content.read(64 * 1024)
                    if resp.status == 200:
                        lines = _verified(witness, note, checkpoint, data, where)
                        sizes[witness.vkey] = checkpoint.size
                        return lines
                    if resp.status == 409 and resp.content_type == SIZE_CONTENT_TYPE:
                        known = parse_size(data)
                        if known == old or attempt == 2:
                            raise _Refused(
                                f"{where} refused size {checkpoint.size}: it cosigned another "
                                f"tree of size {known} (a fork of this log, or its state is "
                                "from another log with the same name); see its log")
                        old = known
                        sizes[witness.vkey] = known
                        continue
                    reason = data[:200].decode("utf-8", "replace").strip()
                    raise _Refused(f"{where} refused size {checkpoint.size} with status "
                                   f"{resp.status}: {reason}")
            raise _Refused(f"{where} kept asking for another old size")  # unreachable
    except _Refused as exc:
        _log.warning("%s; the checkpoint is served without its cosignature", exc)
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        _log.warning("%s did not answer (%s); the checkpoint is served without its "
                     "cosignature; is the witness running and reachable?",
                     where, type(exc).__name__)
    except SealdropCryptoError as exc:
        _log.warning("%s answered something that is not a valid cosignature of this "
                     "checkpoint (%s); it is ignored", where, exc)
    return []


def _verified(witness: WitnessConfig, note: str, checkpoint: Checkpoint, data: bytes,
              where: str) -> list[str]:
    """Only the lines that are this witness's valid cosignatures of this checkpoint."""
    verifier = CosignatureVerifier.from_vkey(witness.vkey)
    good = []
    for line in split_signature_lines(data):
        try:
            # The spec's way: the line appended to the note, opened with only this key.
            open_note(note + line, [verifier])
        except (NoteError, LogFormatError):
            continue  # another key's line, or a bad one: never served
        good.append(line)
    if not good:
        raise NoteError(f"no line verifies with the configured vkey of the {where}")
    return good


class CosignedCheckpoints:
    """The relay's checkpoint note with its witnesses' cosignatures, per tree size.

    One per relay process (on the ``Relay`` state). The checkpoint handler
    passes the note it signed; the cosignatures are collected once per size,
    by one request at a time (others wait for it), and served from memory
    after. A note that lacks some witness's cosignature is asked for again
    after ``retry_seconds`` at most, so a witness that was down catches up
    without every checkpoint request waiting on it.
    """

    def __init__(self, witnesses: Sequence[WitnessConfig], *, timeout: float = 5.0,
                 retry_seconds: float = 60.0,
                 clock: Callable[[], float] | None = None) -> None:
        import time

        self.witnesses = list(witnesses)
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self._clock = clock or time.monotonic
        self._sizes: dict[str, int] = {}
        self._lock = asyncio.Lock()
        # (size, the relay's signed note) -> (note with cosignatures, when to ask again)
        self._cached: tuple[tuple[int, str], str, float] | None = None

    async def note_for(self, note: str, checkpoint: Checkpoint, proof_for: ProofFor) -> str:
        if not self.witnesses:
            return note
        key = (checkpoint.size, note)
        async with self._lock:
            now = self._clock()
            if self._cached is not None and self._cached[0] == key and now < self._cached[2]:
                return self._cached[1]
            answers = await _each(self.witnesses, note, checkpoint, proof_for, self.timeout,
                                  self._sizes, None)
            full = note + "".join(line for lines in answers for line in lines)
            every = all(answers)  # each witness cosigned: nothing to ask again at this size
            self._cached = (key, full, float("inf") if every else now + self.retry_seconds)
            return full
