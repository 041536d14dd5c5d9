"""crypto.alloc: the allocator settings apply on glibc and yield to an operator's own."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from sealdrop.crypto import alloc


def _glibc() -> bool:
    try:
        ctypes.CDLL(None).mallopt  # noqa: B018 - probing for the symbol
    except (OSError, AttributeError):
        return False
    return True


@pytest.mark.skipif(not _glibc(), reason="no mallopt in this C library")
def test_settings_apply_on_glibc() -> None:
    assert alloc.tune_allocator({}) is True


def test_an_operators_own_malloc_settings_win() -> None:
    assert alloc.tune_allocator({"MALLOC_TRIM_THRESHOLD_": "131072"}) is False
    assert alloc.tune_allocator({"MALLOC_MMAP_THRESHOLD_": "131072"}) is False


_CHURN = """
import resource, sys
from sealdrop.crypto import alloc
if sys.argv[1] == "tuned":
    assert alloc.tune_allocator({})
keep = [bytes(2 << 20)]  # a live block below the churn keeps the heap's top busy
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(300):
    pieces = [bytearray(300 << 10) for _ in range(8)]  # ~2.4 MiB, freed each round
    del pieces
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not _glibc(), reason="no mallopt in this C library")
def test_freed_pieces_are_reused_instead_of_faulted_in_again() -> None:
    """What the settings are for: a loop of few-hundred-KiB buffers (a chunk's
    pieces) faults its pages in once, not on every round."""
    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _CHURN, mode], check=True,
                             capture_output=True, text=True, env={"PATH": "/usr/bin"})
        return int(out.stdout)

    default, tuned = faults("default"), faults("tuned")
    assert tuned * 10 < default, (tuned, default)
