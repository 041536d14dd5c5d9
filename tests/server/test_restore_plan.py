"""Choosing each blob's version as of a backup's time (server.restore_plan, pure)."""

from __future__ import annotations

from sealdrop.server.restore_plan import (
    CLOCK_SLACK,
    COPY,
    CURRENT,
    MISSING,
    UNMARK,
    Version,
    as_of,
    plan,
)

T = 1_800_000_000.0


def v(vid: str, at: float, size: int = 100, *, deleted: bool = False,
      latest: bool = False) -> Version:
    return Version(vid, at, 0 if deleted else size, deleted, latest)


def test_the_newest_data_version_of_the_size_before_the_time_is_chosen() -> None:
    listed = [v("late", T + CLOCK_SLACK + 1, latest=True), v("other-size", T - 5, 99),
              v("right", T - 10), v("older", T - 20)]
    assert as_of(listed, T, 100) == listed[2]
    # the object store's clock a little ahead of the database's: still found
    assert as_of([v("ahead", T + 30, latest=True)], T, 100) is not None
    assert as_of([v("gone", T - 1, deleted=True, latest=True)], T, 100) is None


def test_plan_in_place_keeps_unmarks_or_copies() -> None:
    versions = {
        "a" * 32: [v("a1", T - 9, latest=True)],
        "b" * 32: [v("m2", T + 60, deleted=True, latest=True), v("m1", T + 50, deleted=True),
                   v("b1", T - 9)],
        "c" * 32: [v("c2", T + 900, latest=True), v("c1", T - 9)],
    }
    steps = {s.transfer: s for s in plan([(k, 100) for k in versions], versions, T,
                                         in_place=True).steps}
    assert steps["a" * 32].action == CURRENT
    assert steps["b" * 32].action == UNMARK and steps["b" * 32].markers == ("m2", "m1")
    assert steps["c" * 32].action == COPY and steps["c" * 32].version == versions["c" * 32][1]


def test_plan_elsewhere_always_copies_and_names_what_is_missing() -> None:
    versions = {
        "a" * 32: [v("a1", T - 9, latest=True)],
        "b" * 32: [v("m", T - 1, deleted=True, latest=True)],
        "c" * 32: [v("c1", T + 3600, latest=True)],
        "d" * 32: [v("d1", T - 9, 7, latest=True)],
    }
    wanted = [(k, 100) for k in versions] + [("e" * 32, 100)]
    p = plan(wanted, versions, T, in_place=False)
    assert [s.transfer for s in p.of(COPY)] == ["a" * 32]
    why = {s.transfer: s.why for s in p.of(MISSING)}
    assert "only delete markers" in why["b" * 32]
    assert "written after the backup" in why["c" * 32]
    assert "recorded size of 100 bytes" in why["d" * 32]
    assert "no version" in why["e" * 32] and "lifecycle" in why["e" * 32]
