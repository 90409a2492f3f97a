"""A new platform is one new module: a `Source` subclass that declares its `KindRules`.

This module is that new module for a made-up platform, "Conveyor" (pipelines and their runs,
behind `GET /v2/pipelines/{id}/runs`), served by a tiny aiohttp app on 127.0.0.1. Nothing else
in watcher is edited for it: the config takes `kind = "conveyor"` with its ids, credential
schemes and default budget, says what is wrong with a bad one in the usual one line naming the
key, and `watcher once` records a failed Conveyor run as `run.finished` and delivers it.

Declaring the subclass registers the kind for the whole process, so the `conveyor_kind`
fixture declares it for one test only, in copies of the two registries (the config's kinds,
the sources' classes) that are put back afterwards: no other test sees it.
"""

from __future__ import annotations

import importlib
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import watcher.sources.base as sources_base
from watcher.app import App
from watcher.codec import parse_iso
from watcher.config import load_settings
from watcher.config.kinds import KindRules, kinds
from watcher.errors import ConfigError, SourceProtocolError
from watcher.runs import Agent, Outcome, Phase, RunSnapshot, StatusInfo, snapshot
from watcher.sources.base import Source, source_class
from watcher.sources.http import HttpClient

from .conftest import FakeClock

KIND = "conveyor"
API_KEY = "conveyor-key-0123456789"
# The kinds' registry, fetched by name: `import watcher.config.kinds as …` would give the function
# `kinds` that the package `watcher.config` exports under the module's name.
KINDS_MODULE = importlib.import_module("watcher.config.kinds")

_PIPELINE = re.compile(r"pl-[0-9]{1,9}", re.IGNORECASE)


# --- the new platform's module -------------------------------------------------------------------


def parse_pipeline(item: object) -> str | None:
    """A Conveyor pipeline id, "pl-42" (any case), as lower-case text; None if it is not one."""
    if isinstance(item, str) and _PIPELINE.fullmatch(item.strip()):
        return item.strip().lower()
    return None


STATES = {
    "queued": StatusInfo("queued", None, Phase.PENDING),
    "busy": StatusInfo("busy", None, Phase.RUNNING),
    "ok": StatusInfo("ok", None, Phase.FINISHED, Outcome.SUCCESS),
    "broken": StatusInfo("broken", None, Phase.FINISHED, Outcome.FAILURE),
}
"""Conveyor's run states; any other is phase unknown, never an error."""


class ConveyorApi(Source):
    """Conveyor's API as watcher speaks it. Without `rules` it is not a kind yet: the fixture
    declares one (`Conveyor`) for the test's duration."""

    def auth_headers(self) -> dict[str, str]:
        if self.config.auth == "x-api-key":
            return {"X-API-Key": self.config.secret()}
        return {"Authorization": f"Bearer {self.config.secret()}"}

    async def agents(self) -> list[Agent]:
        return [Agent(id=a) for a in self.config.agents]

    async def runs(self, agent: Agent) -> list[RunSnapshot]:
        path = f"/v2/pipelines/{agent.id}/runs"
        data = await self.get(path, params={"limit": self.config.max_records}, agent_id=agent.id)
        runs = data.get("runs") if isinstance(data, dict) else None
        if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
            raise SourceProtocolError(self.name, f"GET {path}: expected {{runs: [...]}}")
        return [self._snapshot(agent.id, run) for run in reversed(runs)]  # newest first

    def _snapshot(self, pipeline: str, run: dict[str, Any]) -> RunSnapshot:
        state = str(run.get("state"))
        return snapshot(
            source=self.name,
            agent_id=pipeline,
            run_id=str(run.get("run")),
            info=STATES.get(state, StatusInfo(state, None, Phase.UNKNOWN)),
            started=parse_iso(run.get("began")),
            ended=parse_iso(run.get("ended")),
            message=run.get("error"),
            url=self.run_url(pipeline, str(run.get("run")), None),
        )


RULES = KindRules(
    name=KIND,
    parse_agent=parse_pipeline,
    agent_complaint='must be a pipeline id like "pl-42"',
    auth_schemes=("bearer", "x-api-key"),
    requests_per_minute=120,
    wildcard=False,
    agents_required='pipeline ids like "pl-42" (Conveyor cannot list its pipelines)',
)


@pytest.fixture
def conveyor_kind(monkeypatch: pytest.MonkeyPatch) -> type[Source]:
    """The kind "conveyor", declared as a platform module declares it, for this test only."""
    monkeypatch.setattr(KINDS_MODULE, "_KINDS", dict(kinds()))  # kinds() loads the built-ins
    monkeypatch.setattr(sources_base, "_CLASSES", dict(sources_base._CLASSES))

    class Conveyor(ConveyorApi):
        rules = RULES

    return Conveyor


# --- the platform, served on 127.0.0.1 -----------------------------------------------------------


class Platform:
    """Conveyor's runs API: pipelines with their runs (oldest first), behind a key sent as
    `Authorization: Bearer` or `X-API-Key`. It answers newest first, as the real one would."""

    def __init__(self) -> None:
        self.pipelines: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[str] = []
        self.schemes: list[str] = []
        """How each request carried the key: "bearer" or "x-api-key"."""

    def add_run(self, pipeline: str, run: str, state: str, at: datetime, **more: str) -> None:
        stamp = at.isoformat().replace("+00:00", "Z")
        entry = {"run": run, "state": state, "began": stamp, **more}
        if state in ("ok", "broken"):
            entry["ended"] = stamp
        self.pipelines.setdefault(pipeline, []).append(entry)

    async def runs(self, request: web.Request) -> web.Response:
        self.requests.append(request.path_qs)
        if request.headers.get("Authorization") == f"Bearer {API_KEY}":
            self.schemes.append("bearer")
        elif request.headers.get("X-API-Key") == API_KEY:
            self.schemes.append("x-api-key")
        else:
            return web.json_response({"error": "unauthorized"}, status=401)
        pipeline = request.match_info["pipeline"]
        if pipeline not in self.pipelines:
            return web.json_response({"error": "no such pipeline"}, status=404)
        limit = int(request.query.get("limit", "50"))
        return web.json_response({"runs": self.pipelines[pipeline][::-1][:limit]})


@pytest.fixture
def platform() -> Platform:
    return Platform()


@pytest.fixture
async def platform_url(aiohttp_server: Any, platform: Platform) -> str:
    app = web.Application()
    app.router.add_get("/v2/pipelines/{pipeline}/runs", platform.runs)
    server = await aiohttp_server(app, host="127.0.0.1")
    return str(server.make_url("")).rstrip("/")


class Receiver:
    """A webhook receiver: keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(json.loads(await request.read()))
        return web.Response(text="ok")


@pytest.fixture
async def receiver(aiohttp_server: Any) -> tuple[Receiver, str]:
    """The receiver and its host:port."""
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    return rec, f"127.0.0.1:{server.port}"


# --- the config ----------------------------------------------------------------------------------


def write_config(tmp_path: Path, source: str, subscriptions: str = "") -> Path:
    path = tmp_path / "watcher.toml"
    path.write_text(
        f"""
[watcher]
state_path = "{tmp_path / "state.db"}"
events_path = "{tmp_path / "events.jsonl"}"
log_format = "json"

[[sources]]
name = "line"
kind = "{KIND}"
{source}
{subscriptions}
"""
    )
    return path


GOOD = f'base_url = "https://conveyor.example"\napi_key = "{API_KEY}"\n'


def test_a_config_of_the_new_kind_loads_with_its_rules(
    conveyor_kind: type[Source], tmp_path: Path
) -> None:
    settings = load_settings(write_config(tmp_path, GOOD + 'agents = ["PL-7", " pl-8 "]\n'), {})
    (source,) = settings.sources
    assert (source.kind, source.agents) == (KIND, ["pl-7", "pl-8"])  # its own id parser
    assert source.auth == "bearer"  # its first credential scheme
    assert source.requests_per_minute == 120  # its default budget
    assert source_class(KIND) is conveyor_kind


@pytest.mark.parametrize(
    ("lines", "said"),
    [
        ('agents = ["pl-7", "7"]\n', 'sources[0].agents[1]: must be a pipeline id like "pl-42"'),
        ('agents = ["pl-7", "PL-7"]\n', "sources[0].agents[1]: duplicate agent id"),
        (
            'agents = ["*"]\n',
            'sources[0].agents: required for kind conveyor: pipeline ids like "pl-42" '
            "(Conveyor cannot list its pipelines)",
        ),
        (
            'agents = ["pl-7"]\nauth = "apikey"\n',
            "sources[0].auth: must be 'bearer' or 'x-api-key' for kind conveyor",
        ),
        (
            'agents = ["pl-7"]\nwatch_jobs = true\n',
            "sources[0].watch_jobs: only for kind sequentum_acc",
        ),
    ],
)
def test_a_bad_source_of_the_new_kind_is_one_line_naming_the_key(
    conveyor_kind: type[Source], tmp_path: Path, lines: str, said: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write_config(tmp_path, GOOD + lines), {})
    assert caught.value.problems == [said]
    assert API_KEY not in str(caught.value)


def test_a_misspelt_kind_is_told_the_new_one_among_the_others(
    conveyor_kind: type[Source], tmp_path: Path
) -> None:
    path = write_config(tmp_path, GOOD + 'agents = ["pl-7"]\n').read_text()
    (tmp_path / "typo.toml").write_text(path.replace(f'"{KIND}"', '"convoyer"'))
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "typo.toml", {})
    assert caught.value.problems == [
        "sources[0].kind: must be one of 'automation_runs', 'conveyor', 'sequentum_acc', "
        "'sequentum_cloud'"
    ]


# --- watcher once --------------------------------------------------------------------------------


async def test_once_records_and_delivers_a_failed_run_of_the_new_kind(
    conveyor_kind: type[Source],
    platform: Platform,
    platform_url: str,
    receiver: tuple[Receiver, str],
    clock: FakeClock,
    http: HttpClient,
    tmp_path: Path,
) -> None:
    rec, host = receiver
    platform.add_run("pl-7", "r1", "ok", clock())
    source = (
        f'base_url = "{platform_url}"\napi_key = "{API_KEY}"\nagents = ["pl-7"]\n'
        'dashboard_url = "https://conveyor.example/p/{agent_id}/runs/{run_id}"\n'
    )
    hook = f'[[subscriptions]]\nname = "ops"\nurls = ["webhook+http://{host}/hook"]\n'
    settings = load_settings(write_config(tmp_path, source, hook), {})

    async with App(settings, clock=clock, http=http) as app:
        (first,) = await app.once()  # the run already there is the baseline, not news
        assert first.ok and first.error_line is None
        assert rec.bodies == []
        platform.add_run("pl-7", "r2", "broken", clock.advance(60), error="disk full on node 3")
        clock.advance(1)
        (second,) = await app.once()

    assert second.ok
    assert platform.requests == ["/v2/pipelines/pl-7/runs?limit=50"] * 2
    (finished,) = [e for e in second.events if e.type == "run.finished"]
    assert (finished.source_kind, finished.agent_id, finished.run_id) == (KIND, "pl-7", "r2")
    assert finished.outcome is Outcome.FAILURE

    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    (recorded,) = [e for e in events if e["type"] == "run.finished"]
    assert recorded["id"] == finished.id and recorded["message"] == "disk full on node 3"
    assert recorded["failures_in_a_row"] == 1

    (body,) = rec.bodies
    assert (body["type"], body["source"], body["source_kind"]) == ("run.finished", "line", KIND)
    assert (body["agent_id"], body["run_id"], body["outcome"]) == ("pl-7", "r2", "failure")
    assert body["url"] == "https://conveyor.example/p/pl-7/runs/r2"
    assert body["platform_message"] == "disk full on node 3"


@pytest.mark.parametrize(
    ("lines", "sent"),
    [("", "bearer"), ('auth = "x-api-key"\n', "x-api-key"), ('auth = "bearer"\n', "bearer")],
)
async def test_the_key_goes_as_the_configured_scheme(
    conveyor_kind: type[Source],
    platform: Platform,
    platform_url: str,
    clock: FakeClock,
    http: HttpClient,
    tmp_path: Path,
    lines: str,
    sent: str,
) -> None:
    platform.add_run("pl-7", "r1", "busy", clock())
    source = f'base_url = "{platform_url}"\napi_key = "{API_KEY}"\nagents = ["pl-7"]\n'
    settings = load_settings(write_config(tmp_path, source + lines), {})
    async with App(settings, clock=clock, http=http) as app:
        (report,) = await app.once()
    assert report.ok
    assert platform.schemes == [sent]


async def test_a_refused_key_is_the_sources_error_without_the_key(
    conveyor_kind: type[Source],
    platform: Platform,
    platform_url: str,
    clock: FakeClock,
    http: HttpClient,
    tmp_path: Path,
) -> None:
    platform.add_run("pl-7", "r1", "busy", clock())
    source = f'base_url = "{platform_url}"\napi_key = "wrong-key-0123"\nagents = ["pl-7"]\n'
    settings = load_settings(write_config(tmp_path, source), {})
    async with App(settings, clock=clock, http=http) as app:
        (report,) = await app.once()
    assert not report.ok and report.error_line is not None
    assert "401" in report.error_line and "wrong-key-0123" not in report.error_line


def test_the_new_kind_is_gone_after_its_tests() -> None:
    """Run after the tests above (in file order): the registries are as they were."""
    assert KIND not in kinds()
    assert source_class(KIND) is None
    assert {"sequentum_cloud", "sequentum_acc", "automation_runs"} <= set(kinds())
