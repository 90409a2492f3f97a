"""End to end: the automation-runs source, poller, store and event log against the automation
simulator on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from watcher.app import App
from watcher.checks import check_sources
from watcher.config import SourceConfig
from watcher.sources.http import HttpClient
from watcher_sim import AutomationWorld, make_automation_app

from .conftest import FakeClock, make_settings
from .test_watch_cloud import finishes, read_events, run_types

KEY = "automation-key-0123456789"
API = "/api/v1/automation-runs"


@pytest.fixture
def auto(clock: FakeClock) -> AutomationWorld:
    world = AutomationWorld(now=clock, api_keys={KEY}, bearer_tokens={"bearer-" + KEY})
    world.add_automation("sync", "Invoice sync")
    world.add_automation("prices", "Price monitor")
    world.add_run("sync", "succeeded", created=clock() - timedelta(hours=2))  # history
    world.add_run("prices", "failed", created=clock() - timedelta(hours=1))
    return world


@pytest.fixture
async def auto_url(aiohttp_server, auto: AutomationWorld) -> str:
    server = await aiohttp_server(make_automation_app(auto), host="127.0.0.1")
    return str(server.make_url("")).rstrip("/")


def auto_config(base_url: str, **overrides: object) -> SourceConfig:
    fields: dict[str, object] = {
        "name": "automation",
        "kind": "automation_runs",
        "base_url": base_url,
        "api_key": KEY,
        "agents": ["*"],
        "poll_interval": 60,
        "poll_interval_active": 15,
        "jitter": 0,
        "timeout": 2,
        "retries": 2,
    }
    fields.update(overrides)
    return SourceConfig(**fields)  # type: ignore[arg-type]


@pytest.fixture
def auto_app(
    tmp_path: Path, auto_url: str, clock: FakeClock, http: HttpClient
) -> Callable[..., App]:
    def build(**overrides: object) -> App:
        settings = make_settings(tmp_path, auto_config(auto_url, **overrides))
        return App(settings, clock=clock, http=http)

    return build


async def poll(app: App, clock: FakeClock, seconds: float = 15) -> None:
    clock.advance(seconds)
    reports = await app.once()
    assert all(r.ok for r in reports), [r.error_line for r in reports]


def listing_requests(world: AutomationWorld) -> list[str]:
    return [p for _, p in world.requests if p.startswith(API + "?")]


def steps_requests(world: AutomationWorld) -> list[str]:
    return [p for _, p in world.requests if p.endswith("/steps")]


# --- listing ------------------------------------------------------------------------------------


async def test_runs_over_several_pages_are_all_seen(auto, auto_app, clock, tmp_path):
    for i in range(33):
        auto.add_run(("sync", "prices")[i % 2], "succeeded", created=clock() - timedelta(minutes=i))
    async with auto_app(max_records=10) as app:
        await app.once()
        assert listing_requests(auto) == [f"{API}?limit=10&offset={o}" for o in (0, 10, 20, 30)]
        fresh = [auto.add_run("sync", "running"), auto.add_run("prices", "pending")]
        await poll(app, clock)
        auto.set_status(fresh[0].id, "succeeded")
        auto.set_status(fresh[1].id, "cancelled")
        await poll(app, clock)
    events = read_events(tmp_path)
    assert events[0]["type"] == "source.baselined"
    assert (events[0]["agents"], events[0]["runs"]) == (2, 35)
    assert sorted(finishes(events)) == sorted(
        [(fresh[0].id, "success", 0), (fresh[1].id, "stopped", 0)]
    )
    assert {e["agent_id"] for e in events if e["run_id"]} == {"sync", "prices"}


async def test_the_status_view_lists_automations_not_the_wildcard_unit(auto, auto_app, clock):
    from watcher import view

    async with auto_app() as app:
        await app.once()
        assert app.store is not None
        facts = view.stored_sources(app.settings.sources, app.store)
        seen = view.build(facts, app.store, now=clock(), targets={})
    assert sorted(a["agent_id"] for a in seen["agents"]) == ["prices", "sync"]


async def test_a_listing_longer_than_max_pages_is_cut(auto, auto_app, clock):
    for i in range(30):
        auto.add_run("sync", "succeeded", created=clock() - timedelta(minutes=i))
    async with auto_app(max_records=5, max_pages=2) as app:
        (report,) = await app.once()
        assert report.ok
        assert app.store is not None
        assert sum(len(r) for r in app.store.load_runs("automation").values()) == 10
    assert len(listing_requests(auto)) == 2


async def test_configured_automations_are_filtered_on_our_side(auto, auto_app, clock, tmp_path):
    async with auto_app(agents=["prices"]) as app:
        await app.once()
        mine = auto.add_run("prices", "failed", failed_step="parse")
        auto.add_run("sync", "failed")
        await poll(app, clock)
    queries = [set(parse_qs(urlsplit(p).query)) for p in listing_requests(auto)]
    assert queries == [{"limit", "offset"}] * 2  # the API has no filter by automation
    assert finishes(read_events(tmp_path)) == [(mine.id, "failure", 0)]


async def test_bearer_auth(auto, auto_app, clock):
    async with auto_app(auth="bearer", api_key="bearer-" + KEY) as app:
        (report,) = await app.once()
    assert report.ok


# --- statuses -----------------------------------------------------------------------------------


async def test_a_failed_run_names_its_failed_step(auto, auto_app, clock, tmp_path):
    async with auto_app() as app:
        await app.once()
        run = auto.add_run("prices", "running")
        await poll(app, clock)
        auto.set_status(run.id, "failed", failed_step="parse", error="Timeout after 30s")
        await poll(app, clock)
        await poll(app, clock)
        await poll(app, clock)
    events = read_events(tmp_path)
    assert finishes(events) == [(run.id, "failure", 0)]
    done = next(e for e in events if e["type"] == "run.finished")
    assert done["failed_steps"] == [["parse", "Parse listing", "Timeout after 30s"]]
    assert done["message"] == (
        "Step parse failed — failed step parse (Parse listing): Timeout after 30s"
    )
    assert (done["status"], done["status_code"], done["agent_id"]) == ("failed", None, "prices")
    # Steps are read once, for this run only: not for the failed run in the history.
    assert steps_requests(auto) == [f"{API}/{run.id}/steps"]
    assert [e["type"] for e in events][-1] == "run.finished"


async def test_a_steps_failure_does_not_fail_the_poll(auto, auto_app, clock, tmp_path):
    async with auto_app(retries=0) as app:
        await app.once()
        run = auto.add_run("prices", "failed")
        auto.inject(f"{API}/*/steps", kind="http", status=500)
        await poll(app, clock)
        await poll(app, clock)
    events = read_events(tmp_path)
    assert finishes(events) == [(run.id, "failure", 0)]
    assert "failed_steps" not in events[-1]
    assert events[-1]["message"] == "Step fetch failed"


async def test_cancelled_is_stopped(auto, auto_app, clock, tmp_path):
    async with auto_app() as app:
        await app.once()
        run = auto.add_run("sync", "running")
        await poll(app, clock)
        auto.cancel(run.id)
        await poll(app, clock)
    events = read_events(tmp_path)
    assert finishes(events) == [(run.id, "stopped", 0)]
    assert events[-1]["status"] == "cancelled"


@pytest.mark.parametrize(
    ("status", "outcome", "with_errors"),
    [
        ("SUCCEEDED", "success", False),
        ("Completed-With-Errors", "success", True),
        ("timed_out", "failure", False),
        ("Aborted", "stopped", False),
        ("skipped", "skipped", False),
    ],
)
async def test_statuses_are_mapped_case_insensitively(
    auto, auto_app, clock, tmp_path, status, outcome, with_errors
):
    async with auto_app() as app:
        await app.once()
        run = auto.add_run("sync", "running")
        await poll(app, clock)
        auto.set_status(run.id, status)
        await poll(app, clock)
    events = read_events(tmp_path)
    assert finishes(events) == [(run.id, outcome, 0)]
    assert events[-1]["status"] == status
    assert events[-1].get("with_errors", False) is with_errors


async def test_an_unknown_status_is_reported_once_and_never_fatal(auto, auto_app, clock, tmp_path):
    async with auto_app() as app:
        await app.once()
        run = auto.add_run("sync", "running")
        await poll(app, clock)
        auto.set_status(run.id, "paused_for_review")
        await poll(app, clock)
        await poll(app, clock)
        auto.set_status(run.id, "succeeded")
        await poll(app, clock)
    events = read_events(tmp_path)
    assert run_types(events, run.id).count("run.unknown_status") == 1
    unknown = next(e for e in events if e["type"] == "run.unknown_status")
    assert (unknown["status"], unknown["phase"]) == ("paused_for_review", "unknown")
    assert finishes(events) == [(run.id, "success", 0)]


async def test_a_new_automation_failing_later_is_news_with_its_steps(
    auto, auto_app, clock, tmp_path
):
    async with auto_app() as app:
        await app.once()
        await poll(app, clock)
        auto.add_automation("leads", "Lead enrichment")
        clock.advance(1)
        run = auto.start_run("leads", "failure")
        clock.advance(60)
        auto.step()
        await poll(app, clock)
    events = read_events(tmp_path)
    assert finishes(events) == [(run.id, "failure", 0)]
    assert events[-1]["agent_id"] == "leads" and events[-1]["failed_steps"]


async def test_the_wildcard_unit_follows_the_adaptive_cadence(auto, auto_app, clock):
    async with auto_app() as app:
        poller = app.pollers[0]
        for _ in range(8):  # two minutes of 15 s ticks, nothing active: once per poll_interval
            await poller.poll()
            clock.advance(15)
        idle = len(listing_requests(auto))
        auto.add_run("sync", "running")
        clock.advance(45)
        for _ in range(4):  # a run in progress: every tick
            await poller.poll()
            clock.advance(15)
    assert idle == 2
    assert len(listing_requests(auto)) == idle + 4


# --- failures: one clear line, no state change ---------------------------------------------------

DETAIL_422 = (
    '{"detail":[{"loc":["query","limit"],"msg":"Input should be less than or equal to 1000",'
    '"type":"less_than_equal"}]}'
)


@pytest.mark.parametrize(
    ("fault", "expect"),
    [
        ({"kind": "http", "status": 500}, "HTTP 500 Internal Server Error: The service is"),
        (
            {"kind": "http", "status": 422, "body": DETAIL_422},
            "HTTP 422 Unprocessable Entity: query.limit: Input should be less than or equal "
            "to 1000",
        ),
        ({"kind": "truncated"}, "invalid JSON"),
        ({"kind": "stall", "delay": 0.5}, "no answer within 0.2s"),
        ({"kind": "http", "status": 401, "body": '{"detail":"Not authenticated"}'},
         "HTTP 401 Unauthorized: Not authenticated"),
    ],
)  # fmt: skip
async def test_a_bad_poll_changes_no_state(auto, auto_app, clock, tmp_path, fault, expect):
    async with auto_app(retries=0, timeout=0.2, source_failed_after=0) as app:
        await app.once()
        run = auto.add_run("sync", "failed")
        auto.inject(API, **fault)
        clock.advance(15)
        (report,) = await app.once()
        assert not report.ok
        line = report.error_line or ""
        assert line.startswith(f"automation: GET {API}") and expect in line
        assert "\n" not in line and KEY not in line
        assert app.store is not None
        assert run.id not in app.store.load_runs("automation")["sync"]
        assert [e.type for e in app.store.events()] == ["source.baselined", "source.failed"]
        await poll(app, clock)
    events = read_events(tmp_path)
    assert finishes(events) == [(run.id, "failure", 0)]
    assert [e["type"] for e in events].count("source.recovered") == 1


async def test_a_wrong_key_is_an_auth_error(auto, auto_app, clock, tmp_path):
    auto.api_keys = {"another"}
    async with auto_app(source_failed_after=0) as app:
        (report,) = await app.once()
    assert report.error_line == (
        f"automation: GET {API}: HTTP 401 Unauthorized: Invalid authentication credentials"
    )
    assert [e["error"] for e in read_events(tmp_path)] == ["auth"]


async def test_a_listing_of_the_wrong_shape_is_a_protocol_error(auto, auto_app):
    auto.inject(API, kind="http", status=200, body='[{"id": "x"}]')
    async with auto_app(retries=0) as app:
        (report,) = await app.once()
    assert report.error_line == f"automation: GET {API}: expected {{items, total}}, got list"


async def test_check(auto, auto_app):
    async with auto_app(agents=["sync", "prices"]) as app:
        (ok,) = await check_sources(app.settings, app.http)
        auto.api_keys = set()
        (bad,) = await check_sources(app.settings, app.http)
    assert [line.text for line in ok.lines] == [
        "authenticated; 2 run(s) in the listing",
        "watching automation(s) sync, prices",
        "request budget: no limit",
        "mode: sweep (the platform has no change hints): every agent is listed in turn",
        "a change is seen within 1m 0s; all 2 agent(s) are listed at least every 1m 0s",
    ]
    assert not bad.ok and "HTTP 401" in bad.lines[0].text


async def test_unreadable_entries_are_skipped_and_odd_values_tolerated(auto, auto_app, clock):
    body = (
        '{"items": [1, {"automationId": "sync"}, {"id": "r1", "status": 3},'
        ' {"id": "r2", "automationId": "sync", "status": "RUNNING", "startedAt": "never",'
        ' "durationSeconds": "long", "error": {"code": 7}}], "total": 4}'
    )
    async with auto_app() as app:
        await app.once()
        auto.inject(API, kind="http", status=200, body=body)
        await poll(app, clock)
        assert app.store is not None
        state = app.store.load_runs("automation")
    assert (state["sync"]["r2"].phase, state["sync"]["r2"].status) == ("running", "RUNNING")
    assert not any("r1" in runs for runs in state.values())  # no automationId: skipped


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (DETAIL_422, ": query.limit: Input should be less than or equal to 1000"),
        (
            '{"detail":[{"loc":["query","limit"],"msg":"a"},{"loc":["query","offset"],"msg":"b"}]}',
            ": query.limit: a; query.offset: b",
        ),
        ('{"detail":[{"msg":"no location"}]}', ": no location"),
        ('{"detail":[{"type":"missing","loc":["body","mode"]}]}', ": body.mode: missing"),
        ('{"detail":"Run not found"}', ": Run not found"),
        ('{"detail":[{"loc":["q"],"msg":"line\\nbreak"}]}', ": q: line break"),
    ],
)
def test_422_detail_bodies_become_one_readable_line(body: str, said: str) -> None:
    from watcher.sources.answers import _server_says

    assert _server_says(body.encode()) == said


async def test_pruning_keeps_every_run_a_listing_can_still_show(auto, auto_app, clock):
    """A listing holds max_records × max_pages runs: none of them may be forgotten, or it would
    come back as a new run."""
    for i in range(450):
        auto.add_run("sync", "succeeded", created=clock() - timedelta(minutes=i))
    async with auto_app(max_records=100, max_pages=5) as app:
        await app.once()
        poller = app.pollers[0]
        assert poller.source.history_depth == 500
        assert poller.prune() == 0
        await poll(app, clock, 60)
        assert [r.events for r in await app.once()] == [[]]
