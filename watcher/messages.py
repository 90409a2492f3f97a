"""What an alert says: a title and a body for each event, and digests for bursts.

Pure: no I/O. Messages are Jinja2 templates rendered in a sandboxed environment, with a default
per event type; a subscription may override the title and the body. Templates are compiled and
test-rendered against sample events when the config loads, so a broken template is a config
error at start-up rather than a silent failure at 3 a.m.; should a user template still fail at
render time, the default is used and nothing is lost.

The context of a template is `event` (the event's JSON fields, plus `counts` and type-specific
fields), and these helpers: `agent` ("steam (2537)"), `title_outcome` ("failed"), `duration`
("2m 41s"), `subscription` (its name), `streak` ("3 failures in a row since 2026-11-23 02:00
UTC (10h 1m); last success 2026-11-22 14:00 UTC", for a failure), `when(value)` (a time of the event in the
display time zone, without microseconds: "2026-11-23 13:00:41 CET") and `host` (the machine
watcher runs on). `event.failed_steps` is a list of steps with `key`, `name` and `error`;
`{{ step }}` reads "fetch (Fetch page): HTTP 500".

What a person acts on comes first: the failed steps of an automation run and the log of an ACC
run open the body of a failure; the host in the footer says which watcher sent it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from jinja2 import TemplateError, TemplateSyntaxError, Undefined
from jinja2.sandbox import SandboxedEnvironment

from watcher.codec import parse_iso
from watcher.durations import duration_of
from watcher.events import Event, EventType
from watcher.message_samples import SAMPLES
from watcher.runs import Outcome

__all__ = ["Display", "Message", "Templates", "check_template", "duration_of", "render_digests"]

DIGEST_LINES = 40
"""Events listed in one digest message; a larger burst is sent in parts."""
DIGEST_MESSAGE = 120
"""Characters of the platform's message shown in a digest line."""

_env = SandboxedEnvironment(
    autoescape=False, trim_blocks=True, lstrip_blocks=True, undefined=Undefined
)

ICONS = {
    "failure": "❌",
    "stopped": "⏹️",
    "success": "✅",
    "skipped": "⏭️",
    EventType.RUN_REOPENED: "🔁",
    EventType.RUN_WARNING: "⚠️",
    EventType.RUN_UNKNOWN_STATUS: "❔",
    EventType.SOURCE_FAILED: "🔌",
    EventType.SOURCE_RECOVERED: "🔌",
}

VERBS = {"failure": "failed", "stopped": "was stopped", "success": "succeeded",
         "skipped": "was skipped"}  # fmt: skip

TITLES: dict[str, str] = {
    EventType.RUN_FINISHED: "{{ icon }} {{ agent }} {{ title_outcome }} (run {{ event.run_id }})",
    EventType.RUN_REOPENED: "🔁 {{ agent }}: run {{ event.run_id }} restarted after {{ event.previous_status }}",
    EventType.RUN_WARNING: "⚠️ {{ agent }}: run {{ event.run_id }} is failing ({{ event.status }})",
    EventType.RUN_UNKNOWN_STATUS: "❔ {{ agent }}: run {{ event.run_id }} has an unknown status {{ event.status }}",
    EventType.RUN_DISCOVERED: "{{ agent }}: new run {{ event.run_id }} ({{ event.status }})",
    EventType.SOURCE_FAILED: "🔌 watcher cannot read {{ event.source }}",
    EventType.OUTPUT_FETCHED: "📦 {{ agent }}: outputs of run {{ event.run_id }} fetched ({{ event.files }} file{{ 's' if event.files != 1 }})",
    EventType.OUTPUT_FAILED: "📦 {{ agent }}: outputs of run {{ event.run_id }} could not be fetched",
    EventType.SOURCE_RECOVERED: "🔌 watcher reads {{ event.source }} again",
    EventType.RUN_STUCK: "⏳ {{ agent }}: run {{ event.run_id }} is stuck ({{ event.status }} for {{ duration_of(event.running_s) }})",
    EventType.AGENT_MISSED_SCHEDULE: "📅 {{ agent }}: no run started for the {{ when(event.expected_at) }} slot",
    EventType.RUN_ANOMALY: "🔍 {{ agent }}: run {{ event.run_id }} {{ title_outcome }}, but {{ event.message }}",
    EventType.RUN_RETRY_REQUESTED: "🔁 {{ agent }}: retry {{ event.try }} of run {{ event.run_id }} requested",
    EventType.STATE_RESTORED: "💾 watcher wrote its state file back",
    EventType.AGENT_FLAPPING: "🔀 {{ agent }} is flapping: its alerts are held until it is stable",
}  # fmt: skip
DEFAULT_TITLE = "{{ event.type }} {{ agent }}"

RUN_BODY = """\
{% set failing = event.outcome in ("failure", "stopped") or event.type == "run.warning" %}
{% set log_first = failing and event.log_path %}
{% if event.failed_steps %}Failed steps:
{% for step in event.failed_steps %}- {{ step }}
{% endfor %}{% endif %}
{% if log_first %}Log: {{ event.log_path }}
{% endif %}
{% if event.failed_steps or log_first %}

{% endif %}
{% if event.message %}{{ event.message }}

{% endif %}
{% if streak %}{{ streak }}

{% endif %}
{% if event.retry %}A retry is under way: try {{ event.retry.try }} of {{ event.retry.of }}, at {{ when(event.retry.at) }}.

{% elif event.retries_tried %}Retried {{ event.retries_tried }} time(s) already; no more retries.

{% endif %}
{% for note in event.notes %}{{ note }}
{% endfor %}{% if event.notes %}

{% endif %}
Agent: {{ agent }}
Run: {{ event.run_id }}{% if event.attempt %} (attempt {{ event.attempt + 1 }}){% endif %}

Status: {{ event.status }}{% if event.status_code is not none %} ({{ event.status_code }}){% endif %}
{% if event.previous_status %} (was {{ event.previous_status }}){% endif %}
{% if event.outcome %} → {{ event.outcome }}{% if event.with_errors %}, with errors{% endif %}{% endif %}

{% if event.started_at %}Started: {{ when(event.started_at) }}
{% endif %}
{% if event.ended_at %}Ended: {{ when(event.ended_at) }}{% if duration %} ({{ duration }}){% endif %}

{% endif %}
{% if counts %}{{ counts }}
{% endif %}
{% if event.diagnostics %}
{% if event.diagnostics.possibleCauses %}Possible causes:
{% for cause in event.diagnostics.possibleCauses %}- {{ cause }}
{% endfor %}{% endif %}
{% if event.diagnostics.suggestedActions %}Suggested actions:
{% for action in event.diagnostics.suggestedActions %}- {{ action }}
{% endfor %}{% endif %}
{% endif %}
{% if event.reason %}Reason: {{ event.reason }}
{% endif %}
{% if event.output_paths %}Outputs:
{% for path in event.output_paths %}- {{ path }}
{% endfor %}{% endif %}
{% if event.log_path and not log_first %}Log: {{ event.log_path }}
{% endif %}
{% if event.url %}Link: {{ event.url }}
{% endif %}
Source: {{ event.source }} ({{ event.source_kind }})
{% if host %}Sent by watcher on {{ host }}{% endif %}"""

SOURCE_BODY = """\
{% if event.message %}{{ event.message }}
{% endif %}
Source: {{ event.source }} ({{ event.source_kind }})
{% if event.error %}Error kind: {{ event.error }}{% if event.http_status %} (HTTP {{ event.http_status }}){% endif %}

{% endif %}
{% if event.down_s is not none and event.down_s is defined %}Down for: {{ duration_of(event.down_s) }}
{% endif %}
Since: {{ when(event.ts) }}
{% if host %}Sent by watcher on {{ host }}{% endif %}"""

MISSED_BODY = """\
No run started within {{ duration_of(event.grace_s) }} of its expected start.

Agent: {{ agent }}
Expected: {{ when(event.expected_at) }}
Schedule: {{ event.schedule }}{% if event.rule %} (rule {{ event.rule }}){% endif %}

{% set last = event.last_run %}
Last run: {% if last %}{{ last.run_id }}, {{ last.status }}{% if last.started_at %}, started {{ when(last.started_at) }}{% elif last.ended_at %}, ended {{ when(last.ended_at) }}{% endif %}{% else %}none on record{% endif %}

{% if event.url %}Link: {{ event.url }}
{% endif %}
Source: {{ event.source }} ({{ event.source_kind }})
{% if host %}Sent by watcher on {{ host }}{% endif %}"""
"""A missed slot: when, by which schedule, when the agent last ran, and the link to that run."""


@dataclass(frozen=True, slots=True)
class Display:
    """How alerts show times, and where they say they come from: the `[watcher]
    display_timezone` and the host watcher runs on. Passed in, so rendering stays pure."""

    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    host: str = ""

    def when(self, value: Any, *, seconds: bool = True) -> str:
        """A time (ISO text or datetime) in the display time zone, without microseconds:
        "2026-11-23 13:00:41 CET" ("2026-11-23 13:00 CET" without seconds); "" for none, and
        text that is not a time as it is."""
        moment = value if isinstance(value, datetime) else parse_iso(value)
        if moment is None:
            return "" if value is None else str(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        shape = "%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z"
        return moment.astimezone(self.timezone).strftime(shape)


class Step(NamedTuple):
    """A failed step, whatever shape the event carries it in: `step.key`, `step[0]` and
    `{% for key, name, error in … %}` all work in a template."""

    key: str
    name: str | None
    error: str | None

    def __str__(self) -> str:
        text = self.key + (f" ({self.name})" if self.name and self.name != self.key else "")
        return text + (f": {self.error}" if self.error else "")


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    body: str


class Templates:
    """The title and body templates of one subscription (defaults where not overridden)."""

    def __init__(
        self, title: str | None = None, body: str | None = None, display: Display | None = None
    ) -> None:
        self.title = _env.from_string(title) if title else None
        self.body = _env.from_string(body) if body else None
        self.display = display or Display()

    def render(self, event: Event, subscription: str = "") -> Message:
        context = context_of(event, subscription, self.display)
        title = body = None
        try:
            if self.title is not None:
                title = self.title.render(context)
            if self.body is not None:
                body = self.body.render(context)
        except TemplateError:
            title = body = None  # fall back to the defaults: an alert is never lost to a template
        return Message(
            title=_one_line(title or _default_title(event).render(context)),
            body=(body or _default_body(event).render(context)).strip(),
        )


def render_digests(
    events: Sequence[Event], subscription: str, display: Display | None = None
) -> list[tuple[Sequence[Event], Message]]:
    """A burst of events as digests of at most `DIGEST_LINES` lines, one line per event: one
    message, or several titled "part 1/2", "part 2/2", each with the events it lists."""
    display = display or Display()
    footer = f"\n\nSent by watcher on {display.host}" if display.host else ""
    tally = Counter(e.outcome.value if e.outcome else e.type for e in events)
    summary = ", ".join(f"{n} {_plural(k, n)}" for k, n in tally.most_common())
    title = f"watcher: {len(events)} events for {subscription} ({summary})"
    chunks = [events[i : i + DIGEST_LINES] for i in range(0, len(events), DIGEST_LINES)]
    digests = []
    for n, chunk in enumerate(chunks, 1):
        part = f", part {n}/{len(chunks)}" if len(chunks) > 1 else ""
        body = "\n".join(f"- {_digest_line(e, display)}" for e in chunk) + footer
        digests.append((chunk, Message(title=_one_line(title + part), body=body)))
    return digests


def check_template(text: str) -> str | None:
    """None if `text` is a usable template, else a one-line description of the problem."""
    try:
        template = _env.from_string(text)
    except TemplateSyntaxError as err:
        return f"template error at line {err.lineno}: {err.message}"
    for sample in SAMPLES:
        try:
            template.render(context_of(sample, "sample", Display(host="sample-host")))
        except TemplateError as err:
            return f"template error with a {sample.type} event: {err}"
    return None


def context_of(event: Event, subscription: str, display: Display | None = None) -> dict[str, Any]:
    display = display or Display()
    data = event.to_dict()
    if "failed_steps" in data:
        data["failed_steps"] = steps_of(data["failed_steps"])
    label = event.agent_name or event.agent_id or ""
    if event.agent_name and event.agent_id and event.agent_name != event.agent_id:
        label = f"{event.agent_name} ({event.agent_id})"
    outcome = event.outcome.value if event.outcome else None
    recovered = outcome == "success" and event.get("agent_previous_outcome") == "failure"
    return {
        "event": data,
        "agent": label,
        "icon": ICONS.get(outcome or event.type, "•"),
        "title_outcome": "recovered" if recovered else VERBS.get(outcome or "", event.type),
        "duration": duration_of(event.duration_s),
        "duration_of": duration_of,
        "counts": _counts_line(data.get("counts")),
        "subscription": subscription,
        "streak": streak_of(event, display),
        "when": display.when,
        "host": display.host,
    }


def streak_of(event: Event, display: Display) -> str:
    """How long an agent has been failing, for a failure: "3 failures in a row since
    2026-11-23 02:00 UTC (10h 1m); last success 2026-11-22 14:00 UTC" (from the standing a
    `run.finished` event carries); "" for anything else."""
    failures = event.get("failures_in_a_row")
    if event.outcome is not Outcome.FAILURE or not isinstance(failures, int) or failures < 1:
        return ""
    text = "First failure" if failures == 1 else f"{failures} failures in a row"
    since = parse_iso(event.get("failing_since"))
    if failures > 1 and since is not None:
        text += f" since {display.when(since, seconds=False)}"
        now = event.ended_at or event.ts
        if now > since:
            text += f" ({duration_of((now - since).total_seconds())})"
    last = event.get("last_success")
    if last:
        return f"{text}; last success {display.when(last, seconds=False)}"
    return f"{text}; no success on record"


def steps_of(value: Any) -> list[Step]:
    """Failed steps as `Step`s, from `(key, name, error)` tuples, their JSON lists, or
    `{key, name, error}` objects; anything else is left out."""
    if not isinstance(value, list | tuple):
        return []
    steps = []
    for item in value:
        if isinstance(item, Mapping):
            fields = [item.get("key"), item.get("name"), item.get("error")]
        elif isinstance(item, list | tuple):
            fields = [*item[:3], None, None, None][:3]
        else:
            continue
        key, name, error = (None if f is None else _one_line(str(f)) for f in fields)
        steps.append(Step(key or "?", name or None, error or None))
    return steps


def _default_title(event: Event):  # type: ignore[no-untyped-def]
    return _compiled(TITLES.get(event.type, DEFAULT_TITLE))


def _default_body(event: Event):  # type: ignore[no-untyped-def]
    if event.type == EventType.AGENT_MISSED_SCHEDULE:
        return _compiled(MISSED_BODY)
    return _compiled(RUN_BODY if event.run_id else SOURCE_BODY)


_cache: dict[str, Any] = {}


def _compiled(text: str) -> Any:
    if text not in _cache:
        _cache[text] = _env.from_string(text)
    return _cache[text]


def _digest_line(event: Event, display: Display) -> str:
    """ "❌ steam (2537) failed: run 22552 — Timeout waiting for page to load · LINK": the
    outcome of a finished run, else the event type."""
    context = context_of(event, "", display)
    what = context["title_outcome"] if event.type == EventType.RUN_FINISHED else event.type
    line = f"{context['icon']} {context['agent'] or event.source} {what}"
    if event.run_id:
        line += f": run {event.run_id}"
    if event.message:
        line += f" — {_shorten(event.message, DIGEST_MESSAGE)}"
    return line + (f" · {event.url}" if event.url else "")


def _counts_line(counts: Mapping[str, Any] | None) -> str:
    if not counts:
        return ""
    names = (("pages", "Pages"), ("records", "Records"), ("errors", "Errors"))
    parts = [f"{label} {counts[k]}" for k, label in names if counts.get(k) is not None]
    return " · ".join(parts)


def _plural(key: str, n: int) -> str:
    words = {"failure": "failures", "success": "successes", "stopped": "stopped",
             "skipped": "skipped"}  # fmt: skip
    return words.get(key, key) if n != 1 or key not in words else key


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _shorten(text: str, limit: int) -> str:
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
