"""What an alert says, read where it arrives — a real SMTP server (aiosmtpd) and a webhook
receiver on 127.0.0.1: how long the agent has been failing, what to open first (an automation's
failed steps, an ACC run's log), times in the display time zone, the host that sent it."""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from watcher import logs
from watcher.app import App
from watcher.config import Settings, SourceConfig, SubscriptionConfig
from watcher.events import Event
from watcher.messages import Display, Templates
from watcher.runs import Outcome
from watcher_sim import AccWorld, AutomationWorld, make_acc_app, make_automation_app
from watcher_sim.acc_model import FAILED, SUCCEEDED

from .conftest import FakeClock, make_settings, source_config
from .test_notify import Mailbox

HOST = socket.gethostname()
FOOTER = f"Sent by watcher on {HOST}"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, str]]:
    """A real SMTP server on 127.0.0.1, and the apprise URL that mails to it."""
    box = Mailbox()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, f"mailto://127.0.0.1:{port}?from=watcher@example.com&to=oncall@example.com"
    finally:
        controller.stop()


@pytest.fixture(autouse=True)
def no_apprise_throttle(monkeypatch) -> None:
    """apprise spaces out sends per channel (5.5 s for email); its own tests turn that off."""
    from apprise.plugins.base import NotifyBase

    monkeypatch.setattr(NotifyBase, "request_rate_per_sec", 0)


@pytest.fixture
def clock() -> FakeClock:
    """Noon UTC and a quarter second: times with microseconds, as platforms report them."""
    return FakeClock(datetime(2026, 11, 23, 12, 0, 0, 250000, tzinfo=UTC))


@pytest.fixture
async def hooks(aiohttp_server) -> tuple[list[dict], str]:
    """A webhook receiver: the JSON bodies it got, and its host:port."""
    got: list[dict] = []

    async def handle(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    return got, f"{server.host}:{server.port}"


def alerting(settings: Settings, *urls: str, zone: str = "UTC") -> Settings:
    settings.watcher = settings.watcher.model_copy(update={"display_timezone": zone})
    settings.subscriptions = [SubscriptionConfig(name="ops", urls=list(urls))]  # type: ignore[arg-type]
    return settings


def body_of(mail: str) -> list[str]:
    """The lines of a mail's body (after the subject line), without trailing blanks."""
    return mail.replace("\r\n", "\n").split("\n", 1)[1].rstrip().splitlines()


async def test_failures_in_a_row_since_when_in_the_display_timezone(
    world, smtp, hooks, clock: FakeClock, tmp_path: Path, cloud_url, http
) -> None:
    box, mail_url = smtp
    got, host = hooks
    world.add_agent(id=2537, name="steam")
    world.add_run(2537, status=10, run_id=100)  # history: its last success, at 12:00 UTC
    settings = alerting(make_settings(tmp_path, source_config(cloud_url)), mail_url,
                        f"webhook+http://{host}/hook", zone="Europe/Berlin")  # fmt: skip
    async with App(settings, clock=clock, http=http) as app:
        await app.once()
        for run_id in (101, 102):
            clock.advance(3600)
            world.add_run(2537, status=6, run_id=run_id, message="Timeout waiting for page")
            await app.once()
    first, second = (body_of(m) for m in box.texts())
    assert first[:3] == [
        "Timeout waiting for page",
        "",
        "First failure; last success 2026-11-23 13:00 CET",
    ]
    assert second[2] == (
        "2 failures in a row since 2026-11-23 14:00 CET (1h 0m); last success 2026-11-23 13:00 CET"
    )
    assert "Ended: 2026-11-23 15:00:00 CET (0s)" in second  # 14:00:00.25 UTC: no microseconds
    assert not any(".25" in line for line in second)
    assert second[-1] == FOOTER
    hook = got[1]
    assert hook["failures_in_a_row"] == 2 and hook["failing_since"].startswith("2026-11-23T13:00")
    assert hook["message"].splitlines() == second


async def test_an_acc_failure_opens_with_its_log(
    smtp, clock: FakeClock, tmp_path: Path, aiohttp_server, http
) -> None:
    box, mail_url = smtp
    acc = AccWorld(now=clock, tokens={"acc-token-0123456789"})
    acc.add_agent("sequentum/Test2/quick", agent_id="a2f22850-7c88-4e05-a30a-004aa980ee6c")
    acc.add_run("a2f22850-7c88-4e05-a30a-004aa980ee6c", SUCCEEDED)
    server = await aiohttp_server(make_acc_app(acc), host="127.0.0.1")
    source = SourceConfig(name="acc", kind="sequentum_acc", base_url=str(server.make_url("")),
                          api_key="acc-token-0123456789", agents=["sequentum/Test2/quick"],
                          jitter=0, retries=0)  # fmt: skip
    async with App(
        alerting(make_settings(tmp_path, source), mail_url), clock=clock, http=http
    ) as app:
        await app.once()
        clock.advance(60)
        run = acc.add_run("a2f22850-7c88-4e05-a30a-004aa980ee6c", FAILED, message="Agent crashed")
        await app.once()
    (mail,) = box.texts()
    lines = body_of(mail)
    assert lines[0] == f"Log: {run.logPath}" and run.logPath
    assert lines[2] == "Agent crashed"
    assert sum(line.startswith("Log: ") for line in lines) == 1
    assert lines[-1] == FOOTER


async def test_an_automation_failure_opens_with_its_failed_step(
    smtp, hooks, clock: FakeClock, tmp_path: Path, aiohttp_server, http
) -> None:
    box, mail_url = smtp
    got, host = hooks
    world = AutomationWorld(now=clock, api_keys={"automation-key-0123456789"})
    world.add_automation("prices", "Price monitor")
    world.add_run("prices", "succeeded")
    server = await aiohttp_server(make_automation_app(world), host="127.0.0.1")
    source = source_config(str(server.make_url("")).rstrip("/"), name="automation",
                           kind="automation_runs", api_key="automation-key-0123456789")  # fmt: skip
    settings = alerting(make_settings(tmp_path, source), mail_url, f"webhook+http://{host}/x")
    async with App(settings, clock=clock, http=http) as app:
        await app.once()
        world.add_run("prices", "failed", failed_step="parse", error="HTTP 500 from upstream")
        clock.advance(15)
        await app.once()
    (mail,) = box.texts()
    opening = ["Failed steps:", "- parse (Parse listing): HTTP 500 from upstream", ""]
    assert body_of(mail)[:3] == opening
    (hook,) = got
    assert hook["message"].splitlines()[:3] == opening
    assert hook["failed_steps"] == [["parse", "Parse listing", "HTTP 500 from upstream"]]


def failure(**data: object) -> Event:
    return Event(id="e", type="run.finished", ts=datetime(2026, 11, 23, 12, tzinfo=UTC),
                 source="cloud", source_kind="sequentum_cloud", agent_id="2537", run_id="9",
                 outcome=Outcome.FAILURE, data=tuple(data.items()))  # fmt: skip


def test_user_templates_may_use_the_new_helpers() -> None:
    sub = SubscriptionConfig(
        name="ops",
        urls=["json://127.0.0.1:9/x"],  # type: ignore[list-item]
        title="{{ agent }}: {{ event.failures_in_a_row }} in a row",
        body="{{ streak }} | {{ when(event.failing_since) }} | {{ host }}",
    )
    display = Display(ZoneInfo("America/New_York"), "box-1")
    event = failure(failures_in_a_row=4, failing_since="2026-11-22T23:30:00.123Z",
                    last_success=None)  # fmt: skip
    message = Templates(sub.title, sub.body, display).render(event, "ops")
    assert message.title == "2537: 4 in a row"
    assert message.body == (
        "4 failures in a row since 2026-11-22 18:30 EST (12h 30m); no success on record"
        " | 2026-11-22 18:30:00 EST | box-1"
    )


def test_run_failures_log_at_warning_source_failures_at_error() -> None:
    source_failed = Event(id="s", type="source.failed", ts=failure().ts, source="cloud",
                          source_kind="sequentum_cloud", message="HTTP 401")  # fmt: skip
    stream = io.StringIO()
    logs.configure("json", "info", stream)
    try:
        for event in (failure(), replace(failure(), outcome=Outcome.SUCCESS), source_failed):
            logs.log_event(event)
    finally:
        logs.configure("json", "info", io.StringIO())
    levels = [json.loads(line)["level"] for line in stream.getvalue().splitlines()]
    assert levels == ["warning", "info", "error"]
    assert logs.level_of(replace(failure(), outcome=Outcome.STOPPED)) == logging.INFO
