"""`python -m watcher_sim`: serve a simulated platform on 127.0.0.1 for manual use.

python -m watcher_sim --port 8081 --demo             # Sequentum Cloud, the demo agents (default)
python -m watcher_sim --port 8081 --agents 500       # Sequentum Cloud, a bulk world of 500 agents
python -m watcher_sim --port 8082 --platform acc     # the Agent Control Center demo
python -m watcher_sim --port 8083 --platform automation   # the automation-runs demo
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from watcher_sim.acc_world import AccWorld
from watcher_sim.automation_world import AutomationWorld
from watcher_sim.server import autopilot, serve
from watcher_sim.world import World


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m watcher_sim", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--port", type=int, default=8081, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--agents", type=int, default=0, help="serve a bulk world of N agents")
    parser.add_argument("--demo", action="store_true", help="serve the demo world (default)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the world")
    parser.add_argument("--tick", type=float, default=1.5, help="seconds per run stage")
    parser.add_argument("--strings", action="store_true", help="send statuses as names")
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=100,
        help="Cloud requests per minute per key (default 100, as the Cloud; 0: unlimited)",
    )
    parser.add_argument(
        "--no-hints", action="store_true", help="Cloud agents without status/lastActivity hints"
    )
    parser.add_argument(
        "--platform",
        choices=["cloud", "acc", "automation"],
        default="cloud",
        help="which API to serve (default: cloud)",
    )
    return parser.parse_args(argv)


async def _run_other(args: argparse.Namespace) -> None:
    """The ACC or automation-runs demo world, with its credential printed."""
    world: AccWorld | AutomationWorld
    if args.platform == "acc":
        world = AccWorld.demo(seed=args.seed, tick=args.tick)
        header = f"Authorization: Bearer {sorted(world.tokens)[0]}"
        path = "/api/agent?agentPath=sequentum/Demo/quick"
    else:
        world = AutomationWorld.demo(seed=args.seed, tick=args.tick)
        header = f"X-API-Key: {sorted(world.api_keys)[0]}"
        path = "/api/v1/automation-runs?limit=10"
    runner, base_url = await serve(world, "127.0.0.1", args.port)
    print(f"{args.platform} simulator at {base_url}")
    print(f"  curl -H '{header}' '{base_url}{path}'", flush=True)
    try:
        await autopilot(world, interval=min(0.5, args.tick / 3))
    finally:
        await runner.cleanup()


async def _run(args: argparse.Namespace) -> None:
    if args.platform != "cloud":
        await _run_other(args)
        return
    options = {"rate_limit": args.rate_limit or None, "hints": not args.no_hints}
    if args.agents and not args.demo:
        world = World.bulk(
            args.agents, seed=args.seed, tick=args.tick, start_every=60 * args.tick, **options
        )
    else:
        world = World.demo(seed=args.seed, tick=args.tick, **options)
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
