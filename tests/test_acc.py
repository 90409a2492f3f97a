"""End to end: the Agent Control Center source, poller, store and event log against the ACC
simulator on 127.0.0.1 (and, for the status-5 trap, the Cloud simulator beside it)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from watcher.app import App
from watcher.checks import check_sources
from watcher.config import SourceConfig
from watcher.sources.fields import parse_timespan
from watcher.sources.http import HttpClient
from watcher_sim import AccWorld, World, make_acc_app
from watcher_sim.acc_model import (
    DELIVERY,
    FAILED,
    FAILURE,
    JOB_FAILURE,
    JOB_WITH_FAILURE,
    RUNNING,
    STARTING,
    STOPPED,
    SUCCEEDED,
)

from .conftest import FakeClock, make_settings, source_config
from .test_watch_cloud import finishes, read_events, run_types

TOKEN = "acc-token-0123456789"
PATH = "sequentum/Test2/quick"
GUID = "a2f22850-7c88-4e05-a30a-004aa980ee6c"


@pytest.fixture
def acc(clock: FakeClock) -> AccWorld:
    world = AccWorld(now=clock, tokens={TOKEN})
    world.add_agent(PATH, agent_id=GUID)
    world.add_run(GUID, SUCCEEDED, run_id="00000000-0000-4000-8000-000000000001")  # history
    return world


@pytest.fixture
async def acc_url(aiohttp_server, acc: AccWorld) -> str:
    server = await aiohttp_server(make_acc_app(acc), host="127.0.0.1")
    return str(server.make_url("")).rstrip("/")


def acc_config(base_url: str, **overrides: object) -> SourceConfig:
    fields: dict[str, object] = {
        "name": "acc",
        "kind": "sequentum_acc",
        "base_url": base_url,
        "api_key": TOKEN,
        "agents": [PATH],
        "poll_interval": 60,
        "poll_interval_active": 15,
        "jitter": 0,
        "timeout": 2,
        "retries": 2,
    }
    fields.update(overrides)
    return SourceConfig(**fields)  # type: ignore[arg-type]


@pytest.fixture
def acc_app(tmp_path: Path, acc_url: str, clock: FakeClock, http: HttpClient) -> Callable[..., App]:
    def build(**overrides: object) -> App:
        return App(
            make_settings(tmp_path, acc_config(acc_url, **overrides)), clock=clock, http=http
        )

    return build


async def poll(app: App, clock: FakeClock, seconds: float = 15) -> None:
    clock.advance(seconds)
    reports = await app.once()
    assert all(r.ok for r in reports), [r.error_line for r in reports]


def requests(world: AccWorld, prefix: str) -> list[str]:
    return [p for _, p in world.requests if p.startswith(prefix)]


# --- runs ----------------------------------------------------------------------------------------


async def test_run_going_1_2_3_4_finishes_once_as_success(acc, acc_app, clock, tmp_path):
    async with acc_app() as app:
        await app.once()
        run = acc.add_run(GUID, STARTING)
        for status in (RUNNING, DELIVERY, SUCCEEDED):
            await poll(app, clock)
            acc.set_status(run.agentRunHistoryId, status)
        await poll(app, clock)
        await poll(app, clock)  # and nothing more afterwards
    events = read_events(tmp_path)
    rid = run.agentRunHistoryId
    assert run_types(events, rid) == ["run.discovered"] + ["run.status_changed"] * 3 + [
        "run.finished"
    ]
    assert finishes(events) == [(rid, "success", 0)]
    done = events[-1]
    assert (done["status"], done["status_code"], done["previous_status"]) == (
        "Succeeded",
        4,
        "Delivery",
    )
    assert (done["source_kind"], done["agent_id"], done["agent_name"]) == (
        "sequentum_acc",
        PATH,
        "quick",
    )
    assert done["acc_agent_id"] == GUID and done["message"] == "Completed"
    assert done["log_path"].startswith("quick-") and done["log_path"].endswith(".log")
    # The simulator writes +10:00 local times and a TimeSpan; events are UTC and seconds.
    assert done["started_at"] == "2026-11-23T12:00:00Z"
    assert done["ended_at"] == "2026-11-23T12:00:45Z" and done["duration_s"] == 45.0
    assert done["counts"]["records"] == run.dataCount and done["counts"]["pages"] > 0


@pytest.mark.parametrize(
    ("status", "name", "outcome"),
    [
        (FAILED, "Failed", "failure"),
        (FAILURE, "Failure", "failure"),
        (STOPPED, "Stopped", "stopped"),
    ],
)
async def test_finishing_statuses(acc, acc_app, clock, tmp_path, status, name, outcome):
    async with acc_app() as app:
        await app.once()
        run = acc.add_run(GUID, RUNNING)
        await poll(app, clock)
        acc.set_status(run.agentRunHistoryId, status, message="Proxy connection refused")
        await poll(app, clock)
        await poll(app, clock)
    events = read_events(tmp_path)
    assert finishes(events) == [(run.agentRunHistoryId, outcome, 0)]
    done = next(e for e in events if e["type"] == "run.finished")
    assert (done["status"], done["status_code"]) == (name, status)
    assert done["message"] == "Proxy connection refused"


async def test_a_run_first_seen_failed_finishes_at_once(acc, acc_app, clock, tmp_path):
    async with acc_app() as app:
        await app.once()
        run = acc.add_run(GUID, FAILED)
        await poll(app, clock)
    assert run_types(read_events(tmp_path), run.agentRunHistoryId) == [
        "run.discovered",
        "run.finished",
    ]


async def test_cloud_5_and_acc_5_are_never_confused(
    acc, acc_url, world: World, cloud_url, clock, http, tmp_path
):
    """Cloud 5 is Stopping (still running); ACC 5 is Failed (finished): one App, both sources."""
    world.add_agent(id=2537, name="steam")
    settings = make_settings(tmp_path, source_config(cloud_url, agents=[2537]), acc_config(acc_url))
    async with App(settings, clock=clock, http=http) as app:
        await app.once()
        cloud_run = world.add_run(2537, status=1, run_id=700)
        acc_run = acc.add_run(GUID, RUNNING)
        await poll(app, clock)
        world.set_status(2537, 700, 5)
        acc.set_status(acc_run.agentRunHistoryId, 5)
        await poll(app, clock)
        await poll(app, clock)
    events = read_events(tmp_path)
    assert finishes(events) == [(acc_run.agentRunHistoryId, "failure", 0)]
    cloud_change = [e for e in events if e["run_id"] == str(cloud_run.id)][-1]
    assert (cloud_change["source"], cloud_change["status"], cloud_change["phase"]) == (
        "cloud",
        "Stopping",
        "running",
    )
    acc_finish = next(e for e in events if e["type"] == "run.finished")
    assert (acc_finish["source"], acc_finish["status"], acc_finish["status_code"]) == (
        "acc",
        "Failed",
        5,
    )


# --- agents by path ------------------------------------------------------------------------------


async def test_a_path_is_resolved_once_and_again_after_a_404(acc, acc_app, clock, tmp_path):
    async with acc_app() as app:
        await app.once()
        for _ in range(3):
            await poll(app, clock, 60)
        assert len(requests(acc, "/api/agent?agentPath=")) == 1
        assert len(requests(acc, f"/api/agent/{GUID}/history?count=50")) == 4
        # The agent is deleted and created again under the same path: a new GUID.
        new = acc.replace_agent(PATH)
        run = acc.add_run(new.agentId, FAILED)
        await poll(app, clock, 60)
        await poll(app, clock, 60)
    assert len(requests(acc, "/api/agent?agentPath=")) == 2
    assert len(requests(acc, f"/api/agent/{new.agentId}/history")) == 2
    events = read_events(tmp_path)
    assert finishes(events) == [(run.agentRunHistoryId, "failure", 0)]
    assert events[-1]["agent_id"] == PATH and events[-1]["acc_agent_id"] == new.agentId


async def test_an_agent_by_id_needs_no_resolution(acc, acc_app, clock, tmp_path):
    async with acc_app(agents=[GUID.upper()]) as app:
        await app.once()
        run = acc.add_run(GUID, STOPPED)
        await poll(app, clock)
    assert requests(acc, "/api/agent?") == []
    events = read_events(tmp_path)
    assert finishes(events) == [(run.agentRunHistoryId, "stopped", 0)]
    assert events[-1]["agent_id"] == GUID and "acc_agent_id" not in events[-1]


async def test_an_unknown_path_fails_that_agent_with_a_clear_line(acc, acc_app, clock):
    async with acc_app(agents=[PATH, "sequentum/Nowhere/agent"]) as app:
        (report,) = await app.once()
    assert not report.ok
    line = report.error_line or ""
    assert "GET /api/agent: HTTP 404 Not Found: Agent sequentum/Nowhere/agent not found." in line
    assert "\n" not in line


# --- jobs ----------------------------------------------------------------------------------------


async def test_job_watching_warns_early_then_finishes(acc, acc_app, clock, tmp_path):
    async with acc_app(watch_jobs=True) as app:
        await app.once()
        job = acc.start_job(GUID, ("failed", "success"))  # one run fails while the other runs
        for _ in range(6):
            await poll(app, clock, acc.tick)
            acc.step()
        await poll(app, clock)
    assert job.status == JOB_FAILURE
    events = read_events(tmp_path)
    jid = "job-" + job.agentJobHistoryId
    types = run_types(events, jid)
    assert types.count("run.warning") == 1
    assert types.index("run.warning") < types.index("run.finished")
    warning = next(e for e in events if e["type"] == "run.warning")
    assert (warning["status"], warning["status_code"], warning["phase"]) == (
        "In Progress With Failure",
        JOB_WITH_FAILURE,
        "running",
    )
    assert warning["message"] == "In Progress With Failure: 1 of 2 run(s) completed"
    job_finish = [e for e in events if e["type"] == "run.finished" and e["run_id"] == jid]
    assert [(e["status"], e["outcome"]) for e in job_finish] == [("Failure", "failure")]
    assert job_finish[0]["job_run_id"] == 1
    # The job's own runs are watched as runs, with ids that never collide with job ids.
    run_finishes = {e["run_id"]: e["outcome"] for e in events if e["type"] == "run.finished"}
    assert run_finishes == {jid: "failure", **{r: "failure" for r in job.run_ids[:1]},
                            job.run_ids[1]: "success"}  # fmt: skip


async def test_job_status_set_through_the_api_is_seen(acc, acc_app, clock, tmp_path):
    async with acc_app(watch_jobs=True) as app:
        acc.add_job(GUID)
        await app.once()
        acc.set_job_status(GUID, JOB_WITH_FAILURE)
        await poll(app, clock)
        acc.set_job_status(GUID, 3)
        await poll(app, clock)
    events = read_events(tmp_path)
    assert [e["type"] for e in events if e["run_id"] and e["run_id"].startswith("job-")] == [
        "run.status_changed",
        "run.warning",
        "run.status_changed",
        "run.finished",
    ]
    assert finishes(events)[0][1] == "success"


# --- run details ---------------------------------------------------------------------------------


async def test_details_are_fetched_once_for_a_run_that_just_finished(acc, acc_app, clock, tmp_path):
    acc.history_messages = False  # the listing says nothing; GET /api/run/{id} has the message
    acc.add_run(GUID, FAILED)  # history: never looked at in detail
    async with acc_app() as app:
        await app.once()
        run = acc.add_run(GUID, RUNNING)
        await poll(app, clock)
        acc.set_status(run.agentRunHistoryId, FAILED, message="Selector not found: div.price")
        await poll(app, clock)
        await poll(app, clock)
        await poll(app, clock)
    assert requests(acc, "/api/run/") == [f"/api/run/{run.agentRunHistoryId}"]
    events = read_events(tmp_path)
    done = next(e for e in events if e["type"] == "run.finished")
    assert done["message"] == "Selector not found: div.price"
    assert [e["type"] for e in events][-1] == "run.finished"  # the details changed nothing later


async def test_a_details_failure_does_not_fail_the_poll(acc, acc_app, clock, tmp_path):
    acc.history_messages = False
    async with acc_app(retries=0) as app:
        await app.once()
        run = acc.add_run(GUID, FAILURE)
        acc.inject("/api/run/*", kind="http", status=500)
        await poll(app, clock)
    events = read_events(tmp_path)
    assert finishes(events) == [(run.agentRunHistoryId, "failure", 0)]
    assert events[-1]["message"] is None


# --- failures: one clear line, no state change ---------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "expect"),
    [
        ({"kind": "http", "status": 500}, "HTTP 500 Internal Server Error: The service is"),
        (
            {"kind": "http", "status": 422, "body": '{"detail":[{"loc":["query","count"],'
             '"msg":"must be a number","type":"int_parsing"}]}'},
            "HTTP 422 Unprocessable Entity: query.count: must be a number",
        ),
        ({"kind": "truncated"}, "invalid JSON"),
        ({"kind": "stall", "delay": 0.5}, "no answer within 0.2s"),
        ({"kind": "html"}, "expected JSON, got HTML"),
    ],
)  # fmt: skip
async def test_a_bad_poll_changes_no_state(acc, acc_app, clock, tmp_path, fault, expect):
    async with acc_app(retries=0, timeout=0.2, source_failed_after=0) as app:
        await app.once()
        run = acc.add_run(GUID, FAILED)
        acc.inject(f"/api/agent/{GUID}/history", **fault)
        clock.advance(15)
        (report,) = await app.once()
        assert not report.ok
        line = report.error_line or ""
        assert line.startswith(f"acc: GET /api/agent/{GUID}/history") and expect in line
        assert "\n" not in line and TOKEN not in line
        assert app.store is not None
        assert run.agentRunHistoryId not in app.store.load_runs("acc")[PATH]
        assert [e.type for e in app.store.events()] == ["source.baselined", "source.failed"]
        await poll(app, clock)
    events = read_events(tmp_path)
    assert finishes(events) == [(run.agentRunHistoryId, "failure", 0)]
    assert [e["type"] for e in events].count("source.recovered") == 1


async def test_a_wrong_token_is_an_auth_error(acc, acc_app, clock, tmp_path):
    async with acc_app(source_failed_after=0) as app:
        await app.once()
        acc.tokens = {"rotated"}
        clock.advance(15)
        (report,) = await app.once()
    assert not report.ok
    assert report.error_line == f"acc: GET /api/agent/{GUID}/history: HTTP 401 Unauthorized"
    failed = [e for e in read_events(tmp_path) if e["type"] == "source.failed"]
    assert [(e["error"], e["http_status"]) for e in failed] == [("auth", 401)]


async def test_check_resolves_every_agent(acc, acc_app):
    other = acc.add_agent("sequentum/Test2/slow")
    async with acc_app(agents=[PATH, other.agentId], watch_jobs=True) as app:
        (ok,) = await check_sources(app.settings, app.http)
        acc.tokens = set()
        (bad,) = await check_sources(app.settings, app.http)
    assert ok.ok
    assert [line.text for line in ok.lines] == [
        f"agent {PATH} → {GUID} (quick): 1 recent run(s) readable; job history readable",
        f"agent {other.agentId}: 0 recent run(s) readable; job history readable",
        "request budget: no limit",
        "mode: sweep (the platform has no change hints): every agent is listed in turn",
        "a change is seen within 1m 0s; all 2 agent(s) are listed at least every 1m 0s",
    ]
    assert not bad.ok and "HTTP 401" in bad.lines[0].text


# --- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:00:08.9677836", 8.9677836),
        ("00:01:00", 60.0),
        ("1.02:03:04.5", 93784.5),
        ("23:59:59", 86399.0),
        (12.5, 12.5),
        ("-00:00:01", None),
        ("00:60:00", None),
        ("8 seconds", None),
        ("", None),
        (None, None),
        (True, None),
    ],
)
def test_timespan(text: object, seconds: float | None) -> None:
    assert parse_timespan(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_times_with_offsets_are_read_as_utc() -> None:
    from watcher.codec import parse_iso

    assert parse_iso("2019-05-21T13:52:14.3020127+10:00") == datetime(
        2019, 5, 21, 3, 52, 14, 302012, tzinfo=UTC
    )
    assert parse_iso("2019-05-21T13:52:23.656843-05:30") == datetime(
        2019, 5, 21, 19, 22, 23, 656843, tzinfo=UTC
    )


async def test_unreadable_entries_are_skipped_and_odd_values_tolerated(acc, acc_app, clock):
    body = (
        '[1, {"status": 4}, {"agentRunHistoryId": "odd", "status": "Bogus", "startTime": 5,'
        ' "runTime": [], "errors": -3, "statusMessage": 7},'
        ' {"agentRunHistoryId": "named", "status": "succeeded", "runTime": "00:00:02"}]'
    )
    async with acc_app() as app:
        await app.once()
        acc.inject(f"/api/agent/{GUID}/history", kind="http", status=200, body=body)
        await poll(app, clock)
        assert app.store is not None
        runs = app.store.load_runs("acc")[PATH]
    assert (runs["odd"].phase, runs["odd"].status) == ("unknown", "Bogus")
    assert (runs["named"].status, runs["named"].outcome) == ("Succeeded", "success")


async def test_a_history_that_is_not_a_list_is_a_protocol_error(acc, acc_app):
    acc.inject(f"/api/agent/{GUID}/history", kind="http", status=200, body='{"oops": 1}')
    async with acc_app(retries=0) as app:
        (report,) = await app.once()
    assert report.error_line == f"acc: GET /api/agent/{GUID}/history: expected a list, got dict"
