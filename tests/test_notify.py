"""Alerts end to end: the simulator → watcher → a real SMTP server, webhook and Slack receiver."""

from __future__ import annotations

import asyncio
import email
import io
import json
import socket
from collections.abc import Iterator
from email import policy
from pathlib import Path

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from watcher import logs
from watcher.app import App
from watcher.config import Settings, SubscriptionConfig
from watcher_sim import AutomationWorld, make_automation_app

from .conftest import FakeClock, make_settings, source_config

SLACK_TOKENS = ("T1JJ3T3L2", "A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7FQ")
SMTP_PASSWORD = "smtp-pass-canary-77"


class Mailbox:
    """An aiosmtpd handler that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's hook name
        msg = email.message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append(msg)  # type: ignore[arg-type]
        return "250 OK"

    def texts(self) -> list[str]:
        out = []
        for msg in self.messages:
            part = msg.get_body(preferencelist=("plain", "html"))
            out.append(f"{msg['subject']}\n{part.get_content() if part else ''}")
        return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, str]]:
    box = Mailbox()
    port = _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    url = f"mailto://127.0.0.1:{port}?from=watcher@example.com&to=oncall@example.com"
    try:
        yield box, url
    finally:
        controller.stop()


class Receiver:
    """A local HTTP receiver for webhooks (apprise json://) and Slack; it can be taken down."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        self.down = False
        self.accept: int | None = None  # accept this many more posts, then go down

    async def handle(self, request: web.Request) -> web.Response:
        if self.accept is not None:
            self.down = self.accept <= 0
            self.accept -= 1
        if self.down:
            return web.Response(status=503, text="down for maintenance")
        self.posts.append((request.path, await request.json()))
        return web.Response(text="ok")

    def bodies(self, prefix: str = "/") -> list[dict]:
        return [body for path, body in self.posts if path.startswith(prefix)]


@pytest.fixture
async def receiver(aiohttp_server, monkeypatch) -> tuple[Receiver, str]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", rec.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    base = str(server.make_url("")).rstrip("/")
    from apprise.plugins.slack import NotifySlack

    # apprise's Slack plugin posts to this class attribute: point it at the local receiver.
    monkeypatch.setattr(NotifySlack, "webhook_url", f"{base}/services")
    return rec, base


@pytest.fixture(autouse=True)
def no_apprise_throttle(monkeypatch) -> None:
    """apprise spaces out sends per channel (5.5 s for email); its own tests turn that off."""
    from apprise.plugins.base import NotifyBase

    monkeypatch.setattr(NotifyBase, "request_rate_per_sec", 0)


def subscription(name: str, *urls: str, **kw: object) -> SubscriptionConfig:
    return SubscriptionConfig(name=name, urls=list(urls), **kw)  # type: ignore[arg-type]


def with_subs(settings: Settings, *subs: SubscriptionConfig) -> Settings:
    settings.subscriptions = list(subs)
    return settings


def events_of(tmp_path: Path, type: str | None = None) -> list[dict]:
    path = tmp_path / "events.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return [e for e in lines if type is None or e["type"] == type]


@pytest.fixture
def steam(world):
    world.add_agent(id=2537, name="steam")
    world.add_agent(id=1596, name="amazon-prices")
    world.add_run(2537, status=9, run_id=100)
    return world


@pytest.fixture
def build(tmp_path, cloud_url, clock, http):
    def make(*subs: SubscriptionConfig) -> App:
        source = source_config(
            cloud_url,
            dashboard_url="https://dashboard.sequentum.com/agents/{agent_id}/runs/{run_id}",
        )
        return App(with_subs(make_settings(tmp_path, source), *subs), clock=clock, http=http)

    return make


async def test_failure_reaches_email_webhook_and_slack_once(
    steam, build, smtp, receiver, clock: FakeClock, tmp_path: Path
) -> None:
    box, mail_url = smtp
    rec, base = receiver
    slack_url = "slack://{}/{}/{}/#ops".format(*SLACK_TOKENS)
    hook_url = f"json://{base.removeprefix('http://')}/hook"
    ops = subscription("ops", mail_url, hook_url, slack_url, on=["failure"])
    async with build(ops) as app:
        await app.once()  # baseline: nothing to say
        steam.add_run(2537, status=6, run_id=101, message="Timeout waiting for page to load")
        clock.advance(15)
        await app.once()
        clock.advance(15)
        await app.once()  # nothing new: nothing more is sent

    (mail,) = box.texts()
    for needle in ("steam (2537)", "101", "Failure", "failure", "Timeout waiting for page",
                   "https://dashboard.sequentum.com/agents/2537/runs/101"):  # fmt: skip
        assert needle in mail, needle
    assert "Possible causes" in mail  # the Cloud diagnostics of the failed run

    (hook,) = rec.bodies("/hook")
    assert "steam (2537)" in hook["title"] and "Failure" in hook["message"]
    assert hook["type"] == "failure"

    (slack,) = rec.bodies("/services")
    path = next(p for p, _ in rec.posts if p.startswith("/services"))
    assert path == "/services/{}/{}/{}".format(*SLACK_TOKENS)
    assert slack["channel"] == "#ops"
    text = json.dumps(slack)
    assert "steam (2537)" in text and "101" in text

    sent = events_of(tmp_path, "notification.sent")
    assert len(sent) == 3 and {e["event_type"] for e in sent} == {"run.finished"}
    assert all(SLACK_TOKENS[2] not in e["channel"] for e in sent)
    # ids hash what happened (and where it was sent): the same bytes across versions, or a
    # replay after an upgrade would look new
    (to_slack,) = [e for e in sent if e["channel"].startswith("slack://")]
    assert (to_slack["event_id"], to_slack["id"]) == (
        "997256fb918dfc794d56a28c",
        "eb946bb78d87fdf8b3f91936",
    )


@pytest.fixture
async def automation(aiohttp_server, clock: FakeClock) -> tuple[AutomationWorld, str]:
    world = AutomationWorld(now=clock, api_keys={"automation-key-0123456789"})
    world.add_automation("prices", "Price monitor")
    world.add_run("prices", "succeeded")  # history, baselined quietly
    server = await aiohttp_server(make_automation_app(world), host="127.0.0.1")
    return world, str(server.make_url("")).rstrip("/")


async def test_an_automation_failure_names_its_failed_steps_in_every_channel(
    automation, smtp, receiver, clock: FakeClock, http, tmp_path: Path
) -> None:
    world, url = automation
    box, mail_url = smtp
    rec, base = receiver
    source = source_config(url, name="automation", kind="automation_runs",
                           api_key="automation-key-0123456789")  # fmt: skip
    sub = subscription("ops", mail_url, f"json://{base.removeprefix('http://')}/hook")
    async with App(with_subs(make_settings(tmp_path, source), sub), clock=clock, http=http) as app:
        await app.once()
        world.add_run("prices", "failed", failed_step="parse", error="HTTP 500 from upstream")
        clock.advance(15)
        await app.once()
    steps = "Failed steps:\n- parse (Parse listing): HTTP 500 from upstream\n"
    (mail,) = box.texts()
    assert steps in mail.replace("\r\n", "\n")
    (hook,) = rec.bodies("/hook")
    assert steps in hook["message"]


async def test_filters_by_outcome_and_agent_glob(steam, build, receiver, clock: FakeClock) -> None:
    rec, base = receiver
    host = base.removeprefix("http://")
    failures = subscription("failures", f"json://{host}/failures", on=["failure"])
    successes = subscription("successes", f"json://{host}/successes", on=["success"])
    amazon = subscription("amazon", f"json://{host}/amazon", on=["failure", "success"],
                          agents=["amazon-*"])  # fmt: skip
    async with build(failures, successes, amazon) as app:
        await app.once()
        steam.add_run(2537, status=6, run_id=101)
        steam.add_run(1596, status=10, run_id=201)
        steam.add_run(1596, status=8, run_id=202)
        clock.advance(15)
        await app.once()
    assert [b["title"] for b in rec.bodies("/failures")] == ["❌ steam (2537) failed (run 101)"]
    assert [b["title"] for b in rec.bodies("/successes")] == [
        "✅ amazon-prices (1596) succeeded (run 201)"
    ]
    assert [b["title"] for b in rec.bodies("/amazon")] == [
        "✅ amazon-prices (1596) succeeded (run 201)"
    ]


async def test_recovered_is_the_first_success_after_failures(
    steam, build, receiver, clock: FakeClock
) -> None:
    rec, base = receiver
    sub = subscription("r", f"json://{base.removeprefix('http://')}/r", on=["recovered"])
    async with build(sub) as app:
        await app.once()
        for run_id, status in ((101, 10), (102, 6), (103, 6), (104, 10), (105, 10)):
            steam.add_run(2537, status=status, run_id=run_id)
            clock.advance(15)
            await app.once()
    assert [b["title"] for b in rec.bodies("/r")] == ["✅ steam (2537) recovered (run 104)"]


LINK = "https://dashboard.sequentum.com/agents/{0}/runs/{1}"


def add_fifty_agents(world) -> list[int]:
    """Fifty agents; the ids of the runs `add_fifty_runs` gives them."""
    for agent in range(1, 51):
        world.add_agent(id=agent, name=f"agent-{agent}")
    return list(range(1001, 1051))


def add_fifty_runs(world) -> None:
    for agent in range(1, 51):
        world.add_run(agent, status=6, run_id=1000 + agent, message=f"Timeout on page {agent}")


def listed_runs(messages: list[str]) -> list[str]:
    """The "run N · LINK" of every digest line, in the order they were sent."""
    return [
        line.split(": run ")[1]
        for text in messages
        for line in text.splitlines()
        if line.startswith("- ") and ": run " in line
    ]


async def test_fifty_failures_in_one_poll_make_a_digest_in_two_parts(
    world, build, smtp, receiver, clock: FakeClock, tmp_path: Path
) -> None:
    box, mail_url = smtp
    rec, base = receiver
    run_ids = add_fifty_agents(world)
    sub = subscription("ops", mail_url, f"json://{base.removeprefix('http://')}/hook")
    async with build(sub) as app:
        await app.once()
        add_fifty_runs(world)
        clock.advance(60)  # a minute on: the request budget lists all fifty in one cycle
        await app.once()
        assert app.dispatcher is not None
        await app.dispatcher.drain()  # the notification.sent events, to the events file
    first, second = rec.bodies("/hook")
    assert first["title"] == "watcher: 50 events for ops (50 failures), part 1/2"
    assert second["title"] == "watcher: 50 events for ops (50 failures), part 2/2"
    assert first["message"].count("\n- ") == 39 and second["message"].count("\n- ") == 9
    both = first["message"] + "\n" + second["message"]
    assert "more" not in both
    assert f"- ❌ agent-7 (7) failed: run 1007 — Timeout on page 7 · {LINK.format(7, 1007)}" in both
    expected = [f"{r} — Timeout on page {r - 1000} · {LINK.format(r - 1000, r)}" for r in run_ids]
    assert sorted(listed_runs([first["message"], second["message"]])) == sorted(expected)
    subjects = sorted(m["subject"] for m in box.messages)
    assert [s.rsplit(", ", 1)[1] for s in subjects] == ["part 1/2", "part 2/2"]
    assert sorted(listed_runs(box.texts())) == sorted(expected)
    sent = [e for e in events_of(tmp_path, "notification.sent") if "/hook" in e["channel"]]
    assert len(sent) == 50 and all(e["digest"] and e["parts"] == 2 for e in sent)
    assert sorted(e["part"] for e in sent) == [1] * 40 + [2] * 10


async def test_a_digest_that_fails_at_part_two_resends_only_part_two(
    world, build, receiver, clock: FakeClock, tmp_path: Path
) -> None:
    rec, base = receiver
    run_ids = add_fifty_agents(world)
    sub = subscription("ops", f"json://{base.removeprefix('http://')}/hook")
    async with build(sub) as app:
        await app.once()
        add_fifty_runs(world)
        rec.accept = 1  # part 1 goes out, part 2 fails
        clock.advance(60)  # a minute on: the request budget lists all fifty in one cycle
        await app.once()
        assert [b["title"][-8:] for b in rec.bodies("/hook")] == ["part 1/2"]
        rec.accept, rec.down = None, False
        clock.advance(3600)
        assert app.dispatcher is not None
        await app.dispatcher.drain()
        await app.dispatcher.drain()  # the notification.sent events, to the events file
    first, retry = rec.bodies("/hook")
    assert retry["title"] == "watcher: 10 events for ops (10 failures)"
    listed = [x.split(" ", 1)[0] for x in listed_runs([first["message"], retry["message"]])]
    assert sorted(listed) == sorted(str(r) for r in run_ids)  # each exactly once
    sent = events_of(tmp_path, "notification.sent")
    assert len({e["event_id"] for e in sent}) == 50
    assert sorted((e["part"], e["parts"]) for e in sent) == [(1, 1)] * 10 + [(1, 2)] * 40


async def test_a_channel_down_for_five_minutes_gets_everything_once(
    steam, build, smtp, receiver, clock: FakeClock, tmp_path: Path
) -> None:
    box, mail_url = smtp
    rec, base = receiver
    sub = subscription("ops", mail_url, f"json://{base.removeprefix('http://')}/hook",
                       on=["failure", "stopped"])  # fmt: skip
    async with build(sub) as app:
        await app.once()
        rec.down = True
        steam.add_run(2537, status=6, run_id=101)
        clock.advance(15)
        await app.once()
        assert len(box.messages) == 1  # email went out at once, not held back by the webhook
        for minute in range(5):
            steam.add_run(1596, status=8, run_id=300 + minute)
            clock.advance(60)
            await app.once()
        assert len(box.messages) == 6 and rec.posts == []
        rec.down = False
        clock.advance(600)
        assert app.dispatcher is not None
        await app.dispatcher.drain()
        await app.dispatcher.drain()
    titles = sorted(b["title"] for b in rec.bodies("/hook"))
    assert len(rec.bodies("/hook")) <= 6 and len(box.messages) == 6
    # Everything arrived once: individually, or (the backlog) in one digest.
    listed = " ".join(titles + [b["message"] for b in rec.bodies("/hook")])
    for run_id in ("101", "300", "301", "302", "303", "304"):
        assert listed.count(f"run {run_id}") == 1, run_id
    assert events_of(tmp_path, "notification.failed") == []


async def test_undelivered_alerts_survive_a_restart(
    steam, build, receiver, clock: FakeClock
) -> None:
    rec, base = receiver
    sub = subscription("ops", f"json://{base.removeprefix('http://')}/hook")
    async with build(sub) as app:
        await app.once()
        steam.add_run(2537, status=6, run_id=101)
        clock.advance(15)
        assert app.pollers[0] is not None
        await app.pollers[0].poll(force=True)  # committed, then "crash" before delivery
    assert rec.posts == []
    async with build(sub) as app:
        assert app.dispatcher is not None
        await app.dispatcher.drain()
        await app.once()
    assert len(rec.bodies("/hook")) == 1


async def test_given_up_after_max_age_with_notification_failed(
    steam, build, receiver, clock: FakeClock, tmp_path: Path
) -> None:
    rec, base = receiver
    rec.down = True
    sub = subscription("ops", f"json://{base.removeprefix('http://')}/hook", max_age=3600)
    async with build(sub) as app:
        await app.once()
        steam.add_run(2537, status=6, run_id=101)
        clock.advance(15)
        await app.once()
        clock.advance(3601)
        assert app.dispatcher is not None
        await app.dispatcher.drain()
        await app.dispatcher.drain()  # the notification.failed event itself, to the events file
        assert app.store is not None and app.store.outbox_depth() == 0
    (failed,) = events_of(tmp_path, "notification.failed")
    assert failed["run_id"] == "101" and failed["error"].startswith("json://127.0.0.1:")


async def test_channel_secrets_never_appear(
    steam, build, smtp, receiver, clock: FakeClock, tmp_path: Path
) -> None:
    stream = io.StringIO()
    logs.configure("json", "debug", stream)
    rec, _ = receiver
    rec.down = True
    _, mail_url = smtp
    slack_url = "slack://{}/{}/{}/#ops".format(*SLACK_TOKENS)
    bad_mail = mail_url.replace("mailto://", f"mailto://user:{SMTP_PASSWORD}@").replace(
        "127.0.0.1:", "127.0.0.1:1"
    )
    try:
        async with build(subscription("ops", slack_url, bad_mail)) as app:
            await app.once()
            steam.add_run(2537, status=6, run_id=101)
            clock.advance(15)
            await app.once()
    finally:
        logs.configure("json", "info", io.StringIO())
    text = stream.getvalue() + (tmp_path / "events.jsonl").read_text()
    assert "delivery failed" in text
    for secret in (*SLACK_TOKENS[1:], SMTP_PASSWORD):
        assert secret not in text, secret


async def test_user_templates(steam, build, receiver, clock: FakeClock) -> None:
    rec, base = receiver
    sub = subscription(
        "ops",
        f"json://{base.removeprefix('http://')}/hook",
        title="[{{ event.source }}] {{ event.agent_name }} → {{ event.outcome | upper }}",
        body="run {{ event.run_id }} took {{ duration or 'n/a' }}",
    )
    async with build(sub) as app:
        await app.once()
        steam.add_run(2537, status=6, run_id=101)
        clock.advance(15)
        await app.once()
    (hook,) = rec.bodies("/hook")
    assert hook["title"] == "[cloud] steam → FAILURE"
    assert hook["message"].startswith("run 101 took")


async def test_source_failed_and_recovered_alert_once(
    steam, build, receiver, clock: FakeClock
) -> None:
    rec, base = receiver
    sub = subscription("ops", f"json://{base.removeprefix('http://')}/hook",
                       on=["source.failed", "source.recovered"])  # fmt: skip
    async with build(sub) as app:
        await app.once()
        steam.api_keys = set()
        for _ in range(4):  # source.failed once it has failed for source_failed_after (3m)
            clock.advance(60)
            await app.once()
        steam.api_keys = {"sim-key-0123456789"}
        clock.advance(15)
        await app.once()
    titles = [b["title"] for b in rec.bodies("/hook")]
    assert titles == ["🔌 watcher cannot read cloud", "🔌 watcher reads cloud again"]


async def test_notify_test_reports_each_channel(steam, build, smtp, receiver) -> None:
    box, mail_url = smtp
    rec, base = receiver
    rec.down = True
    sub = subscription("ops", mail_url, f"json://{base.removeprefix('http://')}/hook")
    async with build(sub) as app:
        results = await asyncio.gather(*(c.send_test() for c in app.channels()))
    assert [ok for ok, _ in results] == [True, False]
    assert "[watcher test]" in box.messages[0]["subject"]


def test_notify_test_command(smtp, tmp_path: Path, capsys) -> None:
    from watcher.cli import main

    box, mail_url = smtp
    config = tmp_path / "watcher.toml"
    config.write_text(
        f"""
[watcher]
state_path = "{tmp_path / "state.db"}"
events_path = ""

[[sources]]
name = "cloud"
kind = "sequentum_cloud"
base_url = "http://127.0.0.1:9"
api_key = "k-123456"

[[subscriptions]]
name = "ops"
urls = ["{mail_url}", "json://127.0.0.1:9/dead"]

[[subscriptions]]
name = "quiet"
urls = ["json://127.0.0.1:9/other"]
"""
    )
    assert main(["--config", str(config), "notify-test", "--subscription", "ops"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ok   ops: mailto://127.0.0.1:")
    assert lines[1].startswith("FAIL ops: json://127.0.0.1:9/dead")
    assert len(lines) == 2 and len(box.messages) == 1
    assert main(["--config", str(config), "notify-test", "--subscription", "nope"]) == 2


async def test_fetched_outputs_can_be_alerted_with_their_paths(
    steam, build, receiver, clock: FakeClock, tmp_path: Path
) -> None:
    from watcher.config import OutputsConfig

    rec, base = receiver
    sub = subscription("data", f"json://{base.removeprefix('http://')}/hook",
                       on=["output.fetched"])  # fmt: skip
    app = build(sub)
    app.settings.outputs = OutputsConfig(enabled=True, dir=tmp_path / "out", on=["success"])
    async with app:
        await app.once()
        steam.add_run(2537, status=10, run_id=101)
        clock.advance(15)
        await app.once()
        assert app.dispatcher is not None
        for _ in range(3):  # the fetch, then the output.fetched event it records, then the alert
            await app.dispatcher.drain()
    (hook,) = rec.bodies("/hook")
    assert hook["title"].startswith("📦 steam (2537): outputs of run 101 fetched (")
    run_dir = tmp_path / "out" / "cloud" / "2537" / "101"
    assert str(run_dir) in hook["message"]
    assert (run_dir / "manifest.json").exists()


async def test_a_batch_that_fails_midway_resends_only_the_rest(
    steam, build, receiver, clock: FakeClock
) -> None:
    rec, base = receiver
    sub = subscription("ops", f"json://{base.removeprefix('http://')}/hook")
    async with build(sub) as app:
        await app.once()
        for run_id in (101, 102, 103):
            steam.add_run(2537, status=6, run_id=run_id)
        rec.accept = 2  # the third message of the batch fails
        clock.advance(15)
        await app.once()
        assert len(rec.bodies("/hook")) == 2
        rec.accept, rec.down = None, False
        clock.advance(3600)
        assert app.dispatcher is not None
        await app.dispatcher.drain()
    titles = [b["title"] for b in rec.bodies("/hook")]
    assert sorted(titles) == [f"❌ steam (2537) failed (run {r})" for r in (101, 102, 103)]
