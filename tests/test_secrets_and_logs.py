"""Secrets never leave the process; log lines are JSON by default and readable on a console."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
import structlog

from watcher import logs
from watcher.app import App
from watcher_sim import AccWorld, AutomationWorld, make_acc_app, make_automation_app
from watcher_sim.acc_model import FAILED, RUNNING

from .conftest import make_settings, source_config
from .test_acc import GUID, PATH, acc_config
from .test_automation_runs import API, auto_config

CANARY = "canary-9f8e7d6c5b4a"


async def test_api_key_never_appears_anywhere_at_debug(
    world, cloud_url, clock, http, tmp_path: Path, captured_logs
) -> None:
    world.api_keys = {CANARY}
    world.add_agent(id=1, name="one")
    world.add_run(1, status=1, run_id=10)
    settings = make_settings(tmp_path, source_config(cloud_url, api_key=CANARY, retries=1))
    errors: list[str] = []
    async with App(settings, clock=clock, http=http) as app:
        await app.once()
        # A platform that echoes the credential back in its error body, a 401, HTML, a reset.
        world.inject("*", kind="http", status=500, body=json.dumps({"message": f"bad {CANARY}"}))
        world.inject("*", kind="http", status=401, times=1)
        world.inject("*", kind="html", times=1)
        world.inject("*", kind="reset", times=2)
        for _ in range(4):
            clock.advance(15)
            errors.extend(r.error_line or "" for r in await app.once())
        world.set_status(1, 10, 6)
        clock.advance(15)
        await app.once()
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            key = CANARY  # a local holding the secret must not reach a rendered traceback
            structlog.get_logger("test").exception("with traceback", note=len(key))
    text = captured_logs.getvalue()
    assert "HTTP 500" in text and "with traceback" in text
    assert any("***" in e for e in errors)  # the echoed key was masked, the rest kept
    _assert_nowhere(CANARY, tmp_path, text, errors)


def _assert_nowhere(secret: str, tmp_path: Path, logged: str, errors: list[str]) -> None:
    """The secret is in no log line, error line, event, state file or write-ahead log."""
    for where, content in [
        ("logs", logged),
        ("errors", "\n".join(errors)),
        ("events", (tmp_path / "events.jsonl").read_text()),
        ("state", (tmp_path / "state.db").read_bytes().decode("latin-1")),
        ("wal", _read(tmp_path / "state.db-wal")),
    ]:
        assert secret not in content, f"secret leaked into {where}"


def _read(path: Path) -> str:
    return path.read_bytes().decode("latin-1") if path.exists() else ""


@pytest.mark.parametrize("auth", ["x-api-key", "bearer"])
async def test_acc_and_automation_keys_never_appear_anywhere_at_debug(
    aiohttp_server, clock, http, tmp_path: Path, captured_logs, auth: str
) -> None:
    acc = AccWorld(now=clock, tokens={CANARY})
    acc.add_agent(PATH, agent_id=GUID)
    acc_run = acc.add_run(GUID, RUNNING)
    auto = AutomationWorld(now=clock, api_keys={CANARY}, bearer_tokens={CANARY})
    auto.add_automation("sync")
    auto_run = auto.add_run("sync", "running")
    urls = [
        str((await aiohttp_server(app, host="127.0.0.1")).make_url("")).rstrip("/")
        for app in (make_acc_app(acc), make_automation_app(auto))
    ]
    settings = make_settings(
        tmp_path,
        acc_config(urls[0], api_key=CANARY, retries=1, watch_jobs=True),
        auto_config(urls[1], api_key=CANARY, auth=auth, retries=1),
    )
    history = f"/api/agent/{GUID}/history"
    errors: list[str] = []
    async with App(settings, clock=clock, http=http) as app:
        await app.once()
        # A platform that echoes the credential in its error bodies, a 401, HTML, a reset...
        echo = json.dumps({"message": f"bad {CANARY}", "detail": f"bad {CANARY}"})
        for world in (acc, auto):
            world.inject("*", kind="http", status=500, body=echo)
            world.inject("*", kind="http", status=401, body=echo, times=1)
            world.inject("*", kind="html", times=1)
            world.inject("*", kind="reset", times=2)
        # ...and hostile answers that quote it where a parser complains, skips or reads it.
        quoted = f"login as {CANARY} refused"
        for body in (
            {"runs": {CANARY: CANARY}},
            [{"agentRunHistoryId": [CANARY]}, CANARY,
             {"agentRunHistoryId": "r1", "status": FAILED, "statusMessage": quoted,
              "logPath": CANARY}],
        ):  # fmt: skip
            acc.inject(history, kind="http", status=200, body=json.dumps(body))
        for body in (
            {CANARY: [CANARY]},
            {"items": [{"id": {CANARY: 1}}, CANARY,
                       {"id": "a1", "automationId": "sync", "status": "failed",
                        "error": {"message": quoted}}], "total": 3},
        ):  # fmt: skip
            auto.inject(API, kind="http", status=200, body=json.dumps(body))
        steps = {"steps": [{"key": CANARY, "name": CANARY, "status": "failed", "error": quoted}]}
        auto.inject(f"{API}/a1/steps", kind="http", status=200, body=json.dumps(steps))
        for _ in range(6):
            clock.advance(15)
            errors.extend(r.error_line or "" for r in await app.once())
        acc.set_status(acc_run.agentRunHistoryId, FAILED)
        auto.set_status(auto_run.id, "failed")
        clock.advance(15)
        assert all(r.ok for r in await app.once())
    text = captured_logs.getvalue()
    assert "HTTP 500" in text and "record skipped" in text
    said = "\n".join(errors)  # each answer reached the error lines, the credential masked
    for seen in ("HTTP 401 Unauthorized: bad ***", "expected JSON, got HTML",
                 "history: expected a list, got dict", "got dict with keys ['***']"):  # fmt: skip
        assert seen in said, seen
    assert sum(e.endswith("bad ***") for e in errors) == 4  # a 500 and a 401 from each
    events = (tmp_path / "events.jsonl").read_text()
    assert events.count("login as *** refused") >= 2  # the runs that quoted it, masked
    _assert_nowhere(CANARY, tmp_path, text, errors)


def test_settings_repr_hides_the_key(cloud_url="http://127.0.0.1:1") -> None:
    cfg = source_config(cloud_url, api_key=CANARY)
    assert CANARY not in repr(cfg) and CANARY not in str(cfg)
    assert cfg.secret() == CANARY


def test_json_lines_from_our_loggers_and_the_libraries() -> None:
    stream = io.StringIO()
    logs.configure("json", "info", stream)
    structlog.get_logger("watcher.test").info("hello", source="cloud")
    logging.getLogger("aiohttp.client").warning("library says %s", "hi")
    logging.getLogger("apprise").debug("would leak a webhook token")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["hello", "library says hi"]
    assert lines[0] | {"timestamp": None} == {
        "event": "hello",
        "source": "cloud",
        "level": "info",
        "logger": "watcher.test",
        "timestamp": None,
    }
    assert lines[1]["level"] == "warning" and lines[1]["logger"] == "aiohttp.client"


def test_console_format_is_readable() -> None:
    stream = io.StringIO()
    logs.configure("console", "info", stream)
    structlog.get_logger("watcher.events").info(
        "run.finished", id="abc", agent_name="steam", run_id="7", outcome="failure", phase="x"
    )
    line = stream.getvalue()
    assert "run.finished" in line and "agent_name=steam" in line and "outcome=failure" in line
    assert "id=abc" not in line and not line.lstrip().startswith("{")


def test_auto_format_is_json_when_not_a_tty() -> None:
    stream = io.StringIO()
    logs.configure("auto", "info", stream)
    structlog.get_logger("x").info("plain")
    assert json.loads(stream.getvalue())["event"] == "plain"
