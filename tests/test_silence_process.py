"""`watcher silence` beside a running daemon: real processes, the simulated Cloud and a webhook
receiver in threads of the test process, on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from watcher_sim import World

from .conftest import served_in_a_thread
from .processes import KEY, Daemon, Receiver, of_type, subscription, watcher, write_config

FAILURE = 6
STEAM, AMAZON = 2537, 1596


@pytest.fixture
def sim() -> Iterator[tuple[World, str]]:
    world = World()
    world.api_keys = {KEY}
    world.add_agent(id=STEAM, name="steam")
    world.add_agent(id=AMAZON, name="amazon-prices")
    world.add_run(STEAM, status=10, run_id=100)
    world.add_run(AMAZON, status=10, run_id=200)
    with served_in_a_thread(world) as url:
        yield world, url


def test_a_silence_added_while_the_daemon_runs_applies_survives_a_restart_and_expires(
    sim, tmp_path: Path
) -> None:
    world, url = sim
    events = tmp_path / "events.jsonl"

    def suppressed(run: int) -> list[dict]:
        return of_type(events, "notification.suppressed", run_id=str(run))

    with Receiver() as hook:
        config = write_config(tmp_path, url, subscription(hook.host))
        daemon = Daemon(config)
        try:
            daemon.wait_for(lambda: of_type(events, "source.baselined"), "the baseline")
            added = watcher(
                config, "silence", "add", "--agent", "amazon-*", "--outcome", "failure",
                "--for", "2h", "--comment", "new parser", "--by", "ci",
            )  # fmt: skip
            assert (added.returncode, added.stderr) == (0, "")
            silence_id = added.stdout.strip()
            # Right after the command returns: the daemon's next poll sees both failures.
            world.add_run(AMAZON, status=FAILURE, run_id=201)
            world.add_run(STEAM, status=FAILURE, run_id=101)
            daemon.wait_for(lambda: suppressed(201) and "101|failure" in hook.titles(), "201, 101")
            status = watcher(config, "status")
            assert "1 silence(s) active or pending; 0 alert(s) held" in status.stdout
            assert f"{silence_id}  active  agent=amazon-* outcome=failure" in status.stdout
            assert daemon.stop() < 10

            daemon = Daemon(config)  # a restart keeps the silence
            world.add_run(AMAZON, status=FAILURE, run_id=202)
            world.add_run(STEAM, status=FAILURE, run_id=102)
            daemon.wait_for(lambda: suppressed(202) and "102|failure" in hook.titles(), "202, 102")

            expired = watcher(config, "silence", "expire", silence_id[:8])
            assert (expired.returncode, expired.stdout) == (0, f"expired {silence_id}\n")
            world.add_run(AMAZON, status=FAILURE, run_id=203)
            daemon.wait_for(lambda: "203|failure" in hook.titles(), "alerting restored")
            listed = watcher(config, "silence", "list", "--json")
            assert daemon.stop() < 10
        finally:
            daemon.kill()
        titles = hook.titles()
    assert titles == ["101|failure", "102|failure", "203|failure"]  # 201, 202: never sent
    [only] = json.loads(listed.stdout)
    assert (only["id"], only["state"], only["created_by"]) == (silence_id, "expired", "ci")
    for run in (201, 202):
        [record] = suppressed(run)
        assert record["reason"] == "silenced" and record["silence_id"] == silence_id
    assert daemon.trouble() == []


def test_a_bad_silence_is_one_line_naming_the_option(sim, tmp_path: Path) -> None:
    _, url = sim
    config = write_config(tmp_path, url)
    cases = [
        (["--outcome", "failed", "--for", "1h"], "watcher: --outcome: must be one of success"),
        (["--agent", "x", "--for", "soon"], "watcher: --for: not a duration"),
        (["--agent", "x", "--for", "99999999999d"], "watcher: --for: too long"),
        (["--agent", "x", "--until", "2000-01-01T00:00:00Z"], "watcher: --until: must be after"),
        (["--for", "1h"], "watcher: --source/--agent/--outcome/--type: give at least one of"),
        (["--source", "acc", "--for", "1h"], 'watcher: --source: unknown source "acc"'),
    ]
    for options, line in cases:
        done = watcher(config, "silence", "add", *options, "--comment", "x")
        assert done.returncode == 2 and done.stdout == ""
        [said] = done.stderr.splitlines()
        assert said.startswith(line), said
    missing = watcher(config, "silence", "expire", "0123456789abcdef")
    assert missing.returncode == 1
    assert missing.stderr.startswith("watcher: silence 0123456789abcdef: no such silence")
    assert watcher(config, "silence", "list").stdout == "no silences\n"
