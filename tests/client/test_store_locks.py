"""Profile stores under concurrency: two processes (or threads) on one profile lose
nothing (class 5).

Real processes hammer the real stores on one folder; the counts at the end
are exact. The lock's own behaviour (timeout, SIGKILL, one uploader per send)
is tested on the lock file itself.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from sealdrop.client.errors import ReplayError
from sealdrop.client.profile.contacts import ContactState, ContactStore
from sealdrop.client.profile.filelock import StoreLockedError, lock_path, locked
from sealdrop.client.profile.outbox import Outbox
from sealdrop.client.profile.receipts import ReceiptStore
from sealdrop.client.profile.replay import ReplayStore
from sealdrop.crypto.bundle import KeyBundle
from sealdrop.crypto.identity import SecretIdentity
from tests.client.receivekit import ALICE, NOW

PER_WORKER = 50
CTX = multiprocessing.get_context("spawn")  # no threads of the test runner copied


# -- workers (module level: spawned processes import them) ---------------------


def _replay_worker(home: str, worker: int, start: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    store = ReplayStore(Path(home))
    for i in range(PER_WORKER):
        store.record(bytes([worker, i]) + bytes(14), NOW + i)


def _receipt_worker(home: str, worker: int, start: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    store = ReceiptStore(Path(home))
    for i in range(PER_WORKER):
        store.mark(f"w{worker}-{i}", manifest_id=f"{worker:02x}{i:062x}", acked=i % 2 == 0)


def _contact_worker(home: str, bundles: list[str], start: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    store = ContactStore(Path(home))
    for text in bundles:  # trust on first use, as receive does for a new sender
        store.check_sender(KeyBundle.loads(text), allow_unverified=True, now=NOW)


def _same_transfer_worker(home: str, start: object, out: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    try:
        ReplayStore(Path(home)).record(b"\x07" * 16, NOW)
        out.put("recorded")  # type: ignore[attr-defined]
    except ReplayError:
        out.put("replay")  # type: ignore[attr-defined]


def _run_together(target: Callable[..., None], args: list[tuple[object, ...]]) -> None:
    start = CTX.Event()
    procs = [CTX.Process(target=target, args=(*a, start)) for a in args]
    for p in procs:
        p.start()
    start.set()  # all at once, as far as the scheduler lets them
    for p in procs:
        p.join(120)
        assert p.exitcode == 0, f"a worker failed ({p.exitcode})"


# -- stores under concurrent processes -------------------------------------------


def test_two_processes_recording_accepted_transfers_lose_none(tmp_path: Path) -> None:
    _run_together(_replay_worker, [(str(tmp_path), 1), (str(tmp_path), 2)])
    store = ReplayStore(tmp_path)
    for w in (1, 2):
        for i in range(PER_WORKER):
            assert store.seen(bytes([w, i]) + bytes(14))
    assert len(store._load()) == 2 * PER_WORKER


def test_two_processes_marking_receipts_lose_none(tmp_path: Path) -> None:
    _run_together(_receipt_worker, [(str(tmp_path), 1), (str(tmp_path), 2)])
    got = ReceiptStore(tmp_path).load()
    assert sorted(got) == sorted(f"w{w}-{i}" for w in (1, 2) for i in range(PER_WORKER))
    assert len(ReceiptStore(tmp_path).unacked()) == PER_WORKER  # the odd ones, both workers


def test_two_processes_pinning_senders_lose_none(tmp_path: Path) -> None:
    people = [SecretIdentity.generate(handle=f"sender-{i:02d}", created=NOW).bundle
              for i in range(2 * 12)]
    halves = [[b.dumps() for b in people[:12]], [b.dumps() for b in people[12:]]]
    _run_together(_contact_worker, [(str(tmp_path), halves[0]), (str(tmp_path), halves[1])])
    pinned = ContactStore(tmp_path).list()
    assert [c.handle for c in pinned] == sorted(b.handle for b in people)
    assert all(c.state is ContactState.UNVERIFIED for c in pinned)


def test_one_transfer_recorded_by_two_processes_at_once_is_accepted_once(
    tmp_path: Path,
) -> None:
    start = CTX.Event()
    out = CTX.Queue()
    procs = [CTX.Process(target=_same_transfer_worker, args=(str(tmp_path), start, out))
             for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert sorted(out.get(timeout=30) for _ in procs) == ["recorded", "replay", "replay",
                                                          "replay"]


def test_threads_of_one_process_are_excluded_too(tmp_path: Path) -> None:
    store = ReceiptStore(tmp_path)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(25):
                store.mark(f"t{t}-{i}", manifest_id="00", acked=True)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert len(store.load()) == 100


# -- the lock itself ---------------------------------------------------------------


def test_a_lock_held_too_long_is_refused_with_a_hint(tmp_path: Path) -> None:
    store = tmp_path / "accepted.json"
    fake_now = [0.0]

    def sleep(s: float) -> None:  # time passes only when the lock waits
        fake_now[0] += s

    with locked(store), pytest.raises(StoreLockedError) as info:
        with locked(store, timeout=5.0, clock=lambda: fake_now[0], sleep=sleep):
            pass
    assert fake_now[0] >= 5.0
    assert str(info.value) == (f"accepted.json in {tmp_path} is in use by another sealdrop "
                               "process")
    assert info.value.hint and "try again" in info.value.hint
    with locked(store, timeout=0):  # released: had at once
        pass
    assert oct(lock_path(store).stat().st_mode & 0o777) == "0o600"


def test_a_store_change_waits_for_the_lock_then_keeps_both(tmp_path: Path) -> None:
    store = ReplayStore(tmp_path)
    store.record(b"\x01" * 16, NOW)
    done = threading.Event()

    def second() -> None:
        ReplayStore(tmp_path).record(b"\x02" * 16, NOW)
        done.set()

    with locked(store.path):
        th = threading.Thread(target=second)
        th.start()
        assert not done.wait(0.2)  # blocked behind the lock
    th.join(30)
    assert done.is_set()
    assert store.seen(b"\x01" * 16) and store.seen(b"\x02" * 16)


def test_a_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    store = tmp_path / "contacts.json"
    code = ("import sys, time; from pathlib import Path\n"
            "from sealdrop.client.profile.filelock import locked\n"
            "with locked(Path(sys.argv[1])):\n"
            "    print('held', flush=True); time.sleep(120)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(store)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        with pytest.raises(StoreLockedError):
            with locked(store, wait=False):
                pass
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)
    with locked(store, timeout=30):  # the kernel released it with the process
        pass


def test_one_send_is_uploaded_by_one_process_at_a_time(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, ALICE)
    first = outbox.journal("t-send", keep=0)
    first.append("a" * 64)
    with pytest.raises(StoreLockedError, match="in use by another sealdrop process"):
        Outbox(tmp_path, ALICE).journal("t-send", keep=1)
    assert outbox.chunk_hashes("t-send") == ["a" * 64]  # the refused one cut nothing
    first.close()
    second = outbox.journal("t-send", keep=1)  # released by close
    second.append("b" * 64)
    second.close()
    assert outbox.chunk_hashes("t-send") == ["a" * 64, "b" * 64]
    outbox.remove("t-send")
    assert sorted(p.name for p in outbox.dir.iterdir()) == []


def test_a_damaged_replay_store_is_an_error_not_a_crash(tmp_path: Path) -> None:
    from sealdrop.client.errors import ClientError

    (tmp_path / "accepted.json").write_text('{"v": 1, "accepted": {"ab": "not a time"}}')
    with pytest.raises(ClientError, match="is damaged"):
        ReplayStore(tmp_path).record(b"\x01" * 16, NOW)
