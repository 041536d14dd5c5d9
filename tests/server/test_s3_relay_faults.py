"""S3 errors and timeouts in the middle of an upload (issue 14): a real relay on
loopback, its object store a real SeaweedFS behind tests/s3proxy.py.

Which fault comes from where:

* SeaweedFS stopped (SIGSTOP) in the middle of a chunk: real, the process
  itself; the relay's deadline on the object store's side of the part ends
  the request (s3_timeout_seconds). SeaweedFS killed mid-upload is
  tests/server/test_s3_relay.py and tests/e2e/test_s3_relay.py.
* 503 SlowDown on UploadPart, 500 InternalError on CompleteMultipartUpload
  (every try botocore makes), an UploadPart or CompleteMultipartUpload whose
  answer is lost after SeaweedFS did the work, 403 AccessDenied on
  DeleteObject and AbortMultipartUpload during a delete and gc: injected by
  the proxy (tests/s3proxy.py), since
  SeaweedFS cannot be made to produce them on cue. A proxy, not moto: the
  request still reaches the real engine, so what a fault leaves in the
  bucket is what SeaweedFS really holds.

After each fault: the client got 503 ``store_unavailable`` with a sentence
naming no bucket, endpoint or credential; nothing was committed; the upload
resumes and completes once the fault clears; the received bytes are the
sent ones; the bucket holds exactly one object per complete transfer and one
multipart upload per transfer still uploading (after gc where gc is what
cleans); and verify finds nothing to repair.

One relay, one proxy and one bucket for the module (PostgreSQL when
SEALDROP_TEST_PG_URL is set, as a scaled-out relay runs; SQLite otherwise).
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealdrop.client.relay_api import RelayError
from sealdrop.crypto import protocol
from sealdrop.server import ops
from sealdrop.server.errors import StoreUnavailable
from sealdrop.server.logs import LOGGER_NAME
from tests.e2e.kit import wait_for
from tests.s3kit import ACCESS_KEY, AWS_ENV, SECRET_KEY, Seaweed, seaweed  # noqa: F401
from tests.s3proxy import FaultProxy

from .relaykit import (
    PG_URL,
    RunningRelay,
    fresh_database,
    make_config,
    sign_headers,
    start_relay_thread,
    upload_blob,
)

MiB = 1024 * 1024
PART = 5 * MiB
PREFIX = "r/"
# Short, so a stall costs the test seconds; SeaweedFS on loopback answers in
# milliseconds, far inside it.
TIMEOUT = 3.0


class Env:
    def __init__(self, relay: RunningRelay, proxy: FaultProxy, seaweed: Seaweed,  # noqa: F811
                 bucket: str, data: Path, db_url: str) -> None:
        self.relay, self.proxy, self.seaweed, self.bucket = relay, proxy, seaweed, bucket
        self.data, self.db_url = data, db_url
        self.alice, _ = relay.user("alice")
        self.bob, _ = relay.user("bob")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, seaweed: Seaweed) -> Iterator[Env]:  # noqa: F811
    if seaweed.proc is None or seaweed.proc.poll() is not None:
        seaweed.start()  # a test before this module stopped it
    with pytest.MonkeyPatch.context() as mp:
        for k, v in AWS_ENV.items():
            mp.setenv(k, v)
        for k in ("AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
            mp.delenv(k, raising=False)
        bucket = seaweed.new_bucket()
        proxy = FaultProxy(seaweed.ports["s3.port"])
        proxy.start()
        data = tmp_path_factory.mktemp("s3faults") / "data"
        urls = fresh_database("postgresql" if PG_URL else "sqlite", data)
        db_url = next(urls)
        cfg = make_config(data, db_url, blobs=f"s3://{bucket}/r", s3_endpoint=proxy.endpoint,
                          s3_timeout_seconds=TIMEOUT)
        relay, stop = start_relay_thread(cfg)
        try:
            yield Env(relay, proxy, seaweed, bucket, data, db_url)
        finally:
            stop()
            proxy.stop()
            next(urls, None)


@pytest.fixture
def s3(env: Env) -> Iterator[Env]:
    """The module's relay with no fault armed, checked clean after each test."""
    env.proxy.clear()
    yield env
    env.proxy.clear()


@pytest.fixture
def relay_log() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


# -- what every test asserts after its fault ----------------------------------------


def _assert_503(exc: RelayError, env: Env) -> None:
    assert exc.status == 503 and exc.code == "store_unavailable", (exc.status, exc.code)
    text = str(exc)
    assert "object store" in text and "try again" in text
    # (The text names the relay's own address: the client's, not the relay's, words.)
    for secret in ("Traceback", env.bucket, env.proxy.endpoint, env.seaweed.endpoint,
                   ACCESS_KEY, SECRET_KEY, "X-Amz", PREFIX + "blobs"):
        assert secret not in text, secret


def _assert_clean(env: Env) -> None:
    """No orphan object, upload or row, and verify (what `sealdrop-relay
    verify` runs; the command itself after faults: tests/e2e/test_s3_faults_send.py)
    has nothing to repair."""
    rows = env.relay.rows()
    transfers = rows["transfers"]
    ids = {t["id"] for t in transfers}
    for table in ("transfer_chunks", "transfer_recipients"):
        assert {r["transfer_id"] for r in rows[table]} <= ids, table
    complete = sorted(t["id"] for t in transfers if t["state"] == "complete")
    uploading = sorted(t["id"] for t in transfers if t["state"] != "complete"
                       and t["committed"] > 0)
    assert env.seaweed.objects(env.bucket) == sorted(
        [PREFIX + "relay-id"] + [PREFIX + "blobs/" + t for t in complete])
    assert env.seaweed.uploads(env.bucket) == [PREFIX + "blobs/" + t for t in uploading]
    relay = env.relay.relay
    report = env.relay.run(ops.verify(relay.store, relay.blobs, repair=False))
    assert report.ok and report.checked == len(transfers), report


def _received(env: Env, tid: str, blob: bytes) -> None:
    out = io.BytesIO()
    assert env.bob.download(tid, out) == len(blob)
    assert out.getvalue() == blob


def _started(env: Env, size: int) -> tuple[str, bytes]:
    """A transfer of ``size`` bytes with its first 5 MiB chunk committed."""
    blob = os.urandom(size)
    tid = env.alice.create_transfer(["bob"], size)["id"]
    assert env.alice.upload_chunk(tid, 0, blob[:PART]) == PART
    return tid, blob


def _finish(env: Env, tid: str, blob: bytes) -> None:
    upload_blob(env.alice, tid, blob, chunk_size=PART)
    assert env.alice.complete(tid)["state"] == "complete"
    _received(env, tid, blob)


# -- UploadPart --------------------------------------------------------------------


def test_upload_part_refused_answers_503_then_resumes(
    s3: Env, relay_log: list[logging.LogRecord],
) -> None:
    code = "SlowDown"  # 500 InternalError: the same path (and on complete, below)
    tid, blob = _started(s3, PART + 1000)
    s3.proxy.fail("PUT", "partNumber=2", 503, code)
    with pytest.raises(RelayError) as e:
        s3.alice.upload_chunk(tid, PART, blob[PART:])
    _assert_503(e.value, s3)
    assert code in str(e.value)  # S3's code is the operator's first clue
    assert s3.alice.upload_offset(tid) == PART  # nothing committed
    # The operator's log names the route and S3's code, nothing of the bucket.
    logged = [r for r in relay_log if r.getMessage() == "store_unavailable"]
    assert logged and code in logged[-1].fields["error"]  # type: ignore[attr-defined]
    assert s3.bucket not in json.dumps(logged[-1].fields)  # type: ignore[attr-defined]
    s3.proxy.clear()
    _finish(s3, tid, blob)
    _assert_clean(s3)


def test_upload_part_answer_lost_times_out_then_the_chunk_replaces_its_part(s3: Env) -> None:
    # SeaweedFS stores the part; its answer never reaches the relay, which
    # gives up after s3_timeout_seconds instead of holding the request.
    tid, blob = _started(s3, 2 * PART + 7)
    s3.proxy.lose_answer("PUT", "partNumber=2", times=1)
    with pytest.raises(RelayError) as e:
        s3.alice.upload_chunk(tid, PART, blob[PART:2 * PART])
    _assert_503(e.value, s3)
    assert "did not answer" in str(e.value)
    assert s3.alice.upload_offset(tid) == PART
    # The part past the committed offset is what verify calls trailing (S3
    # cannot cut it); the sender's chunk sent again replaces it.
    relay = s3.relay.relay
    report = s3.relay.run(ops.verify(relay.store, relay.blobs, repair=False))
    assert report.trailing == [tid]
    _finish(s3, tid, blob)
    _assert_clean(s3)


def _patch_head(env: Env, tid: str, offset: int, body: bytes) -> tuple[str, dict[str, str]]:
    path = f"/v1/transfers/{tid}/data"
    sha = hashlib.sha256(body).hexdigest()
    ident = env.relay.identities["alice"]
    return path, {
        "Content-Type": "application/offset+octet-stream", "Content-Length": str(len(body)),
        protocol.H_UPLOAD_OFFSET: str(offset), protocol.H_CHUNK_SHA256: sha,
        **sign_headers(ident.signing_key, ident.handle, "PATCH", path, sha,
                       now=env.relay.clock()),
    }


def test_seaweedfs_stopped_in_the_middle_of_a_chunk(s3: Env) -> None:
    # Real: the SeaweedFS process stopped while the relay streams a chunk into
    # it; the kernel takes what fits in its buffers, then nothing moves.
    tid, blob = _started(s3, 2 * PART + 7)
    chunk = blob[PART:2 * PART]
    path, headers = _patch_head(s3, tid, PART, chunk)
    conn = http.client.HTTPConnection(s3.relay.host, s3.relay.port, timeout=60)
    assert s3.seaweed.proc is not None
    try:
        conn.putrequest("PATCH", path, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        conn.send(chunk[:MiB])
        wait_for(lambda: s3.proxy.saw("PUT", "partNumber=2"), 30, "the part's PUT")
        s3.seaweed.proc.send_signal(signal.SIGSTOP)
        try:
            try:
                conn.send(chunk[MiB:])
            except (BrokenPipeError, ConnectionResetError):
                pass  # the relay answered before the rest was sent
            resp = conn.getresponse()
            answer = json.loads(resp.read())
        finally:
            s3.seaweed.proc.send_signal(signal.SIGCONT)
    finally:
        conn.close()
    assert resp.status == 503 and answer["code"] == "store_unavailable", answer
    assert "did not answer" in answer["error"] and s3.bucket not in answer["error"]
    assert s3.alice.upload_offset(tid) == PART
    _finish(s3, tid, blob)
    _assert_clean(s3)


# -- CompleteMultipartUpload ---------------------------------------------------------


def test_complete_refused_answers_503_then_completes(s3: Env) -> None:
    tid, blob = _started(s3, PART + 99)
    assert s3.alice.upload_chunk(tid, PART, blob[PART:]) == len(blob)
    s3.proxy.fail("POST", "uploadId=", 500, "InternalError")  # every try botocore makes
    with pytest.raises(RelayError) as e:
        s3.alice.complete(tid)
    _assert_503(e.value, s3)
    assert "InternalError" in str(e.value)
    row = next(t for t in s3.relay.rows()["transfers"] if t["id"] == tid)
    assert row["state"] == "uploading" and row["committed"] == len(blob)
    s3.proxy.clear()
    assert s3.alice.complete(tid)["state"] == "complete"
    _received(s3, tid, blob)
    _assert_clean(s3)


def test_complete_answer_lost_is_tried_again(s3: Env) -> None:
    # SeaweedFS completes the object and its answer is lost: after
    # s3_timeout_seconds botocore tries again, and completing an upload
    # already completed succeeds (as on AWS), so the client never sees it.
    tid, blob = _started(s3, PART + 99)
    assert s3.alice.upload_chunk(tid, PART, blob[PART:]) == len(blob)
    s3.proxy.lose_answer("POST", "uploadId=", times=1)
    assert s3.alice.complete(tid)["state"] == "complete"
    assert sum(1 for m, t in s3.proxy.seen if m == "POST" and "uploadId=" in t) >= 2
    _received(s3, tid, blob)
    _assert_clean(s3)


# -- DeleteObject and AbortMultipartUpload: delete and gc -------------------------------


def test_delete_and_gc_with_s3_refusing_deletions(s3: Env) -> None:
    relay = s3.relay.relay
    done, blob = _started(s3, PART + 5)
    _finish(s3, done, blob)
    abandoned, _ = _started(s3, PART + 5)
    # 403: the relay's key lacks DeleteObject and AbortMultipartUpload (an
    # operator's policy mistake); botocore does not retry it, so it costs
    # one request each (5xx are retried: the complete test above).
    s3.proxy.fail("DELETE", "", 403, "AccessDenied")
    # The sender deletes: the row goes first, then the object, which S3 refuses.
    with pytest.raises(RelayError) as e:
        s3.alice.delete(done)
    _assert_503(e.value, s3)
    # gc of the abandoned upload: its row goes, the abort is refused.
    s3.relay.clock.advance(relay.config.abandoned_upload_seconds + 10)
    with pytest.raises(StoreUnavailable) as gc_error:
        s3.relay.run(ops.gc(relay.store, relay.blobs, relay.config, now=relay.now()))
    assert "abort" in str(gc_error.value) and "AccessDenied" in str(gc_error.value)
    assert s3.bucket not in str(gc_error.value)
    rows = s3.relay.rows()
    assert done not in {t["id"] for t in rows["transfers"]}
    assert abandoned not in {t["id"] for t in rows["transfers"]}
    # The database's own clean-up was done before the blobs: a day on, every
    # nonce is past its window.
    assert rows["nonces"] == []
    # What the refusals left: blobs without rows, which the next gc removes.
    assert PREFIX + "blobs/" + done in s3.seaweed.objects(s3.bucket)
    assert PREFIX + "blobs/" + abandoned in s3.seaweed.uploads(s3.bucket)
    s3.proxy.clear()
    report = s3.relay.run(ops.gc(relay.store, relay.blobs, relay.config, now=relay.now()))
    assert report.orphan_blobs == 2
    _assert_clean(s3)

