"""End to end: the Cloud source, poller, store and event log against the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import timedelta
from pathlib import Path

import pytest

from watcher.app import App
from watcher.checks import check_sources
from watcher.daemon import Daemon
from watcher_sim import World

from .conftest import API_KEY, FakeClock

AGENT = 2537

EVENT_KEYS = {
    "id", "type", "ts", "source", "source_kind", "agent_id", "agent_name", "run_id", "status",
    "status_code", "phase", "outcome", "previous_status", "attempt", "started_at", "ended_at",
    "duration_s", "counts", "message", "url",
}  # fmt: skip


def read_events(tmp_path: Path) -> list[dict]:
    path = tmp_path / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_types(events: list[dict], run_id: int | str) -> list[str]:
    return [e["type"] for e in events if e["run_id"] == str(run_id)]


def finishes(events: list[dict]) -> list[tuple[str, str, int]]:
    return [
        (e["run_id"], e["outcome"], e["attempt"]) for e in events if e["type"] == "run.finished"
    ]


async def poll(app: App, clock: FakeClock, seconds: float = 15) -> None:
    clock.advance(seconds)
    reports = await app.once()
    assert all(r.ok for r in reports), [r.error_line for r in reports]


@pytest.fixture
def steam(world: World):
    world.add_agent(id=AGENT, name="steam")
    world.add_run(AGENT, status=9, run_id=100)  # history before watcher starts
    world.add_run(AGENT, status=6, run_id=101)
    return world


async def test_history_at_first_start_is_baselined_not_alerted(steam, app_factory, tmp_path):
    async with app_factory() as app:
        await app.once()
    events = read_events(tmp_path)
    assert [e["type"] for e in events] == ["source.baselined"]
    assert events[0]["agents"] == 1 and events[0]["runs"] == 2


async def test_run_moving_4_3_1_2_9(steam, app_factory, clock, tmp_path):
    async with app_factory() as app:
        await app.once()
        steam.add_run(AGENT, status=4, run_id=102)
        for status in (4, 3, 1, 2, 9):
            steam.set_status(AGENT, 102, status)
            await poll(app, clock)
    events = read_events(tmp_path)
    assert run_types(events, 102) == ["run.discovered"] + ["run.status_changed"] * 4 + [
        "run.finished"
    ]
    assert finishes(events) == [("102", "success", 0)]
    finished = events[-1]
    assert finished.keys() >= EVENT_KEYS
    expected = {
        "source": "cloud",
        "source_kind": "sequentum_cloud",
        "agent_id": str(AGENT),
        "agent_name": "steam",
        "status": "Completed",
        "status_code": 9,
        "phase": "finished",
        "outcome": "success",
        "previous_status": "Exporting",
    }
    assert {k: finished[k] for k in expected} == expected
    assert finished["started_at"] and finished["ended_at"]
    assert set(finished["counts"]) == {"pages", "records", "errors", "requests", "exported"}


async def test_new_run_first_seen_failed_then_archived(steam, app_factory, clock, tmp_path):
    async with app_factory() as app:
        await app.once()
        steam.add_run(AGENT, status=6, run_id=103, message="Timeout waiting for page")
        await poll(app, clock)
        steam.archive(AGENT, 103)
        await poll(app, clock)
    events = read_events(tmp_path)
    assert finishes(events) == [("103", "failure", 0)]
    assert run_types(events, 103) == ["run.discovered", "run.finished", "run.status_changed"]
    failed = next(e for e in events if e["type"] == "run.finished")
    assert failed["message"] == "Timeout waiting for page"


async def test_failure_restarted_in_place_reopens_and_finishes_again(
    steam, app_factory, clock, tmp_path
):
    async with app_factory() as app:
        await app.once()
        steam.add_run(AGENT, status=6, run_id=104)
        await poll(app, clock)
        steam.set_status(AGENT, 104, 1)
        await poll(app, clock)
        steam.set_status(AGENT, 104, 10)
        await poll(app, clock)
    events = read_events(tmp_path)
    assert run_types(events, 104) == [
        "run.discovered",
        "run.finished",
        "run.status_changed",
        "run.reopened",
        "run.status_changed",
        "run.finished",
    ]
    assert finishes(events) == [("104", "failure", 0), ("104", "success", 1)]


async def test_a_restart_between_transitions_loses_nothing(steam, app_factory, clock, tmp_path):
    async with app_factory() as app:
        await app.once()
        steam.add_run(AGENT, status=1, run_id=105)
        await poll(app, clock)
    # watcher is down while the run finishes and another one starts and fails
    steam.set_status(AGENT, 105, 10)
    steam.add_run(AGENT, status=6, run_id=106)
    clock.advance(600)
    async with app_factory() as app:
        await app.once()
        await poll(app, clock)  # and nothing is repeated afterwards
    events = read_events(tmp_path)
    assert finishes(events) == [("105", "success", 0), ("106", "failure", 0)]
    assert [e["type"] for e in events].count("source.baselined") == 1
    assert len({e["id"] for e in events}) == len(events)


async def test_string_statuses(steam, app_factory, clock, tmp_path):
    steam.status_as_string = True
    async with app_factory() as app:
        await app.once()
        steam.add_run(AGENT, status=1, run_id=107)
        await poll(app, clock)
        steam.set_status(AGENT, 107, 8)
        await poll(app, clock)
    events = read_events(tmp_path)
    assert finishes(events) == [("107", "stopped", 0)]
    assert events[-1]["status"] == "Stopped"


async def test_unknown_status_is_reported_once_and_never_fatal(steam, app_factory, clock, tmp_path):
    async with app_factory() as app:
        await app.once()
        steam.add_run(AGENT, status=1, run_id=108)
        await poll(app, clock)
        steam.set_status(AGENT, 108, 13)
        await poll(app, clock)
        await poll(app, clock)
        steam.set_status(AGENT, 108, 9)
        await poll(app, clock)
    events = read_events(tmp_path)
    assert run_types(events, 108).count("run.unknown_status") == 1
    unknown = next(e for e in events if e["type"] == "run.unknown_status")
    assert (unknown["status"], unknown["phase"]) == ("13", "unknown")
    assert finishes(events) == [("108", "success", 0)]


async def test_a_poll_that_changes_nothing_writes_nothing(steam, app_factory, clock, tmp_path):
    async with app_factory() as app:
        await app.once()
        await poll(app, clock)
        assert app.store is not None
        before = app.store.counters
        db = tmp_path / "state.db"
        stamp = (db.stat().st_mtime_ns, (tmp_path / "state.db-wal").stat().st_size)
        await poll(app, clock)
        await poll(app, clock)
        assert app.store.counters == before
        assert (db.stat().st_mtime_ns, (tmp_path / "state.db-wal").stat().st_size) == stamp


@pytest.mark.parametrize("page_base", [1, 0])
async def test_all_agents_are_paged(world, app_factory, tmp_path, page_base):
    world.page_base = page_base
    for i in range(1, 1203):
        world.add_agent(id=i, name=f"agent-{i}")
    async with app_factory() as app:
        await app.once()
    baselined = read_events(tmp_path)[0]
    assert baselined["agents"] == 1202
    listing = [p for m, p in world.requests if p.startswith("/api/v1/agent/all")]
    assert all("recordsPerPage=100" in p for p in listing)  # the most the platform serves
    assert len(listing) == (13 if page_base == 1 else 14)  # 0-based: 1…12, 13 (empty), 0


async def test_a_page_failing_amid_the_whole_listing_fails_the_poll_and_loses_nothing(
    world, app_factory, clock, tmp_path
):
    for i in range(1, 1203):
        world.add_agent(id=i, name=f"agent-{i}")
    # The first page and two of the ten read together after it are answered; the third fails.
    world.inject("/api/v1/agent/all", kind="http", status=500, after=3)
    async with app_factory(retries=0, source_failed_after=0) as app:
        (report,) = await app.once()
        assert not report.ok
        assert "GET /api/v1/agent/all" in (report.error_line or "")
        assert "500" in (report.error_line or "")
        assert app.store is not None and not app.store.load_runs("cloud")
        listing = [c for c in world.calls if c.path == "/api/v1/agent/all"]
        assert len(listing) == 11  # the whole batch was read to its end, none left running
        assert all(c.status is not None for c in listing)
        await poll(app, clock)
    baselined = [e for e in read_events(tmp_path) if e["type"] == "source.baselined"]
    assert [e["agents"] for e in baselined] == [1202]


async def test_a_listing_that_moves_while_its_pages_are_read_loses_no_agent(
    world, app_factory, clock
):
    for i in range(1, 251):
        world.add_agent(id=i, name=f"agent-{i}")
        world.add_run(i, status=10, run_id=1000 + i, created=clock() - timedelta(hours=i))
    async with app_factory(agents=["*"]) as app:
        await app.once()
        fleet = app.pollers[0].memory.fleet
        assert len(fleet) == 250
        clock.advance(16 * 60)  # the whole listing is read again (every sweep_interval)
        # Its first page is answered at once, the others late; in between, the agents least
        # recently active start runs, which puts them first by activity.
        world.inject("/api/v1/agent/all", kind="stall", delay=0.2, after=1, times=-1)
        polling = asyncio.create_task(app.once())
        while sum(c.path == "/api/v1/agent/all" for c in world.calls) < 2:
            await asyncio.sleep(0.01)
        for i in range(240, 251):
            world.add_run(i, status=1)
        assert all(r.ok for r in await polling)
        assert len(fleet) == 250
    whole = [c for c in world.calls if c.path == "/api/v1/agent/all"][-3:]
    assert {(c.query["sortColumn"], c.query["sortOrder"]) for c in whole} == {("created", "0")}
    assert sorted(c.query["pageIndex"] for c in whole) == ["1", "2", "3"]  # no page 0 needed


async def test_a_whole_listing_short_of_its_total_forgets_no_agent(world, app_factory, clock):
    for i in range(1, 151):
        world.add_agent(id=i, name=f"agent-{i}")
    async with app_factory(agents=["*"]) as app:
        await app.once()
        fleet = app.pollers[0].memory.fleet
        assert len(fleet) == 150
        clock.advance(16 * 60)
        # The platform counts 150 agents but its second page fails to show the last 50.
        world.inject("/api/v1/agent/all", kind="http", status=200, after=1, times=2,
                     body=json.dumps({"agents": [], "totalRecordCount": 150}))  # fmt: skip
        await poll(app, clock, 0)
        assert len(fleet) == 150


async def test_a_platform_serving_fewer_agents_a_page_than_asked_is_read_whole(world, app_factory):
    world.max_page_size = 40
    for i in range(1, 131):
        world.add_agent(id=i, name=f"agent-{i}")
    async with app_factory(agents=["*"]) as app:
        await app.once()
        assert len(app.pollers[0].memory.fleet) == 130
    listing = [c for c in world.calls if c.path == "/api/v1/agent/all"]
    assert sorted(c.query["pageIndex"] for c in listing) == ["1", "2", "3", "4"]


async def test_explicit_agent_ids(world, app_factory, clock, tmp_path):
    world.add_agent(id=1, name="one")
    world.add_agent(id=2, name="two")
    async with app_factory(agents=[2]) as app:
        await app.once()
        world.add_run(1, status=6)
        world.add_run(2, status=6, run_id=500)
        await poll(app, clock)
    assert finishes(read_events(tmp_path)) == [("500", "failure", 0)]
    assert not any(p.startswith("/api/v1/agent/1/") for _, p in world.requests)


async def test_bearer_auth(world, app_factory, tmp_path):
    world.bearer_tokens = {API_KEY}
    world.api_keys = set()
    world.add_agent(id=AGENT, name="steam")
    async with app_factory(auth="bearer") as app:
        reports = await app.once()
    assert reports[0].ok


@pytest.mark.parametrize("hints", [True, False])
async def test_adaptive_polling(world, app_factory, clock, hints):
    world.add_agent(id=1, name="busy")
    world.add_agent(id=2, name="idle")
    world.add_run(1, status=1, run_id=10)
    world.add_run(2, status=9, run_id=20)
    async with app_factory(use_hints=hints) as app:
        poller = app.pollers[0]
        for _ in range(8):  # two minutes of 15 s ticks
            await poller.poll()
            clock.advance(15)

    def polls(agent: int) -> int:
        return sum(1 for _, p in world.requests if p.startswith(f"/api/v1/agent/{agent}/runs"))

    assert polls(1) == 8  # an active run: every poll_interval_active
    # Nothing active: where hints tell what changed, swept every sweep_interval (15 min);
    # without them, every poll_interval.
    assert polls(2) == (1 if hints else 2)


# --- failures: one clear line, no state change, failed once and recovered once -----------------


async def test_auth_failure_then_recovery(steam, app_factory, clock, tmp_path):
    async with app_factory() as app:
        await app.once()
        steam.add_run(AGENT, status=1, run_id=110)
        steam.api_keys = {"rotated-key"}
        for _ in range(3):  # failing from the first for 3 minutes: source.failed at the third
            clock.advance(90)
            (report,) = await app.once()
            assert not report.ok
        assert report.error_line is not None
        assert "HTTP 401" in report.error_line and "\n" not in report.error_line
        assert API_KEY not in report.error_line
        steam.api_keys = {API_KEY}
        await poll(app, clock)
        await poll(app, clock)
    types = [e["type"] for e in read_events(tmp_path)]
    assert types.count("source.failed") == 1
    assert types.count("source.recovered") == 1
    failed = next(e for e in read_events(tmp_path) if e["type"] == "source.failed")
    assert failed["error"] == "auth" and failed["http_status"] == 401
    assert run_types(read_events(tmp_path), 110) == ["run.discovered"]


@pytest.mark.parametrize(
    ("kind", "status", "expect"),
    [
        ("http", 500, "HTTP 500"),
        ("http", 502, "HTTP 502"),
        ("http", 503, "HTTP 503"),
        ("http", 504, "HTTP 504"),
        ("http", 400, "HTTP 400"),
        ("http", 403, "HTTP 403"),
        ("http", 404, "HTTP 404"),
        ("problem", 422, "HTTP 422"),
        ("html", 200, "expected JSON, got HTML"),
        ("truncated", 200, "invalid JSON"),
        ("reset", None, "GET /api/v1/agent/2537/runs: connection dropped"),
    ],
)
async def test_a_bad_poll_changes_no_state(
    steam, app_factory, clock, tmp_path, kind, status, expect
):
    async with app_factory(retries=0, source_failed_after=0) as app:
        await app.once()
        steam.add_run(AGENT, status=6, run_id=111)
        # aiohttp itself repeats a GET once when the connection drops: reset it twice.
        steam.inject(
            "/api/v1/agent/*/runs", kind=kind, status=status, times=2 if kind == "reset" else 1
        )
        assert app.store is not None
        clock.advance(15)
        (report,) = await app.once()
        assert not report.ok
        line = report.error_line or ""
        assert expect in line and "\n" not in line and API_KEY not in line
        # Nothing about runs was written; only the source.failed transition.
        assert app.store.load_runs("cloud")[str(AGENT)].keys() == {"100", "101"}
        assert [e.type for e in app.store.events()] == ["source.baselined", "source.failed"]
        await poll(app, clock)
    events = read_events(tmp_path)
    assert finishes(events) == [("111", "failure", 0)]
    assert [e["type"] for e in events].count("source.failed") == 1


async def test_temporary_failures_are_retried_with_backoff(steam, app_factory, no_sleep):
    steam.inject("/api/v1/agent/*/runs", kind="http", status=503, times=2)
    async with app_factory(retries=3) as app:
        (report,) = await app.once()
    assert report.ok
    assert len(no_sleep.delays) == 2
    assert all(0 <= d <= 1.0 for d in no_sleep.delays)  # full jitter under base·2^n


async def test_retry_after_seconds_and_http_date_are_honoured(steam, app_factory, no_sleep):
    steam.inject("/api/v1/agent/all", kind="http", status=429, headers={"Retry-After": "7"})
    steam.inject(
        "/api/v1/agent/*/runs",
        kind="http",
        status=429,
        headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"},
    )
    async with app_factory(retries=3) as app:
        (report,) = await app.once()
    assert report.ok
    # The request budget sits out each 429's Retry-After before its next request: 7 s, then
    # none (a date in the past means "now").
    assert no_sleep.delays == [7.0]
    assert app.pollers[0].source.budget.throttled == 2


async def test_long_retry_after_defers_the_next_poll(steam, app_factory, clock, no_sleep):
    async with app_factory() as app:
        await app.once()
        steam.inject("/api/v1/agent/all*", kind="http", status=503, headers={"Retry-After": "300"})
        poller = app.pollers[0]
        clock.advance(60)
        report = await poller.poll()
        assert not report.ok and no_sleep.delays == []
        clock.advance(60)
        assert (await poller.poll()).skipped
        clock.advance(300)
        assert (await poller.poll()).ok


async def test_client_errors_are_not_retried(steam, app_factory, no_sleep):
    steam.inject("/api/v1/agent/*/runs", kind="http", status=404, times=5)
    async with app_factory(retries=3) as app:
        (report,) = await app.once()
    assert not report.ok and no_sleep.delays == []


async def test_a_stalled_answer_times_out(steam, app_factory):
    steam.inject("/api/v1/agent/*/runs", kind="stall", delay=1.0)
    async with app_factory(retries=0, timeout=0.2) as app:
        (report,) = await app.once()
    assert not report.ok
    assert "no answer within 0.2s" in (report.error_line or "")


async def test_unreachable_host(tmp_path, clock, http):
    from .conftest import make_settings, source_config

    settings = make_settings(
        tmp_path, source_config("http://127.0.0.1:9", retries=0, source_failed_after=0)
    )
    async with App(settings, clock=clock, http=http) as app:
        (report,) = await app.once()
    assert not report.ok
    assert "cannot connect to 127.0.0.1:9" in (report.error_line or "")
    assert [e["type"] for e in read_events(tmp_path)] == ["source.failed"]


async def test_check_reports_each_source(steam, app_factory):
    async with app_factory(agents=[AGENT]) as app:
        (ok,) = await check_sources(app.settings, app.http)
        steam.api_keys = set()
        (bad,) = await check_sources(app.settings, app.http)
    assert ok.ok
    assert [line.text for line in ok.lines] == [
        "authenticated; 1 of 1 agent(s) listed",
        "agent steam (2537): 2 recent run(s) readable",
        "request budget: 90 requests/min",
        "mode: change hints: each cycle lists the agents whose hint moved, then those with a "
        "run in progress",
        "a hinted change is seen within 15s; all 1 agent(s) are listed at least every 15m 0s",
    ]
    assert not bad.ok and "HTTP 401" in bad.lines[0].text


async def test_check_says_what_the_budget_allows_without_hints(world, app_factory):
    world.hints = False
    for agent in range(1, 1001):
        world.add_agent(id=agent)
    async with app_factory() as app:
        (ok,) = await check_sources(app.settings, app.http)
    assert [line.text for line in ok.lines][2:] == [
        "request budget: 90 requests/min",
        "mode: sweep (the platform gives no lastActivity): every agent is listed in turn",
        "a change is seen within 11m 7s; all 1000 agent(s) are listed at least every 11m 7s",
    ]
    assert sum(1 for c in world.calls) == 11  # ten pages of the agent listing, one run list


async def test_daemon_schedules_one_job_per_source_and_stops(steam, app_factory, tmp_path):
    import asyncio

    stop = asyncio.Event()
    async with app_factory(poll_interval_active=15, jitter=3) as app:
        runner = Daemon(app)
        daemon = asyncio.create_task(runner.run(stop))
        for _ in range(200):  # the first poll runs at once; wait for its commit (< 1 s)
            await asyncio.sleep(0.005)
            if app.store is not None and app.store.known_agents("cloud"):
                break
        assert runner.scheduler is not None
        jobs = {job.id: job for job in runner.scheduler.get_jobs()}
        assert jobs.keys() == {"poll:cloud", "housekeeping", "state"}
        job = jobs["poll:cloud"]
        assert job.max_instances == 1 and job.coalesce
        assert job.trigger.interval.total_seconds() == 15 and job.trigger.jitter == 3
        stop.set()
        await asyncio.wait_for(daemon, timeout=5)
    assert [e["type"] for e in read_events(tmp_path)] == ["source.baselined"]


async def test_an_agent_appearing_later_alerts_only_what_happened_since(
    steam, app_factory, clock, tmp_path
):
    async with app_factory() as app:
        await app.once()
        await poll(app, clock)
        # A new agent shows up (created, or shared with this account) with old history and
        # a run that failed since the last poll.
        steam.add_agent(id=9000, name="newcomer")
        steam.add_finished_run(9000, 6, clock() - timedelta(days=3), 60, files=False)
        clock.advance(10)
        steam.add_run(9000, status=6, run_id=9001)
        await poll(app, clock, 5)
    events = read_events(tmp_path)
    assert finishes(events) == [("9001", "failure", 0)]


async def test_an_agent_added_to_the_config_is_baselined_quietly(
    world, app_factory, clock, tmp_path
):
    world.add_agent(id=1, name="one")
    world.add_agent(id=2, name="two")
    world.add_run(2, status=6, run_id=20)
    async with app_factory(agents=[1]) as app:
        await app.once()
    clock.advance(60)
    async with app_factory(agents=[1, 2]) as app:
        await app.once()
    assert finishes(read_events(tmp_path)) == []


async def test_a_failed_state_write_is_diffed_again(steam, app_factory, clock, tmp_path):
    """Identical listings are skipped unparsed — but only once what they meant was committed."""
    async with app_factory() as app:
        await app.once()
        await poll(app, clock)
        steam.add_run(AGENT, status=6, run_id=120)
        assert app.store is not None
        app.store._db.execute("PRAGMA query_only = ON")  # the state file refuses writes
        clock.advance(15)
        (report,) = await app.once()
        assert not report.ok and report.events == []
        app.store._db.execute("PRAGMA query_only = OFF")
        await poll(app, clock)  # the same bytes as the failed poll: parsed and diffed again
        await poll(app, clock)
    assert finishes(read_events(tmp_path)) == [("120", "failure", 0)]


@pytest.fixture
def parsed(monkeypatch) -> list[str]:
    """The agent ids whose listings the Cloud source parsed."""
    from watcher.sources.sequentum_cloud import SequentumCloud

    seen: list[str] = []
    parse = SequentumCloud.parse_runs

    def counting(self, agent, data, path):  # type: ignore[no-untyped-def]
        seen.append(agent.id)
        return parse(self, agent, data, path)

    monkeypatch.setattr(SequentumCloud, "parse_runs", counting)
    return seen


async def test_a_restart_recognises_listings_already_committed(
    steam, app_factory, clock, tmp_path, parsed
):
    async with app_factory() as app:
        await app.once()
    assert parsed == [str(AGENT)]
    clock.advance(60)
    async with app_factory() as app:
        await app.once()  # the same bytes as committed before the restart: not parsed
        assert parsed == [str(AGENT)]
        steam.add_run(AGENT, status=6, run_id=130)
        await poll(app, clock, 60)
        assert parsed == [str(AGENT)] * 2
    async with app_factory() as app:
        await poll(app, clock, 60)
        assert parsed == [str(AGENT)] * 2
    async with app_factory(dashboard_url="https://cloud.example/{agent_id}/{run_id}") as app:
        await poll(app, clock, 60)  # read differently now: parsed again
        assert parsed == [str(AGENT)] * 3
    assert finishes(read_events(tmp_path)) == [("130", "failure", 0)]


async def test_a_listing_whose_write_failed_is_parsed_after_a_restart(
    steam, app_factory, clock, tmp_path, parsed
):
    async with app_factory() as app:
        await app.once()
        steam.add_run(AGENT, status=6, run_id=131)
        assert app.store is not None
        app.store._db.execute("PRAGMA query_only = ON")
        clock.advance(60)
        (report,) = await app.once()
        assert not report.ok
        app.store._db.execute("PRAGMA query_only = OFF")
    async with app_factory() as app:
        await poll(app, clock, 60)
    assert len(parsed) == 3
    assert finishes(read_events(tmp_path)) == [("131", "failure", 0)]


@pytest.fixture
def many(world: World, monkeypatch) -> World:
    """40 agents with 3 runs each (the newest failed), and baseline chunks of 10 runs."""
    monkeypatch.setattr("watcher.cycle_listing.BASELINE_CHUNK", 10)
    for agent_id in range(1, 41):
        world.add_agent(id=agent_id, name=f"agent-{agent_id}")
        for status in (9, 9, 6):
            world.add_run(agent_id, status=status)
    return world


async def test_a_large_first_baseline_is_written_in_chunks(many, app_factory, clock, tmp_path):
    async with app_factory(agents=["*"]) as app:
        assert app.store is not None
        (report,) = await app.once()
        assert report.ok
        assert app.store.counters.transactions >= 4  # 120 runs, 10 a chunk, then the poll
        assert app.store.run_count() == 120
        standings = app.pollers[0].standings
        assert {a: s.last_outcome for a, s in standings.items()} == {
            str(a): "failure" for a in range(1, 41)
        }
        many.add_run(7, status=9)
        await poll(app, clock, 60)
    events = read_events(tmp_path)
    baselined = [e for e in events if e["type"] == "source.baselined"]
    assert [(e["agents"], e["runs"]) for e in baselined] == [(40, 120)]
    assert [e["agent_previous_outcome"] for e in events if e["type"] == "run.finished"] == [
        "failure"
    ]


async def test_a_baseline_whose_write_fails_midway_alerts_no_history(
    many, app_factory, clock, tmp_path
):
    """The chunks written before the failure stay; the rest are baselined by the next poll,
    still quietly — the source has not had a good poll, so none of it is news."""
    async with app_factory(agents=["*"]) as app:
        assert app.store is not None
        db = app.store._db
        db.execute(  # the state file refuses the 30th agent, as a full disk would
            "CREATE TEMP TRIGGER refuse BEFORE INSERT ON agents WHEN NEW.agent_id = '30' "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
        (report,) = await app.once()
        assert not report.ok
        written = app.store.run_count()
        assert 0 < written < 120 and written % 3 == 0
        db.execute("DROP TRIGGER refuse")
        await poll(app, clock, 60)
        assert app.store.run_count() == 120
    events = read_events(tmp_path)
    assert [e for e in events if e["type"].startswith("run.")] == []


@pytest.mark.parametrize(
    "body",
    [
        b'[{"id": 140, "status": 6, "message": "bad \\ud800 byte"}]',  # a lone surrogate
        '[{"id": 140, "status": 6}]'.encode("utf-16"),  # another Unicode encoding
        b'[{"id": 140, "status": 6, "runTimeSec": NaN}]',
    ],
)
async def test_json_only_the_standard_library_reads_is_still_read(
    steam, app_factory, clock, tmp_path, body
):
    async with app_factory() as app:
        await app.once()
        steam.inject("/api/v1/agent/*/runs", kind="http", status=200, body=body, times=1)
        await poll(app, clock)
    assert finishes(read_events(tmp_path)) == [("140", "failure", 0)]


async def test_watcher_check_reads_runs_a_poll_would_skip(steam, app_factory):
    async with app_factory() as app:
        await app.once()
    async with app_factory() as app:
        lines = await app.pollers[0].source.check()
    assert any("2 recent run(s) readable" in line.text for line in lines), lines


async def test_a_full_disk_under_the_state_file(steam, tmp_path, cloud_url, clock, http):
    """SQLite on a tiny tmpfs that fills up: the poll fails with one clear line, changes
    nothing, and the next poll after space comes back commits everything, once."""
    import os
    import subprocess

    from .conftest import make_settings, source_config

    small = tmp_path / "small"
    small.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True
        ).returncode
        == 0
    )
    if not mounted:
        pytest.skip("needs root and mount (a small tmpfs)")
    try:
        settings = make_settings(tmp_path, source_config(cloud_url))
        settings.watcher.state_path = small / "state.db"
        async with App(settings, clock=clock, http=http) as app:
            await app.once()
            ballast = small / "ballast"
            with contextlib.suppress(OSError), ballast.open("wb", buffering=0) as f:
                while True:  # fill the file system to the last block
                    f.write(b"\0" * 4096)
            for run_id in range(200, 240):  # within the listing window (max_records = 50)
                steam.add_run(AGENT, status=6, run_id=run_id, message="x" * 500)
            clock.advance(15)
            (report,) = await app.once()
            assert not report.ok and report.events == []
            assert app.store is not None
            assert "200" not in app.store.load_runs("cloud")[str(AGENT)]
            ballast.unlink()
            await poll(app, clock)
            await poll(app, clock)
            assert app.store.integrity_check() == "ok"
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)
    got = finishes(read_events(tmp_path))
    assert sorted(r for r, _, _ in got) == [str(r) for r in range(200, 240)]
