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

from .conftest import make_settings, source_config

CANARY = "canary-9f8e7d6c5b4a"


@pytest.fixture
def captured_logs():
    stream = io.StringIO()
    logs.configure("json", "debug", stream)
    yield stream
    logs.configure("json", "info", io.StringIO())


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
    for where, content in [
        ("logs", text),
        ("errors", "\n".join(errors)),
        ("events", (tmp_path / "events.jsonl").read_text()),
        ("state", (tmp_path / "state.db").read_bytes().decode("latin-1")),
        ("wal", _read(tmp_path / "state.db-wal")),
    ]:
        assert CANARY not in content, f"secret leaked into {where}"


def _read(path: Path) -> str:
    return path.read_bytes().decode("latin-1") if path.exists() else ""


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
