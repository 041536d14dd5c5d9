"""Following the relay's transparency log, one command at a time (docs/transparency.md).

Each command that talks to the relay calls ``advance`` first (``open_session``,
and ``watch`` at every round): one checkpoint GET; tiles only when the log
grew. ``advance`` checks, in this order, and stores the new checkpoint only
after all of them passed:

1. the checkpoint is signed by the log key pinned at ``init`` and names the
   pinned log (``LogSignatureError``);
2. it is not smaller than the one verified before (``LogRollbackError``) and
   extends it: a consistency proof, computed from the relay's tiles and
   checked against both signed roots (``LogForkError``);
3. the new entries, read from the entry tiles and proved to be the signed
   tree's own (``overlay``): a key entry for our handle whose bundle this
   profile never made (``ForeignOwnKeyError``); one for a pinned contact that
   is not the contact's current bundle on the same signing key
   (``LoggedKeyChangeError``). Every key entry counts, not only a contact's
   last one in a batch: [a swapped key, the pinned key] is an alert.
   The first checkpoint a profile verifies has every entry from 0 read for
   our own handle (a key logged under our name before we registered, or
   before a profile from before the log pinned it); contacts from
   ``scan_from`` (none at ``init``);
4. with ``require_cosignatures`` N > 0 (the profile's config), the checkpoint
   carries valid cosignatures from N of the configured witness vkeys
   (``CosignatureError``, exit 29). The relay serves only its newest
   checkpoint, with the cosignatures it collected for that size: one its
   witnesses did not cosign (down, unreachable, not configured on the relay)
   is refused, never replaced by an older cosigned one.

Then ``vouch_for`` proves that a key bundle the client is about to use is the
one logged for its handle, and ``check_transfer`` that a transfer's commitment
is logged. Every failure is a ``LogVerificationError`` subclass, never a warning.

A profile whose relay serves no log and that never pinned one is not checked
(a relay older than the log); once pinned, a relay that stops serving it is
refused (``LogUnavailableError``).
"""

from __future__ import annotations

import base64
import binascii
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sealdrop.crypto.bundle import KeyBundle
from sealdrop.crypto.errors import LogError, LogProofError
from sealdrop.crypto.tlog import entries, merkle, tiles
from sealdrop.crypto.tlog.checkpoint import Checkpoint
from sealdrop.crypto.tlog.note import NoteVerifier, open_note
from sealdrop.crypto.tlog.proofbundle import ProofBundle, verify_bundle

from ..errors import (
    ForeignOwnKeyError,
    LogForkError,
    LoggedKeyChangeError,
    LogInclusionError,
    LogRollbackError,
    LogSignatureError,
    LogUnavailableError,
)
from ..profile.contacts import ContactStore
from ..profile.logstate import LogState, LogStateStore
from ..relay_api import RelayClient, RelayNotFound, RelayProtocolError
from ..witness.policy import check_cosignatures
from .overlay import LeafOverlay

# A tile the relay does not have, or answers malformed: the relay's doing. Not
# RelayUnavailable (the network, an outage): that is retried, never a verdict.
_TILE_TROUBLE = (LogError, RelayNotFound, RelayProtocolError)

# What a dental assistant can do about any of these: stop, and call.
CALL = ("do not send or receive anything until this is cleared up: call the relay's "
        "operator, and tell your practice's IT support or data protection officer")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class Verified:
    """The newest checkpoint this process verified, and how to read its tree."""

    checkpoint: Checkpoint
    note: str
    hashes: merkle.SubtreeHashes


class LogClient:
    def __init__(self, relay: RelayClient, home: Path, *, handle: str,
                 contacts: ContactStore, own: KeyBundle | None = None,
                 witnesses: Sequence[str] = (), require_cosignatures: int = 0,
                 notice: Callable[[str], None] = _stderr) -> None:
        """``own``: the profile's current bundle, recorded as made here when the
        log is pinned on first use (the relay logs keys registered before it had
        a log when it starts). ``witnesses``, ``require_cosignatures``: the
        profile's cosignature policy (``ProfileConfig``)."""
        self.relay = relay
        self.witnesses = tuple(witnesses)
        self.require_cosignatures = require_cosignatures
        self._own = own
        self.store = LogStateStore(home)
        self.handle = handle
        self.contacts = contacts
        self._notice = notice
        self._verified: Verified | None = None
        self._state: LogState | None = None

    # -- pinning -----------------------------------------------------------------

    def pin_at_init(self) -> LogState | None:
        """``init``: pin the relay's log key (None from a relay without a log)."""
        got = self.relay.log_key()
        if got is None:
            return None
        self._state = self.store.pin(*got)
        return self._state

    def pinned(self) -> LogState | None:
        """The pinned log; pinned now (said once) for a profile made before the log."""
        if self._state is None:
            self._state = self.store.load()
            if self._state is not None and self._state.pinned_at is None:
                # a file from before ``pinned_at``: from now on, logs are required
                self._state = self.store.pin(self._state.origin, self._state.vkey)
        if self._state is None:
            got = self.relay.log_key()
            if got is None:
                return None  # a relay older than the log: nothing to check against
            self._state = self.store.pin(*got)
            if self._own is not None:
                self._state = self.store.add_own(entries.bundle_digest(self._own).hex())
            self._notice(
                f"sealdrop: notice: pinned the relay's transparency log {got[0]} (key "
                f"{got[1].rsplit('+', 2)[1] if got[1].count('+') >= 2 else '?'}); from now on "
                "every command checks it")
        return self._state

    def requires_log(self, at: int | None, *, skew: int = 0) -> bool:
        """Must a transfer made at ``at`` (unix seconds, a time the relay cannot
        change) have a log entry? Yes if it is newer than this profile's pin (the
        relay logged then), by at least ``skew`` (another computer's clock)."""
        state = self.pinned()
        if state is None or at is None or state.pinned_at is None:
            return False
        return at >= state.pinned_at + skew

    def record_own(self, bundle: KeyBundle) -> None:
        """Remember a key bundle this profile made, BEFORE it is sent to the relay."""
        if self.pinned() is not None:
            self._state = self.store.add_own(entries.bundle_digest(bundle).hex())

    # -- following the log ---------------------------------------------------

    def advance(self, *, scan_from: int | None = None) -> Verified | None:
        """Check the relay's current checkpoint against the last one verified here,
        read the new entries, and store it. None: no log to check. ``scan_from``:
        for the first checkpoint of a profile (``init``), read entries from there."""
        state = self.pinned()
        if state is None:
            return None
        note = self._fetch_checkpoint()
        new = self._open(note, state)
        hashes: merkle.SubtreeHashes = tiles.TileHashes(new.size, self.relay.log_tile)
        old = self._previous(state)
        if old is None:
            # The first checkpoint of this profile: the whole log is read, once
            # (a request per 256 entries), for keys under our own handle: the
            # relay could have logged one before ours, or before this profile
            # pinned its log. Contacts: only from ``scan_from`` on.
            scanned = 0
            contacts_from = new.size if scan_from is None else min(scan_from, new.size)
        else:
            self._consistent(old, new, hashes)
            scanned = contacts_from = min(state.scanned, old.size)
        if scanned < new.size:
            hashes = self._scan(scanned, new, hashes, contacts_from=contacts_from)
        self._cosigned(note, state)
        self._state = self.store.advance(note, size=new.size, scanned=new.size)
        if self._state.checkpoint is not None and self._state.checkpoint != note:
            self._behind(new)
        self._verified = Verified(new, note, hashes)
        return self._verified

    def _behind(self, ours: Checkpoint) -> None:
        """Another process on this profile stored a larger checkpoint meanwhile (the
        store refuses an equal size with another root): it must extend ours, or the
        relay showed the two processes two forks of its log."""
        assert self._state is not None
        stored = self._previous(self._state)
        assert stored is not None
        self._consistent(ours, stored, tiles.TileHashes(stored.size, self.relay.log_tile))

    def current(self, *, covering: int = 0) -> Verified | None:
        """The verified checkpoint of this process, advanced again if it does not
        reach entry ``covering`` yet (an entry the relay just appended)."""
        if self._verified is None or covering >= self._verified.checkpoint.size:
            return self.advance()
        return self._verified

    def _fetch_checkpoint(self) -> str:
        try:
            return self.relay.log_checkpoint()
        except RelayNotFound as exc:
            raise LogUnavailableError(
                f"the relay at {self.relay.url} no longer serves its transparency log, "
                "which this profile pinned: its history can no longer be checked",
                hint=CALL) from exc

    def _open(self, note: str, state: LogState) -> Checkpoint:
        try:
            verifier = NoteVerifier.from_vkey(state.vkey)
            opened = open_note(note, [verifier])
            checkpoint = Checkpoint.parse(opened.text)
        except LogError as exc:
            raise LogSignatureError(
                f"the relay's log checkpoint is not signed with the log key this profile "
                f"pinned ({state.origin}): {exc}", hint=CALL) from exc
        if checkpoint.origin != state.origin:
            raise LogSignatureError(
                f"the relay showed the checkpoint of another log ({checkpoint.origin!r}, "
                f"not {state.origin!r})", hint=CALL)
        return checkpoint

    def _cosigned(self, note: str, state: LogState) -> None:
        """The profile's cosignature policy, last: a fork or a foreign key is the
        stronger evidence and is named first. CosignatureError (exit 29)."""
        if self.require_cosignatures > 0:
            check_cosignatures(note, NoteVerifier.from_vkey(state.vkey), self.witnesses,
                               self.require_cosignatures)

    def _previous(self, state: LogState) -> Checkpoint | None:
        if state.checkpoint is None:
            return None
        try:  # our own file: opened with the same key, to read it back
            return Checkpoint.parse(open_note(state.checkpoint,
                                              [NoteVerifier.from_vkey(state.vkey)]).text)
        except LogError as exc:
            raise LogUnavailableError(
                f"the log checkpoint kept in {self.store.path} cannot be read: {exc}",
                hint="restore the profile folder from a backup, or ask your IT support") from exc

    def _consistent(self, old: Checkpoint, new: Checkpoint,
                    hashes: merkle.SubtreeHashes) -> None:
        if new.size < old.size:
            raise LogRollbackError(
                f"the relay ROLLED BACK its transparency log: it now shows {new.size} "
                f"entries, but this profile already verified {old.size}; entries were "
                "removed from a log that may only grow", hint=CALL)
        if new.size == old.size:
            if new.root != old.root:
                raise LogForkError(
                    f"the relay REWROTE its transparency log: two different trees of "
                    f"{new.size} entries were signed", hint=CALL)
            return
        try:
            proof = merkle.consistency_proof(old.size, new.size, hashes)
            merkle.verify_consistency(old.size, new.size, proof, old.root, new.root)
        except LogProofError as exc:
            raise LogForkError(
                f"the relay REWROTE its transparency log: its tree of {new.size} entries "
                f"does not extend the tree of {old.size} this profile verified",
                hint=CALL) from exc
        except _TILE_TROUBLE as exc:  # tiles missing or malformed
            raise LogForkError(
                f"the relay cannot show that its transparency log of {new.size} entries "
                f"extends the {old.size} this profile verified: {exc}", hint=CALL) from exc

    def _read_entries(self, start: int, size: int) -> list[bytes]:
        """Entries ``start..size`` from the entry tiles (unverified yet)."""
        out: list[bytes] = []
        w = tiles.TILE_WIDTH
        for n in range(start // w, (size + w - 1) // w):
            width = min(w, size - n * w)
            try:
                data = self.relay.log_tile(tiles.entries_path(n, width))
                got = tiles.split_entry_bundle(data)
            except _TILE_TROUBLE as exc:
                raise LogForkError(
                    f"the relay does not serve the entries of its own transparency log "
                    f"(entries {n * w}-{n * w + width - 1}): {exc}", hint=CALL) from exc
            if len(got) != width:
                raise LogForkError(
                    f"the relay served {len(got)} log entries where its checkpoint has "
                    f"{width}", hint=CALL)
            out += got[max(start - n * w, 0):]
        return out

    def _scan(self, start: int, new: Checkpoint, hashes: merkle.SubtreeHashes, *,
              contacts_from: int) -> merkle.SubtreeHashes:
        read = self._read_entries(start, new.size)
        overlay = LeafOverlay(hashes, start, read)
        try:
            root = merkle.root(new.size, overlay)
        except (*_TILE_TROUBLE, IndexError) as exc:
            raise LogForkError(f"the relay's log tiles are inconsistent: {exc}",
                               hint=CALL) from exc
        if root != new.root:
            raise LogForkError(
                f"the relay served log entries {start}-{new.size - 1} that are not the ones "
                "in its signed checkpoint: it is hiding or changing entries", hint=CALL)
        # Every key entry of a pinned contact, not only its last one: a relay
        # logging [a swapped key, the pinned key again] in one batch is caught.
        changed: dict[str, list[tuple[int, bytes]]] = {}
        state = self._state
        own = set(state.own) if state is not None else set()
        for i, data in enumerate(read, start):
            try:
                entry = entries.parse_entry(data)
            except LogError as exc:
                raise LogForkError(f"log entry {i} is malformed: {exc}", hint=CALL) from exc
            if not isinstance(entry, entries.KeyEntry):
                continue
            if entry.handle == self.handle:
                if entry.bundle_digest.hex() not in own:
                    raise ForeignOwnKeyError(
                        f"the relay logged a key for {self.handle} that this profile never "
                        f"made (log entry {i}): someone may be receiving as you",
                        hint=CALL)
            elif i >= contacts_from and self.contacts.get(entry.handle) is not None:
                changed.setdefault(entry.handle, []).append((i, entry.bundle_digest))
        for handle, logged in sorted(changed.items()):
            for i, digest in logged:
                self._contact_key_logged(handle, i, digest)
        return overlay

    def _contact_key_logged(self, handle: str, index: int, digest: bytes) -> None:
        """A new key entry for a pinned contact: fine if it is the contact's current
        bundle on the same signing key (an encryption-key rotation); else an alert."""
        contact = self.contacts.get(handle)
        if contact is None or entries.bundle_digest(contact.bundle) == digest:
            return
        try:
            fresh, _ = self.relay.get_logged_bundle(handle)
        except RelayNotFound:
            fresh = None
        except RelayProtocolError as exc:
            raise LogInclusionError(
                f"the relay logged a new key for your contact {handle} (log entry {index}) "
                "but answers no valid key for them: the new key cannot be checked",
                hint=CALL) from exc
        if (fresh is None or fresh.signing_key != contact.bundle.signing_key
                or entries.bundle_digest(fresh) != digest):
            raise LoggedKeyChangeError(
                f"the relay logged a NEW KEY for your contact {handle} (log entry {index}) "
                "that is not the key you pinned: transfers to or from them may be read by "
                "someone else",
                hint=f"call {handle} by phone (not by e-mail) and compare safety numbers; "
                f"if they did not change their key, {CALL}")

    # -- inclusion -----------------------------------------------------------------

    def _included(self, index: int | None, leaf: bytes, what: str) -> str | None:
        """A tlog-proof text that ``leaf`` is entry ``index`` of the verified tree."""
        if index is None:
            raise LogInclusionError(f"the relay did not say where {what} is in its log",
                                    hint=CALL)
        verified = self.current(covering=index)
        if verified is None:
            return None
        size = verified.checkpoint.size
        if index >= size:
            raise LogInclusionError(
                f"{what} is not in the relay's log: the relay named entry {index} of a log "
                f"of {size} entries", hint=CALL)
        try:
            proof = merkle.inclusion_proof(index, size, verified.hashes)
            merkle.verify_inclusion(index, size, merkle.leaf_hash(leaf), proof,
                                    verified.checkpoint.root)
        except _TILE_TROUBLE as exc:
            raise LogInclusionError(
                f"{what} is not what the relay's log holds at entry {index}: the relay "
                "serves something it did not log", hint=CALL) from exc
        text: str = ProofBundle(index=index, proof=proof, checkpoint_note=verified.note,
                                extra=None).text()
        return text

    def check_bundle(self, bundle: KeyBundle, log_index: int | None) -> str | None:
        """Entry ``log_index`` is the key entry of exactly ``bundle``; returns the
        proof (tlog-proof text), None when there is no log to check."""
        if self.pinned() is None:
            return None
        leaf = entries.KeyEntry.for_bundle(bundle).to_bytes()
        return self._included(log_index, leaf, f"the key of {bundle.handle}")

    def vouch_for(self, bundle: KeyBundle,
                  served: tuple[KeyBundle, int | None] | None = None) -> None:
        """The bundle about to be used for its handle is logged: by the proof kept
        with the pinned contact, else by one for the bundle the relay serves now
        (``served``, fetched if not given). An older bundle on the same signing
        key (a transfer sealed before a rotation) is vouched for by the current one."""
        state = self.pinned()
        if state is None:
            return
        handle, digest = bundle.handle, entries.bundle_digest(bundle)
        contact = self.contacts.get(handle)
        leaf = entries.KeyEntry(handle, digest).to_bytes()
        if (contact is not None and contact.log_proof is not None
                and entries.bundle_digest(contact.bundle) == digest
                and self._proof_holds(contact.log_proof, leaf, state)):
            return
        if served is None:
            try:
                served = self.relay.get_logged_bundle(handle)
            except RelayNotFound as exc:
                raise LogInclusionError(
                    f"the relay no longer has the account {handle}, whose key this is",
                    hint=CALL) from exc
        fresh, index = served
        proof = self.check_bundle(fresh, index)
        if entries.bundle_digest(fresh) != digest and fresh.signing_key != bundle.signing_key:
            raise LogInclusionError(
                f"the key of {handle} used here is not the one the relay's log holds for "
                f"{handle}", hint=CALL)
        if proof is not None:
            self.contacts.keep_log_proof(fresh, proof)

    def _proof_holds(self, text: str, leaf: bytes, state: LogState) -> bool:
        try:
            verify_bundle(ProofBundle.parse(text), leaf, state.origin,
                          [NoteVerifier.from_vkey(state.vkey)])
        except LogError:
            return False  # a damaged kept proof: prove it again from the relay
        return True

    def check_transfer(self, relay_id: str, info: dict[str, Any], *, sender: str,
                       recipients: Sequence[str], digest: str,
                       required: bool = True) -> TransferLog | None:
        """The transfer ``relay_id`` (as the relay shows it: ``info``) is logged with
        the commitment of these values; its log place, salt and commitment. None
        without a log, or (``required`` False) for a transfer the relay shows
        without a log entry: one completed before the relay had a log. Only the
        sender requires it (after ``complete``, it knows the relay logs)."""
        if self.pinned() is None or (not required and info.get("log") is None):
            return None
        where = parse_transfer_log(info, relay_id)
        try:
            commitment = entries.transfer_commitment(where.salt, relay_id, sender,
                                                     list(recipients), digest)
        except LogError as exc:  # e.g. no chunk-list digest in the relay's answer
            raise LogInclusionError(
                f"transfer {relay_id} cannot be checked against the relay's log: {exc}",
                hint=CALL) from exc
        self._included(where.index, entries.TransferEntry(commitment).to_bytes(),
                       f"transfer {relay_id}")
        return TransferLog(where.index, where.salt, commitment)

    def check_logged(self, index: int | None, leaf: bytes, what: str) -> str | None:
        """Entry ``index`` is ``leaf`` (a receipt entry); its tlog-proof text, kept
        beside the receipt to check it offline later; see ``_included``."""
        return self._included(index, leaf, what)

    def check_served(self, index: int, leaf: bytes, what: str,
                     cache: dict[str, bytes] | None = None) -> str | None:
        """``check_logged``, and the relay's entry tile holds exactly ``leaf`` at
        ``index``. Why both: the proof is over hashes, and a relay that kept the
        hashes but altered the entry it serves would show every log reader
        (a monitor, ``audit``) a receipt other than ours. ``cache``: the entry
        tiles already read by this command, by path."""
        proof = self._included(index, leaf, what)
        verified = self._verified
        if proof is None or verified is None:
            return proof
        tile = index // tiles.TILE_WIDTH
        width = min(tiles.TILE_WIDTH, verified.checkpoint.size - tile * tiles.TILE_WIDTH)
        path = tiles.entries_path(tile, width)
        try:
            raw = cache[path] if cache is not None and path in cache else \
                self.relay.log_tile(path)
            served = tiles.split_entry_bundle(raw)
        except _TILE_TROUBLE as exc:
            raise LogInclusionError(
                f"{what} cannot be read back from the relay's log (entry {index}): {exc}",
                hint=CALL) from exc
        if cache is not None:
            cache[path] = raw
        if len(served) != width or served[index % tiles.TILE_WIDTH] != leaf:
            raise LogInclusionError(
                f"{what} is not what the relay's log shows at entry {index}: the relay "
                "altered or replaced it", hint=CALL)
        return proof


@dataclass(frozen=True, slots=True)
class TransferLog:
    """Where a transfer is in the log, the salt of its commitment, and the
    commitment (what our receipts for it are signed over)."""

    index: int
    salt: bytes
    commitment: bytes = b""


def parse_transfer_log(info: dict[str, Any], relay_id: str) -> TransferLog:
    """The ``log`` object of a transfer answer: its entry index and salt."""
    log = info.get("log")
    try:
        index, salt = log["index"], base64.b64decode(log["salt"], validate=True)  # type: ignore[index]
        if type(index) is not int or index < 0 or len(salt) != 32:
            raise ValueError("bad index or salt")
    except (TypeError, KeyError, ValueError, binascii.Error) as exc:
        raise LogInclusionError(
            f"the relay did not log transfer {relay_id} (no valid log entry in its answer)",
            hint=CALL) from exc
    return TransferLog(index, salt)
