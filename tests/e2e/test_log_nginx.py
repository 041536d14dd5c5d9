"""The nginx snippet of docs/operations.md ("Publishing the transparency log"),
taken from the document itself and served by a real nginx in front of a real
relay: the published checkpoint is never cached, partial tiles for a minute,
full tiles for good, and a publish's hidden temporary files are never served."""

from __future__ import annotations

import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from tests.e2e.kit import RELAY, Relay, User
from tests.e2e.nginxkit import Nginx

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def _snippet(folder: Path) -> str:
    text = DOC.read_text("utf-8")
    after = text[text.index("Serving the folder with nginx"):]
    block = re.search(r"```nginx\n(.*?)```", after, re.S)
    assert block is not None
    assert "/srv/sealdrop-log" in block.group(1)
    return block.group(1).replace("/srv/sealdrop-log", str(folder))


def _get(nginx: Nginx, path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(nginx.url + path, context=nginx.ssl_context(),  # noqa: S310
                                    timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def test_the_documented_snippet_serves_the_published_log(
        tmp_path: Path, relay: Relay) -> None:
    User(tmp_path, "cabinet-n", relay).init()  # a key entry: a checkpoint of size 1+
    site = tmp_path / "site"
    folder = site / "log"
    folder.mkdir(parents=True)
    r = subprocess.run([RELAY, "log", "publish", "--data", str(relay.data), "--to",
                        str(folder)], env=relay.env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    # What a publish in progress leaves for a moment, and a full tile's path.
    (folder / "tile" / ".checkpoint.tmp").write_text("half written")
    (folder / ".checkpoint.tmp").write_text("half written")
    full = folder / "tile" / "0" / "000"
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_bytes(b"\x00" * 32 * 256)

    snippet = _snippet(site)
    at = "    location / {"
    nginx = Nginx(tmp_path / "nginx", [relay.port],
                  edit=lambda conf: conf.replace(at, snippet + "\n" + at, 1))
    nginx.start()
    try:
        status, headers, body = _get(nginx, "/log/checkpoint")
        assert status == 200 and body == (folder / "checkpoint").read_bytes()
        assert headers["cache-control"] == "no-store"
        assert headers["content-type"].startswith("text/plain")
        partial = next(p for p in (folder / "tile").rglob("*") if p.is_file()
                       and ".p" in p.parts[-2])
        status, headers, body = _get(nginx, "/log/" + partial.relative_to(folder).as_posix())
        assert status == 200 and body == partial.read_bytes()
        assert headers["cache-control"] == "public, max-age=60"
        status, headers, _ = _get(nginx, "/log/tile/0/000")
        assert status == 200
        assert headers["cache-control"] == "public, max-age=31536000, immutable"
        for hidden in ("/log/.checkpoint.tmp", "/log/tile/.checkpoint.tmp"):
            assert _get(nginx, hidden)[0] == 404, hidden
        # The relay behind it still answers the rest.
        assert _get(nginx, "/v1/log/checkpoint")[0] == 200
    finally:
        nginx.stop()
