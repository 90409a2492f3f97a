"""The `[outputs]` table: documented key by key, validated with one line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcher.config import OutputsConfig, OutputSourceRules, load_settings
from watcher.errors import ConfigError
from watcher.sinks.fetcher import selects
from watcher.sources.base import RunFile

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
ENV = {"SEQUENTUM_API_KEY": "k", "SLACK_WEBHOOK": "json://127.0.0.1/h", "SMTP_PASSWORD": "p"}

BASE = """
[[sources]]
name = "cloud"
kind = "sequentum_cloud"
base_url = "https://dashboard.sequentum.com"
api_key = "k-123"

"""


def load(tmp_path: Path, text: str):
    path = tmp_path / "w.toml"
    path.write_text(BASE + text)
    return load_settings(path, {})


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value.problems


def test_example_documents_every_outputs_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    section = text[text.index("\n[outputs]\n") :]
    keys = [k for k in OutputsConfig.model_fields if k != "sources"]
    missing = [k for k in keys if f"\n{k} = " not in section]
    assert missing == []
    assert "\n# [outputs.sources.cloud]\n" in section
    per_source = [k for k in OutputSourceRules.model_fields if f"\n#   {k} = " not in section]
    assert per_source == []


def test_example_per_source_block_loads_when_uncommented(tmp_path: Path) -> None:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    start = lines.index("# [outputs.sources.cloud]")
    block = [line[2:] for line in lines[start:] if line.startswith("# ")]
    text = "\n".join([*lines[:start], *block]) + "\n"
    path = tmp_path / "example.toml"
    path.write_text(text)
    settings = load_settings(path, ENV)
    assert settings.outputs.enabled is False
    cloud = settings.outputs.sources["cloud"]
    assert cloud.include == ["*.csv"] and cloud.on == ["success"]


def test_values_and_per_source_inheritance(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        '[outputs]\nenabled = true\ndir = "/srv/out"\non = ["success", "failure"]\n'
        'exclude = ["type:log"]\nextract = true\n'
        '[outputs.sources.cloud]\ninclude = ["*.csv"]\n',
    )
    rules = settings.outputs.for_source("cloud")
    assert settings.outputs.dir == Path("/srv/out")
    assert rules.include == ["*.csv"] and rules.exclude == ["type:log"]
    assert rules.on == ["success", "failure"] and rules.extract is True and rules.enabled
    assert settings.outputs.for_source("other").include == []


def test_disabled_outputs_disable_every_source() -> None:
    config = OutputsConfig(enabled=False, sources={"cloud": OutputSourceRules(enabled=True)})
    assert config.for_source("cloud").enabled is False


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[outputs]\non = ["sometimes"]\n',
         "outputs.on: unknown outcome (each must be one of success, failure, stopped, skipped)"),
        ("[outputs]\non = []\n", "outputs.on: must name at least one outcome"),
        ('[outputs]\ninclude = ["type:zip"]\n',
         "outputs.include: unknown file type (type:data, type:log, type:other or type:N)"),
        ('[outputs]\nexclude = [" "]\n', "outputs.exclude: a pattern must not be empty"),
        ('[outputs]\ndir = ""\n', "outputs.dir: must not be empty"),
        ("[outputs]\nmax_file_bytes = 0\n", "outputs.max_file_bytes: must be >= 1"),
        ("[outputs]\nconcurrency = 33\n", "outputs.concurrency: must be <= 32"),
        ("[outputs]\nmax_age = 0\n", "outputs.max_age: must be > 0"),
        ("[outputs]\nmax_extract_ratio = 1\n", "outputs.max_extract_ratio: must be > 1"),
        ("[outputs]\nspeed = 1\n", "outputs.speed: unknown key"),
        ("[outputs.sources.nope]\nenabled = false\n",
         'outputs.sources.nope: unknown source "nope"'),
        ('[outputs.sources.cloud]\non = ["x"]\n',
         "outputs.sources.cloud.on: unknown outcome (each must be one of success, failure, "
         "stopped, skipped)"),
        ("[outputs.sources.cloud]\nmax_age = 1\n", "outputs.sources.cloud.max_age: unknown key"),
    ],
)  # fmt: skip
def test_problem_lines(tmp_path: Path, toml: str, expected: str) -> None:
    assert expected in problems(tmp_path, toml)


def test_environment_overrides_outputs(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text(BASE)
    env = {"WATCHER_OUTPUTS__ENABLED": "true", "WATCHER_OUTPUTS__DIR": "/data/out"}
    settings = load_settings(path, env)
    assert settings.outputs.enabled and settings.outputs.dir == Path("/data/out")


@pytest.mark.parametrize(
    ("include", "exclude", "item", "name", "chosen"),
    [
        ([], [], RunFile("1", "a.csv", "/x"), "a.csv", True),
        (["*.CSV"], [], RunFile("1", "a.csv", "/x"), "a.csv", True),
        (["*.csv"], [], RunFile("1", "a.log", "/x", kind="log"), "a.log", False),
        (["type:log"], [], RunFile("1", "a.txt", "/x", kind="log"), "a.txt", True),
        (["type:6"], [], RunFile("1", "a.txt", "/x", kind="log", file_type=6), "a.txt", True),
        ([], ["type:data"], RunFile("1", "a.csv", "/x"), "a.csv", False),
        (["*"], ["a.*"], RunFile("1", "a.csv", "/x"), "a.csv", False),
        # patterns see the safe name that lands on disk, not the raw one
        (["evil.csv"], [], RunFile("1", "../../evil.csv", "/x"), "evil.csv", True),
    ],
)
def test_selection(include, exclude, item: RunFile, name: str, chosen: bool) -> None:
    rules = OutputSourceRules(include=include, exclude=exclude)
    assert selects(rules, item, name) is chosen
