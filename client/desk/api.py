"""The desk's JSON API: what the page shows and does, through the same library
calls as the CLI (and so the same checks: pinned keys, the log, signatures).

Every handler here runs behind ``guard`` (Host, cookie, Origin, CSRF). Errors
the user can act on come back as ``{"error", "hint", "kind"}`` with 400 (409
for "busy"), never a traceback. What the page shows of a sender's text (notes,
labels, file names) is data in JSON; the page puts it into the document as
text, never as markup (static/desk.js).
"""

from __future__ import annotations

import base64
import json
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from ..dicom.deidentify import DeidOptions
from ..dicom.display import summary_lines
from ..dicom.summary import summarise
from ..durations import parse_expiry
from ..errors import ClientError, ContactError
from ..profile.config import load_config
from ..profile.desksettings import load_settings, update_settings
from ..profile.refused import RefusedStore
from ..profile.session import Session, session_for, unlock
from ..receive.cards import card_json
from ..receive.inbox import list_inbox
from ..receive.layout import Layout
from ..send.scan import scan
from ..tlog.pin import add_from_relay
from . import outgoing, preview
from .jobs import Job, error_json
from .state import Desk, Locked

routes = web.RouteTableDef()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DESK: web.AppKey[Desk] = web.AppKey("desk", Desk)
MAX_JSON = 64 * 1024


def _desk(request: web.Request) -> Desk:
    return request.app[DESK]


def ok(obj: Any, status: int = 200) -> web.Response:
    return web.json_response(obj, status=status)


def refuse(exc: BaseException, status: int = 400) -> web.Response:
    return web.json_response({"error": error_json(exc)}, status=status)


async def body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise ClientError("the desk takes JSON here")
    # read(n) returns what has arrived so far: a body in several segments is
    # read to its end (or just past the cap).
    raw = bytearray()
    while chunk := await request.content.read(MAX_JSON + 1 - len(raw)):
        raw += chunk
    if len(raw) > MAX_JSON:
        raise ClientError("the request is too large")
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        raise ClientError("the request is not JSON") from exc
    if not isinstance(obj, dict):
        raise ClientError("the request is not a JSON object")
    return obj


@web.middleware
async def client_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Locked as exc:
        return refuse(exc, 423)
    except ClientError as exc:
        return refuse(exc)
    except web.HTTPException:
        raise
    except Exception as exc:  # noqa: BLE001 - the page gets a sentence, the log the trace
        traceback.print_exc(file=sys.stderr)
        return refuse(exc, 500)


# -- the session -------------------------------------------------------------------


def _session_json(desk: Desk) -> dict[str, Any]:
    config = load_config(desk.home)
    out: dict[str, Any] = {"unlocked": desk.session is not None, "handle": config.handle,
                           "relay": config.relay, "csrf": desk.keys.csrf}
    if desk.identity is not None:
        from sealdrop.crypto import safety

        out["safety_number"] = safety.safety_number(desk.identity.bundle.signing_key)
    return out


@routes.get("/api/session")
async def get_session(request: web.Request) -> web.Response:
    return ok(_session_json(_desk(request)))


@routes.post("/api/unlock")
async def post_unlock(request: web.Request) -> web.Response:
    desk = _desk(request)
    passphrase = str((await body(request)).get("passphrase", ""))
    if not passphrase:
        raise ClientError("enter the passphrase of this computer's sealdrop keys")
    if desk.session is None:
        def open_it() -> None:
            identity = unlock(desk.home, load_config(desk.home), passphrase.encode("utf-8"))
            session = session_for(desk.home, identity)  # follows the log: may refuse
            desk.identity, desk.session = identity, session
            keep = {Path(f.path).relative_to(outgoing.outgoing_root(desk.home)).parts[0]
                    for r in session.outbox.records() for f in r.files
                    if Path(f.path).is_relative_to(outgoing.outgoing_root(desk.home))}
            outgoing.sweep(desk.home, keep)

        await desk.blocking(open_it)
        if load_settings(desk.home).watch:
            from .watching import start_watch

            start_watch(desk)
    return ok(_session_json(desk))


# -- contacts ----------------------------------------------------------------------


def _contact_json(c: Any) -> dict[str, Any]:
    return {"handle": c.handle, "state": c.state.value, "safety_number": c.safety_number,
            "added": c.added, "verified_at": c.verified_at}


@routes.get("/api/contacts")
async def get_contacts(request: web.Request) -> web.Response:
    rows = await _desk(request).run(lambda s: [_contact_json(c) for c in s.contacts.list()])
    return ok({"contacts": rows})


@routes.post("/api/contacts")
async def add_contact(request: web.Request) -> web.Response:
    handle = str((await body(request)).get("handle", "")).strip()

    # The CLI's own rule (tlog.pin): the bundle the log holds, or refused.
    return ok(_contact_json(await _desk(request).run(
        lambda s: add_from_relay(s, handle, None))))


@routes.post("/api/contacts/{handle}/verify")
async def verify_contact(request: web.Request) -> web.Response:
    handle = request.match_info["handle"]
    number = str((await body(request)).get("safety_number", ""))
    contact = await _desk(request).run(
        lambda s: s.contacts.verify(handle, number, now=int(time.time())))
    return ok(_contact_json(contact))


@routes.get("/api/contacts/{handle}/qr.svg")
async def contact_qr(request: web.Request) -> web.Response:
    from .qr import safety_qr_svg

    handle = request.match_info["handle"]

    def svg(s: Session) -> bytes:
        c = s.contacts.get(handle)
        if c is None:
            raise ContactError(f"{handle!r} is not a contact")
        return safety_qr_svg(c.handle, c.safety_number)

    return web.Response(body=await _desk(request).run(svg), content_type="image/svg+xml")


@routes.get("/api/me/qr.svg")
async def own_qr(request: web.Request) -> web.Response:
    from sealdrop.crypto import safety

    from .qr import safety_qr_svg

    identity, _ = _desk(request).unlocked()
    return web.Response(body=safety_qr_svg(identity.handle, safety.safety_number(
        identity.bundle.signing_key)), content_type="image/svg+xml")


# -- inbox and receiving -------------------------------------------------------------


@routes.get("/api/inbox")
async def get_inbox(request: web.Request) -> web.Response:
    desk = _desk(request)

    def read(s: Session) -> dict[str, Any]:
        inbox = list_inbox(s)
        refused = RefusedStore(s.home).load()
        done = s.receipts.load()
        items = []
        for row in inbox.items:
            item = dict(row)
            item["card"] = card_json(inbox.cards[row["id"]], phi=True)
            if row["id"] in refused:
                item["refused"] = refused[row["id"]].get("error")
            item["preview"] = row["id"] in done and bool(done[row["id"]].get("folder"))
            items.append(item)
        return {"items": items, "truncated": inbox.truncated}

    out = await desk.run(read)
    running = {j.subject: j.id for j in desk.jobs.all() if j.kind == "receive"
               and j.state == "running"}
    for item in out["items"]:
        item["job"] = running.get(item["id"])
    return ok(out)


def _receive_work(desk: Desk, relay_id: str) -> Any:
    def work(job: Job) -> dict[str, Any]:
        settings = load_settings(desk.home)
        if settings.receive_folder is None:
            raise ClientError("no receive folder is set",
                              hint="choose one in Settings first")
        from ..receive.transfer import receive_one

        with desk.job_session() as s:
            try:
                result = receive_one(s, relay_id, Path(settings.receive_folder),
                                     layout=Layout.parse(settings.layout),
                                     on_progress=job.at)
            except ClientError as exc:
                if relay_id in RefusedStore(s.home).load():  # refused for good, not a hiccup
                    raise Refused(str(exc), hint=exc.hint) from exc
                raise
        out: dict[str, Any] = {"folder": str(result.folder), "sender": result.sender,
                               "sender_verified": result.sender_verified,
                               "files": len(result.files), "forwards": []}
        forwarder = pacs_forwarder(desk)
        if forwarder is not None:  # as `receive --to-pacs`: retried later if the PACS fails
            out["forwards"] = [r.to_json() for r in forwarder.after_receive(result)]
        return out
    return work


class Refused(ClientError):
    """A transfer this profile refused (it did not verify): the page says "Refused"."""


def pacs_forwarder(desk: Desk) -> Any:
    """The Settings' PACS as a ``Forwarder``, or None."""
    pacs = load_settings(desk.home).pacs
    if not pacs:
        return None
    from ..cli.forward import make_forwarder

    return make_forwarder(desk.home, pacs, "SEALDROP", None)


@routes.post("/api/inbox/{id}/receive")
async def receive(request: web.Request) -> web.Response:
    desk = _desk(request)
    desk.unlocked()
    relay_id = request.match_info["id"]
    running = desk.jobs.running("receive", relay_id)
    if running is not None:
        return ok({"job": running.to_json()})
    return ok({"job": desk.jobs.start("receive", relay_id,
                                      _receive_work(desk, relay_id)).to_json()})


@routes.get("/api/received/{id}/preview")
async def received_preview(request: web.Request) -> web.Response:
    desk = _desk(request)
    relay_id = request.match_info["id"]
    folder = await desk.run(lambda s: preview.received_folder(s, relay_id))
    shown = await desk.blocking(lambda: preview.describe(folder))
    for series in shown["series"]:
        png = series.pop("png")
        series["image"] = None if png is None else (
            "data:image/png;base64," + base64.b64encode(png).decode("ascii"))
    return ok(shown)


@routes.get("/api/received/{id}/mesh")
async def received_mesh(request: web.Request) -> web.Response:
    desk = _desk(request)
    relay_id = request.match_info["id"]
    name = request.query.get("path", "")
    folder = await desk.run(lambda s: preview.received_folder(s, relay_id))
    payload = await desk.blocking(lambda: preview.mesh_payload(folder, name))
    return web.Response(body=payload, content_type="application/octet-stream")


# -- sending -------------------------------------------------------------------------


@routes.post("/api/send/files")
async def drop_files(request: web.Request) -> web.Response:
    desk = _desk(request)
    desk.unlocked()
    stage = await desk.blocking(lambda: outgoing.new_stage(desk.home))
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.filename is None:
                continue
            target = outgoing.open_target(stage, part.filename)
            with open(target, "xb") as f:  # noqa: ASYNC230 - local disk, small writes
                target.chmod(0o600)
                while chunk := await part.read_chunk(1 << 20):
                    f.write(chunk)
        if not any(stage.iterdir()):
            raise ClientError("no files arrived: drop files or a folder")
        summary = await desk.blocking(lambda: _summary(stage))
    except BaseException:
        outgoing.discard(stage)
        raise
    return ok({"stage": stage.name, **summary})


def _summary(stage: Path) -> dict[str, Any]:
    files = scan(outgoing.tops(stage))
    dicom = summarise((f.arcname, f.dicom) for f in files)
    return {"files": [{"path": f.arcname, "size": f.size} for f in files],
            "size": sum(f.size for f in files),
            "dicom_files": sum(1 for f in files if f.dicom is not None),
            "dicom": summary_lines(dicom) if any(f.dicom is not None for f in files) else []}


@routes.delete("/api/send/files/{stage}")
async def discard_files(request: web.Request) -> web.Response:
    desk = _desk(request)
    stage = outgoing.stage_path(desk.home, request.match_info["stage"])
    await desk.blocking(lambda: outgoing.discard(stage))
    return ok({})


@routes.post("/api/send")
async def start_send(request: web.Request) -> web.Response:
    desk = _desk(request)
    desk.unlocked()
    form = await body(request)
    stage = outgoing.stage_path(desk.home, str(form.get("stage", "")))
    to = form.get("to")
    if not isinstance(to, list) or not to or not all(isinstance(h, str) for h in to):
        raise ClientError("pick at least one contact to send to")
    note = str(form.get("note", ""))
    label = str(form.get("label", ""))
    expires = str(form.get("expires", "") or "")
    expires_in = parse_expiry(expires) if expires else None
    deid = DeidOptions() if form.get("deidentify") is True else None
    running = desk.jobs.running("send", stage.name)
    if running is not None:
        return ok({"job": running.to_json()})

    def work(job: Job) -> dict[str, Any]:
        from ..send.flow import send

        with desk.job_session() as s:
            result = send(s, outgoing.tops(stage), to, note=note, expires_in=expires_in,
                          label=label, deidentify=deid, again=True,
                          on_start=lambda size, _resumed: job.begin(size),
                          on_progress=job.progress, on_retry=job.waiting,
                          warn=lambda _m: None)
        outgoing.discard(stage)
        return {"transfer_id": result.relay_id, "size": result.size,
                "recipients": list(result.recipients), "resumed": result.resumed,
                "deidentified": result.deidentified}

    return ok({"job": desk.jobs.start("send", stage.name, work).to_json()})


@routes.get("/api/jobs")
async def get_jobs(request: web.Request) -> web.Response:
    return ok({"jobs": [j.to_json() for j in _desk(request).jobs.all()]})


# -- status, audit, settings -----------------------------------------------------------


@routes.get("/api/sent")
async def get_sent(request: web.Request) -> web.Response:
    from ..send.status import transfer_status

    return ok({"transfers": await _desk(request).run(lambda s: transfer_status(s, None))})


@routes.post("/api/sent/{id}/retract")
async def retract_sent(request: web.Request) -> web.Response:
    from ..send.retract import retract

    relay_id = request.match_info["id"]
    done = await _desk(request).run(lambda s: retract(s, relay_id))
    return ok({"retracted": relay_id, "downloaded_by": list(getattr(done, "downloaded_by", []))})


@routes.get("/api/audit")
async def get_audit(request: web.Request) -> web.Response:
    from ..audit.gather import current_checkpoint, gather, read_log
    from ..audit.render_json import to_json

    def audit(s: Session) -> dict[str, Any]:
        note, checkpoint, _ = current_checkpoint(s)
        report = gather(s, read_log(s.relay.log_tile, note, checkpoint))
        return {"ok": report.ok, "report": to_json(report)}

    return ok(await _desk(request).run(audit))


@routes.get("/api/settings")
async def get_settings(request: web.Request) -> web.Response:
    desk = _desk(request)
    settings = await desk.blocking(lambda: load_settings(desk.home))
    return ok({**settings.to_json(), "watching": desk.watch_stop is not None,
               "watch_events": desk.watch_events[-20:]})


@routes.post("/api/settings")
async def post_settings(request: web.Request) -> web.Response:
    desk = _desk(request)
    desk.unlocked()
    form = await body(request)
    changes = {k: form[k] for k in ("receive_folder", "layout", "watch", "pacs") if k in form}
    settings = await desk.blocking(lambda: update_settings(desk.home, **changes))
    from .watching import start_watch, stop_watch

    if settings.watch:
        start_watch(desk)
    else:
        stop_watch(desk)
    return ok({**settings.to_json(), "watching": desk.watch_stop is not None,
               "watch_events": desk.watch_events[-20:]})


__all__ = ["DESK", "client_errors", "routes", "Locked"]
