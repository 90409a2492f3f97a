"""`[[subscriptions]]` in the config: filters, channel URLs, templates, one line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcher.config import SUBSCRIPTION_EVENTS, load_settings
from watcher.errors import ConfigError
from watcher.events import EventType

SOURCE = """
[[sources]]
name = "cloud"
kind = "sequentum_cloud"
base_url = "https://dashboard.sequentum.com"
api_key = "k-123456"
"""
SLACK = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#ops"
ROOT = Path(__file__).resolve().parent.parent


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


HOOK = "webhook+https://hooks.example.com/watcher?token=hook-token-canary-42"


def test_webhook_urls_and_their_secret_file(tmp_path: Path) -> None:
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "hook.secret").write_text("  signing-secret-canary \n")
    (tmp_path / "beside.secret").write_text("beside-secret-canary")
    text = f'[[subscriptions]]\nname = "ops"\nurls = ["{HOOK}"]\nsecret_file = "hook.secret"\n'
    settings = load(tmp_path, text, {"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")})
    (sub,) = settings.subscriptions
    assert sub.url_values() == [HOOK] and sub.secret() == "signing-secret-canary"
    assert sub.secret_file == tmp_path / "creds" / "hook.secret"
    assert "signing-secret-canary" not in repr(settings) and "hook-token" not in repr(settings)
    text = text.replace("hook.secret", "beside.secret")
    assert load(tmp_path, text).subscriptions[0].secret() == "beside-secret-canary"
    plain = load(tmp_path, f'[[subscriptions]]\nname = "ops"\nurls = ["{HOOK}"]\n')
    assert plain.subscriptions[0].secret() is None


def test_webhook_and_secret_file_problems_name_their_key(tmp_path: Path) -> None:
    (tmp_path / "empty.secret").write_text("\n")
    lines = problems(
        tmp_path,
        """
[[subscriptions]]
name = "a"
urls = ["webhook+https:///no-host", "webhook+http://h.example:99999/x"]
secret_file = "missing.secret"

[[subscriptions]]
name = "b"
urls = ["webhook+https://h.example/x"]
secret_file = "empty.secret"

[[subscriptions]]
name = "c"
urls = ["json://h.example/x"]
secret_file = "empty.secret"

[[subscriptions]]
name = "d"
urls = ["webhook+https://h.example/x"]
secret_file = ""
""",
    )
    assert lines == [
        "subscriptions[0].urls[0]: not a usable webhook URL (webhook+https://HOST/PATH)",
        "subscriptions[0].urls[1]: webhook URL: port out of range",
        f"subscriptions[1].secret_file: file is empty: {tmp_path / 'empty.secret'}",
        "subscriptions[2].secret_file: signs webhook+ URLs only, and this subscription has none",
        "subscriptions[3].secret_file: must not be empty",
    ]
    one = problems(tmp_path, '[[subscriptions]]\nname = "a"\nurls = ["webhook+https://h.example/x"]\n'
                   'secret_file = "missing.secret"\n')  # fmt: skip
    assert one == [
        f"subscriptions[0].secret_file: cannot read {tmp_path / 'missing.secret'}: "
        "No such file or directory"
    ]


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "UTC", " Asia/Tokyo "])
def test_display_timezone_is_an_iana_name(tmp_path: Path, zone: str) -> None:
    settings = load(tmp_path, f'[watcher]\ndisplay_timezone = "{zone}"\n')
    assert settings.watcher.display_timezone == zone.strip()


@pytest.mark.parametrize("zone", ["Mars/Olympus", "utc", "Europe", "", "../../etc/passwd", "CEST"])
def test_an_unknown_display_timezone_is_one_line(tmp_path: Path, zone: str) -> None:
    assert problems(tmp_path, f'[watcher]\ndisplay_timezone = "{zone}"\n') == [
        'watcher.display_timezone: not a time zone: use an IANA name such as "Europe/Berlin"'
    ]


def test_on_names_every_event_type_a_channel_can_be_told_of(tmp_path: Path) -> None:
    """A new event type is accepted in `on`, or left out on purpose: never forgotten."""
    never_named = {
        EventType.RUN_FINISHED,  # named by its outcome
        EventType.SOURCE_BASELINED,
        EventType.RUN_STATUS_CHANGED,
        EventType.AGENT_FLAPPING,  # sent on the channel holding the agent's alerts
        EventType.NOTIFICATION_SENT,
        EventType.NOTIFICATION_FAILED,
        EventType.NOTIFICATION_SUPPRESSED,
    }
    named = [str(t) for t in EventType if t not in never_named]
    assert sorted(named) == sorted(SUBSCRIPTION_EVENTS[1:])
    on = ", ".join(f'"{t}"' for t in named)
    (sub,) = load(
        tmp_path, f'[[subscriptions]]\nname = "all"\nurls = ["{SLACK}"]\non = [{on}]\n'
    ).subscriptions
    assert sub.on == named
    example = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    assert [t for t in named if t not in example] == []  # and each is documented
