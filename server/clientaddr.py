"""Who the client is: the peer address, or X-Forwarded-For behind a trusted proxy.

Behind the documented reverse proxy every connection comes from the proxy, so
keying a rate limit on the peer address would make all clients share one
bucket (and one flood would lock everyone out). The proxy appends the address
it saw to ``X-Forwarded-For``; everything to the left of that was written by
the client or by proxies further out, and can be forged. So the header is
believed only when the peer is a configured trusted proxy, and read from the
right: the first address that is not itself a trusted proxy is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN = "?"


def networks(blocks: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(b, strict=False) for b in blocks)


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:443"
        text = text.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped  # "::ffff:192.0.2.1" is 192.0.2.1 (dual-stack listeners)
    return addr


def _trusted(addr: Address, trusted: Sequence[Network]) -> bool:
    return any(addr.version == net.version and addr in net for net in trusted)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]
) -> str:
    """The client's address as text; ``forwarded_for`` holds every
    X-Forwarded-For header of the request, in the order received."""
    hop = _address(peer) if peer else None
    if hop is None:
        return peer or UNKNOWN
    if not _trusted(hop, trusted):
        return str(hop)
    entries = [e for header in forwarded_for for e in header.split(",")]
    for entry in reversed(entries):
        addr = _address(entry)
        if addr is None:
            # Garbage was written by whoever talked to the last trusted hop: that
            # hop's own peer is all we know, and it is `hop`, the last address seen.
            return str(hop)
        if not _trusted(addr, trusted):
            return str(addr)
        hop = addr
    # Every hop is a trusted proxy (or no header): the left-most one is the client.
    return str(hop)
