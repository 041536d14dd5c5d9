"""``sealdrop witness serve``: the C2SP tlog-witness HTTP API over aiohttp.

One route, ``POST /add-checkpoint``. Each request is judged (``verdict``),
and only an accepted one moves the stored head: the new head is written and
fsynced (``state.save_state``) before the cosignature is made and returned,
all under one asyncio lock, so two requests can never both pass the old-size
check and roll each other back (the race C2SP tlog-witness describes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from aiohttp import web

from sealdrop.crypto.errors import LogFormatError
from sealdrop.crypto.tlog.cosignature import CosignatureSigner
from sealdrop.crypto.tlog.note import NoteVerifier
from sealdrop.crypto.witness import (
    MAX_BODY_BYTES,
    PATH,
    SIZE_CONTENT_TYPE,
    format_size,
    parse_add_checkpoint,
)

from .state import Head, load_state, save_state
from .verdict import Accept, judge

LOGGER_NAME = "sealdrop.witness"
_log = logging.getLogger(LOGGER_NAME)


class Witness:
    """The cosigning state machine of one process: heads in memory, mirrored on disk."""

    def __init__(self, signer: CosignatureSigner, logs: Mapping[str, Sequence[NoteVerifier]],
                 state_path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.signer = signer
        self.logs = logs
        self.state_path = Path(state_path)
        self.heads: dict[str, Head] = load_state(self.state_path)
        self._clock = clock
        self._lock = asyncio.Lock()

    async def add_checkpoint(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            req = parse_add_checkpoint(body)
        except LogFormatError as exc:
            return _text(400, f"malformed add-checkpoint request: {exc}")
        async with self._lock:
            verdict = judge(req, self.logs, self.heads)
            if not isinstance(verdict, Accept):
                if verdict.evidence:
                    # The log signed a tree that contradicts the one cosigned: keep the
                    # signed note in the log, it is the proof an auditor needs.
                    _log.error("%s; the log's signed checkpoint follows:\n%s",
                               verdict.reason, req.note)
                else:
                    _log.warning("refused (%d): %s", verdict.status, verdict.reason)
                if verdict.size is not None:
                    return web.Response(status=verdict.status, body=format_size(verdict.size),
                                        content_type=SIZE_CONTENT_TYPE)
                return _text(verdict.status, verdict.reason)
            cp = verdict.checkpoint
            if self.heads.get(cp.origin) != verdict.head:
                heads = {**self.heads, cp.origin: verdict.head}
                save_state(self.state_path, heads)  # durable BEFORE the cosignature leaves
                self.heads = heads
            line = self.signer.cosign(verdict.text, int(self._clock()))
        _log.info("cosigned %s at size %d", cp.origin, cp.size)
        return _text(200, line, end="")


def _text(status: int, text: str, *, end: str = "\n") -> web.Response:
    return web.Response(status=status, text=text + end, content_type="text/plain",
                        charset="utf-8")


def make_app(witness: Witness) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post(PATH, witness.add_checkpoint)
    return app


async def serve(witness: Witness, host: str, port: int,
                ready: Callable[[str], None]) -> None:
    """Serve until cancelled (SIGINT/SIGTERM in the CLI); ``ready`` gets the URL."""
    runner = web.AppRunner(make_app(witness), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
        bound = runner.addresses[0][1] if runner.addresses else port  # port 0: the one given
        ready(f"http://{host}:{bound}")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
