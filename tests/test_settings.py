"""Tests of watcher.config: models, TOML loading, ${NAME} references, env overrides, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from watcher.config import (
    DEFAULT_SEARCH_PATHS,
    Settings,
    SourceConfig,
    SubscriptionConfig,
    WatcherSection,
    describe_validation_error,
    find_config,
    load_settings,
)
from watcher.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
CANARY = "canary-secret-123"

SOURCE = """
[[sources]]
name = "cloud"
kind = "sequentum_cloud"
base_url = "https://dashboard.sequentum.com"
"""
"""A source without credentials: tests add `api_key` / `api_key_file` and other keys."""

VALID = SOURCE + 'api_key = "k"\n'


def write(directory: Path, text: str, name: str = "watcher.toml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def load(directory: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    return load_settings(write(directory, text), env or {})


def problems(directory: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(directory, text, env)
    return caught.value.problems


# --- defaults and construction in code -----------------------------------------------------------


def test_defaults_without_a_file() -> None:
    settings = Settings()
    assert settings.watcher == WatcherSection()
    assert settings.watcher.state_path == Path("/var/lib/watcher/state.db")
    assert settings.watcher.events_path == Path("/var/lib/watcher/events.jsonl")
    assert settings.watcher.log_format == "auto"
    assert settings.watcher.log_level == "info"
    assert settings.watcher.shutdown_timeout == 10.0
    assert settings.sources == []
    assert settings.config_path is None


def test_source_defaults_and_normalisation(tmp_path: Path) -> None:
    path = write(tmp_path, SOURCE.replace("sequentum.com", "sequentum.com/") + 'api_key = " k "\n')
    settings = load_settings(path, {})
    source = settings.sources[0]
    assert settings.config_path == path
    assert source.base_url == "https://dashboard.sequentum.com"
    assert source.secret() == "k"
    assert source.api_key_file is None
    assert source.auth == "apikey"
    assert source.agents == ["*"]
    assert (source.poll_interval, source.poll_interval_active) == (60.0, 15.0)
    assert (source.jitter, source.timeout) == (2.0, 30.0)
    assert (source.max_records, source.max_concurrency, source.retries) == (50, 64, 3)
    assert (source.requests_per_minute, source.sweep_interval, source.use_hints) == (90, 900, True)
    assert source.dashboard_url is None
    assert source.enabled is True


def test_code_construction_like_the_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHER_LOG_FORMAT", "json")  # ignored: only load_settings reads env
    monkeypatch.setenv("WATCHER_SOURCES", "[]")
    settings = Settings(
        watcher=WatcherSection(
            state_path=tmp_path / "state.db",
            events_path=tmp_path / "events.jsonl",
            log_format="console",
        ),
        sources=[
            SourceConfig(
                name="demo",
                kind="sequentum_cloud",
                base_url="http://127.0.0.1:1234",
                api_key="sim-key",  # type: ignore[arg-type]  # pydantic turns it into SecretStr
                agents=["*"],
                poll_interval=5,
                poll_interval_active=1,
            )
        ],
    )
    assert settings.watcher.log_format == "console"
    assert settings.watcher.state_path == tmp_path / "state.db"
    assert [source.name for source in settings.sources] == ["demo"]
    assert settings.sources[0].secret() == "sim-key"
    assert settings.sources[0].poll_interval_active == 1.0


CHANNEL_ENV = {
    "SLACK_WEBHOOK": "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#ops",
    "SMTP_PASSWORD": "smtp-secret",
}


def test_example_file_loads() -> None:
    settings = load_settings(EXAMPLE, {"SEQUENTUM_API_KEY": "from-env", **CHANNEL_ENV})
    assert [s.name for s in settings.subscriptions] == ["oncall", "pricing-data"]
    assert settings.config_path == EXAMPLE
    assert settings.watcher == WatcherSection()
    [source] = settings.sources
    assert source.name == "cloud"
    assert source.kind == "sequentum_cloud"
    assert source.secret() == "from-env"
    assert source.agents == ["2537", "1596"]
    assert source.dashboard_url == "https://dashboard.sequentum.com/agents/{agent_id}/runs/{run_id}"


def test_example_file_needs_its_api_key_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(EXAMPLE, CHANNEL_ENV)
    assert caught.value.problems == [
        "sources[0].api_key: environment variable SEQUENTUM_API_KEY is not set"
    ]


def test_example_file_documents_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    keys = [
        *WatcherSection.model_fields,
        *SourceConfig.model_fields,
        *SubscriptionConfig.model_fields,
    ]
    missing = [key for key in keys if f"\n{key} = " not in text and f"#   {key} = " not in text]
    assert missing == []


# --- values --------------------------------------------------------------------------------------


def test_watcher_section_values(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        '[watcher]\nstate_path = "/tmp/s.db"\nevents_path = ""\n'
        'log_format = "Console"\nlog_level = "WARNING"\nshutdown_timeout = 2.5\n',
    )
    assert settings.watcher == WatcherSection(
        state_path=Path("/tmp/s.db"),
        events_path=None,
        log_format="console",
        log_level="warning",
        shutdown_timeout=2.5,
    )


def test_agents_are_normalised_to_text(tmp_path: Path) -> None:
    settings = load(tmp_path, VALID + 'agents = [2537, "1596", " 7 "]\n')
    assert settings.sources[0].agents == ["2537", "1596", "7"]


def test_poll_interval_active_defaults_to_poll_interval_when_shorter(tmp_path: Path) -> None:
    settings = load(tmp_path, VALID + "poll_interval = 5\n")
    assert settings.sources[0].poll_interval_active == 5.0


def test_numbers_as_strings_are_accepted(tmp_path: Path) -> None:
    settings = load(tmp_path, VALID + 'poll_interval = "30"\nmax_records = "10"\n')
    assert (settings.sources[0].poll_interval, settings.sources[0].max_records) == (30.0, 10)


def test_several_sources(tmp_path: Path) -> None:
    second = VALID.replace('"cloud"', '"cloud-2"') + 'auth = "bearer"\nenabled = false\n'
    settings = load(tmp_path, VALID + second)
    assert [(s.name, s.auth, s.enabled) for s in settings.sources] == [
        ("cloud", "apikey", True),
        ("cloud-2", "bearer", False),
    ]


# --- one line per problem, naming the key --------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            '[watcher]\nlog_format = "xml"\n',
            "watcher.log_format: must be one of 'auto', 'json' or 'console'",
        ),
        (
            '[watcher]\nlog_level = "verbose"\n',
            "watcher.log_level: must be one of 'debug', 'info', 'warning' or 'error'",
        ),
        ("[watcher]\ncolour = 1\n", "watcher.colour: unknown key"),
        ('[watcher]\nstate_path = ""\n', "watcher.state_path: must not be empty"),
        ("[watcher]\nstate_path = 3\n", "watcher.state_path: must be a path"),
        ("[watcher]\nshutdown_timeout = 0\n", "watcher.shutdown_timeout: must be > 0"),
        (
            "[watcher]\nshutdown_timeout = inf\n",
            "watcher.shutdown_timeout: must be a finite number",
        ),
        ('watcher = "json"\n', "watcher: must be a table"),
        ("colour = 1\n", "colour: unknown key"),
        ('_env_file = ".env"\n', "_env_file: unknown key"),
        ('sources = "cloud"\n', "sources: must be a list"),
        (VALID + "colour = 1\n", "sources[0].colour: unknown key"),
        (VALID.replace('name = "cloud"\n', ""), "sources[0].name: required"),
        (
            VALID.replace('"cloud"', '"my cloud"'),
            "sources[0].name: must be 1-64 characters of A-Z a-z 0-9 _ . -",
        ),
        (
            VALID.replace('"cloud"', '"' + "x" * 65 + '"'),
            "sources[0].name: must be 1-64 characters of A-Z a-z 0-9 _ . -",
        ),
        (
            VALID.replace('"sequentum_cloud"', '"sequentum_rpa"'),
            "sources[0].kind: must be one of 'automation_runs', 'sequentum_acc', 'sequentum_cloud'",
        ),
        (
            VALID.replace("https://dashboard.sequentum.com", "dashboard"),
            "sources[0].base_url: not a URL",
        ),
        (VALID.replace("https://", "ftp://"), "sources[0].base_url: not a URL"),
        (
            VALID.replace("https://dashboard.sequentum.com", "https://"),
            "sources[0].base_url: not a URL",
        ),
        (VALID.replace(".com", ".com:99999"), "sources[0].base_url: not a URL"),
        (VALID.replace("dashboard.", "dash board."), "sources[0].base_url: not a URL"),
        (
            VALID.replace("https://", "https://me:pw@"),
            "sources[0].base_url: must not contain user:password@ (credentials belong in api_key)",
        ),
        (
            VALID.replace(".com", ".com/?x=1"),
            "sources[0].base_url: must not have a query or fragment",
        ),
        (SOURCE, "sources[0].api_key: required (or api_key_file)"),
        (
            VALID + 'api_key_file = "/run/key"\n',
            "sources[0].api_key_file: give api_key or api_key_file, not both",
        ),
        (SOURCE + 'api_key = "  "\n', "sources[0].api_key: must not be empty"),
        (SOURCE + "api_key = 12\n", "sources[0].api_key: must be a string"),
        (SOURCE + 'api_key_file = ""\n', "sources[0].api_key_file: must not be empty"),
        (
            VALID + 'auth = "basic"\n',
            "sources[0].auth: must be one of 'apikey', 'bearer' or 'x-api-key'",
        ),
        (
            VALID + 'auth = "x-api-key"\n',
            "sources[0].auth: must be 'apikey' or 'bearer' for kind sequentum_cloud",
        ),
        (VALID + "watch_jobs = true\n", "sources[0].watch_jobs: only for kind sequentum_acc"),
        (VALID + "max_pages = 2\n", "sources[0].max_pages: only for kind automation_runs"),
        (
            VALID + "agents = []\n",
            'sources[0].agents: must not be empty; use ["*"] for every agent',
        ),
        (
            VALID + 'agents = ["*", 12]\n',
            'sources[0].agents: "*" cannot be combined with agent ids',
        ),
        (
            VALID + 'agents = "*"\n',
            'sources[0].agents: must be a list of agent ids, or ["*"] for every agent',
        ),
        (VALID + "agents = [12, 0]\n", "sources[0].agents[1]: must be a positive integer agent id"),
        (VALID + 'agents = ["abc"]\n', "sources[0].agents[0]: must be a positive integer agent id"),
        (VALID + "agents = [1.5]\n", "sources[0].agents[0]: must be a positive integer agent id"),
        (VALID + "agents = [true]\n", "sources[0].agents[0]: must be a positive integer agent id"),
        (VALID + 'agents = [12, "12"]\n', "sources[0].agents[1]: duplicate agent id"),
        (VALID + "poll_interval = 0.5\n", "sources[0].poll_interval: must be >= 1"),
        (VALID + 'poll_interval = "often"\n', "sources[0].poll_interval: must be a number"),
        (VALID + "poll_interval_active = 0\n", "sources[0].poll_interval_active: must be >= 1"),
        (
            VALID + "poll_interval = 30\npoll_interval_active = 31\n",
            "sources[0].poll_interval_active: must be <= poll_interval",
        ),
        (VALID + "jitter = -1\n", "sources[0].jitter: must be >= 0"),
        (VALID + "max_records = 0\n", "sources[0].max_records: must be >= 1"),
        (VALID + "max_records = 1001\n", "sources[0].max_records: must be <= 1000"),
        (VALID + "max_records = 2.5\n", "sources[0].max_records: must be an integer"),
        (VALID + 'max_records = "many"\n', "sources[0].max_records: must be an integer"),
        (VALID + "concurrency = 257\n", "sources[0].concurrency: must be <= 256"),
        (VALID + "max_concurrency = 0\n", "sources[0].max_concurrency: must be >= 1"),
        (VALID + "requests_per_minute = -1\n", "sources[0].requests_per_minute: must be >= 0"),
        (VALID + "timeout = 0\n", "sources[0].timeout: must be > 0"),
        (VALID + "retries = 11\n", "sources[0].retries: must be <= 10"),
        (VALID + 'enabled = "maybe"\n', "sources[0].enabled: must be true or false"),
        (
            VALID + 'dashboard_url = "https://x/{agent}/{run_id}"\n',
            "sources[0].dashboard_url: may only use the fields "
            "{agent_id}, {agent_name}, {run_id}, {source}",
        ),
        (
            VALID + 'dashboard_url = "https://x/{}"\n',
            "sources[0].dashboard_url: may only use the fields "
            "{agent_id}, {agent_name}, {run_id}, {source}",
        ),
        (
            VALID + 'dashboard_url = "https://x/{agent_id.real}"\n',
            "sources[0].dashboard_url: may only use the fields "
            "{agent_id}, {agent_name}, {run_id}, {source}",
        ),
        (
            VALID + 'dashboard_url = "https://x/{run_id"\n',
            "sources[0].dashboard_url: not a valid template (write {{ and }} for literal braces)",
        ),
        (
            VALID + 'dashboard_url = "/runs/{run_id}"\n',
            "sources[0].dashboard_url: not a URL",
        ),
        (
            VALID + VALID,
            'sources[1].name: duplicate source name "cloud"',
        ),
    ],
)
def test_problem_lines(tmp_path: Path, toml: str, expected: str) -> None:
    assert problems(tmp_path, toml) == [expected]


def test_dashboard_url_may_use_every_field(tmp_path: Path) -> None:
    template = "https://x/{source}/{agent_name}/{agent_id}/{run_id}?a={{literal}}"
    settings = load(tmp_path, VALID + f'dashboard_url = "{template}"\n')
    assert settings.sources[0].dashboard_url == template


def test_several_problems_give_several_lines(tmp_path: Path) -> None:
    text = (
        '[watcher]\nlog_format = "xml"\n'
        + SOURCE.replace("https://", "ftp://")
        + "colour = 1\nagents = [0]\n"
        + VALID
    )
    assert problems(tmp_path, text) == [
        "watcher.log_format: must be one of 'auto', 'json' or 'console'",
        "sources[0].base_url: not a URL",
        "sources[0].agents[0]: must be a positive integer agent id",
        "sources[0].colour: unknown key",
        "sources[0].api_key: required (or api_key_file)",
        'sources[1].name: duplicate source name "cloud"',
    ]


def test_credential_problems_are_reported_with_the_others(tmp_path: Path) -> None:
    text = SOURCE + "timeout = 0\n" + SOURCE.replace('"cloud"', '"b"') + 'api_key_file = "gone"\n'
    assert problems(tmp_path, text) == [
        "sources[0].timeout: must be > 0",
        "sources[0].api_key: required (or api_key_file)",
        f"sources[1].api_key_file: cannot read {tmp_path / 'gone'}: No such file or directory",
    ]


def test_toml_syntax_error_is_one_line_with_the_position(tmp_path: Path) -> None:
    path = write(tmp_path, '[watcher]\nlog_format = "json\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    [line] = caught.value.problems
    assert line.startswith(f"config: {path}: ")
    assert "line 2" in line


def test_toml_syntax_error_does_not_show_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, SOURCE + f'api_key = "{CANARY}\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    assert len(caught.value.problems) == 1
    assert CANARY not in str(caught.value)


def test_missing_and_undecodable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "absent.toml", {})
    assert caught.value.problems == [
        f"config: {tmp_path / 'absent.toml'}: cannot read: No such file or directory"
    ]
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[watcher]\nstate_path = "caf\xe9"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    assert caught.value.problems == [f"config: {path}: not UTF-8 text"]


def test_describe_validation_error_for_code_built_models() -> None:
    with pytest.raises(ValidationError) as caught:
        SourceConfig.model_validate(
            {"name": "x", "kind": "sequentum_cloud", "base_url": "nope", "api_key": "k"}
        )
    assert describe_validation_error(caught.value) == ["base_url: not a URL"]


# --- ${NAME} references --------------------------------------------------------------------------


def test_references_are_expanded_in_every_string(tmp_path: Path) -> None:
    text = (
        '[watcher]\nstate_path = "${STATE_DIR}/state.db"\n'
        + SOURCE.replace('"cloud"', '"${NAME}-${NAME}"')
        + 'api_key = "${KEY}"\nagents = ["${AGENT}", 2]\n'
    )
    env = {"STATE_DIR": "/srv/w", "NAME": "c", "KEY": "s3cret", "AGENT": "17"}
    settings = load(tmp_path, text, env)
    assert settings.watcher.state_path == Path("/srv/w/state.db")
    assert settings.sources[0].name == "c-c"
    assert settings.sources[0].secret() == "s3cret"
    assert settings.sources[0].agents == ["17", "2"]


def test_double_dollar_is_a_literal_reference(tmp_path: Path) -> None:
    settings = load(tmp_path, SOURCE + 'api_key = "a$${KEY}b$c"\n', {"KEY": "no"})
    assert settings.sources[0].secret() == "a${KEY}b$c"


def test_unset_variable_names_key_and_variable(tmp_path: Path) -> None:
    text = SOURCE + 'api_key = "${SEQUENTUM_API_KEY}"\n'
    assert problems(tmp_path, text) == [
        "sources[0].api_key: environment variable SEQUENTUM_API_KEY is not set"
    ]


def test_unset_variable_is_reported_once_and_with_other_problems(tmp_path: Path) -> None:
    text = SOURCE.replace('"https://dashboard.sequentum.com"', '"${URL}"') + 'api_key = "${K}"\n'
    text += "timeout = -1\n"
    assert problems(tmp_path, text) == [
        "sources[0].base_url: environment variable URL is not set",
        "sources[0].api_key: environment variable K is not set",
        "sources[0].timeout: must be > 0",
    ]


def test_malformed_reference(tmp_path: Path) -> None:
    assert problems(tmp_path, SOURCE + 'api_key = "${not-a-name}"\n') == [
        "sources[0].api_key: malformed ${...} reference (write $${ for a literal ${)"
    ]


def test_values_from_the_environment_are_not_expanded(tmp_path: Path) -> None:
    settings = load(tmp_path, VALID, {"WATCHER_STATE_PATH": "/x/${HOME}"})
    assert settings.watcher.state_path == Path("/x/${HOME}")


# --- environment overrides -----------------------------------------------------------------------

WATCHER_FILE = '[watcher]\nlog_format = "json"\nlog_level = "info"\nstate_path = "/file.db"\n'


def test_nested_env_form_beats_the_file(tmp_path: Path) -> None:
    env = {"WATCHER_WATCHER__LOG_FORMAT": "console", "WATCHER_WATCHER__SHUTDOWN_TIMEOUT": "3"}
    settings = load(tmp_path, WATCHER_FILE, env)
    assert settings.watcher.log_format == "console"
    assert settings.watcher.shutdown_timeout == 3.0
    assert settings.watcher.state_path == Path("/file.db")  # untouched keys keep the file's value


def test_shorthands_beat_the_file(tmp_path: Path) -> None:
    env = {
        "WATCHER_STATE_PATH": "/env.db",
        "WATCHER_EVENTS_PATH": "",
        "WATCHER_LOG_FORMAT": "console",
        "WATCHER_LOG_LEVEL": "DEBUG",
        "WATCHER_SHUTDOWN_TIMEOUT": "1.5",
    }
    settings = load(tmp_path, WATCHER_FILE, env)
    assert settings.watcher == WatcherSection(
        state_path=Path("/env.db"),
        events_path=None,
        log_format="console",
        log_level="debug",
        shutdown_timeout=1.5,
    )


def test_shorthand_beats_the_nested_form(tmp_path: Path) -> None:
    env = {"WATCHER_WATCHER__LOG_LEVEL": "error", "WATCHER_LOG_LEVEL": "warning"}
    assert load(tmp_path, WATCHER_FILE, env).watcher.log_level == "warning"


def test_whole_table_as_json(tmp_path: Path) -> None:
    env = {"WATCHER_WATCHER": '{"log_level": "error"}', "WATCHER_LOG_FORMAT": "console"}
    settings = load(tmp_path, WATCHER_FILE, env)
    assert (settings.watcher.log_level, settings.watcher.log_format) == ("error", "console")
    assert settings.watcher.state_path == Path("/file.db")


def test_table_override_that_is_not_an_object(tmp_path: Path) -> None:
    assert problems(tmp_path, VALID, {"WATCHER_WATCHER": '"json"'}) == [
        "watcher: must be a table (from the environment)"
    ]


def test_env_variable_names_are_case_insensitive(tmp_path: Path) -> None:
    env = {"watcher_watcher__log_format": "console", "Watcher_Log_Level": "error"}
    settings = load(tmp_path, WATCHER_FILE, env)
    assert (settings.watcher.log_format, settings.watcher.log_level) == ("console", "error")


def test_sources_json_replaces_the_file_sources(tmp_path: Path) -> None:
    sources = (
        '[{"name": "env", "kind": "sequentum_cloud", "base_url": "http://h",'
        ' "api_key": "k", "agents": [5]}]'
    )
    # The file's source refers to an unset variable: replaced by the environment, so no error.
    text = SOURCE + 'api_key = "${UNSET}"\n'
    settings = load(tmp_path, text, {"WATCHER_SOURCES": sources})
    assert [(s.name, s.base_url, s.agents) for s in settings.sources] == [
        ("env", "http://h", ["5"])
    ]


def test_watcher_config_is_not_a_setting(tmp_path: Path) -> None:
    settings = load(tmp_path, VALID, {"WATCHER_CONFIG": "/elsewhere.toml", "WATCHER_OTHER": "x"})
    assert settings.sources[0].name == "cloud"


def test_env_problems_say_where_they_come_from(tmp_path: Path) -> None:
    env = {"WATCHER_LOG_FORMAT": "xml", "WATCHER_WATCHER__COLOUR": "red"}
    assert problems(tmp_path, VALID, env) == [
        "watcher.log_format: must be one of 'auto', 'json' or 'console' (from the environment)",
        "watcher.colour: unknown key (from the environment)",
    ]


def test_invalid_json_in_the_environment(tmp_path: Path) -> None:
    env = {"WATCHER_SOURCES": f'[{{"api_key": "{CANARY}"', "WATCHER_WATCHER": "{"}
    lines = problems(tmp_path, VALID, env)
    assert lines == [
        "WATCHER_WATCHER: not valid JSON (Expecting property name enclosed in double quotes"
        " at line 1, column 2)",
        "WATCHER_SOURCES: not valid JSON (Expecting ',' delimiter at line 1, column 33)",
    ]
    assert CANARY not in "\n".join(lines)


def test_per_source_env_variables_are_refused(tmp_path: Path) -> None:
    assert problems(tmp_path, VALID, {"WATCHER_SOURCES__0__API_KEY": "x"}) == [
        "WATCHER_SOURCES__*: per-source variables are not supported; set WATCHER_SOURCES to a"
        " JSON list, or use ${NAME} in the file"
    ]


# --- api_key_file --------------------------------------------------------------------------------


def test_api_key_file_absolute(tmp_path: Path) -> None:
    key = tmp_path / "secrets" / "key"
    key.parent.mkdir()
    key.write_text("  file-secret\n", encoding="utf-8")
    settings = load(tmp_path, SOURCE + f'api_key_file = "{key}"\n', {"CREDENTIALS_DIRECTORY": "/x"})
    assert settings.sources[0].secret() == "file-secret"
    assert settings.sources[0].api_key_file == key


def test_api_key_file_relative_to_credentials_directory(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "sequentum").write_text("cred-secret", encoding="utf-8")
    (tmp_path / "sequentum").write_text("wrong", encoding="utf-8")  # beside the config: not used
    env = {"CREDENTIALS_DIRECTORY": str(credentials)}
    settings = load(tmp_path, SOURCE + 'api_key_file = "sequentum"\n', env)
    assert settings.sources[0].secret() == "cred-secret"
    assert settings.sources[0].api_key_file == credentials / "sequentum"


def test_api_key_file_relative_to_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir("/")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "cloud").write_text("dir-secret\n", encoding="utf-8")
    settings = load(tmp_path, SOURCE + 'api_key_file = "keys/cloud"\n')
    assert settings.sources[0].secret() == "dir-secret"


def test_api_key_file_in_code_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    (tmp_path / "key").write_text("cwd-secret", encoding="utf-8")
    source = SourceConfig(
        name="x", kind="sequentum_cloud", base_url="http://h", api_key_file=Path("key")
    )
    assert source.secret() == "cwd-secret"


def test_api_key_file_unreadable(tmp_path: Path) -> None:
    assert problems(tmp_path, SOURCE + 'api_key_file = "missing.key"\n') == [
        f"sources[0].api_key_file: cannot read {tmp_path / 'missing.key'}:"
        " No such file or directory"
    ]
    (tmp_path / "adir").mkdir()
    assert problems(tmp_path, SOURCE + 'api_key_file = "adir"\n') == [
        f"sources[0].api_key_file: cannot read {tmp_path / 'adir'}: Is a directory"
    ]


def test_api_key_file_empty(tmp_path: Path) -> None:
    (tmp_path / "empty.key").write_text(" \n", encoding="utf-8")
    assert problems(tmp_path, SOURCE + 'api_key_file = "empty.key"\n') == [
        f"sources[0].api_key_file: file is empty: {tmp_path / 'empty.key'}"
    ]


# --- secrets never leak --------------------------------------------------------------------------


def test_secret_is_absent_from_errors(tmp_path: Path) -> None:
    text = SOURCE + f'api_key = "{CANARY}"\ntimeout = "{CANARY}"\nagents = ["{CANARY}"]\n'
    text += f'colour = "{CANARY}"\napi_key_file = "{CANARY}"\n'
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert caught.value.problems  # the file is wrong in several ways...
    assert CANARY not in str(caught.value)  # ...and no line repeats a value
    assert CANARY not in "\n".join(caught.value.problems)


def test_secret_from_a_variable_or_a_file_is_absent_from_errors(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(CANARY, encoding="utf-8")
    text = SOURCE + 'api_key_file = "key"\nbase_url_typo = 1\n'
    text += SOURCE.replace('"cloud"', '"b"') + 'api_key = "${K}"\ntimeout = 0\n'
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, {"K": CANARY})
    assert len(caught.value.problems) == 2
    assert CANARY not in str(caught.value)


def test_secret_is_absent_from_repr_and_str(tmp_path: Path) -> None:
    settings = load(tmp_path, SOURCE + f'api_key = "{CANARY}"\n')
    assert settings.sources[0].secret() == CANARY
    for text in (
        repr(settings),
        str(settings),
        repr(settings.sources[0]),
        str(settings.model_dump()),
    ):
        assert CANARY not in text


def test_secret_is_absent_from_code_validation_errors() -> None:
    with pytest.raises(ValidationError) as caught:
        SourceConfig.model_validate(
            {
                "name": "x",
                "kind": "sequentum_cloud",
                "base_url": "h",
                "api_key": CANARY,
                "colour": 1,
            }
        )
    assert CANARY not in str(caught.value)


# --- find_config ---------------------------------------------------------------------------------


@pytest.fixture
def candidates(tmp_path: Path) -> dict[str, Path]:
    """One file for each place find_config looks."""
    paths = {}
    for name in ("cli", "env", "local", "system"):
        paths[name] = write(tmp_path, "", f"{name}.toml")
    return paths


def test_find_config_cli_first(candidates: dict[str, Path]) -> None:
    env = {"WATCHER_CONFIG": str(candidates["env"])}
    search = [candidates["local"], candidates["system"]]
    assert find_config(candidates["cli"], env, search) == candidates["cli"]
    assert find_config(str(candidates["cli"]), env, search) == candidates["cli"]


def test_find_config_env_second(candidates: dict[str, Path]) -> None:
    env = {"WATCHER_CONFIG": str(candidates["env"])}
    search = [candidates["local"], candidates["system"]]
    assert find_config(None, env, search) == candidates["env"]


def test_find_config_search_paths_in_order(candidates: dict[str, Path], tmp_path: Path) -> None:
    search = [candidates["local"], candidates["system"]]
    assert find_config(None, {"WATCHER_CONFIG": ""}, search) == candidates["local"]
    assert (
        find_config(None, {}, [tmp_path / "absent.toml", candidates["system"]])
        == candidates["system"]
    )


def test_find_config_default_looks_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "")
    assert DEFAULT_SEARCH_PATHS[0] == "./watcher.toml"
    assert find_config(None, {}) == tmp_path / "watcher.toml"


def test_find_config_nothing_found(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        find_config(None, {}, ["./nothing-here.toml", str(tmp_path / "etc" / "watcher.toml")])
    assert caught.value.problems == [
        f"config: no config file found (tried ./nothing-here.toml, {tmp_path}/etc/watcher.toml);"
        " pass --config PATH or set WATCHER_CONFIG"
    ]


def test_find_config_default_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    if os.path.exists("/etc/watcher/watcher.toml"):  # pragma: no cover - depends on the host
        pytest.skip("this host has /etc/watcher/watcher.toml")
    with pytest.raises(ConfigError) as caught:
        find_config(None, {})
    assert caught.value.problems == [
        "config: no config file found (tried ./watcher.toml, /etc/watcher/watcher.toml);"
        " pass --config PATH or set WATCHER_CONFIG"
    ]


@pytest.mark.parametrize("where", ["cli", "env"])
def test_find_config_explicit_path_must_exist(
    where: str, candidates: dict[str, Path], tmp_path: Path
) -> None:
    missing = tmp_path / "x" / "y.toml"
    cli, env = (missing, {}) if where == "cli" else (None, {"WATCHER_CONFIG": str(missing)})
    with pytest.raises(ConfigError) as caught:
        find_config(cli, env, [candidates["local"]])
    assert caught.value.problems == [f"config: {missing}: no such file"]


def test_find_config_explicit_path_must_be_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        find_config(tmp_path, {}, [])
    assert caught.value.problems == [f"config: {tmp_path}: not a file"]


def test_found_config_loads(candidates: dict[str, Path]) -> None:
    candidates["env"].write_text(VALID, encoding="utf-8")
    path = find_config(None, {"WATCHER_CONFIG": str(candidates["env"])}, [])
    assert load_settings(path, {}).config_path == candidates["env"]


# --- the Agent Control Center and automation-runs kinds ------------------------------------------

ACC = """
[[sources]]
name = "acc"
kind = "sequentum_acc"
base_url = "https://acc.sequentum.com"
api_key = "token"
"""

AUTOMATION = """
[[sources]]
name = "automation"
kind = "automation_runs"
base_url = "https://automation.example.com"
api_key = "key"
"""

GUID = "a2f22850-7c88-4e05-a30a-004aa980ee6c"


def test_acc_source_takes_paths_and_guids(tmp_path: Path) -> None:
    agents = f'agents = ["/sequentum/Test2/quick/", "{GUID.upper()}"]\nwatch_jobs = true\n'
    [source] = load(tmp_path, ACC + agents).sources
    assert source.kind == "sequentum_acc"
    assert source.auth == "bearer"  # the ACC's only scheme, and so its default
    assert source.agents == ["sequentum/Test2/quick", GUID]
    assert source.watch_jobs is True


def test_automation_source_defaults(tmp_path: Path) -> None:
    [source] = load(tmp_path, AUTOMATION).sources
    assert (source.auth, source.agents, source.max_pages, source.watch_jobs) == (
        "x-api-key",
        ["*"],
        10,
        False,
    )
    [source] = load(tmp_path, AUTOMATION + 'auth = "bearer"\nagents = ["sync", 42]\n').sources
    assert (source.auth, source.agents) == ("bearer", ["sync", "42"])


def test_cloud_keeps_apikey_by_default(tmp_path: Path) -> None:
    assert load(tmp_path, VALID).sources[0].auth == "apikey"


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            ACC,
            "sources[0].agents: required for kind sequentum_acc: agent ids or repository paths "
            '(the ACC API cannot list every agent, so "*" is not available)',
        ),
        (
            ACC + 'agents = ["*"]\n',
            "sources[0].agents: required for kind sequentum_acc: agent ids or repository paths "
            '(the ACC API cannot list every agent, so "*" is not available)',
        ),
        (
            ACC + "agents = [2537]\n",
            "sources[0].agents[0]: must be an agent id (a GUID) or a repository path like "
            '"sequentum/Test2/quick"',
        ),
        (
            ACC + 'agents = ["quick"]\n',
            "sources[0].agents[0]: must be an agent id (a GUID) or a repository path like "
            '"sequentum/Test2/quick"',
        ),
        (
            ACC + f'agents = ["{GUID}", "{GUID.upper()}"]\n',
            "sources[0].agents[1]: duplicate agent id",
        ),
        (
            ACC + 'agents = ["a/b"]\nauth = "apikey"\n',
            "sources[0].auth: must be 'bearer' for kind sequentum_acc",
        ),
        (
            ACC + 'agents = ["a/b"]\nmax_pages = 3\n',
            "sources[0].max_pages: only for kind automation_runs",
        ),
        (
            AUTOMATION + 'auth = "apikey"\n',
            "sources[0].auth: must be 'x-api-key' or 'bearer' for kind automation_runs",
        ),
        (AUTOMATION + 'agents = [""]\n', "sources[0].agents[0]: must be an automation id"),
        (AUTOMATION + "max_pages = 0\n", "sources[0].max_pages: must be >= 1"),
        (AUTOMATION + "max_pages = 1001\n", "sources[0].max_pages: must be <= 1000"),
        (AUTOMATION + "watch_jobs = true\n", "sources[0].watch_jobs: only for kind sequentum_acc"),
        (AUTOMATION + 'watch_jobs = "yes"\n', "sources[0].watch_jobs: only for kind sequentum_acc"),
    ],
)
def test_acc_and_automation_problem_lines(tmp_path: Path, toml: str, expected: str) -> None:
    assert expected in problems(tmp_path, toml)


def test_example_acc_and_automation_blocks_load_when_uncommented(tmp_path: Path) -> None:
    """The commented [[sources]] examples are valid TOML and valid config once uncommented."""
    text = EXAMPLE.read_text(encoding="utf-8")
    lines = text.split("\n[[subscriptions]]")[0].splitlines()  # the [watcher] and sources part
    out, inside = [], False
    for line in lines:
        if line == "# [[sources]]":
            inside = True
        elif inside and not line.startswith("#   "):
            inside = False
        out.append(line[2:] if inside else line)
    env = {"SEQUENTUM_API_KEY": "a", "ACC_ACCESS_TOKEN": "b", "AUTOMATION_API_KEY": "c"}
    settings = load(tmp_path, "\n".join(out) + "\n", env)
    acc, automation = settings.sources[1], settings.sources[2]
    assert (acc.kind, acc.auth, acc.watch_jobs) == ("sequentum_acc", "bearer", True)
    assert acc.agents == ["sequentum/Test2/quick", GUID]
    assert (automation.kind, automation.auth, automation.max_pages) == (
        "automation_runs",
        "x-api-key",
        10,
    )
