"""Noise control end to end, in one process: the simulated Cloud → watcher (an injected clock)
→ a real webhook receiver on 127.0.0.1. Silences, mute windows, streaks, flapping and
`source_failed_after`, each with what the events file and the metrics say about it."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from watcher.app import App
from watcher.config import HttpSection, SubscriptionConfig
from watcher.noise.silences import new_silence
from watcher.sources.http import HttpClient
from watcher.upkeep import settle
from watcher_sim import World

from .conftest import FakeClock, make_settings, source_config
from .processes import Receiver

FAILURE, SUCCESS = 6, 10
STEAM, AMAZON = 2537, 1596


@pytest.fixture(autouse=True)
def no_apprise_throttle(monkeypatch) -> None:
    """apprise spaces out sends per channel; its own tests turn that off."""
    from apprise.plugins.base import NotifyBase

    monkeypatch.setattr(NotifyBase, "request_rate_per_sec", 0)


@pytest.fixture
def fleet(world: World) -> World:
    world.add_agent(id=STEAM, name="steam")
    world.add_agent(id=AMAZON, name="amazon-prices")
    world.add_run(STEAM, status=SUCCESS, run_id=100)
    world.add_run(AMAZON, status=SUCCESS, run_id=200)
    return world


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def build(
    tmp_path: Path, cloud_url: str, clock: FakeClock, http: HttpClient, hook: Receiver
) -> Callable[..., App]:
    """An App whose one subscription "ops" alerts the receiver, one message per event (its
    title "RUN_ID|OUTCOME" or the event type), with the noise keys given."""

    def make(*, source: dict | None = None, listen: bool = False, **noise: object) -> App:
        settings = make_settings(tmp_path, source_config(cloud_url, **(source or {})))
        settings.subscriptions = [
            SubscriptionConfig(
                name="ops",
                urls=[f"json://{hook.host}/ops"],
                on=["failure", "recovered", "source.failed", "source.recovered"],
                group_threshold=1000,
                title="{{ event.run_id or event.type }}|{{ title_outcome }}",  # 101|failed
                **noise,  # type: ignore[arg-type]
            )
        ]
        if listen:
            settings.http = HttpSection(listen="127.0.0.1:0")
        return App(settings, clock=clock, http=http)

    return make


async def finish(app: App, world: World, clock: FakeClock, agent: int, status: int, run: int):
    """A run of `agent` finishes with `status`; a poll 15 s later sees it and delivers."""
    world.add_run(agent, status=status, run_id=run)
    clock.advance(15)
    await app.once()


def events_of(tmp_path: Path, type: str) -> list[dict]:
    path = tmp_path / "events.jsonl"
    return [e for e in map(json.loads, path.read_text().splitlines()) if e["type"] == type]


def samples(app: App) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from watcher.metrics import Metrics

    assert isinstance(app.metrics, Metrics)
    text = app.metrics.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# --- silences ------------------------------------------------------------------------------


async def test_a_silence_suppresses_what_it_matches_and_nothing_else(
    fleet, build, hook: Receiver, clock: FakeClock, tmp_path: Path
) -> None:
    async with build(listen=True) as app:
        await app.once()  # the baseline
        assert app.store is not None
        silence = new_silence(
            matchers={"agent": "AMAZON-*", "outcome": "failure"},
            duration="2h",
            comment="deploying the new parser",
            created_by="alice",
            now=clock(),
        )
        app.store.add_silence(silence)
        await finish(app, fleet, clock, AMAZON, FAILURE, 201)  # silenced
        await finish(app, fleet, clock, STEAM, FAILURE, 101)  # not matched: alerted
        await finish(app, fleet, clock, AMAZON, SUCCESS, 202)  # a recovery: not matched
        clock.advance(2 * 3600)  # the silence is over: nothing suppressed comes back
        await finish(app, fleet, clock, AMAZON, FAILURE, 203)
        metrics = samples(app)
    assert hook.titles() == ["101|failed", "202|recovered", "203|failed"]
    (suppressed,) = events_of(tmp_path, "notification.suppressed")
    assert suppressed["run_id"] == "201" and suppressed["reason"] == "silenced"
    assert suppressed["silence_id"] == silence.id and suppressed["subscription"] == "ops"
    assert "deploying the new parser" in suppressed["message"]
    assert [e["run_id"] for e in events_of(tmp_path, "run.finished")] == [
        "201",
        "101",
        "202",
        "203",
    ]  # the events file has every event, silenced or not
    key = (
        "watcher_notifications_suppressed_total",
        (("reason", "silenced"), ("subscription", "ops")),
    )
    assert metrics[key] == 1


async def test_a_silence_of_a_source_covers_its_source_events(
    fleet, build, hook: Receiver, clock: FakeClock, tmp_path: Path
) -> None:
    async with build(source={"source_failed_after": 0}) as app:
        await app.once()
        assert app.store is not None
        app.store.add_silence(
            new_silence(
                matchers={"source": "cloud"},
                duration="1h",
                comment="maintenance",
                created_by="bob",
                now=clock(),
            )
        )
        fleet.inject("*", kind="http", status=503, times=-1)  # the platform is down
        clock.advance(15)
        await app.once()
    assert hook.got == []
    (suppressed,) = events_of(tmp_path, "notification.suppressed")
    assert suppressed["event_type"] == "source.failed"


# --- mute windows ----------------------------------------------------------------------------


async def test_alerts_inside_a_mute_window_wait_for_its_end_and_go_as_one_digest(
    fleet, build, hook: Receiver, clock: FakeClock, tmp_path: Path
) -> None:
    # 12:00 UTC on a Monday is 13:00 in Berlin: inside "Mon 12:30-14:00".
    async with build(mute=["Mon 12:30-14:00"], timezone="Europe/Berlin") as app:
        await app.once()
        await finish(app, fleet, clock, STEAM, FAILURE, 101)
        await finish(app, fleet, clock, AMAZON, FAILURE, 201)
        assert hook.got == []
        assert app.store is not None
        [held] = app.store.held()
        assert (held.reason, held.count) == ("muted", 2)
        assert held.until == clock().replace(hour=13, minute=0, second=0).timestamp()
        clock.t = clock().replace(hour=13, minute=0, second=1)
        await settle(app)
        assert app.store.held() == []
    [digest] = hook.got
    body = digest[1]
    assert body["title"] == "watcher: 2 events for ops (2 failures)"
    assert "run 101" in body["message"] and "run 201" in body["message"]
    sent = events_of(tmp_path, "notification.sent")
    assert sorted(e["run_id"] for e in sent) == ["101", "201"] and all(e["digest"] for e in sent)


async def test_a_mute_window_with_drop_suppresses(
    fleet, build, hook: Receiver, clock: FakeClock, tmp_path: Path
) -> None:
    async with build(mute=["Mon"], mute_action="drop") as app:
        await app.once()
        await finish(app, fleet, clock, STEAM, FAILURE, 101)
        clock.t += timedelta(days=1)  # Tuesday: nothing comes back
        await settle(app)
        await finish(app, fleet, clock, STEAM, FAILURE, 102)
    assert hook.titles() == ["102|failed"]
    (suppressed,) = events_of(tmp_path, "notification.suppressed")
    assert (suppressed["run_id"], suppressed["reason"]) == ("101", "muted")
    assert "Mon (UTC)" in suppressed["message"]


# --- streaks ---------------------------------------------------------------------------------


async def test_after_three_alerts_once_on_the_third_failure_and_a_success_resets_it(
    fleet, build, hook: Receiver, clock: FakeClock, tmp_path: Path
) -> None:
    async with build(after=3) as app:
        await app.once()
        for run in (101, 102):
            await finish(app, fleet, clock, STEAM, FAILURE, run)
        await finish(app, fleet, clock, STEAM, SUCCESS, 103)  # reset: 2 failures, no alert
        for run in (104, 105, 106, 107):
            await finish(app, fleet, clock, STEAM, FAILURE, run)
        await finish(app, fleet, clock, STEAM, SUCCESS, 108)  # recovered from an alerted streak
    assert hook.titles() == ["106|failed", "108|recovered"]
    third = hook.got[0][1]["message"]
    assert "3 failures in a row since " in third
    reasons = {e["run_id"]: e["reason"] for e in events_of(tmp_path, "notification.suppressed")}
    assert reasons == {
        "101": "after",
        "102": "after",
        "103": "after",  # the recovery of a streak that was never alerted
        "104": "after",
        "105": "after",
        "107": "repeat",  # once per streak, without `repeat`
    }
    assert "recovered after 4 failures in a row" in hook.got[1][1]["message"]


async def test_repeat_re_alerts_a_streak_at_most_that_often(
    fleet, build, hook: Receiver, clock: FakeClock, tmp_path: Path
) -> None:
    async with build(repeat="1h") as app:
        await app.once()
        for run in range(101, 106):  # 15 s apart
            await finish(app, fleet, clock, STEAM, FAILURE, run)
        clock.advance(3600)
        await finish(app, fleet, clock, STEAM, FAILURE, 106)
    assert hook.titles() == ["101|failed", "106|failed"]
    assert "6 failures in a row since" in hook.got[1][1]["message"]
    assert "4 not sent since the last alert" in hook.got[1][1]["message"]
    suppressed = events_of(tmp_path, "notification.suppressed")
    assert [(e["run_id"], e["reason"]) for e in suppressed] == [
        (str(r), "repeat") for r in range(102, 106)
    ]


async def test_a_flapping_agent_is_said_once_and_summed_up_when_stable(
    fleet, build, hook: Receiver, clock: FakeClock, tmp_path: Path
) -> None:
    async with build(flap_threshold=3, flap_window="10m") as app:
        await app.once()
        await finish(app, fleet, clock, STEAM, FAILURE, 101)  # change 1: alerted
        await finish(app, fleet, clock, STEAM, SUCCESS, 102)  # change 2: recovered
        await finish(app, fleet, clock, STEAM, FAILURE, 103)  # change 3: flapping
        await finish(app, fleet, clock, STEAM, SUCCESS, 104)
        await finish(app, fleet, clock, STEAM, FAILURE, 105)
        await finish(app, fleet, clock, AMAZON, FAILURE, 201)  # another agent: as usual
        assert hook.titles() == [
            "101|failed",
            "102|recovered",
            "agent.flapping|agent.flapping",  # no run, no outcome: about the agent
            "201|failed",
        ]
        clock.advance(9 * 60)  # still within ten minutes of the last change: held
        await settle(app)
        assert len(hook.got) == 4
        clock.advance(2 * 60)
        await settle(app)
    summary = hook.got[4][1]
    assert summary["title"] == "watcher: 3 events for ops (2 failures, 1 success)"
    for run in ("103", "104", "105"):
        assert f"run {run}" in summary["message"]
    (flapping,) = events_of(tmp_path, "agent.flapping")
    assert flapping["agent_id"] == str(STEAM) and flapping["changes"] == 3
    assert "changed between failure and success 3 times within 10m" in hook.got[2][1]["message"]
    assert flapping["run_id"] is None and flapping["last_run_id"] == "103"


# --- sources ----------------------------------------------------------------------------------


async def test_a_source_down_for_a_minute_says_nothing_three_minutes_say_it_once(
    fleet, build, hook: Receiver, clock: FakeClock, tmp_path: Path
) -> None:
    async with build(source={"source_failed_after": "3m", "retries": 0}) as app:
        await app.once()
        fleet.inject("*", kind="http", status=503, times=-1)  # the platform is down
        for _ in range(4):  # 60 s down
            clock.advance(15)
            await app.once()
        fleet.clear_faults()
        clock.advance(15)
        await app.once()
        assert hook.got == [] and app.pollers[0].health.failing is False
        fleet.inject("*", kind="http", status=503, times=-1)  # the platform is down
        for _ in range(13):  # 3 min 15 s down
            clock.advance(15)
            await app.once()
        fleet.clear_faults()
        clock.advance(15)
        await app.once()
    assert hook.titles() == ["source.failed|source.failed", "source.recovered|source.recovered"]
    (failed,) = events_of(tmp_path, "source.failed")
    assert failed["message"].endswith("(failing for 3m 0s)")
    assert len(events_of(tmp_path, "source.recovered")) == 1


async def test_run_alerts_say_that_their_source_is_failing(
    fleet, build, hook: Receiver, clock: FakeClock
) -> None:
    async with build() as app:
        await app.once()
        fleet.inject(f"/api/v1/agent/{AMAZON}/runs", kind="http", status=500, times=-1)
        await finish(app, fleet, clock, STEAM, FAILURE, 101)
    (alert,) = hook.got
    assert "note: source cloud is failing since 2026-11-23T12:00:15Z" in alert[1]["message"]


async def test_a_held_alert_shows_in_status_and_metrics_and_a_new_config_decides_again(
    fleet, build, hook: Receiver, clock: FakeClock, tmp_path: Path
) -> None:
    from watcher.status_cli import print_view
    from watcher.view import of_app

    async with build(mute=["Mon"], listen=True) as app:
        await app.once()
        await finish(app, fleet, clock, STEAM, FAILURE, 101)
        assert app.store is not None and app.dispatcher is not None
        view = of_app(app)
        [held_row] = view["held"]
        assert held_row["channel"].startswith("ops: ")
        assert (held_row["count"], held_row["reason"]) == (1, "muted")
        assert held_row["until"] == "2026-11-24T00:00:00Z" and view["totals"]["held"] == 1
        out = io.StringIO()
        print_view(view, out)
        lines = out.getvalue().splitlines()
        assert "0 silence(s) active or pending; 1 alert(s) held" in lines
        table = lines[lines.index("0 silence(s) active or pending; 1 alert(s) held") + 2 :]
        assert table[0].split() == ["CHANNEL", "HELD", "WHY", "UNTIL"]
        assert table[1].split()[-3:] == ["1", "muted", "2026-11-24T00:00:00Z"]
        held = ("watcher_notifications_held", (("reason", "muted"), ("subscription", "ops")))
        assert samples(app)[held] == 1
        # A reload that drops the mute window: what the channel holds is decided again now.
        unmuted = app.settings.model_copy(deep=True)
        unmuted.subscriptions[0].mute = []
        [replacement] = app.channels(unmuted)
        app.dispatcher.add_sink(replacement)
        await settle(app)
        assert hook.titles() == ["101|failed"]
        assert samples(app).get(held, 0) == 0


async def test_the_alert_of_a_streak_that_failed_to_send_is_retried_not_repeated(
    fleet, build, hook: Receiver, clock: FakeClock, tmp_path: Path
) -> None:
    async with build(after=2) as app:
        await app.once()
        await finish(app, fleet, clock, STEAM, FAILURE, 101)
        hook.status = 500
        await finish(app, fleet, clock, STEAM, FAILURE, 102)  # the alert: its send fails
        hook.status = 200
        clock.advance(3600)
        await settle(app)  # retried: the same alert, not a repeat of it
    assert [t for t in hook.titles()] == ["102|failed", "102|failed"]
    assert [e["run_id"] for e in events_of(tmp_path, "notification.sent")] == ["102"]
    assert [e["run_id"] for e in events_of(tmp_path, "notification.suppressed")] == ["101"]


async def test_a_restart_in_an_outage_counts_from_when_it_began(
    fleet, build, hook: Receiver, clock: FakeClock, tmp_path: Path
) -> None:
    async with build(source={"retries": 0}) as app:  # the default: 3 minutes
        await app.once()
        fleet.inject("*", kind="http", status=503, times=-1)  # the platform is down
        clock.advance(60)
        await app.once()  # failing since 12:01
    clock.advance(60)
    async with build(source={"retries": 0}) as app:
        await app.once()  # 12:02, failing for a minute: nothing yet
        clock.advance(120)
        await app.once()  # 12:04, three minutes: said once
        clock.advance(60)
        await app.once()
    assert hook.titles() == ["source.failed|source.failed"]
    (failed,) = events_of(tmp_path, "source.failed")
    assert (failed["ts"], failed["failing_since"]) == (
        "2026-11-23T12:04:00Z",
        "2026-11-23T12:01:00Z",
    )


async def test_what_is_held_is_decided_again_at_start_by_the_rules_of_then(
    fleet, build, hook: Receiver, clock: FakeClock
) -> None:
    async with build(mute=["Mon"]) as app:
        await app.once()
        await finish(app, fleet, clock, STEAM, FAILURE, 101)
    assert hook.got == []
    async with build() as app:  # restarted without the mute window
        await settle(app)
    assert hook.titles() == ["101|failed"]
