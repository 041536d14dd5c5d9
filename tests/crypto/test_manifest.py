"""The manifest: canonical form, strict parsing, signature and its domain separation."""

from __future__ import annotations

import json

import pytest

from sealdrop.crypto.bundle import KeyBundle
from sealdrop.crypto.errors import ManifestError, SignatureError
from sealdrop.crypto.manifest import (
    SIGNATURE_CONTEXT,
    Manifest,
    canonical_json,
    parse_manifest,
    sign_manifest,
    verify_manifest,
)
from tests.crypto.transferkit import entry, identity, make_manifest, recipients_of, sign_with

ALICE = identity("alice.clinic")
BOB = identity("bob.lab")
CAROL = identity("carol.lab")


def manifest(**kw: object) -> Manifest:
    files = [entry("case/ct/IM0001.dcm", b"dicom"), entry("note ü.pdf", b"")]
    return make_manifest(files, ALICE, recipients_of(BOB, CAROL), note="Crown 36, A2", **kw)


def test_round_trip() -> None:
    m = manifest()
    data, sig = sign_manifest(m, ALICE.signing_key)
    assert verify_manifest(data, sig) == m


def test_canonical_form() -> None:
    data = manifest().canonical_bytes()
    obj = json.loads(data)
    again = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert data == again.encode()
    assert " ü".encode() in data  # UTF-8, not \\u escapes
    assert b"\n" not in data and b": " not in data
    assert list(obj) == sorted(obj)
    assert set(obj) == {
        "v", "transfer_id", "created", "sender", "recipients", "files", "note", "dicom"
    }
    assert obj["files"][0] == {
        "media_type": "application/octet-stream",
        "path": "case/ct/IM0001.dcm",
        "sha256": entry("x", b"dicom").sha256.hex(),
        "size": 5,
    }
    assert obj["sender"]["signing_key"] == obj["sender"]["bundle"]["signing_key"]
    assert [r["handle"] for r in obj["recipients"]] == ["bob.lab", "carol.lab"]


def test_non_canonical_bytes_are_refused() -> None:
    data = manifest().canonical_bytes()
    pretty = json.dumps(json.loads(data), indent=1, sort_keys=True).encode()
    with pytest.raises(ManifestError, match="canonical"):
        parse_manifest(pretty)
    unsorted = json.dumps(json.loads(data), separators=(",", ":"), ensure_ascii=False).encode()
    if unsorted != data:
        with pytest.raises(ManifestError, match="canonical"):
            parse_manifest(unsorted)
    escaped = json.dumps(json.loads(data), sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(ManifestError, match="canonical"):
        parse_manifest(escaped)


def test_floats_are_refused() -> None:
    with pytest.raises(ManifestError, match="integers"):
        canonical_json({"a": 1.5})
    data = manifest().canonical_bytes().replace(b'"created":1718000000', b'"created":1718000000.0')
    with pytest.raises(ManifestError, match="integers"):
        parse_manifest(data)


def test_duplicate_keys_are_refused() -> None:
    data = manifest().canonical_bytes().replace(b'"dicom":{}', b'"dicom":{},"dicom":{}', 1)
    with pytest.raises(ManifestError, match="duplicate"):
        parse_manifest(data)


@pytest.mark.parametrize("field", ["v", "note", "files", "dicom"])
def test_missing_fields_are_refused(field: str) -> None:
    obj = json.loads(manifest().canonical_bytes())
    del obj[field]
    with pytest.raises(ManifestError):
        parse_manifest(canonical_json(obj))


def test_unknown_field_is_refused() -> None:
    obj = json.loads(manifest().canonical_bytes())
    obj["extra"] = 1
    with pytest.raises(ManifestError, match="unexpected"):
        parse_manifest(canonical_json(obj))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("transfer_id",), "00" * 15),
        (("transfer_id",), "AA" * 16),
        (("created",), -1),
        (("created",), True),
        (("files", 0, "size"), -1),
        (("files", 0, "sha256"), "zz" * 32),
        (("files", 0, "media_type"), "nonsense"),
        (("files", 0, "path"), "cafe\u0301"),  # NFD
        (("v",), 2),
        (("recipients",), []),
        (("sender", "signing_key"), "A" * 44),
    ],
)
def test_bad_values_are_refused(path: tuple[object, ...], value: object) -> None:
    obj = json.loads(manifest().canonical_bytes())
    target = obj
    for p in path[:-1]:
        target = target[p]  # type: ignore[index]
    target[path[-1]] = value  # type: ignore[index]
    with pytest.raises(ManifestError):
        parse_manifest(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())


def test_signature_by_another_key_is_refused() -> None:
    data, sig = sign_with(manifest(), CAROL)
    with pytest.raises(SignatureError, match="alice.clinic"):
        verify_manifest(data, sig)


def test_sign_refuses_a_foreign_sender() -> None:
    with pytest.raises(ManifestError):
        sign_manifest(manifest(), CAROL.signing_key)


def test_edited_manifest_breaks_the_signature() -> None:
    data, sig = sign_manifest(manifest(), ALICE.signing_key)
    edited = data.replace(b"Crown 36", b"Crown 46")
    with pytest.raises(SignatureError):
        verify_manifest(edited, sig)


def test_recipient_removed_or_added_breaks_the_signature() -> None:
    data, sig = sign_manifest(manifest(), ALICE.signing_key)
    obj = json.loads(data)
    removed = dict(obj, recipients=obj["recipients"][:1])
    with pytest.raises(SignatureError):
        verify_manifest(canonical_json(removed), sig)
    added = dict(obj, recipients=obj["recipients"] + json.loads(
        make_manifest([], ALICE, recipients_of(ALICE)).canonical_bytes())["recipients"])
    with pytest.raises(SignatureError):
        verify_manifest(canonical_json(added), sig)


def test_sender_swapped_for_someone_else_is_refused() -> None:
    # Re-attribute Alice's signed manifest to Carol: Carol's key does not verify it.
    data, sig = sign_manifest(manifest(), ALICE.signing_key)
    obj = json.loads(data)
    obj["sender"] = json.loads(make_manifest([], CAROL, recipients_of(BOB)).canonical_bytes())[
        "sender"
    ]
    with pytest.raises(SignatureError):
        verify_manifest(canonical_json(obj), sig)


def test_sender_key_must_match_its_bundle() -> None:
    obj = json.loads(manifest().canonical_bytes())
    obj["sender"]["signing_key"] = obj["recipients"][0]["signing_key"]
    with pytest.raises(ManifestError, match="differs"):
        parse_manifest(canonical_json(obj))


def test_forged_sender_bundle_is_refused() -> None:
    forged = KeyBundle(
        handle="alice.clinic",
        signing_key=ALICE.signing_public_key,
        x25519=CAROL.bundle.x25519,  # the attacker's encryption key under Alice's name
        pq=CAROL.bundle.pq,
        created=ALICE.bundle.created + 1,
        signature=ALICE.bundle.signature,
    )
    m = manifest(sender_bundle=forged)
    data = m.canonical_bytes()
    sig = ALICE.signing_key.sign(SIGNATURE_CONTEXT + data).signature
    with pytest.raises(SignatureError, match="bundle"):
        verify_manifest(data, sig)


def test_signature_is_domain_separated() -> None:
    data = manifest().canonical_bytes()
    bare = ALICE.signing_key.sign(data).signature  # a signature over the bytes alone
    with pytest.raises(SignatureError):
        verify_manifest(data, bare)
    with pytest.raises(SignatureError):
        verify_manifest(data, bare[:63])


def test_bundle_signature_cannot_pass_as_manifest_signature() -> None:
    data = ALICE.bundle.signed_message()
    with pytest.raises(ManifestError):
        verify_manifest(data, ALICE.bundle.signature)


def test_too_large_and_not_json() -> None:
    with pytest.raises(ManifestError):
        parse_manifest(b"{" * (17 * 1024 * 1024))
    with pytest.raises(ManifestError):
        parse_manifest(b"\xff\xfe")
    with pytest.raises(ManifestError):
        parse_manifest(b"[" * 100000 + b"]" * 100000)


def test_dicom_summary_is_signed_and_float_free() -> None:
    m = make_manifest([], ALICE, recipients_of(BOB), note="")
    m = Manifest(**{**{f: getattr(m, f) for f in m.__dataclass_fields__}, "dicom": {"series": 2}})
    data, sig = sign_manifest(m, ALICE.signing_key)
    assert verify_manifest(data, sig).dicom == {"series": 2}
    bad = Manifest(**{**{f: getattr(m, f) for f in m.__dataclass_fields__}, "dicom": {"x": 0.5}})
    with pytest.raises(ManifestError):
        sign_manifest(bad, ALICE.signing_key)
