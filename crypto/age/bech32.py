"""Bech32 (BIP 173) as age uses it: no length limit, all-lower or all-upper."""

from __future__ import annotations

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_REV = {c: i for i, c in enumerate(_CHARSET)}
_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: list[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= _GEN[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert(data: bytes | list[int], frombits: int, tobits: int, pad: bool) -> list[int]:
    acc = bits = 0
    out: list[int] = []
    maxv = (1 << tobits) - 1
    for value in data:
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or (acc << (tobits - bits)) & maxv:
        raise ValueError("invalid padding in bech32 data")
    return out


def encode(hrp: str, data: bytes) -> str:
    """Encode with a lowercase HRP; callers upper-case the result if they need to."""
    hrp = hrp.lower()
    values = _convert(data, 8, 5, True)
    chk = _polymod(_hrp_expand(hrp) + values + [0] * 6) ^ 1
    checksum = [(chk >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[v] for v in values + checksum)


def decode(text: str) -> tuple[str, bytes]:
    """Return (lowercase hrp, data); ValueError on any malformation."""
    if text.lower() != text and text.upper() != text:
        raise ValueError("mixed case")
    if any(ord(c) < 33 or ord(c) > 126 for c in text):
        raise ValueError("invalid character")
    lowered = text.lower()
    pos = lowered.rfind("1")
    if pos < 1 or pos + 7 > len(lowered):
        raise ValueError("invalid separator position")
    hrp, rest = lowered[:pos], lowered[pos + 1 :]
    try:
        values = [_REV[c] for c in rest]
    except KeyError as exc:
        raise ValueError("invalid data character") from exc
    if _polymod(_hrp_expand(hrp) + values) != 1:
        raise ValueError("invalid checksum")
    return hrp, bytes(_convert(values[:-6], 5, 8, False))
