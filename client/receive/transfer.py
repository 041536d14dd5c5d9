"""``sealdrop receive`` of one transfer: download, verify, place, then tell the relay.

    relay blob --Range resume--> decrypt + verify into private staging (staging)
                 `--> appended to the spool (ciphertext, the resume journal)
      -> place, all or nothing -> ack "downloaded"
      -> receipt recorded -> ack "verified" -> spool entry removed
      (with the transparency log: the sender's key and the transfer are checked
      in the log last before placing, and both acks carry our signed receipts;
      docs/transparency.md)

One pass over the bytes as they arrive (``download.incoming``): an interrupted
receive keeps the ciphertext that came in the spool and the next run reads it
back, then continues from the relay where it stopped. A transfer whose sender
(as the relay names it) is not a verified contact is downloaded whole first
and read twice, writing nothing before every check passed (``staging``,
``verify_first``): what an unverified sender may send is bounded anyway.

The destination receives files only after every hash and the signature
verified, and they are durable (fsynced, with their folders) before the relay
is told "verified" (``staging``). If the relay cannot be told then, the
receipt says so and ``flush_acks`` tells it on the next receive, watch or
inbox.

A refused transfer is recorded (``refused``: ``watch`` and ``receive --all``
move on past it) and its downloaded ciphertext is deleted, unless the user
asks to keep it (``keep_refused``). Before anything is downloaded, the sender
the relay names must be a verified contact, or ``allow_unverified`` given and
the transfer no larger than ``max_unverified_size``: a stranger cannot make a
lab download, and keep, whatever it likes. (The relay could lie about the
sender; the signed manifest is what decides, after the download.) A transfer
that fails for a local reason (a name taken in DEST, a full disk) keeps its
spool, so the retry does not download again: the message says so, and
``sealdrop dismiss`` (or a refusal for good) deletes it.

Each case lands in its own folder under ``into``, named by the ``layout``
(``receive.layout``: by default ``{date} {sender} {id}``). That folder must be
absent or empty BEFORE anything is downloaded: a layout that can collide (one
without ``{id}``) is refused at once, for a local reason (not recorded as
refused: the same command succeeds once the layout or the folder changes).
The name check at placing (``place.check_free``) stays the last line of
defence. A relay id already received here is not an error: ``receive_one``
raises ``AlreadyReceivedError``, which says when and into which folder
(recorded in ``receipts``), and the CLI exits 0 on it.

Two ids: the relay's (``relay_id``: what the inbox lists, what the user types,
"transfer_id" in the JSON output) and the manifest's (``manifest_id``: signed
by the sender, the replay check's key, "manifest_id" in the JSON output).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import os
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sealdrop.crypto.errors import LogError, SealdropCryptoError
from sealdrop.crypto.manifest import Manifest
from sealdrop.crypto.tlog import entries

from ..dicom.display import phi_free
from ..errors import (
    ClientError,
    ContactError,
    NotAddressedError,
    ReceiveError,
    ReplayError,
    UnknownContactError,
    UnverifiedContactError,
)
from ..profile.filelock import StoreLockedError, lock_path, locked
from ..profile.refused import Reason, RefusedStore
from ..profile.session import Session
from ..relay_api import RelayError, RelayNotFound
from ..tlog.logclient import TransferLog
from ..tlog.receipts import check_own, signed_for
from .cards import read_card
from .download import Incoming, Progress, download, incoming
from .interrupt import interruptible
from .layout import CaseInfo, Layout
from .staging import receive_transfer

# What an unverified sender (accepted with --allow-unverified) may make us download.
DEFAULT_MAX_UNVERIFIED_SIZE = 100 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ReceiveResult:
    relay_id: str
    manifest: Manifest
    sender: str
    sender_verified: bool
    safety_number: str
    files: tuple[Path, ...]
    into: Path
    folder: Path  # the case folder: ``into`` itself under the flat layout
    label: str = ""  # the sender's label, from its verified case card ("" if none)

    def to_json(self, *, phi: bool = False) -> dict[str, Any]:
        """The result for ``--json``: without ``phi``, nothing that identifies a patient.

        Left out unless ``phi``: the note (free text, often a name), file paths
        (the sender's names, often the patient's), and every DICOM field but
        modalities and counts (``dicom.display.phi_free``). Kept: ids, sender,
        verification, sizes, digests, media types, and ``into`` (our own folder).
        ``case_folder`` and ``label`` only with ``phi``: the folder is named from
        the sender's handle and label, and a label may name the patient.
        """
        out: dict[str, Any] = {
            "transfer_id": self.relay_id,
            "manifest_id": self.manifest.transfer_id.hex(),
            "sender": self.sender,
            "sender_verified": self.sender_verified,
            "safety_number": self.safety_number,
            "created": self.manifest.created,
            "into": str(self.into),
            "file_count": len(self.manifest.files),
            "total_size": sum(f.size for f in self.manifest.files),
            "files": [{"size": f.size, "sha256": f.sha256.hex(), "media_type": f.media_type}
                      for f in self.manifest.files],
            "dicom": phi_free(self.manifest.dicom),
        }
        if phi:
            out["case_folder"] = str(self.folder)
            out["label"] = self.label
            out["note"] = self.manifest.note
            out["dicom"] = dict(self.manifest.dicom)
            for entry, f, p in zip(out["files"], self.manifest.files, self.files, strict=True):
                entry["path"] = f.path
                entry["placed_at"] = str(p)
        return out


class AlreadyReceivedError(ReceiveError):
    """The relay id was received here before: not a failure, nothing to do.

    ``at`` (unix time) and ``folder`` come from the receipts store; ``folder``
    is None for receipts written before the case folder was recorded.
    """

    def __init__(self, relay_id: str, *, at: int | None, folder: str | None) -> None:
        when = (datetime.datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M")
                if at is not None else "an unknown date")
        where = f"into {folder}" if folder else "(where it was placed is not recorded)"
        super().__init__(f"transfer {relay_id} was already received on {when} {where}",
                         hint="nothing to do: its files are where that receive placed them")
        self.relay_id = relay_id
        self.at = at
        self.folder = folder

    def to_json(self, *, phi: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"transfer_id": self.relay_id, "received_at": self.at}
        if phi and self.folder:
            out["case_folder"] = self.folder  # named from the sender's label: see ReceiveResult
        return out


# How far another practice's clock may be ahead of ours, for the time in its
# signed manifest: a transfer sealed within this of our pin may predate the log.
CLOCK_SKEW = 3600


def case_label(session: Session, relay_id: str, info: dict[str, Any]) -> str | None:
    """The sender's own label for the case, for ``{label}`` in the layout and for
    ``--on-receive``; None if unknown. From the sealed case card the relay serves
    with the transfer, and only if it verifies against the pinned contact's key
    and this transfer id (``receive.cards``); the layout sanitises it."""
    view = read_card(session, {**info, "id": relay_id})
    return (view.card.label or None) if view.card is not None else None


def _check_case_folder(into: Path, rel: str, relay_id: str) -> None:
    """Refuse, before any download, a case folder that exists and is not empty."""
    if not rel:
        return  # flat: the file names are known only after the download (check_free)
    folder, current, busy = into / rel, into, False
    try:
        for part in rel.split("/"):
            current = current / part
            st = os.lstat(current)  # FileNotFoundError: the rest is free
            if not stat.S_ISDIR(st.st_mode):  # a file, or a link placing would refuse
                busy = True
                break
        else:
            with os.scandir(folder) as it:
                busy = next(it, None) is not None
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ReceiveError(f"cannot check the case folder {folder}: {exc.strerror}") from exc
    if busy:
        raise ReceiveError(
            f"transfer {relay_id} not received: its case folder {current} already exists "
            "and is not empty (or is not a folder); nothing was downloaded",
            hint="put {id} in --layout (the default '{date} {sender} {id}' never collides), "
                 "or move that folder away, then run the same command again")


def flush_acks(session: Session) -> None:
    """Tell the relay about transfers placed while it could not be told (with our
    signed receipt when the transfer's log commitment was recorded), then look
    again at our receipts logged since the last time (``recheck_receipts``)."""
    receipts = session.receipts
    for relay_id in receipts.unacked():
        entry = receipts.load().get(relay_id, {})
        logged = _kept_commitment(entry)
        signed = signed_for(session.identity.signing_key, session.identity.handle, relay_id,
                            logged, "verified")
        try:
            answer = session.relay.ack(relay_id, "verified", signed)
        except RelayNotFound:
            answer = None
        except RelayError:
            return
        receipts.mark(relay_id, manifest_id=str(entry.get("manifest_id", "")), acked=True)
        if answer is not None and signed is not None and logged is not None and logged.salt:
            _keep_own(session, relay_id, logged, "verified", signed, answer)
    recheck_receipts(session)


def _keep_own(session: Session, relay_id: str, where: TransferLog, status: str,
              signed: tuple[int, bytes], answer: dict[str, Any]) -> None:
    """Check that the relay logged our receipt where its ack ``answer`` says, and
    keep it with its tlog-proof (raises LogInclusionError, exit 25)."""
    kept = check_own(session.log, session.identity.handle,
                     session.identity.signing_key.verify_key, relay_id, where, status,
                     signed, answer)
    if kept is not None:
        session.receipts.keep_receipt(relay_id, {**kept, "rechecked": False})


def recheck_receipts(session: Session) -> None:
    """Each receipt of ours checked once, when its ack was answered, is checked
    once more at the next receive, watch or inbox: the entry the relay serves
    at its index must still be the one we computed, under a later checkpoint.
    Why once more and not forever: the relay could show the right entry just
    while we ack; beyond that, ``sealdrop audit`` reads the whole log. Raises
    LogInclusionError (exit 25) naming the receipt."""
    cache: dict[str, bytes] = {}
    for relay_id, entry in sorted(session.receipts.load().items()):
        mine = entry.get("receipts")
        logged = _kept_commitment(entry)
        if not isinstance(mine, dict) or logged is None or not logged.salt:
            continue
        for status, kept in sorted(mine.items()):
            if not isinstance(kept, dict) or kept.get("rechecked") is not False:
                continue
            at, index = kept.get("at"), kept.get("log_index")
            what = f"your \"{status}\" receipt for transfer {relay_id}"
            try:
                sig = base64.b64decode(str(kept.get("sig")), validate=True)
                receipt = entries.Receipt(transfer_id=relay_id, commitment=logged.commitment,
                                          recipient=session.identity.handle,
                                          status=status,
                                          at=at)  # type: ignore[arg-type]
                leaf = entries.receipt_entry(logged.salt, receipt, sig).to_bytes()
            except (LogError, ValueError, binascii.Error):
                continue  # our own record, damaged: nothing to compare the log with
            if type(index) is not int:
                continue
            session.log.check_served(index, leaf, what, cache)
            session.receipts.keep_receipt(relay_id, {**kept, "rechecked": True})


def _kept_commitment(entry: dict[str, Any]) -> TransferLog | None:
    """The log commitment (and salt, when kept) a receipt-store entry kept (for a
    receipt signed later, and to check our receipts again)."""
    text, salt = entry.get("commitment"), entry.get("salt")
    if not (isinstance(text, str) and len(text) == 64):
        return None
    try:
        return TransferLog(0, bytes.fromhex(salt) if isinstance(salt, str) else b"",
                           bytes.fromhex(text))
    except ValueError:
        return None


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def _gate(session: Session, relay_id: str, info: dict[str, Any], *, allow_unverified: bool,
          max_unverified_size: int) -> None:
    """Refuse before downloading what the sender the relay names may not send us."""
    sender = str(info.get("sender", ""))[:64]
    size = info.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ReceiveError(f"the relay gave no valid size for transfer {relay_id}")
    contact = session.contacts.get(sender)
    if contact is not None and contact.verified:
        return
    if not allow_unverified:
        if contact is None:
            raise UnknownContactError(
                f"transfer {relay_id} refused before download: {sender!r} is not among "
                "your contacts",
                hint=(f"verify their safety number and add them with `sealdrop contacts add "
                      f"{sender} --fingerprint NUMBER`, or pass --allow-unverified"))
        raise UnverifiedContactError(
            f"transfer {relay_id} refused before download: contact {sender!r} is not "
            "verified (safety number never compared)",
            hint=(f"compare safety numbers and run `sealdrop contacts verify {sender} NUMBER`, "
                  "or pass --allow-unverified"))
    if size > max_unverified_size:
        raise ReceiveError(
            f"transfer {relay_id} refused before download: it is {_mib(size)} from "
            f"{sender!r}, a sender you have not verified, over the {_mib(max_unverified_size)}"
            " allowed for unverified senders",
            hint=(f"verify {sender}'s safety number first, or raise --max-unverified-size"))


def _downloaded(session: Session, relay_id: str, src: Incoming) -> None:
    """Tell the relay "downloaded" once every byte came (placed or refused after)."""
    if src.complete:
        with contextlib.suppress(RelayError):
            session.relay.ack(relay_id, "downloaded")


def receive_one(
    session: Session,
    relay_id: str,
    into: Path,
    *,
    allow_unverified: bool = False,
    on_progress: Progress | None = None,
    pause_after_block: float = 0.0,
    keep_refused: bool = False,
    max_unverified_size: int = DEFAULT_MAX_UNVERIFIED_SIZE,
    staging: Path | None = None,
    layout: Layout | None = None,
    now: datetime.datetime | None = None,
) -> ReceiveResult:
    """Receive ``relay_id`` into ``into``: all of it, verified, or nothing.

    ``on_progress`` and ``pause_after_block``: see ``download.download``;
    ``keep_refused``, ``max_unverified_size``: see the module text; ``staging``:
    see ``stagearea``; ``layout``: the case folder (default: one per case,
    ``layout.DEFAULT_LAYOUT``), its ``{date}``/``{time}`` from ``now`` (local).
    Raises ``AlreadyReceivedError`` for a relay id received here before. One
    process at a time per transfer (``watch`` and a ``receive`` by hand would
    otherwise append to one spool file): the other is refused at once.
    """
    spool = session.spool.path(relay_id)  # also checks the id
    with contextlib.ExitStack() as hold:
        try:
            hold.enter_context(locked(spool, wait=False))
        except StoreLockedError as exc:
            raise ReceiveError(
                f"transfer {relay_id} is being received by another sealdrop process on this "
                "profile; skipped here",
            ) from exc
        try:
            return _receive_one(
                session, relay_id, into, allow_unverified=allow_unverified,
                on_progress=on_progress, pause_after_block=pause_after_block,
                keep_refused=keep_refused, max_unverified_size=max_unverified_size,
                staging=staging, layout=Layout.parse(None) if layout is None else layout,
                now=datetime.datetime.now().astimezone() if now is None else now,
            )
        finally:
            # Removed while still held; a process that was waiting on it sees
            # the path no longer names its inode and starts over (filelock).
            lock_path(spool).unlink(missing_ok=True)


def _receive_one(
    session: Session,
    relay_id: str,
    into: Path,
    *,
    allow_unverified: bool,
    on_progress: Progress | None,
    pause_after_block: float,
    keep_refused: bool,
    max_unverified_size: int,
    staging: Path | None,
    layout: Layout,
    now: datetime.datetime,
) -> ReceiveResult:
    into = Path(into)
    if not into.is_dir():
        raise ReceiveError(f"the destination {into} is not an existing folder",
                           hint="create it first, or give another --into")
    session.spool.path(relay_id)  # checks the id before it goes in a URL
    receipt = session.receipts.load().get(relay_id)
    if receipt is not None:
        # Received before, or by another process on this profile while we
        # waited for its lock: never download it again, nor record it as refused.
        at, folder = receipt.get("at"), receipt.get("folder")
        raise AlreadyReceivedError(
            relay_id, at=at if isinstance(at, int) and not isinstance(at, bool) else None,
            folder=folder if isinstance(folder, str) else None)
    refused = RefusedStore(session.home)
    try:
        info = session.relay.status(relay_id)
    except RelayNotFound as exc:
        # The relay forgets a retracted transfer as it forgets an expired one:
        # it cannot say which, so neither can we.
        raise ReceiveError(
            f"transfer {relay_id} is not on the relay: the sender took it back, it "
            "expired, or the id is mistyped; nothing was downloaded",
            hint="if you still need it, ask the sender to send it again") from exc
    sender = str(info.get("sender", ""))[:64]

    def refuse(reason: Reason, exc: ClientError) -> ClientError:
        refused.mark(relay_id, reason=reason, sender=sender, error=str(exc))
        if not keep_refused:
            session.spool.drop(relay_id)
        return exc

    try:
        _gate(session, relay_id, info, allow_unverified=allow_unverified,
              max_unverified_size=max_unverified_size)
    except ClientError as exc:
        raise refuse(Reason.SENDER, exc) from None
    case = CaseInfo(relay_id=relay_id, sender=sender, when=now,
                    label=case_label(session, relay_id, info))
    # Before the download: a folder that is taken costs no bytes and no refusal.
    _check_case_folder(into, layout.folder(case), relay_id)

    def case_folder(signed_sender: str) -> str:
        # Named from the SIGNED sender's handle, not the relay's claim (which
        # the check above used: a relay that lied meets check_free instead).
        return layout.folder(replace(case, sender=signed_sender))

    spool = session.spool.path(relay_id)
    size = int(info["size"])
    claimed = session.contacts.get(sender)
    logged: list[TransferLog] = []

    def vouch(m: Manifest) -> None:
        # Last before placing: the sender's signed key and this transfer, as the
        # signed manifest names them, are in the relay's log (client.tlog).
        session.log.vouch_for(m.sender)
        got = session.log.check_transfer(
            relay_id, info, sender=m.sender.handle,
            recipients=[r.handle for r in m.recipients], digest=str(info.get("digest") or ""),
            # Sealed after we pinned the log (the sender-signed time, which the
            # relay cannot change): it must be logged. Older: perhaps completed
            # before the relay logged, so plain acks (the sender checks).
            required=session.log.requires_log(m.created, skew=CLOCK_SKEW))
        if got is not None:
            logged.append(got)

    try:
        if claimed is not None and claimed.verified:
            # One pass: decrypted, checked and staged as it downloads.
            with incoming(session, relay_id, size=size, on_progress=on_progress,
                          pause_after_block=pause_after_block) as src:
                try:
                    got = receive_transfer(
                        src, identity=session.identity, contacts=session.contacts,
                        replay=session.replay, dest=into, allow_unverified=allow_unverified,
                        staging=staging, home=session.home, case=case_folder, vouch=vouch,
                    )
                finally:
                    _downloaded(session, relay_id, src)
        else:
            with interruptible():  # the spool keeps what came: the next run resumes
                download(session, relay_id, on_progress=on_progress,
                         pause_after_block=pause_after_block, size=size)
            with contextlib.suppress(RelayError):
                session.relay.ack(relay_id, "downloaded")
            with open(spool, "rb") as whole:
                got = receive_transfer(
                    whole, identity=session.identity, contacts=session.contacts,
                    replay=session.replay, dest=into, allow_unverified=allow_unverified,
                    staging=staging, home=session.home, case=case_folder, vouch=vouch,
                    verify_first=True,
                )
    except (SealdropCryptoError, ReplayError) as exc:
        raise refuse(Reason.HOSTILE, ReceiveError(
            f"transfer {relay_id} REFUSED: {exc}; nothing was written to {into}",
            hint=getattr(exc, "hint", None))) from exc
    except NotAddressedError as exc:
        raise refuse(Reason.HOSTILE, ReceiveError(
            f"transfer {relay_id} refused: {exc}", hint=exc.hint)) from exc
    except ReceiveError as exc:
        # A local reason (a name taken, a full disk): not refused for good. The
        # relay was told "downloaded"; the ciphertext stays for the retry.
        kept = ("its download is kept, so running the same command again once this is "
                f"fixed does not download it again (`sealdrop dismiss {relay_id}` drops it)")
        raise ReceiveError(f"transfer {relay_id} not placed: {exc}",
                           hint=f"{exc.hint}; {kept}" if exc.hint else kept) from exc
    except ContactError as exc:
        raise refuse(Reason.SENDER, type(exc)(
            f"transfer {relay_id} refused: {exc}", hint=exc.hint)) from exc
    acked = True
    me, key = session.identity.handle, session.identity.signing_key
    done = logged[-1] if logged else None
    answers: list[tuple[str, tuple[int, bytes], dict[str, Any]]] = []
    if done is not None:  # the plain "downloaded" went before; now the signed receipt
        down = signed_for(key, me, relay_id, done, "downloaded")
        with contextlib.suppress(RelayError):
            answer = session.relay.ack(relay_id, "downloaded", down)
            if down is not None:
                answers.append(("downloaded", down, answer))
    final = signed_for(key, me, relay_id, done, "verified")
    try:
        answer = session.relay.ack(relay_id, "verified", final)
        if final is not None:
            answers.append(("verified", final, answer))
    except RelayError:
        acked = False  # told on the next receive/watch/inbox
    session.receipts.mark(relay_id, manifest_id=got.manifest.transfer_id.hex(), acked=acked,
                          folder=str(got.folder.absolute()),
                          commitment=done.commitment.hex() if done is not None else None,
                          salt=done.salt.hex() if done is not None else None)
    refused.forget(relay_id)
    spool.unlink(missing_ok=True)
    if done is not None:
        # After the files are placed and recorded: a receipt the relay did not
        # log as it says stops the command loudly, yet nothing is received twice.
        for status, signed, answer in answers:
            try:
                _keep_own(session, relay_id, done, status, signed, answer)
            except RelayError:
                # The relay could not be reached for the check (a restart, the
                # network): the files are placed and recorded, so the receive
                # stands and is reported; that receipt's entry is left to
                # `sealdrop audit`, which reads the whole log. A log that does
                # not hold it as the relay said is LogInclusionError, not this.
                break
    return ReceiveResult(
        relay_id=relay_id, manifest=got.manifest, sender=got.sender.handle,
        sender_verified=got.sender.verified, safety_number=got.sender.safety_number,
        files=got.files, into=into, folder=got.folder, label=case.label or "",
    )
