"""Strict ASCII armor: canonical output, the variations the spec allows (CRLF,
surrounding whitespace) and everything else refused."""

from __future__ import annotations

import base64
import io

import pytest

from sealdrop.crypto.age import ArmorError, HeaderError
from sealdrop.crypto.age.armor import BEGIN, END, ArmorReader, ArmorWriter
from tests.crypto.agetools import (
    CHUNK,
    decrypt_bytes,
    decrypt_collect,
    det_rand,
    encrypt_bytes,
    identity,
    plaintext,
)

SIZES = [0, 1, 2, 3, 47, 48, 49, 96, 1000, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK]


def armor(data: bytes, write_size: int | None = None) -> bytes:
    out = io.BytesIO()
    w = ArmorWriter(out)
    if write_size is None:
        w.write(data)
    else:
        for i in range(0, len(data), write_size):
            w.write(data[i : i + write_size])
    w.close()
    return out.getvalue()


def dearmor(text: bytes, read_size: int = -1) -> bytes:
    r = ArmorReader(io.BytesIO(text))
    if read_size < 0:
        return r.read()
    parts = []
    while data := r.read(read_size):
        parts.append(data)
    return b"".join(parts)


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_and_canonical_shape(size: int) -> None:
    data = plaintext(size)
    text = armor(data)
    lines = text.split(b"\n")
    assert lines[0] == BEGIN and lines[-2] == END and lines[-1] == b""
    body = lines[1:-2]
    assert all(len(line) == 64 for line in body[:-1])
    if body:
        assert 0 < len(body[-1]) <= 64
    assert b"".join(body) == base64.b64encode(data)
    assert dearmor(text) == data
    assert dearmor(text, read_size=7) == data


@pytest.mark.parametrize("write_size", [1, 5, 48, 100])
def test_writes_of_any_size_give_identical_output(write_size: int) -> None:
    data = plaintext(5000)
    assert armor(data, write_size) == armor(data)


def test_standard_pem_tools_agree() -> None:
    data = plaintext(777)
    text = armor(data).decode()
    expected = (
        BEGIN.decode()
        + "\n"
        + "\n".join(
            base64.b64encode(data).decode()[i : i + 64]
            for i in range(0, len(base64.b64encode(data)), 64)
        )
        + "\n"
        + END.decode()
        + "\n"
    )
    assert text == expected


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t.replace(b"\n", b"\r\n"),
        lambda t: b"\n\n  \t" + t,
        lambda t: t + b"\n \t\r\n\n",
        lambda t: t.rstrip(b"\n"),  # no EOL after END
        lambda t: b"\r\n" + t.replace(b"\n", b"\r\n") + b"  \r\n",
    ],
    ids=["crlf", "leading-ws", "trailing-ws", "no-final-eol", "crlf-and-ws"],
)
@pytest.mark.parametrize("size", [0, 100, CHUNK + 1])
def test_allowed_variations(mangle, size: int) -> None:  # type: ignore[no-untyped-def]
    data = plaintext(size)
    assert dearmor(mangle(armor(data))) == data


def _with_body(text: bytes, fn) -> bytes:  # type: ignore[no-untyped-def]
    lines = text.split(b"\n")
    lines[1:-2] = fn(lines[1:-2])
    return b"\n".join(lines)


REJECTED = {
    "missing-end": lambda t: t[: t.index(END)],
    "garbage-after-end": lambda t: t + b"x",
    "garbage-before-begin": lambda t: b"x" + t,
    "lowercase-begin": lambda t: t.replace(BEGIN, BEGIN.lower()),
    "wrong-label": lambda t: t.replace(b"AGE ENCRYPTED FILE", b"PGP MESSAGE"),
    "spaces-in-begin": lambda t: t.replace(BEGIN, b"----- BEGIN AGE ENCRYPTED FILE -----"),
    "header-line": lambda t: t.replace(BEGIN + b"\n", BEGIN + b"\nComment: hi\n\n"),
    "short-middle-line": lambda t: _with_body(t, lambda b: [b[0][:-4], b[0][-4:], *b[1:]]),
    "long-line": lambda t: _with_body(t, lambda b: [b[0] + b[1][:4], b[1][4:], *b[2:]]),
    "empty-line": lambda t: _with_body(t, lambda b: [b[0], b"", *b[1:]]),
    "space-at-eol": lambda t: _with_body(t, lambda b: [b[0] + b" ", *b[1:]]),
    "space-at-start": lambda t: _with_body(t, lambda b: [b" " + b[0], *b[1:]]),
    "bad-char": lambda t: _with_body(t, lambda b: [b"*" + b[0][1:], *b[1:]]),
    "no-padding": lambda t: _with_body(t, lambda b: [*b[:-1], b[-1].rstrip(b"=")]),
    "lf-cr-mixed-in-line": lambda t: _with_body(
        t, lambda b: [b[0][:10] + b"\r" + b[0][10:], *b[1:]]
    ),
    "empty": lambda t: b"",
    "only-whitespace": lambda t: b" \n\n",
    "binary": lambda t: b"\x00" * 100,
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected(name: str) -> None:
    # 100 bytes: the last line (136 chars) is 8 chars and has "=" padding.
    text = REJECTED[name](armor(plaintext(1000)[:100] + b"\x01"))
    with pytest.raises(ArmorError):
        dearmor(text)


def test_non_canonical_last_line_is_rejected() -> None:
    text = armor(b"\x00")  # "AA=="
    assert b"\nAA==\n" in text
    with pytest.raises(ArmorError):
        dearmor(text.replace(b"\nAA==\n", b"\nAB==\n"))


def test_an_endless_line_is_not_buffered() -> None:
    class Endless:
        given = 0

        def read(self, n: int = -1) -> bytes:
            self.given += 4096
            return b"A" * 4096

    src = Endless()
    with pytest.raises(ArmorError, match="too long"):
        ArmorReader(io.BytesIO(BEGIN + b"\n" + b"A" * 100000)).read()
    with pytest.raises(ArmorError):
        r = ArmorReader(src)  # no BEGIN line at all, just an endless line
        r.read()
    assert src.given < 1 << 20


# --- through the age API ------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK])
def test_armored_age_round_trip(size: int) -> None:
    alice = identity("alice")
    pt = plaintext(size)
    ct = encrypt_bytes(pt, [alice.recipient()], armor=True, rand=det_rand())
    assert ct.startswith(BEGIN + b"\n") and ct.endswith(END + b"\n")
    binary = encrypt_bytes(pt, [alice.recipient()], rand=det_rand())
    assert dearmor(ct) == binary
    for armored in (True, None):
        assert decrypt_bytes(ct, [alice], armored=armored) == pt
        assert decrypt_bytes(ct.replace(b"\n", b"\r\n"), [alice], armored=armored) == pt
    # Armored tiny writes give the same output as one write.
    assert encrypt_bytes(pt, [alice.recipient()], armor=True, rand=det_rand(), write_size=333) == ct


def test_binary_file_decrypted_as_armored_fails_as_armor() -> None:
    alice = identity("alice")
    ct = encrypt_bytes(b"x", [alice.recipient()])
    r = decrypt_collect(ct, [alice], armored=True)
    assert type(r.error) is ArmorError


def test_armored_file_decrypted_as_binary_fails_as_header() -> None:
    alice = identity("alice")
    ct = encrypt_bytes(b"x", [alice.recipient()], armor=True)
    r = decrypt_collect(ct, [alice], armored=False)
    assert type(r.error) is HeaderError


def test_truncated_armored_file() -> None:
    alice = identity("alice")
    pt = plaintext(CHUNK * 2)
    ct = encrypt_bytes(pt, [alice.recipient()], armor=True)
    r = decrypt_collect(ct[: len(ct) // 2], [alice], armored=True)
    assert type(r.error) is ArmorError
