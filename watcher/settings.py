"""watcher's configuration: the models, the TOML file, `${NAME}` references, `WATCHER_*` overrides.

`load_settings` is what the CLI calls. From lowest to highest priority, a value comes from:

1. the model defaults below;
2. the TOML file, after every `${NAME}` in a string value is replaced by that environment
   variable (`$${` stands for a literal `${`);
3. the environment, through pydantic-settings' env source: `WATCHER_<FIELD>` holds JSON
   (`WATCHER_SOURCES='[{...}]'` replaces the whole source list) and `WATCHER_<FIELD>__<KEY>`
   one nested key (`WATCHER_WATCHER__LOG_FORMAT=console`);
4. the shorthands for the `[watcher]` table, `WATCHER_STATE_PATH`, `WATCHER_EVENTS_PATH`,
   `WATCHER_LOG_FORMAT`, `WATCHER_LOG_LEVEL` and `WATCHER_SHUTDOWN_TIMEOUT`, which win over the
   nested form of the same key.

Environment variable names are matched case-insensitively, as pydantic-settings does. Values
taken from the environment are not `${NAME}`-expanded. `WATCHER_CONFIG` names the file (see
`find_config`) and is not a setting.

Building `Settings(...)` in code uses exactly the arguments given: the environment is read only
by `load_settings`, from the mapping passed to it, so a test or the demo never picks up a stray
variable from the developer's shell. (In code, a relative `api_key_file` is relative to the working
directory; `load_settings` resolves it against $CREDENTIALS_DIRECTORY or the file's directory.)

Every problem becomes one line of `ConfigError.problems` that names its key
(`sources[0].base_url: not a URL`). No line ever repeats a configured value, so no secret can leak
through an error message; `api_key` is a `SecretStr`, so no secret leaks through `repr` either.
"""

from __future__ import annotations

import json
import logging
import os
import re
import string
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from pydantic_settings.sources.utils import parse_env_vars

from watcher.errors import ConfigError

__all__ = [
    "CONFIG_ENV_VAR",
    "DASHBOARD_URL_FIELDS",
    "DEFAULT_SEARCH_PATHS",
    "ENV_PREFIX",
    "HttpSection",
    "Settings",
    "SourceConfig",
    "SourceKind",
    "WatcherSection",
    "describe_validation_error",
    "find_config",
    "load_settings",
    "parse_listen",
]

ENV_PREFIX = "WATCHER_"
"""Prefix of every environment variable that overrides a setting."""

CONFIG_ENV_VAR = "WATCHER_CONFIG"
"""The environment variable that names the config file; it is not itself a setting."""

DEFAULT_SEARCH_PATHS: tuple[str, ...] = ("./watcher.toml", "/etc/watcher/watcher.toml")
"""Where `find_config` looks, in order, when neither --config nor WATCHER_CONFIG is given."""

DASHBOARD_URL_FIELDS = frozenset({"agent_id", "run_id", "agent_name", "source"})
"""The `str.format` fields a `dashboard_url` template may use."""

SourceKind = Literal["sequentum_cloud", "sequentum_acc", "automation_runs"]
"""The platforms watcher can poll. A new kind adds its name here, a parser in
`_AGENT_ID_PARSERS`, and its credential schemes in `_AUTH_SCHEMES`."""

AuthScheme = Literal["apikey", "bearer", "x-api-key"]
"""How a source sends its key: `Authorization: ApiKey …`, `Authorization: Bearer …` or
`X-API-Key: …`."""

_SOURCE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_REFERENCE = re.compile(r"\$\$\{|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}|\$\{")
_DIGITS = re.compile(r"[0-9]+")
_GUID = re.compile(r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")
_WILDCARD = "*"
_DEFAULT_POLL_INTERVAL_ACTIVE = 15.0

_T = TypeVar("_T")

Loc = tuple[str | int, ...]
"""Where a value sits in the config, e.g. ("sources", 0, "base_url")."""


# --- Problems: pydantic errors that carry our own wording and never the input --------------------

_PROBLEM = "watcher_config"
_KNOWN_ERROR_TYPES = frozenset(get_args(ErrorType))


def _problem(message: str) -> PydanticCustomError:
    """A validation error whose text is `message`, to raise from a validator."""
    return PydanticCustomError(_PROBLEM, "{detail}", {"detail": message})


def _problem_detail(loc: Loc, message: str) -> InitErrorDetails:
    """A validation error at `loc` (relative to the model or field being validated)."""
    return InitErrorDetails(type=_problem(message), loc=loc, input=None)


def _reraisable(error: Mapping[str, Any]) -> InitErrorDetails:
    """Turn one entry of `ValidationError.errors()` back into something that can be raised."""
    ctx = error.get("ctx")
    error_type: str | PydanticCustomError = error["type"]
    if error_type == _PROBLEM:
        error_type = _problem(error["msg"])
        ctx = None
    elif error_type not in _KNOWN_ERROR_TYPES:
        error_type = PydanticCustomError(str(error_type), error["msg"])
        ctx = None
    details = InitErrorDetails(type=error_type, loc=tuple(error["loc"]), input=error.get("input"))
    if ctx:
        details["ctx"] = ctx
    return details


def _validate_reporting_all(
    title: str, validate: Callable[[], _T], problems: list[InitErrorDetails]
) -> _T:
    """Run `validate` and raise its errors together with `problems`, so one pass reports all."""
    try:
        result = validate()
    except ValidationError as exc:
        errors = [_reraisable(error) for error in exc.errors()]
        raise ValidationError.from_exception_data(title, [*errors, *problems]) from None
    if problems:
        raise ValidationError.from_exception_data(title, problems)
    return result


def _format_loc(loc: Iterable[str | int]) -> str:
    """("sources", 0, "base_url") -> "sources[0].base_url"."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "config"


def _number(value: object) -> object:
    """A bound as a person writes it: 0 rather than 0.0."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


_FRIENDLY: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "missing": lambda ctx: "required",
    "extra_forbidden": lambda ctx: "unknown key",
    "literal_error": lambda ctx: f"must be one of {ctx['expected']}",
    "int_type": lambda ctx: "must be an integer",
    "int_parsing": lambda ctx: "must be an integer",
    "int_from_float": lambda ctx: "must be an integer",
    "float_type": lambda ctx: "must be a number",
    "float_parsing": lambda ctx: "must be a number",
    "finite_number": lambda ctx: "must be a finite number",
    "greater_than": lambda ctx: f"must be > {_number(ctx['gt'])}",
    "greater_than_equal": lambda ctx: f"must be >= {_number(ctx['ge'])}",
    "too_short": lambda ctx: f"must have at least {ctx.get('min_length', 1)} item(s)",
    "less_than": lambda ctx: f"must be < {_number(ctx['lt'])}",
    "less_than_equal": lambda ctx: f"must be <= {_number(ctx['le'])}",
    "bool_type": lambda ctx: "must be true or false",
    "bool_parsing": lambda ctx: "must be true or false",
    "string_type": lambda ctx: "must be a string",
    "list_type": lambda ctx: "must be a list",
    "model_type": lambda ctx: "must be a table",
    "model_attributes_type": lambda ctx: "must be a table",
    "dict_type": lambda ctx: "must be a table",
    "path_type": lambda ctx: "must be a path",
}


def _describe(error: Mapping[str, Any]) -> str:
    """The text of one error, without the offending value (pydantic keeps it apart in `input`)."""
    friendly = _FRIENDLY.get(error["type"])
    if friendly is not None:
        return friendly(error.get("ctx") or {})
    message: str = error["msg"]
    return message.removeprefix("Value error, ")


def describe_validation_error(error: ValidationError) -> list[str]:
    """One line per problem, `key.path: what is wrong`, never showing a configured value.

    `load_settings` uses this; code that builds `Settings` or `SourceConfig` itself can use it to
    turn a `ValidationError` into `ConfigError(describe_validation_error(exc))`.
    """
    return [
        f"{_format_loc(err['loc'])}: {_describe(err)}"
        for err in error.errors(include_url=False, include_input=False)
    ]


# --- The models --------------------------------------------------------------------------------


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

    @field_validator("state_path", mode="before")
    @classmethod
    def _state_path_not_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise _problem("must not be empty")
        return value

    @field_validator("events_path", mode="before")
    @classmethod
    def _empty_events_path_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


def _positive_integer_id(item: object) -> str | None:
    """A Sequentum Cloud agent id (an int, or a string of digits) as text, None if it is not one."""
    if isinstance(item, bool):
        return None
    if isinstance(item, int):
        return str(item) if item > 0 else None
    if isinstance(item, str) and _DIGITS.fullmatch(item.strip()) and int(item) > 0:
        return str(int(item))
    return None


def _any_id(item: object) -> str | None:
    """Fallback when the kind is unknown (already reported): any int or non-empty string."""
    if isinstance(item, int) and not isinstance(item, bool):
        return str(item)
    if isinstance(item, str) and item.strip():
        return item.strip()
    return None


def _acc_agent(item: object) -> str | None:
    """An Agent Control Center agent: its id (a GUID) or its repository path
    ("sequentum/Test2/quick"), as text; None if it is neither."""
    if not isinstance(item, str):
        return None
    text = item.strip()
    if _GUID.fullmatch(text):
        return text.lower()
    parts = text.strip("/").split("/")
    if len(parts) >= 2 and all(p.strip() for p in parts) and len(text) <= 400:
        return "/".join(p.strip() for p in parts)
    return None


def _automation_id(item: object) -> str | None:
    """An automation id of the automation-runs API: a non-empty string (or an int) of at most
    128 characters, as text."""
    if isinstance(item, int) and not isinstance(item, bool):
        return str(item)
    if isinstance(item, str) and item.strip() and len(item.strip()) <= 128:
        return item.strip()
    return None


_AGENT_ID_PARSERS: dict[str, tuple[Callable[[object], str | None], str]] = {
    "sequentum_cloud": (_positive_integer_id, "must be a positive integer agent id"),
    "sequentum_acc": (
        _acc_agent,
        'must be an agent id (a GUID) or a repository path like "sequentum/Test2/quick"',
    ),
    "automation_runs": (_automation_id, "must be an automation id"),
}
"""Per source kind: how to read one agent id, and what to say when it is not one."""

_AUTH_SCHEMES: dict[str, tuple[str, ...]] = {
    "sequentum_cloud": ("apikey", "bearer"),
    "sequentum_acc": ("bearer",),
    "automation_runs": ("x-api-key", "bearer"),
}
"""Per source kind: the credential schemes its platform accepts; the first is the default."""

_KIND_ONLY_KEYS: dict[str, str] = {
    "watch_jobs": "sequentum_acc",
    "max_pages": "automation_runs",
    "use_hints": "sequentum_cloud",
}
"""Keys that mean something for one kind only, and that kind."""

_DEFAULT_RATES: dict[str, int] = {"sequentum_cloud": 90, "sequentum_acc": 0, "automation_runs": 0}
"""Per source kind: `requests_per_minute` when not set. Sequentum Cloud allows 100 requests
per minute per API key; 90 leaves room for the user's own scripts on the same key."""


def _normalise_base_url(value: str) -> str:
    """Check that `value` is an http(s) URL with a host and return it without a trailing "/"."""
    url = value.strip()
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        raise _problem("not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or re.search(r"\s", url):
        raise _problem("not a URL")
    if parts.username is not None or parts.password is not None:
        raise _problem("must not contain user:password@ (credentials belong in api_key)")
    if parts.query or parts.fragment:
        raise _problem("must not have a query or fragment")
    return url.rstrip("/")


def _check_dashboard_url(template: str) -> str:
    """Check a run-link template: only `DASHBOARD_URL_FIELDS`, and it must render to a URL."""
    allowed = ", ".join(f"{{{name}}}" for name in sorted(DASHBOARD_URL_FIELDS))
    sample = {name: "1" for name in DASHBOARD_URL_FIELDS}
    not_a_template = _problem("not a valid template (write {{ and }} for literal braces)")
    try:
        fields = [
            (name, spec)
            for _, name, spec, _ in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError:
        raise not_a_template from None
    if any(name not in DASHBOARD_URL_FIELDS or "{" in (spec or "") for name, spec in fields):
        raise _problem(f"may only use the fields {allowed}")
    try:
        rendered = template.format(**sample)
    except (ValueError, IndexError, KeyError):
        raise not_a_template from None
    parts = urlsplit(rendered)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _problem("not a URL")
    return template


def _valid_name(value: str) -> str:
    """A source's or subscription's name: it appears in events, state and channel names."""
    if not _SOURCE_NAME.fullmatch(value):
        raise _problem("must be 1-64 characters of A-Z a-z 0-9 _ . -")
    return value


def _read_secret(path: Path) -> str:
    """The file's content without surrounding whitespace; raises a problem naming the path."""
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise _problem(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise _problem(f"cannot read {path}: not UTF-8 text") from None
    if not secret:
        raise _problem(f"file is empty: {path}")
    return secret


class SourceConfig(BaseModel):
    """One `[[sources]]` entry: a platform account to poll and which of its agents to watch.

    After validation `api_key` always holds the secret, read from `api_key_file` when that was
    given.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str
    """Unique name used in events, logs and state; 1-64 of A-Z a-z 0-9 _ . -"""
    kind: SourceKind
    base_url: str
    """http(s) URL of the platform, stored without a trailing "/"."""
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    auth: AuthScheme = "apikey"
    """How the key is sent: "apikey" (`Authorization: ApiKey …`), "bearer"
    (`Authorization: Bearer …`) or "x-api-key" (`X-API-Key: …`). The default depends on the
    kind (see `_AUTH_SCHEMES`): apikey for Cloud, bearer for ACC, x-api-key for automation runs."""
    agents: list[str] = Field(default_factory=lambda: [_WILDCARD])
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
    """Requests this source may send in any 60 s (0: no limit). Default per kind (see
    `_DEFAULT_RATES`): 90 for Sequentum Cloud, which allows 100 per key; others unlimited."""
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
    watch_jobs: bool = False
    """sequentum_acc only: also watch each agent's job runs (run ids "job-<id>")."""
    max_pages: int = Field(default=10, ge=1, le=1000)
    """automation_runs only: pages of `max_records` runs read per poll, newest first."""

    def secret(self) -> str:
        """The API key in clear, for the one place that builds the request header."""
        if self.api_key is None:  # only possible with model_construct(), which skips validation
            raise ConfigError([f"sources: {self.name}: no api_key"])
        return self.api_key.get_secret_value()

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _valid_name(value)

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
            raise _problem("must not be empty")
        return SecretStr(secret)

    @field_validator("agents", mode="before")
    @classmethod
    def _normalise_agents(cls, value: Any, info: ValidationInfo) -> list[str]:
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise _problem('must be a list of agent ids, or ["*"] for every agent')
        if not value:
            raise _problem('must not be empty; use ["*"] for every agent')
        if _WILDCARD in value:
            if len(value) > 1:
                raise _problem('"*" cannot be combined with agent ids')
            return [_WILDCARD]
        parse, complaint = _AGENT_ID_PARSERS.get(
            info.data.get("kind", ""), (_any_id, "must be an agent id")
        )
        agents: dict[str, None] = {}  # ordered, and a set: the check stays linear
        problems: list[InitErrorDetails] = []
        for index, item in enumerate(value):
            agent = parse(item)
            if agent is None:
                problems.append(_problem_detail((index,), complaint))
            elif agent in agents:
                problems.append(_problem_detail((index,), "duplicate agent id"))
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
            raise _problem("must be <= poll_interval")
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
                _problem_detail(("api_key_file",), "give api_key or api_key_file, not both")
            )
        elif key is None and key_file is None:
            problems.append(_problem_detail(("api_key",), "required (or api_key_file)"))
        elif isinstance(key_file, str) and not key_file.strip():
            problems.append(_problem_detail(("api_key_file",), "must not be empty"))
        elif isinstance(key_file, str | os.PathLike):
            try:
                data["api_key"] = _read_secret(Path(key_file))
            except PydanticCustomError as exc:
                problems.append(_problem_detail(("api_key_file",), exc.message()))
        problems += _kind_problems(data)
        source = _validate_reporting_all(cls.__name__, lambda: handler(data), problems)
        if "poll_interval_active" not in data:
            source.poll_interval_active = min(_DEFAULT_POLL_INTERVAL_ACTIVE, source.poll_interval)
        if "auth" not in data:
            source.auth = _AUTH_SCHEMES[source.kind][0]  # type: ignore[assignment]
        if "requests_per_minute" not in data:
            source.requests_per_minute = _DEFAULT_RATES[source.kind]
        return source


def _kind_problems(data: Mapping[str, Any]) -> list[InitErrorDetails]:
    """What the kind forbids: a credential scheme its platform does not take, a key meant for
    another kind, and (ACC, which cannot list its agents) a missing or wildcard agent list."""
    kind = data.get("kind")
    if kind not in _AUTH_SCHEMES:
        return []  # an unknown kind is reported by the field itself
    problems: list[InitErrorDetails] = []
    schemes = _AUTH_SCHEMES[kind]
    auth = data.get("auth")
    auth = auth.strip().lower() if isinstance(auth, str) else auth
    if auth in get_args(AuthScheme) and auth not in schemes:
        allowed = " or ".join(f"'{s}'" for s in schemes)
        problems.append(_problem_detail(("auth",), f"must be {allowed} for kind {kind}"))
    for key, only in _KIND_ONLY_KEYS.items():
        if key in data and kind != only:
            problems.append(_problem_detail((key,), f"only for kind {only}"))
    agents = data.get("agents", [_WILDCARD])
    if kind == "sequentum_acc" and isinstance(agents, list) and _WILDCARD in agents:
        problems.append(
            _problem_detail(
                ("agents",),
                "required for kind sequentum_acc: agent ids or repository paths "
                '(the ACC API cannot list every agent, so "*" is not available)',
            )
        )
    return problems


# What a subscription's `on` may name: outcomes of a finished run, "recovered" (a success after a
# failure of the same agent), and event types.
SUBSCRIPTION_OUTCOMES = ("failure", "stopped", "success", "skipped")
SUBSCRIPTION_EVENTS = (
    "recovered",
    "run.reopened",
    "run.warning",
    "run.unknown_status",
    "run.discovered",
    "source.failed",
    "source.recovered",
    "output.fetched",
    "output.failed",
)


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
        raise _problem("not a usable apprise URL (check its scheme and required parts)")


class SubscriptionConfig(BaseModel):
    """One `[[subscriptions]]` entry: who is told about what, through which channels."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str
    """Unique; appears in digests and in notification events."""
    urls: list[SecretStr] = Field(min_length=1)
    """apprise URLs (slack://…, mailto://…, json://…): one channel each. They hold tokens."""
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

    def url_values(self) -> list[str]:
        return [u.get_secret_value() for u in self.urls]

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _valid_name(value)

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, value: list[SecretStr]) -> list[SecretStr]:
        problems = []
        for index, url in enumerate(value):
            try:
                _check_apprise_url(url.get_secret_value().strip())
            except PydanticCustomError as err:
                problems.append(_problem_detail((index,), err.message()))
        if problems:
            raise ValidationError.from_exception_data("urls", problems)
        return [SecretStr(u.get_secret_value().strip()) for u in value]

    @field_validator("on")
    @classmethod
    def _check_on(cls, value: list[str]) -> list[str]:
        allowed = SUBSCRIPTION_OUTCOMES + SUBSCRIPTION_EVENTS
        if not value:
            raise _problem("must name at least one outcome or event type")
        for item in value:
            if item not in allowed:
                raise _problem(f'unknown trigger "{item[:40]}" (one of {", ".join(allowed)})')
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
            problem = check_template(value)
            if problem:
                raise _problem(problem)
        return value


def parse_listen(value: str) -> tuple[str, int]:
    """Split "HOST:PORT" ("127.0.0.1:9465", "[::1]:9465", "0.0.0.0:9465"); raise ValueError
    unless the host is present and the port is 0-65535 (0: any free port)."""
    host, sep, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 host must be in brackets")
    if not sep or not host or re.search(r"[\s/\[\]]", host) or not _DIGITS.fullmatch(port):
        raise ValueError("not HOST:PORT")
    if int(port) > 65535:
        raise ValueError("port out of range")
    return host, int(port)


class HttpSection(BaseModel):
    """The `[http]` table: the optional endpoint for health, readiness, metrics and events."""

    model_config = ConfigDict(extra="forbid")

    listen: str | None = None
    """"HOST:PORT" to serve /healthz, /readyz, /metrics and /events on; None (or "") is off."""

    @field_validator("listen", mode="before")
    @classmethod
    def _check_listen(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str):
            try:
                parse_listen(value)
            except ValueError:
                raise _problem(
                    'must be "HOST:PORT" with a port 0-65535, e.g. "127.0.0.1:9465"'
                ) from None
            return value.strip()
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        return parse_listen(self.listen) if self.listen else None


# What an `[outputs]` table's `on` may name, and the file types its `type:` patterns may name.
OUTPUT_OUTCOMES = ("success", "failure", "stopped", "skipped")
OUTPUT_FILE_KINDS = ("data", "log", "other")


def _check_outcomes(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    if not value:
        raise _problem("must name at least one outcome")
    if any(item not in OUTPUT_OUTCOMES for item in value):
        raise _problem(f"unknown outcome (each must be one of {', '.join(OUTPUT_OUTCOMES)})")
    return value


def _check_patterns(value: list[str] | None) -> list[str] | None:
    """File selectors: a name glob ("*.csv", matched in any case) or "type:KIND" (type:data,
    type:log, type:other, or type:N for a platform's numeric file type)."""
    if value is None:
        return None
    patterns = [item.strip() for item in value]
    for pattern in patterns:
        if not pattern:
            raise _problem("a pattern must not be empty")
        if pattern.lower().startswith("type:"):
            kind = pattern[5:].strip().lower()
            if kind not in OUTPUT_FILE_KINDS and not _DIGITS.fullmatch(kind):
                raise _problem("unknown file type (type:data, type:log, type:other or type:N)")
    return patterns


class OutputSourceRules(BaseModel):
    """One `[outputs.sources.NAME]` table: what to fetch from one source. Each key left out
    takes the `[outputs]` value."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    """false: never fetch this source's outputs."""
    on: list[str] | None = None
    include: list[str] | None = None
    exclude: list[str] | None = None
    extract: bool | None = None

    _outcomes = field_validator("on")(_check_outcomes)
    _patterns = field_validator("include", "exclude")(_check_patterns)


class OutputsConfig(BaseModel):
    """The `[outputs]` table: fetch the files of finished runs to DIR/SOURCE/AGENT_ID/RUN_ID/."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    enabled: bool = False
    dir: Path = Path("/var/lib/watcher/outputs")
    on: list[str] = Field(default_factory=lambda: ["success"])
    """Outcomes of `run.finished` whose files are fetched; see OUTPUT_OUTCOMES."""
    include: list[str] = Field(default_factory=list)
    """Only files matching one of these (name globs or type:KIND); empty means every file."""
    exclude: list[str] = Field(default_factory=list)
    """Never files matching one of these; wins over include."""
    extract: bool = False
    """Unpack zip outputs (ACC run logs and backup data) beside the archive, safely."""
    max_file_bytes: int = Field(default=1 << 30, ge=1)
    """A larger file is not fetched (a permanent failure for that file); also caps each
    extracted entry."""
    concurrency: int = Field(default=4, ge=1, le=32)
    """Files downloaded at once, over all runs."""
    max_age: float = Field(default=24 * 3600.0, gt=0)
    """Seconds a failing fetch is retried (with backoff) before it is given up."""
    max_extract_bytes: int = Field(default=4 << 30, ge=1)
    max_extract_entries: int = Field(default=10_000, ge=1)
    max_extract_ratio: float = Field(default=200.0, gt=1)
    sources: dict[str, OutputSourceRules] = Field(default_factory=dict)
    """Per-source overrides, by source name."""

    _outcomes = field_validator("on")(_check_outcomes)
    _patterns = field_validator("include", "exclude")(_check_patterns)

    @field_validator("dir", mode="before")
    @classmethod
    def _dir_not_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise _problem("must not be empty")
        return value

    def for_source(self, name: str) -> OutputSourceRules:
        """The rules of source `name`, every key filled in from `[outputs]` where not set."""
        own = self.sources.get(name, OutputSourceRules())
        return OutputSourceRules(
            enabled=self.enabled and own.enabled,
            on=own.on if own.on is not None else list(self.on),
            include=own.include if own.include is not None else list(self.include),
            exclude=own.exclude if own.exclude is not None else list(self.exclude),
            extract=own.extract if own.extract is not None else self.extract,
        )


class Settings(BaseSettings):
    """The whole configuration. Build it with `load_settings`, or in code (tests, the demo).

    In code the arguments are used as given: the environment is applied by `load_settings` only
    (`settings_customise_sources` keeps just the init arguments).
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid"
    )

    watcher: WatcherSection = Field(default_factory=WatcherSection)
    sources: list[SourceConfig] = Field(default_factory=list)
    subscriptions: list[SubscriptionConfig] = Field(default_factory=list)
    http: HttpSection = Field(default_factory=HttpSection)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)

    _config_path: Path | None = PrivateAttr(default=None)

    @property
    def config_path(self) -> Path | None:
        """The file these settings were loaded from; None when built in code."""
        return self._config_path

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the init arguments: `load_settings` applies the environment it is given."""
        return (init_settings,)

    @field_validator("sources", "subscriptions", mode="wrap")
    @classmethod
    def _unique_names(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        """Names are unique; checked on the raw list so other errors are reported too."""
        what = "source" if info.field_name == "sources" else "subscription"
        problems: list[InitErrorDetails] = []
        if isinstance(value, list):
            seen: set[str] = set()
            for index, item in enumerate(value):
                name = (
                    item.get("name") if isinstance(item, Mapping) else getattr(item, "name", None)
                )
                if isinstance(name, str) and name in seen:
                    problems.append(
                        _problem_detail((index, "name"), f'duplicate {what} name "{name}"')
                    )
                elif isinstance(name, str):
                    seen.add(name)
        return _validate_reporting_all(cls.__name__, lambda: handler(value), problems)

    @model_validator(mode="after")
    def _subscriptions_name_known_sources(self) -> Settings:
        known = {source.name for source in self.sources}
        problems = [
            _problem_detail(("subscriptions", i, "sources"), f'unknown source "{name}"')
            for i, sub in enumerate(self.subscriptions)
            for name in sub.sources
            if name not in known
        ]
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self

    @model_validator(mode="after")
    def _outputs_name_known_sources(self) -> Settings:
        known = {source.name for source in self.sources}
        problems = [
            _problem_detail(("outputs", "sources", name), f'unknown source "{name}"')
            for name in self.outputs.sources
            if name not in known
        ]
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self


# --- Finding and loading the file ----------------------------------------------------------------


def find_config(
    cli_path: str | Path | None,
    env: Mapping[str, str] = os.environ,
    search_paths: Sequence[str | Path] = DEFAULT_SEARCH_PATHS,
) -> Path:
    """The config file to load: --config PATH, else $WATCHER_CONFIG, else the first search path
    that exists. An explicitly named file must exist. Returns an absolute path."""
    for explicit in (cli_path, env.get(CONFIG_ENV_VAR)):
        if explicit is not None and str(explicit) != "":
            path = Path(explicit)
            if not path.is_file():
                reason = "not a file" if path.exists() else "no such file"
                raise ConfigError([f"config: {path}: {reason}"])
            return path.absolute()
    for candidate in search_paths:
        if Path(candidate).is_file():
            return Path(candidate).absolute()
    tried = ", ".join(str(candidate) for candidate in search_paths)
    raise ConfigError(
        [
            f"config: no config file found (tried {tried}); "
            f"pass --config PATH or set {CONFIG_ENV_VAR}"
        ]
    )


def load_settings(path: Path, env: Mapping[str, str] = os.environ) -> Settings:
    """Read, expand, override and validate the config file at `path`.

    Raises `ConfigError` with one line per problem; see the module docstring for the order in
    which the file and the environment apply.
    """
    path = Path(path)
    data = _read_toml(path)
    expansion_problems = _expand_references(data, env, ())
    overrides, problems = _env_overrides(env)
    from_env = _leaf_paths(overrides)
    problems += [
        f"{_format_loc(loc)}: {message}"
        for loc, message in expansion_problems
        if not _under_any(loc, from_env)
    ]
    unexpanded = [loc for loc, _ in expansion_problems]
    merged = _deep_merge(data, overrides)
    for key in [key for key in merged if key not in Settings.model_fields]:
        # Checked here: BaseSettings.__init__ would take a key like "_env_file" as an option.
        problems.append(f"{key}: unknown key")
        del merged[key]
    _resolve_key_files(merged, env, path.absolute().parent)
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            loc = tuple(error["loc"])
            if _under_any(loc, unexpanded):
                continue  # the value still holds the `${NAME}` already reported
            origin = " (from the environment)" if _under_any(loc, from_env) else ""
            problems.append(f"{_format_loc(loc)}: {_describe(error)}{origin}")
    if problems:
        raise ConfigError(problems)
    settings._config_path = path
    return settings


def _resolve_key_files(data: dict[str, Any], env: Mapping[str, str], config_dir: Path) -> None:
    """Make each relative `api_key_file` absolute, in place: under $CREDENTIALS_DIRECTORY when it
    is set (systemd's LoadCredential=, so `api_key_file = "sequentum"` names a credential), else
    under the config file's directory."""
    sources = data.get("sources")
    if not isinstance(sources, list):
        return  # validation reports it
    credentials = env.get("CREDENTIALS_DIRECTORY")
    base = Path(credentials) if credentials else config_dir
    for source in sources:
        key_file = source.get("api_key_file") if isinstance(source, dict) else None
        if isinstance(key_file, str) and key_file.strip():
            source["api_key_file"] = str(base / key_file)  # an absolute key_file stays as it is


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError([f"config: {path}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"config: {path}: not UTF-8 text"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message ends "(at line L, column C)"
        raise ConfigError([f"config: {path}: {exc}"]) from None


def _expand_references(node: Any, env: Mapping[str, str], loc: Loc) -> list[tuple[Loc, str]]:
    """Replace `${NAME}` in every string under `node`, in place; return the problems by location.

    A string with a problem keeps its text, and `load_settings` drops the validation errors it
    then causes, so each mistake is reported once.
    """
    problems: list[tuple[Loc, str]] = []
    children: Iterable[tuple[str | int, Any]]
    if isinstance(node, dict):
        children = list(node.items())
    elif isinstance(node, list):
        children = list(enumerate(node))
    else:
        return problems
    for key, value in children:
        if isinstance(value, str):
            expanded, missing = _expand_string(value, env)
            problems += [((*loc, key), message) for message in missing]
            if not missing:
                node[key] = expanded
        else:
            problems += _expand_references(value, env, (*loc, key))
    return problems


def _expand_string(value: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """`value` with its references replaced, and a message for each one that cannot be."""
    problems: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name = match.group("name")
        if name is None:
            problems.append("malformed ${...} reference (write $${ for a literal ${)")
            return ""
        if name not in env:
            problems.append(f"environment variable {name} is not set")
            return ""
        return env[name]

    return _REFERENCE.sub(replace, value), problems


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' env source reading a given mapping instead of `os.environ`."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._env = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._env, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The values the environment sets, as a nested dict like the TOML's, and its problems."""
    problems: list[str] = []
    by_name = {name.lower(): name for name in env}
    env = dict(env)
    for field in Settings.model_fields:  # WATCHER_<FIELD> holds JSON for every top-level field
        name = by_name.get(f"{ENV_PREFIX}{field}".lower())
        if name is None:
            continue
        try:
            json.loads(env[name])
        except json.JSONDecodeError as exc:
            problems.append(
                f"{name}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
            )
            del env[name]
    try:
        overrides = _MappingEnvSource(Settings, env)()
    except SettingsError as exc:  # not expected after the JSON check; never show the value
        return {}, [*problems, f"environment: cannot read the {ENV_PREFIX}* variables: {exc}"]
    if isinstance(overrides.get("sources"), dict):
        problems.append(
            f"{ENV_PREFIX}SOURCES__*: per-source variables are not supported; set "
            f"{ENV_PREFIX}SOURCES to a JSON list, or use ${{NAME}} in the file"
        )
        del overrides["sources"]
    shorthands = {
        field: env[by_name[f"{ENV_PREFIX}{field}".lower()]]
        for field in WatcherSection.model_fields
        if f"{ENV_PREFIX}{field}".lower() in by_name
    }
    section = overrides.get("watcher")
    if shorthands and section is None:
        overrides["watcher"] = shorthands
    elif shorthands and isinstance(section, dict):
        section.update(shorthands)
    # else WATCHER_WATCHER is JSON but not an object: validation reports "must be a table"
    return overrides, problems


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `override` applied: tables merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _leaf_paths(tree: Mapping[str, Any], loc: Loc = ()) -> list[Loc]:
    """The locations of the non-table values in `tree`."""
    paths: list[Loc] = []
    for key, value in tree.items():
        if isinstance(value, Mapping):
            paths += _leaf_paths(value, (*loc, key))
        else:
            paths.append((*loc, key))
    return paths


def _under_any(loc: Loc, prefixes: Iterable[Loc]) -> bool:
    """Whether `loc` is one of `prefixes` or lies inside one."""
    return any(loc[: len(prefix)] == prefix for prefix in prefixes)
