"""Config reload in-process: `Daemon.reload()` with a rewritten file, against the simulator and a
local webhook receiver; state and undelivered events survive, a broken file changes nothing."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

from watcher import logs
from watcher.app import App
from watcher.config import Settings, load_settings, plan_reload
from watcher.daemon import Daemon
from watcher.sources.http import HttpClient
from watcher.upkeep import housekeeping, settle
from watcher_sim import World

from .conftest import API_KEY, FakeClock

AGENT = 2537


@pytest.fixture(autouse=True)
def no_apprise_throttle(monkeypatch: pytest.MonkeyPatch) -> None:
    from apprise.plugins.base import NotifyBase

    monkeypatch.setattr(NotifyBase, "request_rate_per_sec", 0)


@pytest.fixture
def steam(world: World) -> World:
    world.add_agent(id=AGENT, name="steam")
    world.add_run(AGENT, status=9, run_id=100)
    return world


@pytest.fixture
async def hook(aiohttp_server) -> tuple[list[tuple[str, dict]], Callable[[bool], None], str]:
    """A webhook receiver (apprise json://): (path, body) received, a down switch, its host."""
    got: list[tuple[str, dict]] = []
    state = {"down": False}

    async def handle(request: web.Request) -> web.Response:
        if state["down"]:
            return web.Response(status=503)
        got.append((request.path, await request.json()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    return got, lambda down: state.update(down=down), f"{server.host}:{server.port}"


@pytest.fixture
def captured_logs() -> io.StringIO:
    stream = io.StringIO()
    logs.configure("json", "info", stream)
    return stream


class ConfigFile:
    """The config file on disk, rewritten by the test between reloads."""

    def __init__(self, tmp_path: Path, base_url: str) -> None:
        self.path = tmp_path / "watcher.toml"
        self.tmp_path = tmp_path
        self.base_url = base_url

    def write(self, *, sources: tuple[str, ...] = ("cloud",), subs: str = "") -> Path:
        text = (
            f'[watcher]\nstate_path = "{self.tmp_path / "state.db"}"\n'
            f'events_path = "{self.tmp_path / "events.jsonl"}"\nlog_format = "json"\n'
            '[http]\nlisten = "127.0.0.1:0"\n'  # metrics are counted where they can be read
        )
        for name in sources:
            text += (
                f'\n[[sources]]\nname = "{name}"\nkind = "sequentum_cloud"\n'
                f'base_url = "{self.base_url}"\napi_key = "{API_KEY}"\n'
                f"poll_interval = 60\npoll_interval_active = 15\njitter = 0\nretries = 0\n"
            )
        self.path.write_text(text + subs)
        return self.path


def subscription(name: str, host: str, on: str = '["failure"]') -> str:
    return f'\n[[subscriptions]]\nname = "{name}"\nurls = ["json://{host}/{name}"]\non = {on}\n'


@pytest.fixture
def config(tmp_path: Path, cloud_url: str) -> ConfigFile:
    return ConfigFile(tmp_path, cloud_url)


def events(tmp_path: Path) -> list[dict]:
    return [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]


@contextlib.asynccontextmanager
async def build(
    config: ConfigFile, clock: FakeClock, http: HttpClient
) -> AsyncIterator[tuple[App, Daemon]]:
    """An App on the config file, and the daemon that reloads it (not running: the test
    drives polls with `once()` and reloads with `daemon.reload()`)."""
    async with App(load_settings(config.path, {}), clock=clock, http=http) as app:
        yield app, Daemon(app, loader=reload_loader)


def reload_loader(path: Path) -> Settings:
    """Reload without consulting the test process's environment."""
    return load_settings(path, {})


async def test_a_new_subscription_takes_effect(
    steam, config, hook, clock: FakeClock, http, captured_logs
) -> None:
    got, _, host = hook
    config.write()
    async with build(config, clock, http) as (app, daemon):
        await app.once()
        config.write(subs=subscription("ops", host))
        assert await daemon.reload() is True
        steam.add_run(AGENT, status=6, run_id=101)
        clock.advance(15)
        await app.once()
        assert b'watcher_config_reloads_total{result="applied"} 1.0' in app.metrics.render()
    assert [path for path, _ in got] == ["/ops"]
    assert "failed" in got[0][1]["title"]
    line = next(
        json.loads(x) for x in captured_logs.getvalue().splitlines() if "config reloaded" in x
    )
    assert line["level"] == "info" and line["subscriptions_added"] == ["ops"]
    assert line["changed"] is True and line["config"] == str(config.path)


async def test_a_broken_file_is_rejected_and_the_old_config_keeps_working(
    steam, config, hook, clock: FakeClock, http, captured_logs
) -> None:
    got, _, host = hook
    config.write(subs=subscription("ops", host))
    async with build(config, clock, http) as (app, daemon):
        await app.once()
        config.path.write_text(
            config.path.read_text().replace(f'base_url = "{config.base_url}"', 'base_url = "x"')
            + 'poll_interval = "often"\n'  # lands in the last table: the subscription
        )
        assert await daemon.reload() is False
        steam.add_run(AGENT, status=6, run_id=101)
        clock.advance(15)
        await app.once()
        assert b'watcher_config_reloads_total{result="rejected"} 1.0' in app.metrics.render()
    assert [path for path, _ in got] == ["/ops"]  # the old subscription still delivers
    lines = [json.loads(x) for x in captured_logs.getvalue().splitlines()]
    rejected = [x for x in lines if x["event"] == "config reload rejected"]
    assert [(x["level"], x["problem"]) for x in rejected] == [
        ("error", "sources[0].base_url: not a URL"),
        ("error", "subscriptions[0].poll_interval: unknown key"),
    ]
    assert not any(x["event"] == "config reloaded" for x in lines)


async def test_sources_added_changed_and_removed_keep_their_state(
    steam, config, clock: FakeClock, http, tmp_path
) -> None:
    config.write()
    async with build(config, clock, http) as (app, daemon):
        await app.once()
        cloud = app.pollers[0]
        assert await daemon.reload(config.write(sources=("cloud", "second"))) is True
        assert [p.name for p in app.pollers] == ["cloud", "second"]
        assert app.pollers[0] is cloud  # unchanged: the same poller goes on
        clock.advance(15)
        await app.once()
        assert [e["type"] for e in events(tmp_path)] == ["source.baselined"] * 2

        # A changed source restarts its poller from the stored state: nothing is news.
        changed = config.path.read_text().replace("poll_interval = 60", "poll_interval = 90", 1)
        config.path.write_text(changed)
        assert await daemon.reload() is True
        assert app.pollers[0] is not cloud
        assert app.pollers[0].source.config.poll_interval == 90
        assert app.pollers[0].runs == cloud.runs
        assert app.pollers[0].last_success == cloud.last_success
        steam.add_run(AGENT, status=6, run_id=101)
        clock.advance(15)
        await app.once()

        assert await daemon.reload(config.write(sources=("second",))) is True
        assert [p.name for p in app.pollers] == ["second"]
        clock.advance(15)
        await app.once()
    finished = [(e["source"], e["run_id"]) for e in events(tmp_path) if e["type"] == "run.finished"]
    assert finished == [("cloud", "101"), ("second", "101")]


async def test_a_removed_subscription_gives_its_undelivered_alerts_up_at_once(
    steam, config, hook, clock: FakeClock, http
) -> None:
    got, set_down, host = hook
    config.write(subs=subscription("ops", host))
    async with build(config, clock, http) as (app, daemon):
        assert app.store is not None and app.dispatcher is not None
        await app.once()
        set_down(True)
        steam.add_run(AGENT, status=6, run_id=101)
        clock.advance(15)
        await app.once()  # the alert fails and waits for a retry
        assert app.store.outbox_depth() == 1
        assert await daemon.reload(config.write()) is True  # subscription removed
        assert not [n for n in app.dispatcher.sinks if n.startswith("notify:")]
        await settle(app)
        assert app.store.outbox_depth() == 0  # nobody will ever send it: it leaves the outbox
    set_down(False)
    failed = [e for e in events(config.tmp_path) if e["type"] == "notification.failed"]
    assert [(e["run_id"], e["reason"], e["subscription"]) for e in failed] == [
        ("101", "channel removed", "ops")
    ]
    assert got == []


async def test_a_removed_channel_waits_max_age_for_its_return_then_is_given_up(
    steam, config, hook, clock: FakeClock, http
) -> None:
    got, set_down, host = hook
    two = f'\n[[subscriptions]]\nname = "ops"\nurls = ["json://{host}/a", "json://{host}/b"]\n'
    one = f'\n[[subscriptions]]\nname = "ops"\nurls = ["json://{host}/b"]\n'
    config.write(subs=two)
    async with build(config, clock, http) as (app, daemon):
        assert app.store is not None and app.dispatcher is not None
        await app.once()
        set_down(True)
        steam.add_run(AGENT, status=6, run_id=101)
        clock.advance(15)
        await app.once()  # both channels fail
        assert await daemon.reload(config.write(subs=one)) is True  # channel /a removed
        set_down(False)
        clock.advance(3600)
        await settle(app)
        assert [p for p, _ in got] == ["/b"]  # the remaining channel delivers
        assert app.store.outbox_depth() == 1  # /a's row waits for the channel to return
        assert app.store.next_due(targets=list(app.dispatcher.sinks)) is None  # no busy loop
        assert await daemon.reload(config.write(subs=two)) is True  # it returns in time
        await settle(app)
        assert [p for p, _ in got] == ["/b", "/a"] and app.store.outbox_depth() == 0

        steam.add_run(AGENT, status=6, run_id=102)
        set_down(True)
        clock.advance(15)
        await app.once()
        assert await daemon.reload(config.write(subs=one)) is True
        clock.advance(24 * 3600)  # the subscription's max_age
        await housekeeping(app)
        set_down(False)
        await settle(app)
        assert app.store.outbox_depth() == 0
    failed = [e for e in events(config.tmp_path) if e["type"] == "notification.failed"]
    assert [(e["run_id"], e["reason"]) for e in failed] == [("102", "channel removed")]


async def test_restart_only_keys_are_kept_and_named(
    steam, config, clock: FakeClock, http, tmp_path, captured_logs
) -> None:
    config.write()
    async with build(config, clock, http) as (app, daemon):
        moved = config.path.read_text().replace("state.db", "elsewhere.db")
        config.path.write_text(moved.replace("127.0.0.1:0", "127.0.0.1:1"))
        assert await daemon.reload() is True
        assert app.settings.watcher.state_path == tmp_path / "state.db"
        assert app.settings.http.listen == "127.0.0.1:0"
    warning = next(
        json.loads(x) for x in captured_logs.getvalue().splitlines() if "next start" in x
    )
    assert warning["level"] == "warning"
    assert warning["keys"] == ["watcher.state_path", "http.listen"]


def test_plan_reload_names_each_change(tmp_path: Path, config) -> None:
    before = load_settings(config.write(sources=("a", "b"), subs=subscription("x", "h:1")), {})
    after_text = config.write(
        sources=("b", "c"), subs=subscription("x", "h:1", '["stopped"]') + subscription("y", "h:1")
    )
    after = load_settings(after_text, {})
    plan = plan_reload(before, after)
    assert plan.summary() == {
        "sources_added": ["c"],
        "sources_removed": ["a"],
        "subscriptions_added": ["y"],
        "subscriptions_changed": ["x"],
    }
    assert plan.needs_restart == []
    assert plan.settings.config_path == config.path


async def test_rules_and_outputs_added_by_a_reload_apply_to_running_sources(
    steam, config, clock: FakeClock, http, tmp_path: Path
) -> None:
    config.write()
    async with build(config, clock, http) as (app, daemon):
        await app.once()
        running = steam.add_run(AGENT, status=2, run_id=101)  # Running, before the reload
        clock.advance(15)
        await app.once()
        rules = '\n[[rules]]\nname = "slow"\nmax_duration = "10m"\n'
        outputs = f'\n[outputs]\nenabled = true\ndir = "{tmp_path / "out"}"\non = ["failure"]\n'
        config.write(subs=rules + outputs)
        assert await daemon.reload() is True
        for _ in range(4):  # 11 minutes on: past the rule's limit
            clock.advance(165)
            await app.once()
        steam.set_status(AGENT, running.id, 6)  # and then it fails
        clock.advance(15)
        await app.once()
        await settle(app)
    stuck = [e for e in events(tmp_path) if e["type"] == "run.stuck"]
    assert [(e["run_id"], e["rule"]) for e in stuck] == [("101", "slow")]
    fetched = [e for e in events(tmp_path) if e["type"] == "output.fetched"]
    assert [e["run_id"] for e in fetched] == ["101"]
    assert (tmp_path / "out" / "cloud" / str(AGENT) / "101" / "manifest.json").exists()
