"""`python -m watcher.sim`: serve a simulated Sequentum Cloud on 127.0.0.1 for manual use.

python -m watcher.sim --port 8081 --demo        # the named demo agents (the default)
python -m watcher.sim --port 8081 --agents 500  # a bulk world of 500 agents
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from watcher.sim.server import autopilot, serve
from watcher.sim.world import World


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m watcher.sim", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--port", type=int, default=8081, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--agents", type=int, default=0, help="serve a bulk world of N agents")
    parser.add_argument("--demo", action="store_true", help="serve the demo world (default)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the world")
    parser.add_argument("--tick", type=float, default=1.5, help="seconds per run stage")
    parser.add_argument("--strings", action="store_true", help="send statuses as names")
    return parser.parse_args(argv)


async def _run(args: argparse.Namespace) -> None:
    if args.agents and not args.demo:
        world = World.bulk(args.agents, seed=args.seed, tick=args.tick, start_every=60 * args.tick)
    else:
        world = World.demo(seed=args.seed, tick=args.tick)
    world.status_as_string = args.strings
    runner, base_url = await serve(world, "127.0.0.1", args.port)
    key = sorted(world.api_keys)[0]
    print(f"Sequentum Cloud simulator at {base_url}/api/v1 ({len(world.agents)} agents)")
    print(f"API key: {key}")
    print(f"  curl -H 'Authorization: ApiKey {key}' {base_url}/api/v1/agent/all", flush=True)
    try:
        await autopilot(world, interval=min(0.5, args.tick / 3))
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(_parse(argv)))


if __name__ == "__main__":
    main()
