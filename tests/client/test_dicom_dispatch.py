"""When a spooled study is sent: idle detection, sealing, retries with backoff, restarts.

The dispatcher runs on a real spool (real files, real fsyncs) with a fake clock
and a fake sender in place of the relay (the relay path is proved end to end
in tests/e2e/test_dicom_listen.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sealdrop.client.dicom.dispatch import (
    MAX_BACKOFF,
    Activity,
    Dispatcher,
    backoff,
    is_ready,
    study_note,
)
from sealdrop.client.dicom.inbound import COLLECTING, SEALED, InboundSpool, Study, read_ids
from sealdrop.client.errors import ClientError

from .listenkit import make_study


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sender:
    """Records what it was asked to send; fails while ``failing``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, tuple[str, ...], tuple[str, ...]]] = []
        self.failing = False

    def __call__(self, study: Study) -> str:
        files = tuple(sorted(str(p.relative_to(study.files)) for p in study.files.rglob("*")))
        self.calls.append((str(study.files), study.state.note, study.state.recipients, files))
        if self.failing:
            raise ClientError("the relay at http://127.0.0.1:1 is unreachable")
        return f"t{len(self.calls)}"


def test_is_ready() -> None:
    assert is_ready(last_activity=0, now=30, idle=30, open_associations=0)
    assert not is_ready(last_activity=0, now=29.9, idle=30, open_associations=0)
    assert not is_ready(last_activity=0, now=1e9, idle=30, open_associations=1)
    assert is_ready(last_activity=5, now=5, idle=0, open_associations=0)


def test_backoff_grows_and_is_capped() -> None:
    assert [backoff(n) for n in range(0, 5)] == [0.0, 5.0, 10.0, 20.0, 40.0]
    assert backoff(50) == MAX_BACKOFF


def test_the_note_is_generic() -> None:
    assert study_note("SEALDROP", 3, 412) == "DICOM study from SEALDROP (3 series, 412 instances)"
    assert study_note("LAB", 1, 1) == "DICOM study from LAB (1 series, 1 instance)"


@pytest.fixture
def world(tmp_path: Path) -> tuple[InboundSpool, Activity, Clock, Sender, list[str], Dispatcher]:
    spool = InboundSpool(tmp_path / "spool")
    ctx = spool.owned()
    ctx.__enter__()
    clock = Clock()
    activity = Activity(clock=clock)
    sender = Sender()
    logs: list[str] = []
    dispatcher = Dispatcher(spool, activity, idle=30, send_study=sender, log=logs.append)
    return spool, activity, clock, sender, logs, dispatcher


def _receive(spool: InboundSpool, activity: Activity, assoc: int, files: list[Path],
             route: str = "SEALDROP") -> None:
    """What the SCP does for each C-STORE (a copy stands for pynetdicom's temporary file)."""
    for path in files:
        tmp = spool.incoming / f"rx-{path.name}"
        tmp.write_bytes(path.read_bytes())
        ids = read_ids(tmp)
        assert ids is not None
        study = spool.collecting(route, ("labo-dupont",), ids.study,
                                 claim=lambda name: activity.stored(assoc, name))
        spool.store(study, tmp, ids)


def test_sent_only_after_release_and_idle(world: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    spool, activity, clock, sender, logs, dispatcher = world
    _, instances = make_study(tmp_path / "scan", count=4, series=2)
    activity.opened(1)
    _receive(spool, activity, 1, [i.path for i in instances])
    clock.now += 3600
    assert dispatcher.tick() == 0  # the association is still open
    assert spool.studies()[0].state.status == COLLECTING
    activity.closed(1)
    clock.now += 29
    assert dispatcher.tick() == 0  # idle counts from the release
    clock.now += 1
    assert dispatcher.tick() == 1
    assert spool.studies() == []
    [(_, note, to, files)] = sender.calls
    assert note == "DICOM study from SEALDROP (2 series, 4 instances)"
    assert to == ("labo-dupont",)
    assert len([f for f in files if f.endswith(".dcm")]) == 4
    assert any("transfer t1" in line for line in logs)


def test_a_failed_send_is_kept_identical_and_retried_with_backoff(
        world: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    spool, activity, clock, sender, logs, dispatcher = world
    _, instances = make_study(tmp_path / "scan", count=3, series=1)
    _receive(spool, activity, 1, [i.path for i in instances])
    activity.closed(1)
    clock.now += 30
    sender.failing = True
    assert dispatcher.tick() == 0
    [study] = spool.studies()
    assert study.state.status == SEALED
    assert "retrying in 5s" in logs[-1] and "kept in the spool" in logs[-1]
    clock.now += 4
    dispatcher.tick()
    assert len(sender.calls) == 1  # not before the backoff
    clock.now += 1
    dispatcher.tick()
    assert len(sender.calls) == 2 and "retrying in 10s" in logs[-1]
    sender.failing = False
    clock.now += 10
    assert dispatcher.tick() == 1
    # Every attempt sent the same paths, note, recipients and files: a send
    # interrupted half-way is resumed by the send flow's record.
    assert len(set(sender.calls)) == 1
    assert spool.studies() == []


def test_an_instance_after_sealing_starts_a_new_transfer(
        world: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    spool, activity, clock, sender, logs, dispatcher = world
    _, instances = make_study(tmp_path / "scan", count=3, series=1)
    _receive(spool, activity, 1, [i.path for i in instances[:2]])
    activity.closed(1)
    clock.now += 30
    sender.failing = True
    dispatcher.tick()  # sealed, send failed: the study is frozen
    _receive(spool, activity, 2, [instances[2].path])
    first, second = spool.studies()
    assert first.state.status == SEALED and first.counts() == (1, 2)
    assert second.state.status == COLLECTING and second.counts() == (1, 1)
    assert first.state.folder != second.state.folder
    assert first.name.rpartition(".")[0] == second.name.rpartition(".")[0]  # same study
    activity.closed(2)
    sender.failing = False
    clock.now += 600
    assert dispatcher.tick() == 2
    assert [c[1] for c in sender.calls[-2:]] == [
        "DICOM study from SEALDROP (1 series, 2 instances)",
        "DICOM study from SEALDROP (1 series, 1 instance)"]


def test_a_sealed_study_cannot_take_an_instance_of_an_open_association(
        world: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    """Sealing asks again, under the spool's lock, whether the study is still idle."""
    spool, activity, clock, sender, logs, dispatcher = world
    _, instances = make_study(tmp_path / "scan", count=1, series=1)
    _receive(spool, activity, 1, [instances[0].path])
    activity.closed(1)
    [study] = spool.studies()
    clock.now += 30
    activity.stored(2, study.name)  # an association claims it just before sealing
    assert spool.seal(study, lambda s: "note", lambda: activity.ready(study.name, 30)) is None
    assert spool.studies()[0].state.status == COLLECTING


def test_after_a_restart_pending_studies_wait_one_idle_time(
        world: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    spool, activity, clock, sender, logs, dispatcher = world
    _, instances = make_study(tmp_path / "scan", count=2, series=1)
    activity.opened(1)
    _receive(spool, activity, 1, [i.path for i in instances])
    # The process dies with the association open; a new one starts later.
    clock.now += 10_000
    fresh = Activity(clock=clock)
    restarted = Dispatcher(spool, fresh, idle=30, send_study=sender, log=logs.append)
    restarted.start()
    assert "1 study pending in the spool" in logs[-1]
    assert restarted.tick() == 0
    clock.now += 30
    assert restarted.tick() == 1
    assert sender.calls[0][1] == "DICOM study from SEALDROP (1 series, 2 instances)"


def test_a_damaged_study_is_reported_once_and_the_others_still_go(
        world: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    spool, activity, clock, sender, logs, dispatcher = world
    _, a = make_study(tmp_path / "a", count=1, series=1)
    _, b = make_study(tmp_path / "b", count=1, series=1)
    _receive(spool, activity, 1, [a[0].path, b[0].path])
    activity.closed(1)
    broken = spool.studies()[0]
    (broken.path / "state.json").write_bytes(b"{damaged")
    clock.now += 30
    assert dispatcher.tick() == 1
    assert dispatcher.tick() == 0
    (broken.path / "state.json").write_bytes(b"[]")  # damaged otherwise: another message
    assert dispatcher.tick() == 0
    damaged = [line for line in logs if "damaged state file" in line]
    assert len(damaged) == 1 and str(broken.path) in damaged[0]
    assert "sealdrop send" in damaged[0]  # the way out
    assert broken.path.exists()  # left for a person, never deleted
