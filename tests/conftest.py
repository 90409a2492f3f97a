"""Shared fixtures: an injected clock, the simulator served on 127.0.0.1, an App wired to it."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from watcher import logs
from watcher.app import App
from watcher.config import Settings, SourceConfig, WatcherSection
from watcher.events import Event
from watcher.sources.http import HttpClient
from watcher_sim import World, make_cloud_app, serve

API_KEY = "sim-key-0123456789"


@contextlib.contextmanager
def served_in_a_thread(world: World) -> Iterator[str]:
    """Serve `world` on 127.0.0.1 from its own thread and event loop, so that code running its
    own loop (the CLI, a daemon in a subprocess) can reach it. Yields the base URL."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    def serve_forever() -> None:
        asyncio.set_event_loop(loop)
        box["runner"], box["url"] = loop.run_until_complete(serve(world))
        ready.set()
        loop.run_forever()
        loop.run_until_complete(box["runner"].cleanup())
        loop.close()

    thread = threading.Thread(target=serve_forever, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield str(box["url"])
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture(autouse=True)
def logging_as_it_was() -> Iterator[None]:
    """A test that runs the CLI points the root logger at its captured stderr, which is closed
    after it; what a later test's threads log (aiosmtpd, when a connection is collected) must
    not go there."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every log line, as JSON at debug level, into a string the test reads."""
    stream = io.StringIO()
    logs.configure("json", "debug", stream)
    yield stream
    logs.configure("json", "info", io.StringIO())


class FakeClock:
    """Wall time that moves only when a test says so."""

    def __init__(self, start: datetime = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)) -> None:
        self.t = start

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> datetime:
        self.t += timedelta(seconds=seconds)
        return self.t


class NoSleep:
    """Replaces asyncio.sleep in the HTTP layer: records the delays and waits for none — it
    moves the fake clock instead, which the request budget reads as its wall time."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.delays: list[float] = []
        self.clock = clock

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.clock is not None:
            self.clock.advance(delay)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def world(clock: FakeClock) -> World:
    # Unlimited for now: the product does not keep to the Cloud's 100 requests a minute yet.
    w = World(now=clock)  # 100 requests a minute per key, as the platform
    w.api_keys = {API_KEY}
    return w


@pytest.fixture
async def cloud_url(aiohttp_server, world: World) -> str:
    server = await aiohttp_server(make_cloud_app(world), host="127.0.0.1")
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
def no_sleep(clock: FakeClock) -> NoSleep:
    return NoSleep(clock)


@pytest.fixture
async def http(no_sleep: NoSleep, clock: FakeClock) -> AsyncIterator[HttpClient]:
    async with aiohttp.ClientSession() as session:
        yield HttpClient(session, sleep=no_sleep, wall=lambda: clock().timestamp())


def source_config(base_url: str, **overrides: object) -> SourceConfig:
    fields: dict[str, object] = {
        "name": "cloud",
        "kind": "sequentum_cloud",
        "base_url": base_url,
        "api_key": API_KEY,
        "agents": ["*"],
        "poll_interval": 60,
        "poll_interval_active": 15,
        "jitter": 0,
        "timeout": 2,
        "retries": 2,
    }
    fields.update(overrides)
    return SourceConfig(**fields)  # type: ignore[arg-type]


def of(app: App, type: str) -> list[Event]:
    """The events of `type` the App's state file holds."""
    assert app.store is not None
    return app.store.events(type=type)


async def tick(app: App, clock: FakeClock, seconds: float = 15) -> None:
    """`seconds` later, `watcher once`: every source must answer."""
    clock.advance(seconds)
    reports = await app.once()
    assert all(r.ok for r in reports), [r.error_line for r in reports]


def make_settings(tmp_path: Path, *sources: SourceConfig) -> Settings:
    return Settings(
        watcher=WatcherSection(
            state_path=tmp_path / "state.db",
            events_path=tmp_path / "events.jsonl",
            log_format="json",
        ),
        sources=list(sources),
    )


@pytest.fixture
def app_factory(
    tmp_path: Path, cloud_url: str, clock: FakeClock, http: HttpClient
) -> Callable[..., App]:
    """Build an App against the simulator; call again after closing to simulate a restart."""

    def build(**overrides: object) -> App:
        settings = make_settings(tmp_path, source_config(cloud_url, **overrides))
        return App(settings, clock=clock, http=http)

    return build
