"""A real `sealdrop send` through S3 faults in the middle of its upload (issue
14): a relay process whose object store is a real SeaweedFS behind
tests/s3proxy.py, which refuses one part twice (503 SlowDown) and loses the
answer to another after SeaweedFS stored it (the relay gives up after
s3_timeout_seconds). Injected, because SeaweedFS cannot fail on cue; SeaweedFS
killed under a send is tests/e2e/test_s3_relay.py.

The send rides over both (the client retries the relay's 503s, and resumes
from the relay's offset), the lab receives the very files, and the bucket holds
the one object and no upload; `sealdrop-relay verify` finds nothing to repair.
One database kind: PostgreSQL when SEALDROP_TEST_PG_URL is set, as a
scaled-out relay runs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.e2e.kit import RELAY, Relay, User, make_case, tree
from tests.s3kit import SECRET_KEY, Seaweed, s3_bucket, seaweed  # noqa: F401
from tests.s3proxy import FaultProxy
from tests.server.relaykit import PG_URL, fresh_database

MiB = 1024 * 1024


def test_send_rides_over_s3_faults_mid_upload(
    tmp_path: Path, seaweed: Seaweed, s3_bucket: str,  # noqa: F811
) -> None:
    proxy = FaultProxy(seaweed.ports["s3.port"])
    proxy.start()
    data = tmp_path / "relay-data"
    urls = fresh_database("postgresql" if PG_URL else "sqlite", data)
    db_url = next(urls)
    data.mkdir(parents=True, exist_ok=True)
    (data / "relay.toml").write_text(
        f'blobs = "s3://{s3_bucket}/relay"\ns3_endpoint = "{proxy.endpoint}"\n'
        f'database_url = "{db_url}"\ns3_timeout_seconds = 3.0\n')
    relay = Relay(data, tmp_path / "relay.log")  # `sealdrop-relay init` binds the bucket
    relay.start()
    try:
        practice = User(tmp_path, "cabinet-martin", relay)
        lab = User(tmp_path, "labo", relay)
        practice.init()
        lab.init()
        practice.trust(lab)
        lab.trust(practice)
        case = make_case(tmp_path / "src", big=11 * MiB)
        refused = proxy.fail("PUT", "partNumber=2", 503, "SlowDown", times=2)
        lost = proxy.lose_answer("PUT", "partNumber=3", times=1)
        # 1 MiB asked for: the client fits its chunks to the relay's 5 MiB parts.
        done = practice.json("send", str(case), "--to", lab.handle, "--chunk-size", str(MiB),
                             timeout=300)
        assert refused.hits == 2 and lost.hits == 1  # every fault was met
        tid = done["transfer_id"]
        assert seaweed.objects(s3_bucket) == [f"relay/blobs/{tid}", "relay/relay-id"]
        assert seaweed.uploads(s3_bucket) == []
        dest = tmp_path / "in"
        dest.mkdir()
        got = lab.json("receive", tid, "--into", str(dest), timeout=300)
        assert got["failed"] == [] and tree(dest / case.name) == tree(case)
        verify = subprocess.run([RELAY, "verify", "--json", "--data", str(data)],
                                env=relay.env, capture_output=True, text=True, timeout=120)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        report = json.loads(verify.stdout)
        assert report["ok"] and report["checked"] == 1 and report["removed"] == []
    finally:
        relay.close()
        proxy.stop()
        next(urls, None)
    log = relay.log.read_text(errors="replace")
    # The relay answered the three faults 503 and told its operator why,
    # without a secret, a presigned URL or the bucket.
    assert log.count('"status":503') >= 3
    unavailable = [json.loads(line) for line in log.splitlines()
                   if '"store_unavailable"' in line and line.startswith("{")]
    assert any("SlowDown" in json.dumps(u) for u in unavailable)
    assert any("did not answer" in json.dumps(u) for u in unavailable)
    assert SECRET_KEY not in log and "X-Amz-Signature" not in log
    assert not any(s3_bucket in json.dumps(u) for u in unavailable)
