"""The signed transfer manifest: what was sent, by whom, to whom.

The manifest is the last-but-one member of every transfer archive; the last is
its Ed25519 signature. Canonical form (see docs/container.md): JSON with sorted
keys, no insignificant whitespace, UTF-8 (no ``\\u`` escapes beyond those JSON
requires), integers only. A reader re-serialises what it parsed and refuses the
manifest unless the bytes are identical, so exactly one byte string signs a
given manifest and no two parsers can disagree about what was signed.

The signature is over ``SIGNATURE_CONTEXT || canonical bytes``: the context
keeps a manifest signature from ever being valid as any other sealdrop
signature (key bundles, relay requests) made with the same key.
"""

from __future__ import annotations

import base64
import binascii
import json
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from .bundle import KeyBundle
from .errors import BundleError, ManifestError, SignatureError

VERSION = 1
SIGNATURE_CONTEXT = b"sealdrop transfer manifest v1\x00"
SIGNATURE_SIZE = 64
TRANSFER_ID_SIZE = 16
MAX_MANIFEST_SIZE = 16 * 1024 * 1024
MAX_NOTE_CHARS = 64 * 1024
MAX_FILES = 200_000
_MAX_DEPTH = 16  # nesting limit for the free-form dicom summary

_TOP_KEYS = {"v", "transfer_id", "created", "sender", "recipients", "files", "note", "dicom"}
_SENDER_KEYS = {"handle", "signing_key", "bundle"}
_RECIPIENT_KEYS = {"handle", "signing_key"}
_FILE_KEYS = {"path", "size", "sha256", "media_type"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True, slots=True, kw_only=True)
class FileEntry:
    path: str  # relative POSIX path inside files/, NFC
    size: int
    sha256: bytes
    media_type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientEntry:
    handle: str
    signing_key: bytes  # Ed25519 public key


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    transfer_id: bytes
    created: int
    sender: KeyBundle
    recipients: tuple[RecipientEntry, ...]
    files: tuple[FileEntry, ...]
    note: str = ""
    dicom: Mapping[str, Any] = field(default_factory=dict)
    version: int = VERSION

    @property
    def sender_key(self) -> bytes:
        return self.sender.signing_key

    def recipient_keys(self) -> set[bytes]:
        return {r.signing_key for r in self.recipients}

    def to_json(self) -> dict[str, Any]:
        return {
            "v": self.version,
            "transfer_id": self.transfer_id.hex(),
            "created": self.created,
            "sender": {
                "handle": self.sender.handle,
                "signing_key": _b64(self.sender.signing_key),
                "bundle": self.sender.to_json(),
            },
            "recipients": [
                {"handle": r.handle, "signing_key": _b64(r.signing_key)} for r in self.recipients
            ],
            "files": [
                {
                    "path": f.path,
                    "size": f.size,
                    "sha256": f.sha256.hex(),
                    "media_type": f.media_type,
                }
                for f in self.files
            ],
            "note": self.note,
            "dicom": dict(self.dicom),
        }

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.to_json())


def canonical_json(obj: object) -> bytes:
    """JSON with sorted keys, no whitespace, UTF-8; refuses floats and non-string keys."""
    _check_canonical_value(obj, 0)
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _check_canonical_value(obj: object, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ManifestError("manifest is nested too deeply")
    if isinstance(obj, str):
        _check_text(obj)
        return
    if obj is None or isinstance(obj, bool):
        return
    if isinstance(obj, int):
        return
    if isinstance(obj, float):
        raise ManifestError("manifest values must be integers, never floating point")
    if isinstance(obj, list | tuple):
        for v in obj:
            _check_canonical_value(v, depth + 1)
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise ManifestError("manifest object keys must be strings")
            _check_text(k)
            _check_canonical_value(v, depth + 1)
        return
    raise ManifestError(f"manifest cannot hold a value of type {type(obj).__name__}")


def _check_text(text: str) -> None:
    """Refuse strings UTF-8 cannot carry: JSON's ``\\ud800`` escapes decode to lone
    surrogates, which would otherwise fail only later, as an unhandled encode error."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ManifestError(
            "manifest text is not valid Unicode (a lone surrogate); the transfer is damaged "
            "or hostile"
        ) from exc


def signature_message(canonical: bytes) -> bytes:
    return SIGNATURE_CONTEXT + canonical


def sign_manifest(manifest: Manifest, signing_key: SigningKey) -> tuple[bytes, bytes]:
    """Return (canonical manifest bytes, 64-byte Ed25519 signature)."""
    if bytes(signing_key.verify_key) != manifest.sender.signing_key:
        raise ManifestError("the manifest's sender key is not the key signing it")
    data = manifest.canonical_bytes()
    parse_manifest(data)  # never sign something we would refuse to read
    return data, signing_key.sign(signature_message(data)).signature


# --- parsing ------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ManifestError(f"manifest has a duplicate key {k!r}")
        out[k] = v
    return out


def _no_float(text: str) -> Any:
    raise ManifestError("manifest values must be integers, never floating point")


def _no_constant(text: str) -> Any:
    raise ManifestError(f"manifest contains the non-JSON value {text}")


def _keys(obj: object, expected: set[str], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ManifestError(f"manifest {what} must be a JSON object")
    if set(obj) != expected:
        missing = sorted(expected - set(obj))
        extra = sorted(set(obj) - expected)
        raise ManifestError(f"manifest {what} has missing {missing} or unexpected {extra} fields")
    return obj


def _int(value: object, what: str, *, lo: int = 0, hi: int = (1 << 63) - 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ManifestError(f"manifest field {what} must be an integer in [{lo}, {hi}]")
    return value


def _str(value: object, what: str, *, max_chars: int = 4096) -> str:
    if not isinstance(value, str) or len(value) > max_chars:
        raise ManifestError(f"manifest field {what} must be a string of at most {max_chars}")
    return value


def _hex(value: object, size: int, what: str) -> bytes:
    text = _str(value, what)
    try:
        raw = bytes.fromhex(text)
    except ValueError as exc:
        raise ManifestError(f"manifest field {what} is not hexadecimal") from exc
    if len(raw) != size or raw.hex() != text:
        raise ManifestError(f"manifest field {what} must be {size} bytes of lowercase hex")
    return raw


def _key(value: object, what: str) -> bytes:
    text = _str(value, what)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ManifestError(f"manifest field {what} is not valid base64") from exc
    if len(raw) != 32 or _b64(raw) != text:
        raise ManifestError(f"manifest field {what} must be a 32-byte key in base64")
    return raw


def _media_type(value: object, what: str) -> str:
    text = _str(value, what, max_chars=255)
    if not text.isascii() or "/" not in text or any(c.isspace() or ord(c) < 32 for c in text):
        raise ManifestError(f"manifest field {what} is not a media type like type/subtype")
    return text


def parse_manifest(data: bytes) -> Manifest:
    """Parse and validate a manifest; refuse it unless ``data`` is its canonical form.

    Does not check the signature (see ``verify_manifest``) nor the file paths'
    safety (the container reader does that, with the same rules as for members).
    """
    if len(data) > MAX_MANIFEST_SIZE:
        raise ManifestError("manifest is too large")
    try:
        text = data.decode("utf-8")
        obj = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_no_float,
            parse_constant=_no_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, ManifestError):
            raise
        raise ManifestError("manifest is not valid UTF-8 JSON") from exc
    # Every string and the nesting depth are checked once, here, before any field
    # is looked at: what follows may then assume encodable text and bounded depth.
    _check_canonical_value(obj, 0)
    top = _keys(obj, _TOP_KEYS, "")
    if top["v"] != VERSION or isinstance(top["v"], bool):
        raise ManifestError(f"unsupported manifest version {top['v']!r}")
    sender_obj = _keys(top["sender"], _SENDER_KEYS, "sender")
    try:
        bundle = KeyBundle.from_json(sender_obj["bundle"])
    except (BundleError, ValueError, TypeError) as exc:
        # ValueError/TypeError: the bundle parser was written for the relay's
        # answers; here it meets a hostile sender's bytes, so nothing may escape.
        raise ManifestError(f"manifest sender bundle is invalid: {exc}") from exc
    if _key(sender_obj["signing_key"], "sender.signing_key") != bundle.signing_key:
        raise ManifestError("manifest sender signing key differs from the sender's key bundle")
    if sender_obj["handle"] != bundle.handle:
        raise ManifestError("manifest sender handle differs from the sender's key bundle")
    recipients_obj = top["recipients"]
    if not isinstance(recipients_obj, list) or not 1 <= len(recipients_obj) <= 1000:
        raise ManifestError("manifest recipients must be a list of 1 to 1000 entries")
    recipients: list[RecipientEntry] = []
    for i, r in enumerate(recipients_obj):
        ro = _keys(r, _RECIPIENT_KEYS, f"recipients[{i}]")
        recipients.append(
            RecipientEntry(
                handle=_str(ro["handle"], f"recipients[{i}].handle", max_chars=64),
                signing_key=_key(ro["signing_key"], f"recipients[{i}].signing_key"),
            )
        )
    if len({r.signing_key for r in recipients}) != len(recipients):
        raise ManifestError("manifest lists the same recipient twice")
    files_obj = top["files"]
    if not isinstance(files_obj, list) or len(files_obj) > MAX_FILES:
        raise ManifestError(f"manifest files must be a list of at most {MAX_FILES} entries")
    files: list[FileEntry] = []
    for i, f in enumerate(files_obj):
        fo = _keys(f, _FILE_KEYS, f"files[{i}]")
        path = _str(fo["path"], f"files[{i}].path")
        if unicodedata.normalize("NFC", path) != path:
            raise ManifestError(f"manifest path {path!r} is not in Unicode NFC form")
        files.append(
            FileEntry(
                path=path,
                size=_int(fo["size"], f"files[{i}].size"),
                sha256=_hex(fo["sha256"], 32, f"files[{i}].sha256"),
                media_type=_media_type(fo["media_type"], f"files[{i}].media_type"),
            )
        )
    dicom = top["dicom"]
    if not isinstance(dicom, dict):
        raise ManifestError("manifest field dicom must be a JSON object")
    manifest = Manifest(
        transfer_id=_hex(top["transfer_id"], TRANSFER_ID_SIZE, "transfer_id"),
        created=_int(top["created"], "created"),
        sender=bundle,
        recipients=tuple(recipients),
        files=tuple(files),
        note=_str(top["note"], "note", max_chars=MAX_NOTE_CHARS),
        dicom=dicom,
    )
    if manifest.canonical_bytes() != data:
        raise ManifestError("manifest is not in canonical form; it may have been tampered with")
    return manifest


def verify_manifest(data: bytes, signature: bytes) -> Manifest:
    """Parse ``data`` and check ``signature`` with the sender key it names.

    Proves only that whoever holds that key signed it; whether that key is the
    pinned key of a trusted contact is the caller's question (client/contacts).
    """
    manifest = parse_manifest(data)
    if len(signature) != SIGNATURE_SIZE:
        raise SignatureError("the manifest signature is not 64 bytes; the transfer is damaged")
    try:
        VerifyKey(manifest.sender.signing_key).verify(signature_message(data), signature)
    except (BadSignatureError, ValueError) as exc:
        raise SignatureError(
            f"the manifest signature does not verify with the key of sender "
            f"{manifest.sender.handle!r}; the transfer may have been tampered with"
        ) from exc
    try:
        manifest.sender.verify()
    except (BundleError, ValueError, TypeError) as exc:
        raise SignatureError(f"the sender's key bundle in the manifest is invalid: {exc}") from exc
    return manifest


def recipient_entries(bundles: Sequence[KeyBundle]) -> tuple[RecipientEntry, ...]:
    return tuple(RecipientEntry(handle=b.handle, signing_key=b.signing_key) for b in bundles)
