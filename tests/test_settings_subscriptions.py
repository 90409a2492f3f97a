"""`[[subscriptions]]` in the config: filters, channel URLs, templates, one line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcher.config import load_settings
from watcher.errors import ConfigError

SOURCE = """
[[sources]]
name = "cloud"
kind = "sequentum_cloud"
base_url = "https://dashboard.sequentum.com"
api_key = "k-123456"
"""
SLACK = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#ops"


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None):
    path = tmp_path / "watcher.toml"
    path.write_text(SOURCE + text)
    return load_settings(path, env or {})


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value.problems


def test_defaults_and_references(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        '[[subscriptions]]\nname = "ops"\nurls = ["${HOOK}"]\nagents = [2537, "amazon-*"]\n',
        {"HOOK": SLACK},
    )
    (sub,) = settings.subscriptions
    assert sub.url_values() == [SLACK]
    assert (sub.on, sub.sources, sub.agents) == (["failure"], [], ["2537", "amazon-*"])
    assert (sub.group_threshold, sub.group_wait, sub.max_age, sub.format) == (
        5,
        30.0,
        86400.0,
        "text",
    )
    assert "TIiajkdnlazkcOXrIdevi7FQ" not in repr(settings)


def test_every_problem_is_one_line_naming_the_key(tmp_path: Path, caplog) -> None:
    lines = problems(
        tmp_path,
        f"""
[[subscriptions]]
name = "ops"
urls = ["{SLACK}", "nonsense-with-token-abc123", "mailto://nobody"]
on = ["failure", "exploded"]
title = "{{{{ event.run_id"
group_threshold = 0

[[subscriptions]]
name = "ops"
urls = []
""",
    )
    assert lines == [
        "subscriptions[0].urls[1]: not a usable apprise URL (check its scheme and required parts)",
        "subscriptions[0].urls[2]: not a usable apprise URL (check its scheme and required parts)",
        'subscriptions[0].on: unknown trigger "exploded" (one of failure, stopped, success, '
        "skipped, recovered, run.reopened, run.warning, run.unknown_status, run.discovered, "
        "source.failed, source.recovered, output.fetched, output.failed, run.stuck, "
        "agent.missed_schedule, run.anomaly, run.retry_requested, state.restored)",
        "subscriptions[0].title: template error at line 1: unexpected end of template, "
        "expected 'end of print statement'.",
        "subscriptions[0].group_threshold: must be >= 1",
        "subscriptions[1].urls: must have at least 1 item(s)",
        'subscriptions[1].name: duplicate subscription name "ops"',
    ]
    assert not any("abc123" in line for line in lines)
    assert "abc123" not in caplog.text  # apprise logs rejected URLs verbatim: kept quiet


def test_unknown_source_is_named(tmp_path: Path) -> None:
    lines = problems(
        tmp_path, f'[[subscriptions]]\nname = "ops"\nurls = ["{SLACK}"]\nsources = ["clowd"]\n'
    )
    assert lines == ['subscriptions[0].sources: unknown source "clowd"']


def test_a_template_that_fails_on_sample_events_is_refused(tmp_path: Path) -> None:
    lines = problems(
        tmp_path,
        f'[[subscriptions]]\nname = "ops"\nurls = ["{SLACK}"]\n'
        'body = "{{ event.run_id.nope() }}"\n',
    )
    assert len(lines) == 1 and lines[0].startswith("subscriptions[0].body: template error")


def test_the_sandbox_refuses_unsafe_templates(tmp_path: Path) -> None:
    lines = problems(
        tmp_path,
        f'[[subscriptions]]\nname = "ops"\nurls = ["{SLACK}"]\n'
        "title = \"{{ ''.__class__.__mro__[1].__subclasses__() }}\"\n",
    )
    assert len(lines) == 1 and "template error" in lines[0]


def test_a_template_that_fails_on_failed_steps_is_refused(tmp_path: Path) -> None:
    lines = problems(
        tmp_path,
        f'[[subscriptions]]\nname = "ops"\nurls = ["{SLACK}"]\n'
        'body = "{% for step in event.failed_steps %}{{ step.error.nope() }}{% endfor %}"\n',
    )
    assert len(lines) == 1 and lines[0].startswith("subscriptions[0].body: template error")
