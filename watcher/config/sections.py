"""The `[watcher]` and `[http]` tables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator

from watcher import redact
from watcher.config.noise import Duration
from watcher.config.problems import DIGITS, problem, read_secret
from watcher.config.rules import duration


class WatcherSection(BaseModel):
    """The `[watcher]` table: where state and events go, how to log, how long shutdown may take."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    state_path: Path = Path("/var/lib/watcher/state.db")
    """The SQLite file with the last snapshot of every run and the event outbox."""
    events_path: Path | None = Path("/var/lib/watcher/events.jsonl")
    """The JSONL event log; None (an empty string in TOML or the environment) turns it off."""
    log_format: Literal["auto", "json", "console"] = "auto"
    """auto: console lines on a terminal, JSON otherwise."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_timeout: float = Field(default=10.0, gt=0)
    """Seconds in-flight work may take to finish after SIGTERM."""
    event_retention_days: float = Field(default=30.0, gt=0)
    """Delivered events older than this are forgotten by the state file (not the events file)."""
    source_failed_after: Duration = Field(default=180.0, ge=0)
    """A source failing for less than this (a blip) says nothing; `source.failed` once it has
    failed this long. The default of each source's own `source_failed_after`."""
    heartbeat_url: SecretStr | None = None
    """A dead man's switch (healthchecks.io, Cronitor): GET after each cycle in which every
    source polled successfully, at most once a minute."""
    heartbeat_fail_url: SecretStr | None = None
    """GET when a source is reported failed (`source.failed`); default: `heartbeat_url` +
    "/fail" (the healthchecks way)."""
    schedule_refresh: float = 600.0
    """Seconds between two reads of the platforms' own schedules (rules with
    `platform_schedules`)."""
    display_timezone: str = "UTC"
    """The IANA time zone ("Europe/Berlin") alerts show times in; events and logs stay UTC."""

    @field_validator("schedule_refresh", mode="before")
    @classmethod
    def _refresh_is_a_duration(cls, value: Any) -> Any:
        return duration(value)

    @field_validator("heartbeat_url", "heartbeat_fail_url", mode="before")
    @classmethod
    def _heartbeat_is_a_url(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str):
            parts = urlsplit(value.strip())
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise problem("not an http(s) URL")
            return value.strip()
        return value

    @field_validator("state_path", mode="before")
    @classmethod
    def _state_path_not_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise problem("must not be empty")
        return value

    @field_validator("events_path", mode="before")
    @classmethod
    def _empty_events_path_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("display_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        """Known to the time zone database (the system's, else the `tzdata` package): a typo
        is a config error at start-up, not a crash at the first alert."""
        try:
            ZoneInfo(value.strip())
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise problem('not a time zone: use an IANA name such as "Europe/Berlin"') from None
        return value.strip()

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


def parse_listen(value: str) -> tuple[str, int]:
    """Split "HOST:PORT" ("127.0.0.1:9465", "[::1]:9465", "0.0.0.0:9465"); raise ValueError
    unless the host is present and the port is 0-65535 (0: any free port)."""
    host, sep, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 host must be in brackets")
    if not sep or not host or re.search(r"[\s/\[\]]", host) or not DIGITS.fullmatch(port):
        raise ValueError("not HOST:PORT")
    if int(port) > 65535:
        raise ValueError("port out of range")
    return host, int(port)


def _read_token(path: Path) -> str:
    """The token in the file at `path`, registered as a secret; a problem naming the path if
    it cannot be read or is too short to be one."""
    token = read_secret(path)
    if len(token) < 16:
        raise problem(f"{path} must hold a token of 16 characters or more")
    redact.register(token)
    return token


class HttpSection(BaseModel):
    """The `[http]` table: the optional endpoint for health, readiness, metrics and events."""

    model_config = ConfigDict(extra="forbid")

    listen: str | None = None
    """"HOST:PORT" to serve /healthz, /readyz, /metrics and /events on; None (or "") is off."""
    token_file: Path | None = None
    """A file holding the bearer token that the writes of /api/silences require; without it
    the silences can be read over HTTP, not changed. Read when the config is loaded."""
    _token: str | None = PrivateAttr(default=None)

    @field_validator("listen", mode="before")
    @classmethod
    def _check_listen(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str):
            try:
                parse_listen(value)
            except ValueError:
                raise problem(
                    'must be "HOST:PORT" with a port 0-65535, e.g. "127.0.0.1:9465"'
                ) from None
            return value.strip()
        return value

    @field_validator("token_file")
    @classmethod
    def _check_token(cls, value: Path | None) -> Path | None:
        if value is not None:
            _read_token(value)
        return value

    def model_post_init(self, context: Any) -> None:
        if self.token_file is not None:
            self._token = _read_token(self.token_file)

    @property
    def token(self) -> str | None:
        """The bearer token read from `token_file` (None: none configured)."""
        return self._token

    @property
    def address(self) -> tuple[str, int] | None:
        return parse_listen(self.listen) if self.listen else None


# What an `[outputs]` table's `on` may name, and the file types its `type:` patterns may name.
