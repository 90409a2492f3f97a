"""Mute windows: what they cover and when they end, a table in a time zone with daylight saving
time; what a bad one says."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from watcher.noise.windows import Mute, parse_window

BERLIN = "Europe/Berlin"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("windows", "at", "until"),
    [
        # 2026-11-23 is a Monday; Berlin is UTC+1 in November.
        (["Sat-Sun"], "2026-11-28 10:00", "2026-11-29 23:00"),  # Saturday → Monday 00:00 local
        (["Sat-Sun"], "2026-11-27 22:59", None),  # Friday 23:59 local
        (["Sat-Sun"], "2026-11-27 23:00", "2026-11-29 23:00"),  # Saturday 00:00 local
        (["22:00-07:00"], "2026-11-23 21:30", "2026-11-24 06:00"),  # 22:30 local, crosses
        (["22:00-07:00"], "2026-11-24 05:59", "2026-11-24 06:00"),
        (["22:00-07:00"], "2026-11-24 06:00", None),
        (["Mon-Fri 22:00-07:00"], "2026-11-27 21:00", "2026-11-28 06:00"),  # Friday night
        (["Mon-Fri 22:00-07:00"], "2026-11-28 21:00", None),  # Saturday night is free
        (["Mon-Fri 22:00-07:00"], "2026-11-23 05:00", None),  # Monday morning: Sunday's night
        (["Mon-Fri 22:00-07:00", "Sat-Sun"], "2026-11-27 21:00", "2026-11-29 23:00"),  # chained
        (["Fri-Mon"], "2026-11-23 12:00", "2026-11-23 23:00"),  # a range over the weekend
        (["Tue,Thu 09:00-10:00"], "2026-11-26 08:30", "2026-11-26 09:00"),
        (["Thu 00:00-24:00"], "2026-11-26 08:30", "2026-11-26 23:00"),
    ],
)
def test_what_a_window_covers_and_when_it_ends(
    windows: list[str], at: str, until: str | None
) -> None:
    mute = Mute(windows, BERLIN)
    now = utc(at)
    assert mute.active(now) is (until is not None)
    assert mute.until(now) == (utc(until) if until else now)


def test_a_night_window_follows_daylight_saving_time() -> None:
    mute = Mute(["22:00-07:00"], BERLIN)
    # 2026-03-29: clocks go forward at 02:00 local; the night ends 07:00 CEST = 05:00 UTC.
    assert mute.until(utc("2026-03-28 22:00")) == utc("2026-03-29 05:00")
    # 2026-10-25: clocks go back; the night ends 07:00 CET = 06:00 UTC.
    assert mute.until(utc("2026-10-24 21:00")) == utc("2026-10-25 06:00")


def test_a_window_that_never_ends_is_checked_again_later() -> None:
    mute = Mute(["Mon-Sun"], "UTC")
    now = utc("2026-11-23 12:00")
    assert mute.active(now) and mute.until(now) > now


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Weekend", 'unknown day "weekend"'),
        ("Mon-", 'unknown day ""'),
        ("25:00-07:00", '"25:00-07:00": hours 00-23'),
        ("22:00-22:00", "starts when it ends"),
        ("22:00", "not a time range"),
        ("Mon 22:00-07:00 UTC", "not a mute window"),
        ("", "not a mute window"),
    ],
)
def test_a_bad_window_says_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_window(text)


def test_a_bad_window_or_zone_is_a_config_error_naming_its_key(tmp_path) -> None:
    from watcher.config import load_settings
    from watcher.errors import ConfigError

    config = tmp_path / "watcher.toml"
    config.write_text(
        '[[sources]]\nname = "cloud"\nkind = "sequentum_cloud"\nbase_url = "http://x"\n'
        'api_key = "k"\n[[subscriptions]]\nname = "ops"\nurls = ["json://localhost/x"]\n'
        'mute = ["Sat-Sun", "Sta"]\ntimezone = "Europe/Berln"\nrepeat = "often"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config, {})
    assert caught.value.problems == [
        'subscriptions[0].mute[1]: unknown day "sta" (Mon, Tue, Wed, Thu, Fri, Sat, Sun)',
        'subscriptions[0].timezone: unknown time zone "Europe/Berln" (an IANA name: '
        '"Europe/Berlin", "UTC")',
        'subscriptions[0].repeat: not a duration (write e.g. "90s", "15m", "2h" or "1d")',
    ]
