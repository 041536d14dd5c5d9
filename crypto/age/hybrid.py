"""The native mlkem768x25519 post-quantum recipient type (``age1pq1…`` / ``AGE-SECRET-KEY-PQ-1…``).

The file key is sealed with HPKE (RFC 9180) in base mode, single shot, with
the MLKEM768-X25519 hybrid KEM (X-Wing, as in draft-ietf-hpke-pq-03 and
filippo.io/hpke-pq), HKDF-SHA256 and ChaCha20Poly1305. docs/format-hybrid.md
describes the construction step by step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from nacl.bindings import crypto_scalarmult, crypto_scalarmult_base

from . import bech32
from .errors import HeaderError, RecipientError
from .format import Stanza
from .primitives import FILE_KEY_SIZE, TAG_SIZE, b64decode, b64encode, hmac_sha256

STANZA_TYPE = "mlkem768x25519"
_INFO = b"age-encryption.org/mlkem768x25519"
_RECIPIENT_HRP = "age1pq"
_IDENTITY_HRP = "age-secret-key-pq-"
_BODY_SIZE = FILE_KEY_SIZE + TAG_SIZE

SEED_SIZE = 32
_MLKEM_SEED_SIZE = 64  # d || z for ML-KEM.KeyGen_internal
_MLKEM_PUBLIC_SIZE = 1184
_MLKEM_CIPHERTEXT_SIZE = 1088
_X25519_SIZE = 32
PUBLIC_KEY_SIZE = _MLKEM_PUBLIC_SIZE + _X25519_SIZE  # 1216
ENC_SIZE = _MLKEM_CIPHERTEXT_SIZE + _X25519_SIZE  # 1120

# The X-Wing combiner label, the six ASCII bytes \.//^\ (5c2e2f2f5e5c).
_XWING_LABEL = b"\\.//^\\"

# RFC 9180 Section 5.1: suite_id = "HPKE" || kem_id || kdf_id || aead_id, with
# kem_id 0x647a (MLKEM768-X25519), kdf_id 0x0001 (HKDF-SHA256) and aead_id
# 0x0003 (ChaCha20Poly1305).
_SUITE_ID = b"HPKE" + bytes.fromhex("647a") + bytes.fromhex("0001") + bytes.fromhex("0003")
_HPKE_VERSION = b"HPKE-v1"
_MODE_BASE = b"\x00"
_AEAD_KEY_SIZE = 32
_AEAD_NONCE_SIZE = 12


class _LowOrderError(Exception):
    """The X25519 result is all zero: the peer's share is a low-order point."""


def _x25519(secret: bytes, public: bytes) -> bytes:
    # An all-zero result means a low-order point, so the X25519 half of the
    # shared secret would be known to anyone. hpke-pq (through Go's crypto/ecdh)
    # refuses it, and the CCTV vectors expect a hard failure, not "no match".
    # libsodium refuses to return it (RuntimeError); check both ways.
    try:
        shared = crypto_scalarmult(secret, public)
    except RuntimeError:
        shared = bytes(32)
    if shared == bytes(32):
        raise _LowOrderError
    return shared


def _combine(ss_pq: bytes, ss_t: bytes, ct_t: bytes, ek_t: bytes) -> bytes:
    # X-Wing / QSF combiner. The ML-KEM ciphertext and key are not hashed: ML-KEM
    # is ciphertext-bound on its own, and ct_t and ek_t bind the X25519 half.
    import hashlib  # only for hybrid keys: it loads OpenSSL's _hashlib (primitives)

    return hashlib.sha3_256(ss_pq + ss_t + ct_t + ek_t + _XWING_LABEL).digest()


def _expand(seed: bytes) -> tuple[MLKEM768PrivateKey, bytes, bytes]:
    """expandKey: the ML-KEM key, the X25519 secret and the 1216-byte public key."""
    import hashlib  # only for hybrid keys: it loads OpenSSL's _hashlib (primitives)

    full = hashlib.shake_256(seed).digest(_MLKEM_SEED_SIZE + _X25519_SIZE)
    mlkem = MLKEM768PrivateKey.from_seed_bytes(full[:_MLKEM_SEED_SIZE])
    x_secret = full[_MLKEM_SEED_SIZE:]
    public = mlkem.public_key().public_bytes_raw() + crypto_scalarmult_base(x_secret)
    return mlkem, x_secret, public


def _labeled_extract(salt: bytes, label: bytes, ikm: bytes) -> bytes:
    # HKDF-Extract is HMAC(salt, ikm); an empty salt and a HashLen zero salt
    # give the same HMAC key, as RFC 5869 requires.
    return hmac_sha256(salt, _HPKE_VERSION + _SUITE_ID + label + ikm)


def _labeled_expand(prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled_info = length.to_bytes(2, "big") + _HPKE_VERSION + _SUITE_ID + label + info
    return HKDFExpand(algorithm=hashes.SHA256(), length=length, info=labeled_info).derive(prk)


def _key_schedule(shared_secret: bytes) -> tuple[bytes, bytes]:
    """RFC 9180 KeySchedule in mode_base (empty psk and psk_id): (key, base_nonce)."""
    psk_id_hash = _labeled_extract(b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(b"", b"info_hash", _INFO)
    context = _MODE_BASE + psk_id_hash + info_hash
    secret = _labeled_extract(shared_secret, b"secret", b"")
    key = _labeled_expand(secret, b"key", context, _AEAD_KEY_SIZE)
    base_nonce = _labeled_expand(secret, b"base_nonce", context, _AEAD_NONCE_SIZE)
    return key, base_nonce


class HybridRecipient:
    pq = True

    def __init__(self, public_key: bytes) -> None:
        if len(public_key) != PUBLIC_KEY_SIZE:
            raise RecipientError("an mlkem768x25519 public key is 1216 bytes")
        try:
            # Loading runs the FIPS 203 encapsulation key check (coefficients
            # reduced modulo q), so a malformed key fails here, not in wrap().
            self._mlkem = MLKEM768PublicKey.from_public_bytes(public_key[:_MLKEM_PUBLIC_SIZE])
        except ValueError as exc:
            raise RecipientError("invalid mlkem768x25519 public key: bad ML-KEM-768 key") from exc
        self.public_key = public_key
        self._x_public = public_key[_MLKEM_PUBLIC_SIZE:]

    @classmethod
    def parse(cls, text: str) -> HybridRecipient:
        try:
            hrp, data = bech32.decode(text)
        except ValueError as exc:
            raise RecipientError(f"malformed post-quantum recipient: {exc}") from exc
        if hrp != _RECIPIENT_HRP or text != text.lower():
            raise RecipientError("malformed post-quantum recipient: expected an age1pq1… string")
        return cls(data)

    def __str__(self) -> str:
        return bech32.encode(_RECIPIENT_HRP, self.public_key)

    def __repr__(self) -> str:
        return f"HybridRecipient({self})"

    def wrap(self, file_key: bytes, rand: Callable[[int], bytes]) -> list[Stanza]:
        # The X25519 ephemeral secret comes from rand. The ML-KEM-768 half
        # cannot: pyca/cryptography's encapsulate() draws its 32-byte message
        # from OpenSSL's CSPRNG and has no derandomized variant, and a
        # hand-written K-PKE.Encrypt would not be constant time.
        ephemeral = rand(_X25519_SIZE)
        ct_t = crypto_scalarmult_base(ephemeral)
        try:
            ss_t = _x25519(ephemeral, self._x_public)
        except _LowOrderError:
            raise RecipientError(
                "invalid mlkem768x25519 public key: the X25519 half is a low-order point"
            ) from None
        ss_pq, ct_pq = self._mlkem.encapsulate()
        shared = _combine(ss_pq, ss_t, ct_t, self._x_public)
        key, nonce = _key_schedule(shared)
        # Single-shot SealBase: sequence number 0, so the nonce is base_nonce.
        body = ChaCha20Poly1305(key).encrypt(nonce, file_key, b"")
        return [Stanza(STANZA_TYPE, (b64encode(ct_pq + ct_t),), body)]


class HybridIdentity:
    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_SIZE:
            raise RecipientError("an mlkem768x25519 secret key is 32 bytes")
        self._seed = seed
        self._mlkem, self._x_secret, self.public_key = _expand(seed)
        self._x_public = self.public_key[_MLKEM_PUBLIC_SIZE:]

    @classmethod
    def generate(cls, rand: Callable[[int], bytes]) -> HybridIdentity:
        return cls(rand(SEED_SIZE))

    @classmethod
    def parse(cls, text: str) -> HybridIdentity:
        try:
            hrp, data = bech32.decode(text)
        except ValueError as exc:
            raise RecipientError(f"malformed post-quantum identity: {exc}") from exc
        if hrp != _IDENTITY_HRP:
            raise RecipientError("malformed post-quantum identity: expected AGE-SECRET-KEY-PQ-1…")
        return cls(data)

    def secret_bytes(self) -> bytes:
        return self._seed

    def encode(self) -> str:
        return bech32.encode(_IDENTITY_HRP, self._seed).upper()

    def recipient(self) -> HybridRecipient:
        return HybridRecipient(self.public_key)

    def __repr__(self) -> str:
        return f"HybridIdentity(recipient={self.recipient()})"

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        for s in stanzas:
            if s.type != STANZA_TYPE:
                continue
            if len(s.args) != 1:
                raise HeaderError("invalid mlkem768x25519 stanza: expected exactly one argument")
            try:
                enc = b64decode(s.args[0])
            except ValueError as exc:
                raise HeaderError(f"invalid mlkem768x25519 stanza enc: {exc}") from exc
            if len(enc) != ENC_SIZE:
                raise HeaderError("invalid mlkem768x25519 stanza: enc is not 1120 bytes")
            # Checked before decrypting: a body of another length could
            # otherwise serve as a partitioning oracle.
            if len(s.body) != _BODY_SIZE:
                raise HeaderError("invalid mlkem768x25519 stanza: the body is not 32 bytes")
            ct_pq, ct_t = enc[:_MLKEM_CIPHERTEXT_SIZE], enc[_MLKEM_CIPHERTEXT_SIZE:]
            try:
                ss_t = _x25519(self._x_secret, ct_t)
            except _LowOrderError:
                raise HeaderError(
                    "mlkem768x25519 share is a low-order point; the file may be tampered with"
                ) from None
            # ML-KEM decapsulation never fails on a well-sized ciphertext
            # (implicit rejection): a stanza for someone else, or a corrupted
            # one, just yields a key under which the AEAD tag does not verify.
            ss_pq = self._mlkem.decapsulate(ct_pq)
            shared = _combine(ss_pq, ss_t, ct_t, self._x_public)
            key, nonce = _key_schedule(shared)
            try:
                return ChaCha20Poly1305(key).decrypt(nonce, s.body, b"")
            except InvalidTag:
                continue
        return None
