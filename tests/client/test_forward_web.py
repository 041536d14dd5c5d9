"""STOW-RS over HTTP (client/dicom/forward_web.py) against a real HTTP server in this
process (the standard library's), answering as hostile or broken servers do:
garbage, silence, 404 everywhere, a dropped connection. Orthanc itself is in
tests/e2e/test_forward_dicomweb.py."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file

from sealdrop.client.dicom import forward_web
from sealdrop.client.dicom.forward_web import BasicAuth, WebTarget, auth_from_env, batches
from sealdrop.client.dicom.instances import Instance, PlacedFile, read_instances
from sealdrop.client.errors import ClientError

Handler = Callable[[http.server.BaseHTTPRequestHandler, bytes], None]


class Server:
    def __init__(self, answer: Handler) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.requests.append({"path": self.path, "headers": dict(self.headers),
                                       "body": body})
                answer(self, body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/dicom-web"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], Server]]:
    servers: list[Server] = []

    def start(answer: Handler) -> Server:
        servers.append(Server(answer))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def _reply(status: int, body: bytes, ctype: str = "application/dicom+json") -> Handler:
    def answer(h: http.server.BaseHTTPRequestHandler, _body: bytes) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
    return answer


def _instances(tmp_path: Path, n: int = 3) -> list[Instance]:
    files = []
    for k in range(n):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.9.{k + 1}"
        p = tmp_path / f"IM{k}"
        ds.save_as(p)
        files.append(PlacedFile(f"case/IM{k}", p, hashlib.sha256(p.read_bytes()).hexdigest()))
    return read_instances(files)


def test_request_is_stow_rs_with_the_files_and_credentials(tmp_path: Path, serve: Any) -> None:
    inst = _instances(tmp_path)
    ok = {"00081199": {"vr": "SQ", "Value": [
        {"00081155": {"vr": "UI", "Value": [i.sop_instance]}} for i in inst]}}
    s = serve(_reply(200, json.dumps(ok).encode()))
    a = forward_web.store(WebTarget.parse(s.url), inst, auth=BasicAuth("lab", "pw"))
    assert a.error is None and all(o.stored for o in a.outcomes)
    (req,) = s.requests
    assert req["path"] == "/dicom-web/studies"
    assert req["headers"]["Content-Type"].startswith(
        'multipart/related; type="application/dicom"; boundary=')
    assert req["headers"]["Accept"] == "application/dicom+json"
    assert req["headers"]["Authorization"] == "Basic bGFiOnB3"
    for i in inst:
        assert i.placed.read_bytes() in req["body"]


@pytest.mark.parametrize("answer", [
    _reply(200, b"<html>ok</html>", "text/html"),
    _reply(200, b"{}"),
    _reply(200, b"\x00\xff garbage"),
    _reply(202, b'{"00081198": {"vr": "SQ", "Value": []}}'),
    _reply(400, b"{}"),
])
def test_garbled_or_empty_answers_store_nothing(tmp_path: Path, serve: Any,
                                                answer: Handler) -> None:
    s = serve(answer)
    a = forward_web.store(WebTarget.parse(s.url), _instances(tmp_path))
    assert len(a.outcomes) == 3 and not any(o.stored for o in a.outcomes)


def test_server_error_is_named(tmp_path: Path, serve: Any) -> None:
    s = serve(_reply(503, b""))
    a = forward_web.store(WebTarget.parse(s.url), _instances(tmp_path))
    assert a.error == f"the DICOMweb server {s.url} failed (HTTP 503)" and a.transient


def test_credentials_refused_stop_at_once(tmp_path: Path, serve: Any) -> None:
    s = serve(_reply(401, b""))
    a = forward_web.store(WebTarget.parse(s.url), _instances(tmp_path))
    assert "refused our credentials (HTTP 401)" in (a.error or "") and not a.transient


def test_dropped_connection_is_named(tmp_path: Path, serve: Any) -> None:
    def hang_up(h: http.server.BaseHTTPRequestHandler, _b: bytes) -> None:
        h.close_connection = True
        h.connection.close()

    s = serve(hang_up)
    a = forward_web.store(WebTarget.parse(s.url), _instances(tmp_path))
    assert a.outcomes == () and "cannot be reached or dropped the request" in (a.error or "")


def test_neither_stow_nor_orthanc_rest(tmp_path: Path, serve: Any) -> None:
    s = serve(_reply(404, b"", "text/plain"))
    a = forward_web.store(WebTarget.parse(s.url), _instances(tmp_path))
    assert a.outcomes == () and not a.transient
    assert "has neither STOW-RS" in (a.error or "")
    assert [r["path"] for r in s.requests] == ["/dicom-web/studies", "/dicom-web/instances",
                                               "/instances"]


def test_orthanc_rest_fallback_one_instance_each(tmp_path: Path, serve: Any) -> None:
    def orthanc(h: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        if h.path == "/instances":
            _reply(200, b'{"ID": "x", "Status": "Success"}', "application/json")(h, body)
        else:
            _reply(404, b"", "text/plain")(h, body)

    s = serve(orthanc)
    inst = _instances(tmp_path)
    a = forward_web.store(WebTarget.parse(s.url), inst)
    assert a.error is None and [o.stored for o in a.outcomes] == [True] * 3
    posted = [r["body"] for r in s.requests if r["path"] == "/instances"]
    assert posted == [i.placed.read_bytes() for i in inst]


@pytest.mark.parametrize("url,msg", [
    ("ftp://pacs/dicom-web", "not a DICOMweb URL"),
    ("pacs/dicom-web", "not a DICOMweb URL"),
    ("https://lab:secret@pacs/dicom-web", "carries a user name or password"),
    ("https://pacs/dicom-web?x=1", "query or fragment"),
])
def test_bad_urls(url: str, msg: str) -> None:
    with pytest.raises(ClientError, match=msg) as e:
        WebTarget.parse(url)
    assert "secret" not in str(e.value)


def test_target_normalised_and_rest_candidates() -> None:
    t = WebTarget.parse("https://pacs.lab.local/dicom-web/")
    assert str(t) == "https://pacs.lab.local/dicom-web"
    assert t.rest_candidates() == ["https://pacs.lab.local/dicom-web/instances",
                                   "https://pacs.lab.local/instances"]
    assert WebTarget.parse("http://o:8042").rest_candidates() == ["http://o:8042/instances"]


def test_auth_from_env(tmp_path: Path) -> None:
    f = tmp_path / "auth"
    f.write_text("lab:pa:ss\n")
    a = auth_from_env({"SEALDROP_DICOMWEB_AUTH_FILE": str(f), "SEALDROP_DICOMWEB_AUTH": "x:y"})
    assert a is not None and (a.user, a.password) == ("lab", "pa:ss")  # the file wins
    assert "pa:ss" not in repr(a)
    b = auth_from_env({"SEALDROP_DICOMWEB_AUTH": "u:p"})
    assert b is not None and (b.user, b.password) == ("u", "p")
    assert auth_from_env({}) is None
    with pytest.raises(ClientError, match="not USER:PASSWORD"):
        auth_from_env({"SEALDROP_DICOMWEB_AUTH": "nocolon"})
    with pytest.raises(ClientError, match="cannot read"):
        auth_from_env({"SEALDROP_DICOMWEB_AUTH_FILE": str(tmp_path / "missing")})


def test_batches_per_study_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    def inst(n: int, study: str, size: int = 10) -> Instance:
        return Instance(n, f"f{n}", Path("x"), "1.2", f"1.3.{n}", "1.2.840.10008.1.2.1",
                        study, size)

    items = [inst(0, "A"), inst(1, "B"), inst(2, "A"), inst(3, "A"), inst(4, "B")]
    assert [[i.index for i in b] for b in batches(items)] == [[0, 2, 3], [1, 4]]
    monkeypatch.setattr(forward_web, "BATCH_FILES", 2)
    assert [[i.index for i in b] for b in batches(items)] == [[0, 2], [3], [1, 4]]
    monkeypatch.setattr(forward_web, "BATCH_BYTES", 15)
    assert [[i.index for i in b] for b in batches(items)] == [[0], [2], [3], [1], [4]]
