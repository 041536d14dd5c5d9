"""A real relay process on the S3 blob store (real SeaweedFS, tests/s3kit.py), on
SQLite and, with SEALDROP_TEST_PG_URL, PostgreSQL: a real `sealdrop send` of a
few tens of MiB killed midway and resumed, `sealdrop receive`, then
`sealdrop-relay verify` and `gc` with nothing to do. And the start-up refusals:
a missing bucket, refused credentials, credentials in the URL."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.kit import RELAY, Relay, User, make_case, tree, wait_for
from tests.s3kit import AWS_ENV, SECRET_KEY, Seaweed, s3_bucket, seaweed  # noqa: F401
from tests.server.relaykit import PG_URL, fresh_database

MiB = 1024 * 1024
PART = 5 * MiB


def _relay_toml(data: Path, *, blobs: str, endpoint: str, database_url: str = "") -> None:
    data.mkdir(parents=True, exist_ok=True)
    (data / "relay.toml").write_text(
        f'blobs = "{blobs}"\ns3_endpoint = "{endpoint}"\ndatabase_url = "{database_url}"\n')


@pytest.fixture(params=["sqlite"] + (["postgresql"] if PG_URL else []))
def s3_relay(request: pytest.FixtureRequest, tmp_path: Path, seaweed: Seaweed,  # noqa: F811
             s3_bucket: str) -> Iterator[Relay]:  # noqa: F811
    data = tmp_path / "relay-data"
    urls = fresh_database(request.param, data)
    db_url = next(urls)
    _relay_toml(data, blobs=f"s3://{s3_bucket}/relay", endpoint=seaweed.endpoint,
                database_url=db_url)
    r = Relay(data, tmp_path / "relay.log")  # `sealdrop-relay init` binds the bucket
    r.start()
    try:
        yield r
    finally:
        r.close()
        next(urls, None)


def _relay_cmd(relay: Relay, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RELAY, *args, "--data", str(relay.data)], env=relay.env,
                          capture_output=True, text=True, timeout=120)


# Each end-to-end S3 test on one database, the two between them: the S3 path
# does not depend on it, and tests/server/test_s3_relay.py runs both (CI time).
@pytest.mark.parametrize("s3_relay", ["sqlite"], indirect=True)
def test_send_killed_resumed_received_on_s3(
    tmp_path: Path, s3_relay: Relay, seaweed: Seaweed, s3_bucket: str,  # noqa: F811
) -> None:
    practice, lab = User(tmp_path, "cabinet-martin", s3_relay), User(tmp_path, "labo", s3_relay)
    practice.init()
    lab.init()
    practice.trust(lab)
    lab.trust(practice)
    case = make_case(tmp_path / "src", big=30 * MiB)
    # Asked for 1 MiB chunks, the client fits them to the relay's 5 MiB minimum.
    small = ("--chunk-size", str(MiB))
    with s3_relay.throttled(up=4 * MiB):
        proc = practice.popen("send", str(case), "--to", lab.handle, "--json", *small)
        wait_for(lambda: s3_relay.metric("sealdrop_upload_bytes_total") >= 2 * PART, 120,
                 "two chunks committed")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        s3_relay.link.drop_connections()
    done = practice.json("send", str(case), "--to", lab.handle, *small, timeout=300)
    assert done["resumed"] is True and done["skipped_bytes"] >= 2 * PART, done
    tid = done["transfer_id"]
    # every chunk but the last is one 5 MiB part; the blob is one object, no upload left
    objects = seaweed.objects(s3_bucket)
    assert objects == [f"relay/blobs/{tid}", "relay/relay-id"]
    assert seaweed.uploads(s3_bucket) == []
    size = seaweed.client().head_object(Bucket=s3_bucket, Key=f"relay/blobs/{tid}")[
        "ContentLength"]
    dest = tmp_path / "in"
    dest.mkdir()
    got = lab.json("receive", tid, "--into", str(dest), timeout=300)
    assert got["failed"] == [] and tree(dest / case.name) == tree(case)
    verify = _relay_cmd(s3_relay, "verify", "--json")
    assert verify.returncode == 0, verify.stderr
    report = json.loads(verify.stdout)
    assert report["ok"] and report["checked"] == 1 and report["removed"] == []
    gc = _relay_cmd(s3_relay, "gc", "--json")
    assert gc.returncode == 0, gc.stderr
    counts = json.loads(gc.stdout)
    assert counts["transfers_deleted"] == 0 and counts["orphan_blobs_deleted"] == 0
    assert seaweed.objects(s3_bucket) == objects
    assert size > 30 * MiB
    if "postgresql" not in (s3_relay.data / "relay.toml").read_text():
        # a backup of an S3 relay is a files relay: the blob downloaded, its
        # relay.toml no longer naming the bucket, and it verifies
        backup = tmp_path / "backup"
        made = _relay_cmd(s3_relay, "backup", "--to", str(backup))
        assert made.returncode == 0, made.stderr
        assert (backup / "blobs" / "complete" / tid[:2] / tid).stat().st_size == size
        assert '# blobs = "s3://' in (backup / "relay.toml").read_text()
        again = subprocess.run([RELAY, "verify", "--json", "--data", str(backup)],
                               env=s3_relay.env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and json.loads(again.stdout)["ok"], again.stderr
    # nothing secret in the relay's log
    log = s3_relay.log.read_text(errors="replace")
    assert SECRET_KEY not in log and "X-Amz-Signature" not in log


@pytest.mark.parametrize("s3_relay", ["postgresql" if PG_URL else "sqlite"], indirect=True)
def test_s3_stopped_mid_send_the_send_waits_and_finishes(
    tmp_path: Path, s3_relay: Relay, seaweed: Seaweed, s3_bucket: str,  # noqa: F811
) -> None:
    """SeaweedFS killed while a real `sealdrop send` uploads: the relay answers
    its chunks 503, the client keeps retrying (SEALDROP_RETRY_FOR), and once the
    object store is back the send finishes; no orphan upload or row is left."""
    practice, lab = User(tmp_path, "cabinet-martin", s3_relay), User(tmp_path, "labo", s3_relay)
    practice.init()
    lab.init()
    practice.trust(lab)
    case = make_case(tmp_path / "src", big=20 * MiB)
    with s3_relay.throttled(up=4 * MiB):
        proc = practice.popen("send", str(case), "--to", lab.handle, "--json",
                              env={"SEALDROP_RETRY_FOR": "120"})
        try:
            wait_for(lambda: s3_relay.metric("sealdrop_upload_bytes_total") >= PART, 120,
                     "a chunk committed")
            seaweed.kill()
            wait_for(lambda: '"status":503' in s3_relay.log.read_text(errors="replace"), 120,
                     "a chunk answered 503")
        finally:
            seaweed.start()
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    tid = json.loads(out)["transfer_id"]
    assert seaweed.uploads(s3_bucket) == []
    assert seaweed.objects(s3_bucket) == [f"relay/blobs/{tid}", "relay/relay-id"]
    verify = _relay_cmd(s3_relay, "verify", "--json")
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"], verify.stderr
    assert json.loads(verify.stdout)["checked"] == 1
    log = s3_relay.log.read_text(errors="replace")
    assert "X-Amz-Signature" not in log and "Traceback" not in log


def _start_fails(tmp_path: Path, blobs: str, endpoint: str,
                 env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    data = tmp_path / "bad-relay"
    _relay_toml(data, blobs=blobs, endpoint=endpoint)
    run = subprocess.run([RELAY, "init", "--data", str(data)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    return run


def test_start_up_refusals(tmp_path: Path, seaweed: Seaweed, s3_bucket: str) -> None:  # noqa: F811
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALDROP")}
    env.update(AWS_ENV)
    missing = _start_fails(tmp_path / "a", "s3://no-such-bucket/x", seaweed.endpoint, env)
    assert "the bucket no-such-bucket does not exist" in missing.stderr
    wrong = _start_fails(tmp_path / "b", f"s3://{s3_bucket}/x", seaweed.endpoint,
                         {**env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"})
    assert "refused the relay's credentials" in wrong.stderr
    assert "not-the-secret" not in wrong.stderr
    url = _start_fails(tmp_path / "c", f"s3://k3y:s3cr3t@{s3_bucket}/x", seaweed.endpoint, env)
    assert "must not hold credentials" in url.stderr and "AWS_ACCESS_KEY_ID" in url.stderr
    assert "s3cr3t" not in url.stderr
    # nothing was written into the bucket by any of them
    assert seaweed.objects(s3_bucket) == []
