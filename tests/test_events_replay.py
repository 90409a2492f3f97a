"""`/events` replay: a client that reconnects with `Last-Event-ID` (or `?after=ID`) gets the
events recorded after that one, then the live stream — every event once, in order, as the
events file has them — and a replay is bounded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from watcher import endpoint
from watcher.app import App
from watcher.config import HttpSection
from watcher.sources.http import HttpClient
from watcher_sim import World

from .conftest import FakeClock, make_settings, source_config
from .test_endpoint import read_sse

AGENT = 2537


@pytest.fixture
async def served(
    world: World, tmp_path: Path, cloud_url: str, clock: FakeClock, http: HttpClient
) -> AsyncIterator[tuple[App, str]]:
    world.add_agent(id=AGENT, name="steam")
    world.add_run(AGENT, status=9, run_id=100)
    settings = make_settings(tmp_path, source_config(cloud_url))
    settings.http = HttpSection(listen="127.0.0.1:0")
    async with App(settings, clock=clock, http=http) as app:
        host, port = await app.serve_http() or ("", 0)
        yield app, f"http://{host}:{port}/events"


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


def logged(tmp_path: Path) -> list[str]:
    """The ids in the events file, in order."""
    return [json.loads(line)["id"] for line in (tmp_path / "events.jsonl").read_text().splitlines()]


async def failures(world: World, app: App, clock: FakeClock, count: int, first: int) -> None:
    """`count` polls, each finding one more failed run (two events each)."""
    for run_id in range(first, first + count):
        world.add_run(AGENT, status=6, run_id=run_id)
        clock.advance(60)
        await app.once()


async def read_ids(response: aiohttp.ClientResponse, count: int) -> list[str]:
    return [(await asyncio.wait_for(read_sse(response), 5))["id"] for _ in range(count)]


async def test_a_reconnecting_client_gets_what_it_missed_then_the_live_stream(
    served, client, world: World, clock: FakeClock, tmp_path: Path
) -> None:
    app, url = served
    async with client.get(url) as response:
        await app.once()  # the baseline
        await failures(world, app, clock, 1, 101)
        seen = await read_ids(response, 3)
    await failures(world, app, clock, 2, 102)  # missed while away: 4 events
    async with client.get(url, headers={"Last-Event-ID": seen[-1]}) as response:
        seen += await read_ids(response, 4)
        await failures(world, app, clock, 1, 104)  # and then live
        seen += await read_ids(response, 2)
    assert seen == logged(tmp_path)  # each event once, none missing, in order


async def test_after_in_the_query_works_as_last_event_id(
    served, client, world: World, clock: FakeClock, tmp_path: Path
) -> None:
    app, url = served
    await app.once()
    await failures(world, app, clock, 1, 101)
    first, *rest = logged(tmp_path)
    async with client.get(url, params={"after": first}) as response:
        assert await read_ids(response, len(rest)) == rest
        await failures(world, app, clock, 1, 102)
        assert await read_ids(response, 2) == logged(tmp_path)[-2:]


async def test_an_id_no_longer_held_replays_nothing_and_says_so(
    served, client, world: World, clock: FakeClock
) -> None:
    app, url = served
    await app.once()
    async with client.get(url, headers={"Last-Event-ID": "pruned-long-ago"}) as response:
        assert await response.content.readline() == b"retry: 5000\n"
        assert await response.content.readline() == b"\n"
        assert (await response.content.readline()).startswith(b": that event is no longer held")
        await failures(world, app, clock, 1, 101)
        assert [e["event"] for e in [await read_sse(response) for _ in range(2)]] == [
            "run.discovered",
            "run.finished",
        ]


async def test_a_replay_is_bounded_and_the_client_catches_up_by_reconnecting(
    served, client, world: World, clock: FakeClock, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(endpoint, "REPLAY_LIMIT", 3)
    app, url = served
    await app.once()
    await failures(world, app, clock, 3, 101)  # 6 events after the baseline
    ids = logged(tmp_path)
    async with client.get(url, headers={"Last-Event-ID": ids[0]}) as response:
        body = await asyncio.wait_for(response.content.read(), 5)  # 3 of 6, then the end
    got = [line[4:] for line in body.decode().splitlines() if line.startswith("id: ")]
    assert got == ids[1:4]
    async with client.get(url, headers={"Last-Event-ID": got[-1]}) as response:
        assert await read_ids(response, 3) == ids[4:]  # the rest: caught up, so live again
        await failures(world, app, clock, 1, 104)
        assert await read_ids(response, 2) == logged(tmp_path)[-2:]
