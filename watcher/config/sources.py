"""One `[[sources]]` entry: a platform account to poll, and which of its agents to watch.

What a source may say depends on its kind: each platform declares its rules (agent ids,
credential schemes, default budget, its own keys) on its source class — see `kinds`.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from watcher.config.kinds import KindRules, kinds
from watcher.config.noise import Duration
from watcher.config.problems import (
    WILDCARD,
    problem,
    problem_detail,
    read_secret,
    valid_name,
    validate_reporting_all,
)
from watcher.errors import ConfigError

DASHBOARD_URL_FIELDS = frozenset({"agent_id", "run_id", "agent_name", "source"})
"""The `str.format` fields a `dashboard_url` template may use."""

AuthScheme = Literal["apikey", "bearer", "x-api-key"]
"""How a source sends its key: `Authorization: ApiKey …`, `Authorization: Bearer …` or
`X-API-Key: …`."""

_DEFAULT_POLL_INTERVAL_ACTIVE = 15.0


def _any_id(item: object) -> str | None:
    """Fallback when the kind is unknown (already reported): any int or non-empty string."""
    if isinstance(item, int) and not isinstance(item, bool):
        return str(item)
    if isinstance(item, str) and item.strip():
        return item.strip()
    return None


def _normalise_base_url(value: str) -> str:
    """Check that `value` is an http(s) URL with a host and return it without a trailing "/"."""
    url = value.strip()
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        raise problem("not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or re.search(r"\s", url):
        raise problem("not a URL")
    if parts.username is not None or parts.password is not None:
        raise problem("must not contain user:password@ (credentials belong in api_key)")
    if parts.query or parts.fragment:
        raise problem("must not have a query or fragment")
    return url.rstrip("/")


def _check_dashboard_url(template: str) -> str:
    """Check a run-link template: only `DASHBOARD_URL_FIELDS`, and it must render to a URL."""
    allowed = ", ".join(f"{{{name}}}" for name in sorted(DASHBOARD_URL_FIELDS))
    sample = {name: "1" for name in DASHBOARD_URL_FIELDS}
    not_a_template = problem("not a valid template (write {{ and }} for literal braces)")
    try:
        fields = [
            (name, spec)
            for _, name, spec, _ in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError:
        raise not_a_template from None
    if any(name not in DASHBOARD_URL_FIELDS or "{" in (spec or "") for name, spec in fields):
        raise problem(f"may only use the fields {allowed}")
    try:
        rendered = template.format(**sample)
    except (ValueError, IndexError, KeyError):
        raise not_a_template from None
    parts = urlsplit(rendered)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise problem("not a URL")
    return template


class SourceConfig(BaseModel):
    """One `[[sources]]` entry: a platform account to poll and which of its agents to watch.

    After validation `api_key` always holds the secret, read from `api_key_file` when that was
    given.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str
    """Unique name used in events, logs and state; 1-64 of A-Z a-z 0-9 _ . -"""
    kind: str
    """The platform: one of the registered kinds (`watcher.config.kinds`)."""
    base_url: str
    """http(s) URL of the platform, stored without a trailing "/"."""
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    auth: AuthScheme = "apikey"
    """How the key is sent: "apikey" (`Authorization: ApiKey …`), "bearer"
    (`Authorization: Bearer …`) or "x-api-key" (`X-API-Key: …`). The default is the kind's
    first scheme: apikey for Cloud, bearer for ACC, x-api-key for automation runs."""
    agents: list[str] = Field(default_factory=lambda: [WILDCARD])
    """Agent ids to watch (ints are accepted and stored as text); ["*"] watches every agent.
    ACC: agent GUIDs or repository paths, never "*"; automation runs: automation ids."""
    poll_interval: float = Field(default=60.0, ge=1)
    poll_interval_active: float = Field(default=_DEFAULT_POLL_INTERVAL_ACTIVE, ge=1)
    """Interval for agents with a run in progress; defaults to min(15, poll_interval)."""
    jitter: float = Field(default=2.0, ge=0)
    """Up to this many seconds of random delay added to each poll."""
    max_records: int = Field(default=50, ge=1, le=1000)
    """Runs fetched per agent per poll."""
    max_concurrency: int = Field(
        default=64, ge=1, le=256, validation_alias=AliasChoices("max_concurrency", "concurrency")
    )
    """The most requests in flight at once; the number in use adapts (starts low, grows while
    latency holds, halves on a 429 or a timeout). `concurrency` is its former name."""
    requests_per_minute: int = Field(default=0, ge=0)
    """Requests this source may send in any 60 s (0: no limit). The default is the kind's:
    90 for Sequentum Cloud, which allows 100 per key; others unlimited."""
    sweep_interval: float = Field(default=900.0, ge=1)
    """Where the platform gives change hints: every agent's runs are listed at least this
    often anyway, the safety net for what the hints miss."""
    use_hints: bool = True
    """sequentum_cloud only: list the runs of agents whose change hint moved (false: sweep
    every agent every poll_interval, as far as the budget allows)."""
    timeout: float = Field(default=30.0, gt=0)
    """Seconds one HTTP request may take."""
    retries: int = Field(default=3, ge=0, le=10)
    """Retries of a temporary failure within one poll."""
    max_response_bytes: int = Field(default=32 << 20, ge=1024)
    """The largest JSON answer read; a longer one is a protocol error (a proxy streaming
    garbage without end costs this much memory, never more)."""
    dashboard_url: str | None = None
    """Template of a run's link, with {agent_id}, {run_id}, {agent_name} and {source}."""
    enabled: bool = True
    source_failed_after: Duration | None = Field(default=None, ge=0)
    """Seconds the source must fail before `source.failed` (a shorter blip, and its recovery,
    are only logged). None: the `[watcher]` default."""
    watch_jobs: bool = False
    """sequentum_acc only: also watch each agent's job runs (run ids "job-<id>")."""
    max_pages: int = Field(default=10, ge=1, le=1000)
    """automation_runs only: pages of `max_records` runs read per poll, newest first."""

    @property
    def watches_all(self) -> bool:
        """`agents = ["*"]`: every agent the platform lists."""
        return self.agents == [WILDCARD]

    def secret(self) -> str:
        """The API key in clear, for the one place that builds the request header."""
        if self.api_key is None:  # only possible with model_construct(), which skips validation
            raise ConfigError([f"sources: {self.name}: no api_key"])
        return self.api_key.get_secret_value()

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return valid_name(value)

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        return _normalise_base_url(value)

    @field_validator("api_key")
    @classmethod
    def _strip_api_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        secret = value.get_secret_value().strip()
        if not secret:
            raise problem("must not be empty")
        return SecretStr(secret)

    @field_validator("agents", mode="before")
    @classmethod
    def _normalise_agents(cls, value: Any, info: ValidationInfo) -> list[str]:
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise problem('must be a list of agent ids, or ["*"] for every agent')
        if not value:
            raise problem('must not be empty; use ["*"] for every agent')
        if WILDCARD in value:
            if len(value) > 1:
                raise problem('"*" cannot be combined with agent ids')
            return [WILDCARD]
        rules = kinds().get(info.data.get("kind", ""))
        parse = rules.parse_agent if rules is not None else _any_id
        complaint = rules.agent_complaint if rules is not None else "must be an agent id"
        agents: dict[str, None] = {}  # ordered, and a set: the check stays linear
        problems: list[InitErrorDetails] = []
        for index, item in enumerate(value):
            agent = parse(item)
            if agent is None:
                problems.append(problem_detail((index,), complaint))
            elif agent in agents:
                problems.append(problem_detail((index,), "duplicate agent id"))
            else:
                agents[agent] = None
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        return list(agents)

    @field_validator("poll_interval_active")
    @classmethod
    def _active_not_slower(cls, value: float, info: ValidationInfo) -> float:
        poll_interval = info.data.get("poll_interval")
        if poll_interval is not None and value > poll_interval:
            raise problem("must be <= poll_interval")
        return value

    @field_validator("dashboard_url")
    @classmethod
    def _check_dashboard_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_dashboard_url(value)

    @model_validator(mode="wrap")
    @classmethod
    def _credentials(
        cls, data: Any, handler: ModelWrapValidatorHandler[SourceConfig]
    ) -> SourceConfig:
        """Exactly one of api_key / api_key_file, and the file read; reported with other errors."""
        if not isinstance(data, Mapping):  # an instance, or something the handler will reject
            return handler(data)
        data = dict(data)
        problems: list[InitErrorDetails] = []
        key, key_file = data.get("api_key"), data.get("api_key_file")
        if key is not None and key_file is not None:
            problems.append(
                problem_detail(("api_key_file",), "give api_key or api_key_file, not both")
            )
        elif key is None and key_file is None:
            problems.append(problem_detail(("api_key",), "required (or api_key_file)"))
        elif isinstance(key_file, str) and not key_file.strip():
            problems.append(problem_detail(("api_key_file",), "must not be empty"))
        elif isinstance(key_file, str | os.PathLike):
            try:
                data["api_key"] = read_secret(Path(key_file))
            except PydanticCustomError as exc:
                problems.append(problem_detail(("api_key_file",), exc.message()))
        problems += _kind_problems(data)
        source = validate_reporting_all(cls.__name__, lambda: handler(data), problems)
        if "poll_interval_active" not in data:
            source.poll_interval_active = min(_DEFAULT_POLL_INTERVAL_ACTIVE, source.poll_interval)
        rules = kinds()[source.kind]
        if "auth" not in data:
            source.auth = rules.auth_schemes[0]  # type: ignore[assignment]
        if "requests_per_minute" not in data:
            source.requests_per_minute = rules.requests_per_minute
        return source


def _kind_problems(data: Mapping[str, Any]) -> list[InitErrorDetails]:
    """What the kind forbids: an unknown kind, a credential scheme its platform does not take,
    a key meant for another kind, and (a platform that cannot list its agents) a missing or
    wildcard agent list."""
    kind = data.get("kind")
    known = kinds()
    if kind is None:
        return []  # "required" is reported by the field itself
    if not isinstance(kind, str) or kind not in known:
        names = ", ".join(f"'{k}'" for k in sorted(known))
        return [problem_detail(("kind",), f"must be one of {names}")]
    rules = known[kind]
    return [
        *_auth_problems(data.get("auth"), rules),
        *_foreign_keys(data, rules, known.values()),
        *_agents_problems(data.get("agents", [WILDCARD]), rules),
    ]


def _auth_problems(auth: object, rules: KindRules) -> list[InitErrorDetails]:
    """A known credential scheme the kind's platform does not take (an unknown one is the
    field's own problem)."""
    scheme = auth.strip().lower() if isinstance(auth, str) else auth
    if scheme not in get_args(AuthScheme) or scheme in rules.auth_schemes:
        return []
    allowed = " or ".join(f"'{s}'" for s in rules.auth_schemes)
    return [problem_detail(("auth",), f"must be {allowed} for kind {rules.name}")]


def _foreign_keys(
    data: Mapping[str, Any], rules: KindRules, known: Iterable[KindRules]
) -> list[InitErrorDetails]:
    """The keys given that belong to another kind."""
    return [
        problem_detail((key,), f"only for kind {other.name}")
        for other in known
        if other.name != rules.name
        for key in other.keys
        if key in data
    ]


def _agents_problems(agents: object, rules: KindRules) -> list[InitErrorDetails]:
    """Every agent ("*", or no list) asked of a platform that cannot list its agents."""
    if rules.wildcard or not isinstance(agents, list) or WILDCARD not in agents:
        return []
    why = f"required for kind {rules.name}: {rules.agents_required}"
    return [problem_detail(("agents",), why)]
