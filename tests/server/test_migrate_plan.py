"""How `migrate` gathers recorded chunks into writes a target store takes (an S3
part is at least 5 MiB, whatever chunk size the client chose)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sealdrop.server.migrate import groups

MIB = 1024 * 1024


def _chunks(sizes: list[int]) -> list[tuple[int, str]]:
    out, end = [], 0
    for i, size in enumerate(sizes):
        end += size
        out.append((end, f"h{i}"))
    return out


def test_without_a_minimum_each_chunk_is_its_own_write() -> None:
    chunks = _chunks([10, 20, 30])
    assert groups(chunks, 0) == [[c] for c in chunks]


def test_small_chunks_gather_into_writes_of_at_least_the_minimum() -> None:
    chunks = _chunks([2 * MIB] * 7)  # 14 MiB in 2 MiB chunks
    plan = groups(chunks, 5 * MIB)
    assert [len(g) for g in plan] == [3, 3, 1]  # 6, 6 and the last 2 MiB


def test_chunks_at_the_minimum_stay_one_a_write() -> None:
    chunks = _chunks([12 * MIB] * 3 + [MIB])
    assert groups(chunks, 5 * MIB) == [[c] for c in chunks]


@given(st.lists(st.integers(1, 8 * MIB), min_size=1, max_size=40),
       st.sampled_from([0, MIB, 5 * MIB]))
def test_every_write_but_the_last_is_big_enough_and_nothing_is_lost(
    sizes: list[int], minimum: int
) -> None:
    chunks = _chunks(sizes)
    plan = groups(chunks, minimum)
    assert [c for g in plan for c in g] == chunks  # in order, each once
    start = 0
    for g in plan[:-1]:
        assert g[-1][0] - start >= minimum
        start = g[-1][0]
