"""Benchmark `sealdrop send` / `sealdrop receive` against plain curl, same host, same run.

A relay runs on loopback (SQLite + files in a temp folder); beside it, a tiny
unencrypted aiohttp upload/download endpoint streams to and from disk. The same
random file goes through all of them:

    send:     sealdrop send FILE --to lab       vs  curl -T FILE http://127.0.0.1:P/f
                                                 and curl -T FILE http://127.0.0.1:P/f?fsync=1
    receive:  sealdrop receive ID --into DIR    vs  curl -o OUT  http://127.0.0.1:P/f
                                                 and the same followed by fsync(OUT)

Two baselines, because sealdrop promises durability and plain curl does not:
what the relay calls complete is fsynced before `send` returns, and received
files are fsynced before `receive` acks them. The plain baseline leaves its
file in the page cache (the product target, >= 0.75x, is against it); the
durable one pays the same fsync sealdrop pays, so its ratio shows what the
device allows. Every timed run starts after a `sync`, with nothing dirty.

Speed ratio = baseline time / sealdrop time. Peak RSS of the client (wait4)
and of the relay (VmHWM, reset between phases); target < 150 MB each for
--size 4G. CPU-seconds per GiB (user + sys) of the client (wait4's rusage),
of curl, and of the relay (/proc/PID/stat before and after each run; target
<= 1.5 s per GiB ingested): unlike wall time, they hold up on a busy machine.
Beside the relay's, `send` prints a floor measured in the same run: the CPU of
a bare aiohttp PUT handler that does only what the relay cannot skip per byte
(take it off the socket, hash it with BLAKE3 as the relay does a chunk sent by
today's client, write it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchutil import Run, best, make_random_file, parse_size, run, warm  # noqa: E402
from e2ekit import compile_tree  # noqa: E402

from sealdrop.crypto import chunkhash  # noqa: E402

BIN = Path(sys.executable).parent
FLOOR_CPU: list[float] = []  # CPU-seconds of each /floor upload (see plain_server)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def plain_server(root: Path, port: int) -> None:
    """PUT /name streams to root/name; GET /name streams it back. No TLS, no crypto."""
    from aiohttp import web

    async def put(request: web.Request) -> web.Response:
        with open(root / request.match_info["name"], "wb") as f:
            async for block in request.content.iter_chunked(1 << 20):
                f.write(block)
            if request.query.get("fsync") == "1":  # the durable baseline
                f.flush()
                os.fsync(f.fileno())
        return web.Response(status=201)

    async def floor(request: web.Request) -> web.Response:
        # The least an aiohttp relay must do per byte ingested: take it off the
        # socket, hash it (the relay checks every chunk against its signed
        # hash: BLAKE3 from today's client, crypto.chunkhash) and write it to the
        # page cache. Everything on the loop's thread, so that thread's CPU clock
        # is the whole cost.
        t0 = time.thread_time()
        h = chunkhash.new(chunkhash.BLAKE3)
        fd = os.open(root / request.match_info["name"], os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while block := await request.content.readany():
                h.update(block)
                os.write(fd, block)
        finally:
            os.close(fd)
        FLOOR_CPU.append(time.thread_time() - t0)
        return web.Response(status=201)

    async def get(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(root / request.match_info["name"])

    app = web.Application(client_max_size=0)
    app.router.add_put("/{name}", put)
    app.router.add_put("/floor/{name}", floor)
    app.router.add_get("/{name}", get)

    def main() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        loop.run_forever()

    threading.Thread(target=main, daemon=True).start()


def relay_hwm_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else float("nan")


def relay_cpu_s(pid: int) -> float:
    """user + sys CPU-seconds of process ``pid`` so far, all its threads."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces: count fields after its ")".
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_hwm(pid: int) -> None:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


def main(mode: str) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", default="1G", help="file size (default 1G)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per contender; best is kept")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = ap.parse_args()
    if not shutil.which("curl"):
        print("needs curl on PATH")
        return 2
    size = parse_size(args.size)
    compile_tree()
    sealdrop, relay_cmd = str(BIN / "sealdrop"), str(BIN / "sealdrop-relay")
    with tempfile.TemporaryDirectory(prefix="sealdrop-bench-") as tmp:
        d = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEALDROP")}
        data = d / "relay"
        subprocess.run([relay_cmd, "init", "--data", str(data)], env=env, check=True,
                       capture_output=True)
        (data / "relay.toml").write_text(
            f"max_transfer_bytes = {max(size * 2, 1 << 30)}\n"
            f"quota_bytes = {max(size * 8, 1 << 32)}\n", encoding="utf-8")
        port, plain_port = free_port(), free_port()
        log = open(d / "relay.log", "wb")  # noqa: SIM115
        relay = subprocess.Popen([relay_cmd, "serve", "--data", str(data), "--host",
                                  "127.0.0.1", "--port", str(port)], env=env,
                                 stdout=log, stderr=log)
        try:
            deadline = time.time() + 60
            while b'"listening"' not in (d / "relay.log").read_bytes():
                if time.time() > deadline or relay.poll() is not None:
                    raise SystemExit("the relay did not start")
                time.sleep(0.05)
            plain_root = d / "plain"
            plain_root.mkdir()
            plain_server(plain_root, plain_port)

            def user(handle: str) -> dict[str, str]:
                e = {**env, "SEALDROP_HOME": str(d / handle), "SEALDROP_PASSPHRASE": "bench",
                     "SEALDROP_LAYOUT": "{flat}"}
                code = json.loads(subprocess.run(
                    [relay_cmd, "invite", "create", "--data", str(data), "--json"], env=env,
                    check=True, capture_output=True, text=True).stdout)["code"]
                subprocess.run([sealdrop, "init", "--relay", f"http://127.0.0.1:{port}",
                                "--handle", handle, "--invite", code, "--work-factor", "12"],
                               env=e, check=True, capture_output=True)
                return e

            practice, lab = user("bench-practice"), user("bench-lab")
            # Each pins the other verified (safety numbers compared, as a lab does
            # once per practice): receive takes its one-pass path.
            for a, b, their in ((practice, "bench-lab", lab), (lab, "bench-practice", practice)):
                number = json.loads(subprocess.run(
                    [sealdrop, "whoami", "--json"], env=their, check=True,
                    capture_output=True, text=True).stdout)["safety_number"]
                subprocess.run([sealdrop, "contacts", "add", b, "--fingerprint", number],
                               env=a, check=True, capture_output=True)
            plain = d / "payload.bin"
            print(f"making a {size}-byte random file…", flush=True)
            make_random_file(plain, size)
            warm(plain)
            url = f"http://127.0.0.1:{plain_port}/payload.bin"
            ours: list[Run] = []
            theirs: list[Run] = []
            durable: list[Run] = []
            relay_mb = 0.0
            relay_cpu: list[float] = []  # CPU-seconds the relay spent on each sealdrop run
            tids: list[str] = []
            for i in range(args.repeat):
                out = d / f"send-{i}.json"
                reset_hwm(relay.pid)
                os.sync()
                cpu0 = relay_cpu_s(relay.pid)
                ours_send = run([sealdrop, "send", str(plain), "--to", "bench-lab", "--again",
                                 "--json"], stdout=out, env=practice)
                tids.append(json.loads(out.read_text())["transfer_id"])
                if mode == "send":
                    relay_cpu.append(relay_cpu_s(relay.pid) - cpu0)
                    relay_mb = max(relay_mb, relay_hwm_mb(relay.pid))
                    ours.append(ours_send)
                    os.sync()
                    theirs.append(run(["curl", "-sS", "-f", "-T", str(plain), url]))
                    (plain_root / "payload.bin").unlink()
                    os.sync()
                    durable.append(run(["curl", "-sS", "-f", "-T", str(plain), url + "?fsync=1"]))
                    (plain_root / "payload.bin").unlink()
                    os.sync()
                    run(["curl", "-sS", "-f", "-T", str(plain),
                         f"http://127.0.0.1:{plain_port}/floor/payload.bin"])
                    (plain_root / "payload.bin").unlink()
            if mode == "receive":
                shutil.copy(plain, plain_root / "payload.bin")
                warm(plain_root / "payload.bin")
                for i, tid in enumerate(tids):
                    dest = d / f"in-{i}"
                    dest.mkdir()
                    reset_hwm(relay.pid)
                    os.sync()
                    cpu0 = relay_cpu_s(relay.pid)
                    ours.append(run([sealdrop, "receive", "--into", str(dest), "--", tid],
                                    env=lab))
                    relay_cpu.append(relay_cpu_s(relay.pid) - cpu0)
                    relay_mb = max(relay_mb, relay_hwm_mb(relay.pid))
                    if subprocess.run(["cmp", str(plain), str(dest / plain.name)]).returncode:
                        raise SystemExit("received file differs from the original")
                    shutil.rmtree(dest)
                    os.sync()
                    theirs.append(run(["curl", "-sS", "-f", "-o", str(d / "curl.out"), url]))
                    (d / "curl.out").unlink()
                    os.sync()
                    got = run(["curl", "-sS", "-f", "-o", str(d / "curl.out"), url])
                    durable.append(Run(got.seconds + fsync_seconds(d / "curl.out"),
                                       got.max_rss_mb, got.user_s, got.sys_s))
                    (d / "curl.out").unlink()
        finally:
            relay.terminate()
            relay.wait(30)
            log.close()
    s, c, cd = best(ours), best(theirs), best(durable)
    gib = size / (1 << 30)
    curl_op = "curl -T" if mode == "send" else "curl -o"
    durable_op = ("curl -T to a PUT that fsyncs" if mode == "send"
                  else "curl -o, then fsync of the file")

    def rate(r: Run) -> str:
        return f"{r.seconds:.2f} s ({gib / r.seconds:.2f} GiB/s)"

    ratio, durable_ratio = c.seconds / s.seconds, cd.seconds / s.seconds
    print(f"file: {size} bytes ({gib:.2f} GiB), best of {args.repeat}, relay on loopback, "
          f"{os.cpu_count()} CPUs")
    print(f"{mode}: sealdrop {rate(s)}")
    print(f"  plain baseline   {curl_op:<32} {rate(c)}  ratio {ratio:.2f}x (target >= 0.75)")
    print(f"  durable baseline {durable_op:<32} {rate(cd)}  ratio {durable_ratio:.2f}x "
          "(same durability as sealdrop; no separate target)")
    print(f"peak RSS: sealdrop client {s.max_rss_mb:.0f} MB (target < 150 MB at --size 4G), "
          f"relay {relay_mb:.0f} MB (target < 150 MB at --size 4G)")
    # CPU: the least of the runs, like the times (the noise of a busy machine only adds).
    client = min(ours, key=lambda r: r.cpu_s)
    relay_per_gib = min(relay_cpu) / gib
    print(f"CPU per GiB (user + sys): sealdrop client {client.cpu_s / gib:.2f} s "
          f"({client.user_s / gib:.2f} + {client.sys_s / gib:.2f}), "
          f"curl {min(r.cpu_s for r in theirs) / gib:.2f} s")
    if mode == "send":
        print(f"  relay {relay_per_gib:.2f} s per GiB ingested (target <= 1.5 s); the floor, a "
              f"bare aiohttp PUT that only BLAKE3-hashes and writes each byte, "
              f"{min(FLOOR_CPU) / gib:.2f} s")
    else:
        print(f"  relay {relay_per_gib:.2f} s per GiB served (no target; sendfile keeps it low)")
    ok = (ratio >= 0.75 and s.max_rss_mb < 150 and relay_mb < 150
          and (mode != "send" or relay_per_gib <= 1.5))
    print("all targets met" if ok else "a target was missed")
    return 0 if ok or not args.check else 1


def fsync_seconds(path: Path) -> float:
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main(sys.argv.pop(1) if len(sys.argv) > 1 and sys.argv[1] in
                  ("send", "receive") else "send"))
