"""One `[[subscriptions]]` entry: who is told about what, through which channels."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from watcher.config.noise import NoiseKeys
from watcher.config.problems import problem, problem_detail, read_secret, valid_name
from watcher.events import EventType

SUBSCRIPTION_OUTCOMES = ("failure", "stopped", "success", "skipped")
SUBSCRIPTION_EVENTS: tuple[str, ...] = (
    "recovered",  # not an event type: the first success of an agent after a failure
    EventType.RUN_REOPENED,
    EventType.RUN_WARNING,
    EventType.RUN_UNKNOWN_STATUS,
    EventType.RUN_DISCOVERED,
    EventType.SOURCE_FAILED,
    EventType.SOURCE_RECOVERED,
    EventType.OUTPUT_FETCHED,
    EventType.OUTPUT_FAILED,
    EventType.RUN_STUCK,
    EventType.AGENT_MISSED_SCHEDULE,
    EventType.RUN_ANOMALY,
    EventType.RUN_RETRY_REQUESTED,
    EventType.STATE_RESTORED,
)
"""What `on` names besides outcomes. The event types it leaves out are never asked for by
name: `run.finished` is named by its outcome, `agent.flapping` goes to the channel holding the
agent's alerts, the `notification.*` events are watcher's own bookkeeping about alerts, and
`source.baselined` and `run.status_changed` are recorded but never alerted."""


WEBHOOK_PREFIX = "webhook+"
"""`webhook+https://…` and `webhook+http://…` are watcher's own structured webhooks (the event
as JSON, signed); every other URL is apprise's."""


def is_webhook(url: str) -> bool:
    """Whether `url` is one of watcher's structured webhooks rather than an apprise URL."""
    return url.strip().lower().startswith(("webhook+https://", "webhook+http://"))


def _check_webhook_url(url: str) -> None:
    """Raise a problem unless `url` is webhook+http(s)://HOST[:PORT]/…, never echoing it."""
    parts = urlsplit(url[len(WEBHOOK_PREFIX) :])
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        raise problem("webhook URL: port out of range") from None
    if not parts.hostname:
        raise problem("not a usable webhook URL (webhook+https://HOST/PATH)")


def _check_apprise_url(url: str) -> None:
    """Raise a problem unless apprise can load `url`. The URL itself is never echoed — and
    apprise, which logs a URL it rejects verbatim (tokens and all), is silenced meanwhile."""
    import apprise

    apprise_log = logging.getLogger("apprise")
    was_disabled, apprise_log.disabled = apprise_log.disabled, True
    try:
        usable = apprise.Apprise().add(url)
    finally:
        apprise_log.disabled = was_disabled
    if not usable:
        raise problem("not a usable apprise URL (check its scheme and required parts)")


class SubscriptionConfig(NoiseKeys):
    """One `[[subscriptions]]` entry: who is told about what, through which channels (and,
    from `NoiseKeys`, when not to tell them)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str
    """Unique; appears in digests and in notification events."""
    urls: list[SecretStr] = Field(min_length=1)
    """apprise URLs (slack://…, mailto://…, json://…) and structured webhooks
    (webhook+https://…): one channel each. They hold tokens."""
    secret_file: Path | None = None
    """A file holding the secret that signs the bodies posted to this subscription's
    webhook+ URLs (`X-Watcher-Signature: sha256=<HMAC>`); read when the config loads."""
    on: list[str] = Field(default_factory=lambda: ["failure"])
    """Outcomes and event types that notify; see SUBSCRIPTION_OUTCOMES / SUBSCRIPTION_EVENTS."""
    sources: list[str] = Field(default_factory=list)
    """Only events of these sources; empty means every source."""
    agents: list[str] = Field(default_factory=list)
    """Only these agents: ids, names or glob patterns (`amazon-*`); empty means every agent."""
    title: str | None = None
    """Jinja2 template of the title; the default depends on the event type."""
    body: str | None = None
    """Jinja2 template of the body."""
    format: Literal["text", "markdown", "html"] = "text"
    """How the body is written; "text" reads right on every channel (email, Slack, webhooks)."""
    group_threshold: int = Field(default=5, ge=1)
    """More events than this within `group_wait` go out as one digest."""
    group_wait: float = Field(default=30.0, ge=0)
    max_age: float = Field(default=24 * 3600.0, gt=0)
    """Seconds a failing delivery is retried before it is given up (`notification.failed`)."""

    _secret: SecretStr | None = PrivateAttr(default=None)

    def url_values(self) -> list[str]:
        return [u.get_secret_value() for u in self.urls]

    def secret(self) -> str | None:
        """The webhook signing secret read from `secret_file`, in clear; None without one."""
        return self._secret.get_secret_value() if self._secret is not None else None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return valid_name(value)

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, value: list[SecretStr]) -> list[SecretStr]:
        problems = []
        for index, url in enumerate(value):
            text = url.get_secret_value().strip()
            try:
                _check_webhook_url(text) if is_webhook(text) else _check_apprise_url(text)
            except PydanticCustomError as err:
                problems.append(problem_detail((index,), err.message()))
        if problems:
            raise ValidationError.from_exception_data("urls", problems)
        return [SecretStr(u.get_secret_value().strip()) for u in value]

    @field_validator("on")
    @classmethod
    def _check_on(cls, value: list[str]) -> list[str]:
        allowed = SUBSCRIPTION_OUTCOMES + SUBSCRIPTION_EVENTS
        if not value:
            raise problem("must name at least one outcome or event type")
        for item in value:
            if item not in allowed:
                raise problem(f'unknown trigger "{item[:40]}" (one of {", ".join(allowed)})')
        return value

    @field_validator("agents", mode="before")
    @classmethod
    def _agents_as_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        return value

    @field_validator("title", "body")
    @classmethod
    def _check_template(cls, value: str | None) -> str | None:
        from watcher.messages import check_template

        if value is not None:
            wrong = check_template(value)
            if wrong:
                raise problem(wrong)
        return value

    @field_validator("secret_file", mode="before")
    @classmethod
    def _secret_file_not_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise problem("must not be empty")
        return value

    @model_validator(mode="after")
    def _read_secret_file(self) -> SubscriptionConfig:
        """The secret is read once, at load (a reload reads it again); a file that cannot be
        read, or a secret with no webhook to sign, is a config error naming `secret_file`."""
        if self.secret_file is None:
            return self
        try:
            if not any(is_webhook(url) for url in self.url_values()):
                raise problem("signs webhook+ URLs only, and this subscription has none")
            self._secret = SecretStr(read_secret(self.secret_file))
        except PydanticCustomError as err:
            detail = problem_detail(("secret_file",), err.message())
            raise ValidationError.from_exception_data(type(self).__name__, [detail]) from None
        return self
