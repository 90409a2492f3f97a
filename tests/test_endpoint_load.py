"""The endpoint of a real daemon under load: 50 `/events` clients stay connected while 50 other
clients fetch `/` and `/metrics` at once — every request is answered, and every stream still
gets the next failure. The figures are printed (`pytest -s`), never asserted."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from watcher_sim import World

from .conftest import served_in_a_thread
from .processes import KEY, Daemon, free_port, write_config
from .test_endpoint import read_sse

CLIENTS = 50
AGENTS = 40


@pytest.fixture
def sim() -> Iterator[tuple[World, str]]:
    world = World()
    world.api_keys = {KEY}
    for agent in range(1, AGENTS + 1):
        world.add_agent(id=agent, name=f"agent-{agent}")
        world.add_run(agent, status=10)
    with served_in_a_thread(world) as url:
        yield world, url


async def timed_get(client: aiohttp.ClientSession, url: str) -> tuple[int, float, int]:
    started = time.perf_counter()
    async with client.get(url) as response:
        body = await response.read()
        return response.status, time.perf_counter() - started, len(body)


async def load(base: str, world: World) -> dict[str, object]:
    connector = aiohttp.TCPConnector(limit=0)  # one connection per client
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
        streams = [await client.get(f"{base}/events") for _ in range(CLIENTS)]
        try:
            assert [s.status for s in streams] == [200] * CLIENTS
            for stream in streams:  # each is subscribed: its stream has begun
                assert await asyncio.wait_for(stream.content.readline(), 10) == b"retry: 5000\n"

            async def one_client() -> list[tuple[int, float, int]]:
                return [await timed_get(client, f"{base}{path}") for path in ("/", "/metrics")]

            started = time.perf_counter()
            answers = await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
            elapsed = time.perf_counter() - started
            pages = [a[0] for a in answers]
            metrics = [a[1] for a in answers]
            assert [status for status, _, _ in pages + metrics] == [200] * 2 * CLIENTS

            run = world.add_run(AGENTS, status=6).id
            changed = time.perf_counter()

            async def finished(stream: aiohttp.ClientResponse) -> float:
                while (await read_sse(stream))["event"] != "run.finished":
                    pass
                return time.perf_counter() - changed

            arrivals = await asyncio.wait_for(asyncio.gather(*map(finished, streams)), 30)
        finally:
            for stream in streams:
                stream.close()
    return {
        "run": run,
        "elapsed": elapsed,
        "page": [seconds for _, seconds, _ in pages],
        "metrics": [seconds for _, seconds, _ in metrics],
        "page_bytes": pages[0][2],
        "arrivals": arrivals,
    }


def test_fifty_streams_and_fifty_fetches_are_all_answered(sim, tmp_path: Path) -> None:
    world, url = sim
    port = free_port()
    config = write_config(tmp_path, url, f'\n[http]\nlisten = "127.0.0.1:{port}"\n')
    daemon = Daemon(config)
    try:
        daemon.wait_for(lambda: daemon.logged("source.baselined"), "the baseline")
        figures = asyncio.run(load(f"http://127.0.0.1:{port}", world))
        assert daemon.proc.poll() is None
        assert daemon.stop() < 15
    finally:
        daemon.kill()
    assert daemon.proc.returncode == 0
    assert daemon.trouble() == []

    def ms(values: list[float]) -> str:
        cuts = statistics.quantiles(values, n=100)
        return f"p50 {cuts[49] * 1000:.0f} ms, p95 {cuts[94] * 1000:.0f} ms"

    print(
        f"\n{CLIENTS} /events clients connected; {CLIENTS} clients fetched / and /metrics "
        f"in {figures['elapsed']:.2f} s: / {ms(figures['page'])} "  # type: ignore[arg-type]
        f"({figures['page_bytes']} bytes, {AGENTS} agents), "
        f"/metrics {ms(figures['metrics'])}; "  # type: ignore[arg-type]
        f"the failure reached all {CLIENTS} streams within "
        f"{max(figures['arrivals']):.2f} s of the change (1 s poll interval)"  # type: ignore[arg-type]
    )
