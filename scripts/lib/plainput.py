"""A plain, unencrypted HTTP upload endpoint: PUT /name streams the body to ROOT/name.

The baseline `curl -T` talks to in bench_wan, run as its own process so that it
can live inside the benchmark's network namespace. Usage: plainput.py PORT ROOT
"""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web


def main() -> None:
    port, root = int(sys.argv[1]), Path(sys.argv[2])

    async def put(request: web.Request) -> web.Response:
        with open(root / request.match_info["name"], "wb") as f:
            async for block in request.content.iter_chunked(1 << 20):
                f.write(block)
        return web.Response(status=201)

    app = web.Application(client_max_size=0)
    app.router.add_put("/{name}", put)
    print("listening", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
