"""The scaled-out relay as an operator deploys it: nginx (the shipped template) in
front of two `sealdrop-relay serve` processes on one PostgreSQL database and one
S3 bucket (SeaweedFS). Any request may land on either process.

Needs PostgreSQL (SEALDROP_TEST_PG_URL, set by .ci/run): two processes on one
SQLite file are not a supported deployment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.kit import RELAY, Relay, make_case, tree, wait_for
from tests.e2e.nginxkit import FrontedUser, Nginx
from tests.s3kit import Seaweed, s3_bucket, seaweed  # noqa: F401
from tests.server.relaykit import PG_URL, fresh_database

pytestmark = pytest.mark.skipif(not PG_URL, reason="needs SEALDROP_TEST_PG_URL (CI sets it)")

MiB = 1024 * 1024


class Pair:
    """Two relay processes sharing a database and a bucket, behind one nginx."""

    def __init__(self, tmp: Path, db_url: str, bucket: str, endpoint: str) -> None:
        conf = (f'blobs = "s3://{bucket}/relay"\ns3_endpoint = "{endpoint}"\n'
                f'database_url = "{db_url}"\n')
        self.relays: list[Relay] = []
        for name in ("a", "b"):
            data = tmp / f"relay-{name}"
            data.mkdir()
            (data / "relay.toml").write_text(conf)
            if self.relays:  # one log key for every process on the database (transparency.md)
                shutil.copy2(self.relays[0].data / "log-key", data / "log-key")
            r = Relay(data, tmp / f"relay-{name}.log")  # init: the second finds the pair bound
            r.env["SEALDROP_RELAY_TRUSTED_PROXIES"] = "127.0.0.1/32"
            r.start()
            self.relays.append(r)
        self.front = Nginx(tmp / "nginx", [r.port for r in self.relays])
        self.front.start()

    def close(self) -> None:
        self.front.stop()
        for r in self.relays:
            r.close()

    @staticmethod
    def chunks_taken(r: Relay) -> int:
        """How many chunk uploads relay ``r`` answered 2xx (its access log names the
        route template, never a transfer id)."""
        pattern = re.compile(r'"method":"PATCH".*"route":"[^"]*/data".*"status":2\d\d')
        return sum(1 for line in r.log.read_text(errors="replace").splitlines()
                   if pattern.search(line))


@pytest.fixture
def pair(tmp_path: Path, seaweed: Seaweed, s3_bucket: str) -> Iterator[Pair]:  # noqa: F811
    urls = fresh_database("postgresql", tmp_path / "unused")
    db_url = next(urls)
    p = Pair(tmp_path, db_url, s3_bucket, seaweed.endpoint)
    try:
        yield p
    finally:
        p.close()
        next(urls, None)


def _users(tmp_path: Path, pair: Pair) -> tuple[FrontedUser, FrontedUser]:
    practice = FrontedUser(tmp_path, "cabinet-martin", pair.relays[0], pair.front)
    lab = FrontedUser(tmp_path, "labo-dupont", pair.relays[1], pair.front)
    practice.init()
    lab.init()
    practice.trust(lab)
    lab.trust(practice)
    return practice, lab


def test_one_upload_spreads_over_both_processes_and_arrives_whole(
    tmp_path: Path, pair: Pair, seaweed: Seaweed, s3_bucket: str  # noqa: F811
) -> None:
    practice, lab = _users(tmp_path, pair)
    case = make_case(tmp_path / "src", big=24 * MiB)
    tid = practice.json("send", str(case), "--to", lab.handle, "--chunk-size",
                        str(5 * MiB), timeout=300)["transfer_id"]
    # nginx balances requests, not connections' lifetimes: both processes took
    # chunks of the one upload, each continuing where the other committed.
    patches = [pair.chunks_taken(r) for r in pair.relays]
    assert all(n >= 1 for n in patches), patches
    dest = tmp_path / "in"
    dest.mkdir()
    got = lab.json("receive", tid, "--into", str(dest), timeout=300)
    assert got["failed"] == [] and tree(dest / case.name) == tree(case)
    assert seaweed.uploads(s3_bucket) == []  # no multipart upload left behind
    for r in pair.relays:  # either process's `verify` sees the same, intact relay
        out = subprocess.run([RELAY, "verify", "--data", str(r.data), "--json"], env=r.env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["checked"] == 1


def test_a_process_killed_mid_upload_and_the_send_finishes_through_the_other(
    tmp_path: Path, pair: Pair, seaweed: Seaweed, s3_bucket: str  # noqa: F811
) -> None:
    practice, lab = _users(tmp_path, pair)
    case = make_case(tmp_path / "src", big=40 * MiB)
    proc = practice.popen("send", str(case), "--to", lab.handle, "--json", "--chunk-size",
                          str(5 * MiB))
    a, b = pair.relays
    wait_for(lambda: a.metric("sealdrop_upload_bytes_total") > 0
             and b.metric("sealdrop_upload_bytes_total") > 0, 120,
             "both processes to commit a chunk")
    a.kill()  # mid-upload: a chunk may be half-way through it
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    tid = json.loads(out)["transfer_id"]
    dest = tmp_path / "in"
    dest.mkdir()
    got = lab.json("receive", tid, "--into", str(dest), timeout=300)
    assert got["failed"] == [] and tree(dest / case.name) == tree(case)
    assert seaweed.uploads(s3_bucket) == []
    verify = subprocess.run([RELAY, "verify", "--data", str(b.data), "--json"], env=b.env,
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stderr
    report = json.loads(verify.stdout)
    assert report["ok"] and report["removed"] == []
    assert "Traceback" not in b.log.read_text(errors="replace")
    assert os.environ.get("AWS_SECRET_ACCESS_KEY", "x") not in b.log.read_text(errors="replace")
