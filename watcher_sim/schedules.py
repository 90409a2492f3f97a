"""When a simulated schedule fires: once, every N minutes/hours/days/weeks, or by cron.

Both the Cloud (`scheduleType` RunOnce, RunEvery, CRON) and the ACC (a cron expression and a
time zone, seed 004) keep their schedules' next run times with a `Recurrence`. Cron expressions
are the standard five fields, read in the schedule's time zone (so a daily 09:00 in New York
moves in UTC with daylight saving time), evaluated by `cronsim`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from watcher_sim.statuses import EveryPeriod, ScheduleType

_UNITS: tuple[tuple[EveryPeriod, timedelta], ...] = (
    (EveryPeriod.WEEKS, timedelta(weeks=1)),
    (EveryPeriod.DAYS, timedelta(days=1)),
    (EveryPeriod.HOURS, timedelta(hours=1)),
    (EveryPeriod.MINUTES, timedelta(minutes=1)),
)


def zone(name: str) -> tzinfo:
    """A time zone by its IANA name ("UTC" without needing the tz database)."""
    if name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


@dataclass(frozen=True, slots=True)
class Recurrence:
    """Fire at `start` and then every `every`; or, with `cron`, at each time the expression
    names in `timezone` (after `start`); with neither, once at `start`."""

    start: datetime
    every: timedelta | None = None
    cron: str | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.every is not None and self.cron is not None:
            raise ValueError("a schedule recurs by `every` or by `cron`, not both")
        if self.every is not None and (
            self.every < timedelta(minutes=1) or self.every % timedelta(minutes=1)
        ):
            raise ValueError("`every` is a whole number of minutes, at least one")
        local = zone(self.timezone)
        if self.cron is not None:
            try:
                CronSim(self.cron, self.start.astimezone(local))
            except CronSimError as exc:
                raise ValueError(f"invalid cron expression {self.cron!r}: {exc}") from None

    @property
    def kind(self) -> ScheduleType:
        if self.cron is not None:
            return ScheduleType.CRON
        return ScheduleType.RUN_EVERY if self.every is not None else ScheduleType.RUN_ONCE

    def every_count_and_period(self) -> tuple[int, EveryPeriod] | tuple[None, None]:
        """`every` as the Cloud's (runEveryCount, runEveryPeriod), in the largest whole unit."""
        if self.every is None:
            return None, None
        for period, unit in _UNITS:
            if not self.every % unit:
                return self.every // unit, period
        raise AssertionError("every is a whole number of minutes")

    def first(self) -> datetime | None:
        """The first time the schedule fires."""
        if self.cron is None:
            return self.start
        return self.next_after(self.start - timedelta(microseconds=1))

    def next_after(self, after: datetime) -> datetime | None:
        """The first firing strictly after `after`; None when there is none (a RunOnce that
        has fired)."""
        if self.cron is not None:
            local = after.astimezone(zone(self.timezone))
            return next(CronSim(self.cron, local)).astimezone(UTC)
        if after < self.start:
            return self.start
        if self.every is None:
            return None
        return self.start + (after - self.start) // self.every * self.every + self.every
