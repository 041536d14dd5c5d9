"""Operator commands that say what they did: gc's bound and its deletion log,
what verify --repair removed (per transfer and sender, log and metric), what
verify reports beside a serving relay (an upload mid-chunk, gc deleting), and
the per-account listings."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from typing import cast

import sqlalchemy as sa
from click.testing import Result

from sealdrop.server import ops
from sealdrop.server.blobs import BlobInfo, BlobStore
from sealdrop.server.db import transfers

from .relaykit import RunningRelay
from .test_faults import _start_partial_chunk, _wait_for
from .test_ops import MiB, _complete, run_cli


def _log_lines(result: Result) -> list[dict[str, object]]:
    return [json.loads(x) for x in result.stderr.splitlines() if x.startswith("{")]


def _orphans(relay: RunningRelay, n: int) -> list[str]:
    keys = [f"orph{i:02d}" + "Q" * 16 for i in range(n)]
    for key in keys:
        p = relay.config.blob_dir / "complete" / key[:2] / key
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"no row")
    return keys


def test_gc_refuses_to_delete_most_blobs_without_force(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    relay.user("bob-lab")
    keep = [_complete(relay, alice, os.urandom(500)) for _ in range(3)]
    orphans = _orphans(relay, ops.GC_FLOOR + 1)
    stored = {b.key for b in relay.run(relay.relay.blobs.list())}

    r = run_cli(relay, "gc", "--json", ok=False)
    assert isinstance(r.exception, ops.GcRefused)
    said = str(r.exception)
    assert f"gc would delete {ops.GC_FLOOR + 1} of the {len(stored)} stored blobs" in said
    assert "nothing was deleted" in said and "--force" in said
    assert {b.key for b in relay.run(relay.relay.blobs.list())} == stored

    r = run_cli(relay, "gc", "--json", "--force")
    assert json.loads(r.stdout)["orphan_blobs_deleted"] == len(orphans)
    deleted = [x for x in _log_lines(r) if x["event"] == "gc_delete"]
    assert sorted(str(x["transfer"]) for x in deleted) == orphans
    assert {x["reason"] for x in deleted} == {"orphan"}
    assert {b.key for b in relay.run(relay.relay.blobs.list())} == set(keep)


def test_gc_under_the_bound_deletes_and_logs_each_with_its_reason(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    relay.user("bob-lab")
    old = _complete(relay, alice, os.urandom(500))
    keep = _complete(relay, alice, os.urandom(500))
    orphan = _orphans(relay, 1)[0]

    async def expire() -> None:
        async with relay.relay.store.engine.begin() as conn:
            await conn.execute(sa.update(transfers).where(transfers.c.id == old)
                               .values(expires_at=1))

    relay.run(expire())
    r = run_cli(relay, "gc", "--json")
    got = {str(x["transfer"]): x["reason"] for x in _log_lines(r) if x["event"] == "gc_delete"}
    assert got == {old: "expired", orphan: "orphan"}
    assert {b.key for b in relay.run(relay.relay.blobs.list())} == {keep}


def test_verify_repair_reports_each_removal_with_its_sender(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    carol, _ = relay.user("carol-rad")
    relay.user("bob-lab")
    good = _complete(relay, alice, os.urandom(3000))
    tampered = _complete(relay, alice, os.urandom(3000))
    missing = _complete(relay, carol, os.urandom(3000))
    blobs = relay.config.blob_dir
    p = blobs / "complete" / tampered[:2] / tampered
    data = bytearray(p.read_bytes())
    data[10] ^= 1
    p.write_bytes(bytes(data))
    (blobs / "complete" / missing[:2] / missing).unlink()
    orphan = "O" * 22
    (blobs / "partial" / orphan).write_bytes(b"no row")

    # Without --repair: nothing removed; the metric says what was found, and when.
    r = run_cli(relay, "verify", "--json", ok=False)
    assert json.loads(r.stdout)["removed"] == []
    prom = (relay.config.data_dir / "verify.prom").read_text()
    assert 'sealdrop_verify_problems{problem="tampered"} 1' in prom
    assert 'sealdrop_verify_problems{problem="orphan"} 1' in prom
    assert "\nsealdrop_verify_last_run_timestamp_seconds " in prom
    assert "sealdrop_verify_repair" not in prom  # no repair has run

    r = run_cli(relay, "verify", "--repair", "--json")
    removed = json.loads(r.stdout)["removed"]
    assert sorted(removed, key=lambda x: x["transfer"]) == sorted([
        {"transfer": tampered, "sender": "alice", "problem": "tampered", "action": "deleted"},
        {"transfer": missing, "sender": "carol-rad", "problem": "missing", "action": "deleted"},
        {"transfer": orphan, "sender": "", "problem": "orphan", "action": "blob_deleted"},
    ], key=lambda x: x["transfer"])
    logged = [x for x in _log_lines(r) if x["event"] == "verify_removed"]
    assert sorted(str(x["transfer"]) for x in logged) == sorted([tampered, missing, orphan])
    assert {str(x["transfer"]): x["sender"] for x in logged}[missing] == "carol-rad"

    prom = (relay.config.data_dir / "verify.prom").read_text()
    assert ('sealdrop_verify_repair_removed{sender="alice",problem="tampered",'
            'action="deleted"} 1') in prom
    assert ('sealdrop_verify_repair_removed{sender="carol-rad",problem="missing",'
            'action="deleted"} 1') in prom
    assert 'sealdrop_verify_repair_removed{sender="",problem="orphan",' in prom
    # A plain verify (the weekly timer) keeps what the last repair removed.
    run_cli(relay, "verify")
    kept = (relay.config.data_dir / "verify.prom").read_text()
    assert 'sealdrop_verify_problems{problem="tampered"} 0' in kept
    assert [x for x in kept.splitlines() if "repair" in x] == \
        [x for x in prom.splitlines() if "repair" in x]
    text = run_cli(relay, "verify", "--repair").stdout
    assert "removed:" not in text and "ok" in text  # nothing left to remove
    assert "sealdrop_verify_repair_removed{" not in \
        (relay.config.data_dir / "verify.prom").read_text()
    assert {t["id"] for t in relay.rows()["transfers"]} == {good}


def test_verify_beside_an_upload_mid_chunk_says_so_exits_0_and_repair_leaves_it(
    relay: RunningRelay,
) -> None:
    """A chunk being written makes the partial blob longer than its committed
    offset, as during every upload: the weekly verify must not fail on it, and
    --repair must not cut under the writer."""
    alice, a = relay.user("alice")
    bob, _ = relay.user("bob-lab")
    blob = os.urandom(11 * MiB)
    tid = alice.create_transfer(["bob-lab"], len(blob))["id"]
    alice.upload_chunk(tid, 0, blob[:MiB])
    part = relay.config.blob_dir / "partial" / tid
    # Well past one write block (1 MiB) plus a receive batch the relay may still
    # wait to fill (server.http_parse): some of it is surely written.
    chunk, sent = blob[MiB:], 6 * MiB + 5
    s = _start_partial_chunk(relay.host, relay.port, a, tid, MiB, chunk, sent)
    with s:
        _wait_for(lambda: part.stat().st_size > MiB)

        text = run_cli(relay, "verify").stdout  # exit status 0: run_cli checks it
        assert ("1 upload(s) in progress or abandoned hold bytes past their committed offset; "
                "the next chunk or gc cuts them") in text
        assert f"trailing: {tid}" in text and text.rstrip().endswith("ok")
        assert "sealdrop_verify_uploads_past_offset 1" in \
            (relay.config.data_dir / "verify.prom").read_text()
        r = json.loads(run_cli(relay, "verify", "--repair", "--json").stdout)
        assert r["ok"] and r["trailing"] == [tid] and r["removed"] == []
        assert part.stat().st_size > MiB  # not cut

        s.sendall(chunk[sent:])  # the writer finishes its chunk, undisturbed
        assert s.recv(64).startswith(b"HTTP/1.1 204")
    alice.complete(tid)
    out = io.BytesIO()
    bob.download(tid, out)
    assert out.getvalue() == blob


class _GcDuringVerify:
    """The relay's blob store, with gc deleting a transfer (row, then blob, as
    ops._delete does) at two moments of a verify: just after its listing of
    the blobs, and just before it reads one transfer's blob. What an hourly gc
    does during a long weekly verify, made to happen at those instants."""

    def __init__(self, relay: RunningRelay, after_list: str, before_read: str) -> None:
        self.inner, self.store = relay.relay.blobs, relay.relay.store
        self.after_list, self.before_read = after_list, before_read

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def list(self) -> list[BlobInfo]:
        listed = await self.inner.list()
        await ops._delete(self.store, self.inner, self.after_list)
        return listed

    async def check_chunks(self, key: str, chunks: Sequence[tuple[int, str]], *,
                           complete: bool) -> tuple[int, int | None]:
        if key == self.before_read:
            self.before_read = ""
            await ops._delete(self.store, self.inner, key)
        return await self.inner.check_chunks(key, chunks, complete=complete)


def test_verify_reports_nothing_that_gc_deleted_while_it_ran(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    relay.user("bob-lab")
    keep, listed, read = (_complete(relay, alice, os.urandom(500)) for _ in range(3))
    blobs = cast(BlobStore, _GcDuringVerify(relay, after_list=listed, before_read=read))
    report = relay.run(ops.verify(relay.relay.store, blobs, repair=False))
    # Without the re-checks: `listed` an orphan (its row gone after the listing),
    # `read` missing (its blob gone after the rows were read).
    assert (report.orphans, report.missing, report.tampered) == ([], [], [])
    assert report.ok and report.checked == 2
    assert [b.key for b in relay.run(relay.relay.blobs.list())] == [keep]


def test_account_usage_and_transfers(relay: RunningRelay) -> None:
    alice, _ = relay.user("alice")
    bob, _ = relay.user("bob-lab")
    relay.user("carol-rad")
    a1 = _complete(relay, alice, os.urandom(1000))
    a2 = _complete(relay, alice, os.urandom(2500))
    pending = bob.create_transfer(["alice"], 4000)["id"]
    bob.upload_chunk(pending, 0, os.urandom(1500))

    usage = {x["handle"]: x for x in map(
        json.loads, run_cli(relay, "account", "usage", "--json").stdout.splitlines())}
    assert {h: (u["transfers"], u["bytes"]) for h, u in usage.items()} == {
        "alice": (2, 3500), "bob-lab": (1, 1500), "carol-rad": (0, 0)}
    assert usage["alice"]["quota_bytes"] == relay.config.quota_bytes
    assert "alice  2 transfer(s)  3500 bytes" in run_cli(relay, "account", "usage").stdout

    listed = [json.loads(x) for x in
              run_cli(relay, "account", "transfers", "alice", "--json").stdout.splitlines()]
    assert {x["id"]: x["role"] for x in listed} == {a1: "sent", a2: "sent", pending: "received"}
    assert {x["id"]: x["state"] for x in listed}[pending] == "uploading"
    assert [x["id"] for x in map(json.loads, run_cli(
        relay, "account", "transfers", "carol-rad", "--json").stdout.splitlines())] == []
    r = run_cli(relay, "account", "transfers", "nobody", ok=False)
    assert r.exit_code == 1 and "no account 'nobody'" in str(r.exception)
