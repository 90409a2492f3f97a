"""Hostile payloads never crash a source: each becomes a protocol error or a skipped record."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from yarl import URL

from watcher.app import App
from watcher.config import OutputsConfig
from watcher.diff import diff_agent
from watcher.errors import SourceProtocolError, SourceUnavailable
from watcher.events import Event
from watcher.runs import Agent, RunSnapshot
from watcher.sources.automation_runs import WILDCARD, AutomationRuns
from watcher.sources.base import Source
from watcher.sources.http import HttpClient
from watcher.sources.sequentum_acc import SequentumAcc
from watcher.sources.sequentum_cloud import SequentumCloud
from watcher.store import Store
from watcher_sim import AccWorld, AutomationWorld, SimFile, World, make_acc_app, make_automation_app
from watcher_sim.acc_model import FAILED, JOB_WITH_FAILURE, SUCCEEDED

from .conftest import make_settings, source_config
from .test_acc import GUID, PATH, TOKEN, acc_config
from .test_automation_runs import API, KEY, auto_config
from .test_secrets_and_logs import CANARY, _assert_nowhere

NOW = datetime(2026, 11, 23, tzinfo=UTC)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(
        [
            "2024-12-18T13:08:49.748151Z",
            "0001-01-01T00:00:00",
            "9999-12-31T23:59:59-10:00",
            "2025-08-12T02:40:33.7108431+10:00",
            "yesterday",
            "Completed",
            "Failure",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELDS = ["id", "status", "configName", "startTime", "endTime", "runTimeSec", "pageCount",
          "dataCount", "errorCount", "requestCount", "exportCount", "message"]  # fmt: skip
runs = st.fixed_dictionaries({}, optional={f: values for f in FIELDS})
listings = st.one_of(values, st.lists(st.one_of(runs, values), max_size=6))


def _survives(
    snaps: list[RunSnapshot], source: str, kind: str, events: list[Event] | None = None
) -> None:
    """Whatever was accepted can be serialised, fingerprinted, diffed and stored (with the
    `events` the source enriched, when given)."""
    for snap in snaps:
        data = json.loads(json.dumps(snap.to_dict()))
        back = RunSnapshot.from_dict(data)
        # JSON has no tuples: a sequence in `extra` comes back as a list.
        assert back == replace(snap, extra=tuple(sorted(data["extra"].items())))
        assert back.to_dict() == data
        snap.digest()
    result = diff_agent({}, snaps, now=NOW, source_kind=kind)
    store = Store.open(":memory:")
    try:
        written = events or result.events
        store.commit(source=source, changes=result.changes, events=written,
                     targets={e.id: ["eventlog"] for e in written}, now=NOW, now_ts=0)  # fmt: skip
    finally:
        store.close()


async def _enriched(src: Source, snaps: list[RunSnapshot]) -> list[Event]:
    """The events of `snaps` as news (every finish new), each finish enriched by `src` as the
    poller would: details, failed steps. Enrichment never raises."""
    events = diff_agent({}, snaps, now=NOW, source_kind=src.kind).events
    return [await src.enrich(e) if e.type == "run.finished" else e for e in events]


@pytest.fixture(scope="module")
def source() -> SequentumCloud:
    # Parsing needs no connection: the client is never used by parse_runs.
    return SequentumCloud(source_config("http://127.0.0.1:1"), HttpClient(None))  # type: ignore[arg-type]


@given(data=listings)
@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_payload_parses_or_is_a_protocol_error(source: SequentumCloud, data) -> None:
    try:
        snaps = source.parse_runs(Agent("7"), data, "/api/v1/agent/7/runs")
    except SourceProtocolError as err:
        assert "\n" not in str(err)
        return
    _survives(snaps, "cloud", "sequentum_cloud")


async def test_hostile_listing_over_http(world, cloud_url, http) -> None:
    world.add_agent(id=7, name="x")
    src = SequentumCloud(source_config(cloud_url), http)
    body = json.dumps([{"id": True}, {"id": 1, "status": 2**80, "startTime": "garbage"},
                       "nonsense", {"id": 2, "status": "Exploded", "pageCount": -5}])  # fmt: skip
    world.inject("/api/v1/agent/7/runs", kind="http", status=200, body=body, times=1)
    snaps = await src.runs(Agent("7"))
    assert [(s.run_id, s.phase.value, s.started_at, s.counts.pages) for s in snaps] == [
        ("2", "unknown", None, None),
        ("1", "unknown", None, None),
    ]
    world.inject("/api/v1/agent/7/runs", kind="http", status=200, body='{"runs": 5}', times=1)
    with pytest.raises(SourceProtocolError, match="expected a list of runs"):
        await src.runs(Agent("7"))


# --- Sequentum Cloud ids go into URL paths: only plain numbers do ------------------------------

PATH_TRICKS = ["../../x", "x?y=1", "1/../2", f"1?key={CANARY}"]
"""Ids a hostile or broken listing may send, each of which would make a URL of another path
(`1/../2` one that exists); the last quotes the API key, which must not be logged with it."""


@pytest.fixture
def cloud_app(world: World, cloud_url: str, clock, http, tmp_path: Path) -> App:
    """Agent 7 with a finished run; outputs fetched for every finished run (more URLs of ids)."""
    world.api_keys = {CANARY}
    world.add_agent(id=7, name="seven")
    world.add_run(7, status=10, run_id=1)
    settings = make_settings(tmp_path, source_config(cloud_url, api_key=CANARY))
    settings.outputs = OutputsConfig(enabled=True, dir=tmp_path / "out", on=["success", "failure"])
    return App(settings, clock=clock, http=http)


def _skipped(logged: str) -> list[tuple[str, str]]:
    lines = [json.loads(line) for line in logged.splitlines()]
    return [(e["agent_id"], e["problem"]) for e in lines if e["event"] == "record skipped"]


async def test_cloud_agent_ids_that_are_not_numbers_are_never_requested(
    world: World, cloud_app: App, tmp_path: Path, captured_logs
) -> None:
    agents = [{"id": 7, "name": "seven", "status": 10}]
    agents += [{"id": bad, "name": "evil", "status": 1} for bad in PATH_TRICKS]
    world.inject("/api/v1/agent/all", kind="http", status=200, body=json.dumps(agents), times=-1)
    async with cloud_app as app:
        reports = await app.once()
    assert [r.error_line for r in reports] == [None]
    assert {c.path for c in world.calls} == {"/api/v1/agent/all", "/api/v1/agent/7/runs"}
    assert not any(set(c.query) - {"pageIndex", "recordsPerPage", "sortColumn", "sortOrder",
                                   "maxRecords"} for c in world.calls)  # fmt: skip
    logged = captured_logs.getvalue()
    assert _skipped(logged) == [("*", "agent without a numeric id; skipped")]  # once, not a flood
    assert not any(bad in logged for bad in PATH_TRICKS)
    _assert_nowhere(CANARY, tmp_path, logged, [r.error_line or "" for r in reports])


async def test_cloud_run_ids_that_are_not_numbers_are_never_requested(
    world: World, cloud_app: App, clock, tmp_path: Path, captured_logs
) -> None:
    """Failed runs with such ids: no diagnostics asked, no outputs fetched, for them — while
    the real failure beside them gets both."""
    async with cloud_app as app:
        await app.once()  # the baseline
        world.reset_counters()
        world.add_run(7, status=6, run_id=2, files=[SimFile(11, "a.csv", b"a\n", 1)])
        runs = [{"id": bad, "status": 6} for bad in PATH_TRICKS]
        runs += [{"id": 2, "status": 6}, {"id": 1, "status": 10}]
        world.inject("/api/v1/agent/7/runs", kind="http", status=200, body=json.dumps(runs))
        clock.advance(15)
        reports = await app.once()
        assert app.dispatcher is not None
        await app.dispatcher.drain()
    assert [r.error_line for r in reports] == [None]
    assert {c.path for c in world.calls} == {
        "/api/v1/agent/all",
        "/api/v1/agent/7/runs",
        "/api/v1/analytics/agents/7/runs/2/diagnostics",
        "/api/v1/agent/7/run/2/files",
        "/api/v1/agent/7/run/2/file/11/download",
    }
    assert (tmp_path / "out" / "cloud" / "7" / "2" / "a.csv").read_bytes() == b"a\n"
    logged = captured_logs.getvalue()
    assert _skipped(logged) == [("7", "run without a numeric id; skipped")]
    assert not any(bad in logged for bad in PATH_TRICKS)
    _assert_nowhere(CANARY, tmp_path, logged, [r.error_line or "" for r in reports])


# --- the ACC and automation-runs sources, through every request they parse ----------------------
#
# Each field holds what the platform really sends (seeds 003 and 004) four times out of five and
# anything at all otherwise, so that most examples build snapshots (and reach the run details,
# job history and failed steps) instead of being refused at the first field. The source is
# given decoded JSON as watcher.sources.http hands it over (its lone surrogates already
# replaced); the tests over HTTP below send the raw bodies.

FAIL = object()
"""Not a body: the request fails (HTTP 503 once the retries are spent)."""

odd_texts = st.sampled_from(["", "  ", "line\nbreak", "x" * 2500, "\x00", "\u202e\u2028", "😀"])
hostile = st.one_of(values, odd_texts, st.sampled_from([1e308, -0.0, 2**53, 2**63, -(2**31)]))


def _pick(*weighted: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each as often as its weight says (shrinking towards the first).
    (`st.one_of` draws its branches evenly, however often one is repeated.)"""
    table = [strategy for weight, strategy in weighted for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(table.__getitem__)


def _mostly(valid: st.SearchStrategy[Any], odds: int = 4) -> st.SearchStrategy[Any]:
    """`valid` `odds` times out of `odds + 1`, anything at all the other time."""
    return _pick((odds, valid), (1, hostile))


def _objects(
    required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects with the `required` keys and any of the `optional` ones (a required key may
    still hold junk, through its own strategy; junk objects come from `hostile`)."""
    return st.fixed_dictionaries(required, optional=optional)


def _entries(item: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    """A list of entries, mostly objects."""
    return st.lists(_mostly(item), max_size=4)


def _listings(item: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a list of entries, now and then inside an envelope."""
    envelope = st.fixed_dictionaries({"items": _entries(item)}, optional={"runs": hostile})
    return _pick((6, _entries(item)), (1, envelope), (1, hostile))


texts = st.one_of(st.text(max_size=40), odd_texts, st.just("Selector not found: div.price"))
guids = st.uuids().map(str)
ids = _mostly(st.one_of(guids, st.integers(-5, 2**64), texts))
counts = _mostly(st.integers(-3, 2**60))
times = _mostly(
    st.builds(
        lambda moment, fraction, offset: moment.isoformat(timespec="seconds") + fraction + offset,
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
        st.sampled_from(["", ".5", ".748151", ".7108431", ".1234567890123"]),
        st.sampled_from(["", "Z", "z", "+10:00", "-05:30", "+14:00", "+99:00"]),
    )
)
timespans = _mostly(  # .NET TimeSpans, `[-][d.]hh:mm:ss[.fffffff]`, right and wrong
    st.one_of(
        st.builds(
            lambda days, h, m, s, fraction: f"{days}{h:02d}:{m:02d}:{s:02d}{fraction}",
            st.sampled_from(["", "", "1.", "10675199.", "-", "99999999999."]),
            st.integers(0, 30),
            st.integers(0, 70),
            st.integers(0, 70),
            st.sampled_from(["", ".9677836", ".5", ".1234567890"]),
        ),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(["9" * 5000 + ".00:00:00", "00:00:08.9677836", "8 seconds"]),
    )
)

acc_runs = _objects(
    {
        "agentRunHistoryId": ids,
        "status": _mostly(
            st.one_of(st.integers(-1, 9), st.sampled_from(["4", " 5 ", "Succeeded", "Bogus"]))
        ),
    },
    {
        "startTime": times,
        "endTime": times,
        "runTime": timespans,
        "pageLoadCount": counts,
        "dataCount": counts,
        "errors": counts,
        "requestCount": counts,
        "statusMessage": st.one_of(st.none(), texts),
        "logPath": texts,
    },
)
acc_jobs = _objects(
    {
        "agentJobHistoryId": ids,
        "status": _mostly(st.one_of(st.integers(-1, 7), st.just("In Progress With Failure"))),
    },
    {
        "startTime": times,
        "endTime": times,
        "completedRunCount": counts,
        "totalRunCount": counts,
        "runId": counts,
        "totalPageLoadCount": counts,
        "totalDataCount": counts,
        "totalErrors": counts,
        "totalRequestCount": counts,
    },
)
acc_details = _pick(  # GET /api/run/{id}
    (
        3,
        _objects(
            {"statusMessage": texts},
            {
                "errors": counts,
                "dataCount": counts,
                "logPath": texts,
                "endTime": times,
                "runTime": timespans,
            },
        ),
    ),
    (1, st.just(FAIL)),
    (1, hostile),
)
acc_agents = _mostly(  # GET /api/agent?agentPath=…
    _objects({"agentId": _mostly(guids)}, {"name": texts, "description": hostile})
)


class Answers:
    """Stands in for the HTTP client: answers each GET with decoded JSON chosen by the URL (which
    the source builds as for a real request), or fails it."""

    def __init__(self, answer: Callable[[URL], Any]) -> None:
        self.answer = answer
        self.asked: list[str] = []
        self.wall = time.time

    async def sleep(self, delay: float) -> None:
        pass

    async def get_json(self, url: URL, *, source: str, agent_id: str | None = None, **_: Any):
        self.asked.append(url.path)
        body = self.answer(url)
        if body is FAIL:
            raise SourceUnavailable(source, f"GET {url.path}: HTTP 503", agent_id=agent_id)
        return body


@given(
    agent_id=st.sampled_from([PATH, GUID]),
    agent=acc_agents,
    history=_listings(acc_runs),
    jobs=_listings(acc_jobs),
    details=acc_details,
)
@settings(max_examples=300)
def test_any_acc_payload_parses_or_is_a_protocol_error(
    agent_id: str, agent: Any, history: Any, jobs: Any, details: Any
) -> None:
    """Every request the ACC source parses (resolve, parse_runs, parse_jobs, run details)."""

    def answer(url: URL) -> Any:
        if url.path == "/api/agent":
            return agent
        if url.path.startswith("/api/agent/"):
            return history
        if url.path.startswith("/api/job/"):
            return jobs
        return details  # /api/run/{id}

    config = acc_config("http://127.0.0.1:1", agents=[agent_id], watch_jobs=True)
    client = Answers(answer)
    src = SequentumAcc(config, client)  # type: ignore[arg-type]
    try:
        snaps = asyncio.run(src.runs(Agent(agent_id)))
    except SourceProtocolError as err:
        assert "\n" not in str(err)
        event("refused")
        return
    events = asyncio.run(_enriched(src, snaps))  # every finish is news: details are asked for
    event(f"accepted {min(len(snaps), 3)}+ runs")
    event(f"run details asked: {any(p.startswith('/api/run/') for p in client.asked)}")
    event(f"job runs: {any(s.run_id.startswith('job-') for s in snaps)}")
    _survives(snaps, "acc", "sequentum_acc", events)


AUTOMATION_STATUSES = ["failed", "FAILED", "timed-out", "error", "succeeded", "running",
                       "completed-with-errors", "cancelled", "exploded"]  # fmt: skip
automation_runs = _objects(
    {
        "id": ids,
        "automationId": _mostly(st.sampled_from(["sync", "prices", " sync ", 7])),
        "status": _mostly(st.sampled_from(AUTOMATION_STATUSES)),
    },
    {
        "createdAt": times,
        "startedAt": times,
        "completedAt": times,
        "durationSeconds": _mostly(st.floats(allow_nan=True, allow_infinity=True)),
        "error": st.one_of(
            st.none(), texts, hostile, _objects({}, {"message": hostile, "detail": texts})
        ),
    },
)
automation_pages = _mostly(  # GET /api/v1/automation-runs?limit=&offset=
    _objects(
        {
            "items": _mostly(_entries(automation_runs), 10),
            "total": _mostly(st.integers(-1, 12), 10),
        },
        {},
    ),
    odds=10,
)
automation_step = _objects(
    {"key": ids, "status": _mostly(st.sampled_from(["failed", "succeeded"]))},
    {"name": texts, "error": texts},
)
automation_steps = _pick(  # GET /api/v1/automation-runs/{id}/steps
    (3, _objects({"steps": _mostly(st.lists(_mostly(automation_step), max_size=5))}, {})),
    (1, st.just(FAIL)),
    (1, hostile),
)


@given(
    agents=st.sampled_from([[WILDCARD], ["sync"]]),
    pages=st.lists(automation_pages, min_size=1, max_size=3),
    steps=automation_steps,
)
@settings(max_examples=300)
def test_any_automation_payload_parses_or_is_a_protocol_error(
    agents: list[str], pages: list[Any], steps: Any
) -> None:
    """Every request the automation-runs source parses (the listing's pages, failed steps)."""
    answers = iter(pages)

    def answer(url: URL) -> Any:
        if url.path == API:
            return next(answers, pages[-1])
        return steps

    config = auto_config("http://127.0.0.1:1", agents=agents, max_records=4, max_pages=3)
    client = Answers(answer)
    src = AutomationRuns(config, client)  # type: ignore[arg-type]
    try:
        snaps = asyncio.run(src.runs(Agent(agents[0])))
    except SourceProtocolError as err:
        assert "\n" not in str(err)
        event("refused")
        return
    events = asyncio.run(_enriched(src, snaps))  # every failure is news: steps are asked for
    event(f"accepted {min(len(snaps), 3)}+ runs")
    event(f"pages read: {sum(p == API for p in client.asked)}")
    event(f"failed steps: {any(e.get('failed_steps') for e in events)}")
    _survives(snaps, "automation", "automation_runs", events)


R3 = "0b0e5b5e-0000-4000-8000-000000000003"


async def test_hostile_acc_answers_over_http(aiohttp_server, clock, http) -> None:
    acc = AccWorld(now=clock, tokens={TOKEN})
    acc.add_agent(PATH, agent_id=GUID)
    server = await aiohttp_server(make_acc_app(acc), host="127.0.0.1")
    src = SequentumAcc(acc_config(str(server.make_url("")).rstrip("/"), watch_jobs=True), http)
    # Lone surrogates (\udXXX escapes), a TimeSpan of 5,000 digits, NaN, counts beyond 64 bits.
    history = json.dumps([
        {"agentRunHistoryId": True}, {"agentRunHistoryId": " "}, "nonsense",
        {"agentRunHistoryId": "r1", "status": SUCCEEDED, "runTime": "9" * 5000 + ".00:00:00",
         "startTime": "2019-05-21T13:52:14.3020127+10:00", "pageLoadCount": 2**80,
         "endTime": "2019-05-21T13:52:23.6568249+10:00", "statusMessage": "bad \udc00 byte"},
        {"agentRunHistoryId": "r2", "status": "\ud800", "errors": -1, "runTime": float("nan")},
        {"agentRunHistoryId": R3, "status": FAILED, "runTime": "00:00:02"},
        {"agentRunHistoryId": "../job/x", "status": FAILED},  # no GUID: never put in a URL
    ])  # fmt: skip
    jobs = json.dumps({"items": [
        {"agentJobHistoryId": "j1", "status": JOB_WITH_FAILURE, "completedRunCount": 1,
         "totalRunCount": 2**70, "runId": -1, "startTime": "0001-01-01T00:00:00"},
        {"agentJobHistoryId": ["j2"], "status": 3},
    ]})  # fmt: skip
    acc.inject(f"/api/agent/{GUID}/history", kind="http", status=200, body=history)
    acc.inject(f"/api/job/{GUID}/history", kind="http", status=200, body=jobs)
    acc.inject(f"/api/run/{R3}", kind="http", status=200, body='["not", "details"]')
    snaps = await src.runs(Agent(PATH))
    assert [(s.run_id, s.status, s.phase.value, s.duration_s, s.counts.pages, s.message)
            for s in snaps] == [
        ("../job/x", "Failed", "finished", None, None, None),
        (R3, "Failed", "finished", 2.0, None, None),
        ("r2", "?", "unknown", None, None, None),
        ("r1", "Succeeded", "finished", pytest.approx(9.354812), None, "bad ? byte"),
        ("job-j1", "In Progress With Failure", "running", None, None, "In Progress With Failure"),
    ]  # fmt: skip
    events = await _enriched(src, snaps)  # every finish is news: its details are asked for
    assert ("GET", f"/api/run/{R3}") in acc.requests  # the details were asked for, not used
    assert [p for _, p in acc.requests if "job/x" in p] == []
    _survives(snaps, "acc", "sequentum_acc", events)
    # Answers of the wrong shape: one line that names the request. An agentId that is not a
    # GUID is refused before it can steer the next request elsewhere (it goes into URL paths).
    acc.inject(f"/api/agent/{GUID}/history", kind="http", status=200, body='{"runs": 5}')
    with pytest.raises(SourceProtocolError, match=r"history: expected a list, got int$"):
        await src.runs(Agent(PATH))
    acc.inject("/api/agent", kind="http", status=200, body='{"agentId": "../run/x\\ny"}')
    with pytest.raises(SourceProtocolError, match=r"expected an object with a GUID agentId$"):
        await src.resolve(PATH, fresh=True)


async def test_hostile_automation_answers_over_http(aiohttp_server, clock, http) -> None:
    auto = AutomationWorld(now=clock, api_keys={KEY})
    auto.add_automation("sync")
    server = await aiohttp_server(make_automation_app(auto), host="127.0.0.1")
    src = AutomationRuns(auto_config(str(server.make_url("")).rstrip("/")), http)
    listing = json.dumps({"items": [
        1, {"automationId": "sync"}, {"id": "a0", "automationId": ["sync"]},
        {"id": "a1", "automationId": "sync", "status": "\ud800", "durationSeconds": 1e308,
         "createdAt": "2026-11-23T10:00:00Z", "completedAt": "9999-12-31T23:59:59-10:00"},
        {"id": "a2", "automationId": "sync", "status": "failed", "error": {"detail": [{}]},
         "createdAt": "2026-11-23T11:00:00Z", "durationSeconds": float("inf")},
        {"id": "../../x?", "automationId": "sync", "status": "failed",  # never put in a URL
         "createdAt": "2026-11-23T09:00:00Z"},
    ], "total": 2**70})  # fmt: skip  # a total beyond any page: read on until one is empty
    steps = json.dumps({"steps": [
        {"key": "fetch", "name": "Fetch \ud800", "status": "failed",
         "error": {"message": {"detail": "HTTP\n500 \udc00"}}},
        "junk", {"key": ["x"], "status": "FAILED"}, {"key": "ok", "status": "succeeded"},
    ]})  # fmt: skip
    auto.inject(API, kind="http", status=200, body=listing)
    auto.inject(f"{API}/a2/steps", kind="http", status=200, body=steps)
    snaps = await src.runs(Agent(WILDCARD))
    assert [(s.run_id, s.status, s.phase.value, s.duration_s, s.message) for s in snaps] == [
        ("../../x?", "failed", "finished", None, None),
        ("a1", "?", "unknown", None, None),
        ("a2", "failed", "finished", None, '{"detail":[{}]}'),
    ]
    events = await _enriched(src, snaps)  # every failure is news: its steps are asked for
    a2 = next(e for e in events if e.run_id == "a2" and e.type == "run.finished")
    assert a2.message == '{"detail":[{}]} — failed step fetch (Fetch ?): HTTP 500 ?; failed step ?'
    assert a2.get("failed_steps") == (("fetch", "Fetch ?", "HTTP 500 ?"), ("?", None, None))
    assert [p for _, p in auto.requests if p.startswith(API + "?")] == [
        f"{API}?limit=50&offset=0",
        f"{API}?limit=50&offset=6",
    ]
    assert [p for _, p in auto.requests if "x?" in p or p.endswith("/x/steps")] == []
    _survives(snaps, "automation", "automation_runs", events)
    auto.inject(API, kind="http", status=200, body='{"items": {"a": 1}, "total": 1}')
    with pytest.raises(SourceProtocolError, match=r"expected \{items, total\}, got dict"):
        await src.runs(Agent(WILDCARD))


@pytest.mark.parametrize(
    "body", [b"[" + b"9" * 5000 + b"]", b"[" * 5000 + b"]" * 5000], ids=["int", "depth"]
)
async def test_json_beyond_the_decoders_limits_is_a_protocol_error(
    aiohttp_server, clock, http, body: bytes
) -> None:
    acc = AccWorld(now=clock, tokens={TOKEN})
    acc.add_agent(PATH, agent_id=GUID)
    server = await aiohttp_server(make_acc_app(acc), host="127.0.0.1")
    src = SequentumAcc(acc_config(str(server.make_url("")).rstrip("/"), agents=[GUID]), http)
    acc.inject(f"/api/agent/{GUID}/history", kind="http", status=200, body=body)
    with pytest.raises(SourceProtocolError, match="beyond what watcher reads") as raised:
        await src.runs(Agent(GUID))
    assert "\n" not in str(raised.value)
