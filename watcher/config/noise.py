"""The noise-control keys of a subscription, and durations as people write them.

`NoiseKeys` is a base of `SubscriptionConfig`: mute windows in a time zone, what a mute does,
streaks (`after`, `repeat`) and flap detection. What they mean is in `watcher.noise`; here they
are only checked, so that a bad window or zone is one line naming its key at load.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_core import InitErrorDetails

from watcher.config.problems import problem, problem_detail, validate_reporting_all
from watcher.durations import parse_duration
from watcher.noise.windows import parse_window, zone


def _seconds(value: Any) -> Any:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        try:
            return parse_duration(value)
        except ValueError as err:
            raise problem(str(err)) from None
    return value


Duration = Annotated[float, BeforeValidator(_seconds)]
"""Seconds, written "90s", "15m", "2h", "1d" or as a number of seconds."""


class NoiseKeys(BaseModel):
    """What keeps a subscription's channels quiet when nobody needs to hear (`watcher.noise`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    mute: list[str] = Field(default_factory=list)
    """Windows in which the subscription is not alerted: "Sat-Sun", "22:00-07:00",
    "Mon-Fri 22:00-07:00" (a range crossing midnight belongs to the day it starts on)."""
    timezone: str = "UTC"
    """The IANA time zone of the mute windows ("Europe/Berlin")."""
    mute_action: Literal["delay", "drop"] = "delay"
    """delay: alerts inside a window wait for its end, then go as one digest; drop: they are
    not sent (`notification.suppressed`, reason "muted")."""
    after: int | None = Field(default=None, ge=1)
    """Alert an agent's failures only from the Nth in a row on; a streak is then alerted once
    (and again per `repeat`), its recovery only if the streak reached N. None: every failure."""
    repeat: Duration | None = Field(default=None, gt=0)
    """While an agent keeps failing, alert its streak again at most this often; the failures in
    between are suppressed (reason "repeat"). None: once per streak (with `after`)."""
    flap_threshold: int | None = Field(default=None, ge=2)
    """An agent whose outcomes alternate between failure and success this many times within
    `flap_window` is flapping: one `agent.flapping` message, then its alerts are held until a
    whole `flap_window` passes without a change, and go out as one digest. None: off."""
    flap_window: Duration = Field(default=3600.0, gt=0)

    @field_validator("mute", mode="before")
    @classmethod
    def _check_windows(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value  # "must be a list"
        problems: list[InitErrorDetails] = []
        for index, text in enumerate(value):
            try:
                parse_window(text)
            except ValueError as err:
                problems.append(problem_detail((index,), str(err)))
        return validate_reporting_all("mute", lambda: value, problems)

    @field_validator("timezone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        try:
            zone(value)
        except ValueError as err:
            raise problem(str(err)) from None
        return value

    @property
    def streaks(self) -> bool:
        """Are failures alerted as streaks (`after` or `repeat` set) rather than one by one?"""
        return self.after is not None or self.repeat is not None
