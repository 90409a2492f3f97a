"""The rules' judgements, pure: limits, anomalies, cron slots and their windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from watcher.config import Settings
from watcher.config.rules import RuleConfig
from watcher.errors import ConfigError
from watcher.rules import RuleBook, Success, anomalies, matches_agent, slots, started_for, stuck

T0 = datetime(2026, 11, 23, 12, tzinfo=UTC)


def rule(**fields: object) -> RuleConfig:
    return RuleConfig(name="r", **fields)  # type: ignore[arg-type]


def hist(*pairs: tuple[float | None, int | None]) -> list[Success]:
    return [Success(d, r) for d, r in pairs]


def test_the_first_matching_rule_applies() -> None:
    book = RuleBook(
        [
            RuleConfig(name="amazon", agents=["amazon-*"], max_duration=60),
            RuleConfig(name="cloud", sources=["cloud"], max_duration=120),
            RuleConfig(name="all", max_duration=180),
        ]
    )
    assert book.rule_for("cloud", "7", "Amazon-Prices").name == "amazon"  # type: ignore[union-attr]
    assert book.rule_for("cloud", "8", "steam").name == "cloud"  # type: ignore[union-attr]
    assert book.rule_for("acc", "8", "steam").name == "all"  # type: ignore[union-attr]
    assert matches_agent(["2537"], "2537", None) and not matches_agent(["25"], "2537", None)
    assert not RuleBook([])


@pytest.mark.parametrize(
    ("fields", "history", "ran", "expected"),
    [
        ({"max_duration": 7200}, [], 7199, None),
        ({"max_duration": 7200}, [], 7201, "max_duration 2h 0m"),
        # 3x the median (100 s) of the last successes: 300 s, shorter than 2 h
        (
            {"max_duration": 7200, "max_duration_factor": 3},
            [(90, 1), (100, 1), (110, 1)],
            301,
            "3x the median of 3 successes (1m 40s)",
        ),
        ({"max_duration_factor": 3}, [(90, 1), (100, 1)], 10_000, None),  # too little history
        ({}, [(90, 1)] * 5, 10**9, None),  # no limit configured
    ],
)
def test_when_a_run_is_stuck(
    fields: dict, history: list[tuple[float, int]], ran: float, expected: str | None
) -> None:
    limit = stuck(rule(**fields), T0, T0 + timedelta(seconds=ran), hist(*history))
    assert (limit.why if limit else None) == expected


def test_anomalies_of_a_success_and_of_any_finish() -> None:
    history = hist(*[(60, 1000 + i) for i in range(10)])
    r = rule(min_records=1, records_drop=0.5, max_errors=100)
    empty = anomalies(r, success=True, records=0, errors=0, history=history)
    assert [(a.check, a.value, a.threshold) for a in empty] == [
        ("min_records", 0, 1),
        ("records_drop", 0, 502.25),
    ]
    assert empty[1].history == "median 1,004 of the last 10 successes"
    assert anomalies(r, success=True, records=900, errors=0, history=history) == []
    noisy = anomalies(r, success=False, records=0, errors=101, history=history)
    assert [a.check for a in noisy] == ["max_errors"]  # a failure's records are no anomaly
    few = anomalies(r, success=True, records=10, errors=0, history=history[:2])
    assert [a.check for a in few] == []  # two successes are too few to judge a drop


def test_cron_slots_in_a_time_zone_across_a_daylight_saving_change() -> None:
    r = rule(schedule="0 2 * * *", timezone="Europe/Berlin")
    after = datetime(2026, 3, 27, 12, tzinfo=UTC)
    got = slots(r, after, after + timedelta(days=3))
    # 02:00 Berlin is 01:00 UTC in winter; on the 29th 02:00 does not exist (03:00 CEST).
    assert got == [
        datetime(2026, 3, 28, 1, tzinfo=UTC),
        datetime(2026, 3, 29, 1, tzinfo=UTC),
        datetime(2026, 3, 30, 0, tzinfo=UTC),
    ]
    assert slots(r, after, after) == [] and slots(rule(), after, after + timedelta(days=9)) == []


def test_a_start_counts_for_a_slot_from_a_minute_before_to_grace_after() -> None:
    slot = T0
    assert started_for(slot, 1800, [slot + timedelta(minutes=29)])
    assert started_for(slot, 1800, [slot - timedelta(seconds=30)])
    assert not started_for(slot, 1800, [slot + timedelta(minutes=31)])
    assert not started_for(slot, 1800, [slot - timedelta(minutes=5)])
    assert not started_for(slot, 1800, [])


@pytest.mark.parametrize(
    ("rules", "problem"),
    [
        ('[[rules]]\nname = "r"\nmax_duration = "2 hours"\n', "rules[0].max_duration: not a"),
        ('[[rules]]\nname = "r"\nschedule = "0 25 * * *"\n', "rules[0].schedule: not a cron"),
        ('[[rules]]\nname = "r"\ntimezone = "Berlin"\n', "rules[0].timezone: not a time zone"),
        ('[[rules]]\nname = "r"\ngrace = -5\n', "rules[0].grace: must not be negative"),
        (
            '[[rules]]\nname = "r"\nretry = { on = ["stopped"] }\n',
            'rules[0].retry.on: only "failure" can be retried',
        ),
        ('[[rules]]\nname = "r"\nsources = ["nope"]\n', 'rules[0].sources: unknown source "nope"'),
        ('[[rules]]\nname = "r"\n[[rules]]\nname = "r"\n', "rules[1].name: duplicate rule name"),
    ],
)
def test_bad_rules_are_one_line_naming_the_key(tmp_path, rules: str, problem: str) -> None:
    from watcher.config import load_settings

    path = tmp_path / "w.toml"
    path.write_text(
        '[[sources]]\nname = "cloud"\nkind = "sequentum_cloud"\nbase_url = "https://x"\n'
        'api_key = "k"\n' + rules
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    assert any(line.startswith(problem) for line in caught.value.problems), caught.value.problems


def test_durations_read_as_people_write_them() -> None:
    settings = Settings(
        rules=[{"name": "r", "max_duration": "90s", "grace": "15m", "retry": {"after": "1d"}}]
    )
    (r,) = settings.rules
    assert (r.max_duration, r.grace, r.retry.after) == (90, 900, 86400)  # type: ignore[union-attr]
