"""The HTTP endpoint in-process: /healthz, /readyz, /metrics and /events against a real App
driven by `once()` with an injected clock (no real waiting for intervals)."""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from watcher import __version__, logs
from watcher.app import App
from watcher.config import HttpSection, Settings, SubscriptionConfig
from watcher.endpoint import EventStream
from watcher.errors import WatcherError
from watcher.events import Event
from watcher.sources.http import HttpClient
from watcher_sim import World

from .conftest import FakeClock, make_settings, source_config

AGENT = 2537


@pytest.fixture
def steam(world: World) -> World:
    world.add_agent(id=AGENT, name="steam")
    world.add_run(AGENT, status=9, run_id=100)
    return world


@pytest.fixture
def settings(tmp_path: Path, cloud_url: str) -> Settings:
    source = source_config(cloud_url, poll_interval=60, source_failed_after=0)  # said at once
    settings = make_settings(tmp_path, source)
    settings.http = HttpSection(listen="127.0.0.1:0")
    return settings


@pytest.fixture
async def served(
    settings: Settings, clock: FakeClock, http: HttpClient
) -> AsyncIterator[tuple[App, str]]:
    """An open App with its endpoint listening on a free port, and the endpoint's base URL."""
    async with App(settings, clock=clock, http=http) as app:
        host, port = await app.serve_http() or ("", 0)
        yield app, f"http://{host}:{port}"


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


@pytest.fixture
def captured_logs() -> io.StringIO:
    stream = io.StringIO()
    logs.configure("json", "info", stream)
    return stream


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def get_json(client: aiohttp.ClientSession, url: str) -> tuple[int, dict]:
    async with client.get(url) as response:
        return response.status, await response.json()


async def test_healthz_answers_while_the_process_is_up(served, client) -> None:
    _, base = served
    assert await get_json(client, f"{base}/healthz") == (200, {"status": "ok"})


async def test_metrics_count_what_happened(steam, served, client, clock: FakeClock) -> None:
    app, base = served
    await app.once()  # baseline
    steam.add_run(AGENT, status=6, run_id=101)
    steam.add_run(AGENT, status=1, run_id=102)
    clock.advance(60)
    await app.once()  # one finish (101), one discovery (102)
    clock.advance(60)
    await app.once()  # nothing new
    steam.inject("*", kind="http", status=503, times=-1)
    clock.advance(60)
    [report] = await app.once()
    assert not report.ok

    async with client.get(f"{base}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        got = samples(await response.text())
    cloud = (("source", "cloud"),)
    assert got[("watcher_polls_total", (("result", "ok"), *cloud))] == 3
    assert got[("watcher_polls_total", (("result", "failed"), *cloud))] == 1
    assert got[("watcher_poll_duration_seconds_count", cloud)] == 4
    errors = (("kind", "unavailable"), *cloud, ("status", "503"))
    assert got[("watcher_api_errors_total", errors)] == 2  # the agent listing, the runs
    by_type = {
        labels[0][1]: value
        for (name, labels), value in got.items()
        if name == "watcher_events_total"
    }
    assert by_type == {
        "source.baselined": 1,
        "run.discovered": 2,
        "run.finished": 1,
        "source.failed": 1,
    }
    assert got[("watcher_outbox_depth", ())] == 0  # the events file took everything
    assert got[("watcher_outbox_oldest_age_seconds", ())] == 0
    runs = {
        labels[0][1]: value
        for (name, labels), value in got.items()
        if name == "watcher_runs" and labels[1] == ("source", "cloud")
    }
    assert runs == {"finished": 2, "running": 1, "pending": 0, "unknown": 0}
    assert got[("watcher_source_up", cloud)] == 0
    assert got[("watcher_source_last_success_timestamp_seconds", cloud)] == (
        app.pollers[0].last_success.timestamp()  # type: ignore[union-attr]
    )
    # The request budget: what was spent, on what, and how much may be.
    requests = {
        labels[0][1]: value  # labels sorted by name: purpose, source
        for (name, labels), value in got.items()
        if name == "watcher_requests_total" and labels[1] == ("source", "cloud")
    }
    assert requests.keys() == {"hints", "runs", "sweep", "enrich"}
    assert requests["hints"] == 6  # one a poll, and the failing one tried three times
    assert sum(requests.values()) == len(steam.calls)  # every request it sent, counted once
    assert got[("watcher_request_budget_per_minute", cloud)] == 90
    assert got[("watcher_request_budget_configured_per_minute", cloud)] == 90
    assert got[("watcher_throttled_total", cloud)] == 0
    assert got[("watcher_concurrency", cloud)] >= 4
    assert got[("watcher_sweep_oldest_age_seconds", cloud)] >= 0
    assert not any(name.endswith("_created") for name, _ in got)


async def test_each_agent_s_standing_the_version_and_the_process(
    steam, served, client, clock: FakeClock
) -> None:
    app, base = served
    steam.add_agent(id=1596, name="amazon")  # never finishes a run
    await app.once()  # baseline: run 100 succeeded
    for run_id in (101, 102, 103):
        steam.add_run(AGENT, status=6, run_id=run_id)
        clock.advance(60)
        await app.once()
    async with client.get(f"{base}/metrics") as response:
        got = samples(await response.text())
    standing = app.pollers[0].standings[str(AGENT)]
    assert standing.last_finish is not None and standing.last_success is not None
    agent = (("agent", str(AGENT)), ("source", "cloud"))
    finish = [
        (dict(labels), value)
        for (name, labels), value in got.items()
        if name == "watcher_agent_last_finish_timestamp_seconds"
    ]
    labels = {"source": "cloud", "agent": str(AGENT), "outcome": "failure"}
    assert finish == [(labels, standing.last_finish.timestamp())]
    assert got[("watcher_agent_consecutive_failures", agent)] == 3
    assert got[("watcher_agent_last_success_timestamp_seconds", agent)] == (
        standing.last_success.timestamp()
    )
    assert not any("1596" in str(labels) for _, labels in got)  # no finish: nothing to say
    assert got[("watcher_build_info", (("version", __version__),))] == 1
    assert got[("process_resident_memory_bytes", ())] > 0
    assert ("process_cpu_seconds_total", ()) in got
    assert any(name == "python_info" for name, _ in got)
    assert not any(name.endswith("_created") for name, _ in got)


async def test_outbox_gauges_show_what_waits(steam, served, client, clock: FakeClock) -> None:
    app, base = served
    await app.pollers[0].poll(force=True)  # recorded, not delivered (no dispatcher runs)
    clock.advance(42)
    async with client.get(f"{base}/metrics") as response:
        got = samples(await response.text())
    assert got[("watcher_outbox_depth", ())] == 1  # the baseline event, for the events file
    assert got[("watcher_outbox_oldest_age_seconds", ())] == 42


async def test_readyz_turns_unready_after_3_intervals_down_and_ready_after(
    steam, served, client, clock: FakeClock, captured_logs
) -> None:
    app, base = served
    status, body = await get_json(client, f"{base}/readyz")
    assert status == 503 and [s["source"] for s in body["stale"]] == ["cloud"]  # not polled yet

    await app.once()
    assert await get_json(client, f"{base}/readyz") == (200, {"ready": True, "stale": []})

    steam.inject("*", kind="http", status=503, times=-1)
    for _ in range(2):  # down, but within 3 × poll_interval (180 s) of the last success
        clock.advance(61)
        await app.once()
        assert (await get_json(client, f"{base}/readyz"))[0] == 200
    clock.advance(61)  # 183 s since the last success
    await app.once()
    status, body = await get_json(client, f"{base}/readyz")
    assert status == 503 and body["ready"] is False
    [stale] = body["stale"]
    assert stale["source"] == "cloud" and stale["failing"] is True
    assert stale["max_age_s"] == 180 and stale["last_success"] == "2026-11-23T12:00:00Z"
    assert "HTTP 503" in stale["error"]

    steam.clear_faults()
    clock.advance(61)
    await app.once()
    assert (await get_json(client, f"{base}/readyz"))[0] == 200

    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    changes = [(x["level"], x["event"]) for x in lines if "ready" in x["event"]]
    assert changes == [
        ("info", "ready: every source polled successfully within 3 intervals"),
        ("warning", "not ready: stale sources"),
        ("info", "ready: every source polled successfully within 3 intervals"),
    ]
    unready = next(x for x in lines if x["event"] == "not ready: stale sources")
    assert unready["stale"] == ["cloud"] and "timestamp" in unready


async def read_sse(response: aiohttp.ClientResponse) -> dict[str, str]:
    """The next server-sent event (comments and the retry hint skipped)."""
    fields: dict[str, str] = {}
    while True:
        line = (await response.content.readline()).decode().rstrip("\n")
        if not line:
            if "data" in fields:
                return fields
            continue
        if line.startswith((":", "retry:")):
            continue
        key, _, value = line.partition(": ")
        fields[key] = value


async def test_events_streams_each_new_event(steam, served, client, clock, tmp_path) -> None:
    app, base = served
    async with client.get(f"{base}/events") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert app.stream.clients == 1  # subscribed before the headers went out
        await app.once()
        streamed = [await asyncio.wait_for(read_sse(response), 5)]
        steam.add_run(AGENT, status=6, run_id=101)
        clock.advance(60)
        await app.once()
        for _ in range(2):
            streamed.append(await asyncio.wait_for(read_sse(response), 5))
    logged = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in streamed] == ["source.baselined", "run.discovered", "run.finished"]
    assert [json.loads(e["data"]) for e in streamed] == logged
    assert [e["id"] for e in streamed] == [e["id"] for e in logged]


def make_event(n: int) -> Event:
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    return Event(f"e{n}", "run.finished", ts, source="cloud", source_kind="sequentum_cloud")


async def test_a_slow_events_client_is_dropped_not_waited_for(captured_logs) -> None:
    stream = EventStream(maxsize=3)
    slow = stream.subscribe("10.0.0.9")
    fast = stream.subscribe("10.0.0.8")
    for n in range(3):
        stream.publish([make_event(n)])
        assert fast.queue.get_nowait() is not None  # the fast one keeps up
    stream.publish([make_event(3)])  # the slow one's queue is full: it is dropped
    assert slow.dropped and stream.clients == 1
    assert slow.queue.get_nowait() is None and slow.queue.empty()  # its stream just ends
    assert b"id: e3" in (fast.queue.get_nowait() or b"")
    assert '"events client too slow; dropped"' in captured_logs.getvalue()
    stream.close()
    assert fast.queue.get_nowait() is None and stream.clients == 0


async def test_endpoint_is_off_without_listen(tmp_path, cloud_url, clock, http) -> None:
    async with App(
        make_settings(tmp_path, source_config(cloud_url)), clock=clock, http=http
    ) as app:
        assert await app.serve_http() is None
        assert app.endpoint is None


# --- notifications by channel ------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_apprise_throttle(monkeypatch: pytest.MonkeyPatch) -> None:
    from apprise.plugins.base import NotifyBase

    monkeypatch.setattr(NotifyBase, "request_rate_per_sec", 0)


@pytest.fixture
async def hook(aiohttp_server) -> tuple[list[dict], Callable[[bool], None], str]:
    """A webhook receiver (apprise json://): what it got, a switch to take it down, its host."""
    got: list[dict] = []
    state = {"down": False}

    async def handle(request: web.Request) -> web.Response:
        if state["down"]:
            return web.Response(status=503)
        got.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    return got, lambda down: state.update(down=down), f"{server.host}:{server.port}"


async def test_notifications_sent_and_failed_by_channel(
    steam, settings, clock: FakeClock, http, hook, client
) -> None:
    got, set_down, host = hook
    settings.subscriptions = [
        SubscriptionConfig(
            name="ops", urls=[f"json://{host}/hook?token=s3cret-t0ken"], on=["failure"], max_age=30
        )
    ]
    async with App(settings, clock=clock, http=http) as app:
        host_port = await app.serve_http()
        assert host_port is not None
        base = f"http://{host_port[0]}:{host_port[1]}"
        await app.once()
        steam.add_run(AGENT, status=6, run_id=101)
        clock.advance(60)
        await app.once()
        assert len(got) == 1
        set_down(True)
        steam.add_run(AGENT, status=7, run_id=102)
        clock.advance(60)
        await app.once()  # fails; retried later
        assert app.dispatcher is not None
        clock.advance(60)  # past the backoff and the subscription's max_age: given up
        await app.dispatcher.drain()
        async with client.get(f"{base}/metrics") as response:
            text = await response.text()
    got_samples = samples(text)
    [(sent_labels, sent)] = [
        (dict(labels), v)
        for (name, labels), v in got_samples.items()
        if name == "watcher_notifications_sent_total"
    ]
    [(failed_labels, failed)] = [
        (dict(labels), v)
        for (name, labels), v in got_samples.items()
        if name == "watcher_notifications_failed_total"
    ]
    assert sent == 1 and failed == 1
    assert sent_labels == failed_labels
    assert sent_labels == {"subscription": "ops", "channel": f"json://{host}"}  # no path, query
    assert "s3cret-t0ken" not in text


async def test_shutdown_ends_open_event_streams(settings, clock, http, client) -> None:
    app = App(settings, clock=clock, http=http)
    await app.open()
    host, port = await app.serve_http() or ("", 0)
    async with client.get(f"http://{host}:{port}/events") as response:
        assert await response.content.readline() == b"retry: 5000\n"
        await asyncio.wait_for(app.close(), 5)  # does not wait for the client to leave
        rest = await asyncio.wait_for(response.content.read(), 5)
    assert rest == b"\n"  # the end of the retry hint, then end of stream
    assert app.endpoint is None and app.stream.clients == 0


async def test_a_taken_port_is_one_clear_error(settings, clock, http) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings.http = HttpSection(listen=f"127.0.0.1:{port}")
        async with App(settings, clock=clock, http=http) as app:
            with pytest.raises(WatcherError) as caught:
                await app.serve_http()
    assert str(caught.value).startswith(f"http.listen: cannot listen on 127.0.0.1:{port}: ")
