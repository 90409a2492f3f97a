"""A bulk Sequentum Cloud simulator in its own process, so its CPU is not billed to watcher.

    python bench/simserver.py --agents 1000 --latency 0.02 --port 0

Prints `READY <base_url> <api_key>` once it listens, and `STATS <requests> <refused>` (requests
seen so far, and of them those refused with 429) on each SIGUSR1; runs until killed.

The world stands still, so answers are cached once serialised: the platform being simulated is
not a Python process on the benchmark machine, and building 20 runs of JSON per request would
otherwise take as much CPU as watcher itself. Latency is still added to every request, and the
Cloud's rate limit (100 requests a minute per key unless `--rate-limit` says otherwise) still
applies.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from datetime import UTC, datetime, timedelta

from aiohttp import web

from watcher_sim import World, make_cloud_app

FIXED_NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


@web.middleware
async def cached(request: web.Request, handler) -> web.StreamResponse:  # type: ignore[no-untyped-def]
    cache = request.app["cache"]
    key = request.path_qs
    if request.method == "GET" and key in cache:
        status, body, content_type = cache[key]
        return web.Response(status=status, body=body, content_type=content_type)
    response = await handler(request)
    if request.method == "GET" and isinstance(response, web.Response) and response.body:
        cache[key] = (response.status, response.body, response.content_type)
    return response


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, required=True)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--active", type=float, default=0.05)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=100,
        help="requests per minute per API key, as the Cloud allows (0: unlimited)",
    )
    parser.add_argument(
        "--no-hints",
        action="store_true",
        help="agents without status/lastActivity hints, a platform that gives none",
    )
    args = parser.parse_args()
    world = World.bulk(
        args.agents,
        runs_per_agent=args.runs,
        active_fraction=args.active,
        seed=1,
        now=lambda: FIXED_NOW,  # the same world in every process: a restart sees no changes
        rate_limit=args.rate_limit or None,
        hints=not args.no_hints,
    )
    world.latency = args.latency
    started = time.monotonic()  # built at FIXED_NOW; from now on the clock runs, for the limiter
    world.now = lambda: FIXED_NOW + timedelta(seconds=time.monotonic() - started)
    app = make_cloud_app(world)
    app.middlewares.append(cached)  # innermost: after auth, latency and request accounting
    app["cache"] = {}
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGUSR1, lambda: print(f"STATS {len(world.calls)} {world.throttled}", flush=True)
    )
    print(f"READY {url} {sorted(world.api_keys)[0]}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
