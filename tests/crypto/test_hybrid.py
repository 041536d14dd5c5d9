"""The mlkem768x25519 (X-Wing) hybrid post-quantum recipient type."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

import sealdrop.crypto.age as age
from sealdrop.crypto.age import format as fmt
from sealdrop.crypto.age.errors import HeaderError, NoIdentityMatchError, RecipientError
from sealdrop.crypto.age.format import Stanza
from sealdrop.crypto.age.hybrid import ENC_SIZE, PUBLIC_KEY_SIZE, HybridIdentity, HybridRecipient
from sealdrop.crypto.age.primitives import b64decode, b64encode
from sealdrop.crypto.age.x25519 import X25519Identity
from tests.crypto import cctv
from tests.crypto.agetools import det_rand

# The worked example in the C2SP age spec (age.md, mlkem768x25519 section):
# an independent known answer for seed expansion and PrivateKeyToPublicKey.
SPEC_IDENTITY = "AGE-SECRET-KEY-PQ-1XX76JRALNLXDMEW0CRK45QMCCH4X06SE84UN3VPM33W6HWDX0H3SK3ZQFR"
SPEC_RECIPIENT = (
    "age1pq1x34nzsvr0rxjsgdn8zgyhfe8j7ceq5r9rdelkjuh3y235jzxshfg87pzf5zrqtzdxz95paef6caq5"
    "aapdmwjjqpjfdyxnzr2zampc3uxy0dg4z2n2gm9su72p0pc3u0jvev55l694v78snxg3yzvcl7yda0eyytqj"
    "6a0ec477lnhcy5hzpz4zq3pxanve4cn62gqj3pjy5lqj9c6kyj4v2z8alktn8zh99970x79gjkv7522hv9kf"
    "z35zsnxhsx8wwtmu9cy3ftzjgwcp4sshn3llnylnpdsyz5jm72vefv4x5vfwytrefxg4wq3mv42wcrvkj742"
    "479zrxzpvp2p3e9fed9f0739vcu80r7ma28qfhnvlv4gfzel9q654dj3zmuvvz893azhxdvs9fxd0r7jzchz"
    "cfcs5mkyyjxhw0n2z6dvp9yn9qfdp29h0azxqyjw6v7fhyuzj7zel0uq6j9rd7wgrpz7mf5dnj43jwsgvrc8"
    "qcnhy7tu6dkdujuxzkp9xj43xe8h92ktre2a3u3s8mm5mrp9nr9pwkgtz4mdlq9hgn4fps4k57ff6wddn2fy"
    "23t47sm20r8km8sd2pcyyafnet8f0dajsrlyjeah4n3mssr6aseevuuskdvq5lzguyvpgwpta742c6698vgu"
    "tzqgny8usfg0w2he7kq5vyxjd0f9hqg8xk26y9e4th0gezq92q4cpp5p2y9hf5f2cje5l0c3sa3a2qxmm38p"
    "xxvhxh99yzmfz0zk7r2s64nnwjhkfgfr3gf8xnmppcgmaykvh5sh6g7vk9790rf8ws0axmr2t7z8aae5fq20"
    "29uvcn2ghgt4fu4wgwdc0k0cz52qkvwmuzj8p8k5jgf3xzk5zmrkavjekjrpeq408xz3zxazwkc6tyfmhayr"
    "kfpjhwtz5mp8j8guqe43k2q6m2kte03vrw27y3wmqyu5etmt9dnkwcnnpmu9gz9dekfhdevf42ucshphnrk3"
    "8ra6hx8w5f8q5ru0xdhrjxmwqf6cused7zc5xvq43r0zscjglpwlptpwydhqw64xz7ptjdyeyzpq2zkxtmzg"
    "29gzjpvzva4d3l0cenn9xs297wf4y4ukwrunf57xj6pm7nvrkwvtrt8hwcmgv8x7ajw7258ugf9wvkmk4052"
    "ekg87tw5vnx8nq2swyzv77v8yqlwsenvamr0zssknwts8rrhfuwj7ykysnq9jxy0uv3kuyt22djszjdtvpz6"
    "d0s0kwh8ryynddzud92emeyvvyqktd0jtj7rvvg5gch25v8smlvny3kvn5gagyz475ze2y6q466xqmz2n3hs"
    "77lddeqyta2nch5k2u5yacuk9ywnwfdzvyejnucz724hj77hrrmakm7pr3kxsrxq22ejexlud9fy2kdqmkg5"
    "yncz7jm5wv2qjk5w5kvcpqsry2yqffh2la52dxfjkjq5rzhjzeyn6dupn0qwtyv7s4lwg3xdarsdlwe2y3tu"
    "jy480y7z39q259fzx6jhd2j0f5hagqpcpees7hzc2yrk5cy788uk3s7qvp5cpepx24gvws3m2g433exgwppn"
    "kjscec8qu4y9z9r7vccexjcjaen42245lmgmxmuavg9alej92322gvvyy2t6267v09ch64y0m53jff0vjj96"
    "s0ypk60hr3jw4myd6m5hpn3xjstx7tl2szhpr5qe8jj08ydjc4wy2rch2fhuy3pdfjax5awe9j99ly5hkntz"
    "z9fe5zatgjvzdd0kgtxs25njnajyf6ssekp7gelxquusn4pt25czh3scj68kq79wdn5tgm6yvm9nzavrg043"
    "x3msnygf8dweknw5jmqd0uvny6ttsn09508k0c55zfnegrm9efhxpfqdkmhh6gjtqmwze9pyyzk3tlhl53k2"
    "ykx3qheyty7saeq0d3fzv49zc0k"
)

# The identity of the CCTV "hybrid*" vectors, and the SHA-256 of the recipient
# string it must keep deriving (pinned: a change would orphan every key).
CCTV_IDENTITY = "AGE-SECRET-KEY-PQ-1HZLGZUPT4ETPKDEV8HSGFDCYZ4E522W0A7PU2LHT8EH9W6YLNC3SW78XKG"
CCTV_RECIPIENT_SHA256 = "3391361ba4a3d211173b3161b1460630cee790d95b732cd447313243226cb082"
CCTV_RECIPIENT_PREFIX = "age1pq1z4f9zeapqujpskesfxhujkg525ymk8mep"

FILE_KEY = bytes(range(16))

# X25519 low-order points (RFC 7748 Section 6.1 and the usual blocklist):
# every one makes the X25519 shared secret all zero.
LOW_ORDER = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


def _identity(tag: str) -> HybridIdentity:
    return HybridIdentity.generate(det_rand(f"hybrid-test-{tag}"))


def _stanza(identity: HybridIdentity, file_key: bytes = FILE_KEY) -> Stanza:
    (s,) = identity.recipient().wrap(file_key, os.urandom)
    return s


def _with(s: Stanza, *, args: tuple[str, ...] | None = None, body: bytes | None = None) -> Stanza:
    return Stanza(s.type, s.args if args is None else args, s.body if body is None else body)


def _enc(s: Stanza) -> bytes:
    return b64decode(s.args[0])


def _with_enc(s: Stanza, enc: bytes) -> Stanza:
    return _with(s, args=(b64encode(enc),))


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def _roundtrip(
    plain: bytes, recipients: list[HybridRecipient], identities: list[age.Identity]
) -> bytes:
    enc = io.BytesIO()
    age.encrypt(io.BytesIO(plain), enc, recipients)
    out = io.BytesIO()
    age.decrypt(io.BytesIO(enc.getvalue()), out, identities)
    return out.getvalue()


# --- known answers ---------------------------------------------------------


def test_spec_example_identity_to_recipient() -> None:
    assert str(HybridIdentity.parse(SPEC_IDENTITY).recipient()) == SPEC_RECIPIENT


def test_cctv_identity_to_recipient_is_stable() -> None:
    recipient = str(HybridIdentity.parse(CCTV_IDENTITY).recipient())
    assert recipient.startswith(CCTV_RECIPIENT_PREFIX)
    assert hashlib.sha256(recipient.encode()).hexdigest() == CCTV_RECIPIENT_SHA256


def test_cctv_hybrid_vector_unwraps_to_its_file_key() -> None:
    v = cctv.load(cctv.VECTOR_DIR / "hybrid")
    header, _ = fmt.parse(io.BytesIO(v.body))
    identity = HybridIdentity.parse(CCTV_IDENTITY)
    assert v.file_key is not None
    assert identity.unwrap(header.stanzas) == v.file_key
    # The vector's stanza, reparsed, re-marshals byte for byte.
    assert fmt.marshal_without_mac(header.stanzas) == header.mac_input


def test_cctv_hybrid_vector_is_not_for_another_identity() -> None:
    v = cctv.load(cctv.VECTOR_DIR / "hybrid")
    header, _ = fmt.parse(io.BytesIO(v.body))
    assert _identity("other").unwrap(header.stanzas) is None


# --- keys and strings ------------------------------------------------------


def test_sizes() -> None:
    identity = _identity("sizes")
    assert len(identity.secret_bytes()) == 32
    assert len(identity.public_key) == PUBLIC_KEY_SIZE == 1216
    s = _stanza(identity)
    assert s.type == "mlkem768x25519"
    assert len(s.args) == 1
    assert len(_enc(s)) == ENC_SIZE == 1120
    assert len(s.body) == 32


def test_identity_encode_parse_roundtrip() -> None:
    identity = _identity("roundtrip")
    text = identity.encode()
    assert text.startswith("AGE-SECRET-KEY-PQ-1")
    assert text == text.upper()
    again = HybridIdentity.parse(text)
    assert again.secret_bytes() == identity.secret_bytes()
    assert again.public_key == identity.public_key
    # Bech32 is case-insensitive as a whole; all-lowercase is the same key.
    assert HybridIdentity.parse(text.lower()).secret_bytes() == identity.secret_bytes()


def test_recipient_str_parse_roundtrip() -> None:
    recipient = _identity("recipient").recipient()
    text = str(recipient)
    assert text.startswith("age1pq1")
    assert text == text.lower()
    assert HybridRecipient.parse(text).public_key == recipient.public_key
    assert str(HybridRecipient.parse(text)) == text


def test_generate_draws_its_seed_from_rand() -> None:
    seeds: list[int] = []

    def rand(n: int) -> bytes:
        seeds.append(n)
        return bytes([7]) * n

    identity = HybridIdentity.generate(rand)
    assert seeds == [32]
    assert identity.secret_bytes() == bytes([7]) * 32
    assert HybridIdentity(bytes([7]) * 32).public_key == identity.public_key


def test_keys_dispatch_to_hybrid_types() -> None:
    identity = age.parse_identity(CCTV_IDENTITY)
    assert isinstance(identity, HybridIdentity)
    recipient = age.parse_recipient(str(identity.recipient()))
    assert isinstance(recipient, HybridRecipient)
    assert recipient.pq is True


@pytest.mark.parametrize(
    "text",
    [
        "",
        "age1pq1",
        # An X25519 recipient: right checksum, wrong HRP.
        "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj",
    ],
)
def test_recipient_parse_rejects_garbage(text: str) -> None:
    with pytest.raises(RecipientError):
        HybridRecipient.parse(text)


def test_recipient_parse_rejects_uppercase_and_mixed_case() -> None:
    text = str(_identity("case").recipient())
    with pytest.raises(RecipientError):
        HybridRecipient.parse(text.upper())
    mixed = text[:10] + text[10:20].upper() + text[20:]
    with pytest.raises(RecipientError):
        HybridRecipient.parse(mixed)


def test_recipient_parse_rejects_bad_checksum() -> None:
    text = str(_identity("checksum").recipient())
    last = "q" if text[-1] != "q" else "p"
    with pytest.raises(RecipientError):
        HybridRecipient.parse(text[:-1] + last)


@pytest.mark.parametrize("size", [0, 32, 1184, 1215, 1217, 2432])
def test_recipient_rejects_wrong_length(size: int) -> None:
    from sealdrop.crypto.age import bech32

    with pytest.raises(RecipientError):
        HybridRecipient(bytes(size))
    with pytest.raises(RecipientError):
        HybridRecipient.parse(bech32.encode("age1pq", bytes(size)))


def test_recipient_rejects_invalid_mlkem_key() -> None:
    # 0xff.. decodes to coefficients >= q: FIPS 203's encapsulation key check fails.
    with pytest.raises(RecipientError):
        HybridRecipient(b"\xff" * 1184 + bytes(32))


@pytest.mark.parametrize("point", LOW_ORDER)
def test_wrap_rejects_low_order_x25519_recipient(point: bytes) -> None:
    public = _identity("low").public_key[:1184] + point
    with pytest.raises(RecipientError):
        HybridRecipient(public).wrap(FILE_KEY, os.urandom)


def test_identity_parse_rejects_wrong_hrp_and_lengths() -> None:
    from sealdrop.crypto.age import bech32

    x25519 = X25519Identity(bytes(range(32))).encode()
    with pytest.raises(RecipientError):
        HybridIdentity.parse(x25519)
    with pytest.raises(RecipientError):
        HybridIdentity.parse(str(_identity("hrp").recipient()))
    for size in (0, 31, 33, 64):
        with pytest.raises(RecipientError):
            HybridIdentity.parse(bech32.encode("age-secret-key-pq-", bytes(size)).upper())
        with pytest.raises(RecipientError):
            HybridIdentity(bytes(size))
    text = _identity("mixed").encode()
    with pytest.raises(RecipientError):
        HybridIdentity.parse(text[:25] + text[25:].lower())


def test_secrets_stay_out_of_repr_and_errors() -> None:
    identity = _identity("secret")
    text = identity.encode()
    secret_hex = identity.secret_bytes().hex()
    for shown in (repr(identity), str(identity)):
        assert text not in shown and text.lower() not in shown
        assert secret_hex not in shown
    broken = text[:-1] + ("Q" if text[-1] != "Q" else "P")
    with pytest.raises(RecipientError) as info:
        HybridIdentity.parse(broken)
    assert broken[20:] not in str(info.value)
    assert broken[20:].lower() not in str(info.value)


# --- wrap --------------------------------------------------------------------


def test_wrap_x25519_half_is_deterministic_in_rand() -> None:
    recipient = _identity("det").recipient()
    calls: list[int] = []

    def counting(seed: str) -> Callable[[int], bytes]:
        inner = det_rand(seed)

        def rand(n: int) -> bytes:
            calls.append(n)
            return inner(n)

        return rand

    a = _enc(recipient.wrap(FILE_KEY, counting("fixed"))[0])
    b = _enc(recipient.wrap(FILE_KEY, counting("fixed"))[0])
    # The X25519 ephemeral share is the only part drawn from rand, once, 32 bytes.
    assert calls == [32, 32]
    assert a[1088:] == b[1088:]
    # The ML-KEM half is randomized inside pyca/cryptography (OpenSSL CSPRNG);
    # see the comment in HybridRecipient.wrap.
    assert a[:1088] != b[:1088]


def test_wrap_fresh_stanza_every_time() -> None:
    recipient = _identity("fresh").recipient()
    a = recipient.wrap(FILE_KEY, os.urandom)[0]
    b = recipient.wrap(FILE_KEY, os.urandom)[0]
    assert a.args != b.args
    assert a.body != b.body


# --- unwrap: what the spec says to ignore, reject or treat as not ours ---------


def test_unwrap_ignores_other_stanza_types() -> None:
    identity = _identity("ignore")
    s = _stanza(identity)
    others = [
        Stanza("X25519", s.args, s.body),
        Stanza("MLKEM768X25519", s.args, s.body),  # type is case-sensitive
        Stanza("mlkem768x25519-grease", (), b""),
        Stanza("scrypt", ("salt", "18"), b"x"),
    ]
    assert identity.unwrap(others) is None
    assert identity.unwrap([*others, s]) == FILE_KEY


def test_unwrap_finds_our_stanza_among_several() -> None:
    ours, theirs = _identity("ours"), _identity("theirs")
    stanzas = [_stanza(theirs), _stanza(theirs), _stanza(ours)]
    assert ours.unwrap(stanzas) == FILE_KEY
    assert _identity("nobody").unwrap(stanzas) is None


@pytest.mark.parametrize("args", [(), ("a", "b")])
def test_unwrap_rejects_wrong_argument_count(args: tuple[str, ...]) -> None:
    identity = _identity("args")
    s = _stanza(identity)
    bad = _with(s, args=(*s.args, *args[1:]) if args else ())
    with pytest.raises(HeaderError):
        identity.unwrap([bad])


def test_unwrap_rejects_non_canonical_enc() -> None:
    identity = _identity("canon")
    s = _stanza(identity)
    text = s.args[0]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    # 1120 bytes leave 4 unused low bits in the last character, all zero in
    # the canonical encoding: setting one decodes to the same bytes.
    last = alphabet[alphabet.index(text[-1]) + 1]
    with pytest.raises(HeaderError):
        identity.unwrap([_with(s, args=(text[:-1] + last,))])
    with pytest.raises(HeaderError):
        identity.unwrap([_with(s, args=(text + "==",))])


@pytest.mark.parametrize("size", [0, 32, 1088, 1119, 1121, 1152])
def test_unwrap_rejects_wrong_enc_length(size: int) -> None:
    identity = _identity("enclen")
    s = _stanza(identity)
    enc = (_enc(s) + bytes(64))[:size]
    with pytest.raises(HeaderError):
        identity.unwrap([_with_enc(s, enc)])


@pytest.mark.parametrize("size", [0, 16, 31, 33, 41, 48])
def test_unwrap_rejects_wrong_body_length_before_decrypting(size: int) -> None:
    identity = _identity("bodylen")
    # A valid seal of a longer or shorter "file key" must still be refused on
    # its length alone (the CCTV hybrid_long_file_key vector).
    s = _stanza(identity, file_key=bytes(max(size - 16, 0))) if size >= 16 else _stanza(identity)
    bad = s if len(s.body) == size else _with(s, body=(s.body + bytes(64))[:size])
    with pytest.raises(HeaderError):
        identity.unwrap([bad])


@pytest.mark.parametrize("index", [0, 15, 16, 31])
def test_unwrap_tampered_body_is_no_match(index: int) -> None:
    identity = _identity("body")
    s = _stanza(identity)
    assert identity.unwrap([_with(s, body=_flip(s.body, index))]) is None


@pytest.mark.parametrize("index", [0, 500, 1087])
def test_unwrap_tampered_mlkem_ciphertext_is_no_match(index: int) -> None:
    identity = _identity("mlkem")
    s = _stanza(identity)
    assert identity.unwrap([_with_enc(s, _flip(_enc(s), index))]) is None


@pytest.mark.parametrize("index", [1088, 1100, 1118])
def test_unwrap_tampered_x25519_share_is_no_match(index: int) -> None:
    identity = _identity("x25519")
    s = _stanza(identity)
    assert identity.unwrap([_with_enc(s, _flip(_enc(s), index))]) is None


@pytest.mark.parametrize("point", LOW_ORDER)
def test_unwrap_low_order_share_is_header_error(point: bytes) -> None:
    identity = _identity("loworder")
    s = _stanza(identity)
    with pytest.raises(HeaderError):
        identity.unwrap([_with_enc(s, _enc(s)[:1088] + point)])


def test_unwrap_swapped_halves_between_stanzas_is_no_match() -> None:
    identity = _identity("swap")
    a, b = _stanza(identity), _stanza(identity)
    spliced = _with_enc(a, _enc(a)[:1088] + _enc(b)[1088:])
    assert identity.unwrap([spliced]) is None
    assert identity.unwrap([_with(a, body=b.body)]) is None


# --- through the age API -----------------------------------------------------


def test_roundtrip_several_recipients() -> None:
    identities = [_identity(f"multi-{i}") for i in range(3)]
    recipients = [i.recipient() for i in identities]
    plain = os.urandom(200_000)
    enc = io.BytesIO()
    age.encrypt(io.BytesIO(plain), enc, recipients)
    data = enc.getvalue()
    assert data.count(b"\n-> mlkem768x25519 ") == 3
    for identity in identities:
        out = io.BytesIO()
        age.decrypt(io.BytesIO(data), out, [identity])
        assert out.getvalue() == plain
    with pytest.raises(NoIdentityMatchError):
        age.decrypt(io.BytesIO(data), io.BytesIO(), [_identity("outsider")])


def test_roundtrip_armored_and_empty() -> None:
    identity = _identity("armor")
    for plain in (b"", b"x", os.urandom(64 * 1024)):
        enc = io.BytesIO()
        age.encrypt(io.BytesIO(plain), enc, [identity.recipient()], armor=True)
        out = io.BytesIO()
        age.decrypt(io.BytesIO(enc.getvalue()), out, [identity])
        assert out.getvalue() == plain


def test_roundtrip_with_mixed_identity_list() -> None:
    identity = _identity("mixed-ids")
    classical = X25519Identity(bytes(range(32)))
    plain = b"clinical payload"
    assert _roundtrip(plain, [identity.recipient()], [classical, identity]) == plain


def test_mixing_with_x25519_recipient_is_refused() -> None:
    hybrid = _identity("mix").recipient()
    classical = X25519Identity(bytes(range(32))).recipient()
    pairs: list[list[age.Recipient]] = [[hybrid, classical], [classical, hybrid]]
    for recipients in pairs:
        with pytest.raises(RecipientError):
            age.encrypt(io.BytesIO(b"x"), io.BytesIO(), recipients)


# --- interop with typage (the age-encryption npm package), when installed ------

_INTEROP = Path(__file__).resolve().parents[1] / "interop"
_HAVE_TYPAGE = (
    shutil.which("node") is not None and (_INTEROP / "node_modules" / "age-encryption").is_dir()
)


@pytest.mark.skipif(not _HAVE_TYPAGE, reason="node and typage (tests/interop) not installed")
def test_interop_with_typage(tmp_path: Path) -> None:
    def js(*args: str) -> str:
        done = subprocess.run(
            ["node", str(_INTEROP / "age_js.mjs"), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.stdout

    js_identity, js_recipient = js("keygen", "--pq").split()
    assert str(HybridIdentity.parse(js_identity).recipient()) == js_recipient
    (tmp_path / "js.key").write_text(js_identity + "\n")
    ours = _identity("interop")
    plain = os.urandom(100_000)
    (tmp_path / "plain").write_bytes(plain)

    enc = io.BytesIO()
    age.encrypt(io.BytesIO(plain), enc, [HybridRecipient.parse(js_recipient), ours.recipient()])
    (tmp_path / "py.age").write_bytes(enc.getvalue())
    js("decrypt", "-i", str(tmp_path / "js.key"), str(tmp_path / "py.age"), str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == plain

    js("encrypt", "-r", str(ours.recipient()), str(tmp_path / "plain"), str(tmp_path / "js.age"))
    out = io.BytesIO()
    age.decrypt(io.BytesIO((tmp_path / "js.age").read_bytes()), out, [ours])
    assert out.getvalue() == plain
