"""`[[rules]]`: what no status shows — stuck runs, missed schedules, suspicious "successes" —
and what to do about a failure (retry it). Matched like subscriptions (sources, agents by id,
name or glob); the first rule that matches an agent applies to it.

    [[rules]]
    name = "nightly"
    agents = ["amazon-*"]
    max_duration = "2h"          # run.stuck when pending or running longer
    max_duration_factor = 3      # … or longer than 3x the median of the last 10 successes
    schedule = "0 2 * * *"       # expected starts (cron) in `timezone`
    timezone = "Europe/Berlin"
    grace = "30m"                # agent.missed_schedule when no run started within grace
    platform_schedules = true    # also expect the platform's own schedules
    min_records = 1              # run.anomaly: a success with fewer records
    records_drop = 0.5           # run.anomaly: records below 0.5x the median of 10 successes
    max_errors = 100             # run.anomaly: a finished run with more errors
    retry = { max = 2, after = "5m", on = ["failure"] }
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from watcher.config.problems import problem, valid_name
from watcher.durations import parse_duration

RETRY_OUTCOMES = ("failure",)
"""What a retry may be asked for: never a stopped or skipped run (someone meant it)."""


def duration(value: Any) -> Any:
    """A duration key: "90s", "15m", "2h", "1d", or seconds."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as err:
        raise problem(str(err)) from None


def time_zone(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise problem('not a time zone (an IANA name like "Europe/Berlin" or "UTC")') from None
    return value


class RetryRule(BaseModel):
    """`retry = { max = 2, after = "5m", on = ["failure"] }`: ask the platform to run a failed
    run again, at most `max` times, `after` each failure."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max: int = Field(default=1, ge=1, le=10)
    after: float = Field(default=300.0, ge=0)
    on: list[str] = Field(default_factory=lambda: ["failure"])

    _after = field_validator("after", mode="before")(duration)

    @field_validator("on")
    @classmethod
    def _only_failures(cls, value: list[str]) -> list[str]:
        if not value or any(item not in RETRY_OUTCOMES for item in value):
            raise problem('only "failure" can be retried (never a stopped or skipped run)')
        return value


class RuleConfig(BaseModel):
    """One `[[rules]]` entry."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str
    sources: list[str] = Field(default_factory=list)
    """Only agents of these sources; empty means every source."""
    agents: list[str] = Field(default_factory=list)
    """Only these agents: ids, names or glob patterns; empty means every agent."""
    max_duration: float | None = None
    """Seconds a run may be pending or running before it is `run.stuck`."""
    max_duration_factor: float | None = Field(default=None, gt=1)
    """… or this many times the median duration of the agent's last 10 successes."""
    schedule: str | None = None
    """A cron expression (5 fields) of the starts to expect, in `timezone`."""
    timezone: str = "UTC"
    grace: float = 1800.0
    """Seconds after an expected start within which a run must have started."""
    platform_schedules: bool = False
    """Also expect the starts the platform's own (enabled) schedules announce."""
    min_records: int | None = Field(default=None, ge=0)
    """A success with fewer records than this is `run.anomaly`."""
    records_drop: float | None = Field(default=None, gt=0, lt=1)
    """A success with fewer records than this share of the median of the last 10 is
    `run.anomaly`."""
    max_errors: int | None = Field(default=None, ge=0)
    """A finished run with more errors than this is `run.anomaly`."""
    retry: RetryRule | None = None
    """Retry failures automatically (off unless set)."""

    _durations = field_validator("max_duration", "grace", mode="before")(duration)
    _zone = field_validator("timezone")(time_zone)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return valid_name(value)

    @field_validator("schedule")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            CronSim(value, datetime(2026, 1, 1, tzinfo=UTC))
        except (CronSimError, ValueError) as err:
            raise problem(f"not a cron expression ({err})") from None
        return value.strip()

    @field_validator("agents", mode="before")
    @classmethod
    def _agents_as_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        return value
