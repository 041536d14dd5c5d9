"""The age header: marshal/parse, strict syntax, hard limits, grease, and the
recipient rules the core enforces."""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import pytest

import sealdrop.crypto.age as age
from sealdrop.crypto.age import (
    Encryptor,
    HeaderError,
    MACError,
    NoIdentityMatchError,
    RecipientError,
    ScryptIdentity,
    ScryptRecipient,
)
from sealdrop.crypto.age.format import (
    MAX_ARGS,
    MAX_HEADER_SIZE,
    MAX_LINE_SIZE,
    MAX_STANZAS,
    VERSION_LINE,
    Stanza,
    marshal,
    marshal_without_mac,
    parse,
)
from tests.crypto.agetools import (
    decrypt_bytes,
    decrypt_collect,
    det_rand,
    encrypt_bytes,
    identity,
    plaintext,
)

MAC = bytes(range(32))


def header_bytes(stanzas: list[Stanza], mac: bytes = MAC) -> bytes:
    return marshal(marshal_without_mac(stanzas), mac)


class CountingReader:
    """A reader over a (possibly endless) generator of bytes, counting what it gave."""

    def __init__(self, gen: Callable[[], bytes]) -> None:
        self._gen = gen
        self._buf = b""
        self.given = 0

    def read(self, n: int = -1) -> bytes:
        n = 1 << 16 if n is None or n < 0 else n
        while len(self._buf) < n:
            more = self._gen()
            if not more:
                break
            self._buf += more
        out, self._buf = self._buf[:n], self._buf[n:]
        self.given += len(out)
        return out


def endless(prefix: bytes, repeat: bytes) -> CountingReader:
    state = {"first": True}

    def gen() -> bytes:
        if state["first"]:
            state["first"] = False
            return prefix
        return repeat * 64

    return CountingReader(gen)


class Grease:
    """A recipient that adds unknown stanzas around a real one, as age's grease does."""

    pq = False

    def __init__(self, real: age.Recipient, extra: list[Stanza], before: bool = True) -> None:
        self.real, self.extra, self.before = real, extra, before

    def wrap(self, file_key: bytes, rand: Callable[[int], bytes]) -> list[Stanza]:
        stanzas = self.real.wrap(file_key, rand)
        return [*self.extra, *stanzas] if self.before else [*stanzas, *self.extra]


# --- marshal / parse ------------------------------------------------------------

BODY_SIZES = [0, 1, 32, 47, 48, 49, 95, 96, 97, 1000]


@pytest.mark.parametrize("body_size", BODY_SIZES)
def test_round_trip(body_size: int) -> None:
    stanzas = [
        Stanza("X25519", ("abc",), os.urandom(32)),
        Stanza("grease-type", (), os.urandom(body_size)),
        Stanza("t", ("a", "b", "c!~"), b""),
    ]
    raw = header_bytes(stanzas)
    payload = b"\x00\xffpayload bytes"
    header, rest = parse(io.BytesIO(raw + payload))
    assert header.stanzas == tuple(stanzas)
    assert header.mac == MAC
    assert header.mac_input == marshal_without_mac(stanzas)
    assert raw.startswith(header.mac_input)
    assert rest == payload[: len(rest)]
    assert marshal(header.mac_input, header.mac) == raw


@pytest.mark.parametrize("body_size", BODY_SIZES)
def test_body_lines_are_64_columns_and_end_short(body_size: int) -> None:
    raw = header_bytes([Stanza("x", (), bytes(body_size))])
    lines = raw.split(b"\n")
    body = lines[2:-2]
    assert all(len(line) == 64 for line in body[:-1])
    assert len(body[-1]) < 64
    if body_size % 48 == 0:
        assert body[-1] == b""


def test_parse_reads_the_rest_through_leftover() -> None:
    raw = header_bytes([Stanza("x", (), b"k")])
    tail = os.urandom(10000)
    header, rest = parse(io.BytesIO(raw + tail))
    assert tail.startswith(rest)


def test_encrypted_header_shape() -> None:
    alice = identity("alice")
    ct = encrypt_bytes(b"hi", [alice.recipient()], rand=det_rand())
    assert ct.startswith(VERSION_LINE + b"-> X25519 ")
    header, _ = parse(io.BytesIO(ct))
    assert len(header.stanzas) == 1 and header.stanzas[0].type == "X25519"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"age-encryption.org/v1",  # no newline
        b"age-encryption.org/v1\n",  # no stanzas, no MAC
        b"age-encryption.org/v1\n--- " + b"A" * 43 + b"\n",  # no stanzas
        b"age-encryption.org/v1\r\n-> x\n\n--- " + b"A" * 43 + b"\n",  # CRLF version
        b"age-encryption.org/v1\n-> x\r\n\n--- " + b"A" * 43 + b"\n",  # CRLF stanza
        b"age-encryption.org/v1\n-> x\n\r\n--- " + b"A" * 43 + b"\n",  # CRLF body
        b"age-encryption.org/v1\n-> x\n\n--- " + b"A" * 43 + b"\r\n",  # CRLF MAC
        b"age-encryption.org/v1\n->x\n\n--- " + b"A" * 43 + b"\n",  # no space
        b"age-encryption.org/v1\n-> \n\n--- " + b"A" * 43 + b"\n",  # no type
        b"age-encryption.org/v1\n-> x  y\n\n--- " + b"A" * 43 + b"\n",  # empty arg
        b"age-encryption.org/v1\n-> x y \n\n--- " + b"A" * 43 + b"\n",  # trailing space
        b"age-encryption.org/v1\n-> x \xc3\xa9\n\n--- " + b"A" * 43 + b"\n",  # non-ASCII
        b"age-encryption.org/v1\n-> x\n--- " + b"A" * 43 + b"\n",  # body missing
        b"age-encryption.org/v1\n-> x\nAA==\n--- " + b"A" * 43 + b"\n",  # padding
        b"age-encryption.org/v1\n-> x\nAB\n--- " + b"A" * 43 + b"\n",  # non-canonical
        b"age-encryption.org/v1\n-> x\n" + b"A" * 65 + b"\n\n--- " + b"A" * 43 + b"\n",
        b"age-encryption.org/v1\n-> x\n" + b"A" * 64 + b"\n--- " + b"A" * 43 + b"\n",
        b"age-encryption.org/v1\n-> x\n\n---" + b"A" * 43 + b"\n",  # MAC no space
        b"age-encryption.org/v1\n-> x\n\n--- " + b"A" * 42 + b"\n",  # MAC short
        b"age-encryption.org/v1\n-> x\n\n--- " + b"A" * 44 + b"\n",  # MAC long
        b"age-encryption.org/v1\n-> x\n\n--- " + b"A" * 42 + b"B\n",  # MAC non-canonical
        b"age-encryption.org/v1\n-> x\n\n--- " + b"A" * 43,  # MAC no newline
        b"age-encryption.org/v1\n-> x\n\njunk\n--- " + b"A" * 43 + b"\n",
        b"age-encryption.org/v2\n-> x\n\n--- " + b"A" * 43 + b"\n",
        b"AGE-ENCRYPTION.ORG/V1\n-> x\n\n--- " + b"A" * 43 + b"\n",
        b"\xef\xbb\xbfage-encryption.org/v1\n-> x\n\n--- " + b"A" * 43 + b"\n",  # BOM
        b"-----BEGIN AGE ENCRYPTED FILE-----\n",
    ],
)
def test_malformed_headers(raw: bytes) -> None:
    with pytest.raises(HeaderError):
        parse(io.BytesIO(raw))


def test_valid_minimal_header() -> None:
    raw = b"age-encryption.org/v1\n-> x\n\n--- " + b"A" * 43 + b"\n"
    header, _ = parse(io.BytesIO(raw))
    assert header.stanzas == (Stanza("x", (), b""),)
    assert header.mac == bytes(32)


def test_newer_version_has_a_hint() -> None:
    with pytest.raises(HeaderError) as info:
        parse(io.BytesIO(b"age-encryption.org/v2\n"))
    assert info.value.hint


@pytest.mark.parametrize("bad", ["", "a b", "é", "tab\t", "\x7f", "new\nline"])
def test_stanza_rejects_invalid_arguments(bad: str) -> None:
    with pytest.raises(HeaderError):
        Stanza("x", (bad,), b"")
    with pytest.raises(HeaderError):
        Stanza(bad, (), b"")


def test_marshal_needs_a_stanza() -> None:
    with pytest.raises(HeaderError):
        marshal_without_mac([])


# --- limits ---------------------------------------------------------------------


def _line_header(arg_len: int) -> bytes:
    return header_bytes([Stanza("x", ("a" * arg_len,), b"")])


def test_line_at_the_limit_is_accepted_and_one_more_is_not() -> None:
    # "-> x " + arg + "\n" is exactly MAX_LINE_SIZE bytes.
    fits = MAX_LINE_SIZE - len(b"-> x \n")
    header, _ = parse(io.BytesIO(_line_header(fits)))
    assert len(header.stanzas[0].args[0]) == fits
    with pytest.raises(HeaderError, match="too long"):
        parse(io.BytesIO(_line_header(fits + 1)))


def test_a_line_without_newline_is_not_buffered_without_bound() -> None:
    src = endless(VERSION_LINE + b"-> x ", b"a")
    with pytest.raises(HeaderError, match="too long"):
        parse(src)
    assert src.given < MAX_LINE_SIZE + (64 << 10)


def test_stanza_count_limit() -> None:
    ok = [Stanza("x", (), b"")] * MAX_STANZAS
    header, _ = parse(io.BytesIO(header_bytes(ok)))
    assert len(header.stanzas) == MAX_STANZAS
    with pytest.raises(HeaderError, match="too many"):
        parse(io.BytesIO(header_bytes(ok + [Stanza("x", (), b"")])))


def test_endless_stanzas_stop_at_the_limit() -> None:
    src = endless(VERSION_LINE, b"-> x\n\n")
    with pytest.raises(HeaderError, match="too many"):
        parse(src)
    assert src.given < MAX_STANZAS * 6 + (64 << 10)


def test_header_size_limit() -> None:
    # One stanza with a huge body: lines stay short, the header grows past 1 MiB.
    big = Stanza("x", (), bytes(MAX_HEADER_SIZE))
    with pytest.raises(HeaderError, match="too large"):
        parse(io.BytesIO(header_bytes([big])))
    small = Stanza("x", (), bytes(MAX_HEADER_SIZE // 2))
    header, _ = parse(io.BytesIO(header_bytes([small])))
    assert header.stanzas[0].body == small.body


def test_endless_body_stops_at_the_size_limit() -> None:
    src = endless(VERSION_LINE + b"-> x\n", b"A" * 64 + b"\n")
    with pytest.raises(HeaderError, match="too large"):
        parse(src)
    assert src.given < MAX_HEADER_SIZE + (64 << 10)


def test_argument_count_limit() -> None:
    ok = Stanza("x", tuple("a" * (i + 1) for i in range(MAX_ARGS)), b"")
    header, _ = parse(io.BytesIO(header_bytes([ok])))
    assert len(header.stanzas[0].args) == MAX_ARGS
    too_many = Stanza("x", tuple("a" * (i + 1) for i in range(MAX_ARGS + 1)), b"")
    with pytest.raises(HeaderError):
        parse(io.BytesIO(header_bytes([too_many])))


def test_limits_apply_through_decrypt() -> None:
    alice = identity("alice")
    long_line = _line_header(MAX_LINE_SIZE)
    with pytest.raises(HeaderError):
        decrypt_bytes(long_line + bytes(100), [alice])
    with pytest.raises(HeaderError):
        decrypt_bytes(bytes(100), [alice])


# --- grease and the MAC ------------------------------------------------------------


def _grease(n: int) -> list[Stanza]:
    rng = det_rand("grease")
    return [
        Stanza(f"grease-{i}{rng(2).hex()}", tuple(rng(3).hex() for _ in range(i % 4)), rng(i % 100))
        for i in range(n)
    ]


@pytest.mark.parametrize("before", [True, False])
@pytest.mark.parametrize("n", [1, 5, MAX_STANZAS - 1])
def test_grease_stanzas_are_ignored(n: int, before: bool) -> None:
    alice = identity("alice")
    pt = plaintext(1000)
    ct = encrypt_bytes(pt, [Grease(alice.recipient(), _grease(n), before)])
    assert decrypt_bytes(ct, [alice]) == pt
    header, _ = parse(io.BytesIO(ct))
    assert len(header.stanzas) == n + 1


def test_only_unknown_stanzas_is_no_match() -> None:
    alice = identity("alice")

    class OnlyGrease:
        pq = False

        def wrap(self, file_key: bytes, rand: Callable[[int], bytes]) -> list[Stanza]:
            return _grease(3)

    ct = encrypt_bytes(b"x", [OnlyGrease()])
    with pytest.raises(NoIdentityMatchError):
        decrypt_bytes(ct, [alice])


def test_changing_any_stanza_breaks_the_mac() -> None:
    alice, bob = identity("alice"), identity("bob")
    ct = encrypt_bytes(b"data", [alice.recipient(), Grease(bob.recipient(), _grease(2))])
    # Alter the grease stanza's argument: the header still parses, alice still
    # unwraps, but the MAC covers every stanza.
    header, _ = parse(io.BytesIO(ct))
    raw = bytearray(ct)
    i = ct.index(b"-> " + header.stanzas[1].type.encode())
    raw[i + 3] ^= 0x01  # first letter of the grease type
    with pytest.raises(MACError):
        decrypt_bytes(bytes(raw), [alice])


def test_wrong_identity_is_no_match_and_empty_identities() -> None:
    alice, eve = identity("alice"), identity("eve")
    ct = encrypt_bytes(b"secret", [alice.recipient()])
    r = decrypt_collect(ct, [eve])
    assert type(r.error) is NoIdentityMatchError and r.data == b""
    r = decrypt_collect(ct, [])
    assert type(r.error) is NoIdentityMatchError


def test_several_recipients_each_can_decrypt() -> None:
    ids = [identity(n) for n in ("a", "b", "c", "d")]
    pt = plaintext(70000)
    ct = encrypt_bytes(pt, [i.recipient() for i in ids])
    for i in ids:
        assert decrypt_bytes(ct, [identity("stranger"), i]) == pt


# --- recipient rules --------------------------------------------------------------


class FakePQ:
    pq = True

    def wrap(self, file_key: bytes, rand: Callable[[int], bytes]) -> list[Stanza]:
        return [Stanza("fake-pq", (), file_key)]


def test_no_recipients() -> None:
    with pytest.raises(RecipientError):
        Encryptor(io.BytesIO(), [])


def test_pq_and_classical_recipients_never_mix_on_encrypt() -> None:
    out = io.BytesIO()
    with pytest.raises(RecipientError):
        Encryptor(out, [FakePQ(), identity("a").recipient()])
    with pytest.raises(RecipientError):
        Encryptor(out, [identity("a").recipient(), FakePQ()])
    assert out.getvalue() == b""
    Encryptor(io.BytesIO(), [FakePQ(), FakePQ()]).close()


def test_passphrase_is_the_only_recipient() -> None:
    with pytest.raises(RecipientError):
        Encryptor(io.BytesIO(), [ScryptRecipient(b"pw", work_factor=2), identity("a").recipient()])
    with pytest.raises(RecipientError):
        Encryptor(
            io.BytesIO(),
            [ScryptRecipient(b"pw", work_factor=2), ScryptRecipient(b"pw2", work_factor=2)],
        )


def test_scrypt_round_trip_and_wrong_passphrase() -> None:
    pt = plaintext(5000)
    ct = encrypt_bytes(pt, [ScryptRecipient(b"correct horse", work_factor=4)])
    assert decrypt_bytes(ct, [ScryptIdentity(b"correct horse")]) == pt
    with pytest.raises(NoIdentityMatchError):
        decrypt_bytes(ct, [ScryptIdentity(b"wrong")])


def test_scrypt_work_factor_limits() -> None:
    from sealdrop.crypto.age.scrypt import MAX_WORK_FACTOR

    assert MAX_WORK_FACTOR == 22
    with pytest.raises(RecipientError):
        ScryptRecipient(b"pw", work_factor=MAX_WORK_FACTOR + 1)
    with pytest.raises(RecipientError):
        ScryptRecipient(b"pw", work_factor=0)
    with pytest.raises(RecipientError):
        ScryptRecipient(b"")
    ct = encrypt_bytes(b"x", [ScryptRecipient(b"pw", work_factor=10)])
    # An identity with a lower cap refuses the file before running scrypt.
    with pytest.raises(HeaderError):
        decrypt_bytes(ct, [ScryptIdentity(b"pw", max_work_factor=9)])
    # The cap can be lowered, never raised.
    assert ScryptIdentity(b"pw", max_work_factor=40).max_work_factor == MAX_WORK_FACTOR


def test_scrypt_work_factor_above_the_cap_is_refused_without_running_scrypt() -> None:
    ct = encrypt_bytes(b"x", [ScryptRecipient(b"pw", work_factor=4)])
    forged = ct.replace(b" 4\n", b" 23\n", 1)
    assert forged != ct
    with pytest.raises(HeaderError, match="above the limit"):
        decrypt_bytes(forged, [ScryptIdentity(b"pw")])


def test_secrets_stay_out_of_repr() -> None:
    r = ScryptRecipient(b"hunter2-secret", work_factor=2)
    i = ScryptIdentity(b"hunter2-secret")
    ident = identity("alice")
    assert "hunter2" not in repr(r) and "hunter2" not in repr(i)
    assert ident.encode() not in repr(ident)
    assert ident.encode()[20:40] not in repr(ident)
