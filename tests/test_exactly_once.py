"""Every alert once, across processes: one writer per state file, `since` kept across
restarts and `watcher once`, a bounded shutdown whatever a channel does, and a state file
removed under a running daemon. Real `python -m watcher` processes and real signals; the
simulator and the webhook receivers run in threads of the test process, on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from watcher.store import Store
from watcher_sim import AutomationWorld, World

from .conftest import served_in_a_thread
from .processes import (
    KEY,
    Daemon,
    Receiver,
    events,
    of_type,
    subscription,
    watcher,
    watchers,
    write_config,
)

FAILURE, SUCCESS = 6, 10
LISTING = "/api/v1/agent/all"


@pytest.fixture
def sim() -> Iterator[tuple[World, str]]:
    """The simulated Cloud: agent 2537 with one finished run."""
    world = World()
    world.api_keys = {KEY}
    world.add_agent(id=2537, name="steam")
    world.add_run(2537, status=SUCCESS, run_id=100)
    with served_in_a_thread(world) as url:
        yield world, url


def listings(world: World) -> int:
    """How many agent listings the simulator has answered (one per poll of a `*` source)."""
    return sum(1 for _, path in world.requests if path.startswith(LISTING))


def baselined(daemon: Daemon, events_path: Path) -> None:
    """Wait until the daemon's first poll is in the events file."""
    daemon.wait_for(lambda: of_type(events_path, "source.baselined"), "the baseline")


# --- one writer ---------------------------------------------------------------------------


def test_a_second_writer_is_refused_and_every_failure_alerted_once(sim, tmp_path: Path) -> None:
    world, url = sim
    state, events_path = tmp_path / "state.db", tmp_path / "events.jsonl"
    with Receiver(delay=0.5) as hook:
        config = write_config(tmp_path, url, subscription(hook.host))
        daemon = Daemon(config)
        try:
            baselined(daemon, events_path)
            runs = [world.add_run(2537, status=FAILURE).id for _ in range(8)]
            daemon.wait_for(lambda: hook.got, "the first alert")  # the rest are on their way
            refused = f"watcher: state file {state} is in use by another watcher "
            refused += f"(pid {daemon.proc.pid})"
            for other in watchers(config, ["run"], ["once"], ["once"]):
                assert (other.returncode, other.stdout) == (1, ""), other.stderr
                assert other.stderr.splitlines() == [refused]
            daemon.wait_for(lambda: len(hook.got) >= len(runs), "every alert", timeout=30)
            assert daemon.stop() < 10
        finally:
            daemon.kill()
    assert daemon.proc.returncode == 0
    assert sorted(hook.titles()) == sorted(f"{run}|failure" for run in runs)
    sent = [e["run_id"] for e in of_type(events_path, "notification.sent")]
    assert sorted(sent) == sorted(str(run) for run in runs)
    assert len(of_type(events_path, "run.finished")) == len(runs)
    assert not daemon.trouble()


# --- since ----------------------------------------------------------------------------------


def add_agent_with_history(world: World) -> tuple[int, int]:
    """A new agent whose history holds a failure from an hour ago and one that ends now:
    (the old run's id, the new one's)."""
    world.add_agent(id=3000, name="newcomer")
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    old = world.add_finished_run(3000, FAILURE, created=hour_ago, seconds=60)
    new = world.add_run(3000, status=FAILURE)
    return old.id, new.id


def assert_only_the_later_failure(tmp_path: Path, hook: Receiver, old: str, new: str) -> None:
    events_path = tmp_path / "events.jsonl"
    finished = of_type(events_path, "run.finished")
    assert [e["run_id"] for e in finished] == [new]
    assert hook.titles() == [f"{new}|failure"]
    assert [e["run_id"] for e in of_type(events_path, "notification.sent")] == [new]
    store = Store.open(tmp_path / "state.db", readonly=True)
    try:
        runs = store.load_runs("cloud")
    finally:
        store.close()
    agent = next(a for a in runs if a not in ("2537", "*"))
    assert set(runs[agent]) == {old, new}  # the older failure recorded, quietly


def test_a_new_agent_after_once_alerts_only_what_finished_since(sim, tmp_path: Path) -> None:
    world, url = sim
    with Receiver() as hook:
        config = write_config(tmp_path, url, subscription(hook.host))
        first = watcher(config, "once")
        assert first.returncode == 0, first.stderr
        old, new = add_agent_with_history(world)
        second = watcher(config, "once")
        assert second.returncode == 0, second.stderr
    assert_only_the_later_failure(tmp_path, hook, str(old), str(new))


def test_a_new_agent_after_a_restart_alerts_only_what_finished_since(sim, tmp_path: Path) -> None:
    world, url = sim
    events_path = tmp_path / "events.jsonl"
    with Receiver() as hook:
        config = write_config(tmp_path, url, subscription(hook.host))
        daemon = Daemon(config)
        try:
            baselined(daemon, events_path)
            assert daemon.stop() < 10
            old, new = add_agent_with_history(world)
            daemon = Daemon(config)
            daemon.wait_for(lambda: hook.got, "the alert")
            seen = listings(world)
            daemon.wait_for(lambda: listings(world) >= seen + 2, "two more polls")
            assert daemon.stop() < 10
        finally:
            daemon.kill()
    assert_only_the_later_failure(tmp_path, hook, str(old), str(new))
    assert not daemon.trouble()


def test_an_automation_first_seen_alerts_only_what_finished_since(tmp_path: Path) -> None:
    world = AutomationWorld(api_keys=[KEY])
    world.add_automation("sync", "Invoice sync")
    world.add_run("sync", "succeeded")
    events_path = tmp_path / "events.jsonl"
    with served_in_a_thread(world) as url, Receiver() as hook:  # type: ignore[arg-type]
        tail = subscription(hook.host)
        config = write_config(tmp_path, url, tail, kind="automation_runs", name="automation")
        first = watcher(config, "once")
        assert first.returncode == 0, first.stderr
        world.add_automation("leads", "Lead enrichment")
        hour_ago = datetime.now(UTC) - timedelta(hours=1)
        old = world.add_run("leads", "failed", created=hour_ago)
        new = world.add_run("leads", "failed")
        second = watcher(config, "once")
        assert second.returncode == 0, second.stderr
    finished = of_type(events_path, "run.finished")
    assert [(e["agent_id"], e["run_id"]) for e in finished] == [("leads", new.id)]
    assert hook.titles() == [f"{new.id}|failure"]
    store = Store.open(tmp_path / "state.db", readonly=True)
    try:
        assert set(store.load_runs("automation")["leads"]) == {old.id, new.id}
    finally:
        store.close()


def known_agents(state: Path) -> set[str]:
    store = Store.open(state, readonly=True)
    try:
        return store.known_agents("cloud")
    finally:
        store.close()


def test_a_new_agent_between_two_agent_lists_alerts_its_failure(sim, tmp_path: Path) -> None:
    """An agent created between two reads of the agent listing, whose run ends before the
    next: its failure is news (it counts from the last complete listing that lacked it)."""
    world, url = sim
    with Receiver() as hook:
        config = write_config(tmp_path, url, subscription(hook.host))
        config.write_text(config.read_text().replace("poll_interval = 1\n", "poll_interval = 3\n"))
        daemon = Daemon(config)
        try:
            baselined(daemon, tmp_path / "events.jsonl")
            seen = listings(world)
            daemon.wait_for(lambda: listings(world) > seen, "a fresh agent list")
            world.add_agent(id=3000, name="newcomer")  # the next poll still uses the old list
            run = world.add_run(3000, status=FAILURE).id
            daemon.wait_for(lambda: "3000" in known_agents(tmp_path / "state.db"), "the agent")
            assert daemon.stop() < 10  # delivers what is due before it exits
        finally:
            daemon.kill()
    assert hook.titles() == [f"{run}|failure"]


def test_a_retry_out_when_the_daemon_is_killed_is_never_sent_again(sim, tmp_path: Path) -> None:
    """kill -9 while the platform has the retry request: done or not, nobody knows, so the
    next start marks it unknown and asks nothing again — a retried crawl is not run twice."""
    world, url = sim
    start = "/api/v1/agent/2537/start"
    world.inject(start, kind="stall", delay=3, times=1)  # the request stays out a while
    events_path = tmp_path / "events.jsonl"
    rule = '\n[[rules]]\nname = "again"\nretry = { max = 2, after = "1s", on = ["failure"] }\n'
    config = write_config(tmp_path, url, rule)

    def posts() -> int:
        return sum(1 for method, path in world.requests if method == "POST" and path == start)

    daemon = Daemon(config)
    try:
        baselined(daemon, events_path)
        world.add_run(2537, status=FAILURE, run_id=101)
        daemon.wait_for(lambda: posts() == 1, "the retry request")
        daemon.kill()  # SIGKILL, with the request out
    finally:
        daemon.kill()
    again = Daemon(config)
    try:
        seen = listings(world)
        again.wait_for(lambda: listings(world) >= seen + 5, "five more polls")
        assert again.stop() < 10
    finally:
        again.kill()
    assert posts() == 1
    store = Store.open(tmp_path / "state.db", readonly=True)
    try:
        (row,) = store.retries("cloud")
    finally:
        store.close()
    assert (row.run_id, row.try_, row.state) == ("101", 1, "unknown")
    assert len(of_type(events_path, "run.retry_requested", run_id="101")) == 1


# --- bounded shutdown ----------------------------------------------------------------------


def test_sigterm_while_a_channel_hangs_exits_in_time_and_alerts_once_later(
    sim, tmp_path: Path
) -> None:
    world, url = sim
    events_path = tmp_path / "events.jsonl"
    with Receiver(hold_first=60) as hook:  # the first request waits a minute for its answer
        config = write_config(tmp_path, url, subscription(hook.host))  # shutdown_timeout 10
        daemon = Daemon(config)
        try:
            baselined(daemon, events_path)
            run = world.add_run(2537, status=FAILURE).id
            daemon.wait_for(lambda: hook.got, "the alert, held by the channel")
            took = daemon.stop(timeout=20)
        finally:
            daemon.kill()
        assert daemon.proc.returncode == 0
        assert took < 12, f"took {took:.1f}s to stop"
        assert daemon.logged("deliveries abandoned at the deadline; they stay in the outbox")
        assert not daemon.trouble()
        assert not of_type(events_path, "notification.sent")

        again = Daemon(config)  # the channel answers at once now
        try:
            again.wait_for(lambda: of_type(events_path, "notification.sent"), "the alert again")
            seen = listings(world)
            again.wait_for(lambda: listings(world) >= seen + 2, "two more polls")
            assert again.stop() < 10
        finally:
            again.kill()
    assert again.proc.returncode == 0
    assert hook.titles() == [f"{run}|failure"] * 2  # the abandoned send, and once more
    assert [e["run_id"] for e in of_type(events_path, "notification.sent")] == [str(run)]
    assert [e["run_id"] for e in of_type(events_path, "run.finished")] == [str(run)]
    assert not again.trouble()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_stop_while_a_poll_waits_on_its_platform_is_clean(
    sig: signal.Signals, sim, tmp_path: Path
) -> None:
    world, url = sim
    daemon = Daemon(write_config(tmp_path, url))
    try:
        baselined(daemon, tmp_path / "events.jsonl")
        stall = world.inject(LISTING, kind="stall", delay=3)
        daemon.wait_for(lambda: stall.hits, "a poll waiting on the listing")
        took = daemon.stop(sig=sig)
    finally:
        daemon.kill()
    assert daemon.proc.returncode == 0
    assert took < 4, f"took {took:.1f}s to stop"  # the poll's grace is 2 s
    assert daemon.logged(
        "a poll still waiting on its platform was abandoned; nothing of it was written"
    )
    assert not daemon.trouble()
    assert daemon.lines[-1]["event"] == "watcher stopped"


# --- the state file removed under a running daemon ------------------------------------------


def test_state_files_removed_while_running_are_written_back_and_alert_once(
    sim, tmp_path: Path
) -> None:
    world, url = sim
    state, events_path = tmp_path / "state.db", tmp_path / "events.jsonl"
    with Receiver() as hook:
        config = write_config(tmp_path, url, subscription(hook.host))
        daemon = Daemon(config)
        try:
            baselined(daemon, events_path)
            removed = sorted(p.name for p in tmp_path.glob("state.db*"))
            assert {"state.db", "state.db-wal", "state.db-shm", "state.db.lock"} <= set(removed)
            for path in tmp_path.glob("state.db*"):
                path.unlink()
            run = world.add_run(2537, status=FAILURE).id
            daemon.wait_for(lambda: of_type(events_path, "notification.sent"), "the alert")
            daemon.wait_for(lambda: of_type(events_path, "state.restored"), "state.restored")
            refused = watcher(config, "once")  # the lease was taken again, on a new lock file
            assert refused.returncode == 1
            assert refused.stderr.endswith(f"another watcher (pid {daemon.proc.pid})\n")
            assert daemon.stop() < 10
        finally:
            daemon.kill()
        assert daemon.proc.returncode == 0
        assert state.exists()
        [error] = daemon.at_level("error")
        assert error["event"] == "state file removed or replaced while running; writing it back"
        assert len(daemon.logged("state.restored")) == 1
        assert len(of_type(events_path, "state.restored")) == 1
        assert not [line for line in daemon.trouble() if line is not error]

        again = Daemon(config)
        try:
            seen = listings(world)
            again.wait_for(lambda: listings(world) >= seen + 3, "three polls after the restart")
            assert again.stop() < 10
        finally:
            again.kill()
    assert again.proc.returncode == 0
    assert hook.titles() == [f"{run}|failure"]
    assert [e["run_id"] for e in of_type(events_path, "run.finished")] == [str(run)]
    assert [e["run_id"] for e in of_type(events_path, "notification.sent")] == [str(run)]
    assert not again.trouble()
    assert len(events(events_path)) == len({e["id"] for e in events(events_path)})


def test_an_old_copy_put_in_place_while_running_is_moved_aside_and_nothing_alerts_twice(
    sim, tmp_path: Path
) -> None:
    world, url = sim
    state, events_path = tmp_path / "state.db", tmp_path / "events.jsonl"
    with Receiver() as hook:
        config = write_config(tmp_path, url, subscription(hook.host))
        daemon = Daemon(config)
        try:
            baselined(daemon, events_path)
            backup = tmp_path / "backup.db"
            live, copy = sqlite3.connect(state), sqlite3.connect(backup)
            with contextlib.closing(live), contextlib.closing(copy):
                live.backup(copy)
            first = str(world.add_run(2537, status=FAILURE).id)
            daemon.wait_for(
                lambda: of_type(events_path, "notification.sent", run_id=first), "the first alert"
            )
            os.replace(backup, state)  # last night's copy, put back by hand
            second = str(world.add_run(2537, status=FAILURE).id)
            daemon.wait_for(
                lambda: of_type(events_path, "notification.sent", run_id=second), "the second"
            )
            assert daemon.stop() < 10
        finally:
            daemon.kill()
        assert daemon.proc.returncode == 0
        [restored] = of_type(events_path, "state.restored")
        aside = Path(restored["moved_aside"])
        assert aside.parent == tmp_path and aside.name.startswith("state.db.replaced-")
        assert aside.exists()

        again = Daemon(config)
        try:
            seen = listings(world)
            again.wait_for(lambda: listings(world) >= seen + 3, "three polls after the restart")
            assert again.stop() < 10
        finally:
            again.kill()
    assert sorted(hook.titles()) == sorted([f"{first}|failure", f"{second}|failure"])
    finished = sorted(e["run_id"] for e in of_type(events_path, "run.finished"))
    assert finished == sorted([first, second])
    assert not again.trouble()
