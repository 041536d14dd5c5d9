"""Allocator settings for the processes that move large byte streams.

Why: the relay and the client receive and hash data in pieces of a few
hundred KiB. With glibc's defaults, memory freed at the top of the heap goes
back to the kernel as soon as more than 128 KiB is free (the trim threshold),
and the next piece faults the same pages in again, each one zeroed by the
kernel: tens of thousands of page faults per GiB. Measured with
``scripts/bench_send --size 1G`` on the 2-core reference machine: the relay
spent 4.44 CPU-s per GiB ingested with the defaults and 3.71 s with these
settings; the send client 3.76 s and 3.52 s; peak RSS unchanged (81-83 MB
relay, 94 MB client).

It lives here because this is the one package both the relay and the client
import; it does no I/O. On a C library without ``mallopt`` (musl, macOS) it
does nothing. An operator's own ``MALLOC_*`` environment settings win.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

# Pieces below 4 MiB come from the heap, not from a fresh mmap each time; up to
# 64 MiB of freed heap is kept for the next pieces instead of being returned.
MMAP_THRESHOLD = 4 << 20
TRIM_THRESHOLD = 64 << 20

_OWN_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")


def tune_allocator(environ: Mapping[str, str]) -> bool:
    """Apply the settings above unless ``environ`` (the process's environment,
    passed in: this package reads none) has its own; True if they took."""
    if any(name in environ for name in _OWN_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
