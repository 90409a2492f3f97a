"""The structured webhook (webhook+http://) against a real HTTP receiver on 127.0.0.1: the event
as JSON, signed, with a delivery id that a retry keeps; digests; permanent and passing errors."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from watcher import logs
from watcher.app import App
from watcher.config import SubscriptionConfig
from watcher.messages import Message
from watcher.sinks.alerting import Subscription
from watcher.sinks.base import DeliveryError
from watcher.sinks.webhook import WebhookChannel

from .conftest import FakeClock, make_settings, source_config

SECRET = "whsec-canary-0123456789"
TOKEN = "tok-canary-9876543210"
LINK = "https://dashboard.sequentum.com/agents/{agent_id}/runs/{run_id}"


class Receiver:
    """Keeps every POST — path, headers, raw body — and answers with the next of `answers`
    (200 once they run out), after `delay` seconds."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        self.answers: list[int] = []
        self.delay = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append((request.path_qs, dict(request.headers), await request.read()))
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.answers.pop(0) if self.answers else 200
        return web.Response(status=status, text="ok" if status < 300 else "no")

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, _, body in self.posts]


@pytest.fixture
async def receiver(aiohttp_server) -> tuple[Receiver, str]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", rec.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    return rec, str(server.make_url("")).rstrip("/").removeprefix("http://")


@pytest.fixture
def steam(world):
    world.add_agent(id=2537, name="steam")
    world.add_run(2537, status=9, run_id=100)
    return world


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "webhook.secret"
    path.write_text(SECRET + "\n")
    return path


@pytest.fixture
def build(tmp_path, cloud_url, clock, http):
    def make(*subs: SubscriptionConfig) -> App:
        settings = make_settings(tmp_path, source_config(cloud_url, dashboard_url=LINK))
        settings.subscriptions = list(subs)
        return App(settings, clock=clock, http=http)

    return make


def hook(host: str, path: str = "hook", **kw: object) -> SubscriptionConfig:
    return SubscriptionConfig(name="ops", urls=[f"webhook+http://{host}/{path}"], **kw)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def events_of(tmp_path: Path, type: str) -> list[dict]:
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["type"] == type]


async def test_a_failure_posts_the_event_signed(
    steam, build, receiver, secret_file, clock: FakeClock
) -> None:
    rec, host = receiver
    async with build(hook(host, secret_file=secret_file)) as app:
        await app.once()
        steam.add_run(2537, status=6, run_id=101, message="Timeout waiting for page to load")
        clock.advance(15)
        await app.once()
    ((path, headers, raw),) = rec.posts
    body = json.loads(raw)
    assert path == "/hook" and headers["Content-Type"] == "application/json"
    assert (body["agent_id"], body["run_id"], body["outcome"]) == ("2537", "101", "failure")
    assert body["url"] == "https://dashboard.sequentum.com/agents/2537/runs/101"
    assert body["type"] == "run.finished" and body["source"] == "cloud"
    assert body["subscription"] == "ops" and body["failures_in_a_row"] == 1
    assert body["title"] == "❌ steam (2537) failed (run 101)"
    assert body["message"].startswith("Timeout waiting for page to load\n")
    assert body["platform_message"] == "Timeout waiting for page to load"
    assert headers["X-Watcher-Event"] == "run.finished"
    expected = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Watcher-Signature"], f"sha256={expected}")
    assert len(headers["X-Watcher-Delivery"]) == 36


async def test_without_a_secret_there_is_no_signature(
    steam, build, receiver, clock: FakeClock
) -> None:
    rec, host = receiver
    async with build(hook(host)) as app:
        await app.once()
        steam.add_run(2537, status=6, run_id=101)
        clock.advance(15)
        await app.once()
    ((_, headers, _),) = rec.posts
    assert "X-Watcher-Signature" not in headers


async def test_a_retry_carries_the_same_delivery_id(
    steam, build, receiver, clock: FakeClock, tmp_path: Path
) -> None:
    rec, host = receiver
    rec.answers = [503]
    async with build(hook(host)) as app:
        await app.once()
        steam.add_run(2537, status=6, run_id=101)
        clock.advance(15)
        await app.once()
        assert len(rec.posts) == 1 and app.store is not None and app.store.outbox_depth() == 1
        clock.advance(600)
        assert app.dispatcher is not None
        await app.dispatcher.drain()
        await app.dispatcher.drain()  # the notification.sent event, to the events file
    first, retry = rec.posts
    assert first[1]["X-Watcher-Delivery"] == retry[1]["X-Watcher-Delivery"]
    assert first[2] == retry[2]
    (sent,) = events_of(tmp_path, "notification.sent")
    assert sent["channel"] == f"webhook+http://{host}/hook"


@pytest.mark.parametrize("status", [429, 500, 502])
async def test_throttled_or_broken_receivers_are_retried(
    steam, build, receiver, clock: FakeClock, tmp_path: Path, status: int
) -> None:
    rec, host = receiver
    rec.answers = [status]
    async with build(hook(host)) as app:
        await app.once()
        steam.add_run(2537, status=6, run_id=101)
        clock.advance(15)
        await app.once()
        clock.advance(600)
        assert app.dispatcher is not None
        await app.dispatcher.drain()
        await app.dispatcher.drain()  # the notification.sent event, to the events file
        assert app.store is not None and app.store.outbox_depth() == 0
    assert len(rec.posts) == 2
    assert events_of(tmp_path, "notification.failed") == []
    assert len(events_of(tmp_path, "notification.sent")) == 1


@pytest.mark.parametrize("status", [400, 404, 410, 301])
async def test_other_answers_are_given_up_at_once(
    steam, build, receiver, clock: FakeClock, tmp_path: Path, status: int
) -> None:
    rec, host = receiver
    rec.answers = [status]
    async with build(hook(host)) as app:
        await app.once()
        steam.add_run(2537, status=6, run_id=101)
        steam.add_run(2537, status=6, run_id=102)
        clock.advance(15)
        await app.once()
        assert app.dispatcher is not None
        await app.dispatcher.drain()
        assert app.store is not None and app.store.outbox_depth() == 0
    assert len(rec.posts) == 2  # the other event of the batch still went out
    (failed,) = events_of(tmp_path, "notification.failed")
    assert failed["error"].startswith(f"webhook+http://{host}/hook: HTTP {status}")
    assert len(events_of(tmp_path, "notification.sent")) == 1


async def test_a_burst_posts_a_digest_with_the_events(
    world, build, receiver, clock: FakeClock
) -> None:
    rec, host = receiver
    for agent in range(1, 8):
        world.add_agent(id=agent, name=f"agent-{agent}")
    async with build(hook(host)) as app:
        await app.once()
        for agent in range(1, 8):
            world.add_run(agent, status=6, run_id=1000 + agent)
        clock.advance(60)
        await app.once()
    ((_, headers, raw),) = rec.posts
    body = json.loads(raw)
    assert headers["X-Watcher-Event"] == "digest"
    assert (body["type"], body["subscription"], body["part"], body["parts"]) == (
        "digest",
        "ops",
        1,
        1,
    )
    assert body["title"] == "watcher: 7 events for ops (7 failures)"
    assert sorted(e["run_id"] for e in body["events"]) == [str(1000 + a) for a in range(1, 8)]
    assert all(e["type"] == "run.finished" and e["outcome"] == "failure" for e in body["events"])
    assert LINK.format(agent_id=3, run_id=1003) in body["message"]  # the link in each line
    assert body["message"].endswith(f"\n\nSent by watcher on {socket.gethostname()}")


async def test_the_url_token_and_the_secret_never_appear(
    steam, build, receiver, secret_file, clock: FakeClock, tmp_path: Path
) -> None:
    rec, host = receiver
    rec.answers = [503, 503]
    stream = io.StringIO()
    logs.configure("json", "debug", stream)
    sub = hook(host, f"hook?token={TOKEN}", secret_file=secret_file, max_age=60)
    try:
        async with build(sub) as app:
            await app.once()
            steam.add_run(2537, status=6, run_id=101)
            clock.advance(15)
            await app.once()
            clock.advance(120)
            assert app.dispatcher is not None
            await app.dispatcher.drain()
            await app.dispatcher.drain()
    finally:
        logs.configure("json", "info", io.StringIO())
    assert rec.posts[0][0] == f"/hook?token={TOKEN}"  # sent where configured, token and all
    text = stream.getvalue() + (tmp_path / "events.jsonl").read_text()
    assert "delivery failed" in text
    (failed,) = events_of(tmp_path, "notification.failed")
    assert failed["channel"] == f"webhook+http://{host}/hook"
    assert TOKEN not in text and SECRET not in text


async def test_a_receiver_that_does_not_answer_in_time_is_retried(receiver, clock) -> None:
    rec, host = receiver
    rec.delay = 0.5
    sub = Subscription(hook(host))
    channel = WebhookChannel(sub, f"webhook+http://{host}/slow", clock=clock, timeout=0.05)
    with pytest.raises(DeliveryError) as caught:
        await channel.send_message(Message(title="t", body="b"))
    assert caught.value.retryable
    assert str(caught.value) == f"webhook+http://{host}/slow: no answer within 0.05 s"


async def test_nobody_listening_is_retried(clock) -> None:
    channel = WebhookChannel(Subscription(hook("127.0.0.1:9")), "webhook+http://127.0.0.1:9/x",
                             clock=clock)  # fmt: skip
    ok, why = await channel.send_test()
    assert not ok and why.startswith("webhook+http://127.0.0.1:9/x: ")


async def test_notify_test_posts_a_test_to_the_webhook(receiver, tmp_path: Path, capsys) -> None:
    from watcher.cli import main

    rec, host = receiver
    config = tmp_path / "watcher.toml"
    config.write_text(
        f'[watcher]\nstate_path = "{tmp_path / "state.db"}"\nevents_path = ""\n'
        '[[sources]]\nname = "cloud"\nkind = "sequentum_cloud"\n'
        'base_url = "http://127.0.0.1:9"\napi_key = "k-123456"\n'
        f'[[subscriptions]]\nname = "ops"\nurls = ["webhook+http://{host}/hook?token={TOKEN}"]\n'
        'secret_file = "webhook.secret"\n'
    )
    (tmp_path / "webhook.secret").write_text(SECRET)
    # The command runs its own event loop, in a thread; this loop serves the receiver.
    assert await asyncio.to_thread(main, ["--config", str(config), "notify-test"]) == 0
    assert capsys.readouterr().out == f"ok   ops: webhook+http://{host}/hook\n"
    ((_, headers, raw),) = rec.posts
    assert headers["X-Watcher-Event"] == "test" and json.loads(raw)["type"] == "test"
    assert (
        headers["X-Watcher-Signature"]
        == "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    )


def readme_receiver(secret_path: Path, port: int) -> str:
    """The receiver of the README's "Structured webhooks", its secret file and port changed."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Structured webhooks", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert '"/etc/receiver/webhook.secret"' in code and "8080" in code
    return code.replace('"/etc/receiver/webhook.secret"', repr(str(secret_path))).replace(
        "8080", str(port)
    )


async def test_the_readme_receiver_accepts_what_watcher_signs(
    tmp_path: Path, secret_file: Path, clock
) -> None:
    port = free_port()
    code = readme_receiver(secret_file, port)
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        url = f"webhook+http://127.0.0.1:{port}/hook"
        signed = WebhookChannel(Subscription(hook("x", secret_file=secret_file)), url, clock=clock)
        for _ in range(100):  # until it listens
            ok, why = await signed.send_test()
            if ok or "HTTP" in why:
                break
            await asyncio.sleep(0.05)
        assert ok, why
        other = tmp_path / "other.secret"
        other.write_text("not-the-secret")
        forged = WebhookChannel(Subscription(hook("x", secret_file=other)), url, clock=clock)
        with pytest.raises(DeliveryError) as caught:
            await forged.send_message(Message(title="t", body="b"))
        assert "HTTP 401" in str(caught.value) and not caught.value.retryable
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    (line,) = out.decode().splitlines()
    assert line.endswith(" test None") and len(line.split()[0]) == 36
