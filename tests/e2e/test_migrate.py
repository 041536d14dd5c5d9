"""`sealdrop-relay migrate`: a SQLite + files relay moved onto another database
and blob store, verified blob by blob, resumable, with the source untouched.

The target database is PostgreSQL when SEALDROP_TEST_PG_URL is set (CI), and a
second SQLite file otherwise; the target blob store is a folder, or a bucket on
a real SeaweedFS (tests/s3kit.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.kit import RELAY, Relay, User, make_case, tree
from tests.s3kit import AWS_ENV, SECRET_KEY, Seaweed, s3_bucket, seaweed  # noqa: F401
from tests.server.relaykit import PG_URL, _pg_admin

CHUNK = ("--chunk-size", str(64 * 1024))


@pytest.fixture
def target_url(tmp_path: Path) -> Iterator[str]:
    if not PG_URL:
        yield f"sqlite:///{tmp_path / 'target.db'}"
        return
    name = "sd_mig_" + uuid.uuid4().hex[:12]
    _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _digest_tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` and its SHA-256; SQLite's -wal/-shm aside."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def _migrate(relay: Relay, url: str, blobs: Path, *extra: str, check: bool = True,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([RELAY, "migrate", "--data", str(relay.data), "--to", url,
                        "--blobs", str(blobs), *extra],
                       env={**relay.env, **(env or {})}, capture_output=True, text=True,
                       timeout=300)
    if check and r.returncode != 0:
        raise AssertionError(f"migrate failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def _target_folder(tmp_path: Path, relay: Relay, url: str) -> Path:
    """A data folder for the moved relay: the source's relay.toml pointed at
    the target database; its blobs/ is where migrate wrote."""
    data = tmp_path / "moved"
    data.mkdir()
    conf = (relay.data / "relay.toml").read_text()
    assert '\ndatabase_url = ""\n' in conf
    (data / "relay.toml").write_text(
        conf.replace('\ndatabase_url = ""\n', f'\ndatabase_url = "{url}"\n'))
    shutil.copy2(relay.data / "log-key", data / "log-key")  # the same log goes on
    return data


def test_a_relay_moves_with_its_transfers_and_the_source_stays_untouched(
    tmp_path: Path, pair: tuple[User, User], target_url: str
) -> None:
    practice, lab = pair
    relay = practice.relay
    cases = [make_case(tmp_path / "src", marker=m, big=600_000) for m in ("A", "B")]
    tids = [practice.json("send", str(c), "--to", lab.handle, *CHUNK)["transfer_id"]
            for c in cases]
    relay.stop()
    before = _digest_tree(relay.data)
    dest = _target_folder(tmp_path, relay, target_url)

    out = _migrate(relay, target_url, dest / "blobs", "--json")
    report = json.loads(out.stdout)
    assert report["copied"] == 2 and report["skipped"] == 0 and not report["already_moved"]
    assert report["rows"]["transfers"] == 2 and report["rows"]["accounts"] == 2
    assert report["rows"]["transfer_chunks"] > 2  # many small chunks, each re-checked
    assert _digest_tree(relay.data) == before  # the source was only read

    # Run again: nothing to copy, every blob re-checked, the rows left alone.
    again = json.loads(_migrate(relay, target_url, dest / "blobs", "--json").stdout)
    assert again["copied"] == 0 and again["skipped"] == 2 and again["already_moved"]

    # The moved relay serves the same transfers; the lab receives and verifies them.
    moved = subprocess.run([RELAY, "verify", "--data", str(dest), "--json"],
                           env=relay.env, capture_output=True, text=True, timeout=120)
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["checked"] == 2
    relay.data = dest
    relay.start()
    for case, tid in zip(cases, tids, strict=True):
        into = tmp_path / f"in-{tid}"
        into.mkdir()
        lab.run("receive", "--into", str(into), "--", tid)
        assert tree(into / case.name) == tree(case)


def test_an_upload_in_progress_moves_and_the_sender_finishes_it_on_the_new_relay(
    tmp_path: Path, pair: tuple[User, User], target_url: str
) -> None:
    from tests.e2e.test_resume import _start_and_kill_send

    practice, lab = pair
    relay = practice.relay
    case = make_case(tmp_path / "src", big=2 * 1024 * 1024)
    _start_and_kill_send(practice, case, lab.handle, after_chunks=6)
    ((tid, committed),) = relay.sql("select id, committed from transfers")
    assert committed > 0
    relay.stop()
    dest = _target_folder(tmp_path, relay, target_url)
    _migrate(relay, target_url, dest / "blobs")
    relay.data = dest
    relay.start()
    practice.run("send", str(case), "--to", lab.handle, *CHUNK)  # resumes
    into = tmp_path / "in"
    into.mkdir()
    lab.run("receive", "--into", str(into), "--", tid)
    assert tree(into / case.name) == tree(case)


def test_an_interrupted_migrate_resumes_and_copies_each_blob_once(
    tmp_path: Path, pair: tuple[User, User], target_url: str
) -> None:
    practice, lab = pair
    relay = practice.relay
    cases = [make_case(tmp_path / "src", marker=m, big=300_000) for m in "ABC"]
    for c in cases:
        practice.run("send", str(c), "--to", lab.handle)
    relay.stop()
    dest = _target_folder(tmp_path, relay, target_url)
    # Killed after the first blob: the progress line is on stderr.
    proc = subprocess.Popen([RELAY, "migrate", "--data", str(relay.data), "--to", target_url,
                             "--blobs", str(dest / "blobs")], env=relay.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert first.startswith("blob 1/3 ")
    proc.kill()
    proc.wait(30)
    report = json.loads(_migrate(relay, target_url, dest / "blobs", "--json").stdout)
    assert report["skipped"] >= 1 and report["copied"] + report["skipped"] == 3
    assert not report["already_moved"] and report["rows"]["transfers"] == 3


def test_a_tampered_source_blob_stops_the_move_with_a_sentence(
    tmp_path: Path, pair: tuple[User, User], target_url: str
) -> None:
    practice, lab = pair
    relay = practice.relay
    tid = practice.json("send", str(make_case(tmp_path / "src", big=200_000)), "--to",
                        lab.handle)["transfer_id"]
    relay.stop()
    blob = relay.blob_path(tid)
    data = bytearray(blob.read_bytes())
    data[1000] ^= 1
    blob.write_bytes(bytes(data))
    dest = _target_folder(tmp_path, relay, target_url)
    r = _migrate(relay, target_url, dest / "blobs", check=False)
    assert r.returncode != 0
    assert f"blob {tid} in the source does not match its recorded hash" in r.stderr
    assert "sealdrop-relay verify" in r.stderr
    assert "Traceback" not in r.stderr
    # Nothing was moved: the target database holds no rows, so it is no relay yet.
    assert not list((dest / "blobs").glob("complete/*/*"))


def test_a_target_that_belongs_to_another_relay_is_refused(
    tmp_path: Path, pair: tuple[User, User], target_url: str
) -> None:
    practice, lab = pair
    relay = practice.relay
    practice.run("send", str(make_case(tmp_path / "src")), "--to", lab.handle)
    relay.stop()
    other = tmp_path / "other-blobs"
    other.mkdir()
    (other / "relay-id").write_text("0" * 32 + "\n")
    r = _migrate(relay, target_url, other, check=False)
    assert r.returncode != 0
    assert "belongs to relay 00000000000000000000000000000000" in r.stderr
    assert sorted(p.name for p in other.iterdir()) == ["relay-id"]


def test_a_password_on_the_command_line_is_refused(
    tmp_path: Path, relay: Relay
) -> None:
    relay.stop()
    r = _migrate(relay, "postgresql://sealdrop:hunter2@127.0.0.1/x", tmp_path / "b",
                 check=False)
    assert r.returncode != 0
    assert "PGPASSWORD" in r.stderr and "hunter2" not in r.stderr
    assert not (tmp_path / "b").exists()  # refused before anything was made


def test_a_files_relay_moves_into_s3_with_small_chunks_gathered_into_parts(
    tmp_path: Path, pair: tuple[User, User], target_url: str, seaweed: Seaweed,  # noqa: F811
    s3_bucket: str,  # noqa: F811
) -> None:
    """Clients chose 64 KiB chunks, but an S3 part is at least 5 MiB: each blob
    moves as whole parts of gathered chunks, every chunk still checked against
    its own record; an upload in progress keeps its whole parts (its records
    become one per part)."""
    from tests.e2e.test_resume import _start_and_kill_send

    practice, lab = pair
    relay = practice.relay
    case = make_case(tmp_path / "src", marker="A", big=11 * 1024 * 1024)
    tid = practice.json("send", str(case), "--to", lab.handle, *CHUNK,
                        timeout=300)["transfer_id"]
    partial = make_case(tmp_path / "src", marker="B", big=7 * 1024 * 1024)
    _start_and_kill_send(practice, partial, lab.handle, after_chunks=90)
    ((up_id, committed),) = relay.sql(
        "select id, committed from transfers where state = 'uploading'")
    assert 5 * 1024 * 1024 <= committed < 7 * 1024 * 1024
    relay.stop()
    blobs = f"s3://{s3_bucket}/moved"
    r = subprocess.run([RELAY, "migrate", "--data", str(relay.data), "--to", target_url,
                        "--blobs", blobs, "--s3-endpoint", seaweed.endpoint, "--json"],
                       env={**relay.env, **AWS_ENV}, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["copied"] == 2 and report["uploads_cut_back"] == 1
    assert SECRET_KEY not in r.stderr + r.stdout
    assert seaweed.objects(s3_bucket) == [f"moved/blobs/{tid}", "moved/relay-id"]
    assert seaweed.uploads(s3_bucket) == [f"moved/blobs/{up_id}"]

    dest = tmp_path / "moved"
    dest.mkdir()
    conf = (relay.data / "relay.toml").read_text()
    conf = conf.replace('\ndatabase_url = ""\n', f'\ndatabase_url = "{target_url}"\n')
    conf = conf.replace('\nblobs = ""\n', f'\nblobs = "{blobs}"\ns3_endpoint = '
                                         f'"{seaweed.endpoint}"\n')
    (dest / "relay.toml").write_text(conf)
    shutil.copy2(relay.data / "log-key", dest / "log-key")  # the same log goes on
    relay.data = dest
    relay.env.update(AWS_ENV)
    relay.start()
    # Its sender's next run cannot go on in 64 KiB chunks on an S3 relay: it
    # says so and sends the case anew (the interrupted transfer is deleted).
    again = practice.run("send", str(partial), "--to", lab.handle, "--json", *CHUNK,
                         timeout=300)
    assert "sending anew from the start" in again.stderr
    fresh = json.loads(again.stdout)
    assert fresh["resumed"] is False and fresh["transfer_id"] != up_id
    for c, t in ((case, tid), (partial, fresh["transfer_id"])):
        into = tmp_path / f"in-{t}"
        into.mkdir()
        lab.run("receive", "--into", str(into), "--", t, timeout=300)
        assert tree(into / c.name) == tree(c)
    assert seaweed.uploads(s3_bucket) == []


def test_blobs_only_copies_the_bulk_and_the_next_run_moves_the_rest(
    tmp_path: Path, pair: tuple[User, User], target_url: str
) -> None:
    """The short-downtime path: blobs copied while the relay serves, then a
    transfer more, then the relay stopped and the rows moved."""
    practice, lab = pair
    relay = practice.relay
    practice.run("send", str(make_case(tmp_path / "src", marker="A")), "--to", lab.handle)
    dest = _target_folder(tmp_path, relay, target_url)
    bulk = json.loads(_migrate(relay, target_url, dest / "blobs", "--blobs-only",
                               "--json").stdout)
    assert bulk["copied"] == 1 and bulk["rows"] == {}
    practice.run("send", str(make_case(tmp_path / "src", marker="B")), "--to", lab.handle)
    relay.stop()
    last = json.loads(_migrate(relay, target_url, dest / "blobs", "--json").stdout)
    assert last["skipped"] == 1 and last["copied"] == 1
    assert last["rows"]["transfers"] == 2 and not last["already_moved"]
